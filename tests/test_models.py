"""Model invariants: 4-channel conv1, frozen backbone, reduce-first equality, 1x1-only AE."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config
from torch import nn

from anodet.errors import AnodetError
from anodet.models import build_detector
from anodet.models.aligner import Aligner
from anodet.models.autoencoder import Autoencoder, dfr_widths
from anodet.models.backbone import Backbone, expand_conv1


def test_depth_filter_is_mean_of_rgb_filters():
    conv = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
    new = expand_conv1(conv)
    assert new.in_channels == 4
    torch.testing.assert_close(new.weight[:, :3], conv.weight)
    torch.testing.assert_close(new.weight[:, 3], conv.weight.mean(dim=1))


def test_backbone_conv1_has_depth_channel_and_is_frozen():
    bb = Backbone("resnet18", 4, ("layer1", "layer2"), "none")
    conv1 = bb.stem[0]
    torch.testing.assert_close(conv1.weight[:, 3], conv1.weight[:, :3].mean(dim=1))
    assert not any(p.requires_grad for p in bb.parameters())
    bb.train()  # asking for training mode must not unfreeze BatchNorm statistics
    assert not bb.training and not any(m.training for m in bb.modules())
    bn = bb.stem[1]
    before = bn.running_mean.clone()
    bb(torch.randn(2, 4, 64, 64))
    torch.testing.assert_close(bn.running_mean, before)


def test_backbone_truncates_after_last_requested_layer():
    bb = Backbone("resnet18", 4, ("layer2", "layer3"), "none")
    assert len(bb.stages) == 3  # layer4 is never built, so never run
    feats = bb(torch.randn(1, 4, 64, 64))
    assert [f.shape[1] for f in feats] == [128, 256]
    assert [f.shape[-1] for f in feats] == [8, 4]


def test_random_init_is_seeded():
    a = Backbone("resnet18", 4, ("layer1",), "none", seed=5)
    b = Backbone("resnet18", 4, ("layer1",), "none", seed=5)
    torch.testing.assert_close(a.stem[0].weight, b.stem[0].weight)


def test_reduce_before_upsample_equals_upsample_then_reduce():
    torch.manual_seed(0)
    feats = [torch.randn(2, 32, 8, 8), torch.randn(2, 64, 4, 4)]
    kw = {"feature_size": 16, "smooth_kernel": 3}
    first = Aligner([32, 64], [8, 8], reduce_first=True, **kw)
    later = Aligner([32, 64], [8, 8], reduce_first=False, **kw)
    for i, c in enumerate([32, 64]):
        w, b = torch.randn(8, c), torch.randn(8)
        first.set_projection(i, w, b)
        later.set_projection(i, w, b)
    torch.testing.assert_close(first(feats), later(feats), atol=1e-5, rtol=1e-5)
    # and against a hand-written reference of the seed's order
    ref = torch.cat([F.conv2d(F.interpolate(f, size=(16, 16), mode="bilinear", align_corners=False),
                              *later.projection(i)) for i, f in enumerate(feats)], dim=1)
    ref = F.avg_pool2d(F.pad(ref, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    torch.testing.assert_close(first(feats), ref, atol=1e-5, rtol=1e-5)


def test_autoencoder_is_only_1x1_convolutions():
    ae = Autoencoder(64, 16)
    convs = [m for m in ae.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.kernel_size == (1, 1) for m in convs)
    assert not any(isinstance(m, (nn.Linear, nn.ConvTranspose2d)) for m in ae.modules())
    assert dfr_widths(64, 16) == [64, 48, 32, 16]
    x = torch.randn(2, 64, 5, 7)
    assert ae.eval()(x).shape == x.shape


def test_aligner_and_backbone_have_no_trainable_parameters():
    det = build_detector(tiny_config())
    trainable = {n for n, p in det.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("autoencoder.") for n in trainable)


def test_detector_outputs_contract_shapes():
    det = build_detector(tiny_config())
    rgb = torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8)
    depth = torch.rand(2, 64, 64) * 0.05 + 0.5
    out = det(rgb, depth)
    assert out["score"].shape == (2,)
    assert out["anomaly_map"].shape == (2, 64, 64)
    assert out["mask"].dtype == torch.uint8
    det_rgb = build_detector(tiny_config(preset="rgb_baseline", model={"in_channels": 3}))
    assert det_rgb(rgb)["score"].shape == (2,)


def test_weights_path_and_bad_weights(tmp_path):
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    bb = Backbone("resnet18", 4, ("layer1",), str(path))
    torch.testing.assert_close(bb.stem[0].weight[:, :3], state["conv1.weight"])
    with pytest.raises(AnodetError, match="not found"):
        Backbone("resnet18", 4, ("layer1",), str(tmp_path / "missing.pth"))


def test_imagenet_weights_offline_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache
    import anodet.models.backbone as bbmod

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(bbmod.torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(AnodetError, match="--weights none"):
        Backbone("resnet18", 4, ("layer1",), "imagenet")
