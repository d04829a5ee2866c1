"""A real RealSense recording, written by rs.software_device + rs.recorder, played through run().

No camera is needed: the SDK records numpy frames from a software device into a genuine
rosbag2 .db3 file and plays it back through rs.pipeline exactly as it plays a camera's file.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

rs = pytest.importorskip(
    "pyrealsense2", reason="pyrealsense2 cannot be imported (libusb-1.0-0 missing?)"
)
pytest.importorskip("onnxruntime")

from fake_model import flat_frame, make_fake_model

from anodet.errors import AnodetError
from anodet.runtime import open_source, run
from anodet.runtime.realsense import RealSenseSource, RecordingSource, make_filters
from anodet.runtime.recorder import write_recording

pytestmark = pytest.mark.camera

BUMPS = [0.0, 0.03, 0.0, 0.0, 0.025, 0.0, 0.0, 0.0, 0.04, 0.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """12 frames of 64 x 48 (not square, unlike the model), defects at frames 1, 4 and 8."""
    path = tmp_path_factory.mktemp("rec") / "synthetic.db3"
    frames = [flat_frame(48, 64, bump=b, seed=i) for i, b in enumerate(BUMPS)]
    assert write_recording(path, frames, fps=30) == len(BUMPS)
    return path, frames


@pytest.fixture(scope="module")
def fake_model_path(tmp_path_factory):
    return make_fake_model(tmp_path_factory.mktemp("fake") / "fake.onnx")


def test_recording_plays_back_every_frame_exactly(recording):
    path, frames = recording
    source = open_source(str(path))
    assert isinstance(source, RecordingSource) and not source.live
    got = list(source)
    assert [f.index for f in got] == list(range(len(BUMPS)))
    assert source.fps == 30
    for f, (rgb, depth) in zip(got, frames):
        np.testing.assert_array_equal(f.rgb, rgb)  # rgb8 is stored losslessly
        valid = f.depth > 0  # aligning depth to colour leaves a thin border without depth
        assert valid.mean() > 0.9
        np.testing.assert_allclose(f.depth[valid], depth[valid], atol=0.0011)  # z16 mm units
    stamps = [f.timestamp for f in got]
    assert np.allclose(np.diff(stamps), 1 / 30, atol=1e-3)


def test_recording_through_run_flags_the_defects(tmp_path, recording, fake_model_path):
    path, _ = recording
    events = tmp_path / "events.jsonl"
    summary = run(fake_model_path, str(path), events=events, stats_every=0)
    recs = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(recs) == len(BUMPS) == summary.frames
    assert [r["anomalous"] for r in recs] == [b > 0 for b in BUMPS]
    assert summary.drops == 0 and summary.skipped == 0 and summary.stopped_by == "end"


def test_recording_with_sdk_filters(tmp_path, recording, fake_model_path):
    path, _ = recording
    source = RecordingSource(path, filters=("spatial", "temporal", "hole_filling"))
    summary = run(fake_model_path, source, stats_every=0)
    assert summary.frames == len(BUMPS)


def test_filter_names_are_checked():
    assert len(make_filters(["spatial", "temporal", "hole_filling"])) == 5
    with pytest.raises(AnodetError, match="valid: spatial, temporal, hole_filling"):
        make_filters(["decimate"])


def test_write_recording_checks_its_input(tmp_path):
    with pytest.raises(AnodetError, match=".db3 files only"):
        write_recording(tmp_path / "x.bag", [flat_frame()])
    with pytest.raises(AnodetError, match="frame 1 is rgb uint8 \\(24, 32, 3\\)"):
        write_recording(tmp_path / "x.db3", [flat_frame(48, 64), flat_frame(24, 32)])


def test_no_camera_is_a_clear_error():
    if len(rs.context().query_devices()):
        pytest.skip("a RealSense camera is connected")
    with pytest.raises(
        AnodetError, match="cannot open RealSense camera 12345: no such camera connected"
    ):
        list(RealSenseSource("12345"))
