"""The stream's periodic log line (FPS, latencies as in sinks.latency, drops, skips). Torch-free."""

from __future__ import annotations

import logging
import time

from anodet.runtime.frames import FrameResult
from anodet.runtime.sinks.latency import Latencies, describe_latency, latency_percentile  # noqa: F401 (API)

logger = logging.getLogger(__name__)


class StatsLogger:
    """Collects every frame's latencies; logs FPS, processing and queue-wait latency (and, live,
    arrival-to-decision), drops and skips every few seconds."""

    def __init__(self, every: float = 5.0, live: bool = False):
        self.every, self.live = every, live
        self.latencies = Latencies()
        self._last_time = time.perf_counter()
        self._last_count = 0

    def add(self, result: FrameResult) -> None:
        self.latencies.add(result.latency_ms)

    def maybe_log(self, *, drops: int, skipped: int, anomalies: int, force: bool = False,
                  note: str = "") -> None:
        now = time.perf_counter()
        if not self.every or (not force and now - self._last_time < self.every):
            return
        fps = (len(self.latencies) - self._last_count) / max(now - self._last_time, 1e-9)
        logger.info(
            "%.1f FPS | %s | frames %d | anomalies %d | drops %d | skipped %d%s",
            fps,
            describe_latency(self.latencies.percentiles(self._last_count), self.live).replace(", ", " | "),
            len(self.latencies),
            anomalies,
            drops,
            skipped,
            f" | {note}" if note else "",
        )
        self._last_time, self._last_count = now, len(self.latencies)
