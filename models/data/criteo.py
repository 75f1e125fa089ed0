"""Reference table sizes of Criteo 1TB, for benchmarks and tests.

Rows of the 26 embedding tables of Criteo 1TB preprocessed at frequency
threshold 15 (as NVIDIA's feature spec for that dataset lists them), and the
same capped at 200,000 rows: the benchmark configuration of the model issue.
"""

CRITEO_FT15_CARDINALITIES = (
    7912889, 33823, 17139, 7339, 20046, 4, 7105, 1382, 63, 5554114, 582469, 245828, 11,
    2209, 10667, 104, 4, 968, 15, 8165896, 2675940, 7156453, 302516, 12022, 97, 35,
)  # fmt: skip
BENCH_MAX_ROWS = 200_000
BENCH_CARDINALITIES = tuple(min(n, BENCH_MAX_ROWS) for n in CRITEO_FT15_CARDINALITIES)

# Ids per row of each table in MLPerf's DLRM-DCNv2 benchmark (Criteo 1TB made
# multi-hot, "criteo_multihot"): tables in Criteo's column order.
MLPERF_MULTI_HOT_HOTNESS = (
    3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1,
)  # fmt: skip
