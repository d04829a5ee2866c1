"""The bounded hand-off between the capture thread and inference, and the capture loop.

Live sources lose the *oldest* queued frame when inference falls behind (the newest frame is
the one worth judging); playback sources block instead, so every recorded frame is judged.
Torch-free.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from anodet.runtime.frames import Frame, Source


class FrameQueue:
    """Bounded hand-off between the capture thread and inference.

    drop_oldest (live): a full queue discards its oldest frame and counts it. Otherwise put()
    blocks until there is room (playback) or the queue is cancelled.
    """

    def __init__(self, maxsize: int, drop_oldest: bool):
        self.maxsize, self.drop_oldest = maxsize, drop_oldest
        self.drops = 0
        self.error: BaseException | None = None
        self._items: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._finished = self._cancelled = False

    def put(self, frame: Frame) -> None:
        with self._cond:
            while len(self._items) >= self.maxsize and not self._cancelled:
                if self.drop_oldest:
                    self._items.popleft()
                    self.drops += 1
                else:
                    self._cond.wait()
            if not self._cancelled:
                self._items.append(frame)
                self._cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        """The source ended (error None) or failed."""
        with self._cond:
            self._finished, self.error = True, error
            self._cond.notify_all()

    def cancel(self) -> None:
        """Unblock a waiting put(): the consumer is gone."""
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def get_batch(self, n: int, timeout: float, wait_full: bool) -> list[Frame] | None:
        """Up to n frames; [] on timeout; None once the source has ended and all are taken.

        wait_full (playback) waits for n frames so batches stay full; live takes what is there.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                enough = len(self._items) >= (n if wait_full else 1)
                if enough or (self._finished and self._items):
                    break
                if self._finished:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)
            batch = [self._items.popleft() for _ in range(min(n, len(self._items)))]
            self._cond.notify_all()
            return batch


def capture_frames(source: Source, queue: FrameQueue, stop: threading.Event) -> None:
    """Capture-thread body: iterate ``source`` into ``queue`` until it ends, fails or ``stop``."""
    it = iter(source)
    try:
        for frame in it:
            if stop.is_set():
                break
            queue.put(frame)
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
        queue.finish(exc)
        return
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()  # run the source's cleanup (pipeline.stop) in the thread that owns it
    queue.finish()
