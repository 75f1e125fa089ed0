"""``spark-submit`` entry point: spark-submit runs a file, not ``python -m preproc``.

``spark-submit [spark options] preproc/spark/submit.py --input_files ... --output_dir ...``
is ``python -m preproc --engine spark ...`` with the master and resources spark-submit
was given.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from preproc.cli import main

if __name__ == "__main__":
    sys.exit(main(["--engine", "spark", *sys.argv[1:]]))
