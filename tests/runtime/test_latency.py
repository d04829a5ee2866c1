"""Stream figures that mean one thing each (issue 24, item 3): processing, queue wait and, for
live sources only, arrival-to-decision, in the summary, the periodic log line and the events."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")
from fake_model import SlowBackend, make_fake_model

from anodet.runtime import open_backend, run
from anodet.runtime.sources import SyntheticSource


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    backend = SlowBackend(open_backend(make_fake_model(tmp_path_factory.mktemp("m") / "m.onnx")), delay=0.02)
    yield backend
    backend.close()


def test_playback_reports_processing_apart_from_its_queue_wait(tmp_path, slow, caplog):
    events = tmp_path / "events.jsonl"
    with caplog.at_level("INFO", logger="anodet.runtime.sinks"):
        summary = run(slow, SyntheticSource(6, size=32), events=events, stats_every=1e-9)
    recs = [json.loads(line)["latency_ms"] for line in events.read_text().splitlines()]
    for lat in recs:  # processing is what the frame cost; its wait in the queue is apart
        assert lat["processing"] == pytest.approx(lat["preprocess"] + lat["inference"] + lat["postprocess"], abs=2e-3)
        assert lat["total"] == pytest.approx(lat["queue"] + lat["processing"], abs=1.0)
    text = str(summary)
    assert "processing p50" in text and "queue wait p50" in text
    assert "arrival-to-decision" not in text and "latency p50" not in text  # playback frames wait by design
    assert summary.processing_p50_ms <= summary.latency_p50_ms
    stats_lines = [r.getMessage() for r in caplog.records if "FPS" in r.getMessage()]
    assert stats_lines and all("processing p50" in m and "queue wait" in m for m in stats_lines)
    assert not any("arrival-to-decision" in m for m in stats_lines)


def test_live_sources_also_report_arrival_to_decision(slow, caplog):
    with caplog.at_level("INFO", logger="anodet.runtime.sinks"):
        summary = run(slow, SyntheticSource(4, size=32, fps=200.0), stats_every=1e-9)
    assert summary.live and "arrival-to-decision p50" in str(summary) and "processing p50" in str(summary)
    stats_lines = [r.getMessage() for r in caplog.records if "FPS" in r.getMessage()]
    assert stats_lines and all("arrival-to-decision p50" in m for m in stats_lines)
    assert summary.to_dict()["processing_p95_ms"] >= summary.processing_p50_ms > 0
