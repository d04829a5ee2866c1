"""Fixed (never trained) multi-scale feature aligner.

Each backbone stage is reduced by a fixed 1x1 projection, upsampled to feature_size x
feature_size, concatenated and smoothed. The projection is fitted once on training features
(PCA, or a seeded random orthogonal matrix, or channel-group averaging, each followed by
per-channel standardisation) and then frozen: training it together with the autoencoder on a
reconstruction loss would let both collapse to a constant.

Reducing before upsampling gives exactly the same result as the other order (both are linear
and bilinear weights sum to 1) at a fraction of the cost; ``reduce_first=False`` keeps the
seed's order as a reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Aligner(nn.Module):
    """list of N x C_l x h_l x w_l -> N x sum(K_l) x S x S, with fixed buffers only."""

    def __init__(
        self,
        in_channels: list[int],
        out_channels: list[int],
        *,
        feature_size: int,
        smooth_kernel: int = 3,
        reduce_first: bool = True,
    ):
        super().__init__()
        self.in_channels, self.out_channels = list(in_channels), list(out_channels)
        self.feature_size = feature_size
        self.smooth_kernel = smooth_kernel
        self.reduce_first = reduce_first
        for i, (c, k) in enumerate(zip(in_channels, out_channels)):
            # Buffers, not parameters: they are saved with the model but no optimizer sees them.
            self.register_buffer(f"weight{i}", torch.zeros(k, c, 1, 1))
            self.register_buffer(f"bias{i}", torch.zeros(k))

    @property
    def channels(self) -> int:
        return sum(self.out_channels)

    def projection(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"weight{i}"), getattr(self, f"bias{i}")

    def set_projection(self, i: int, weight: torch.Tensor, bias: torch.Tensor) -> None:
        getattr(self, f"weight{i}").copy_(weight.reshape(self.out_channels[i], -1, 1, 1))
        getattr(self, f"bias{i}").copy_(bias)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.feature_size and x.shape[-2] == self.feature_size:
            return x
        return F.interpolate(x, size=(self.feature_size, self.feature_size), mode="bilinear", align_corners=False)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        out = []
        for i, f in enumerate(feats):
            w, b = self.projection(i)
            if self.reduce_first:
                out.append(self._resize(F.conv2d(f, w, b)))
            else:
                out.append(F.conv2d(self._resize(f), w, b))
        x = torch.cat(out, dim=1)
        if self.smooth_kernel > 1:
            p = self.smooth_kernel // 2
            x = F.pad(x, (p, p, p, p), mode="reflect")
            x = F.avg_pool2d(x, self.smooth_kernel, stride=1)
        return x


def _pca_projection(cov: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k principal directions (k x C), each scaled to unit variance (whitened)."""
    evals, evecs = torch.linalg.eigh(cov)  # ascending order
    evals, evecs = evals.flip(0)[:k], evecs.flip(1)[:, :k]
    return (evecs / evals.clamp_min(1e-6).sqrt()).T


def _orthogonal_projection(c: int, k: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(c, k, generator=gen, dtype=torch.float64))
    return q.T


def _group_projection(c: int, k: int) -> torch.Tensor:
    groups = torch.arange(c) * k // c  # contiguous groups of ~c/k channels
    w = torch.zeros(k, c, dtype=torch.float64)
    w[groups, torch.arange(c)] = 1.0
    return w / w.sum(dim=1, keepdim=True)


class MomentAccumulator:
    """Streaming mean and covariance of per-pixel channel vectors, float64."""

    def __init__(self, channels: int):
        self.n = 0
        self.sum = torch.zeros(channels, dtype=torch.float64)
        self.outer = torch.zeros(channels, channels, dtype=torch.float64)

    def add(self, f: torch.Tensor) -> None:
        x = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).double()
        self.n += x.shape[0]
        self.sum += x.sum(0)
        self.outer += x.T @ x

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.sum / max(self.n, 1)
        cov = self.outer / max(self.n, 1) - torch.outer(mean, mean)
        return mean, cov


def fit_aligner(aligner: Aligner, moments: list[MomentAccumulator], method: str, seed: int = 0) -> None:
    """Set each stage's projection from its feature moments: W(x - mean), unit variance out."""
    for i, acc in enumerate(moments):
        mean, cov = acc.moments()
        c, k = aligner.in_channels[i], aligner.out_channels[i]
        if method == "pca":
            w = _pca_projection(cov, k)
        else:
            w = _orthogonal_projection(c, k, seed + i) if method == "orthogonal" else _group_projection(c, k)
            # Standardise each output channel so no stage dominates the reconstruction loss.
            std = torch.sqrt(torch.clamp(torch.einsum("kc,cd,kd->k", w, cov, w), min=1e-12))
            w = w / std[:, None]
        aligner.set_projection(i, w.float(), (-(w @ mean)).float())
