"""``python -m tools.bench NAME [args]``: see the package docstring."""

import sys

from tools.bench import run

sys.exit(run(sys.argv[1:]))
