"""The contract's checks on what goes into and comes out of a model, for every backend. Torch-free.

One input check, one output check, one chunked run over fixed or dynamic batches and one parity
comparison: export parity, the runtime's backends, ``anodet-bench`` and INT8 all call these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from anodet.artifact.info import (
    DECISION_THRESHOLD,
    OUTPUT_MAP,
    OUTPUT_MASK,
    OUTPUT_SCORE,
    OUTPUTS,
    PARITY_TOLERANCE,
    ModelInfo,
)
from anodet.errors import AnodetError


def check_inputs(info: ModelInfo, rgb: Any, depth: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate a batch against the contract; return C-contiguous rgb uint8 and depth float32.

    Depth of any floating type is cast to float32; depth given to an RGB-only model is dropped
    (sources deliver it whatever the model needs).
    """
    s = info.image_size
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[1:] != (s, s, 3):
        got = f"{getattr(rgb, 'dtype', type(rgb).__name__)} {getattr(rgb, 'shape', '')}"
        raise AnodetError(f"rgb batch must be uint8 N x {s} x {s} x 3 (RGB order), got {got}")
    if not info.needs_depth:
        return np.ascontiguousarray(rgb), None
    if depth is None:
        raise AnodetError("this model needs depth (float32 N x S x S metres) but none was given")
    if not isinstance(depth, np.ndarray) or not np.issubdtype(depth.dtype, np.floating) \
            or depth.shape != rgb.shape[:3]:
        got = f"{getattr(depth, 'dtype', type(depth).__name__)} {getattr(depth, 'shape', '')}"
        raise AnodetError(f"depth batch must be float32 {rgb.shape[0]} x {s} x {s} (metres, 0 = missing), got {got}")
    return np.ascontiguousarray(rgb), np.ascontiguousarray(depth, dtype=np.float32)


class OutputError(AnodetError):
    """A model ran but its outputs break the contract (shape, type, non-finite values)."""


def check_outputs(out: dict[str, Any], n: int, size: int) -> dict[str, np.ndarray]:
    """Outputs for ``n`` frames in the contract's types; OutputError when they break it.

    Non-finite scores or maps are refused: a NaN score compares False with the threshold and
    would pass a broken frame as a good part.
    """
    want = {OUTPUT_SCORE: ((n,), np.float32), OUTPUT_MAP: ((n, size, size), np.float32),
            OUTPUT_MASK: ((n, size, size), np.uint8)}
    got = {}
    for name, (shape, dtype) in want.items():
        if name not in out:
            raise OutputError(f"model output '{name}' is missing")
        arr = np.asarray(out[name])
        if arr.size != int(np.prod(shape)) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise OutputError(f"model output '{name}' is {arr.dtype} {arr.shape}, expected {shape}")
        got[name] = arr.reshape(shape).astype(dtype, copy=False)
    if not (np.isfinite(got[OUTPUT_SCORE]).all() and np.isfinite(got[OUTPUT_MAP]).all()):
        raise OutputError("model output holds non-finite scores (NaN or inf)")
    if not np.isin(got[OUTPUT_MASK], (0, 1)).all():
        raise OutputError("model output 'mask' holds values other than 0 and 1")
    return got


RunFn = Callable[[np.ndarray, np.ndarray | None], dict[str, Any]]


def run_batched(run: RunFn, info: ModelInfo, rgb: Any, depth: Any, *, max_batch: int | None = None,
                min_batch: int = 1, check: bool = True) -> dict[str, np.ndarray]:
    """Check inputs, call ``run(rgb, depth)`` per chunk, check and join the outputs.

    A fixed-batch model gets chunks of exactly ``info.batch`` frames; a dynamic one chunks of at
    most ``max_batch`` (None: all at once) and at least ``min_batch``. Short chunks are padded
    by repeating their last frame, whose outputs are dropped. ``check=False`` joins whatever
    ``run`` returns (intermediate tensors) without the output contract's checks.
    """
    rgb, depth = check_inputs(info, rgb, depth)
    n, s = rgb.shape[0], info.image_size
    lo, hi = (info.batch, info.batch) if info.batch else (min_batch, max_batch or max(n, min_batch))
    parts = []
    for start in range(0, n, hi):
        stop = min(n, start + hi)
        idx = np.minimum(np.arange(start, max(stop, start + lo)), stop - 1)
        chunk = run(rgb[idx], None if depth is None else depth[idx])
        chunk = check_outputs(chunk, idx.size, s) if check else {k: np.asarray(v) for k, v in chunk.items()}
        parts.append({k: v[: stop - start] for k, v in chunk.items()})
    if not parts:
        empty = {OUTPUT_SCORE: np.zeros(0), OUTPUT_MAP: np.zeros((0, s, s)), OUTPUT_MASK: np.zeros((0, s, s))}
        return check_outputs(empty, 0, s)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclass(frozen=True)
class Parity:
    """How far a model's outputs are from a reference's on the same frames."""

    frames: int
    max_abs_map: float
    max_abs_score: float
    image_decisions_equal: float  # share of frames with the same decision
    pixel_decisions_equal: float  # share of pixels with the same mask value
    tolerance: float
    ok: bool

    def describe(self) -> str:
        return (f"max |map diff| {self.max_abs_map:.2e}, |score diff| {self.max_abs_score:.2e} (bound "
                f"{self.tolerance:g}), image decisions {self.image_decisions_equal:.0%} equal")


def compare_outputs(reference: dict[str, np.ndarray], other: dict[str, np.ndarray], *,
                    precision: str = "fp32") -> Parity:
    """Compare ``other`` with ``reference`` (the first frames both hold) at a precision's bound.

    ``ok`` needs map and score within ``PARITY_TOLERANCE[precision]`` and the same decision on
    every frame whose reference score is farther than that bound from the threshold (a score
    on the threshold may flip under any rounding).
    """
    if precision not in PARITY_TOLERANCE:
        raise AnodetError(f"no parity bound for precision {precision!r}; valid: {', '.join(PARITY_TOLERANCE)}")
    tol = PARITY_TOLERANCE[precision]
    k = min(len(reference[OUTPUT_SCORE]), len(other[OUTPUT_SCORE]))
    ref = {key: np.asarray(reference[key][:k], np.float64) for key in OUTPUTS}
    got = {key: np.asarray(other[key][:k], np.float64) for key in OUTPUTS}
    if k == 0:
        return Parity(0, 0.0, 0.0, 1.0, 1.0, tol, True)
    diff_map = float(np.abs(ref[OUTPUT_MAP] - got[OUTPUT_MAP]).max())
    diff_score = float(np.abs(ref[OUTPUT_SCORE] - got[OUTPUT_SCORE]).max())
    same = (ref[OUTPUT_SCORE] > DECISION_THRESHOLD) == (got[OUTPUT_SCORE] > DECISION_THRESHOLD)
    clear = np.abs(ref[OUTPUT_SCORE] - DECISION_THRESHOLD) > tol
    ok = bool(np.isfinite([diff_map, diff_score]).all() and diff_map <= tol and diff_score <= tol
              and same[clear].all())
    return Parity(k, diff_map, diff_score, float(same.mean()),
                  float(np.mean(ref[OUTPUT_MASK] == got[OUTPUT_MASK])), tol, ok)
