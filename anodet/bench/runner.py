"""`anodet-bench`: latency, throughput, memory and accuracy per backend, in one table.

Each backend row runs in a fresh spawned process, so its peak resident memory is its own and a
crash in one backend cannot take the others down. Frames are the data's real test images,
preprocessed by the shared recipe and fed through the same ``predict`` the runtime calls.
"""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from anodet.bench.timing import measure, peak_rss_mb, summarize
from anodet.errors import AnodetError
from anodet.experiment import prepare_out_dir

BACKENDS = ("torch", "torch-seed", "onnx-cpu", "onnx-int8", "onnx-fp16", "onnx-cuda", "onnx-trt", "tensorrt")


def _artifact(kind: str, checkpoint: Path, data: Path, art: Path) -> Path:
    """Export (once) the file a backend row runs."""
    from anodet.export.onnx import export_onnx
    from anodet.export.quantize import quantize_int8

    fp32 = art / "model.onnx"
    if not fp32.exists():
        export_onnx(checkpoint, fp32, batch=None)
    if kind == "onnx-fp16":
        path = art / "model.fp16.onnx"
        if not path.exists():
            export_onnx(checkpoint, path, batch=None, fp16=True)
        return path
    if kind == "onnx-int8":
        path = art / "model.int8.onnx"
        if not path.exists():
            quantize_int8(fp32, data, path, accept=True)
        return path
    if kind == "tensorrt":
        path = art / "model.engine"
        if not path.exists():
            from anodet.export.tensorrt import build_engine

            build_engine(fp32, path, fp16=True, max_batch=8)
        return path
    return fp32


def _predictor(kind: str, checkpoint: Path, data: Path, art: Path, threads: int | None):
    """(predict object or None for latency-only, artifact path or None, spec, needs_depth)."""
    if kind in ("torch", "torch-seed"):
        import torch

        from anodet.evaluation.evaluator import TorchPredictor
        from anodet.models import build_detector, load_detector
        from anodet.train import det_spec

        if threads:
            torch.set_num_threads(threads)
        det = load_detector(checkpoint)
        cfg = det.cfg
        if kind == "torch-seed":
            # The seed's order: upsample every stage to 64x64, then reduce by 2 (1920 channels for
            # ResNet-50 layer1-4), DFR widths on that; untrained: a latency reference only.
            from anodet import config as cfgmod

            seed_cfg = cfgmod.with_overrides(cfg, "model", reduce_first=False, reduction_factor=2)
            seed_cfg = cfgmod.validate(type(seed_cfg)(preset=seed_cfg.preset, data=seed_cfg.data,
                                       model=type(seed_cfg.model)(**{**seed_cfg.model.__dict__, "reduce_channels": None}),
                                       train=seed_cfg.train))
            det = build_detector(seed_cfg)
        return TorchPredictor(det, torch.device("cpu")), None, det_spec(cfg), cfg.model.in_channels == 4
    from anodet.runtime.backends import open_backend

    path = _artifact(kind, checkpoint, data, art)
    backend = {"onnx-int8": "onnx-cpu", "onnx-fp16": "onnx-cpu"}.get(kind, kind)
    be = open_backend(path, backend, threads)
    return be, path, be.info.preprocess, be.info.needs_depth


