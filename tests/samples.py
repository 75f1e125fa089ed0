"""Where the real Criteo sample rows live.

CI clones the repository next to a read-only `shared/` directory, so the samples
are at `<clone>/../shared/data/criteo_kaggle_sample`; a developer's checkout may
instead point `DLRM_SAMPLE_DATA` at them. The work-tree location is the last resort.
"""

import os
from pathlib import Path

_CANDIDATES = [
    os.environ.get("DLRM_SAMPLE_DATA", ""),
    Path(__file__).resolve().parents[2] / "shared" / "data" / "criteo_kaggle_sample",
    "/work/shared/data/criteo_kaggle_sample",
]

SAMPLES_DIR = next((Path(c) for c in _CANDIDATES if c and Path(c).is_dir()), Path(_CANDIDATES[1]))
