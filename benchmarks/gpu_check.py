"""One GPU check: build the FP16 TensorRT engine, verify it against ONNX Runtime CPU, time it.

Run on a machine with an NVIDIA GPU and TensorRT (pip install 'anodet[tensorrt]'):

    python benchmarks/gpu_check.py --model model.onnx [--fp16-model model.fp16.onnx] \
        [--data DIR] [--checkpoint model.ckpt] --out gpu_check/

Rows: ONNX Runtime CPU FP32 (the reference), the TensorRT FP16 engine(s), ONNX Runtime CUDA and
TensorRT execution providers, and PyTorch eager FP32/FP16 on CUDA from a checkpoint. A row that
cannot run says why. Latencies are end to end from host numpy arrays (copies included), as an
application sees them. Writes gpu_check.md and gpu_check.json to --out; exits 1 when an engine
disagrees with the reference beyond the tolerances.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from anodet.artifact import DECISION_THRESHOLD, ModelInfo, read_info
from anodet.errors import AnodetError
from anodet.preprocess import DEPTH_SUFFIXES, RGB_SUFFIXES, load_depth, load_rgb, prepare_frame

Predict = Callable[[np.ndarray, np.ndarray | None], dict[str, np.ndarray]]


def load_data(data_dir: Path, info: ModelInfo, limit: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Frames from each ``rgb/`` folder under data_dir; depth from sibling ``depth/``|``xyz/``."""
    rgbs, depths = [], []
    for path in sorted(p for p in data_dir.rglob("*") if p.parent.name == "rgb"):
        if path.suffix.lower() not in RGB_SUFFIXES or len(rgbs) >= limit:
            continue
        depth = None
        if info.needs_depth:
            found = [
                path.parent.parent / d / (path.stem + s)
                for d in ("depth", "xyz")
                for s in DEPTH_SUFFIXES
            ]
            found = [p for p in found if p.is_file()]
            if not found:
                continue
            depth = load_depth(found[0])
        rgb, depth = prepare_frame(load_rgb(path), depth, info.preprocess)
        rgbs.append(rgb)
        depths.append(depth)
    if not rgbs:
        raise AnodetError(f"no rgb/ images (with depth for an RGB-D model) found under {data_dir}")
    return np.stack(rgbs), (np.stack(depths) if info.needs_depth else None)


