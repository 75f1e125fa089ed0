"""Where the real Criteo sample rows live: in the repository, beside the tests.

See ``tests/fixtures/criteo_sample/README.md`` for their provenance and licence.
"""

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent / "fixtures" / "criteo_sample"
