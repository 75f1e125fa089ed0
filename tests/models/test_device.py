"""Device resolution with fake device lists (MLU and GPU cannot run here)."""

from types import SimpleNamespace

import keras
import pytest
import tensorflow as tf

from models.config import ConfigError, DeviceConfig
from models.device import (
    DeviceSetup,
    apply_device,
    cpu_amp_warning,
    resolve_device,
    setup_device,
)
from tests.models.test_cpu_features import AMD_ZEN3, AMD_ZEN4, ARM, INTEL_AMX


def _devices(mlus=0, gpus=0):
    found = [tf.config.PhysicalDevice("/physical_device:CPU:0", "CPU")]
    found += [tf.config.PhysicalDevice(f"/physical_device:MLU:{i}", "MLU") for i in range(mlus)]
    found += [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(gpus)]
    return found


@pytest.mark.parametrize(
    ("devices", "kwargs", "kind", "names"),
    [
        (_devices(), {}, "cpu", ("/physical_device:CPU:0",)),
        (_devices(gpus=2), {}, "gpu", ("/physical_device:GPU:0",)),
        (_devices(mlus=2, gpus=2), {}, "mlu", ("/physical_device:MLU:0",)),
        (_devices(mlus=2, gpus=2), {"device": "gpu"}, "gpu", ("/physical_device:GPU:0",)),
        (_devices(mlus=2, gpus=2), {"use_gpus": True}, "gpu", ("/physical_device:GPU:0",)),
        (_devices(mlus=4), {"use_mlus": True, "local_rank": 3}, "mlu", ("/physical_device:MLU:3",)),
        (_devices(gpus=2), {"device": "cpu"}, "cpu", ("/physical_device:CPU:0",)),
        (_devices(gpus=2), {"device": "gpu", "local_rank": 1}, "gpu", ("/physical_device:GPU:1",)),
    ],
)
def test_kind_and_device_per_local_rank(devices, kwargs, kind, names):
    setup = resolve_device(devices, **kwargs)
    assert setup.kind == kind
    assert setup.device_names == names
    assert setup.logical_device == f"/device:{kind.upper()}:0"
    assert setup.policy_name == "float32"
    assert setup.loss_scale is None


@pytest.mark.parametrize(
    ("devices", "policy", "scale"),
    [
        (_devices(mlus=1), "mixed_float16", 512.0),
        (_devices(gpus=1), "mixed_float16", 512.0),
        (_devices(), "mixed_bfloat16", None),
    ],
)
def test_amp_policy_by_kind(devices, policy, scale):
    setup = resolve_device(devices, use_amp=True, loss_scale=512)
    assert (setup.policy_name, setup.loss_scale) == (policy, scale)


@pytest.mark.parametrize(
    ("devices", "kwargs", "message"),
    [
        (_devices(gpus=1), {"use_mlus": True, "use_gpus": True}, "both set"),
        (_devices(gpus=1), {"device": "gpu", "use_mlus": True}, "--use_mlus contradicts"),
        (_devices(gpus=1), {"device": "mlu"}, r"no MLU is visible: \['/physical_device:CPU:0"),
        (_devices(gpus=2), {"local_rank": 2}, "local rank 2 needs its own GPU but only 2"),
        (_devices(), {"device": "tpu"}, "--device must be one of"),
        (_devices(gpus=1), {"use_amp": True, "loss_scale": 0}, "loss_scale must be positive"),
        (_devices(gpus=1), {"memory_limit_gb": 0}, "memory_limit_gb must be positive"),
    ],
)
def test_invalid_requests_are_explained(devices, kwargs, message):
    # ConfigError: dlrm_main reports it as a message with status 2, not a traceback.
    with pytest.raises(ConfigError, match=message):
        resolve_device(devices, **kwargs)


def test_memory_limit_kept_for_accelerators_dropped_for_cpu():
    assert resolve_device(_devices(mlus=1), memory_limit_gb=12).memory_limit_gb == 12
    assert resolve_device(_devices(), memory_limit_gb=12).memory_limit_gb is None


class _RecordingConfig:
    """Stands in for tf.config and records what apply_device asks of it."""

    LogicalDeviceConfiguration = SimpleNamespace

    def __init__(self):
        self.visible = {}
        self.logical = {}

    def set_visible_devices(self, devices, device_type):
        self.visible[device_type] = [d.name for d in devices]

    def set_logical_device_configuration(self, device, configurations):
        self.logical[device.name] = [c.memory_limit for c in configurations]