def synthetic_data(info: ModelInfo, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """n frames from anodet's synthetic part generator, a defect in every second one."""
    from anodet.data.synthetic import DEFECT_TYPES, make_frame

    rng = np.random.default_rng(seed)
    frames = [make_frame(rng, info.image_size, DEFECT_TYPES[i % 3] if i % 2 else None)[:2] for i in range(n)]
    prepared = [prepare_frame(rgb, depth, info.preprocess) for rgb, depth in frames]
    return np.stack([r for r, _ in prepared]), (np.stack([d for _, d in prepared]) if info.needs_depth else None)


def ort_predictor(model: Path, info: ModelInfo, providers: list[Any]) -> Predict:
    import onnxruntime as ort

    wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    if wanted not in ort.get_available_providers():
        raise AnodetError(f"this onnxruntime has no {wanted} (pip install onnxruntime-gpu)")
    sess = ort.InferenceSession(str(model), providers=providers)
    used = sess.get_providers()[0]
    if used != wanted:
        raise AnodetError(f"{wanted} did not load (ONNX Runtime fell back to {used})")
    step = info.batch or 1 << 30  # a fixed-batch export runs in chunks of its batch

    def predict(rgb: np.ndarray, depth: np.ndarray | None) -> dict[str, np.ndarray]:
        outs = []
        for i in range(0, len(rgb), step):
            feed = {"rgb": rgb[i : i + step]} | (
                {"depth": depth[i : i + step]} if depth is not None else {}
            )
            outs.append(
                dict(
                    zip(
                        ["score", "anomaly_map", "mask"],
                        sess.run(["score", "anomaly_map", "mask"], feed),
                    )
                )
            )
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    return predict


def torch_predictor(checkpoint: Path | None, half: bool) -> Predict:
    if checkpoint is None:
        raise AnodetError("no --checkpoint given")
    import torch

    if not torch.cuda.is_available():
        raise AnodetError("PyTorch has no CUDA device")
    from anodet.models.detector import load_detector  # lazy: torch only for this row

    model = load_detector(checkpoint).cuda().eval()

    @torch.inference_mode()
    def predict(rgb: np.ndarray, depth: np.ndarray | None) -> dict[str, np.ndarray]:
        r = torch.from_numpy(rgb).cuda()
        d = torch.from_numpy(depth).cuda() if depth is not None else None
        with torch.autocast("cuda", dtype=torch.float16, enabled=half):
            out = model(r, d)
        return {
            k: out[k].float().cpu().numpy() if k != "mask" else out[k].cpu().numpy() for k in out
        }

    return predict


def time_it(
    predict: Predict, rgb: np.ndarray, depth: np.ndarray | None, batch: int, warmup: int, runs: int
) -> dict[str, float]:
    idx = np.arange(batch) % len(rgb)
    r, d = rgb[idx], (depth[idx] if depth is not None else None)
    for _ in range(warmup):
        predict(r, d)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predict(r, d)
        times.append((time.perf_counter() - start) * 1e3)
    p50, p95, p99 = np.percentile(times, [50, 95, 99])
    return {
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "images_per_s": batch * 1e3 / float(np.mean(times)),
    }


def parity(out: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, float]:
    thr = DECISION_THRESHOLD
    return {
        "max_abs_map": float(np.abs(out["anomaly_map"] - ref["anomaly_map"]).max()),
        "max_abs_score": float(np.abs(out["score"] - ref["score"]).max()),
        "decisions_agree": float(np.mean((out["score"] > thr) == (ref["score"] > thr))),
        "mask_agree": float(np.mean(out["mask"].astype(bool) == ref["mask"].astype(bool))),
    }


def run_row(
    rows: list[dict], name: str, precision: str, make: Callable[[], Predict], data, ref, args
) -> None:
    row: dict[str, Any] = {"backend": name, "precision": precision}
    rows.append(row)
    try:
        predict = make()
        out = predict(*data)
        if ref is not None:
            row["parity"] = parity(out, ref)
        row["timing"] = {
            b: time_it(predict, *data, b, args.warmup, args.runs) for b in args.batches
        }
        row["status"] = "ok"
    except (ImportError, AnodetError) as exc:
        row["status"], row["reason"] = "skipped", str(exc)
    except Exception as exc:  # noqa: BLE001 - a benchmark row must not stop the others; record why it failed
        row["status"], row["reason"] = "failed", f"{exc.__class__.__name__}: {exc}"
        traceback.print_exc()
    print(f"{name} [{precision}]: {row['status']} {row.get('reason', '')}", flush=True)


def trt_rows(rows, args, info, data, ref) -> None:
    from anodet.export.tensorrt import build_engine
    from anodet.gpu import import_tensorrt
    from anodet.runtime.tensorrt_backend import TensorRTBackend

    try:
        major = int(import_tensorrt().__version__.split(".")[0])
    except AnodetError as exc:
        rows.append(
            {
                "backend": "tensorrt engine",
                "precision": "fp16",
                "status": "skipped",
                "reason": str(exc),
            }
        )
        return
    sources = [("fp16 graph", args.fp16_model)] if args.fp16_model else []
    if major < 11:
        sources.insert(0, ("builder flag", args.model))
    elif not args.fp16_model:
        rows.append(
            {
                "backend": "tensorrt engine",
                "precision": "fp16",
                "status": "skipped",
                "reason": "TensorRT 11 needs an FP16 ONNX graph: pass --fp16-model",
            }
        )
    for label, onnx_path in sources:
        engine = args.out / f"{onnx_path.stem}.{label.split()[0]}.engine"

        def make(onnx_path=onnx_path, engine=engine) -> Predict:
            side = build_engine(
                onnx_path,
                engine,
                fp16=True,
                max_batch=max(args.batches),
                timing_cache=args.out / "timing.cache",
                force=True,
            )
            print(f"built {engine} in {side['build_seconds']} s", flush=True)
            return TensorRTBackend(engine).predict

        run_row(rows, f"tensorrt engine ({label})", "fp16", make, data, ref, args)


def render(report: dict) -> str:
    b1, bn = report["batches"][0], report["batches"][-1]
    lines = [
        f"# GPU check: {report['model']}",
        "",
        f"{report['environment']}",
        "",
        (
            f"| backend | precision | status | b{b1} p50/p95/p99 ms | b{bn} p50/p95/p99 ms | "
            f"b{bn} img/s | max abs map diff | max abs score diff | decisions agree | note |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        t, p = row.get("timing", {}), row.get("parity", {})
        lat = [
            ("/".join(f"{t[b][k]:.2f}" for k in ("p50_ms", "p95_ms", "p99_ms")) if b in t else "")
            for b in (b1, bn)
        ]
        thr = f"{t[bn]['images_per_s']:.1f}" if bn in t else ""
        par = [f"{p[k]:.4f}" if k in p else "" for k in ("max_abs_map", "max_abs_score")]
        agree = f"{100 * p['decisions_agree']:.1f} %" if p else ""
        lines.append(
            f"| {row['backend']} | {row['precision']} | {row['status']} | {lat[0]} | {lat[1]} | "
            f"{thr} | {par[0]} | {par[1]} | {agree} | {row.get('reason', '')} |"
        )
    lines += [
        "",
        (
            f"Parity is against ONNX Runtime CPU FP32 on {report['samples']} {report['data']} "
            f"frames; tolerances: map {report['tolerance_map']}, score "
            f"{report['tolerance_score']}, decisions {100 * report['min_agreement']:.0f} %. "
            f"Verdict: **{report['verdict']}**."
        ),
        "",
    ]
    return "\n".join(lines)


def environment() -> str:
    parts = [f"Python {platform.python_version()}"]
    for mod in ("onnxruntime", "tensorrt", "torch"):
        try:
            parts.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            parts.append(f"{mod} not installed")
    try:
        from anodet.gpu import gpu_properties

        gpu = gpu_properties()
        parts.append(f"GPU {gpu['name']} (compute capability {gpu['compute_capability']})")
    except AnodetError as exc:
        parts.append(str(exc))
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="FP32 anodet ONNX export")
    ap.add_argument("--fp16-model", type=Path, help="FP16 ONNX export (needed on TensorRT 11)")
    ap.add_argument(
        "--data", type=Path, help="folder with rgb/ (+ depth/ or xyz/) images; anodet synthetic frames if absent"
    )
    ap.add_argument("--checkpoint", type=Path, help="training checkpoint for the PyTorch rows")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--tolerance-map", type=float, default=0.05)
    ap.add_argument("--tolerance-score", type=float, default=0.05)
    ap.add_argument("--min-agreement", type=float, default=0.97)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    info = read_info(args.model)
    data = (
        load_data(args.data, info, args.samples)
        if args.data
        else synthetic_data(info, args.samples)
    )
    rows: list[dict] = []
    cpu = ort_predictor(args.model, info, ["CPUExecutionProvider"])
    ref = cpu(*data)
    run_row(rows, "onnxruntime CPU (reference)", "fp32", lambda: cpu, data, ref, args)
    trt_rows(rows, args, info, data, ref)
    run_row(
        rows,
        "onnxruntime CUDA EP",
        "fp32",
        lambda: ort_predictor(args.model, info, ["CUDAExecutionProvider"]),
        data,
        ref,
        args,
    )
    trt_ep = (
        "TensorrtExecutionProvider",
        {
            "trt_fp16_enable": True,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(args.out / "ort_trt_cache"),
        },
    )
    run_row(
        rows,
        "onnxruntime TensorRT EP",
        "fp16",
        lambda: ort_predictor(args.fp16_model or args.model, info, [trt_ep]),
        data,
        ref,
        args,
    )
    for half in (False, True):
        run_row(
            rows,
            "PyTorch eager CUDA",
            "fp16" if half else "fp32",
            lambda h=half: torch_predictor(args.checkpoint, h),
            data,
            ref,
            args,
        )

    bad = [
        r["backend"]
        for r in rows
        if r["backend"].startswith("tensorrt engine")
        and r["status"] == "ok"
        and (
            r["parity"]["max_abs_map"] > args.tolerance_map
            or r["parity"]["max_abs_score"] > args.tolerance_score
            or r["parity"]["decisions_agree"] < args.min_agreement
        )
    ]
    engines_ok = any(
        r["backend"].startswith("tensorrt engine") and r["status"] == "ok" for r in rows
    )
    verdict = f"FAIL ({', '.join(bad)})" if bad else ("PASS" if engines_ok else "no engine ran")
    report = {
        "model": str(args.model),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment(),
        "data": "real" if args.data else "synthetic",
        "samples": len(data[0]),
        "batches": args.batches,
        "tolerance_map": args.tolerance_map,
        "tolerance_score": args.tolerance_score,
        "min_agreement": args.min_agreement,
        "verdict": verdict,
        "rows": rows,
    }
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=float))
    (args.out / "gpu_check.md").write_text(render(report))
    print(render(report))
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AnodetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
