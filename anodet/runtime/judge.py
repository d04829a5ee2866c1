"""One batch of the stream: preprocess, infer, hand the verdicts to the sinks. Torch-free.

A frame that cannot be preprocessed is skipped; a frame whose model output is unusable (NaN,
inf, wrong shape: ``anodet.artifact.OutputError``) is counted as failed and never reaches a sink,
so no non-finite score is ever written or taken as "ok".
"""

from __future__ import annotations

import time

import numpy as np

from anodet.artifact import DECISION_THRESHOLD, OUTPUT_MAP, OUTPUT_MASK, OUTPUT_SCORE, OutputError
from anodet.errors import AnodetError
from anodet.preprocess import prepare_frame
from anodet.runtime.backends.table import Backend
from anodet.runtime.frames import Frame, FrameResult, Sink
from anodet.runtime.regions import find_regions
from anodet.runtime.sinks.events import EventsSink
from anodet.runtime.sinks.stats import StatsLogger
from anodet.runtime.summary import RunSummary, SkipLog

Prepared = tuple[Frame, np.ndarray, "np.ndarray | None", float]  # frame, rgb, depth, preprocess ms


def _predict(
    model: Backend, ready: list[Prepared], needs_depth: bool, failures: SkipLog
) -> tuple[list[Prepared], dict[str, np.ndarray]]:
    """Run one batch; on an unusable output (OutputError: NaN, inf, wrong shape) run its frames
    one by one, so only the frames the model fails on are counted as failed."""

    def infer(items: list[Prepared]) -> dict[str, np.ndarray]:
        depth = np.stack([r[2] for r in items]) if needs_depth else None
        return model.predict(np.stack([r[1] for r in items]), depth)

    try:
        return ready, infer(ready)
    except OutputError as exc:
        if len(ready) == 1:
            failures.add(ready[0][0], str(exc))
            return [], {}
    kept, outs = [], []
    for item in ready:
        try:
            outs.append(infer([item]))
            kept.append(item)
        except OutputError as exc:
            failures.add(item[0], str(exc))
    if not kept:
        return [], {}
    return kept, {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def judge_batch(
    model: Backend,
    frames: list[Frame],
    sinks: list[Sink],
    summary: RunSummary,
    stats: StatsLogger,
    logs: tuple[SkipLog, SkipLog],
    needs_depth: bool,
) -> None:
    """Preprocess, infer and hand one batch to the sinks; latencies in ms per frame.

    logs: (skipped, failed). Depth is checked strictly: NaN/inf or out-of-range pixels skip
    the frame instead of reaching the model (see anodet.preprocess.to_depth).
    """
    skips, failures = logs
    t_batch = time.perf_counter()
    ready: list[Prepared] = []
    for frame in frames:
        if frame.error is not None:
            skips.add(frame, frame.error)
            continue
        t0 = time.perf_counter()
        try:
            if needs_depth and frame.depth is None:
                raise AnodetError("the model needs depth but the frame has none")
            rgb, depth = prepare_frame(
                frame.rgb, frame.depth if needs_depth else None, model.info.preprocess, strict=True
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
    ready, out = _predict(model, ready, needs_depth, failures)
    inference_ms = (time.perf_counter() - t_inf) * 1000.0
    for i, (frame, _, _, pre_ms) in enumerate(ready):
        t_post = time.perf_counter()
        score = float(out[OUTPUT_SCORE][i])
        amap, mask = out[OUTPUT_MAP][i], out[OUTPUT_MASK][i]
        regions = find_regions(mask, amap, frame.rgb.shape[:2])
        result = FrameResult(score, score > DECISION_THRESHOLD, amap, mask, regions=regions)
        for sink in visual:
            sink.write(frame, result)
        done = time.perf_counter()
        post_ms = (done - t_post) * 1000.0
        result.latency_ms = {
            "queue": (t_batch - frame.arrival) * 1000.0,
            "preprocess": pre_ms,
            "inference": inference_ms,
            "postprocess": post_ms,
            "processing": pre_ms + inference_ms + post_ms,  # what the frame cost, without its wait
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