@pytest.fixture
def _restore_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.usefixtures("_restore_policy")
def test_apply_pins_one_device_hides_others_and_sets_policy():
    devices = _devices(mlus=2, gpus=1)
    setup = resolve_device(devices, use_mlus=True, local_rank=1, use_amp=True, memory_limit_gb=3)
    fake = _RecordingConfig()
    apply_device(setup, devices, config_api=fake)
    assert fake.visible == {"MLU": ["/physical_device:MLU:1"], "GPU": []}
    assert fake.logical == {"/physical_device:MLU:1": [3072]}
    assert keras.mixed_precision.global_policy().name == "mixed_float16"


@pytest.mark.usefixtures("_restore_policy")
def test_apply_on_cpu_hides_accelerators_and_uses_bfloat16():
    devices = _devices(gpus=2)
    fake = _RecordingConfig()
    apply_device(resolve_device(devices, device="cpu", use_amp=True), devices, config_api=fake)
    assert fake.visible == {"GPU": []}
    assert fake.logical == {}
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"


def test_apply_after_initialisation_says_what_to_do():
    class _Initialised(_RecordingConfig):
        def set_visible_devices(self, devices, device_type):
            raise RuntimeError("Visible devices cannot be modified after being initialized")

    devices = _devices(gpus=1)
    with pytest.raises(RuntimeError, match="before TensorFlow runs any op"):
        apply_device(resolve_device(devices), devices, config_api=_Initialised())


@pytest.mark.usefixtures("_restore_policy")
def test_setup_device_on_this_machine():
    setup = setup_device(DeviceConfig(device="cpu", use_amp=True), loss_scale=1024)
    assert isinstance(setup, DeviceSetup)
    assert setup.kind == "cpu"
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    with tf.device(setup.logical_device):
        assert float(tf.reduce_sum(tf.ones(3))) == 3.0


ZEN3_AMP_WARNING = (
    "--amp on a CPU without native bfloat16 (AMD EPYC 7763 64-Core Processor: no AVX512_BF16 "
    "or AMX_BF16): mixed_bfloat16 is likely slower than FP32 here (measured 0.84-0.94x the "
    "FP32 throughput on an AMD EPYC Zen 3); consider training without --amp"
)


def test_amp_on_a_cpu_without_native_bf16_gets_a_one_line_warning():
    cpu_amp = resolve_device(_devices(), use_amp=True)
    assert cpu_amp_warning(cpu_amp, AMD_ZEN3) == ZEN3_AMP_WARNING
    assert "\n" not in ZEN3_AMP_WARNING


@pytest.mark.parametrize(
    ("setup", "cpuinfo"),
    [
        (resolve_device(_devices(), use_amp=True), AMD_ZEN4),  # AVX-512 BF16
        (resolve_device(_devices(), use_amp=True), INTEL_AMX),  # AMX
        (resolve_device(_devices(), use_amp=False), AMD_ZEN3),  # FP32
        (resolve_device(_devices(gpus=1), use_amp=True), AMD_ZEN3),  # not the CPU: float16
        (resolve_device(_devices(mlus=1), use_amp=True), AMD_ZEN3),
        (resolve_device(_devices(), use_amp=True), ARM),  # flags unknown
        (resolve_device(_devices(), use_amp=True), None),  # no cpuinfo
    ],
)
def test_no_amp_warning_with_native_bf16_fp32_an_accelerator_or_unknown_flags(setup, cpuinfo):
    assert cpu_amp_warning(setup, cpuinfo) is None


@pytest.mark.usefixtures("_restore_policy")
def test_setup_device_warns_once_per_node(monkeypatch, caplog):
    monkeypatch.setattr("models.device.read_cpuinfo", lambda: AMD_ZEN3)
    with caplog.at_level("WARNING"):
        setup_device(DeviceConfig(device="cpu", use_amp=True), loss_scale=1024)
        setup_device(DeviceConfig(device="cpu", use_amp=True), loss_scale=1024, local_rank=1)
        setup_device(DeviceConfig(device="cpu"), loss_scale=1024)
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        ZEN3_AMP_WARNING
    ]


def test_xla_is_probed_on_cpu_and_not_assumed_on_mlu():
    from models.device import xla_available

    assert xla_available("cpu")  # the tensorflow-cpu wheel compiles XLA on CPU
    assert not xla_available("mlu")
