"""What a run did (RunSummary) and the rate-limited log of frames it could not judge. Torch-free."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from anodet.runtime.frames import Frame
from anodet.runtime.sinks.latency import describe_latency

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did. Every frame a source produced is in exactly one of frames (judged),
    skipped (bad input), failed (the model's output was unusable) or drops (live only);
    lost counts recorded frames the recording player never delivered. fps counts judged
    frames over the wall time of the stream. Latencies in ms (anodet.runtime.sinks.latency):
    processing for every source, queue wait apart, latency_* = arrival-to-decision, which
    the text shows for live sources only (playback frames wait in the queue by design)."""

    frames: int = 0  # frames judged by the model
    anomalies: int = 0
    drops: int = 0  # live frames discarded because inference fell behind
    skipped: int = 0  # frames that could not be read or preprocessed (bad input)
    failed: int = 0  # frames whose model output was not finite or broke the contract
    lost: int = 0  # recorded frames the player never delivered (playback only)
    reconnects: int = 0
    restarts: int = 0  # recording playback processes that died and were restarted where they stopped
    mispaired: int = 0  # recorded sets whose colour and depth differ in time (left for a later pass)
    fps: float = 0.0
    latency_p50_ms: float = 0.0  # arrival to decision
    latency_p95_ms: float = 0.0
    processing_p50_ms: float = 0.0  # preprocess + inference + postprocess and sinks
    processing_p95_ms: float = 0.0
    queue_p50_ms: float = 0.0  # arrival to the start of the frame's batch
    queue_p95_ms: float = 0.0
    live: bool = False
    seconds: float = 0.0
    correct: int = 0  # frames with a known truth whose verdict matched it
    labelled: int = 0
    stopped_by: str = "end"  # end | max_frames | stop (signal, q key) | source lost (unplugged)
    source_lost: str = ""  # why a live source ended the stream
    backend: str = ""
    input_warnings: list[str] = field(default_factory=list)  # live frames unlike the training frames

    def to_dict(self) -> dict:
        return asdict(self)

    def set_latencies(self, p: dict[str, float]) -> None:
        """Take ``Latencies.percentiles()`` (total_* becomes latency_*)."""
        for key, value in p.items():
            setattr(self, key.replace("total_", "latency_"), value)

    def __str__(self) -> str:
        acc = f"accuracy {self.correct}/{self.labelled}" if self.labelled else "accuracy n/a"
        extra = "".join(
            f", {n} {what}" for n, what in ((self.failed, "failed"), (self.lost, "lost"),
                                             (self.restarts, "playback restarts"),
                                             (self.mispaired, "mispaired sets deferred")) if n
        )
        return (
            f"{self.frames} frames, {self.anomalies} anomalous, {self.drops} dropped, "
            f"{self.skipped} skipped{extra}, {self.fps:.1f} FPS, "
            f"{describe_latency(self._percentiles(), self.live)}, {acc} "
            f"({self.backend}, stopped by {self.stopped_by})"
            + "".join(f"; input drift: {w}" for w in self.input_warnings)
            + (f"; {self.source_lost}" if self.source_lost else "")
        )


    def _percentiles(self) -> dict[str, float]:
        return {k.replace("latency_", "total_"): v for k, v in asdict(self).items() if k.endswith("_ms")}


class SkipLog:
    """Counts frames of one kind (skipped, failed); logs the first few, then every 100th."""

    def __init__(self, what: str = "skipped") -> None:
        self.what = what
        self.count = 0
        self.last_reason = ""

    def add(self, frame: Frame, reason: str) -> None:
        self.count += 1
        self.last_reason = reason
        if self.count <= 5 or self.count % 100 == 0:
            logger.warning(
                "%s %s (%d %s so far): %s", self.what, frame.name, self.count, self.what, reason
            )
