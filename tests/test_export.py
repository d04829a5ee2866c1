"""ONNX export: parity, metadata, dynamic batch, FP16, INT8, refusals; exported-model evaluation."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from anodet.artifact import OUTPUTS, compare_outputs, read_info
from anodet.errors import AnodetError
from anodet.export.onnx import export_onnx, parity_samples
from anodet.export.session import run_frames
from anodet.models import load_detector


def _ckpt(trained):
    return trained / "checkpoints" / "best.pt"


def test_round_trip_parity_fixed_batch(trained, tmp_path):
    res = export_onnx(_ckpt(trained), tmp_path / "m.onnx", batch=1)
    assert res.parity.ok and res.parity.max_abs_map <= 1e-3 and res.parity.max_abs_score <= 1e-3
    assert res.parity.image_decisions_equal == 1.0
    onnx.checker.check_model(str(tmp_path / "m.onnx"), full_check=True)
    # independent re-check of the written file against PyTorch
    det = load_detector(_ckpt(trained))
    rgb, depth = parity_samples(det)
    import torch

    with torch.no_grad():
        ref = {k: v.numpy() for k, v in det(torch.from_numpy(rgb), torch.from_numpy(depth)).items()}
    got = run_frames(tmp_path / "m.onnx", rgb, depth)
    assert compare_outputs(ref, got).ok
    np.testing.assert_array_equal(ref["mask"], got["mask"])


def test_metadata_round_trip(exported, trained):
    info = read_info(exported)
    det = load_detector(_ckpt(trained))
    assert info.preset == "rgbd_full" and info.in_channels == 4 and info.image_size == 64
    assert info.batch is None and info.precision == "fp32"
    assert info.raw_threshold == pytest.approx(float(det.scorer.raw_threshold))
    assert info.preprocess.fill_holes is True
    assert info.extra["config"]["model"]["backbone"] == "resnet18"
    assert info.extra["data_fingerprint"] and info.extra["weights_source"].startswith("random init")
    meta = {p.key: p.value for p in onnx.load(str(exported), load_external_data=False).metadata_props}
    assert json.loads(meta["anodet"])["decision_threshold"] == 0.5


@pytest.mark.parametrize("n", [1, 3])
def test_dynamic_batch_runs_in_onnxruntime(exported, n):
    sess = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    rgb = np.random.default_rng(0).integers(0, 255, (n, 64, 64, 3), dtype=np.uint8)
    depth = np.full((n, 64, 64), 0.5, np.float32)
    score, amap, mask = sess.run(list(OUTPUTS), {"rgb": rgb, "depth": depth})
    assert score.shape == (n,) and amap.shape == (n, 64, 64) and mask.shape == (n, 64, 64)
    assert mask.dtype == np.uint8


def test_fp16_graph_has_fp32_io(trained, tmp_path):
    res = export_onnx(_ckpt(trained), tmp_path / "m16.onnx", batch=None, fp16=True)
    model = onnx.load(str(tmp_path / "m16.onnx"))
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    assert types == {"rgb": onnx.TensorProto.UINT8, "depth": onnx.TensorProto.FLOAT, "score": onnx.TensorProto.FLOAT,
                     "anomaly_map": onnx.TensorProto.FLOAT, "mask": onnx.TensorProto.UINT8}
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert res.info.precision == "fp16" and res.parity.ok and res.parity.max_abs_score < 5e-2
    ort.InferenceSession(str(tmp_path / "m16.onnx"), providers=["CPUExecutionProvider"])


def test_refuses_existing_output_and_leaves_it(trained, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_text("keep me")
    with pytest.raises(AnodetError, match="--force"):
        export_onnx(_ckpt(trained), out)
    assert out.read_text() == "keep me"


def test_failed_parity_writes_nothing(trained, tmp_path, monkeypatch):
    import anodet.artifact as mod

    monkeypatch.setitem(mod.PARITY_TOLERANCE, "fp32", -1.0)  # any difference now fails
    with pytest.raises(AnodetError, match="parity"):
        export_onnx(_ckpt(trained), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_non_anodet_onnx_refused(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "x.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(AnodetError, match="not an anodet export"):
        read_info(path)


def test_int8_runs_and_correlates_with_fp32(exported, synth_data, tmp_path, caplog):
    from anodet.export.quantize import quantize_int8

    res = quantize_int8(exported, synth_data, tmp_path / "m8.onnx", max_images=8, accept=True)
    assert res.path == tmp_path / "m8.onnx" and read_info(res.path).precision == "int8"
    assert res.fp32_ms > 0 and res.int8_ms > 0
    from anodet.data.samples import discover, load_sample

    ds = discover(synth_data)
    # The drop's paired bootstrap spread is measured and reported; when 16 test images cannot
    # resolve the 0.01 bound (spread above it), the command says so.
    assert res.test_images == len(ds.test) and np.isfinite(res.auroc_drop_sd)
    assert ("too small to check" in caplog.text) == (res.auroc_drop_sd > 0.01)
    info = read_info(exported)
    frames = [load_sample(s, info.preprocess) for s in ds.test]
    rgb = np.stack([f[0] for f in frames])
    depth = np.stack([f[1] for f in frames])
    a = run_frames(exported, rgb, depth)["score"]
    b = run_frames(res.path, rgb, depth)["score"]
    assert np.corrcoef(a, b)[0, 1] > 0.9


def test_int8_refuses_large_accuracy_drop(exported, synth_data, tmp_path):
    from anodet.export.quantize import quantize_int8

    res = quantize_int8(exported, synth_data, tmp_path / "m8.onnx", max_images=4, max_auroc_drop=-1.0)
    assert res.path is None and not (tmp_path / "m8.onnx").exists()


def test_exported_model_metrics_match_checkpoint(trained, exported, synth_data, tmp_path):
    from anodet.evaluation.evaluator import evaluate_model, open_model

    a = evaluate_model(open_model(_ckpt(trained), device="cpu"), synth_data, tmp_path / "a", report=False)
    b = evaluate_model(open_model(model=exported, backend="onnx-cpu"), synth_data, tmp_path / "b", report=False)
    for key in ("image_auroc", "pixel_auroc", "au_pro"):
        assert abs(a[key] - b[key]) <= 0.002, key


def test_runtime_scores_equal_eval_scores(exported, synth_data, tmp_path):
    """Scores streamed by anodet-run on a folder equal those of anodet-eval --model --save-maps."""
    import csv

    from anodet.evaluation.evaluator import evaluate_model, open_model
    from anodet.runtime import run

    evaluate_model(open_model(model=exported, backend="onnx-cpu"), synth_data, tmp_path / "ev", save_maps=True,
                   report=False)
    with open(tmp_path / "ev" / "maps" / "index.csv") as fh:
        by_name = {(r["defect_type"], r["rgb_path"].rsplit("/", 1)[-1]): float(r["score"]) for r in csv.DictReader(fh)}
    events = tmp_path / "events.jsonl"
    run(exported, str(synth_data / "test" / "crack"), backend="onnx-cpu", events=events)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(lines) == sum(1 for k in by_name if k[0] == "crack")
    for ev in lines:
        key = ("crack", ev["name"].rsplit("/", 1)[-1])
        assert ev["score"] == pytest.approx(by_name[key], abs=1e-5), ev


def test_int8_threshold_is_refitted_on_its_own_scores(exported, synth_data, tmp_path):
    """After quantization the held-out normals' score quantile sits exactly at the decision line."""
    from anodet.data.arrays import load_arrays
    from anodet.data.samples import discover
    from anodet.export.quantize import quantize_int8

    res = quantize_int8(exported, synth_data, tmp_path / "m8.onnx", max_images=8, accept=True)
    info = read_info(res.path)
    cfg = info.extra["config"]
    assert res.recalibration is not None and info.raw_threshold == pytest.approx(res.recalibration.raw_threshold)
    assert info.extra["int8_recalibration"]["fp32_raw_threshold"] == pytest.approx(read_info(exported).raw_threshold)
    ds = discover(synth_data, val_fraction=cfg["data"]["val_fraction"], seed=cfg["train"]["seed"])
    rgb, depth = load_arrays(ds.val, info.preprocess, need_depth=True)
    scores = run_frames(res.path, rgb, depth)["score"]
    assert cfg["train"]["threshold_method"] == "image_quantile"
    assert np.quantile(scores, cfg["train"]["threshold_quantile"]) == pytest.approx(0.5, abs=1e-4)
    # Without recalibration the INT8 model keeps the FP32 threshold (its normals sit elsewhere).
    plain = quantize_int8(exported, synth_data, tmp_path / "p8.onnx", max_images=8, accept=True,
                          recalibrate_threshold=False)
    assert read_info(plain.path).raw_threshold == read_info(exported).raw_threshold
    plain_scores = run_frames(plain.path, rgb, depth)["score"]
    assert abs(np.quantile(plain_scores, cfg["train"]["threshold_quantile"]) - 0.5) > 1e-3


