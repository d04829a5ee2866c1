"""The streaming pipeline: sinks, drops vs blocking, fault injection, timeouts, batching."""

from __future__ import annotations

import json
import os
import threading
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from fake_model import FlakyDevice, SlowBackend, flat_frame, make_fake_model, write_pair

from anodet.errors import AnodetError
from anodet.runtime import FrameQueue, open_backend, run
from anodet.runtime.frames import Frame
from anodet.runtime.sinks import LATENCY_KEYS, draw_overlay


@pytest.fixture(scope="module", params=["fake"])
def model_path(request, tmp_path_factory):
    """Any anodet-contract ONNX model (the lead adds real exports as further params)."""
    return make_fake_model(tmp_path_factory.mktemp("model") / "fake.onnx")


@pytest.fixture(scope="module")
def fake_model_path(tmp_path_factory):
    """The fake model: flags depth bumps (tests that check verdicts need it)."""
    return make_fake_model(tmp_path_factory.mktemp("fake") / "fake.onnx")


class ListSource:
    """Yields prepared frames; live sources emit every ``period`` seconds (0: as fast as possible)."""

    def __init__(self, frames, *, live, period=0.0):
        self.frames, self.live, self.period = frames, live, period
        self.description = f"list source ({len(frames)} frames)"
        self.closed = threading.Event()

    def close(self):
        self.closed.set()

    def __iter__(self):
        for i, (rgb, depth) in enumerate(self.frames):
            if self.closed.is_set() or (self.period and self.closed.wait(self.period)):
                return
            yield Frame(i, time.time(), rgb, depth, f"frame {i}")


def read_events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_folder_stream_with_all_sinks(tmp_path, fake_model_path):
    data = tmp_path / "data"
    bumps = [0.0, 0.03, 0.0, 0.0, 0.04]
    for i, bump in enumerate(bumps):
        write_pair(data / "rgb", data / "depth", f"{i:03d}", bump=bump, depth_kind="npy", seed=i)
    events, saved, video = tmp_path / "events.jsonl", tmp_path / "anomalies", tmp_path / "out.mp4"
    summary = run(
        fake_model_path, str(data), events=events, save_anomalies=saved, video=video, stats_every=0
    )
    assert (summary.frames, summary.anomalies, summary.drops, summary.skipped) == (5, 2, 0, 0)
    assert (
        summary.stopped_by == "end"
        and summary.fps > 0
        and summary.latency_p95_ms >= summary.latency_p50_ms
    )
    recs = read_events(events)
    assert [r["name"] for r in recs] == [f"rgb/{i:03d}.png" for i in range(5)]
    assert [r["anomalous"] for r in recs] == [b > 0 for b in bumps]
    assert all(set(r["latency_ms"]) == set(LATENCY_KEYS) for r in recs)
    assert all(r["latency_ms"]["total"] >= r["latency_ms"]["inference"] for r in recs)
    assert sorted(p.name for p in saved.iterdir()) == [
        f"{i:06d}_{i:03d}{suffix}"
        for i in (1, 4)
        for suffix in ("_depth.npy", "_overlay.png", "_rgb.png")
    ]
    overlay = cv2.imread(str(saved / "000001_001_overlay.png"))
    assert overlay.shape == (24, 32, 3)
    assert np.load(saved / "000001_001_depth.npy").shape == (24, 32)
    cap = cv2.VideoCapture(str(video))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (
        32,
        24,
    )
    cap.release()


def test_draw_overlay_shapes():
    rgb, _ = flat_frame(60, 80)
    amap = np.zeros((16, 16), np.float32)
    amap[4:8, 4:8] = 0.9
    out = draw_overlay(rgb, amap, amap > 0.5, 0.9)
    assert out.shape == rgb.shape and out.dtype == np.uint8 and not np.array_equal(out, rgb)


