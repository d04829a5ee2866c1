"""The stream's periodic log line (FPS, latency percentiles, drops, skips). Torch-free."""

from __future__ import annotations

import logging
import time
from array import array
from collections.abc import Sequence

from anodet.bench.timing import percentile
from anodet.runtime.frames import FrameResult

logger = logging.getLogger(__name__)


def latency_percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile of latencies in ms (bench.timing.percentile); 0.0 before any frame."""
    return percentile(values, q) if len(values) else 0.0


class StatsLogger:
    """Collects total latencies; logs FPS, p50/p95 latency, drops and skips every few seconds."""

    def __init__(self, every: float = 5.0):
        self.every = every
        self.latencies = array("d")  # every frame's total latency, ms (8 bytes a frame)
        self._last_time = time.perf_counter()
        self._last_count = 0

    def add(self, result: FrameResult) -> None:
        self.latencies.append(result.latency_ms["total"])

    def maybe_log(self, *, drops: int, skipped: int, anomalies: int, force: bool = False,
                  note: str = "") -> None:
        now = time.perf_counter()
        if not self.every or (not force and now - self._last_time < self.every):
            return
        recent = self.latencies[self._last_count :]
        fps = len(recent) / max(now - self._last_time, 1e-9)
        logger.info(
            "%.1f FPS | latency p50 %.1f ms p95 %.1f ms | frames %d | anomalies %d | drops %d | skipped %d%s",
            fps,
            latency_percentile(recent, 50),
            latency_percentile(recent, 95),
            len(self.latencies),
            anomalies,
            drops,
            skipped,
            f" | {note}" if note else "",
        )
        self._last_time, self._last_count = now, len(self.latencies)
