"""``anodet-bench``: latency, throughput, memory, size and accuracy of every way to run a model.

One row per backend. Exports happen here (into OUTDIR/artifacts, reused while the checkpoint
is unchanged); each row is then measured by ``python -m anodet.bench.worker`` in a fresh
process, so peak memory is per backend and one crashing backend cannot take the others down.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anodet import __version__
from anodet.bench.artifacts import Artifacts, first_line
from anodet.errors import AnodetError
from anodet.experiment import prepare_out_dir

log = logging.getLogger(__name__)

BENCH_BACKENDS = ("torch", "torch-seed", "onnx-cpu", "onnx-int8", "onnx-fp16", "onnx-cuda", "onnx-trt",
                  "tensorrt")
REFERENCE = "torch-seed"  # speed-ups are relative to this row at batch 1
GPU_BACKENDS = ("onnx-cuda", "onnx-trt", "tensorrt")
ROW_TIMEOUT_S = 3600.0  # a row that takes longer (e.g. a stuck GPU driver) is reported as an error
# Which exported artifact each backend runs, and with which runtime backend (None: decided at run time).
_ARTIFACT = {"onnx-cpu": "fp32", "onnx-cuda": "fp32", "onnx-trt": "fp32", "onnx-int8": "int8",
             "onnx-fp16": "fp16", "tensorrt": "engine"}

def check_backends(backends: Sequence[str]) -> list[str]:
    """Deduplicated list of backend names; AnodetError naming the valid ones otherwise."""
    names = [b.strip() for b in backends if b.strip()]
    unknown = [b for b in names if b not in BENCH_BACKENDS]
    if unknown:
        raise AnodetError(f"unknown backend(s) {', '.join(unknown)}; valid: {', '.join(BENCH_BACKENDS)}")
    return list(dict.fromkeys(names))


def unavailable_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run on this machine, or None when it can (as far as we can tell)."""
    if backend in ("torch", "torch-seed"):
        try:
            import torch  # noqa: F401
        except ImportError:
            return "torch not installed (pip install 'anodet[train]')"
        return None
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime not installed (pip install 'anodet[onnx]')"
    providers = ort.get_available_providers()
    if backend == "onnx-cuda" and "CUDAExecutionProvider" not in providers:
        return "no CUDA: this onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu and an NVIDIA GPU needed)"
    if backend == "onnx-trt" and "TensorrtExecutionProvider" not in providers:
        return "no TensorrtExecutionProvider in this onnxruntime (onnxruntime-gpu with TensorRT needed)"
    if backend == "tensorrt":
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return "tensorrt not installed"
        try:
            from anodet.runtime.tensorrt_backend import gpu_properties

            gpu_properties()
        except (AnodetError, ImportError) as exc:
            return f"no CUDA GPU usable by TensorRT ({first_line(exc, 160)})"
    return None


def _fp16_runtime() -> str:
    """FP16 graphs run on CUDA where ONNX Runtime has it, else on the CPU provider."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnx-cpu"
    return "onnx-cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "onnx-cpu"


def _run_worker(spec: dict[str, Any], rows_dir: Path, threads: int | None) -> dict[str, Any]:
    """Run one row in ``python -m anodet.bench.worker``; a crash or timeout becomes an error row."""
    slug = spec["name"].replace(" ", "_").replace("/", "_")
    spec_path, result_path = rows_dir / f"{slug}.spec.json", rows_dir / f"{slug}.result.json"
    log_path = rows_dir / f"{slug}.log"
    result_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps(spec, indent=2))
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "anodet.bench.worker", str(spec_path), str(result_path)]
    try:
        with open(log_path, "w") as fh:
            proc = subprocess.run(cmd, check=False, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=ROW_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {ROW_TIMEOUT_S:g} s (log: {log_path})"}
    if result_path.is_file():
        return json.loads(result_path.read_text())
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    tail = lines[-1][:300] if lines else "no output"
    return {"status": "error", "reason": f"worker exited with code {proc.returncode}: {tail} (log: {log_path})"}


def _reference_outputs(checkpoint: Path, data: Path, n: int, path: Path) -> None:
    """PyTorch outputs on the first ``n`` test frames, for every row's parity check."""
    import torch

    from anodet.data.arrays import load_arrays
    from anodet.data.samples import discover
    from anodet.models.detector import load_detector

    det = load_detector(checkpoint)
    need_depth = det.cfg.model.in_channels == 4
    ds = discover(data, need_depth=need_depth)
    rgb, depth = load_arrays(ds.test[:n], det.cfg.data.preprocess, need_depth=need_depth)
    with torch.no_grad():
        out = det(torch.from_numpy(rgb), torch.from_numpy(depth) if depth is not None else None)
    np.savez(path, **{k: v.numpy() for k, v in out.items()})


