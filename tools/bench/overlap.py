"""``dlrm_main.py`` with a variant of the dense-gradient allreduce, for benchmarks only.

    python -m tools.bench overlap {grouped,top_first} [dlrm_main.py flags]

``grouped`` runs ``dlrm_main.py`` as it is. Its collectives run in program
order (``models/distributed/comm.py``): the forward all-to-all, the backward
all-to-all of the embeddings' gradients (issued while the gradients are
taken), then one grouped allreduce of every dense gradient and the step's
non-finite flag, which waits for the last gradient of the step.

``top_first`` takes the top MLP's gradients first (a tape gradient of their
own; TensorFlow's graph optimiser merges the backward ops the two gradient
calls share), issues their allreduce, then takes the other gradients: the
top MLP's allreduce, most of the dense bytes, comes before the backward
all-to-all in the order of collectives and runs while the interaction, the
bottom MLP and the lookups' backward compute. The other dense gradients and
the flag follow in a second allreduce.
``tools.bench.distributed --dense_allreduce grouped,top_first`` times the
two; it is not a ``dlrm_main.py`` option (docs/performance.md, "Overlap of
collectives with compute": the measured difference).
"""

from __future__ import annotations

VARIANTS = ("grouped", "top_first")


def top_first_step(self, features, labels):
    """``TrainStep._step`` with the top MLP's gradients taken and reduced first."""
    # TensorFlow is imported here: tools.bench.distributed reads VARIANTS without it.
    import tensorflow as tf

    from models.training.train_step import bce_with_logits

    parallel = self._parallel
    variables = self._dense_variables + self._embedding_variables
    top_ids = {id(v) for v in parallel.model.top_mlp.trainable_variables}
    top = [i for i, v in enumerate(variables) if id(v) in top_ids]
    rest = [i for i in range(len(variables)) if id(variables[i]) not in top_ids]
    with tf.GradientTape(persistent=True) as tape:
        logits = parallel.forward(features["numerical"], features["categorical"], training=True)
        loss = bce_with_logits(labels, logits)
        scaled = self.guard.scale_loss(loss)
    top_grads = self.guard.unscale(tape.gradient(scaled, [variables[i] for i in top]))
    reduced_top = parallel.comm.grouped_allreduce(
        top_grads, average=True, name="dense_gradients_top"
    )
    rest_grads = self.guard.unscale(tape.gradient(scaled, [variables[i] for i in rest]))
    gradients: list = [None] * len(variables)
    for i, g in zip(top, top_grads, strict=True):
        gradients[i] = g
    for i, g in zip(rest, rest_grads, strict=True):
        gradients[i] = g
    num_dense = len(self._dense_variables)
    # The top MLP's entries go as None: reduce_gradients leaves them out.
    dense_in = [None if i in top else gradients[i] for i in range(num_dense)]
    embedding_gradients, reduced = parallel.reduce_gradients(
        gradients[num_dense:], [*dense_in, self.nonfinite_flag(loss, gradients)]
    )
    dense_gradients = reduced[:-1]
    for i, value in zip(top, reduced_top, strict=True):
        dense_gradients[i] = value
    return self.apply_if_finite(loss, dense_gradients, embedding_gradients, reduced[-1])


def main(argv: list[str]) -> int:
    """``argv``: the variant, then ``dlrm_main.py``'s flags."""
    if not argv or argv[0] not in VARIANTS:
        raise SystemExit(f"usage: python -m tools.bench overlap {{{','.join(VARIANTS)}}} FLAGS")
    import dlrm_main
    from models.training.train_step import TrainStep

    if argv[0] == "top_first":
        TrainStep._step = top_first_step
    dlrm_main.main(["dlrm_main.py", *argv[1:]])
    return 0
