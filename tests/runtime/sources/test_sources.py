"""Sources: folder layouts, --source parsing, reconnect with backoff, synthetic frames."""

from __future__ import annotations

import logging
import sys
import types

import cv2
import numpy as np
import pytest
from fake_model import FlakyDevice, flat_frame, write_pair

from anodet.errors import AnodetError
from anodet.runtime.sources import FolderSource, SyntheticSource, open_source


def test_plain_rgb_depth_pairs(tmp_path):
    rgb0, depth0 = write_pair(tmp_path / "rgb", tmp_path / "depth", "a", depth_kind="png")
    write_pair(tmp_path / "rgb", tmp_path / "depth", "b", depth_kind="npy", bump=0.03)
    cv2.imwrite(
        str(tmp_path / "rgb" / "c.png"), np.zeros((24, 32, 3), np.uint8)
    )  # no depth partner
    source = open_source(str(tmp_path))
    assert isinstance(source, FolderSource) and not source.live
    frames = list(source)
    assert [f.name for f in frames] == ["rgb/a.png", "rgb/b.png", "rgb/c.png"]
    assert [f.index for f in frames] == [0, 1, 2]
    np.testing.assert_array_equal(frames[0].rgb, rgb0)
    np.testing.assert_allclose(frames[0].depth, depth0, atol=1e-6)
    assert frames[1].depth.min() == pytest.approx(0.47)
    assert frames[2].depth is None
    assert all(f.truth is None for f in frames)


def test_mvtec_like_test_tree_with_truth(tmp_path):
    for kind, bump in (("good", 0.0), ("crack", 0.03)):
        for i in range(2):
            write_pair(
                tmp_path / "test" / kind / "rgb",
                tmp_path / "test" / kind / "xyz",
                f"{i:03d}",
                bump=bump,
                depth_kind="tiff",
                seed=i,
            )
    (tmp_path / "test" / "crack" / "gt").mkdir()
    frames = list(FolderSource(tmp_path))
    assert [f.name for f in frames] == [
        "test/crack/rgb/000.png",
        "test/crack/rgb/001.png",
        "test/good/rgb/000.png",
        "test/good/rgb/001.png",
    ]
    assert [f.truth for f in frames] == [True, True, False, False]
    assert frames[0].depth.shape == (24, 32) and frames[0].depth.dtype == np.float32


def test_corrupt_file_becomes_an_error_frame(tmp_path):
    write_pair(tmp_path / "rgb", tmp_path / "depth", "a")
    (tmp_path / "rgb" / "b.png").write_bytes(b"broken")
    frames = list(FolderSource(tmp_path))
    assert frames[0].error is None
    assert frames[1].error and "b.png" in frames[1].error and frames[1].rgb is None


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(AnodetError, match="no images in an rgb/ subfolder"):
        FolderSource(tmp_path)


def test_source_spec_errors_list_the_forms(tmp_path):
    with pytest.raises(AnodetError, match="valid sources: realsense"):
        open_source("webcam0")
    with pytest.raises(AnodetError, match="positive integer"):
        open_source("synthetic:ten")
    with pytest.raises(AnodetError, match="recording .* not found"):
        open_source(str(tmp_path / "missing.db3"))
    other = tmp_path / "clip.mp4"
    other.write_bytes(b"x")
    with pytest.raises(AnodetError, match="unknown kind"):
        open_source(str(other))
    assert open_source("synthetic:5").count == 5
    assert open_source("synthetic").count is None


def test_live_source_reconnects_with_backoff(caplog):
    cam = FlakyDevice(refusals=2)
    with caplog.at_level(logging.WARNING, logger="anodet.runtime.sources"):
        frames = list(cam)
    assert [f.index for f in frames] == list(range(10))
    assert cam.reconnects == 1 and cam.connects == 4 and not cam.connected
    messages = [r.getMessage() for r in caplog.records]
    assert sum("reconnect attempt" in m for m in messages) == 2
    assert any("reconnected after 3 attempt(s)" in m for m in messages)


def test_live_source_gives_up_with_a_clear_error():
    cam = FlakyDevice(refusals=10**6, give_up_after=0.2)
    with pytest.raises(AnodetError, match="did not come back within 0.2 s"):
        list(cam)
    assert not cam.connected


def fake_make_frame(rng, size, defect):
    """Stand-in for anodet.data.synthetic.make_frame with the same signature and outputs."""
    rgb, depth = flat_frame(
        size, size, bump=0.03 if defect else 0.0, seed=int(rng.integers(1 << 30))
    )
    assert defect in (None, "colour", "geometry", "crack")
    mask = depth < 0.5
    return rgb, depth, mask


def test_synthetic_source_with_a_stand_in_generator(monkeypatch):
    module = types.ModuleType("anodet.data.synthetic")
    module.make_frame = fake_make_frame
    module.DEFECT_TYPES = ("colour", "geometry", "crack")
    monkeypatch.setitem(sys.modules, "anodet.data.synthetic", module)
    frames = list(SyntheticSource(20, size=32, defect_rate=0.5, seed=1))
    assert len(frames) == 20 and not SyntheticSource(3).live and SyntheticSource(3, fps=5).live
    assert {f.truth for f in frames} == {True, False}
    assert frames[0].rgb.shape == (32, 32, 3) and frames[0].depth.dtype == np.float32


def test_synthetic_source_with_the_real_generator():
    frames = list(SyntheticSource(8, size=64, defect_rate=0.5, seed=0))
    assert len(frames) == 8 and {f.truth for f in frames} == {True, False}
    assert all(f.truth == f.name.endswith(")") for f in frames)  # defective frames name their type
    for f in frames:
        assert f.rgb.dtype == np.uint8 and f.rgb.shape == (64, 64, 3)
        assert f.depth.dtype == np.float32 and f.depth.shape == (64, 64)