def _row(kind: str, checkpoint: Path, data: Path, art: Path, batches: list[int], warmup: int, runs: int,
         threads: int | None) -> dict[str, Any]:
    """Measure one backend (runs in its own process)."""
    row: dict[str, Any] = {"backend": kind}
    try:
        pred, path, spec, need_depth = _predictor(kind, checkpoint, data, art, threads)
    except AnodetError as exc:
        text = str(exc)
        status = "not available" if any(w in text for w in ("not installed", "not available", "available:")) \
            else "export failed"
        return {**row, "status": status, "reason": text}
    except Exception as exc:  # noqa: BLE001 - a broken backend is a row, not a crash
        return {**row, "status": "export failed", "reason": f"{exc.__class__.__name__}: {exc}"}
    from anodet.data.arrays import load_arrays
    from anodet.data.samples import discover

    test = discover(data, need_depth=need_depth).test
    rgb, depth = load_arrays(test, spec, need_depth=need_depth)
    n = rgb.shape[0]
    row["latency"] = []
    for b in batches:
        def pick(i: int, b: int = b):
            idx = [(i * b + k) % n for k in range(b)]
            return rgb[idx], depth[idx] if depth is not None else None

        row["latency"].append(summarize(measure(pred.predict, warmup=warmup, runs=runs, inputs=pick), b))
    row["size_mb"] = path.stat().st_size / 2**20 if path else None
    row["status"] = "ok"
    if kind != "torch-seed":
        try:
            from anodet.evaluation.evaluator import ModelUnderTest, evaluate_model

            mut = ModelUnderTest(kind, pred, 4 if need_depth else 3, spec, "")
            with tempfile.TemporaryDirectory() as tmp:
                m = evaluate_model(mut, data, tmp, report=False)
            row.update(image_auroc=m["image_auroc"], au_pro=m["au_pro"])
        except Exception as exc:  # noqa: BLE001
            row.update(status="validation failed", reason=f"{exc.__class__.__name__}: {exc}")
    row["peak_rss_mb"] = peak_rss_mb()
    return row


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"date": datetime.date.today().isoformat(), "python": platform.python_version(),
                            "cores": os.cpu_count(), "platform": platform.platform()}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    for mod in ("torch", "onnxruntime", "anodet"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            info[mod] = None
    return info


def bench(checkpoint: str | Path, *, data: str | Path, backends: list[str], batches: list[int] = (1,),
          warmup: int = 3, runs: int = 20, out: str | Path, threads: int | None = None) -> dict[str, Any]:
    """Measure every backend; write bench.md, bench.json and bench.png under ``out``."""
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise AnodetError(f"unknown backend(s) {', '.join(unknown)}; valid: {', '.join(BACKENDS)}")
    checkpoint, data = Path(checkpoint), Path(data)
    if not checkpoint.is_file():
        raise AnodetError(f"checkpoint not found: {checkpoint}")
    if not data.is_dir():
        raise AnodetError(f"--data {data} does not exist")
    out_dir = prepare_out_dir(Path(out))
    art = out_dir / "artifacts"
    art.mkdir(exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for kind in backends:
        with ctx.Pool(1) as pool:
            rows.append(pool.apply(_row, (kind, checkpoint, data, art, list(batches), warmup, runs, threads)))
    ref = next((r for r in rows if r["backend"] == "torch-seed" and r["status"] == "ok"), None)
    for r in rows:
        if ref and r.get("latency"):
            r["speedup_vs_seed"] = ref["latency"][0]["p50_ms"] / r["latency"][0]["p50_ms"]
    result = {"machine": machine_info(), "warmup": warmup, "runs": runs, "batches": list(batches), "rows": rows}
    (out_dir / "bench.json").write_text(json.dumps(result, indent=2))
    (out_dir / "bench.md").write_text(format_table(result) + "\n")
    _plot(rows, out_dir / "bench.png")
    return result


def _f(v: Any, spec: str = ".1f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def format_table(result: dict[str, Any]) -> str:
    """Markdown table: one line per backend and batch size."""
    m = result["machine"]
    lines = [f"# anodet-bench ({m['date']}, {m.get('cpu')}, {m['cores']} cores)", "",
             f"{result['warmup']} warm-up + {result['runs']} timed runs per row; medians and percentiles "
             "per batch; frames are the data's test images.", "",
             "| backend | status | batch | p50 ms | p95 ms | p99 ms | ms/frame | frames/s | vs seed | "
             "peak RSS MB | size MB | image AUROC | AU-PRO |", "|" + "---|" * 13]
    for r in result["rows"]:
        if r["status"] not in ("ok", "validation failed"):
            lines.append(f"| {r['backend']} | {r['status']}: {r.get('reason', '')[:90]} |" + " |" * 11)
            continue
        for i, lat in enumerate(r["latency"]):
            speed = r.get("speedup_vs_seed") if i == 0 else None
            lines.append(
                f"| {r['backend']} | {r['status']} | {lat['batch']} | {_f(lat['p50_ms'])} | {_f(lat['p95_ms'])} | "
                f"{_f(lat['p99_ms'])} | {_f(lat['p50_ms_per_frame'])} | {_f(lat['throughput_fps'])} | "
                f"{_f(speed, '.2f') + 'x' if speed else 'n/a'} | {_f(r.get('peak_rss_mb'), '.0f')} | "
                f"{_f(r.get('size_mb'))} | {_f(r.get('image_auroc'), '.3f')} | {_f(r.get('au_pro'), '.3f')} |")
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r in rows:
        if r.get("latency") and r.get("image_auroc") is not None:
            x, y = r["latency"][0]["p50_ms_per_frame"], r["image_auroc"]
            ax.scatter(x, y)
            ax.annotate(r["backend"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency per frame, batch 1 (ms, log)")
    ax.set_ylabel("image AUROC")
    ax.grid(alpha=0.3)
    ax.set_title("latency vs accuracy per backend")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
