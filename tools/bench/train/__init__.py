"""Training throughput of our DLRM against a plain Keras 3 DLRM and the compute bound.

One run measures, on the benchmark configuration of issue 4 (batch 4096,
D = 128, MLPs 512-256-128 / 1024-1024-512-256-1, 26 tables with the Criteo 1TB
frequency-threshold-15 cardinalities capped at 200,000 rows, power-law ids):

1. this CPU's matmul rate ([4096, 1024] x [1024, 1024], fp32 and bf16) and the
   compute bound it implies: rate / training FLOP per sample (computed from
   the model dims, see `flops_per_sample`);
2. our DLRM trained through the real `TrainStep` under `Trainer.fit`, the way
   `dlrm_main.py` runs it (`HybridParallel` over `LocalCommunicator`, SGD with
   the reference schedule, the table update XLA-compiled when
   `models.device.xla_available`), per precision;
3. a plain Keras 3 DLRM written the obvious way (`keras.layers.Embedding` per
   table, `Dense`, dot interaction, `compile(SGD)` + `fit`), same data;
4. the input pipeline alone (`SyntheticDataset.as_dataset`).

Both models train on the same batches: a few distinct synthetic batches held
in memory and repeated, so that batch generation does not compete with the
step for the two cores (item 4 measures it separately). After warm-up, each
round measures the matmul rate, a window of our steps and a window of plain
Keras steps back to back: this machine's speed drifts by 2x within minutes
(other jobs), so the ratio is the median of per-round ratios and the compute
bound uses the matmul rate of the same rounds. With ``--profile_steps`` it
also times parts of our step (forward pieces, interaction backward, each
optimizer) and traces it with ``tf.profiler`` to list where the time goes.

    python -m tools.bench train                              # the issue-4 benchmark
    python -m tools.bench train --precisions fp32 --steps 30 --json out.json
    python -m tools.bench train --inter_op 1 --intra_op 2   # TF thread pools (both models)
    python -m tools.bench train --processes 6 --profile_steps 0  # 6 fresh processes

Every report starts with the machine it ran on (`tools.machine`: CPU model and
flags, cores, memory, TensorFlow, oneDNN, allocator, load), also stored in the
JSON. With ``--processes N`` the same command runs in N fresh processes one
after another, and the report gives per precision the min / median / max over
processes of each one's median, next to the spread of the rounds inside them.

The cardinalities are NVIDIA's ``criteo_t15_synthetic`` variant
(DeepLearningExamples, TensorFlow2/Recommendation/DLRM_and_DCNv2), i.e. the
table sizes of Criteo 1TB preprocessed with frequency threshold 15.

Modules: `setup` (configuration, batches, our model and loop), `bound` (FLOP
per sample, matmul rate), `plain_keras` (the baseline), `step_profile` (parts
of our step, op-type trace), `run` (the rounds), `report` (ratios, targets,
table), `processes` (``--processes``) and `cli`. `tools.bench.models` compares
DLRM and DCNv2 with the same set-up.
"""

from tools.bench.train.bound import (
    FlopCount,
    dcnv2_flops_per_sample,
    flops_per_sample,
    matmul_gflops,
)
from tools.bench.train.cli import main
from tools.bench.train.plain_keras import PlainDotInteraction, build_plain_keras
from tools.bench.train.report import format_report, summarize_rounds
from tools.bench.train.run import run_benchmark
from tools.bench.train.setup import BenchConfig, build_ours

__all__ = [
    "BenchConfig",
    "FlopCount",
    "PlainDotInteraction",
    "build_ours",
    "build_plain_keras",
    "dcnv2_flops_per_sample",
    "flops_per_sample",
    "format_report",
    "main",
    "matmul_gflops",
    "run_benchmark",
    "summarize_rounds",
]
