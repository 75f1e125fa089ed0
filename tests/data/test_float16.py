"""models.data.float16: every float16 bit pattern decodes as numpy's float16 -> float32."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from models.data.float16 import float16_bits_to_float32

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_all_65536_patterns_match_numpy() -> None:
    bits = np.arange(1 << 16, dtype=np.uint16)
    want = bits.view(np.float16).astype(np.float32)
    for as_type in (np.int16, np.uint16):
        got = float16_bits_to_float32(tf.constant(bits.view(as_type))).numpy()
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan)
        # Bit equality for the rest: -0.0, subnormals, infinities included.
        np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


def test_reading_a_float16_file_logs_no_onednn_error(tmp_path: Path) -> None:
    """The float16 cast this replaces made oneDNN log an error line on CPUs without FP16."""
    path = tmp_path / "numerical.bin"
    np.array([1.5, -2.0, 65504.0], np.float16).tofile(path)
    code = (
        "import sys, tensorflow as tf\n"
        "from models.data.float16 import float16_bits_to_float32\n"
        f"raw = tf.io.decode_raw(tf.io.read_file({str(path)!r}), tf.int16)\n"
        "print(float16_bits_to_float32(raw).numpy().tolist())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True
    )
    assert done.stdout.strip() == "[1.5, -2.0, 65504.0]"
    assert "DT_HALF" not in done.stderr, done.stderr