def _stage_breakdown(checkpoint: Path, data: Path, warmup: int, runs: int, threads: int | None) -> dict[str, Any]:
    import torch

    from anodet.bench.stages import camera_frame, seed_detector, stage_breakdown
    from anodet.data.samples import discover
    from anodet.models.detector import load_detector
    from anodet.preprocess import load_depth, load_rgb

    if threads:
        torch.set_num_threads(threads)
    det = load_detector(checkpoint)
    need_depth = det.cfg.model.in_channels == 4
    sample = discover(data, need_depth=need_depth).test[0]
    depth = load_depth(sample.depth_path) if need_depth else None
    cam_rgb, cam_depth = camera_frame(load_rgb(sample.rgb_path), depth)
    return stage_breakdown(det, cam_rgb, cam_depth, warmup=warmup, runs=runs, seed=seed_detector(det))


def _at_batch(row: dict[str, Any], batch: int) -> dict[str, Any] | None:
    return next((lat for lat in row.get("latency") or [] if lat["batch"] == batch), None)


def bench(
    checkpoint: str | Path | None,
    *,
    models: Sequence[str | Path] = (),
    data: str | Path,
    backends: Sequence[str] = BENCH_BACKENDS,
    batches: Sequence[int] = (1,),
    warmup: int = 3,
    runs: int = 20,
    out: str | Path,
    threads: int | None = None,
) -> dict[str, Any]:
    """Benchmark ``checkpoint`` on every backend in ``backends`` (plus ready ``models`` files).

    Writes OUTDIR/bench.md, bench.json and bench.png and returns what bench.json holds. Rows
    that cannot run say why (not available / export failed / validation failed / error); they
    never stop the others. Latencies are percentiles over ``runs`` timed calls after ``warmup``
    untimed ones, per batch size, on the preprocessed test split of ``data``.
    """
    from anodet.bench import report

    names = check_backends(backends)
    batches = list(dict.fromkeys(int(b) for b in batches))
    if not batches or min(batches) < 1:
        raise AnodetError(f"batch sizes must be positive integers, got {batches}")
    if runs < 1 or warmup < 0:
        raise AnodetError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    if threads is not None and threads < 1:
        raise AnodetError(f"threads must be >= 1, got {threads}")
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is None and not models:
        raise AnodetError("give a checkpoint or at least one exported model to benchmark")
    if ckpt is not None and not ckpt.is_file():
        raise AnodetError(f"checkpoint {ckpt} not found")
    model_paths = [Path(m) for m in models]
    for m in model_paths:
        if not m.is_file():
            raise AnodetError(f"model file {m} not found")
    data = Path(data)
    if not data.is_dir():
        raise AnodetError(f"--data {data} does not exist or is not a folder")
    from anodet.data.samples import discover

    if not discover(data, need_depth=False).test:
        raise AnodetError(f"--data {data} has no test split: the benchmark runs on test frames")
    out_dir = prepare_out_dir(Path(out))
    art_dir, rows_dir = out_dir / "artifacts", out_dir / "rows"
    art_dir.mkdir(exist_ok=True)
    rows_dir.mkdir(exist_ok=True)

    started = datetime.datetime.now(datetime.UTC)
    machine = report.machine_info()
    arts = Artifacts(art_dir, ckpt, data, batches) if ckpt is not None else None
    reference = None
    if ckpt is not None and unavailable_reason("torch") is None:
        reference = art_dir / "reference.npz"
        try:
            _reference_outputs(ckpt, data, min(8, max(batches)), reference)
        except Exception as exc:  # noqa: BLE001 - parity is informative; never fatal
            log.warning("no PyTorch reference outputs: %s", first_line(exc))
            reference = None

    common = {"data": str(data), "batches": batches, "warmup": warmup, "runs": runs, "threads": threads,
              "checkpoint": str(ckpt) if ckpt else None, "reference": str(reference) if reference else None}
    plan = [{"name": n, "backend": n} for n in names]
    plan += [{"name": f"file:{m.name}", "backend": "auto", "artifact": str(m), "kind": "file"} for m in model_paths]
    rows = []
    for entry in plan:
        name, backend = entry["name"], entry["backend"]
        row: dict[str, Any] = {"name": name, "backend": backend, "status": "ok", "reason": None}
        t0 = time.perf_counter()
        why = unavailable_reason(backend) if entry.get("kind") != "file" else None
        if why is None and entry.get("kind") != "file" and ckpt is None:
            why = "no checkpoint given"
        if why is not None:
            row.update(status="not available", reason=why)
            log.info("%s: not available on this machine (%s)", name, why)
            rows.append(row)
            continue
        spec = {**common, "name": name, "eval_dir": str(out_dir / "eval" / name.replace(":", "_"))}
        if entry.get("kind") == "file":
            spec.update(kind="file", backend="auto", artifact=entry["artifact"], accuracy=True)
            row["artifact"], row["size_mb"] = entry["artifact"], Path(entry["artifact"]).stat().st_size / 2**20
        elif backend in ("torch", "torch-seed"):
            spec.update(kind=backend, accuracy=backend == "torch")
            if backend == "torch":
                row["artifact"], row["size_mb"] = str(ckpt), ckpt.stat().st_size / 2**20
        else:
            art = arts.get(_ARTIFACT[backend])
            if "error" in art:
                row.update(status="export failed", reason=art["error"])
                rows.append(row)
                continue
            run_with = _fp16_runtime() if backend == "onnx-fp16" else ("onnx-cpu" if backend == "onnx-int8" else backend)
            spec.update(kind="onnx", backend=run_with, artifact=art["path"], accuracy=True)
            row.update(artifact=art["path"], size_mb=art["size_mb"], export={k: v for k, v in art.items() if k != "path"})
        log.info("measuring %s (%s)", name, spec.get("backend", backend))
        res = _run_worker(spec, rows_dir, threads)
        if res.get("status") == "error" and backend in GPU_BACKENDS and not res.get("latency"):
            res["status"] = "not available"
        row.update({k: v for k, v in res.items() if not (k == "size_mb" and v is None)})
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)

    ref_batch = 1 if 1 in batches else batches[0]
    ref_row = next((r for r in rows if r["name"] == REFERENCE and r["status"] == "ok"), None)
    ref_lat = _at_batch(ref_row, ref_batch) if ref_row else None
    for row in rows:
        lat = _at_batch(row, ref_batch) if row["status"] == "ok" else None
        row["speedup_vs_reference"] = (ref_lat["p50_ms_per_frame"] / lat["p50_ms_per_frame"]
                                       if lat and ref_lat and lat["p50_ms_per_frame"] > 0 else None)

    stages = None
    if ckpt is not None and unavailable_reason("torch") is None:
        try:
            stages = _stage_breakdown(ckpt, data, warmup, runs, threads)
        except Exception as exc:  # noqa: BLE001 - the table is still worth writing
            log.warning("stage breakdown failed: %s", first_line(exc))
            stages = {"error": first_line(exc)}

    result = {
        "format": "anodet-bench/1",
        "anodet_version": __version__,
        "started": started.isoformat(timespec="seconds"),
        "seconds": (datetime.datetime.now(datetime.UTC) - started).total_seconds(),
        "checkpoint": str(ckpt) if ckpt else None,
        "models": [str(m) for m in model_paths],
        "data": str(data.resolve()),
        "settings": {"backends": names, "batches": batches, "warmup": warmup, "runs": runs, "threads": threads,
                     "reference": REFERENCE, "reference_batch": ref_batch,
                     "percentiles": "linear interpolation over the timed runs (numpy 'linear')"},
        "machine": machine,
        "rows": rows,
        "stages": stages,
    }
    report.write_outputs(result, out_dir)
    return result