def test_threshold_refit_sees_the_depth_copies_training_calibrated_on(synth_data, tmp_path):
    """With train.depth_augment_units, training calibrates on the held-out normals plus their
    re-rounded copies; the INT8 refit must do the same, so refitting the FP32 graph itself
    gives back the trained threshold (coarse 10 mm steps make the copies score higher)."""
    from conftest import tiny_config

    from anodet.data.samples import discover
    from anodet.export.recalibration import refit_int8
    from anodet.train import train

    train(tiny_config(train={"depth_augment_units": [0.01]}), synth_data, tmp_path / "exp", weights="none",
          device="cpu")
    res = export_onnx(tmp_path / "exp" / "checkpoints" / "best.pt", tmp_path / "m.onnx", batch=None)
    info = res.info
    assert info.calibration.depth_augment_units == (0.01,)
    assert read_info(tmp_path / "m.onnx").calibration == info.calibration
    cal = info.calibration
    ds = discover(synth_data, val_fraction=cal.val_fraction, seed=cal.seed)
    model = onnx.load(str(tmp_path / "m.onnx"))
    _, recal = refit_int8(model, info, ds.val, quantizer="none")
    assert recal.images == 2 * len(ds.val)
    assert recal.raw_threshold == pytest.approx(info.raw_threshold, rel=1e-3)
    assert recal.pixel_raw_threshold == pytest.approx(info.pixel_raw_threshold, rel=1e-3)


def test_int8_keeps_named_layers_in_fp32(exported, tmp_path):
    from anodet.export.quantize import quantizable_convs

    model = onnx.load(exported)
    every = set(quantizable_convs(model, ()))
    kept = set(quantizable_convs(model, ("stem", "layer1", "layer2")))
    left_fp32 = every - kept
    assert left_fp32 and all(any(f"/backbone/{s}/" in n for s in ("stem", "stages.0", "stages.1")) for n in left_fp32)
    assert any("/backbone/stages.2/" in n for n in kept) and any("/autoencoder/" in n for n in kept)
    assert not every & {"/Conv", "/Conv_1"}  # the scorer's blur stays FP32
    with pytest.raises(AnodetError, match="layer9"):
        from anodet.export.quantize import quantize_int8

        quantize_int8(exported, tmp_path, tmp_path / "x.onnx", keep_fp32=("layer9",))
