"""Anomaly scoring: reconstruction error -> full-size map -> blur -> normalised score and mask.

Normalisation maps the calibrated image threshold to 0.5: ``(raw - threshold) / scale + 0.5``.
The mask has its own pixel threshold (a per-pixel false-positive budget on validation normals),
raised per frame to a share of the way to the frame's peak (a half-maximum contour follows a
blurred defect's extent), and is empty for parts judged good: a good part reports no region.
Unlike anomalib we do not clamp to [0, 1]: clamping ties every strong anomaly at 1.0 and
would make metrics computed from an exported model differ from the checkpoint's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from anodet.artifact import DECISION_THRESHOLD
from anodet.calibration import error_stats
from anodet.config import SCORE_FUSIONS


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """1-D Gaussian taps (odd length ~ 4 sigma each side), summing to 1."""
    radius = max(1, math.ceil(4 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


class Scorer(nn.Module):
    """(features, reconstruction) N x C x h x w -> raw map N x S x S (blurred squared error).

    ``groups``: channel counts of the modalities in feature order (late fusion: RGB, depth), and
    ``fusion`` how their errors combine. ``joint`` averages the squared error over all channels
    (one map). ``max`` and ``sum`` standardise each modality's error map with its own statistics
    on normal images first, then take the larger or the sum: sensor noise in the depth channels
    then no longer lifts the floor under a faint colour defect, nor the reverse.
    """

    def __init__(self, image_size: int, blur_sigma: float, feature_size: int, mask_peak_share: float = 0.0,
                 *, groups: tuple[int, ...] = (), fusion: str = "joint"):
        super().__init__()
        self.image_size = image_size
        self.groups = tuple(groups) if fusion != "joint" else ()
        if fusion not in SCORE_FUSIONS:
            raise ValueError(f"unknown score fusion {fusion!r}; valid: {', '.join(SCORE_FUSIONS)}")
        self.fusion = fusion
        g = max(1, len(self.groups))
        # Per-position statistics of the error on normal images (identity until calibrated).
        self.register_buffer("err_mean", torch.zeros(1, g, feature_size, feature_size))
        self.register_buffer("err_std", torch.ones(1, g, feature_size, feature_size))
        self.register_buffer("kernel", gaussian_kernel(blur_sigma) if blur_sigma > 0 else torch.ones(1))
        self.register_buffer("raw_threshold", torch.tensor(1.0))
        self.register_buffer("score_scale", torch.tensor(1.0))
        self.register_buffer("pixel_raw_threshold", torch.tensor(1.0))
        self.register_buffer("mask_peak_share", torch.tensor(float(mask_peak_share)))

    def raw_map(self, feats: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        return self.raw_map_from_error(self.error(feats, recon))

    def raw_map_from_error(self, err: torch.Tensor) -> torch.Tensor:
        """Error N x G x h x w -> standardised, fused, upsampled, blurred raw map N x S x S."""
        err = (err - self.err_mean) / self.err_std
        if err.shape[1] > 1:
            err = err.amax(dim=1, keepdim=True) if self.fusion == "max" else err.sum(dim=1, keepdim=True)
        s = self.image_size
        err = F.interpolate(err, size=(s, s), mode="bilinear", align_corners=False)
        k = self.kernel.numel()
        if k > 1:
            # Separable blur with reflection padding: two 1-D passes instead of one k x k pass.
            p = k // 2
            err = F.pad(err, (p, p, 0, 0), mode="reflect")
            err = F.conv2d(err, self.kernel.view(1, 1, 1, k))
            err = F.pad(err, (0, 0, p, p), mode="reflect")
            err = F.conv2d(err, self.kernel.view(1, 1, k, 1))
        return err[:, 0]

    def error(self, feats: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """Per-pixel mean squared reconstruction error, N x G x h x w (one map per modality group)."""
        sq = (feats - recon).pow(2)
        if not self.groups:
            return sq.mean(dim=1, keepdim=True)
        return torch.cat([part.mean(dim=1, keepdim=True) for part in sq.split(self.groups, dim=1)], dim=1)

    def set_error_stats(self, err: torch.Tensor, method: str) -> None:
        """Calibrate the per-position statistics from normal images' errors err N x G x h x w.

        The rule lives in :func:`anodet.calibration.error_stats` (torch-free). INT8
        recalibration refits only the threshold and scale, not these statistics.
        """
        mean, std = error_stats(err.detach().cpu().numpy(), method)
        if std is not None:
            self.err_std.copy_(torch.from_numpy(std))
        if mean is not None:
            self.err_mean.copy_(torch.from_numpy(mean))

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw - self.raw_threshold) / self.score_scale + DECISION_THRESHOLD

    def decide(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """raw N x S x S -> score (N,), anomaly_map (N,S,S), mask (N,S,S) uint8."""
        amap = self.normalise(raw)
        score = amap.flatten(1).amax(dim=1)
        flagged = (score > DECISION_THRESHOLD)[:, None, None]
        # Above the pixel threshold and a share of the way from it to the frame's peak.
        peak = raw.flatten(1).amax(dim=1)[:, None, None]
        level = self.pixel_raw_threshold + self.mask_peak_share * (peak - self.pixel_raw_threshold).clamp(min=0)
        mask = (raw > level) & flagged
        return {"score": score, "anomaly_map": amap, "mask": mask.to(torch.uint8)}

    def set_calibration(self, raw_threshold: float, score_scale: float,
                        pixel_raw_threshold: float | None = None) -> None:
        """Image threshold and scale; the pixel threshold defaults to the image threshold."""
        self.raw_threshold.fill_(float(raw_threshold))
        self.score_scale.fill_(float(max(score_scale, 1e-12)))
        pixel = raw_threshold if pixel_raw_threshold is None else pixel_raw_threshold
        self.pixel_raw_threshold.fill_(float(pixel))

    @property
    def pixel_threshold(self) -> float:
        """The mask's threshold in normalised units (the image threshold is 0.5)."""
        return float(self.normalise(self.pixel_raw_threshold))
