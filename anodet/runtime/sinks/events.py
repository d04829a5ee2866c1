"""The JSON-lines events sink: one strict-JSON line per judged frame, flushed per line.

A kill loses at most the line being written. Torch-free.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

import numpy as np

from anodet.errors import AnodetError
from anodet.outputs import check_output_file, describe_os_error
from anodet.runtime.frames import Frame, FrameResult
from anodet.runtime.regions import regions_record


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
