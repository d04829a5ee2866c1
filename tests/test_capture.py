"""anodet-capture and training from a recording, on real .db3 files written by the SDK's
software device (no camera needed), plus every bad-input case of issue 13."""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path

import numpy as np
import pytest

rs = pytest.importorskip("pyrealsense2", reason="pyrealsense2 cannot be imported (libusb-1.0-0 missing?)")

from click.testing import CliRunner
from fake_model import FlakyDevice, flat_frame

from anodet import capture as capmod
from anodet.capture import capture, check_split, next_index, open_capture_source
from anodet.cli import main
from anodet.data import discover
from anodet.errors import AnodetError
from anodet.preprocess import load_depth, load_rgb
from anodet.runtime.sources.realsense import RecordingSource
from anodet.runtime.sources.recorder import write_recording

pytestmark = pytest.mark.camera
N = 8


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    """8 frames of 64 x 48 at 1 mm depth units."""
    path = tmp_path_factory.mktemp("rec") / "good.db3"
    assert write_recording(path, [flat_frame(48, 64, bump=0.01 * (i % 3), seed=i) for i in range(N)]) == N
    return path


@pytest.fixture(scope="module")
def played(rec):
    """What the runtime sees when it plays ``rec``: the reference for what capture wrote."""
    return list(RecordingSource(rec))


def cli(*args):
    res = CliRunner().invoke(main, ["capture", "--no-progress", *map(str, args)])
    return res.exit_code, res.output


