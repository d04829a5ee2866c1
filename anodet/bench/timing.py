"""The one timing loop and percentile of the tree, and memory readings (anodet-bench, runtime, benchmarks/).

Torch-free and light: the torch-free runtime imports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

PERCENTILES = (50, 95, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between order statistics.

    Same definition as ``numpy.percentile(..., method="linear")``: position q/100 x (n-1) in the
    sorted values. NaN for an empty sequence.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    data = sorted(float(v) for v in values)
    if not data:
        return float("nan")
    pos = q / 100.0 * (len(data) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def time_ms(fn: Callable[..., object], *args: object) -> float:
    """Wall-clock milliseconds of one call ``fn(*args)`` (perf_counter)."""
    t0 = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t0) * 1000.0


def measure(fn: Callable[..., object], *, warmup: int, runs: int,
            inputs: Callable[[int], tuple] | None = None) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times; return each run in ms.

    With ``inputs``, call i is ``fn(*inputs(i))`` and only ``fn`` is timed (building the i-th
    input, e.g. picking the next frames, is not); without it ``fn()`` is called.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs} warmup={warmup}")
    times = [time_ms(fn, *(inputs(i) if inputs is not None else ())) for i in range(warmup + runs)]
    return times[warmup:]


def summarize(times_ms: Sequence[float], batch: int = 1) -> dict[str, float | int]:
    """Percentiles per batch and per frame, mean, and throughput of a list of batch timings."""
    out: dict[str, float | int] = {"batch": batch, "runs": len(times_ms)}
    for q in PERCENTILES:
        out[f"p{q}_ms"] = percentile(times_ms, q)
    for q in PERCENTILES:
        out[f"p{q}_ms_per_frame"] = out[f"p{q}_ms"] / batch
    out["mean_ms"] = float(np.mean(times_ms)) if len(times_ms) else float("nan")
    total_s = float(np.sum(times_ms)) / 1000.0
    out["throughput_fps"] = batch * len(times_ms) / total_s if total_s > 0 else float("nan")
    return out


def _status_kb(key: str, pid: int | str = "self") -> float | None:
    """A ``VmXxx:`` line of /proc/PID/status in kB (None where /proc is not available)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """Peak resident memory (VmHWM) of a process in MiB, None off Linux."""
    kb = _status_kb("VmHWM", pid)
    return None if kb is None else kb / 1024.0


def rss_mb(pid: int | str = "self") -> float | None:
    """Current resident memory (VmRSS) of a process in MiB, None off Linux."""
    kb = _status_kb("VmRSS", pid)
    return None if kb is None else kb / 1024.0
