"""Helpers shared by the benchmark scripts (not a benchmark itself).

Every script prints a markdown table and writes ``benchmarks/results/<name>.json`` with its
numbers, its settings and a description of the machine. Models are either given
(``--checkpoint`` / ``--model``) or built here with random weights: latency and memory do not
depend on the weight values, so a random model of the default preset measures the same thing.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from anodet.bench.timing import time_ms

RESULTS = Path(__file__).resolve().parent / "results"
WORK = Path(tempfile.gettempdir()) / "anodet-benchmarks"


def write_result(name: str, data: dict[str, Any]) -> Path:
    """benchmarks/results/<name>.json with the machine description added."""
    from anodet.bench.report import machine_info

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine_info(), **data}, indent=2, default=str))
    return path


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table; floats get one decimal unless already strings."""
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "n/a"
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def interleaved(fns: dict[str, Callable[[], object]], *, warmup: int, runs: int) -> dict[str, list[float]]:
    """Time each function ``runs`` times in round-robin order (ms), after ``warmup`` rounds.

    Round-robin keeps a change in machine load (other jobs on a shared CPU) from favouring
    whichever variant happened to run in the quiet minute.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(warmup + runs):
        for name, fn in fns.items():
            times[name].append(time_ms(fn))
    return {name: t[warmup:] for name, t in times.items()}


def sample_frames(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n synthetic normal frames at model size: rgb uint8 n x S x S x 3, depth float32 n x S x S."""
    from anodet.data.synthetic import make_frame

    rng = np.random.default_rng(seed)
    frames = [make_frame(rng, size)[:2] for _ in range(n)]
    return np.stack([f[0] for f in frames]), np.stack([f[1] for f in frames])


def random_checkpoint(path: Path, cfg) -> Path:
    """Write a checkpoint of ``cfg`` with random weights (and random fixed projections).

    Enough for export and timing; its scores mean nothing. Parity samples are synthetic frames.
    """
    import torch

    from anodet.checkpoint import write_checkpoint
    from anodet.models.detector import build_detector

    det = build_detector(cfg, weights="none")
    gen = torch.Generator().manual_seed(0)
    al = det.aligner
    rgb, depth = sample_frames(2, cfg.data.image_size)
    with torch.no_grad():
        for i, (c, k) in enumerate(zip(al.in_channels, al.out_channels)):
            al.set_projection(i, torch.randn(k, c, generator=gen) / math.sqrt(c), torch.zeros(k))
        # Scale the normalised outputs to O(1) so export's absolute parity bound is meaningful.
        d = torch.from_numpy(depth) if cfg.model.in_channels == 4 else None
        raw = det.raw_map(det.features(torch.from_numpy(rgb), d))
        # The threshold sits well above every score: no decision rests on float rounding.
        det.scorer.set_calibration(2.0 * float(raw.max()), float(raw.max() - raw.min()) or 1.0)
    write_checkpoint({
        "config": cfg.to_dict(), "model": det.state_dict(), "weights_source": det.weights_source,
        "calibration": {"raw_threshold": float(det.scorer.raw_threshold), "score_scale": float(det.scorer.score_scale),
                        "method": "2 x max of two synthetic frames (random benchmark model)"},
        "parity_samples": {"rgb": torch.from_numpy(rgb), "depth": torch.from_numpy(depth)},
    }, path)
    return path


def default_cfg(preset: str = "rgbd_full", image_size: int | None = None):
    from anodet import config as cfgmod

    cfg = cfgmod.load(preset)
    return cfgmod.with_overrides(cfg, "data", image_size=image_size)


def model_for(checkpoint: str | None, preset: str, image_size: int | None, *, batch: int | None = 1,
              work: Path = WORK) -> tuple[Path, Path]:
    """(checkpoint, fp32 ONNX) for a given checkpoint, or a cached random model of ``preset``."""
    from anodet.export.onnx import export_onnx

    work.mkdir(parents=True, exist_ok=True)
    if checkpoint is None:
        cfg = default_cfg(preset, image_size)
        tag = f"{preset}_{cfg.data.image_size}"
        ckpt = work / f"random_{tag}.pt"
        if not ckpt.is_file():
            random_checkpoint(ckpt, cfg)
    else:
        ckpt = Path(checkpoint)
        tag = f"{ckpt.parent.parent.name}_{ckpt.stem}"
    onnx_path = work / f"{tag}_b{batch or 'dyn'}.onnx"
    if not onnx_path.is_file() or onnx_path.stat().st_mtime < ckpt.stat().st_mtime:
        export_onnx(ckpt, onnx_path, batch=batch, force=True)
    return ckpt, onnx_path
