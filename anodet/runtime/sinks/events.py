"""The JSON-lines events sink: one strict-JSON line per judged frame, flushed per line.

A kill loses at most the line being written. Torch-free.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import IO

import numpy as np

from anodet.errors import AnodetError
from anodet.outputs import check_output_file, describe_os_error
from anodet.runtime.frames import Frame, FrameResult
from anodet.runtime.regions import regions_record

logger = logging.getLogger(__name__)


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
        self._fh: IO[bytes] | None = None
        self.written = 0
        self._failed = False
        self._complete = 0  # bytes of the file that hold complete lines

    def write(self, frame: Frame, result: FrameResult) -> None:
        line = json.dumps(event_record(frame, result), allow_nan=False) + "\n"
        try:
            if not self._own:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                if self._fh is None:
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                    # unbuffered: a failed write leaves no buffer that a later flush would append
                    self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 - held for the run
                    self._complete = self._fh.seek(0, os.SEEK_END)
                data = line.encode("utf-8")
                while data:  # a raw write may write part of it (a filling disk), then fail
                    data = data[self._fh.write(data):]
                self._complete += len(line.encode("utf-8"))
        except OSError as exc:
            self._failed = True
            if self._own:
                cut_partial_line(self.path, self._complete)
            raise AnodetError(
                f"writing events file {self.path} failed after {self.written} events "
                f"({describe_os_error(exc)}); the events written before are kept, every line complete"
            ) from None
        self.written += 1

    def close(self) -> None:
        if self._fh is None or not self._own:
            return
        try:
            self._fh.close()
        except OSError:
            if not self._failed:  # the failed write was reported already; this is its echo
                raise


def cut_partial_line(path: str | Path, complete: int) -> None:
    """Truncate ``path`` to its ``complete`` bytes of whole lines: a disk that filled up in the
    middle of a line must not leave a half JSON object that breaks every reader of the file.
    Truncating frees space, so it works on the full disk; it is best effort otherwise."""
    try:
        with open(path, "r+b") as fh:
            if fh.seek(0, 2) > complete:
                fh.truncate(complete)
    except OSError as exc:
        logger.warning("could not cut the partial last line of %s: %s", path, describe_os_error(exc))
