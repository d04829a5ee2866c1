"""The fixed part of the detector, run over a set of images: fit the aligner, cache features.

Backbone outputs of (up to) the first FIT_IMAGES training images are kept in float16 while the
aligner's projections are fitted on them, then reduced; the remaining images are run once
with the fitted aligner. Each image goes through the backbone exactly once.
"""

from __future__ import annotations

import numpy as np
import torch

from anodet.models.aligner import MomentAccumulator, fit_aligner
from anodet.models.detector import Detector
from anodet.progress import progress_bar

FIT_IMAGES = 128  # enough pixels for stable moments; bounds the memory of the fitting pass


def _batches(rgb: np.ndarray, depth: np.ndarray | None, batch: int, device: torch.device, desc: str):
    n = rgb.shape[0]
    for i in progress_bar(range(0, n, batch), desc=desc, unit="batch", leave=False, disable=n <= batch):
        r = torch.from_numpy(rgb[i : i + batch]).to(device)
        d = torch.from_numpy(depth[i : i + batch]).to(device) if depth is not None else None
        yield r, d


@torch.no_grad()
def aligned_features(
    det: Detector, rgb: np.ndarray, depth: np.ndarray | None, *, device: torch.device,
    batch: int = 8, desc: str = "features",
) -> torch.Tensor:
    """rgb N x S x S x 3 uint8, depth N x S x S metres -> aligned features N x C x F x F float16 (CPU)."""
    out = [det.features(r, d).half().cpu() for r, d in _batches(rgb, depth, batch, device, desc)]
    return torch.cat(out)


@torch.no_grad()
def fit_fixed_part(
    det: Detector, rgb: np.ndarray, depth: np.ndarray | None, *, device: torch.device,
    seed: int = 0, batch: int = 8,
) -> torch.Tensor:
    """Fit the aligner on training images and return their aligned features (float16, CPU)."""
    n_bn = min(det.cfg.model.bn_recalibration, rgb.shape[0])
    if n_bn > 0 and not det.backbone.pretrained:
        bn_depth = depth[:n_bn] if depth is not None else None
        det.backbone.recalibrate_bn(
            det.input_norm(r, d) for r, d in _batches(rgb[:n_bn], bn_depth, batch, device, "backbone (BN stats)")
        )
    n_fit = min(FIT_IMAGES, rgb.shape[0])
    moments = [MomentAccumulator(c) for c in det.backbone.channels]
    stored: list[list[torch.Tensor]] = []
    fit_depth = depth[:n_fit] if depth is not None else None
    for r, d in _batches(rgb[:n_fit], fit_depth, batch, device, "backbone (fit)"):
        feats = det.backbone(det.input_norm(r, d))
        for acc, f in zip(moments, feats):
            acc.add(f.cpu())
        stored.append([f.half().cpu() for f in feats])
    fit_aligner(det.aligner, moments, det.cfg.model.reduction, seed=seed)
    det.aligner.to(device)
    out = [det.aligner([f.to(device).float() for f in feats]).half().cpu() for feats in stored]
    if rgb.shape[0] > n_fit:
        rest_depth = depth[n_fit:] if depth is not None else None
        out.append(aligned_features(det, rgb[n_fit:], rest_depth, device=device, batch=batch, desc="train features"))
    return torch.cat(out)
