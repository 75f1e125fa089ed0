"""`python -m tools.bench_train`: see the package docstring."""

import sys

from tools.bench_train.cli import main

sys.exit(main())
