"""Where a frame's time goes: per-stage timings and MACs in eager PyTorch, and the seed model.

MACs are counted analytically for every 2-D convolution the forward pass runs, whether it is an
``nn.Conv2d`` (backbone, autoencoder) or a functional ``F.conv2d`` (aligner projections, the
separable blur): output elements x input channels / groups x kernel height x kernel width.
Bilinear interpolation, pooling and element-wise ops are not counted (they are a few
operations per output element, negligible next to the convolutions).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from anodet import config as cfgmod
from anodet.bench.timing import measure, percentile
from anodet.models.detector import Detector, load_detector
from anodet.preprocess import PreprocessSpec, prepare_frame

SEED_LATENT = 128  # DFR's latent width for the seed reference
SEED_REDUCTION_FACTOR = 2  # seed: half of each stage's channels (resnet50 layer1-4: 3840 -> 1920)
CAMERA_SHAPE = (480, 640)  # H x W of the camera frame fed to prepare_frame in the breakdown
SCORING = "scoring (error, upsample, blur)"


class ConvMacCounter(TorchFunctionMode):
    """Context manager summing the MACs of every conv2d run inside it (modules and functional)."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is torch.conv2d or func is torch.nn.functional.conv2d:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            self.macs += conv_macs(tuple(out.shape), tuple(weight.shape))
        return out


def conv_macs(out_shape: tuple[int, ...], weight_shape: tuple[int, ...]) -> int:
    """MACs of one convolution: output elements x (in_channels / groups) x kh x kw.

    ``weight_shape`` is PyTorch's (out_channels, in_channels / groups, kh, kw).
    """
    return math.prod(out_shape) * math.prod(weight_shape[1:])


def seed_config(cfg: cfgmod.ExperimentConfig) -> cfgmod.ExperimentConfig:
    """The seed-faithful variant of ``cfg``: upsample then reduce, DFR widths on half the channels."""
    model = dataclasses.replace(
        cfg.model, reduce_first=False, reduce_channels=None,
        reduction_factor=SEED_REDUCTION_FACTOR, latent_dim=SEED_LATENT,
    )
    return cfgmod.validate(dataclasses.replace(cfg, model=model))


@torch.no_grad()
def seed_detector(source: Detector | str | Path) -> Detector:
    """The seed-faithful latency reference built from a trained detector (or its checkpoint).

    It shares the trained backbone, input normalisation and calibration; the aligner gets
    seeded random projections and the autoencoder its random init. Its outputs are therefore
    meaningless: it exists to measure what the seed's operation order and widths cost.
    """
    det = load_detector(source) if not isinstance(source, Detector) else source
    seed = Detector(seed_config(det.cfg), weights="none")
    seed.backbone.load_state_dict(det.backbone.state_dict())
    seed.input_norm.load_state_dict(det.input_norm.state_dict())
    seed.scorer.load_state_dict(det.scorer.state_dict())
    gen = torch.Generator().manual_seed(det.cfg.train.seed)
    al = seed.aligner
    for i, (c, k) in enumerate(zip(al.in_channels, al.out_channels)):
        al.set_projection(i, torch.randn(k, c, generator=gen) / math.sqrt(c), torch.zeros(k))
    return seed.eval()


def model_bytes(det: torch.nn.Module) -> int:
    """Bytes of all parameters and buffers (the weights as held in memory)."""
    return sum(t.numel() * t.element_size() for t in det.state_dict().values())


