"""The whole detector: camera-space input -> normalised score, map and mask.

``Detector.forward`` takes exactly what the exported graph takes (rgb uint8 N x S x S x 3,
depth float32 N x S x S in metres, 0 = missing), so training, evaluation and the FP32 export
run one code path. The FP16 export has its own forward (anodet.export.onnx.ExportGraph), and
export's parity check, not construction, is what makes every exported file agree.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from anodet import config as cfgmod
from anodet.config import ExperimentConfig
from anodet.models import efficientnet_lite as lite
from anodet.models.aligner import Aligner
from anodet.models.autoencoder import Autoencoder
from anodet.models.backbone import Backbone
from anodet.models.scoring import Scorer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def rgb_normalisation(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std on 0-255 values that the backbone's ImageNet weights were trained with."""
    if backbone in lite.LITE_NAMES:
        return lite.RGB_MEAN, lite.RGB_STD
    return tuple(255.0 * v for v in IMAGENET_MEAN), tuple(255.0 * v for v in IMAGENET_STD)


class InputNorm(nn.Module):
    """rgb uint8 N x S x S x 3, depth float32 N x S x S metres -> N x C x S x S normalised.

    RGB uses the backbone's own normalisation (part of the graph, so the runtime needs none).
    Depth is centred on each image's mean valid depth (removes the camera distance, which
    varies with mounting) and divided by a training-set scale stored with the model; missing
    pixels become 0, the mean.
    """

    def __init__(self, in_channels: int, backbone: str = "resnet50"):
        super().__init__()
        self.in_channels = in_channels
        mean, std = rgb_normalisation(backbone)
        self.register_buffer("rgb_mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("rgb_std", torch.tensor(std).view(1, 3, 1, 1))
        self.register_buffer("depth_scale", torch.tensor(0.01))  # metres; set from training data

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor | None = None) -> torch.Tensor:
        x = (rgb.permute(0, 3, 1, 2).float() - self.rgb_mean) / self.rgb_std
        if self.in_channels == 3:
            return x
        return torch.cat([x, centred_depth(depth).unsqueeze(1) / self.depth_scale], dim=1)


def centred_depth(depth: torch.Tensor) -> torch.Tensor:
    """N x S x S metres -> depth minus each image's mean valid depth; 0 where missing."""
    valid = (depth > 0).to(depth.dtype)
    # Shift by the farthest valid depth first: the relief is then summed near 0 (no float32
    # cancellation at large camera distances) and a constant depth gives exactly 0.
    rel = (depth - (depth * valid).amax(dim=(1, 2), keepdim=True)) * valid
    mean = rel.sum(dim=(1, 2), keepdim=True) / valid.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)
    return (rel - mean) * valid


class Detector(nn.Module):
    """Backbone (frozen) -> aligner (fixed) -> autoencoder (trained) -> scorer (calibrated)."""

    def __init__(self, cfg: ExperimentConfig, *, weights: str = "none"):
        super().__init__()
        m = cfg.model
        self.cfg = cfg
        self.input_norm = InputNorm(m.in_channels, m.backbone)
        self.backbone = Backbone(m.backbone, m.in_channels, m.layers, weights, seed=cfg.train.seed,
                                 fusion=m.fusion, depth_stride=m.depth_stride)
        if m.reduce_channels is not None:
            # Late fusion: each modality's stage gets its own reduction to reduce_channels.
            reduced = [min(m.reduce_channels, c) for c in self.backbone.channels]
        else:
            reduced = [max(1, c // m.reduction_factor) for c in self.backbone.channels]
        self.aligner = Aligner(
            self.backbone.channels,
            reduced,
            feature_size=m.feature_size,
            smooth_kernel=m.smooth_kernel,
            reduce_first=m.reduce_first,
        )
        self.autoencoder = Autoencoder(self.aligner.channels, min(m.latent_dim, self.aligner.channels))
        half = len(reduced) // 2  # late fusion: the RGB stages' channels, then the depth stages'
        groups = (sum(reduced[:half]), sum(reduced[half:])) if self.backbone.late else ()
        self.scorer = Scorer(cfg.data.image_size, m.blur_sigma, m.feature_size, m.mask_peak_share,
                             groups=groups, fusion=m.score_fusion)

    @property
    def weights_source(self) -> str:
        return self.backbone.weights_source

    @torch.no_grad()
    def features(self, rgb: torch.Tensor, depth: torch.Tensor | None = None) -> torch.Tensor:
        """The fixed part: N x C x F x F aligned features (cacheable during training)."""
        return self.aligner(self.backbone(self.input_norm(rgb, depth)))

    def raw_map(self, feats: torch.Tensor) -> torch.Tensor:
        """Aligned features -> N x S x S raw (un-normalised) blurred error map."""
        return self.scorer.raw_map(feats, self.autoencoder(feats))

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Return {"score": (N,), "anomaly_map": (N,S,S) float, "mask": (N,S,S) uint8}."""
        return self.scorer.decide(self.raw_map(self.features(rgb, depth)))


def build_detector(cfg: ExperimentConfig, *, weights: str = "none") -> Detector:
    return Detector(cfgmod.validate(cfg), weights=weights).eval()


def load_detector(path: str | Path, map_location: str = "cpu") -> Detector:
    """Rebuild a trained detector from ``best.pt``/``last.pt`` (no weights download needed)."""
    from anodet.checkpoint import read_checkpoint  # local import: checkpoint imports this module

    ckpt = read_checkpoint(path, map_location=map_location)
    cfg = cfgmod.from_dict(ckpt["config"], source=str(path))
    det = Detector(cfg, weights="none")
    state = dict(ckpt["model"])
    # Checkpoints from before the separate pixel threshold masked at the image threshold.
    if "scorer.raw_threshold" in state:
        state.setdefault("scorer.pixel_raw_threshold", state["scorer.raw_threshold"])
        state.setdefault("scorer.mask_peak_share", torch.tensor(0.0))
    det.load_state_dict(state)
    det.backbone.weights_source = ckpt.get("weights_source", "unknown")
    det.checkpoint_info = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer")}
    return det.eval()
