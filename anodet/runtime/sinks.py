"""Where results go: JSON-lines events, saved anomalies, annotated video, a window, stats logs.

Sinks get each processed frame with its ``FrameResult`` and must not lose anything already
written when the process is stopped: events are flushed per line, images written whole.
Torch-free.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import cv2
import numpy as np

from anodet.bench.timing import percentile
from anodet.errors import AnodetError
from anodet.runtime.frames import Frame
from anodet.outputs import check_output_dir, check_output_file, describe_os_error
from anodet.runtime.regions import Region, regions_record
from anodet.runtime.video import VideoSink, draw_overlay  # noqa: F401 (part of this module's API)

logger = logging.getLogger(__name__)

LATENCY_KEYS = ("queue", "preprocess", "inference", "postprocess", "total")


@dataclass
class FrameResult:
    """The model's verdict on one frame. anomaly_map float32 S x S and mask uint8 S x S are
    at model resolution; latency_ms holds LATENCY_KEYS (total = arrival to sinks done)."""

    score: float
    anomalous: bool
    anomaly_map: np.ndarray
    mask: np.ndarray
    latency_ms: dict[str, float] = field(default_factory=dict)
    regions: list[Region] = field(default_factory=list)  # the mask's components, in frame pixels


class Sink(Protocol):
    def write(self, frame: Frame, result: FrameResult) -> None: ...

    def close(self) -> None: ...


def event_record(frame: Frame, result: FrameResult) -> dict:
    """The JSON event of one frame."""
    rec = {
        "index": frame.index,
        "name": frame.name,
        "timestamp": round(frame.timestamp, 6),
        "score": round(float(result.score), 6),
        "anomalous": bool(result.anomalous),
        "defect_fraction": round(float(np.count_nonzero(result.mask)) / result.mask.size, 6),
        **regions_record(result.regions),
        "latency_ms": {k: round(v, 3) for k, v in result.latency_ms.items()},
    }
    if frame.truth is not None:
        rec["truth"] = bool(frame.truth)
    return rec


class EventsSink:
    """One JSON line per processed frame, flushed per line (a kill loses at most the line being
    written). path "-" writes to standard output. The file is opened (for appending, so a
    restarted service keeps earlier events) at the first event; the path is checked up front.

    Lines are strict JSON: NaN or inf anywhere raises instead of writing a bare ``NaN``.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._own = self.path != "-"
        if self._own:
            check_output_file(self.path, "events file")
        self._fh: IO[str] | None = None if self._own else sys.stdout
        self.written = 0
        self._failed = False

    def write(self, frame: Frame, result: FrameResult) -> None:
        line = json.dumps(event_record(frame, result), allow_nan=False) + "\n"
        try:
            if self._fh is None:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the run
            self._fh.write(line)
            self._fh.flush()
        except OSError as exc:
            self._failed = True
            raise AnodetError(
                f"writing events file {self.path} failed after {self.written} events "
                f"({describe_os_error(exc)}); the events written before are kept"
            ) from None
        self.written += 1

    def close(self) -> None:
        if self._fh is None:
            return
        try:
            self._fh.flush()
            if self._own:
                self._fh.close()
        except OSError:
            if not self._failed:  # the failed write was reported already; this is its echo
                raise
            if self._own:
                try:
                    self._fh.close()
                except OSError:
                    pass


def _safe_stem(frame: Frame) -> str:
    stem = Path(frame.name).stem if "/" in frame.name or "." in frame.name else frame.name
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:60]


class SaveAnomaliesSink:
    """For each anomalous frame: ``NNNNNN_<name>_overlay.png``, ``_rgb.png`` and ``_depth.npy``
    (float32 metres at camera resolution) in ``directory``, created at the first anomaly."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        check_output_dir(self.dir, "anomalies folder")
        self.saved = 0

    def write(self, frame: Frame, result: FrameResult) -> None:
        if not result.anomalous:
            return
        base = str(self.dir / f"{frame.index:06d}_{_safe_stem(frame)}")
        overlay = draw_overlay(frame.rgb, result.anomaly_map, result.mask, result.score)
        target = base
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            for suffix, img in (("_overlay.png", overlay), ("_rgb.png", frame.rgb)):
                target = base + suffix
                if not cv2.imwrite(target, cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
                    raise OSError(0, "OpenCV could not write the image")
            if frame.depth is not None:
                target = base + "_depth.npy"
                np.save(target, frame.depth)
        except (OSError, cv2.error) as exc:
            Path(target).unlink(missing_ok=True)  # no half-written file among the complete ones
            reason = describe_os_error(exc) if isinstance(exc, OSError) else str(exc).strip()
            raise AnodetError(
                f"writing {target} failed after {self.saved} saved anomalies ({reason})"
            ) from None
        self.saved += 1

    def close(self) -> None:
        """Nothing is held open: every file is complete when write returns."""


class DisplaySink:
    """Shows annotated frames in an OpenCV window; q or Esc sets ``stop``."""

    WINDOW = "anodet"

    def __init__(self, stop: threading.Event):
        self.stop = stop
        try:
            cv2.namedWindow(self.WINDOW, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise AnodetError(
                "--display needs OpenCV with GUI support, but this OpenCV has none "
                "(opencv-python-headless); pip install opencv-python, or use --video/--save-anomalies"
            ) from None

    def write(self, frame: Frame, result: FrameResult) -> None:
        img = draw_overlay(frame.rgb, result.anomaly_map, result.mask, result.score)
        cv2.imshow(self.WINDOW, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stop.set()

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.WINDOW)
        except cv2.error:
            pass


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