def test_fault_injection_disconnect_and_corrupt_frames(tmp_path, fake_model_path):
    class FaultyCamera(FlakyDevice):
        """Flaky camera whose frames 2, 5 and 7 are corrupt; frame 3 has a defect."""

        def _read(self):
            frame = super()._read()
            if frame is None:
                return None
            if frame.index == 2:
                frame.depth = np.full_like(frame.depth, np.nan)  # no valid pixel
            elif frame.index == 5:
                frame.depth = frame.depth[:, :20]  # depth not aligned to colour
            elif frame.index == 7:
                frame.rgb = frame.rgb.astype(np.float32)  # wrong dtype
            elif frame.index == 8:
                frame.depth[0:5, 0:5] = np.nan  # a camera marks missing with 0: NaN is a bad frame
            elif frame.index == 9:
                frame.depth[0:5, 0:5] = 0.0  # partly missing is fine: filled
            elif frame.index == 3:
                frame.depth[8:16, 10:20] -= 0.03
            return frame

    cam = FaultyCamera(total=12, fail_at=4, refusals=2)
    events = tmp_path / "events.jsonl"
    summary = run(fake_model_path, cam, events=events, queue_size=100, stats_every=0)
    assert summary.reconnects == 1
    assert (summary.frames, summary.skipped, summary.drops, summary.anomalies) == (8, 4, 0, 1)
    recs = read_events(events)
    assert [r["index"] for r in recs] == [0, 1, 3, 4, 6, 9, 10, 11]
    assert [r["index"] for r in recs if r["anomalous"]] == [3]


def test_source_that_gives_up_ends_the_stream_and_keeps_events(tmp_path, fake_model_path):
    """Issue 24: an unplugged camera ends the stream cleanly; the summary says why."""
    cam = FlakyDevice(total=100, fail_at=3, refusals=10**6, give_up_after=0.3)
    events = tmp_path / "events.jsonl"
    summary = run(fake_model_path, cam, events=events, queue_size=100, stats_every=0)
    assert summary.stopped_by == "source lost" and "did not come back" in summary.source_lost
    assert "stopped by source lost" in str(summary) and "did not come back" in str(summary)
    assert [r["index"] for r in read_events(events)] == [0, 1, 2] and summary.frames == 3


def test_source_that_never_delivered_is_still_an_error(fake_model_path):
    cam = FlakyDevice(total=100, fail_at=0, refusals=10**6, give_up_after=0.2)
    with pytest.raises(AnodetError, match="did not come back"):
        run(fake_model_path, cam, stats_every=0)


def test_live_source_drops_oldest_when_inference_is_slow(tmp_path, model_path):
    n = 60
    source = ListSource([flat_frame(24, 32, seed=i) for i in range(n)], live=True, period=0.002)
    slow = SlowBackend(open_backend(model_path), delay=0.03)
    events = tmp_path / "events.jsonl"
    summary = run(slow, source, events=events, queue_size=2, stats_every=0)
    indices = [r["index"] for r in read_events(events)]
    assert summary.drops > 0 and summary.frames + summary.drops == n and summary.skipped == 0
    assert indices == sorted(indices) and indices[-1] == n - 1  # the newest frame always survives
    assert len(indices) == summary.frames


def test_playback_never_drops(tmp_path, model_path):
    n = 20
    source = ListSource([flat_frame(24, 32, seed=i) for i in range(n)], live=False)
    slow = SlowBackend(open_backend(model_path), delay=0.01)
    events = tmp_path / "events.jsonl"
    summary = run(slow, source, events=events, queue_size=2, stats_every=0)
    assert summary.drops == 0 and summary.frames == n
    assert [r["index"] for r in read_events(events)] == list(range(n))


def test_batched_inference_matches_single(tmp_path, model_path):
    frames = [flat_frame(24, 32, bump=0.03 * (i % 2), seed=i) for i in range(7)]
    scores = {}
    for batch in (1, 3):
        backend = SlowBackend(open_backend(model_path), delay=0.0)
        events = tmp_path / f"events{batch}.jsonl"
        summary = run(
            backend, ListSource(frames, live=False), events=events, batch=batch, stats_every=0
        )
        assert summary.frames == 7
        scores[batch] = [r["score"] for r in read_events(events)]
        assert backend.calls == (7 if batch == 1 else 3)
    np.testing.assert_allclose(scores[1], scores[3], rtol=1e-5)


def test_max_frames_stops_an_endless_source(model_path):
    endless = ListSource([flat_frame(24, 32)] * 10**6, live=True, period=0.001)
    summary = run(model_path, endless, max_frames=5, stats_every=0)
    assert summary.frames == 5 and summary.stopped_by == "max_frames"


def test_silent_source_times_out_instead_of_hanging(model_path):
    class Silent:
        live, description = True, "silent camera"

        def __init__(self):
            self.closed = threading.Event()

        def __iter__(self):
            self.closed.wait(30)
            return iter(())

        def close(self):
            self.closed.set()

    start = time.monotonic()
    with pytest.raises(AnodetError, match="silent camera produced no frame within 0.5 s"):
        run(model_path, Silent(), first_frame_timeout=0.5, stats_every=0)
    assert time.monotonic() - start < 5


