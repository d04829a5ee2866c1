"""Input drift: training-frame statistics in the artifact, and the runtime's warning."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from anodet.drift import InputMonitor, MonitorSettings, compare, frame_stats, input_stats
from anodet.errors import AnodetError
from anodet.runtime.frames import Frame


def part_frame(seed: int, *, step: float = 0.0, holes: float = 0.0, h: int = 48, w: int = 64, light: int = 0):
    """A tilted surface at ~0.5 m with fine texture; depth rounded to ``step`` metres if > 0."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = (0.5 + 0.0004 * xx + 0.0002 * yy + rng.normal(0, 0.0001, (h, w))).astype(np.float32)
    if step:
        depth = (np.round(depth / step) * step).astype(np.float32)
    if holes:
        depth[rng.random((h, w)) < holes] = 0
    rgb = np.clip(rng.normal(110 + light, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    return rgb, depth


TRAINED = input_stats(part_frame(i) for i in range(6))


def test_frame_stats_measure_step_holes_and_noise():
    rgb, depth = part_frame(0, step=0.001, holes=0.2)
    s = frame_stats(rgb, depth)
    assert s["depth_step_m"] == pytest.approx(0.001, rel=1e-3)
    assert s["valid_fraction"] == pytest.approx(0.8, abs=0.03)
    assert frame_stats(*part_frame(0))["depth_step_m"] < 2e-5  # continuous
    assert set(frame_stats(rgb, None)) == {"height", "width", "r_mean", "g_mean", "b_mean", "r_std", "g_std", "b_std"}
    assert TRAINED["frames"] == 6 and TRAINED["valid_fraction"] == 1.0


@pytest.mark.parametrize("change, kind", [
    ({"step": 0.001}, "depth_step"),
    ({"holes": 0.4}, "depth_holes"),
    ({"light": 80}, "colour"),
    ({"h": 96, "w": 128}, "resolution"),
])
def test_compare_names_what_differs(change, kind):
    live = input_stats(part_frame(10 + i, **change) for i in range(3))
    found = compare(TRAINED, live)
    assert list(found) == [kind] if kind != "resolution" else kind in found
    assert compare(TRAINED, input_stats(part_frame(20 + i) for i in range(3))) == {}


def test_one_millimetre_steps_into_a_continuous_model_say_what_to_do():
    live = input_stats(part_frame(i, step=0.001) for i in range(3))
    msg = compare(TRAINED, live)["depth_step"]
    assert msg.startswith("depth arrives in 1 mm steps; the model was trained on continuous depth")
    assert "anodet-capture" in msg
    # trained on 1 mm steps itself: the same stream is fine
    assert compare(input_stats(part_frame(i, step=0.001) for i in range(6)), live) == {}


def test_steps_the_model_was_augmented_with_are_no_drift_but_coarser_ones_are():
    trained = input_stats((part_frame(i) for i in range(6)), augment_steps=(0.001,))
    assert trained["depth_step_m"] < 2e-5 and trained["depth_augment_step_m"] == 0.001
    assert compare(trained, input_stats(part_frame(i, step=0.001) for i in range(3))) == {}
    msg = compare(trained, input_stats(part_frame(i, step=0.004) for i in range(3)))["depth_step"]
    assert "trained on continuous depth and on 1 mm steps" in msg


def test_monitor_warns_once_and_strict_raises(caplog):
    mon = InputMonitor(TRAINED, settings=MonitorSettings(first=3, every=1, min_samples=3))
    with caplog.at_level(logging.WARNING):
        for i in range(10):
            mon.observe(*part_frame(i, step=0.001))
    assert caplog.text.count("input drift: depth arrives in 1 mm steps") == 1
    assert mon.note == "inputs differ: depth_step" and list(mon.problems) == ["depth_step"]
    strict = InputMonitor(TRAINED, strict=True, settings=MonitorSettings(first=3, every=1, min_samples=3))
    with pytest.raises(AnodetError, match="input drift: depth arrives in 1 mm steps.*--strict-inputs"):
        for i in range(3):
            strict.observe(*part_frame(i, step=0.001))


def test_monitor_notices_when_nearly_everything_is_flagged(caplog):
    mon = InputMonitor(TRAINED, settings=MonitorSettings(flag_window=10))
    with caplog.at_level(logging.WARNING):
        mon.record(9, 9)  # fewer than flag_window frames: too early to tell
        mon.record(10, 8)  # a burst of real defects is not "everything"
        assert not mon.problems
        mon.record(10, 9)
    assert "9 of the last 10 frames were flagged: if these parts are good" in caplog.text


# --- through anodet-run ------------------------------------------------------------------------

class Frames:
    live = False
    description = "test frames"

    def __init__(self, pairs):
        self.pairs = pairs

    def __iter__(self):
        for i, (rgb, depth) in enumerate(self.pairs):
            yield Frame(i, time.time(), rgb, depth, f"f{i}")

    def close(self):
        pass


@pytest.fixture(scope="module")
def model_with_stats(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from fake_model import make_fake_model

    return make_fake_model(tmp_path_factory.mktemp("drift") / "m.onnx", info_fields={"input_stats": TRAINED})


def test_stream_of_stepped_depth_warns_in_log_and_summary(model_with_stats, caplog):
    from anodet.runtime import run

    with caplog.at_level(logging.WARNING):
        summary = run(model_with_stats, Frames([part_frame(i, step=0.001) for i in range(8)]), stats_every=0)
    assert summary.frames == 8 and "depth arrives in 1 mm steps" in str(summary)
    assert caplog.text.count("input drift:") == 1


def test_matching_stream_stays_quiet(model_with_stats, caplog):
    from anodet.runtime import run

    with caplog.at_level(logging.WARNING):
        summary = run(model_with_stats, Frames([part_frame(30 + i) for i in range(8)]), stats_every=0)
    assert summary.input_warnings == [] and "input drift" not in caplog.text


def test_strict_inputs_stop_the_stream_with_one_line(model_with_stats, tmp_path):
    import cv2
    import tifffile
    from click.testing import CliRunner

    from anodet.cli import run_cmd

    data = tmp_path / "frames"
    (data / "rgb").mkdir(parents=True)
    (data / "depth").mkdir()
    for i in range(6):
        rgb, depth = part_frame(i, step=0.001)
        cv2.imwrite(str(data / "rgb" / f"{i:03d}.png"), rgb[..., ::-1])
        tifffile.imwrite(str(data / "depth" / f"{i:03d}.tiff"), depth)
    res = CliRunner().invoke(run_cmd, ["--model", str(model_with_stats), "--source", str(data), "--strict-inputs"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: input drift: depth arrives in 1 mm steps")
    assert "Traceback" not in res.output
