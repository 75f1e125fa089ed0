"""models.cpu_features: the CPU model and key flags from cpuinfo text."""

from __future__ import annotations

from models.cpu_features import lacks_native_bf16, parse_cpuinfo, read_cpuinfo

# Two processors of a Sapphire Rapids Xeon (flags shortened): AMX and AVX-512 FP16.
INTEL_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512_vnni avx512_bf16 \
amx_bf16 avx512_fp16 amx_tile amx_int8
bogomips\t: 4000.00

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Some Other Name
flags\t\t: fpu sse
"""

# An AMD Zen 4 EPYC: AVX-512 with BF16, no AMX, no AVX-512 FP16.
AMD_ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512dq avx512_bf16 avx512_vnni avx512vl
"""

# An AMD Zen 3 EPYC: AVX2, no AVX-512, no native bfloat16.
AMD_ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c avx2 fma bmi2 vaes vpclmulqdq
"""

# An ARM server: no model name, "Features" instead of flags.
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics
CPU implementer\t: 0x41
"""


def test_intel_with_amx_reads_the_first_processor() -> None:
    model, flags = parse_cpuinfo(INTEL_AMX)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert flags == ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")


def test_amd_zen4_has_avx512_bf16_and_no_amx() -> None:
    model, flags = parse_cpuinfo(AMD_ZEN4)
    assert model == "AMD EPYC 9654 96-Core Processor"
    assert flags == ("avx2", "avx512f", "avx512_bf16")


def test_cpuinfo_without_the_fields_gives_none() -> None:
    assert parse_cpuinfo(ARM) == (None, None)
    assert parse_cpuinfo("") == (None, None)


def test_a_missing_file_reads_as_none(tmp_path) -> None:
    assert read_cpuinfo(str(tmp_path / "cpuinfo")) is None
    (tmp_path / "cpuinfo").write_text(AMD_ZEN4)
    assert read_cpuinfo(str(tmp_path / "cpuinfo")) == AMD_ZEN4


def test_native_bf16_needs_avx512_bf16_or_amx_bf16() -> None:
    assert lacks_native_bf16(parse_cpuinfo(AMD_ZEN3)[1])
    assert lacks_native_bf16(())
    assert not lacks_native_bf16(parse_cpuinfo(AMD_ZEN4)[1])
    assert not lacks_native_bf16(parse_cpuinfo(INTEL_AMX)[1])
    assert not lacks_native_bf16(("avx2", "amx_bf16"))  # AMX alone counts
    assert not lacks_native_bf16(None)  # unknown: nothing to say