def test_synthetic_spec_end_to_end(tmp_path, model_path):
    from anodet.runtime.sources import SyntheticSource

    events = tmp_path / "events.jsonl"
    summary = run(
        model_path, SyntheticSource(6, size=64, defect_rate=0.5), events=events, stats_every=0
    )
    recs = read_events(events)
    assert summary.frames == 6 and len(recs) == 6 and all("truth" in r for r in recs)
    assert summary.labelled == 6


def test_frame_queue_semantics():
    live = FrameQueue(2, drop_oldest=True)
    for i in range(5):
        live.put(Frame(i, 0.0, None, None, str(i)))
    assert live.drops == 3
    assert [f.index for f in live.get_batch(4, 0.01, wait_full=False)] == [3, 4]
    assert live.get_batch(1, 0.01, wait_full=False) == []
    live.finish()
    assert live.get_batch(1, 0.01, wait_full=False) is None

    playback = FrameQueue(1, drop_oldest=False)
    playback.put(Frame(0, 0.0, None, None, "0"))
    blocked = threading.Thread(target=playback.put, args=(Frame(1, 0.0, None, None, "1"),))
    blocked.start()
    time.sleep(0.05)
    assert blocked.is_alive()  # full: the producer waits instead of dropping
    assert [f.index for f in playback.get_batch(1, 0.1, wait_full=True)] == [0]
    blocked.join(1)
    assert [f.index for f in playback.get_batch(1, 0.1, wait_full=True)] == [1]
    assert playback.drops == 0


def test_events_to_stdout_and_source_options(capsys, model_path):
    summary = run(
        model_path, "synthetic:3", events="-", stats_every=0, source_options={"synthetic_size": 48}
    )
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert summary.frames == 3 and [r["index"] for r in lines] == [0, 1, 2]


def test_display_without_gui_is_a_clear_error(model_path):
    if not _headless():
        pytest.skip("this OpenCV has a GUI")
    with pytest.raises(AnodetError, match="needs OpenCV with GUI support"):
        run(model_path, ListSource([flat_frame(24, 32)], live=False), display=True, stats_every=0)


def _headless() -> bool:
    try:
        cv2.namedWindow("probe")
    except cv2.error:
        return True
    cv2.destroyWindow("probe")
    return False


# --- issue 15: non-finite values, strict JSON, outputs, truth, arguments ------------------------


