"""Sinks: where the loop's verdicts go. Torch-free.

Modules: events (JSON lines), video (the heat-map overlay, annotated .mp4, a window),
anomalies (anomalous frames saved as images and depth), stats (the periodic log line),
latency (the three latencies a stream reports, kept apart). Every
sink has ``write(frame, result)`` and ``close()`` (anodet.runtime.frames.Sink) and must not
lose what it wrote when the process is stopped.

May import: anodet.runtime.frames, anodet.runtime.regions, anodet.outputs, anodet.artifact,
anodet.bench.timing, anodet.errors. Never a backend, a source, the loop or anodet.serve.
"""

from anodet.runtime.frames import LATENCY_KEYS, FrameResult, Sink
from anodet.runtime.sinks.anomalies import SaveAnomaliesSink
from anodet.runtime.sinks.events import EventsSink, event_record
from anodet.runtime.sinks.stats import StatsLogger, latency_percentile
from anodet.runtime.sinks.video import DisplaySink, VideoSink, draw_overlay

__all__ = [
    "LATENCY_KEYS",
    "DisplaySink",
    "EventsSink",
    "FrameResult",
    "SaveAnomaliesSink",
    "Sink",
    "StatsLogger",
    "VideoSink",
    "draw_overlay",
    "event_record",
    "latency_percentile",
]
