"""`python -m tools.bench_train`: see the package docstring."""

import sys

from models.huge_pages import restart_with_huge_pages

# As dlrm_main.py does, so that the benchmark measures the default set-up.
restart_with_huge_pages()

from tools.bench_train.cli import main  # noqa: E402 (after the restart: TensorFlow loads here)

sys.exit(main())