def strict_events(path):
    """Parse JSON lines with a parser that refuses NaN/Infinity (bare NaN is not JSON)."""

    def refuse(token):
        raise ValueError(f"non-JSON constant {token} in {path}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


class PoisonBackend:
    """Wraps a backend; frames whose rgb is all 7 get a NaN score (then the contract check)."""

    def __init__(self, inner):
        self.inner, self.name, self.info, self.calls = inner, "poison", inner.info, 0

    def predict(self, rgb, depth):
        from anodet.artifact import OUTPUT_SCORE, check_outputs

        self.calls += 1
        out = {k: np.array(v, copy=True) for k, v in self.inner.predict(rgb, depth).items()}
        out[OUTPUT_SCORE][rgb[:, 0, 0, 0] == 7] = np.nan
        return check_outputs(out, len(rgb), self.info.image_size)

    def close(self):
        self.inner.close()


@pytest.mark.parametrize("batch", [1, 4])
def test_nan_output_is_counted_as_failed_never_ok(tmp_path, fake_model_path, batch, caplog):
    frames = [flat_frame(24, 32, seed=i) for i in range(6)]
    for i in (1, 4):
        frames[i][0][:] = 7  # these two frames make the model output NaN
    events = tmp_path / "events.jsonl"
    backend = PoisonBackend(open_backend(fake_model_path))
    summary = run(backend, ListSource(frames, live=False), events=events, batch=batch, stats_every=0)
    assert (summary.frames, summary.failed, summary.skipped) == (4, 2, 0)
    assert [r["index"] for r in strict_events(events)] == [0, 2, 3, 5]
    assert "failed frame 1 (1 failed so far): model output holds non-finite" in caplog.text
    assert "2 failed" in str(summary)


def test_a_model_that_fails_on_every_frame_is_an_error(tmp_path):
    nan_model = make_fake_model(tmp_path / "nan.onnx", gain=float("nan"))
    events = tmp_path / "events.jsonl"
    source = ListSource([flat_frame(24, 32, seed=i) for i in range(3)], live=False)
    with pytest.raises(AnodetError, match="model failed on all 3 frames .*non-finite"):
        run(nan_model, source, events=events, stats_every=0)
    assert not events.exists()  # nothing judged, nothing written


def test_huge_or_nan_depth_is_a_skipped_frame_and_events_stay_json(tmp_path, fake_model_path):
    frames = [flat_frame(24, 32, seed=i) for i in range(4)]
    frames[1][1][4:8, 4:8] = 3e38  # finite but no surface: used to overflow into a NaN score
    frames[2][1][4:8, 4:8] = np.inf
    events = tmp_path / "events.jsonl"
    summary = run(fake_model_path, ListSource(frames, live=False), events=events, stats_every=0)
    assert (summary.frames, summary.skipped) == (2, 2)
    recs = strict_events(events)
    assert [r["index"] for r in recs] == [0, 3] and all(np.isfinite(r["score"]) for r in recs)


def test_events_sink_refuses_to_write_nan(tmp_path):
    from anodet.runtime.sinks import EventsSink, FrameResult

    sink = EventsSink(tmp_path / "e.jsonl")
    result = FrameResult(float("nan"), False, np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="not JSON compliant"):
        sink.write(Frame(0, 0.0, None, None, "f"), result)
    sink.close()
    assert not (tmp_path / "e.jsonl").exists() or (tmp_path / "e.jsonl").read_text() == ""


@pytest.mark.parametrize("kwargs, match", [
    ({"max_frames": -1}, "max_frames must be >= 1"),
    ({"max_frames": 0}, "max_frames must be >= 1"),
    ({"batch": 0}, "batch must be >= 1"),
    ({"threads": -2}, "threads must be >= 0"),
])
def test_bad_arguments_are_refused(model_path, kwargs, match):
    with pytest.raises(AnodetError, match=match):
        run(model_path, ListSource([flat_frame(24, 32)], live=False), stats_every=0, **kwargs)


def test_save_anomalies_closes_without_an_error_line(tmp_path, fake_model_path, caplog):
    frames = [flat_frame(24, 32, bump=0.03, seed=0), flat_frame(24, 32, seed=1)]
    saved = tmp_path / "saved"
    summary = run(fake_model_path, ListSource(frames, live=False), save_anomalies=saved, stats_every=0)
    assert summary.anomalies == 1 and len(list(saved.iterdir())) == 3
    assert "closing" not in caplog.text and not [r for r in caplog.records if r.levelname == "ERROR"]


def test_outputs_are_checked_before_anything_is_created(tmp_path, model_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep")
    cases = [
        ({"events": tmp_path}, "events file .* is a folder"),
        ({"save_anomalies": blocker}, "anomalies folder .*a_file is a file, not a folder"),
        ({"video": blocker / "v.mp4"}, "video .*a_file is a file, not a folder"),
        ({"events": blocker / "sub" / "e.jsonl"}, "a_file is a file, not a folder"),
    ]
    for kwargs, match in cases:
        with pytest.raises(AnodetError, match=match):
            run(model_path, ListSource([flat_frame(24, 32)], live=False), stats_every=0,
                **{"save_anomalies": tmp_path / "never_made", **kwargs})
        assert not (tmp_path / "never_made").exists()
    assert blocker.read_text() == "keep"


def test_read_only_outputs_are_refused(tmp_path, model_path, monkeypatch):
    """os.access is what reports read-only folders (and read-only file systems, even to root)."""
    from anodet import outputs

    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(outputs.os, "access", lambda p, mode: not str(p).startswith(str(ro)))
    for kwargs in ({"events": ro / "e.jsonl"}, {"save_anomalies": ro / "saved"}, {"video": ro / "v.mp4"},
                   {"save_anomalies": ro}):
        with pytest.raises(AnodetError, match="read-only or not writable"):
            run(model_path, ListSource([flat_frame(24, 32)], live=False), stats_every=0, **kwargs)
    assert list(ro.iterdir()) == []


def test_a_full_disk_mid_stream_names_the_file_and_the_count(tmp_path, model_path):
    """/dev/full accepts the open and fails every write with ENOSPC, like a disk that fills up."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    source = ListSource([flat_frame(24, 32, seed=i) for i in range(3)], live=False)
    with pytest.raises(AnodetError, match="writing events file /dev/full failed after 0 events "
                                          r"\(No space left on device\)"):
        run(model_path, source, events="/dev/full", stats_every=0)


def test_accuracy_is_n_a_without_truth(model_path):
    summary = run(model_path, ListSource([flat_frame(24, 32)], live=False), stats_every=0)
    assert summary.labelled == 0 and "accuracy n/a" in str(summary)
