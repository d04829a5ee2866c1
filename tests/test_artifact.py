"""The artifact contract: metadata schema, input/output checks, chunked runs, parity, sidecars."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from fake_model import fake_info, make_fake_model

from anodet import artifact
from anodet.artifact import (
    DECISION_THRESHOLD,
    OUTPUTS,
    OutputError,
    check_outputs,
    compare_outputs,
    info_from_json,
    read_info,
    run_batched,
)
from anodet.cli import main
from anodet.errors import AnodetError

S = 8


def _outputs(score, size=S):
    score = np.asarray(score, np.float32)
    amap = np.repeat(score[:, None, None], size * size, axis=1).reshape(-1, size, size)
    return {"score": score, "anomaly_map": amap, "mask": (amap > DECISION_THRESHOLD).astype(np.uint8)}


def test_metadata_round_trip_and_schema():
    info = fake_info(S)
    assert info_from_json(info.to_json()) == info
    raw = json.loads(info.to_json())
    with pytest.raises(AnodetError, match="schema 99.*upgrade anodet"):
        info_from_json(json.dumps({**raw, "schema": 99}), "m.onnx")
    with pytest.raises(AnodetError, match="schema 1 .*export it again"):
        info_from_json(json.dumps({k: v for k, v in raw.items() if k != "schema"}), "m.onnx")
    with pytest.raises(AnodetError, match="incomplete"):
        info_from_json(json.dumps({k: v for k, v in raw.items() if k != "calibration"}), "m.onnx")
    # schema 3 had no local relief: it reads as relief off, which is what such a model ran
    old = {**raw, "schema": 3, "preprocess": {k: v for k, v in raw["preprocess"].items() if k != "depth_relief_sigma"}}
    assert info_from_json(json.dumps(old)).preprocess.depth_relief_sigma == 0.0
    with pytest.raises(AnodetError, match="not an anodet export"):
        info_from_json("[1, 2]", "m.onnx")


def test_metadata_is_read_without_onnx_installed(tmp_path, monkeypatch):
    path = make_fake_model(tmp_path / "m.onnx", image_size=S)
    with_onnx = artifact.read_onnx_metadata(path)
    monkeypatch.setitem(sys.modules, "onnx", None)  # an edge box: onnxruntime only
    assert artifact.read_onnx_metadata(path) == with_onnx
    assert read_info(path) == fake_info(S)


def test_write_metadata_replaces_entries(tmp_path):
    model = onnx.load(str(make_fake_model(tmp_path / "m.onnx", image_size=S)))
    model.metadata_props.add(key="stale", value="x")
    info = dataclasses.replace(fake_info(S), precision="int8")
    artifact.write_metadata(model, info)
    keys = {p.key for p in model.metadata_props}
    assert "stale" not in keys and artifact.METADATA_KEY in keys
    onnx.save(model, str(tmp_path / "q.onnx"))
    assert read_info(tmp_path / "q.onnx").precision == "int8"


@pytest.mark.parametrize(("batch", "max_batch", "min_batch", "calls"), [
    (None, None, 1, [5]),  # dynamic: one call
    (None, 2, 1, [2, 2, 1]),  # dynamic with a cap
    (None, 4, 2, [4, 2]),  # a short last chunk is padded up to min_batch
    (3, None, 1, [3, 3]),  # fixed batch: exactly 3 per call, last one padded
])
def test_run_batched_chunks_and_pads(batch, max_batch, min_batch, calls):
    info = fake_info(S, batch=batch)
    rgb = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, S, S, 3), np.uint8)
    depth = np.zeros((5, S, S), np.float64)
    seen = []

    def run(r, d):
        assert d.dtype == np.float32 and d.flags.c_contiguous
        seen.append(r.shape[0])
        return _outputs(r[:, 0, 0, 0].astype(np.float32) / 10)

    out = run_batched(run, info, rgb, depth, max_batch=max_batch, min_batch=min_batch)
    assert seen == calls
    np.testing.assert_allclose(out["score"], np.arange(5) / 10, rtol=1e-6)  # padding dropped, order kept
    assert out["mask"].dtype == np.uint8 and out["anomaly_map"].shape == (5, S, S)


def test_run_batched_empty_batch():
    out = run_batched(lambda r, d: pytest.fail("not called"), fake_info(S), np.zeros((0, S, S, 3), np.uint8),
                      np.zeros((0, S, S), np.float32))
    assert out["score"].shape == (0,) and out["mask"].shape == (0, S, S)


def test_check_outputs_refuses_nan_and_bad_shapes():
    good = _outputs([0.1, 0.9])
    assert check_outputs(good, 2, S)["score"].dtype == np.float32
    with pytest.raises(OutputError, match="non-finite"):
        check_outputs({**good, "score": np.array([np.nan, 0.1], np.float32)}, 2, S)
    with pytest.raises(OutputError, match="non-finite"):
        check_outputs({**good, "anomaly_map": np.full((2, S, S), np.inf, np.float32)}, 2, S)
    with pytest.raises(OutputError, match="expected"):
        check_outputs({**good, "score": np.zeros(3, np.float32)}, 2, S)
    with pytest.raises(OutputError, match="missing"):
        check_outputs({k: good[k] for k in ("score", "mask")}, 2, S)
    with pytest.raises(OutputError, match="other than 0 and 1"):
        check_outputs({**good, "mask": np.full((2, S, S), 7, np.uint8)}, 2, S)


def test_compare_outputs_bounds_and_threshold_band():
    ref = _outputs([0.2, 0.9, 0.5004])
    assert compare_outputs(ref, ref).ok
    near = _outputs([0.2005, 0.9, 0.4996])  # the third sits on the threshold: its flip is allowed
    p = compare_outputs(ref, near)
    assert p.ok and p.image_decisions_equal == pytest.approx(2 / 3) and p.tolerance == 1e-3
    far = _outputs([0.2, 0.9, 0.48])
    assert not compare_outputs(ref, far).ok and compare_outputs(ref, far, precision="fp16").ok
    flipped = _outputs([0.2, 0.45, 0.5004])  # a clear decision flips: within fp16's bound is not enough
    assert not compare_outputs(ref, flipped, precision="fp16").ok
    assert not compare_outputs(ref, {**ref, "score": np.array([np.nan, 0.9, 0.5], np.float32)}).ok
    with pytest.raises(AnodetError, match="valid: fp32, fp16"):
        compare_outputs(ref, ref, precision="int4")


def test_sidecar_problems():
    side = {"tensorrt_version": "10.3.0", "compute_capability": "8.7"}
    assert artifact.sidecar_problems(side, tensorrt_version="10.3.0", compute_capability="8.7") == []
    assert len(artifact.sidecar_problems(side, tensorrt_version="11.0", compute_capability="9.0")) == 2


def _assert_one_error_line(result, needle):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], result.output


def test_cli_refuses_bad_artifacts_in_one_line(tmp_path, monkeypatch):
    frames = tmp_path / "frames"
    frames.mkdir()
    # a model whose schema is newer than this code
    newer = make_fake_model(tmp_path / "newer.onnx", image_size=S, metadata=False)
    model = onnx.load(str(newer))
    raw = json.loads(fake_info(S).to_json())
    model.metadata_props.add(key="anodet", value=json.dumps({**raw, "schema": artifact.SCHEMA_VERSION + 1}))
    onnx.save(model, str(newer))
    runner = CliRunner()
    _assert_one_error_line(runner.invoke(main, ["run", "--model", str(newer), "--source", "synthetic:2"]),
                           "upgrade anodet")
    plain = make_fake_model(tmp_path / "plain.onnx", image_size=S, metadata=False)
    _assert_one_error_line(runner.invoke(main, ["run", "--model", str(plain), "--source", "synthetic:2"]),
                           "not an anodet export")
    # an engine whose sidecar says another TensorRT built it, on a machine with TensorRT 10.3
    import types

    from anodet import gpu
    from anodet.runtime.backends import tensorrt as tensorrt_backend

    trt = types.SimpleNamespace(__version__="10.3.0")
    for mod in (gpu, tensorrt_backend):
        monkeypatch.setattr(mod, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(tensorrt_backend, "import_cudart", lambda: object())
    monkeypatch.setattr(gpu, "gpu_properties", lambda: {"device": 0, "name": "Orin", "compute_capability": "8.7"})
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"PLAN")
    side = {"format": artifact.SIDECAR_FORMAT, "tensorrt_version": "0.0.1", "compute_capability": "1.0",
            "onnx_metadata": {"anodet": fake_info(S).to_json()}, "inputs": [], "outputs": [], "plan_bytes": 4}
    artifact.sidecar_path(engine).write_text(json.dumps(side))
    result = runner.invoke(main, ["run", "--model", str(engine), "--source", "synthetic:2"])
    _assert_one_error_line(result, "built with TensorRT 0.0.1 but TensorRT 10.3.0 is installed")
    assert OUTPUTS == ("score", "anomaly_map", "mask")
