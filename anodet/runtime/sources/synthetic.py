"""Generated RGB-D frames with known truth (anodet.data.synthetic, imported on first use).

Paced by fps it behaves like a camera (live, frames may be dropped); unpaced like playback.
Torch-free.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np

from anodet.errors import AnodetError
from anodet.runtime.frames import Frame


class SyntheticSource:
    """Generated RGB-D frames; a share ``defect_rate`` gets a random defect type
    (``anodet.data.synthetic.make_frame``); ``truth`` tells which.

    count None streams forever. fps paces the frames like a camera and makes the source live
    (frames may then be dropped); without fps it behaves like playback.
    """

    def __init__(
        self,
        count: int | None = None,
        *,
        size: int = 256,
        defect_rate: float = 0.2,
        fps: float | None = None,
        seed: int = 0,
    ):
        self.count, self.size, self.defect_rate, self.fps, self.seed = (
            count,
            size,
            defect_rate,
            fps,
            seed,
        )
        self.live = fps is not None
        self.description = f"synthetic source ({'endless' if count is None else count} frames)"
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()

    def __iter__(self) -> Iterator[Frame]:
        try:
            from anodet.data.synthetic import DEFECT_TYPES, make_frame
        except ImportError as exc:
            raise AnodetError(f"the synthetic source needs anodet.data.synthetic ({exc})") from None
        rng = np.random.default_rng(self.seed)
        next_due = time.monotonic()
        index = 0
        while (self.count is None or index < self.count) and not self._closed.is_set():
            defect = str(rng.choice(DEFECT_TYPES)) if rng.random() < self.defect_rate else None
            rgb, depth, _ = make_frame(rng, self.size, defect)
            if self.fps:
                next_due += 1.0 / self.fps
                if self._closed.wait(max(0.0, next_due - time.monotonic())):
                    return
            name = f"frame {index}" + (f" ({defect})" if defect else "")
            yield Frame(index, time.time(), rgb, depth, name, defect is not None)
            index += 1
