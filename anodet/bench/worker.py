"""Measure one benchmark row in a fresh process, so its peak memory is its own.

    python -m anodet.bench.worker SPEC.json RESULT.json

SPEC (written by anodet.bench.core) names the row kind (torch, torch-seed, onnx, file), the
artifact and runtime backend, the data, batch sizes, warm-up and run counts. The worker loads
the test split with the model's own preprocessing recipe, opens the model exactly as the
runtime or the evaluator does, checks one batch against the output contract, times
``predict`` per batch size, reads its peak RSS (VmHWM) and then, unless told not to, evaluates
accuracy with ``evaluate_model(report=False)``. ONNX rows never import torch.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from anodet.bench.timing import measure, peak_rss_mb, rss_mb, summarize


class ValidationError(Exception):
    """The model ran but its outputs break the contract (shapes, dtypes, finite values)."""


def _open(spec: dict[str, Any]):
    """-> (predictor, ModelUnderTest-like facts: in_channels, preprocess spec, preset, runs_on, model_mb)."""
    kind = spec["kind"]
    if kind in ("torch", "torch-seed"):
        import torch

        from anodet.evaluation.evaluator import TorchPredictor
        from anodet.models.detector import load_detector

        if spec.get("threads"):
            torch.set_num_threads(int(spec["threads"]))
        det = load_detector(spec["checkpoint"])
        if kind == "torch-seed":
            from anodet.bench.stages import seed_detector

            det = seed_detector(det)
        cfg = det.cfg
        runs_on = f"PyTorch {torch.__version__} CPU, {torch.get_num_threads()} threads"
        return (TorchPredictor(det, torch.device("cpu")), cfg.model.in_channels, cfg.data.preprocess, cfg.preset,
                runs_on, det)
    from anodet.runtime.backends import open_backend

    be = open_backend(spec["artifact"], spec["backend"], spec.get("threads"))
    info = be.info
    return be, info.in_channels, info.preprocess, info.preset, be.name, None


def validate(out: dict[str, np.ndarray], n: int, size: int) -> None:
    """Raise ValidationError unless ``out`` holds the contract's outputs for n frames."""
    want = {"score": ((n,), np.floating), "anomaly_map": ((n, size, size), np.floating),
            "mask": ((n, size, size), np.integer)}
    for key, (shape, kind) in want.items():
        if key not in out:
            raise ValidationError(f"output '{key}' missing")
        arr = np.asarray(out[key])
        if arr.shape != shape or not np.issubdtype(arr.dtype, kind):
            raise ValidationError(f"output '{key}' is {arr.dtype} {arr.shape}, expected {shape}")
    if not (np.isfinite(out["score"]).all() and np.isfinite(out["anomaly_map"]).all()):
        raise ValidationError("non-finite scores or map values")
    if not np.isin(out["mask"], (0, 1)).all():
        raise ValidationError("mask holds values other than 0 and 1")


def _parity(out: dict[str, np.ndarray], reference: Path | None, n: int) -> dict[str, float] | None:
    """Differences from the PyTorch checkpoint's outputs on the same first frames."""
    if reference is None or not reference.is_file():
        return None
    ref = np.load(reference)
    k = min(n, ref["score"].shape[0])
    if k == 0:
        return None
    return {
        "frames": int(k),
        "max_abs_score": float(np.abs(ref["score"][:k] - out["score"][:k]).max()),
        "max_abs_map": float(np.abs(ref["anomaly_map"][:k] - out["anomaly_map"][:k]).max()),
        "image_decisions_equal": float(np.mean((ref["score"][:k] > 0.5) == (out["score"][:k] > 0.5))),
    }


def _load() -> float | None:
    """1-minute load average: other jobs on a shared CPU make the timings noisy."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def measure_row(spec: dict[str, Any]) -> dict[str, Any]:
    """Everything the table needs for one row; raises on failures (the caller classifies)."""
    from anodet.data.arrays import load_arrays
    from anodet.data.samples import discover

    t_start = time.perf_counter()
    result: dict[str, Any] = {"status": "ok", "reason": None}
    predictor, in_channels, prep, preset, runs_on, det = _open(spec)
    result.update(runs_on=runs_on, rss_after_open_mb=rss_mb())
    need_depth = in_channels == 4
    ds = discover(spec["data"], need_depth=need_depth)
    rgb, depth = load_arrays(ds.test, prep, need_depth=need_depth, desc="test frames")
    n = rgb.shape[0]
    result["frames"] = n

    def take(i: int, b: int) -> tuple[np.ndarray, np.ndarray | None]:
        idx = (np.arange(b) + i * b) % n  # a different run of real frames per call
        return rgb[idx], None if depth is None else depth[idx]

    k = min(n, max(spec["batches"]))
    first = predictor.predict(rgb[:k], None if depth is None else depth[:k])
    try:
        validate(first, k, prep.image_size)
    except ValidationError as exc:
        return {**result, "status": "validation failed", "reason": str(exc)}
    ref = spec.get("reference")
    result["parity"] = _parity(first, Path(ref) if ref else None, k) if spec["kind"] != "torch-seed" else None

    latency = []
    result["load_before"] = _load()
    for b in spec["batches"]:
        times = measure(predictor.predict, warmup=spec["warmup"], runs=spec["runs"],
                        inputs=lambda i, b=b: take(i, b))
        latency.append({**summarize(times, b), "times_ms": times})
    result["latency"] = latency
    result["load_after"] = _load()
    result["peak_rss_mb"] = peak_rss_mb()  # before evaluation: inference memory only
    result["torch_loaded"] = "torch" in sys.modules
    if det is not None and spec["kind"] == "torch-seed":
        from anodet.bench.stages import model_bytes

        result["size_mb"] = model_bytes(det) / 2**20
    result["image_auroc"] = result["au_pro"] = result["pixel_auroc"] = None
    if spec.get("accuracy", True):
        from anodet.evaluation.evaluator import ModelUnderTest, evaluate_model

        mut = ModelUnderTest(spec["name"], predictor, in_channels, prep, preset)
        metrics = evaluate_model(mut, spec["data"], spec["eval_dir"], report=False)
        result.update(image_auroc=metrics.get("image_auroc"), au_pro=metrics.get("au_pro"),
                      pixel_auroc=metrics.get("pixel_auroc"))
    result["seconds"] = time.perf_counter() - t_start
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m anodet.bench.worker SPEC.json RESULT.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname).1s %(name)s: %(message)s")
    spec = json.loads(Path(argv[0]).read_text())
    from anodet.errors import AnodetError

    try:
        result = measure_row(spec)
    except AnodetError as exc:
        result = {"status": "error", "reason": str(exc)}
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
