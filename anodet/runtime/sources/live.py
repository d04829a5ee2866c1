"""The reconnecting live source: a camera that can be unplugged and come back. Torch-free.

RealSenseSource builds on it; so do the flaky test devices. Imports only anodet.runtime.frames.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from anodet.errors import AnodetError
from anodet.runtime.frames import Frame

logger = logging.getLogger(__name__)


class SourceLost(AnodetError):
    """A live device went away and did not come back: the stream ends (anodet-run reports it in
    its summary); a capture keeps what it wrote."""


class LiveSource:
    """Base class for live sources that can lose their device and get it back.

    Subclasses implement ``_connect()``, ``_read() -> Frame | None`` and ``_disconnect()``;
    a ``RuntimeError`` from ``_connect``/``_read`` means "device gone". The loop then retries
    with exponential backoff, logging each attempt, and raises AnodetError once
    ``give_up_after`` seconds have passed without a successful reconnect.
    """

    live = True
    description = "live source"

    def __init__(
        self, *, give_up_after: float = 30.0, first_delay: float = 0.5, max_delay: float = 8.0
    ):
        self.give_up_after = give_up_after
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.reconnects = 0
        self._closed = threading.Event()

    def _connect(self) -> None:
        raise NotImplementedError

    def _read(self) -> Frame | None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed.set()

    def __iter__(self) -> Iterator[Frame]:
        try:
            self._connect()
        except RuntimeError as exc:
            raise AnodetError(f"cannot open {self.description}: {exc}") from None
        try:
            while not self._closed.is_set():
                try:
                    frame = self._read()
                except RuntimeError as exc:  # pyrealsense2 reports unplug and timeouts this way
                    if self._closed.is_set():
                        break
                    self._recover(exc)
                    continue
                if frame is not None:
                    yield frame
        finally:
            self._disconnect_quietly()

    def _disconnect_quietly(self) -> None:
        try:
            self._disconnect()
        except RuntimeError as exc:  # already gone: nothing left to release
            logger.debug("%s: disconnect failed: %s", self.description, exc)

    def _recover(self, cause: Exception) -> None:
        logger.warning("%s lost (%s); reconnecting", self.description, cause)
        self._disconnect_quietly()
        start, delay, attempt = time.monotonic(), self.first_delay, 0
        while True:
            attempt += 1
            left = self.give_up_after - (time.monotonic() - start)
            if self._closed.wait(max(0.0, min(delay, left))):
                return
            try:
                self._connect()
            except RuntimeError as exc:
                elapsed = time.monotonic() - start
                logger.warning(
                    "%s: reconnect attempt %d failed after %.1f s: %s",
                    self.description,
                    attempt,
                    elapsed,
                    exc,
                )
                if elapsed >= self.give_up_after:
                    raise SourceLost(
                        f"{self.description} did not come back within {self.give_up_after:g} s "
                        f"({attempt} reconnect attempts; last error: {exc}); check the cable and power"
                    ) from None
                delay = min(delay * 2, self.max_delay)
                continue
            self.reconnects += 1
            logger.warning("%s reconnected after %d attempt(s)", self.description, attempt)
            return
