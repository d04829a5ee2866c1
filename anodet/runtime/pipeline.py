"""The streaming loop: capture thread -> bounded queue -> batched inference -> sinks.

Live sources lose the *oldest* queued frames when inference falls behind (the newest frame is
the one worth judging); playback sources block instead, so every recorded frame is judged.
Frames that cannot be read or preprocessed (NaN/inf or out-of-range depth included) are skipped
and counted. A model output that is not finite is never taken as a verdict: those frames are
counted as failed and left out of the events (a batch is retried frame by frame to find them);
a run in which the model failed on every frame is an error. SIGINT/SIGTERM stop the loop after
the current batch; sinks are then flushed and closed. Torch-free.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anodet.drift import InputMonitor
from anodet.errors import AnodetError
from anodet.runtime.backends.choice import open_backend
from anodet.runtime.backends.table import Backend
from anodet.runtime.frame_queue import FrameQueue, capture_frames
from anodet.runtime.frames import Sink, Source
from anodet.runtime.judge import judge_batch
from anodet.runtime.sinks.anomalies import SaveAnomaliesSink
from anodet.runtime.sinks.events import EventsSink
from anodet.runtime.sinks.stats import StatsLogger
from anodet.runtime.sinks.video import DisplaySink, VideoSink
from anodet.runtime.sources.forms import open_source
from anodet.runtime.sources.live import SourceLost
from anodet.runtime.summary import RunSummary, SkipLog

logger = logging.getLogger(__name__)


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
    strict_inputs: bool = False,
) -> RunSummary:
    """Stream frames from a source through an exported model into the chosen sinks.

    model_path: .onnx/.engine file (or an opened Backend); source_spec: see open_source (or a
    Source); source_options: open_source's keyword options (fps, width, height, filters).
    events "-" writes JSON lines to stdout; queue_size defaults to 2 x batch.
    Live frames are compared with the training frames' statistics (anodet.drift): a difference
    is warned about once, or raises AnodetError with strict_inputs.
    Returns at the end of a recording/folder, after max_frames frames, or on SIGINT/SIGTERM.
    Raises AnodetError when an output path cannot be written (checked before the stream starts;
    sinks create nothing until their first write), when writing fails mid-stream, when the
    source yields nothing within first_frame_timeout seconds or fails for good, and when the
    model failed on every frame; sinks are closed (and flushed) in every case.
    """
    if batch < 1:
        raise AnodetError(f"batch must be >= 1, got {batch}")
    if max_frames is not None and max_frames < 1:
        raise AnodetError(f"max_frames must be >= 1 (leave it out to run to the end), got {max_frames}")
    if threads is not None and threads < 0:
        raise AnodetError(f"threads must be >= 0 (0: ONNX Runtime's default), got {threads}")
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
                monitor=InputMonitor(model.info.input_stats, strict=strict_inputs),
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
    monitor: InputMonitor,
) -> RunSummary:
    info = model.info
    queue = FrameQueue(queue_size, drop_oldest=source.live)
    capture = threading.Thread(
        target=capture_frames, args=(source, queue, stop), name="anodet-capture", daemon=True
    )
    summary = RunSummary(backend=model.name, live=source.live)
    stats, skips, failures = StatsLogger(stats_every, source.live), SkipLog("skipped"), SkipLog("failed")
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
                if isinstance(queue.error, SourceLost) and taken:  # unplugged mid-stream: end it
                    logger.error("%s; ending the stream", queue.error)
                    summary.stopped_by, summary.source_lost = "source lost", str(queue.error)
                    break
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
            for f in frames:
                if f.error is None:
                    monitor.observe(f.rgb, f.depth if info.needs_depth else None)
            judged, flagged = summary.frames, summary.anomalies
            judge_batch(model, frames, sinks, summary, stats, (skips, failures), info.needs_depth)
            monitor.record(summary.frames - judged, summary.anomalies - flagged)
            stats.maybe_log(drops=queue.drops, skipped=skips.count, anomalies=summary.anomalies,
                            note=monitor.note)
    finally:
        stop.set()
        source.close()
        queue.cancel()
        capture.join(timeout=10.0)  # daemon: a source stuck in a driver call cannot hang exit
    summary.seconds = time.perf_counter() - (first_at or start)
    summary.drops, summary.skipped, summary.failed = queue.drops, skips.count, failures.count
    summary.lost = int(getattr(source, "lost", 0))
    summary.reconnects = int(getattr(source, "reconnects", 0))
    summary.restarts = int(getattr(source, "restarts", 0))
    summary.mispaired = int(getattr(source, "mispaired", 0))
    summary.fps = summary.frames / summary.seconds if summary.seconds > 0 else 0.0
    summary.set_latencies(stats.latencies.percentiles())
    summary.input_warnings = list(monitor.problems.values())
    stats.maybe_log(
        drops=summary.drops, skipped=summary.skipped, anomalies=summary.anomalies, force=True,
        note=monitor.note,
    )
    if summary.failed and not summary.frames:
        raise AnodetError(
            f"the model failed on all {summary.failed} frames it was given "
            f"({failures.last_reason}); nothing was judged: re-export or check the model"
        )
    return summary