def camera_frame(rgb: np.ndarray, depth: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Scale a dataset frame to CAMERA_SHAPE so preprocessing is timed on camera-sized input."""
    import cv2

    h, w = CAMERA_SHAPE
    rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    if depth is not None:
        depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST)
    return rgb, depth


def _stage_fns(det: Detector, cam_rgb: np.ndarray, cam_depth: np.ndarray | None, spec: PreprocessSpec):
    """(name, MAC key, fn) for every stage, each fed the previous stage's (precomputed) output."""
    r, d = prepare_frame(cam_rgb, cam_depth, spec)
    rgb_t = torch.from_numpy(r[None].copy())
    depth_t = torch.from_numpy(d[None].copy()) if d is not None else None
    x = det.input_norm(rgb_t, depth_t)
    feats = det.backbone(x)
    aligned = det.aligner(feats)
    recon = det.autoencoder(aligned)
    raw = det.scorer.raw_map(aligned, recon)

    def post():
        out = det.scorer.decide(raw)
        return {k: v.numpy() for k, v in out.items()}

    return [
        (f"preprocess (prepare_frame, {CAMERA_SHAPE[1]}x{CAMERA_SHAPE[0]} frame)", None,
         lambda: prepare_frame(cam_rgb, cam_depth, spec)),
        ("input normalisation", None, lambda: det.input_norm(rgb_t, depth_t)),
        ("backbone", "backbone", lambda: det.backbone(x)),
        ("aligner", "aligner", lambda: det.aligner(feats)),
        ("autoencoder", "autoencoder", lambda: det.autoencoder(aligned)),
        (SCORING, SCORING, lambda: det.scorer.raw_map(aligned, recon)),
        ("postprocess (normalise, max, mask, to numpy)", None, post),
    ], (rgb_t, depth_t)


@torch.no_grad()
def stage_macs(det: Detector, rgb_t: torch.Tensor, depth_t: torch.Tensor | None) -> dict[str, int]:
    """Conv MACs per model stage for one forward pass of ``det`` on this batch."""
    out: dict[str, int] = {}
    x = det.input_norm(rgb_t, depth_t)
    with ConvMacCounter() as c:
        feats = det.backbone(x)
    out["backbone"] = c.macs
    with ConvMacCounter() as c:
        aligned = det.aligner(feats)
    out["aligner"] = c.macs
    with ConvMacCounter() as c:
        recon = det.autoencoder(aligned)
    out["autoencoder"] = c.macs
    with ConvMacCounter() as c:
        det.scorer.raw_map(aligned, recon)
    out[SCORING] = c.macs
    return out


@torch.no_grad()
def stage_breakdown(det: Detector, cam_rgb: np.ndarray, cam_depth: np.ndarray | None, *,
                    warmup: int, runs: int, seed: Detector | None = None) -> dict[str, Any]:
    """Time every stage of ``det`` at batch 1 (median, p95 over ``runs``), count its MACs.

    Returns {"stages": [{name, p50_ms, p95_ms, share, gmac}], "full_model": {...},
    "ratio_full_to_backbone": {"time", "macs"}, "seed": {stage: gmac} or None}.
    """
    det = det.eval()
    spec = det.cfg.data.preprocess
    fns, (rgb_t, depth_t) = _stage_fns(det, cam_rgb, cam_depth, spec)
    macs = stage_macs(det, rgb_t, depth_t)
    rows = []
    for name, key, fn in fns:
        times = measure(fn, warmup=warmup, runs=runs)
        rows.append({"name": name, "p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95),
                     "gmac": macs[key] / 1e9 if key else 0.0})
    total = sum(r["p50_ms"] for r in rows)
    for r in rows:
        r["share"] = r["p50_ms"] / total if total > 0 else float("nan")
    full_times = measure(lambda: det(rgb_t, depth_t), warmup=warmup, runs=runs)
    with ConvMacCounter() as c:
        det(rgb_t, depth_t)
    full = {"p50_ms": percentile(full_times, 50), "p95_ms": percentile(full_times, 95), "gmac": c.macs / 1e9}
    backbone = next(r for r in rows if r["name"] == "backbone")
    result: dict[str, Any] = {
        "model": f"{det.cfg.preset} ({det.cfg.model.backbone}, {det.aligner.channels} aligned channels, "
                 f"{'reduce-first' if det.aligner.reduce_first else 'upsample-first'})",
        "engine": f"eager PyTorch {torch.__version__}, batch 1, {torch.get_num_threads()} threads",
        "warmup": warmup, "runs": runs,
        "stages": rows,
        "stage_sum_p50_ms": total,
        "full_model": full,
        "ratio_full_to_backbone": {
            "time": full["p50_ms"] / backbone["p50_ms"] if backbone["p50_ms"] > 0 else float("nan"),
            "macs": full["gmac"] / backbone["gmac"] if backbone["gmac"] > 0 else float("nan"),
        },
        "seed": None,
    }
    if seed is not None:
        seed_macs = stage_macs(seed.eval(), rgb_t, depth_t)
        result["seed"] = {
            "model": f"seed-faithful ({seed.aligner.channels} aligned channels, upsample-first, latent "
                     f"{seed.autoencoder.widths[-1]})",
            "gmac": {k: v / 1e9 for k, v in seed_macs.items()},
            "total_gmac": sum(seed_macs.values()) / 1e9,
        }
    return result