def one_error_line(code, output):
    lines = [ln for ln in output.splitlines() if ln.startswith("error: ")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def write_streams(path, depth_size=None, colour_size=None, n=3):
    """A recording with only the given streams ((w, h) each, None = absent), no extrinsics."""
    dev = rs.software_device()
    sensors, profiles, specs = [], [], []
    for uid, (size, name, stream, fmt, bpp) in enumerate(
            ((depth_size, "Depth", rs.stream.depth, rs.format.z16, 2),
             (colour_size, "Color", rs.stream.color, rs.format.rgb8, 3)), start=1):
        if size is None:
            continue
        w, h = size
        intr = rs.intrinsics()
        intr.width, intr.height, intr.ppx, intr.ppy, intr.fx, intr.fy = w, h, w / 2, h / 2, w, w
        intr.model, intr.coeffs = rs.distortion.none, [0.0] * 5
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid, vs.width, vs.height = stream, 0, uid, w, h
        vs.fps, vs.bpp, vs.fmt, vs.intrinsics = 30, bpp, fmt, intr
        sensor = dev.add_sensor(name)
        profiles.append(sensor.add_video_stream(vs))
        sensors.append(sensor)
        specs.append((w, h, bpp))
        if bpp == 2:
            sensor.add_read_only_option(rs.option.depth_units, 0.001)
    recorder = rs.recorder(str(path), dev)
    wrapped, seen = recorder.query_sensors(), []
    for sensor, profile in zip(wrapped, profiles):
        sensor.open(profile)
        sensor.start(lambda f: seen.append(1))
    t0 = time.time() * 1000
    for i in range(n):
        for sensor, profile, (w, h, bpp) in zip(sensors, profiles, specs):
            pixels = np.full((h, w), 500, np.uint16) if bpp == 2 else np.full((h, w, 3), 90, np.uint8)
            f = rs.software_video_frame()
            f.pixels, f.stride, f.bpp, f.timestamp = pixels, w * bpp, bpp, t0 + i * 33.3
            f.domain, f.frame_number = rs.timestamp_domain.system_time, i
            f.profile = profile.as_video_stream_profile()
            if bpp == 2:
                f.depth_units = 0.001
            sensor.on_video_frame(f)
    deadline = time.monotonic() + 10
    while len(seen) < n * len(sensors) and time.monotonic() < deadline:
        time.sleep(0.005)
    for sensor in wrapped:
        sensor.stop()
        sensor.close()
    del recorder
    return path


@pytest.mark.parametrize("fmt", ["png", "tiff", "xyz"])
def test_capture_reads_back_in_metres(tmp_path, rec, played, fmt):
    code, out = cli("--source", rec, "--out", tmp_path, "--depth-format", fmt)
    assert code == 0, out
    split = tmp_path / "train" / "normal"
    suffix = ".png" if fmt == "png" else ".tiff"
    by_name = {f.name: f for f in played}  # a replayed pass may deliver sets out of file order
    (session,) = json.loads((tmp_path / "capture.json").read_text())["sessions"]
    assert sorted(f["source"] for f in session["frames"]) == sorted(by_name)
    for entry in session["frames"]:
        frame, stem = by_name[entry["source"]], entry["stem"]
        np.testing.assert_array_equal(load_rgb(split / "rgb" / f"{stem}.png"), frame.rgb)
        depth = load_depth(split / "depth" / f"{stem}{suffix}")
        np.testing.assert_allclose(depth, frame.depth, atol=1e-6)  # exact up to float32 rounding
    if fmt == "xyz":  # x and y from the stream intrinsics: fx = 64, principal point (31.5, 23.5)
        import tifffile

        xyz = tifffile.imread(split / "depth" / "000000.tiff")
        z = xyz[..., 2]
        np.testing.assert_allclose(xyz[10, 40, 0], (40 - 31.5) / 64 * z[10, 40], rtol=1e-5)
        np.testing.assert_allclose(xyz[10, 40, 1], (10 - 23.5) / 64 * z[10, 40], rtol=1e-5)
    ds = discover(tmp_path)
    assert len(ds.train) + len(ds.val) == N and ds.layout == "folder"


def test_mispaired_playback_sets_are_left_for_a_later_pass(rec):
    """SDK 2.59 playback now and then pairs colour with a depth frame of another time."""

    class Stub:
        def __init__(self, number, stamp):
            self.number, self.stamp = number, stamp

        def get_frame_number(self):
            return self.number

        def get_timestamp(self):
            return self.stamp

    class Set:
        def __init__(self, colour, depth):
            self.colour, self.depth = colour, depth

        def get_color_frame(self):
            return self.colour

        def get_depth_frame(self):
            return self.depth

    source, seen = RecordingSource(rec), set()
    source.fps = 30
    assert source._to_frame(Set(Stub(0, 1000.0), Stub(7, 1233.3)), seen) is None
    assert source.mispaired == 1 and not seen  # not marked as judged: the next pass plays it
    source.reader.to_frame = lambda frames: "judged"
    assert source._to_frame(Set(Stub(0, 1000.0), Stub(0, 1004.0)), seen) == "judged"  # 4 ms apart
    assert seen == {(0, 1000.0)}


def test_capture_json_describes_camera_and_frames(tmp_path, rec, played):
    assert cli("--source", rec, "--out", tmp_path, "--split", "test/anomaly/dent")[0] == 0
    log = json.loads((tmp_path / "capture.json").read_text())
    (session,) = log["sessions"]
    assert session["split"] == "test/anomaly/dent" and session["written"] == N
    assert session["device"]["serial_number"] == "0000" and "firmware_version" in session["device"]
    assert session["resolution"] == [64, 48] and session["depth_units_m"] == pytest.approx(0.001)
    assert session["streams"]["color"]["intrinsics"]["fx"] == 64.0
    assert session["filters"] == [] and session["aligned_to_colour"] is True
    stamps = {f.name: f.timestamp for f in played}
    assert {f["source"]: f["timestamp"] for f in session["frames"]} == stamps
    assert session["stopped_by"] == "end" and session["ended"]


def test_resume_continues_numbering_and_keeps_files(tmp_path, rec):
    assert cli("--source", rec, "--out", tmp_path, "--stride", "3")[0] == 0  # frames 0, 3, 6
    split = tmp_path / "train" / "normal"
    first = {p.name: p.read_bytes() for p in (split / "depth").iterdir()}
    assert sorted(first) == ["000000.png", "000001.png", "000002.png"]
    code, out = cli("--source", rec, "--out", tmp_path, "--max", "2", "--depth-format", "tiff")
    assert code == 0 and "000003..000004" in out and "stopped by max" in out
    assert all((split / "depth" / name).read_bytes() == data for name, data in first.items())
    assert next_index(split) == 5
    log = json.loads((tmp_path / "capture.json").read_text())
    assert [s["written"] for s in log["sessions"]] == [3, 2]
    assert [f["source"] for f in log["sessions"][0]["frames"]] == ["frame 0", "frame 3", "frame 6"]


def test_interval_keeps_frames_apart(tmp_path, rec):
    # Frames are 1/30 s apart: at least 0.09 s between kept frames keeps every 3rd (0, 3, 6).
    res = capture(open_capture_source(str(rec)), tmp_path, "train/normal", interval=0.09, progress=False)
    assert res.written == 3


def test_bad_split_and_options(tmp_path, rec):
    with pytest.raises(AnodetError, match="train/normal"):
        check_split("train/good")
    assert "split 'normal'" in one_error_line(*cli("--source", rec, "--out", tmp_path, "--split", "normal"))
    assert "--stride" in one_error_line(*cli("--source", rec, "--out", tmp_path, "--stride", "0"))
    assert "cannot capture from" in one_error_line(*cli("--source", "synthetic:4", "--out", tmp_path))
    assert "not found" in one_error_line(*cli("--source", tmp_path / "missing.db3", "--out", tmp_path))


def test_no_camera_connected(tmp_path):
    if rs.context().query_devices().size():
        pytest.skip("a RealSense camera is connected")
    line = one_error_line(*cli("--source", "realsense", "--out", tmp_path))
    assert "no such camera connected" in line
    assert not (tmp_path / "capture.json").exists()


def test_recording_without_colour_or_depth(tmp_path):
    depth_only = write_streams(tmp_path / "depth_only.db3", depth_size=(32, 24))
    assert "no colour stream" in one_error_line(*cli("--source", depth_only, "--out", tmp_path / "a"))
    colour_only = write_streams(tmp_path / "colour_only.db3", colour_size=(32, 24))
    assert "no depth stream" in one_error_line(*cli("--source", colour_only, "--out", tmp_path / "b"))
    assert not (tmp_path / "b" / "capture.json").exists()


def test_mismatched_resolutions_need_alignment(tmp_path):
    path = write_streams(tmp_path / "mixed.db3", depth_size=(32, 24), colour_size=(64, 48))
    line = one_error_line(*cli("--source", path, "--out", tmp_path / "raw", "--no-align"))
    assert "64x48 but depth 32x24" in line and "--no-align" in line
    assert cli("--source", path, "--out", tmp_path / "aligned")[0] == 0  # aligned: depth at 64x48
    assert load_depth(tmp_path / "aligned" / "train" / "normal" / "depth" / "000000.png").shape == (48, 64)


def test_png_refused_for_sub_millimetre_units(tmp_path):
    path = tmp_path / "d405.db3"
    write_recording(path, [flat_frame(24, 32, seed=i) for i in range(3)], depth_units=0.0001)
    assert "--depth-format tiff" in one_error_line(*cli("--source", path, "--out", tmp_path / "png"))
    assert cli("--source", path, "--out", tmp_path / "tiff", "--depth-format", "tiff")[0] == 0
    depth = load_depth(tmp_path / "tiff" / "train" / "normal" / "depth" / "000000.tiff")
    np.testing.assert_allclose(depth[depth > 0], 0.5, atol=1e-4)


def test_full_disk_keeps_and_counts_the_partial_capture(tmp_path, rec, monkeypatch):
    real, calls = capmod._PairWriter._write_depth, []

    def fill_up(self, fh, depth):
        calls.append(1)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(fh.name))
        real(self, fh, depth)

    monkeypatch.setattr(capmod._PairWriter, "_write_depth", fill_up)
    line = one_error_line(*cli("--source", rec, "--out", tmp_path))
    assert "No space left on device" in line and "the 3 frames captured before (000000..000002)" in line
    split = tmp_path / "train" / "normal"
    assert sorted(p.name for p in (split / "rgb").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert sorted(p.name for p in (split / "depth").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    (session,) = json.loads((tmp_path / "capture.json").read_text())["sessions"]
    assert session["written"] == 3 and session["stopped_by"].startswith("error: cannot write")


def test_unwritable_output(tmp_path, rec):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert "cannot write to" in one_error_line(*cli("--source", rec, "--out", blocker / "ds"))


def test_unplugged_camera_reconnects_or_stops_with_what_was_written(tmp_path):
    res = capture(FlakyDevice(total=6, fail_at=3, refusals=1), tmp_path / "ok", "train/normal",
                  progress=False)
    assert res.written == 6 and res.reconnects == 1
    gone = FlakyDevice(total=6, fail_at=3, refusals=10**6, give_up_after=0.1)
    with pytest.raises(AnodetError, match=r"did not come back.*the 3 frames captured before"):
        capture(gone, tmp_path / "gone", "train/normal", progress=False)
    assert len(list((tmp_path / "gone" / "train" / "normal" / "rgb").iterdir())) == 3
    (session,) = json.loads((tmp_path / "gone" / "capture.json").read_text())["sessions"]
    assert session["written"] == 3 and session["device"] is None  # a fake camera: no SDK profile


def test_train_data_can_be_a_recording(tmp_path, rec, monkeypatch):
    monkeypatch.setenv("ANODET_CACHE", str(tmp_path / "cache"))
    ds = discover(rec, val_fraction=0.25, seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (6, 2, 0)
    assert all(s.depth_path.suffix == ".tiff" for s in ds.train)
    again = discover(rec, val_fraction=0.25, seed=0)  # the cached extraction, same split
    assert [s.rgb_path for s in again.val] == [s.rgb_path for s in ds.val]
    assert len(list((tmp_path / "cache" / "recordings").iterdir())) == 1


def test_train_data_recording_bad_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("ANODET_CACHE", str(tmp_path / "cache"))
    colour_only = write_streams(tmp_path / "colour_only.db3", colour_size=(32, 24))
    with pytest.raises(AnodetError, match="no depth stream"):
        discover(colour_only)
    damaged = tmp_path / "damaged.db3"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\x00" * 40)
    with pytest.raises(AnodetError, match="damaged"):
        discover(damaged)
    assert not any((tmp_path / "cache" / "recordings").iterdir())  # nothing half-extracted kept


def test_own_camera_walkthrough(tmp_path, tiny_yaml, monkeypatch):
    """README "Your own camera": recording -> anodet-capture -> train -> export -> run."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from anodet.data.synthetic import make_frame

    rng = np.random.default_rng(0)
    good = [make_frame(rng, 64, None)[:2] for _ in range(12)]
    line = [make_frame(rng, 64, kind)[:2] for kind in (None, "geometry", None, "crack")]
    write_recording(tmp_path / "good.db3", good)
    write_recording(tmp_path / "line.db3", line)
    runner, ds = CliRunner(), tmp_path / "parts"
    steps = [
        ["capture", "--source", tmp_path / "good.db3", "--out", ds, "--split", "train/normal", "--no-progress"],
        ["train", "--config", tiny_yaml, "--data", ds, "--out", tmp_path / "exp", "--epochs", "2",
         "--weights", "none", "--device", "cpu"],
        ["export", "onnx", "--checkpoint", tmp_path / "exp" / "checkpoints" / "best.pt", "-o", tmp_path / "m.onnx"],
        ["run", "--model", tmp_path / "m.onnx", "--source", tmp_path / "line.db3",
         "--events", tmp_path / "events.jsonl"],
    ]
    for args in steps:
        res = runner.invoke(main, [str(a) for a in args])
        assert res.exit_code == 0, (args[0], res.output)
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert len(events) == len(line) and all(np.isfinite(e["score"]) for e in events)


def test_failed_recording_extraction_names_only_folders_that_exist(tmp_path, rec, monkeypatch):
    """Issue 24, item 5: the message once said the frames were kept in the removed temp folder."""
    import re

    monkeypatch.setenv("ANODET_CACHE", str(tmp_path / "cache"))
    real_write, calls = capmod._PairWriter.write, []

    def full_disk(self, stem, frame):
        calls.append(stem)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.folder / "rgb" / f"{stem}.png"))
        return real_write(self, stem, frame)

    monkeypatch.setattr(capmod._PairWriter, "write", full_disk)
    with pytest.raises(AnodetError, match="No space left on device") as err:
        discover(rec)
    message = str(err.value)
    assert "nothing was cached" in message and "kept in" not in message
    assert not any((tmp_path / "cache" / "recordings").iterdir())
    named = [p.rstrip(";:,.)") for p in re.findall(r"(?:^|\s)(/[^\s]+)", message)]
    assert named and all(Path(p).exists() for p in named), message


@pytest.mark.parametrize("splits", [("test/normal", "test/anomaly/dent"), ("test/anomaly",)])
def test_eval_takes_a_captured_folder_with_only_a_test_split(tmp_path, rec, exported, splits):
    """Issue 24, item 5: anodet-eval refused it for want of train/normal, which it never reads."""
    parts = tmp_path / "parts"
    for split in splits:
        assert cli("--source", rec, "--out", parts, "--split", split, "--max", "3")[0] == 0
    res = CliRunner().invoke(main, ["eval", "--model", str(exported), "--data", str(parts), "--out",
                                    str(tmp_path / "e"), "--no-report"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["num_images"] == 3 * len(splits)
    assert discover(parts, need_train=False).train == []
    with pytest.raises(AnodetError, match="no known dataset layout"):  # training still needs train/
        discover(parts)
