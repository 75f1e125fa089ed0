"""What this CPU's vector units support, from ``/proc/cpuinfo``: the one place that reads it.

Training speed on a CPU depends on the instruction sets it has (AVX-512 and
its bfloat16 instructions, AMX tiles). `tools.machine` names them in every
benchmark header; `models.device` uses them to tell whether ``--amp``
(bfloat16 on the CPU) can pay off. Everything works from the file's text, so
tests pass the cpuinfo of other machines. Imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path

CPUINFO_PATH = "/proc/cpuinfo"
# The instruction sets that decide the matmul rate of fp32 and bf16 steps.
KEY_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")
# Instructions that multiply bfloat16 natively (AVX-512 BF16 dot products, AMX tiles);
# without them bfloat16 is converted to float32 and back around float32 arithmetic.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def parse_cpuinfo(text: str) -> tuple[str | None, tuple[str, ...] | None]:
    """(CPU model name, the `KEY_CPU_FLAGS` it has) from ``/proc/cpuinfo`` text.

    Reads the first processor's block (all cores of a machine share model and
    flags). Either is None when the text lacks the field, e.g. on ARM, where
    cpuinfo has ``Features`` and no model name.
    """
    model: str | None = None
    flags: tuple[str, ...] | None = None
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and flags is None:
            present = set(value.split())
            flags = tuple(f for f in KEY_CPU_FLAGS if f in present)
    return model, flags


def read_cpuinfo(path: str = CPUINFO_PATH) -> str | None:
    """The text of ``/proc/cpuinfo``, or None where there is none (not Linux)."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def lacks_native_bf16(flags: tuple[str, ...] | None) -> bool:
    """True when the flags are known and hold none of `NATIVE_BF16_FLAGS`.

    Unknown flags (None: no cpuinfo, or an ARM one) give False: nothing to say.
    """
    return flags is not None and not any(f in flags for f in NATIVE_BF16_FLAGS)
