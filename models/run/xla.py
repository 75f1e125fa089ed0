"""How much of the training step XLA compiles (--enable_xla)."""

from __future__ import annotations

import logging

import tensorflow as tf

from models.device import DeviceSetup


def xla_mode(enable_xla: bool, world: int, device: DeviceSetup) -> str:
    """ "step" (whole step compiled), "auto" (XLA auto-clustering) or "off".

    Horovod's collectives have no XLA kernels, so a multi-rank step cannot be
    compiled whole; TensorFlow's auto-clustering then compiles the clusters of
    compatible ops around them (on GPUs; on CPUs only with
    TF_XLA_FLAGS=--tf_xla_cpu_global_jit).
    """
    if not enable_xla:
        return "off"
    if device.kind == "cpu" and device.policy_name == "mixed_bfloat16":
        logging.warning(
            "--enable_xla with --amp on CPU: XLA's bfloat16 matmuls are slow here (the "
            "tools/bench/train --xla step ran at a third of the uncompiled one); drop "
            "--enable_xla for bfloat16 training on CPU"
        )
    if world == 1:
        return "step"
    logging.warning(
        "--enable_xla with %d ranks: the all-to-all cannot be compiled; using XLA "
        "auto-clustering for the rest of the step",
        world,
    )
    tf.config.optimizer.set_jit("autoclustering")
    return "auto"
