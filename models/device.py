"""Device selection and precision policy: the only module that names device types.

`resolve_device` is a pure function of the requested kind, the legacy
``--use_mlus`` / ``--use_gpus`` booleans, the visible physical devices and the
local rank; `apply_device` makes TensorFlow and Keras follow its decision.
Both must run before TensorFlow initialises its devices (before any op).

Precision: with AMP, accelerators (MLU, GPU) compute in float16 with a static
loss scale, the CPU in bfloat16 (same exponent range as float32: no loss
scale needed); without AMP everything is float32. Embedding tables stay
float32 in every case (see `models/layers/embedding.py`). A CPU without native
bfloat16 arithmetic trains slower with AMP than without: `cpu_amp_warning`
says so once at start.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from models.config import ConfigError, DeviceConfig
from models.cpu_features import NATIVE_BF16_FLAGS, lacks_native_bf16, parse_cpuinfo, read_cpuinfo

# Kind name -> TensorFlow device type. Cambricon's TensorFlow registers "MLU".
DEVICE_TYPES = {"mlu": "MLU", "gpu": "GPU", "cpu": "CPU"}
# `auto` takes the first kind of this list that has a visible device.
AUTO_PREFERENCE = ("mlu", "gpu", "cpu")
KINDS = ("auto", *DEVICE_TYPES)
# What --amp cost on a CPU without native bfloat16: python -m tools.bench train, bf16 against fp32
# samples/s (6,105 against 6,488-7,270), same config, fresh processes, 2-core AMD EPYC (Zen 3).
AMP_COST_WITHOUT_NATIVE_BF16 = "measured 0.84-0.94x the FP32 throughput on an AMD EPYC Zen 3"


class PhysicalDeviceLike(Protocol):
    """What `tf.config.list_physical_devices` returns (name and device_type)."""

    name: str
    device_type: str


@dataclass(frozen=True)
class DeviceSetup:
    """The resolved device and precision of this process.

    Attributes:
        kind: "mlu", "gpu" or "cpu".
        device_names: physical devices this process keeps visible, e.g.
            ``("/physical_device:GPU:1",)``; for the CPU, the CPU devices.
        logical_device: name to place ops on after pinning, e.g. "/device:GPU:0".
        policy_name: Keras dtype policy: "float32", "mixed_float16" or "mixed_bfloat16".
        loss_scale: static loss scale for the dense optimizer, None when the
            policy does not need one.
        memory_limit_gb: device memory given to TensorFlow (accelerators only).
    """

    kind: str
    device_names: tuple[str, ...]
    logical_device: str
    policy_name: str
    loss_scale: float | None
    memory_limit_gb: float | None = None

    @property
    def is_accelerator(self) -> bool:
        return self.kind != "cpu"


def _requested_kind(device: str, use_mlus: bool, use_gpus: bool) -> str:
    if device not in KINDS:
        raise ConfigError(f"--device must be one of {KINDS}, got {device!r}")
    if use_mlus and use_gpus:
        raise ConfigError("--use_mlus and --use_gpus are both set; choose one")
    legacy = "mlu" if use_mlus else "gpu" if use_gpus else None
    if legacy and device not in ("auto", legacy):
        raise ConfigError(f"--use_{legacy}s contradicts --device={device}")
    return legacy or device


def resolve_device(
    physical_devices: Sequence[PhysicalDeviceLike],
    device: str = "auto",
    use_mlus: bool = False,
    use_gpus: bool = False,
    use_amp: bool = False,
    loss_scale: float = 1024.0,
    local_rank: int = 0,
    memory_limit_gb: float | None = None,
) -> DeviceSetup:
    """Decides the device and the precision policy of one process.

    Args:
        physical_devices: every visible physical device (objects with
            ``name`` and ``device_type``, as `tf.config.list_physical_devices()`).
        device: "auto", "mlu", "gpu" or "cpu"; "auto" takes MLU, then GPU,
            then CPU, the first kind present.
        use_mlus: legacy flag, same as ``device="mlu"``.
        use_gpus: legacy flag, same as ``device="gpu"``.
        use_amp: mixed precision (float16 + loss scale on accelerators,
            bfloat16 on the CPU).
        loss_scale: static loss scale used with float16.
        local_rank: rank of this process on its node; it gets the accelerator
            of that index (one device per rank).
        memory_limit_gb: device memory for TensorFlow on an accelerator.

    Raises:
        ConfigError: contradictory flags, a requested kind with no device, more
            local ranks than devices, a non-positive loss scale or memory limit.
    """
    kind = _requested_kind(device, use_mlus, use_gpus)
    by_kind = {
        k: [d.name for d in physical_devices if d.device_type == t] for k, t in DEVICE_TYPES.items()
    }
    if kind == "auto":
        kind = next((k for k in AUTO_PREFERENCE if by_kind[k]), "cpu")
    visible = sorted(f"{d.name} ({d.device_type})" for d in physical_devices)
    if not by_kind[kind]:
        raise ConfigError(
            f"--device={kind} requested but no {DEVICE_TYPES[kind]} is visible: {visible}"
        )
    if local_rank < 0:
        raise ConfigError(f"local_rank must be >= 0, got {local_rank}")
    if use_amp and loss_scale <= 0:
        raise ConfigError(f"--loss_scale must be positive, got {loss_scale}")
    if memory_limit_gb is not None and memory_limit_gb <= 0:
        raise ConfigError(f"--tf_mlu_memory_limit_gb must be positive, got {memory_limit_gb}")

    device_type = DEVICE_TYPES[kind]
    if kind == "cpu":
        # All ranks of a node share the CPU; the memory limit concerns accelerators only.
        names = tuple(by_kind["cpu"])
        memory_limit_gb = None
    else:
        candidates = by_kind[kind]
        if local_rank >= len(candidates):
            raise ConfigError(
                f"local rank {local_rank} needs its own {device_type} but only "
                f"{len(candidates)} are visible: {candidates}"
            )
        names = (candidates[local_rank],)

    if not use_amp:
        policy, scale = "float32", None
    elif kind == "cpu":
        policy, scale = "mixed_bfloat16", None
    else:
        policy, scale = "mixed_float16", float(loss_scale)
    return DeviceSetup(
        kind=kind,
        device_names=names,
        logical_device=f"/device:{device_type}:0",
        policy_name=policy,
        loss_scale=scale,
        memory_limit_gb=memory_limit_gb,
    )


def apply_device(
    setup: DeviceSetup,
    physical_devices: Sequence[PhysicalDeviceLike],
    config_api: Any = tf.config,
) -> None:
    """Pins the device, sets its memory limit and the global Keras dtype policy.

    Args:
        setup: the result of `resolve_device`.
        physical_devices: the same list given to `resolve_device`.
        config_api: `tf.config` (tests pass a recording fake).

    Raises:
        RuntimeError: TensorFlow already initialised its devices.
    """
    device_type = DEVICE_TYPES[setup.kind]
    chosen = [d for d in physical_devices if d.name in setup.device_names]
    present = {d.device_type for d in physical_devices}
    try:
        # Every accelerator type present is restricted: this rank's device for the
        # chosen kind, nothing for the others (e.g. GPUs when training on the CPU).
        for accel_type in (t for k, t in DEVICE_TYPES.items() if k != "cpu"):
            if accel_type in present:
                config_api.set_visible_devices(
                    chosen if accel_type == device_type else [], accel_type
                )
        if setup.is_accelerator and setup.memory_limit_gb is not None:
            config_api.set_logical_device_configuration(
                chosen[0],
                [
                    config_api.LogicalDeviceConfiguration(
                        memory_limit=int(setup.memory_limit_gb * 1024)
                    )
                ],
            )
    except RuntimeError as err:
        raise RuntimeError(
            "the device must be configured before TensorFlow runs any op "
            f"(call models.device.setup_device first): {err}"
        ) from err
    keras.mixed_precision.set_global_policy(setup.policy_name)


def apply_threading(inter_op: int | None, intra_op: int | None) -> None:
    """Sets TensorFlow's thread pools; None keeps TensorFlow's default."""
    if inter_op is not None:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    if intra_op is not None:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)


def cpu_amp_warning(setup: DeviceSetup, cpuinfo: str | None) -> str | None:
    """One line telling that bfloat16 AMP on this CPU is likely slower than FP32, else None.

    Only for the CPU with the ``mixed_bfloat16`` policy, when ``cpuinfo`` (the
    text of ``/proc/cpuinfo``) shows none of `NATIVE_BF16_FLAGS`; None where
    the flags are unknown.
    """
    if setup.kind != "cpu" or setup.policy_name != "mixed_bfloat16" or cpuinfo is None:
        return None
    model, flags = parse_cpuinfo(cpuinfo)
    if not lacks_native_bf16(flags):
        return None
    missing = " or ".join(f.upper() for f in NATIVE_BF16_FLAGS)
    return (
        f"--amp on a CPU without native bfloat16 ({model or 'model unknown'}: no {missing}): "
        f"mixed_bfloat16 is likely slower than FP32 here ({AMP_COST_WITHOUT_NATIVE_BF16}); "
        "consider training without --amp"
    )


def setup_device(config: DeviceConfig, loss_scale: float, local_rank: int = 0) -> DeviceSetup:
    """Resolves and applies the device of this process from the run configuration."""
    physical = tf.config.list_physical_devices()
    setup = resolve_device(
        physical,
        device=config.device,
        use_mlus=config.use_mlus,
        use_gpus=config.use_gpus,
        use_amp=config.use_amp,
        loss_scale=loss_scale,
        local_rank=local_rank,
        memory_limit_gb=config.memory_limit_gb,
    )
    apply_threading(config.inter_op_parallelism, config.intra_op_parallelism)
    apply_device(setup, physical)
    logging.info(
        "device %s %s, policy %s, loss scale %s",
        setup.kind,
        setup.device_names,
        setup.policy_name,
        setup.loss_scale,
    )
    warning = cpu_amp_warning(setup, read_cpuinfo())
    if warning and local_rank == 0:  # once per node: its ranks share the CPU
        logging.warning(warning)
    return setup


# Kinds whose TensorFlow builds compile XLA functions (the CPU and CUDA wheels);
# an MLU build is not assumed to.
XLA_KINDS = ("cpu", "gpu")


def xla_available(kind: str) -> bool:
    """Whether XLA-compiled functions run on the device of ``kind``.

    Probed once by compiling and running a small scatter (what the compiled
    embedding update does) on the current device: a TensorFlow build without
    XLA for it fails here, with a warning, instead of at the first step.
    """
    if kind not in XLA_KINDS:
        return False
    try:
        probe = tf.Variable(tf.zeros([4, 2]), trainable=False)
        update = tf.IndexedSlices(tf.ones([3, 2]), tf.constant([1, 3, 1]))
        tf.function(lambda: probe.scatter_sub(update).read_value(), jit_compile=True)()
        ok = np.array_equal(probe.numpy(), [[0, 0], [-2, -2], [0, 0], [-1, -1]])
    except (tf.errors.OpError, NotImplementedError, ValueError) as error:
        logging.warning("XLA is not available on %s (%s); not compiling with it", kind, error)
        return False
    if not ok:
        logging.warning("XLA scatter on %s gave wrong values; not compiling with it", kind)
    return ok
