"""Convolutional autoencoder made only of 1x1 convolutions (a per-pixel MLP).

Widths follow DFR: C -> (C+2d)/2 -> 2d -> d -> 2d -> (C+2d)/2 -> C, with BatchNorm + ReLU
between layers. Because every kernel is 1x1 it can be trained on sampled pixel vectors shaped
B x C x 1 x 1 and applied to whole maps N x C x H x W unchanged.
"""

from __future__ import annotations

from itertools import pairwise

from torch import Tensor, nn


def dfr_widths(channels: int, latent: int) -> list[int]:
    """Encoder widths from input to bottleneck, e.g. 256, d=128 -> [256, 256, 256, 128]."""
    return [channels, (channels + 2 * latent) // 2, 2 * latent, latent]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Autoencoder(nn.Module):
    """N x C x H x W -> N x C x H x W reconstruction."""

    def __init__(self, channels: int, latent: int):
        super().__init__()
        widths = dfr_widths(channels, latent)
        enc = [_block(a, b) for a, b in pairwise(widths[:-1])]
        enc.append(nn.Conv2d(widths[-2], widths[-1], 1))  # linear bottleneck
        back = widths[::-1]
        dec = [_block(a, b) for a, b in pairwise(back[:-1])]
        dec.append(nn.Conv2d(back[-2], back[-1], 1))  # features are standardised: no ReLU at the end
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.widths = widths

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))

    def macs_per_pixel(self) -> int:
        w = self.widths
        return 2 * sum(a * b for a, b in pairwise(w))
