"""``anodet-bench``: latency, throughput, memory, size, accuracy and parity of every way to run a model.

One row per entry of ``anodet.bench.rows.ROWS`` that was asked for. Files are given or exported
here (into OUTDIR/artifacts, reused while their source is unchanged); ONNX Runtime CPU runs the
FP32 file once on the first test frames for every row's parity check; each row is then measured
by ``python -m anodet.bench.worker`` in a fresh process, so peak memory is per row and one
crashing engine cannot take the others down.
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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from anodet import __version__
from anodet.bench.artifacts import Artifacts, classify, first_line
from anodet.bench.rows import REFERENCE, ROW_NAMES, Row, select_rows, unavailable_reason
from anodet.errors import AnodetError
from anodet.experiment import prepare_out_dir

log = logging.getLogger(__name__)

ROW_TIMEOUT_S = 3600.0  # a row that takes longer (e.g. a stuck GPU driver) is reported as failed
PARITY_FRAMES = 8  # test frames every row is compared on (at least the largest batch)


def _run_worker(spec: dict[str, Any], rows_dir: Path, threads: int | None) -> dict[str, Any]:
    """Run one row in ``python -m anodet.bench.worker``; a crash or timeout becomes a failed row."""
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
        return {"status": "failed", "reason": f"timed out after {ROW_TIMEOUT_S:g} s (log: {log_path})"}
    if result_path.is_file():
        return json.loads(result_path.read_text())
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    tail = lines[-1][:300] if lines else "no output"
    return {"status": "failed", "reason": f"worker exited with code {proc.returncode}: {tail} (log: {log_path})"}


def _reference_outputs(arts: Artifacts, data: Path, n: int, path: Path, threads: int | None) -> dict[str, Any]:
    """ONNX Runtime CPU outputs of the FP32 file on the first ``n`` test frames, saved to ``path``."""
    fp32 = arts.get("fp32")
    if "path" not in fp32:
        return {"error": f"no FP32 ONNX file: {fp32.get('missing') or fp32.get('error')}"}
    from anodet.data.arrays import load_arrays
    from anodet.data.samples import discover
    from anodet.runtime.backends import open_backend

    try:  # no onnxruntime is an AnodetError too
        be = open_backend(fp32["path"], "onnx-cpu", threads)
        info = be.info
        rgb, depth = load_arrays(discover(data, need_depth=info.needs_depth, need_train=False).test[:n], info.preprocess,
                                 need_depth=info.needs_depth)
        np.savez(path, **be.predict(rgb, depth))
    except AnodetError as exc:
        return {"error": first_line(exc)}
    return {"row": "onnx-cpu", "model": fp32["path"], "frames": int(rgb.shape[0]), "path": str(path)}


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
    sample = discover(data, need_depth=need_depth, need_train=False).test[0]
    depth = load_depth(sample.depth_path) if need_depth else None
    cam_rgb, cam_depth = camera_frame(load_rgb(sample.rgb_path), depth)
    return stage_breakdown(det, cam_rgb, cam_depth, warmup=warmup, runs=runs, seed=seed_detector(det))


def _at_batch(row: dict[str, Any], batch: int) -> dict[str, Any] | None:
    return next((lat for lat in row.get("latency") or [] if lat["batch"] == batch), None)


def _measure(row: Row, ckpt: Path | None, arts: Artifacts, common: dict[str, Any], out_dir: Path,
             threads: int | None) -> dict[str, Any]:
    """One row of the table: skipped (why), failed (why) or measured by a worker."""
    entry: dict[str, Any] = {"name": row.name, "engine": row.engine, "precision": row.precision, "gpu": row.gpu,
                             "status": "ok", "reason": None}
    t0 = time.perf_counter()
    why = unavailable_reason(row)
    if why is None and row.artifact == "checkpoint" and ckpt is None:
        why = "needs a checkpoint (--checkpoint)"
    art = arts.get(row.artifact) if why is None and row.artifact != "checkpoint" else {}
    why = why or art.get("missing")
    if why is not None:
        log.info("%s: skipped (%s)", row.name, why)
        return {**entry, "status": "skipped", "reason": why}
    if "error" in art:
        return {**entry, "status": "failed", "reason": f"export failed: {art['error']}"}
    spec = {**common, **asdict(row), "eval_dir": str(out_dir / "eval" / row.name)}
    if row.artifact == "checkpoint":
        if not row.seed:
            entry.update(artifact=str(ckpt), size_mb=ckpt.stat().st_size / 2**20)
    else:
        spec["artifact"] = art["path"]
        entry.update(artifact=art["path"], size_mb=art["size_mb"], export={k: v for k, v in art.items() if k != "path"})
    log.info("measuring %s (%s)", row.name, row.engine)
    res = _run_worker(spec, out_dir / "rows", threads)
    entry.update({k: v for k, v in res.items() if not (k == "size_mb" and v is None)})
    entry["seconds"] = time.perf_counter() - t0
    return entry


def bench(
    checkpoint: str | Path | None,
    *,
    models: Sequence[str | Path] = (),
    data: str | Path,
    backends: Sequence[str] = ROW_NAMES,
    batches: Sequence[int] = (1,),
    warmup: int = 3,
    runs: int = 20,
    out: str | Path,
    threads: int | None = None,
) -> dict[str, Any]:
    """Benchmark the rows named in ``backends`` on ``checkpoint`` and/or ready ``models`` files.

    Given files (an FP32/FP16/INT8 ONNX export by its metadata, an engine by its suffix) are run
    by the rows that need that kind of file; the others are exported from the checkpoint.
    Writes OUTDIR/bench.md, bench.json and bench.png and returns what bench.json holds. Rows
    that cannot run say why (skipped / failed / parity failed); they never stop the others.
    Latencies are percentiles over ``runs`` timed calls after ``warmup`` untimed ones, per
    batch size, on the preprocessed test split of ``data``.
    """
    from anodet.bench import report
    from anodet.data.samples import discover

    rows = select_rows(backends)
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
    given = classify(models)
    data = Path(data)
    if not data.is_dir():
        raise AnodetError(f"--data {data} does not exist or is not a folder")
    if not discover(data, need_depth=False, need_train=False).test:
        raise AnodetError(f"--data {data} has no test split: the benchmark runs on test frames")
    out_dir = prepare_out_dir(Path(out))
    art_dir = out_dir / "artifacts"
    for sub in (art_dir, out_dir / "rows"):
        sub.mkdir(exist_ok=True)

    started = datetime.datetime.now(datetime.UTC)
    machine = report.machine_info()
    arts = Artifacts(art_dir, ckpt, data, batches, given)
    frames = max(PARITY_FRAMES, *batches)
    reference = _reference_outputs(arts, data, frames, art_dir / "reference.npz", threads)
    if "error" in reference:
        log.warning("no parity reference: %s", reference["error"])
    common = {"data": str(data), "batches": batches, "warmup": warmup, "runs": runs, "threads": threads,
              "checkpoint": str(ckpt) if ckpt else None, "reference": reference.get("path"), "parity_frames": frames}
    rows = [_measure(row, ckpt, arts, common, out_dir, threads) for row in rows]

    ref_batch = 1 if 1 in batches else batches[0]
    ref_row = next((r for r in rows if r["name"] == REFERENCE and r["status"] == "ok"), None)
    ref_lat = _at_batch(ref_row, ref_batch) if ref_row else None
    for row in rows:
        lat = _at_batch(row, ref_batch) if row["status"] == "ok" else None
        row["speedup_vs_reference"] = (ref_lat["p50_ms_per_frame"] / lat["p50_ms_per_frame"]
                                       if lat and ref_lat and lat["p50_ms_per_frame"] > 0 else None)

    stages = None
    if ckpt is not None and unavailable_reason(select_rows(["torch"])[0]) is None:
        try:
            stages = _stage_breakdown(ckpt, data, warmup, runs, threads)
        except Exception as exc:  # noqa: BLE001 - the table is still worth writing
            log.warning("stage breakdown failed: %s", first_line(exc))
            stages = {"error": first_line(exc)}

    result = {
        "format": "anodet-bench/2",
        "anodet_version": __version__,
        "started": started.isoformat(timespec="seconds"),
        "seconds": (datetime.datetime.now(datetime.UTC) - started).total_seconds(),
        "checkpoint": str(ckpt) if ckpt else None,
        "models": {k: str(v) for k, v in given.items()},
        "data": str(data.resolve()),
        "settings": {"backends": [r["name"] for r in rows], "batches": batches, "warmup": warmup, "runs": runs,
                     "threads": threads, "reference": REFERENCE, "reference_batch": ref_batch,
                     "percentiles": "linear interpolation over the timed runs (numpy 'linear')"},
        "machine": machine,
        "parity_reference": reference,
        "rows": rows,
        "stages": stages,
    }
    report.write_outputs(result, out_dir)
    return result


def exit_status(result: dict[str, Any]) -> int:
    """1 when a row disagrees with the ONNX Runtime CPU reference or when no row ran and one failed; else 0.

    Rows skipped because this machine cannot run them (no GPU, no TensorRT) do not fail the run.
    """
    statuses = [r["status"] for r in result["rows"]]
    if "parity failed" in statuses:
        return 1
    return 1 if "failed" in statuses and "ok" not in statuses else 0
