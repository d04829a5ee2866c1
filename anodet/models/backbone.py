"""Frozen ResNet backbone with a 4-channel (RGB + depth) first convolution.

The depth filter of conv1 starts as the mean of the RGB filters, so a depth edge excites the
same filters as an equally strong grey-level edge would. The network is truncated after the
last requested layer (``rgbd_reduced`` never runs layer4) and always stays in eval mode.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torchvision
from torch import nn

from anodet.errors import AnodetError

log = logging.getLogger(__name__)

_WEIGHTS = {
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    "wide_resnet50_2": torchvision.models.Wide_ResNet50_2_Weights.IMAGENET1K_V1,
}
CHANNELS = {
    "resnet50": {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048},
    "wide_resnet50_2": {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048},
    "resnet18": {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512},
}
STRIDES = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
WEIGHT_CHOICES = "imagenet, none or a path to a .pth state dict"


def _imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights from the hub cache, downloading only if possible."""
    weights = _WEIGHTS[name]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, socket errors: all mean "not available"
        raise AnodetError(
            f"ImageNet weights for {name} are not cached at {cached} and could not be downloaded "
            f"({exc.__class__.__name__}); copy the file there, or use --weights PATH "
            "or --weights none (random init)"
        ) from None


def _load_weights(model: nn.Module, name: str, weights: str) -> str:
    """Load ``weights`` into a 3-channel torchvision model; return a description."""
    if weights == "none":
        return "random init (seeded), no pretrained weights"
    if weights == "imagenet":
        state = _imagenet_state_dict(name)
        source = f"ImageNet ({_WEIGHTS[name].url.rsplit('/', 1)[-1]})"
    else:
        path = Path(weights)
        if not path.is_file():
            raise AnodetError(f"--weights: file not found: {path}; valid: {WEIGHT_CHOICES}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure to load means a damaged file
            raise AnodetError(f"--weights {path}: not a readable state dict ({exc})") from None
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        source = str(path)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, _ = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing:
        raise AnodetError(f"--weights {weights}: state dict lacks {len(missing)} keys, e.g. {missing[0]}")
    return source


def expand_conv1(conv: nn.Conv2d) -> nn.Conv2d:
    """Return a copy of a 3-input-channel conv with a 4th (depth) channel = mean of RGB filters."""
    new = nn.Conv2d(4, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)
    with torch.no_grad():
        new.weight[:, :3] = conv.weight
        new.weight[:, 3:] = conv.weight.mean(dim=1, keepdim=True)
    return new


class Backbone(nn.Module):
    """Truncated frozen ResNet returning the requested stages' features.

    forward(x: N x C x H x W float, normalised) -> list of N x C_l x H/s_l x W/s_l tensors.
    """

    def __init__(self, name: str, in_channels: int, layers: tuple[str, ...], weights: str, seed: int = 0):
        super().__init__()
        if name not in _WEIGHTS:
            raise AnodetError(f"unknown backbone {name!r}; valid: {', '.join(_WEIGHTS)}")
        with torch.random.fork_rng():
            torch.manual_seed(seed)  # 'none' must give the same network on every run
            net = getattr(torchvision.models, name)(weights=None)
        self.weights_source = _load_weights(net, name, weights)
        self.pretrained = weights != "none"
        conv1 = expand_conv1(net.conv1) if in_channels == 4 else net.conv1
        self.stem = nn.Sequential(conv1, net.bn1, net.relu, net.maxpool)
        last = max(int(layer[-1]) for layer in layers)
        self.stages = nn.ModuleList(getattr(net, f"layer{i}") for i in range(1, last + 1))
        self.layers = tuple(layers)
        self.channels = [CHANNELS[name][layer] for layer in layers]
        self.strides = [STRIDES[layer] for layer in layers]
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Backbone:
        # Frozen BatchNorm: running statistics must never update, whatever the caller asks.
        return super().train(False)

    @torch.no_grad()
    def recalibrate_bn(self, batches) -> int:
        """Recompute every BatchNorm's running statistics from ``batches`` (normalised inputs).

        A random-init network's BN buffers are mean 0 / var 1, which is wrong after the first
        layer: activations drift in scale stage after stage and deep features become noise.
        Each BN is run once in training mode with a cumulative average (momentum=None) over
        all batches, then frozen again. Nothing is learnt by gradient; the statistics are
        buffers, saved in the checkpoint like the rest of the fixed backbone.
        """
        bns = [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            nn.Module.train(m, True)
        n = 0
        try:
            for x in batches:
                self.forward(x)
                n += x.shape[0]
        finally:
            for m, mom in zip(bns, saved):
                m.momentum = mom
                nn.Module.train(m, False)
        return n

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for i, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if f"layer{i}" in self.layers:
                out.append(x)
        return out
