"""The three latencies of a stream, kept apart so that each means one thing. Torch-free.

- processing: preprocess + inference + postprocess and the visual sinks, per frame: what the
  model and the runtime cost. Meaningful for every source.
- queue wait: from the frame's arrival to the start of its batch. Playback sources read ahead
  and block on a full queue, so their frames wait by design: that wait says nothing about the
  model and is never added to processing.
- arrival-to-decision: from the frame's arrival to its verdict (queue wait + processing): what
  a live camera's frame experiences. Reported for live sources only, where it is the delay the
  production line sees.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

from anodet.bench.timing import percentile


def latency_percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile of latencies in ms (bench.timing.percentile); 0.0 before any frame."""
    return percentile(values, q) if len(values) else 0.0


class Latencies:
    """Every judged frame's processing, queue wait and arrival-to-decision latency, in ms.

    8 bytes a frame and kind, so a day-long stream keeps all of them.
    """

    def __init__(self) -> None:
        self.processing = array("d")
        self.queue = array("d")
        self.total = array("d")

    def __len__(self) -> int:
        return len(self.total)

    def add(self, latency_ms: dict[str, float]) -> None:
        """One frame's ``FrameResult.latency_ms`` (keys processing, queue, total)."""
        self.processing.append(latency_ms["processing"])
        self.queue.append(latency_ms["queue"])
        self.total.append(latency_ms["total"])

    def percentiles(self, start: int = 0) -> dict[str, float]:
        """p50/p95 of each kind over frames ``start``.. (ms): processing_p50_ms, ..."""
        out = {}
        for kind in ("processing", "queue", "total"):
            values = getattr(self, kind)[start:]
            for q in (50, 95):
                out[f"{kind}_p{q}_ms"] = latency_percentile(values, q)
        return out


def describe_latency(p: dict[str, float], live: bool) -> str:
    """One phrase for logs and summaries from ``Latencies.percentiles`` (ms, 1 decimal)."""
    parts = [f"processing p50 {p['processing_p50_ms']:.1f} ms p95 {p['processing_p95_ms']:.1f} ms",
             f"queue wait p50 {p['queue_p50_ms']:.1f} ms"]
    if live:
        parts.insert(0, f"arrival-to-decision p50 {p['total_p50_ms']:.1f} ms p95 {p['total_p95_ms']:.1f} ms")
    return ", ".join(parts)
