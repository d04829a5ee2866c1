"""Recording playback in a child process (issue 24, item 2): killing the SDK's process mid-stream
costs a restart, never a frame judged twice, lost or out of order."""

from __future__ import annotations

import json
import os
import signal

import pytest

pytest.importorskip("pyrealsense2", reason="pyrealsense2 cannot be imported (libusb-1.0-0 missing?)")
pytest.importorskip("onnxruntime")
from fake_model import flat_frame, make_fake_model

from anodet.errors import AnodetError
from anodet.runtime import run
from anodet.runtime.sources.playback_process import IsolatedRecording
from anodet.runtime.sources.recorder import write_recording

pytestmark = pytest.mark.camera
N = 12


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "twelve.db3"
    assert write_recording(path, [flat_frame(48, 64, bump=0.03 * (i == 7), seed=i) for i in range(N)]) == N
    return path


class KilledAt(IsolatedRecording):
    """SIGKILLs the playback process once each given number of frames has been delivered."""

    def __init__(self, path, at, **kwargs):
        super().__init__(path, **kwargs)
        self.at = set(at)

    def __iter__(self):
        for i, frame in enumerate(super().__iter__()):
            if i in self.at:
                os.kill(self.process.pid, signal.SIGKILL)
            yield frame


def test_killed_playback_is_restarted_where_it_stopped(tmp_path, recording, caplog):
    model = make_fake_model(tmp_path / "m.onnx")
    events = tmp_path / "events.jsonl"
    source = KilledAt(recording, at=(3, 8))
    summary = run(model, source, events=events, stats_every=0)
    recs = [json.loads(line) for line in events.read_text().splitlines()]
    assert [r["name"] for r in recs] == [f"frame {i}" for i in range(N)]  # once each, in recording order
    assert [r["index"] for r in recs] == list(range(N))
    assert [r["anomalous"] for r in recs] == [i == 7 for i in range(N)]
    assert (summary.frames, summary.lost, summary.restarts) == (N, 0, 2)
    assert "2 playback restarts" in str(summary)
    # how far the child had got when it died depends on how much it had already sent
    assert caplog.text.count("the playback process died (exit status -9) after") == 2


def test_a_playback_process_that_keeps_dying_fails_clearly(recording):
    class DiesAtOnce(IsolatedRecording):
        def _spawn(self, delivered):
            proc = super()._spawn(delivered)
            proc.kill()
            return proc

    with pytest.raises(AnodetError, match="playback process died 2 times in a row at frame 0"):
        list(DiesAtOnce(recording, max_restarts=2))


def test_closing_stops_the_child(recording):
    source = IsolatedRecording(recording)
    frames = iter(source)
    assert next(frames).name == "frame 0"
    child = source.process
    source.close()
    frames.close()
    assert child.poll() is not None
