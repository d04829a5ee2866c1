"""RealSense recording playback in a child process: an SDK crash costs a restart, not the stream.

pyrealsense2's non-real-time playback now and then dies of a segmentation fault, which would
take the whole ``anodet-run`` process, its open events file and its summary with it. So the
SDK plays the file in a child process (``python -m anodet.runtime.sources.playback_process``, a plain
subprocess: no multiprocessing re-import of the user's ``__main__``) that sends every frame set
as a pickled ``Frame`` over its stdout pipe. When the child dies, a new one plays the file
again and skips every set already delivered (by colour frame number and timestamp), so each
recorded frame is judged exactly once, in recording order. Restarts are logged and counted
(``restarts``, shown in the run summary); sets whose colour and depth differ in time are left
for a later pass by the child's RecordingSource and counted (``mispaired``). Torch-free.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from anodet.errors import AnodetError
from anodet.runtime.frames import Frame
from anodet.runtime.sources.db3 import count_colour_frames
from anodet.runtime.sources.realsense import RecordingSource, import_realsense

logger = logging.getLogger(__name__)

Key = tuple  # (colour frame number, colour timestamp ms), or ("no colour", depth frame number)


class _KeyedRecording(RecordingSource):
    """The child's player: remembers the key of the set it last turned into a Frame, and starts
    with the keys the parent already has, so a restart skips them."""

    def __init__(self, path: str, skip: Iterable[Key], **options: Any):
        super().__init__(path, **options)
        self.delivered = {k for k in skip if k[0] != "no colour"}
        self.last_key: Key | None = None

    def _play(self, seen: set) -> Iterator[Frame]:
        seen |= self.delivered  # in place: the pass skips them and counts them as played
        yield from super()._play(seen)

    def _to_frame(self, frames: Any, seen: set) -> Frame | None:
        frame = super()._to_frame(frames, seen)
        if frame is not None:
            color, depth = frames.get_color_frame(), frames.get_depth_frame()
            self.last_key = ((color.get_frame_number(), color.get_timestamp()) if color
                             else ("no colour", depth.get_frame_number() if depth else -1))
        return frame


def _child_main() -> None:
    """Child side: read (path, options, skip) from stdin, send ("frame", key, fps, Frame) ...
    and a final ("end", stats) or ("error", message) to the parent."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the SDK prints goes to stderr, never into the frame pipe
    path, options, skip = pickle.load(sys.stdin.buffer)

    def send(msg: tuple) -> None:
        pickle.dump(msg, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    try:
        source = _KeyedRecording(path, skip, **options)
        for frame in source:
            send(("frame", source.last_key, source.fps, frame))
        send(("end", {"lost": source.lost, "passes": source.passes, "mispaired": source.mispaired}))
    except AnodetError as exc:
        send(("error", str(exc)))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        send(("error", f"playback failed: {type(exc).__name__}: {exc}"))
    out.close()


class IsolatedRecording:
    """Plays a ``.bag``/``.db3`` recording once, through a child process (see the module doc).

    Same contract as RecordingSource (every recorded set once, in file order; ``lost``,
    ``passes``, ``mispaired``, ``fps``), plus ``restarts``: children that died mid-file.
    After ``max_restarts`` deaths in a row without a new frame the run fails.
    """

    live = False

    def __init__(self, path: str | Path, *, filters: Iterable[str] = (), max_restarts: int = 3,
                 **options: Any):
        import_realsense()  # the extra's message here, not from inside the child
        self.path = Path(path)
        self.description = f"recording {self.path}"
        self.expected = count_colour_frames(self.path)  # damaged files are refused up front
        self.options = {"filters": tuple(filters), **options}
        self.max_restarts = max_restarts
        self.lost = self.passes = self.mispaired = self.restarts = 0
        self.fps: float | None = None
        self.process: subprocess.Popen | None = None
        self._closed = threading.Event()
        self._ended = False  # the child played the file to its end

    def close(self) -> None:
        self._closed.set()
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.kill()  # unblocks a read of its pipe; the stream is over anyway

    def _spawn(self, delivered: set[Key]) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        pickle.dump((str(self.path), self.options, sorted(delivered, key=repr)), proc.stdin)
        proc.stdin.close()
        self.process = proc
        return proc

    def __iter__(self) -> Iterator[Frame]:
        delivered: set[Key] = set()
        in_a_row = 0
        while not self._closed.is_set():
            proc = self._spawn(delivered)
            before = len(delivered)
            try:
                for frame in self._receive(proc.stdout, delivered):
                    frame.index, frame.arrival = len(delivered) - 1, time.perf_counter()
                    yield frame
                if self._ended:
                    return
            finally:
                _stop(proc)
            if self._closed.is_set():
                return
            in_a_row = 0 if len(delivered) > before else in_a_row + 1
            self.restarts += 1
            logger.warning("%s: the playback process died (exit status %s) after %d of %s frames; restart %d "
                           "plays on from there", self.description, proc.returncode, len(delivered),
                           self.expected or "?", self.restarts)
            if in_a_row >= self.max_restarts:
                raise AnodetError(
                    f"{self.description}: the SDK's playback process died {in_a_row} times in a row at frame "
                    f"{len(delivered)} (exit status {proc.returncode}); the file may be damaged there"
                )

    def _receive(self, pipe: BinaryIO, delivered: set[Key]) -> Iterator[Frame]:
        """Frames of one child not delivered yet; returns at its end (``_ended``) or its death."""
        while True:
            try:
                msg = pickle.load(pipe)
            except (EOFError, OSError, pickle.UnpicklingError):
                return  # died (perhaps mid-message): the caller restarts it
            if msg[0] == "frame":
                _, key, self.fps, frame = msg
                if key not in delivered:
                    delivered.add(key)
                    yield frame
            elif msg[0] == "end":
                stats = msg[1]
                self.lost = stats["lost"]
                self.passes += stats["passes"]
                self.mispaired += stats["mispaired"]
                self._ended = True
                return
            else:
                raise AnodetError(msg[1])


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


if __name__ == "__main__":
    _child_main()
