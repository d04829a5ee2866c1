"""Progress bars that stay readable in log files: every anodet progress bar comes from here.

On a terminal this is a tqdm bar. Off a terminal (stderr redirected to a file, CI) tqdm would
write one ``\\r`` update per step into the log (75 for one 56-image evaluation, hundreds for a
training run), so a plain log line is written instead at most every quarter of the way (and
at the end): ``evaluating: 28/56 img (50%)``. Torch-free.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any

logger = logging.getLogger("anodet.progress")

STEPS = 4  # plain lines per bar off a terminal, besides the last one


def on_terminal() -> bool:
    """True when stderr is an interactive terminal (where a live bar makes sense)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


class PlainProgress:
    """A tqdm stand-in for logs: counts steps and logs ``desc: n/total unit (pct)`` a few times.

    Supports what anodet uses of tqdm: iteration, update, set_postfix, close. ``disable`` is
    True so that code asking whether a live bar holds the terminal line gets "no".
    """

    disable = True

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable) + initial
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = initial
        self.postfix = ""
        self._next = self._milestone(1)
        self._closed = False

    def _milestone(self, k: int) -> int | None:
        if not self.total:
            return None
        return max(self.n + 1, -(-self.total * k // STEPS))  # ceil(total * k / STEPS)

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("PlainProgress made without an iterable")
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._next is not None and self.n >= self._next and (self.total is None or self.n < self.total):
            self._log()
            k = 1 + self.n * STEPS // self.total
            self._next = self._milestone(k)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self._closed and self.n:
            self._closed = True
            self._log()
        self._closed = True

    def _log(self) -> None:
        of = f"/{self.total}" if self.total else ""
        pct = f" ({self.n / self.total:.0%})" if self.total else ""
        logger.info("%s: %d%s %s%s%s", self.desc, self.n, of, self.unit, pct,
                    f" [{self.postfix}]" if self.postfix else "")


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             leave: bool = True, disable: bool = False, initial: int = 0) -> Any:
    """A tqdm bar on a terminal, a PlainProgress (a few log lines) elsewhere; same arguments.

    disable: no output at all (small jobs). Use it as tqdm: iterate it, or update() and close().
    """
    if not disable and not on_terminal():
        return PlainProgress(iterable, total=total, desc=desc, unit=unit, initial=initial)
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=disable, initial=initial)
