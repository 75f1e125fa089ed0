"""tools.plot_log: the PNG has the requested size and the curves carry the logs' values."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from models.training.results_log import ResultsLogger
from tools.plot_log import PANELS, main, render

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_training_log(path: Path, world_size: int, scale: float) -> dict[str, list]:
    """A log laid out as dlrm_main writes it; returns the logged (step, value) series."""
    series: dict[str, list] = {k: [] for k in ("loss", "samples_per_second", "auc", "val")}
    with ResultsLogger(path, stream=io.StringIO()) as log:
        log.parameters({"world_size": world_size, "data.batch_size": 256})
        for step in range(5, 45, 5):
            loss, rate = scale * 0.7 / (1 + step / 20), 1000.0 * scale * step
            log.log(step, {"loss": loss, "learning_rate": 0.1, "samples_per_second": rate})
            series["loss"].append((step, loss))
            series["samples_per_second"].append((step, rate))
            if step % 20 == 0:
                auc, val = 0.5 + step / 200 * scale, 0.6 - step / 400
                log.log(step, {"auc": auc, "validation_loss": val, "eval_samples": 512})
                series["auc"].append((step, auc))
                series["val"].append((step, val))
                log.log(step, {"checkpoint": f"/ckpt/ckpt-{step}"})  # text: not plotted
        log.result({"throughput": 1234.5, "auc": series["auc"][-1][1]})
    return series


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _xy(line) -> list[tuple[float, float]]:
    xs, ys = np.asarray(line.get_xdata()).tolist(), np.asarray(line.get_ydata()).tolist()
    return list(zip(xs, ys, strict=True))


def test_two_runs_overlaid_with_their_data(tmp_path: Path) -> None:
    one = write_training_log(tmp_path / "one" / "train_log.json", world_size=1, scale=1.0)
    two = write_training_log(tmp_path / "two" / "train_log.json", world_size=2, scale=0.8)
    output = tmp_path / "plots" / "run.png"
    logs = [tmp_path / "one" / "train_log.json", tmp_path / "two" / "train_log.json"]
    figure = render(logs, output, width_in=8, height_in=6, dpi=50)
    assert png_size(output) == (400, 300)
    loss_ax, auc_ax, rate_ax = figure.axes
    assert [ax.get_title() for ax in figure.axes] == [title for _, title, _ in PANELS]
    assert rate_ax.get_xlabel() == "step" and rate_ax.get_ylabel() == "samples/s"
    labels = ["one/train_log (1 rank)", "two/train_log (2 ranks)"]
    for series, label, line_index in ((one, labels[0], 0), (two, labels[1], 1)):
        assert rate_ax.lines[line_index].get_label() == label
        assert _xy(rate_ax.lines[line_index]) == series["samples_per_second"]
        assert _xy(auc_ax.lines[line_index]) == series["auc"]
    # Loss panel: per run, its training loss then its validation loss (dashed).
    assert [line.get_label() for line in loss_ax.lines] == [
        labels[0], f"{labels[0]}, validation", labels[1], f"{labels[1]}, validation"
    ]  # fmt: skip
    assert _xy(loss_ax.lines[0]) == one["loss"] and _xy(loss_ax.lines[1]) == one["val"]
    assert _xy(loss_ax.lines[2]) == two["loss"] and loss_ax.lines[3].get_linestyle() == "--"
    # The runs differ in colour, and both colours are drawn in the saved image.
    colours = [to_rgb(rate_ax.lines[i].get_color()) for i in (0, 1)]
    assert colours[0] != colours[1]
    pixels = np.asarray(Image.open(output).convert("RGB"), np.int16)
    for colour in colours:
        target = np.round(np.array(colour) * 255).astype(np.int16)
        assert (np.abs(pixels - target).sum(axis=2) < 30).sum() > 100, colour


def test_command_line_labels_and_size(tmp_path: Path, capsys) -> None:
    write_training_log(tmp_path / "a.json", world_size=1, scale=1.0)
    write_training_log(tmp_path / "b.json", world_size=1, scale=0.5)
    args = [str(tmp_path / "a.json"), str(tmp_path / "b.json"), "-o", str(tmp_path / "x.png")]
    assert main([*args, "--labels", "DLRM", "DCNv2", "--dpi", "40"]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'x.png'} (2 run(s))\n"
    assert png_size(tmp_path / "x.png") == (400, 360)  # the default 10 x 9 inches
    with pytest.raises(SystemExit):
        main([*args, "--labels", "only one"])
    assert "--labels: 1 labels for 2 logs" in capsys.readouterr().err


def _eval_only_log(path: Path) -> None:
    with ResultsLogger(path, stream=io.StringIO()) as log:
        log.parameters({"mode": "eval"})
        log.log(7, {"restored_checkpoint": "/ckpt/ckpt-7"})
        log.result({"auc": 0.8})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "{path}: No such file or directory"),
        (lambda p: p.write_text("step 5 | loss 0.3\n"), "{path}:1: not a JSON line"),
        (lambda p: p.write_bytes(PNG_SIGNATURE + bytes(range(256))), "{path}: not a results log"),
        (lambda p: p.mkdir(), "{path}: Is a directory"),
        (_eval_only_log, "{path}: no auc, loss, samples_per_second, validation_loss logged"),
        (lambda p: p.write_text(""), "{path}: no auc, loss"),
    ],
    ids=["missing", "text", "binary", "directory", "no_steps", "empty"],
)
def test_bad_input_gets_one_line(tmp_path: Path, capsys, make, message) -> None:
    path = tmp_path / "log.json"
    if make is not None:
        make(path)
    assert main([str(path), "-o", str(tmp_path / "out.png")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("error: " + message.format(path=path)), err
    assert not (tmp_path / "out.png").exists()
