"""Frozen CNN backbone (ResNet or EfficientNet-Lite) over RGB-D input.

Two ways to feed depth (``fusion``):
- ``early``: a 4-channel first convolution. Its depth filter starts as the mean of the RGB
  filters, so a depth edge excites the same filters as an equally strong grey-level edge would.
- ``late``: the unchanged 3-channel network runs twice, once on RGB and once on the depth
  channel replicated to three channels (one batched pass), and returns both modalities'
  stages, so the aligner reduces each modality separately and colour keeps its own channels.

The network is truncated after the last requested layer (``rgbd_reduced`` never runs layer4)
and always stays in eval mode (BatchNorm frozen).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from anodet.errors import AnodetError
from anodet.models import efficientnet_lite as lite

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
CHANNELS.update(lite.CHANNELS)
BACKBONES = (*_WEIGHTS, *lite.LITE_NAMES)
STRIDES = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
FUSIONS = ("early", "late")
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


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise AnodetError(f"--weights: file not found: {path}; valid: {WEIGHT_CHOICES}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to load means a damaged file
        # The class name only: torch's own text suggests loading with weights_only=False, which
        # would run code from an untrusted file.
        raise AnodetError(f"--weights {path}: not a readable state dict ({type(exc).__name__}); "
                          "anodet loads only plain tensors") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AnodetError(f"--weights {path}: not a state dict (a mapping of names to tensors)")
    return state


def _load_weights(model: nn.Module, name: str, weights: str) -> str:
    """Load ``weights`` into a 3-channel network; return a description."""
    if weights == "none":
        return "random init (seeded), no pretrained weights"
    if name in lite.LITE_NAMES:
        if weights == "imagenet":
            state, file = lite.package_weights(name)
            source = f"ImageNet ({file}, from {lite.package_name(name)})"
        else:
            state, source = _read_state(Path(weights)), weights
        lite.load_lite_state(model, name, state, source if weights != "imagenet" else "imagenet")
        return source
    if weights == "imagenet":
        state = _imagenet_state_dict(name)
        source = f"ImageNet ({_WEIGHTS[name].url.rsplit('/', 1)[-1]})"
    else:
        state, source = _read_state(Path(weights)), weights
        if lite.is_lite_state(state):
            raise AnodetError(f"--weights {weights}: an EfficientNet-Lite state dict, backbone is {name}")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, _ = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch: a different ResNet
        lines = str(exc).splitlines()
        first = lines[1].strip() if len(lines) > 1 else lines[0]
        raise AnodetError(f"--weights {weights}: does not fit {name} ({first.rstrip('.')})") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing:
        raise AnodetError(f"--weights {weights}: state dict lacks {len(missing)} keys, e.g. {missing[0]}")
    return source


def resolve_weights(name: str, weights: str) -> str:
    """``auto`` -> ``imagenet`` where the weights install offline (EfficientNet-Lite), else ``none``."""
    if weights != "auto":
        return weights
    return "imagenet" if name in lite.LITE_NAMES else "none"


def expand_conv1(conv: nn.Conv2d) -> nn.Conv2d:
    """Return a copy of a 3-input-channel conv with a 4th (depth) channel = mean of RGB filters.

    A deep copy keeps the conv's class (timm's TF-"same" padding conv included).
    """
    new = copy.deepcopy(conv)
    with torch.no_grad():
        w = conv.weight
        new.weight = nn.Parameter(torch.cat([w, w.mean(dim=1, keepdim=True)], dim=1))
    new.in_channels = 4
    return new


def _stem_and_stages(name: str, net: nn.Module, last: int) -> tuple[nn.Sequential, nn.ModuleList]:
    if name in lite.LITE_NAMES:
        return lite.stem_and_stages(net, last)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    return stem, nn.ModuleList(getattr(net, f"layer{i}") for i in range(1, last + 1))


class Backbone(nn.Module):
    """Truncated frozen CNN returning the requested stages' features.

    forward(x: N x C x H x W float, normalised) -> list of N x C_l x H/s_l x W/s_l tensors;
    with ``fusion="late"`` and 4 input channels: the RGB stages, then the depth stages.
    """

    def __init__(self, name: str, in_channels: int, layers: tuple[str, ...], weights: str, seed: int = 0,
                 fusion: str = "early", depth_stride: int = 1):
        super().__init__()
        if name not in BACKBONES:
            raise AnodetError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")
        if fusion not in FUSIONS:
            raise AnodetError(f"unknown fusion {fusion!r}; valid: {', '.join(FUSIONS)}")
        with torch.random.fork_rng():
            torch.manual_seed(seed)  # 'none' must give the same network on every run
            net = lite.create_network(name) if name in lite.LITE_NAMES else getattr(torchvision.models, name)(weights=None)
        self.weights_source = _load_weights(net, name, weights)
        self.pretrained = weights != "none"
        self.late = in_channels == 4 and fusion == "late"
        self.depth_stride = depth_stride
        last = max(int(layer[-1]) for layer in layers)
        self.stem, self.stages = _stem_and_stages(name, net, last)
        if in_channels == 4 and not self.late:
            self.stem[0] = expand_conv1(self.stem[0])
        self.layers = tuple(layers)
        per_modality = [CHANNELS[name][layer] for layer in layers]
        self.channels = per_modality * 2 if self.late else per_modality
        self.strides = [STRIDES[layer] for layer in layers]
        if self.late:
            self.strides += [STRIDES[layer] * depth_stride for layer in layers]
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

    def _run(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for i, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if f"layer{i}" in self.layers:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if not self.late:
            return self._run(x)
        # The same frozen filters see the RGB image and the depth rendered as a grey image.
        depth = x[:, 3:4]
        if self.depth_stride > 1:  # geometry defects are smooth: a coarser depth pass costs 1/stride^2
            depth = F.avg_pool2d(depth, self.depth_stride)
            return self._run(x[:, :3]) + self._run(depth.expand(-1, 3, -1, -1))
        n = x.shape[0]  # same size: one batched pass over [RGB; depth]
        feats = self._run(torch.cat([x[:, :3], depth.expand(-1, 3, -1, -1)], dim=0))
        return [f[:n] for f in feats] + [f[n:] for f in feats]
