"""What flows through the loop: the Frame, its FrameResult, and the Source and Sink protocols.

The bottom of the runtime: sources make Frames, the loop judges them into FrameResults, sinks
draw and write both. Own module so that sources, the frame queue, the judge and the sinks all
import these types without importing each other (it imports only anodet.runtime.regions).
Torch-free.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from anodet.runtime.regions import Region

# processing = preprocess + inference + postprocess (sinks included); total = arrival to verdict
LATENCY_KEYS = ("queue", "preprocess", "inference", "postprocess", "processing", "total")


@dataclass
class Frame:
    """One captured frame at camera resolution.

    rgb: uint8 H x W x 3 (RGB order); depth: float32 H x W metres, 0 = missing, or None.
    timestamp: capture time in seconds (camera or file clock); arrival: ``time.perf_counter()``
    when the source produced it (the latency origin). error: set when the frame could not be
    read; the pipeline counts it as skipped.
    """

    index: int
    timestamp: float
    rgb: np.ndarray | None
    depth: np.ndarray | None
    name: str
    truth: bool | None = None
    error: str | None = None
    arrival: float = field(default_factory=time.perf_counter)


class Source(Protocol):
    """What the pipeline needs from a source."""

    live: bool  # may drop frames when inference is slow
    description: str

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


@dataclass
class FrameResult:
    """The model's verdict on one frame. anomaly_map float32 S x S and mask uint8 S x S are
    at model resolution; latency_ms holds LATENCY_KEYS in ms (anodet.runtime.sinks.latency)."""

    score: float
    anomalous: bool
    anomaly_map: np.ndarray
    mask: np.ndarray
    latency_ms: dict[str, float] = field(default_factory=dict)
    regions: list[Region] = field(default_factory=list)  # the mask's components, in frame pixels


class Sink(Protocol):
    """What the pipeline needs from a sink: write each judged frame, close at the end."""

    def write(self, frame: Frame, result: FrameResult) -> None: ...

    def close(self) -> None: ...
