"""The streaming loop: capture thread -> bounded queue -> batched inference -> sinks.

Live sources lose the *oldest* queued frames when inference falls behind (the newest frame is
the one worth judging); playback sources block instead, so every recorded frame is judged.
Frames that fail preprocessing are skipped and counted. SIGINT/SIGTERM stop the loop after
the current batch; sinks are then flushed and closed. Torch-free.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anodet.artifact import DECISION_THRESHOLD, OUTPUT_MAP, OUTPUT_MASK, OUTPUT_SCORE
from anodet.errors import AnodetError
from anodet.preprocess import prepare_frame
from anodet.runtime.backends import Backend, open_backend
from anodet.runtime.frame_queue import FrameQueue, capture_frames
from anodet.runtime.frames import Frame, Source
from anodet.runtime.sinks import (
    DisplaySink,
    EventsSink,
    FrameResult,
    SaveAnomaliesSink,
    Sink,
    StatsLogger,
    VideoSink,
    percentile_ms,
)
from anodet.runtime.sources import open_source

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did. fps counts processed frames over the wall time of the stream."""

    frames: int = 0  # frames judged by the model
    anomalies: int = 0
    drops: int = 0  # live frames discarded because inference fell behind
    skipped: int = 0  # frames that could not be read or preprocessed
    reconnects: int = 0
    fps: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    seconds: float = 0.0
    correct: int = 0  # frames with a known truth whose verdict matched it
    labelled: int = 0
    stopped_by: str = "end"  # end | max_frames | stop (signal, q key)
    backend: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        acc = f", accuracy {self.correct}/{self.labelled}" if self.labelled else ""
        return (
            f"{self.frames} frames, {self.anomalies} anomalous, {self.drops} dropped, {self.skipped} skipped, "
            f"{self.fps:.1f} FPS, latency p50 {self.latency_p50_ms:.1f} ms p95 {self.latency_p95_ms:.1f} ms"
            f"{acc} ({self.backend}, stopped by {self.stopped_by})"
        )


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop``; a second signal raises KeyboardInterrupt (sinks still close)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        logger.warning(
            "%s received: finishing the current batch and closing outputs",
            signal.Signals(signum).name,
        )
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _Skips:
    """Counts skipped frames; logs the first few and then every 100th, not every one."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, frame: Frame, reason: str) -> None:
        self.count += 1
        if self.count <= 5 or self.count % 100 == 0:
            logger.warning("skipped %s (%d skipped so far): %s", frame.name, self.count, reason)


def run(
    model_path: str | Path | Backend,
    source_spec: str | Source,
    *,
    backend: str = "auto",
    events: str | Path | None = None,
    save_anomalies: str | Path | None = None,
    video: str | Path | None = None,
    display: bool = False,
    max_frames: int | None = None,
    batch: int = 1,
    stats_every: float = 5.0,
    threads: int | None = None,
    first_frame_timeout: float = 20.0,
    queue_size: int | None = None,
    source_options: dict[str, Any] | None = None,
) -> RunSummary:
    """Stream frames from a source through an exported model into the chosen sinks.

    model_path: .onnx/.engine file (or an opened Backend); source_spec: see open_source (or a
    Source); source_options: open_source's keyword options (fps, width, height, filters).
    events "-" writes JSON lines to stdout; queue_size defaults to 2 x batch.
    Returns at the end of a recording/folder, after max_frames frames, or on SIGINT/SIGTERM.
    Raises AnodetError when the source yields nothing within first_frame_timeout seconds or
    fails for good; sinks are closed (and flushed) in every case.
    """
    if batch < 1:
        raise AnodetError(f"batch must be >= 1, got {batch}")
    own_backend = not hasattr(model_path, "predict")
    model: Backend = open_backend(model_path, backend, threads) if own_backend else model_path
    stop = threading.Event()
    sinks: list[Sink] = []  # the events sink, if any, is last: its latency includes the others
    source: Source | None = None
    try:
        if isinstance(source_spec, str):
            source = open_source(source_spec, **(source_options or {}))
        else:
            source = source_spec
        if save_anomalies is not None:
            sinks.append(SaveAnomaliesSink(save_anomalies))
        if video is not None:
            sinks.append(VideoSink(video, fps=float(getattr(source, "fps", None) or 15.0)))
        if display:
            sinks.append(DisplaySink(stop))
        if events is not None:
            sinks.append(EventsSink(events))
        with _stop_on_signals(stop):
            return _stream(
                model,
                source,
                sinks,
                stop,
                batch=batch,
                max_frames=max_frames,
                stats_every=stats_every,
                first_frame_timeout=first_frame_timeout,
                queue_size=queue_size or max(2, 2 * batch),
            )
    finally:
        if source is not None:
            source.close()
        for sink in sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - close every sink even when one fails
                logger.error("closing %s failed: %s", type(sink).__name__, exc)
        if own_backend:
            model.close()


def _stream(
    model: Backend,
    source: Source,
    sinks: list[Sink],
    stop: threading.Event,
    *,
    batch: int,
    max_frames: int | None,
    stats_every: float,
    first_frame_timeout: float,
    queue_size: int,
) -> RunSummary:
    info = model.info
    queue = FrameQueue(queue_size, drop_oldest=source.live)
    capture = threading.Thread(
        target=capture_frames, args=(source, queue, stop), name="anodet-capture", daemon=True
    )
    summary = RunSummary(backend=model.name)
    stats, skips = StatsLogger(stats_every), _Skips()
    start = time.perf_counter()
    first_at: float | None = None
    taken = 0
    logger.info("streaming %s through %s", source.description, model.name)
    capture.start()
    try:
        while True:
            if stop.is_set():
                summary.stopped_by = "stop"
                break
            if max_frames is not None and taken >= max_frames:
                summary.stopped_by = "max_frames"
                break
            want = batch if max_frames is None else min(batch, max_frames - taken)
            frames = queue.get_batch(want, timeout=0.1, wait_full=not source.live)
            if frames is None:
                if queue.error is not None:
                    raise queue.error
                summary.stopped_by = "stop" if stop.is_set() else "end"  # capture saw stop first
                break
            if not frames:
                if first_at is None and time.perf_counter() - start > first_frame_timeout:
                    raise AnodetError(
                        f"{source.description} produced no frame within {first_frame_timeout:g} s"
                    )
                stats.maybe_log(drops=queue.drops, skipped=skips.count, anomalies=summary.anomalies)
                continue
            first_at = first_at or min(f.arrival for f in frames)
            taken += len(frames)
            _process(model, frames, sinks, summary, stats, skips, info.needs_depth)
            stats.maybe_log(drops=queue.drops, skipped=skips.count, anomalies=summary.anomalies)
    finally:
        stop.set()
        source.close()
        queue.cancel()
        capture.join(timeout=10.0)  # daemon: a source stuck in a driver call cannot hang exit
    summary.seconds = time.perf_counter() - (first_at or start)
    summary.drops, summary.skipped = queue.drops, skips.count
    summary.reconnects = int(getattr(source, "reconnects", 0))
    summary.fps = summary.frames / summary.seconds if summary.seconds > 0 else 0.0
    summary.latency_p50_ms = percentile_ms(stats.latencies, 50)
    summary.latency_p95_ms = percentile_ms(stats.latencies, 95)
    stats.maybe_log(
        drops=summary.drops, skipped=summary.skipped, anomalies=summary.anomalies, force=True
    )
    return summary


def _process(
    model: Backend,
    frames: list[Frame],
    sinks: list[Sink],
    summary: RunSummary,
    stats: StatsLogger,
    skips: _Skips,
    needs_depth: bool,
) -> None:
    """Preprocess, infer and hand one batch to the sinks; latencies in ms per frame."""
    t_batch = time.perf_counter()
    ready: list[tuple[Frame, np.ndarray, np.ndarray | None, float]] = []
    for frame in frames:
        if frame.error is not None:
            skips.add(frame, frame.error)
            continue
        t0 = time.perf_counter()
        try:
            if needs_depth and frame.depth is None:
                raise AnodetError("the model needs depth but the frame has none")
            rgb, depth = prepare_frame(
                frame.rgb, frame.depth if needs_depth else None, model.info.preprocess
            )
        except AnodetError as exc:
            skips.add(frame, str(exc))
            continue
        ready.append((frame, rgb, depth, (time.perf_counter() - t0) * 1000.0))
    if not ready:
        return
    event_sink = sinks[-1] if sinks and isinstance(sinks[-1], EventsSink) else None
    visual = sinks[:-1] if event_sink is not None else sinks
    t_inf = time.perf_counter()
    depth_batch = np.stack([r[2] for r in ready]) if needs_depth else None
    out = model.predict(np.stack([r[1] for r in ready]), depth_batch)
    inference_ms = (time.perf_counter() - t_inf) * 1000.0
    for i, (frame, _, _, pre_ms) in enumerate(ready):
        t_post = time.perf_counter()
        score = float(out[OUTPUT_SCORE][i])
        result = FrameResult(
            score, score > DECISION_THRESHOLD, out[OUTPUT_MAP][i], out[OUTPUT_MASK][i]
        )
        for sink in visual:
            sink.write(frame, result)
        done = time.perf_counter()
        result.latency_ms = {
            "queue": (t_batch - frame.arrival) * 1000.0,
            "preprocess": pre_ms,
            "inference": inference_ms,
            "postprocess": (done - t_post) * 1000.0,
            "total": (done - frame.arrival) * 1000.0,
        }
        if event_sink is not None:
            event_sink.write(frame, result)
        summary.frames += 1
        summary.anomalies += int(result.anomalous)
        if frame.truth is not None:
            summary.labelled += 1
            summary.correct += int(frame.truth == result.anomalous)
        stats.add(result)
