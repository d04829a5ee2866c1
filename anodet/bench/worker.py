"""Measure one benchmark row in a fresh process, so its peak memory is its own.

    python -m anodet.bench.worker SPEC.json RESULT.json

SPEC (written by anodet.bench.core) holds the row's definition (anodet.bench.rows.Row), the
file or checkpoint it runs, the data, batch sizes, warm-up and run counts and the ONNX Runtime
CPU reference outputs. The worker loads the test split with the model's own preprocessing
recipe, opens the model as the runtime or the evaluator does, checks one batch against the
output contract and the reference, times ``predict`` per batch size (host numpy in and out,
copies included), reads its peak RSS (VmHWM) and then, unless told not to, evaluates accuracy
with ``evaluate_model(report=False)``. ONNX rows never import torch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from anodet.artifact import OUTPUTS, OutputError, check_outputs, compare_outputs
from anodet.bench.timing import measure, peak_rss_mb, rss_mb, summarize
from anodet.errors import AnodetError


class _HalfTorch:
    """The detector's FP16 forward on CUDA: the same mixed precision as the FP16 ONNX export."""

    def __init__(self, det: Any, device: Any):
        import copy

        from anodet.export.onnx import ExportGraph

        self.graph, self.device = ExportGraph(copy.deepcopy(det), fp16=True).to(device).eval(), device

    def predict(self, rgb: np.ndarray, depth: np.ndarray | None) -> dict[str, np.ndarray]:
        import torch

        with torch.no_grad():
            d = torch.from_numpy(depth).to(self.device) if depth is not None else None
            out = self.graph(torch.from_numpy(rgb).to(self.device), d)
        return {k: v.cpu().numpy() for k, v in zip(OUTPUTS, out)}


def _open(spec: dict[str, Any]) -> tuple[Any, int, Any, str, str, Any]:
    """-> (predictor, in_channels, preprocess spec, preset, runs_on, detector or None)."""
    if spec["engine"] == "torch":
        import torch

        from anodet.evaluation.evaluator import TorchPredictor
        from anodet.models.detector import load_detector

        if spec.get("threads"):
            torch.set_num_threads(int(spec["threads"]))
        det = load_detector(spec["checkpoint"])
        if spec["seed"]:
            from anodet.bench.stages import seed_detector

            det = seed_detector(det)
        device = torch.device("cuda" if spec["gpu"] else "cpu")
        where = torch.cuda.get_device_name(device) if spec["gpu"] else f"CPU, {torch.get_num_threads()} threads"
        half = spec["precision"] == "fp16"
        predictor = _HalfTorch(det, device) if half else TorchPredictor(det, device)
        cfg = det.cfg
        runs_on = f"PyTorch {torch.__version__} eager {spec['precision'].upper()}, {where}"
        return predictor, cfg.model.in_channels, cfg.data.preprocess, cfg.preset, runs_on, det
    from anodet.runtime.backends import open_backend

    be = open_backend(spec["artifact"], spec["engine"], spec.get("threads"))
    info = be.info
    return be, info.in_channels, info.preprocess, info.preset, be.name, None


def parity(out: dict[str, np.ndarray], spec: dict[str, Any]) -> dict[str, Any] | None:
    """Differences from the ONNX Runtime CPU reference on the same first frames (None without one).

    ``ok`` is the verdict at the row's precision bound; None for rows that are not gated.
    """
    ref = spec.get("reference")
    if not ref or not Path(ref).is_file() or spec["seed"]:
        return None
    with np.load(ref) as z:
        reference = {k: z[k] for k in OUTPUTS}
    bound = spec["precision"] if spec["gated"] else "fp16"  # ungated (INT8): report at the loosest bound
    found = compare_outputs(reference, out, precision=bound)
    res = {**dataclasses.asdict(found), "text": found.describe()}
    if not spec["gated"]:
        res.update(ok=None, tolerance=None)
    return res


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
    ds = discover(spec["data"], need_depth=need_depth, need_train=False)
    rgb, depth = load_arrays(ds.test, prep, need_depth=need_depth, desc="test frames")
    n = rgb.shape[0]
    result["frames"] = n

    def take(i: int, b: int) -> tuple[np.ndarray, np.ndarray | None]:
        idx = (np.arange(b) + i * b) % n  # a different run of real frames per call
        return rgb[idx], None if depth is None else depth[idx]

    k = min(n, spec["parity_frames"])
    try:
        first = check_outputs(predictor.predict(rgb[:k], None if depth is None else depth[:k]), k, prep.image_size)
    except OutputError as exc:
        return {**result, "status": "failed", "reason": f"outputs break the contract: {exc}"}
    result["parity"] = parity(first, spec)
    if result["parity"] and result["parity"]["ok"] is False:
        result.update(status="parity failed", reason=f"disagrees with onnx-cpu: {result['parity']['text']}")
    result["load_before"] = _load()
    result["latency"] = []
    for b in spec["batches"]:
        times = measure(predictor.predict, warmup=spec["warmup"], runs=spec["runs"], inputs=lambda i, b=b: take(i, b))
        result["latency"].append({**summarize(times, b), "times_ms": times})
    result["load_after"] = _load()
    result["peak_rss_mb"] = peak_rss_mb()  # before evaluation: inference memory only
    result["torch_loaded"] = "torch" in sys.modules
    if det is not None and spec["seed"]:
        from anodet.bench.stages import model_bytes

        result["size_mb"] = model_bytes(det) / 2**20
    result["image_auroc"] = result["au_pro"] = result["pixel_auroc"] = None
    if spec["accuracy"]:
        from anodet.evaluation.evaluator import ModelUnderTest, evaluate_model

        # Only threshold-free metrics are kept below, so the mask's threshold does not matter here.
        mut = ModelUnderTest(spec["name"], predictor, in_channels, prep, preset, pixel_threshold=0.5)
        metrics = evaluate_model(mut, spec["data"], spec["eval_dir"], report=False)
        result.update({k: metrics.get(k) for k in ("image_auroc", "au_pro", "pixel_auroc")})
    result["seconds"] = time.perf_counter() - t_start
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m anodet.bench.worker SPEC.json RESULT.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname).1s %(name)s: %(message)s")
    spec = json.loads(Path(argv[0]).read_text())
    try:
        result = measure_row(spec)
    except AnodetError as exc:
        result = {"status": "failed", "reason": str(exc)}
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
