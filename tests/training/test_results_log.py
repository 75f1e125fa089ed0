"""Results log: JSON lines read back, console on rank 0 only, TensorBoard scalars."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from models.training.results_log import ResultsLogger, format_value, read_results_log


def fake_clock():
    ticks = iter(range(1000, 2000))
    return lambda: float(next(ticks))


def write_run(path: Path, stream: io.StringIO, rank: int = 0, **kwargs) -> None:
    with ResultsLogger(path, rank=rank, stream=stream, clock=fake_clock(), **kwargs) as log:
        log.parameters({"batch_size": 4096, "optimizer": "sgd", "dims": (512, 256)})
        log.log(1000, {"loss": np.float32(0.125), "learning_rate": 24.0, "samples_per_second": 2e5})
        log.log((1, 2000), {"loss": 0.5})
        log.result({"throughput": 123456.78, "mean_step_time_ms": 33.3, "auc": 0.80251234})


def test_log_file_parses_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "log.json"
    write_run(path, io.StringIO())
    entries = read_results_log(path)

    metadata = {e.data["metric"]: e.data for e in entries if e.type == "METADATA"}
    assert metadata["throughput"] == {"metric": "throughput", "unit": "samples/s", "format": ":.1f"}
    assert all(e.step == "PARAMETER" for e in entries if e.type == "METADATA")

    rest = [e for e in entries if e.type != "METADATA"]
    assert [(e.type, e.step) for e in rest] == [
        ("LOG", "PARAMETER"),
        ("LOG", 1000),
        ("LOG", (1, 2000)),
        ("RESULT", "RESULT"),
    ]
    assert rest[0].data == {"batch_size": 4096, "optimizer": "sgd", "dims": [512, 256]}
    assert rest[1].data == {"loss": 0.125, "learning_rate": 24.0, "samples_per_second": 2e5}
    assert rest[3].data["auc"] == 0.80251234
    timestamps = [e.timestamp for e in entries]
    assert timestamps == sorted(timestamps) and timestamps[0] == 1000.0
    for line in path.read_text().splitlines():
        assert sorted(json.loads(line)) == ["data", "step", "timestamp", "type"]


def test_console_lines_and_result_block(tmp_path: Path) -> None:
    stream = io.StringIO()
    write_run(tmp_path / "log.json", stream)
    lines = stream.getvalue().splitlines()
    assert (
        lines[0] == "step 1000 | loss: 0.12500 | learning_rate: 24 | samples_per_second: 200000.0"
    )
    assert lines[1] == "step 1 2000 | loss: 0.50000"
    block = "\n".join(lines[2:])
    assert "RESULTS" in block
    assert "throughput         123456.8 samples/s" in block
    assert "mean_step_time_ms  33.300 ms" in block
    assert "auc                0.802512" in block


def test_other_ranks_write_nothing(tmp_path: Path) -> None:
    stream = io.StringIO()
    write_run(tmp_path / "log.json", stream, rank=1)
    assert stream.getvalue() == ""
    assert not (tmp_path / "log.json").exists()


def test_append_keeps_earlier_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    write_run(path, io.StringIO())
    first = len(read_results_log(path))
    write_run(path, io.StringIO(), append=True)
    assert len(read_results_log(path)) == 2 * first
    write_run(path, io.StringIO())
    assert len(read_results_log(path)) == first


def test_invalid_steps_are_rejected(tmp_path: Path) -> None:
    with ResultsLogger(tmp_path / "log.json", stream=io.StringIO()) as log:
        with pytest.raises(ValueError, match="integer or tuple step, got 'RESULT'"):
            log.log("RESULT", {"loss": 1.0})
        with pytest.raises(ValueError, match="got True"):
            log.log(True, {"loss": 1.0})
        with pytest.raises(TypeError, match="object is not JSON serializable"):
            log.log(1, {"loss": object()})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "log.json:2: not a JSON line"),
        ("[1, 2]", "log.json:2: expected a JSON object, got list"),
        ('{"timestamp": 1, "type": "LOG", "data": {}}', r"log.json:2: missing keys \['step'\]"),
        ('{"timestamp": 1, "type": "DEBUG", "step": 1, "data": {}}', "type 'DEBUG' not one of"),
        ('{"timestamp": 1, "type": "LOG", "step": 1.5, "data": {}}', "log.json:2: step must be"),
    ],
)
def test_read_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "log.json"
    good = '{"timestamp": 1, "type": "LOG", "step": 3, "data": {"loss": 1}}'
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(ValueError, match=message):
        read_results_log(path)


def test_format_value() -> None:
    assert format_value(0.123456789, ":.3f") == "0.123"
    assert format_value(float("nan"), ":.3f") == "nan"
    assert format_value(7) == "7"
    assert format_value("sgd", ":.3f") == "sgd"


def test_tensorboard_scalars(tmp_path: Path) -> None:
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    write_run(tmp_path / "log.json", io.StringIO(), tensorboard_dir=tmp_path / "tb")
    files = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(files) == 1
    scalars = {}
    for record in tf.data.TFRecordDataset(str(files[0])):
        event = event_pb2.Event.FromString(record.numpy())
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "scalars":
                scalars[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
    assert scalars[("loss", 1000)] == pytest.approx(0.125)
    assert scalars[("samples_per_second", 1000)] == pytest.approx(2e5)
    assert scalars[("result/auc", 1000)] == pytest.approx(0.80251234)
    assert not any(step == 2000 for _, step in scalars), "tuple steps are not TensorBoard steps"
    texts = [
        v.tensor.string_val[0].decode()
        for record in tf.data.TFRecordDataset(str(files[0]))
        for v in event_pb2.Event.FromString(record.numpy()).summary.value
        if v.metadata.plugin_data.plugin_name == "text"
    ]
    assert len(texts) == 1 and '"batch_size": 4096' in texts[0]
