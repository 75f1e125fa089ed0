"""``python -m preproc``: Criteo TSV files -> split binary dataset (see ``preproc.cli``)."""

import sys

from preproc.cli import main

if __name__ == "__main__":
    sys.exit(main())
