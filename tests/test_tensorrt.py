"""TensorRT export and backend. Most tests run without TensorRT; the gpu ones need both."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import types

import numpy as np
import pytest

from anodet.artifact import ModelInfo, read_info
from anodet.errors import AnodetError
from anodet.export import tensorrt as export_trt
from anodet.preprocess import PreprocessSpec
from anodet.runtime import tensorrt_backend as backend

S = 16
TRT_MESSAGE = "TensorRT is not installed: pip install tensorrt cuda-python"


def model_info(depth: bool = True, precision: str = "fp32") -> ModelInfo:
    return ModelInfo(
        version="0.1.0",
        preset="test",
        in_channels=4 if depth else 3,
        image_size=S,
        preprocess=PreprocessSpec(image_size=S),
        raw_threshold=1.0,
        score_scale=2.0,
        batch=None,
        precision=precision,
    )


def make_onnx(path, *, fp16: bool = False, anodet: bool = True):
    """Tiny anodet graph: map = mean(rgb)/255 + depth, score = max(map), mask = map > .5."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("Cast", ["rgb"], ["rgb_f"], to=f),
        helper.make_node("ReduceMean", ["rgb_f"], ["mean"], axes=[3], keepdims=0),
        helper.make_node("Div", ["mean", "c255"], ["scaled"]),
        helper.make_node("Add", ["scaled", "depth"], ["map"]),
        # outputs are not consumed inside the graph: onnxconverter-common mistypes those
        helper.make_node("Identity", ["map"], ["anomaly_map"]),
        helper.make_node("ReduceMax", ["map"], ["score"], axes=[1, 2], keepdims=0),
        helper.make_node("Greater", ["map", "half"], ["over"]),
        helper.make_node("Cast", ["over"], ["over_f"], to=f),
        helper.make_node("Cast", ["over_f"], ["mask"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("rgb", TensorProto.UINT8, ["N", S, S, 3]),
            helper.make_tensor_value_info("depth", f, ["N", S, S]),
        ],
        [
            helper.make_tensor_value_info("score", f, ["N"]),
            helper.make_tensor_value_info("anomaly_map", f, ["N", S, S]),
            helper.make_tensor_value_info("mask", TensorProto.UINT8, ["N", S, S]),
        ],
        initializer=[
            helper.make_tensor("c255", f, [], [255.0]),
            helper.make_tensor("half", f, [], [0.5]),
        ],
    )
    for i, node in enumerate(graph.node):  # onnxconverter-common keys nodes by name
        node.name = f"{node.op_type.lower()}_{i}"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if fp16:
        from onnxconverter_common import float16

        model = float16.convert_float_to_float16(model, keep_io_types=True)
        # onnxconverter-common 1.16 leaves Cast(to=FLOAT) inside the graph, which then no
        # longer type-checks (blocking "Cast" instead makes it loop forever): retarget them
        outputs = {o.name for o in model.graph.output}
        for node in model.graph.node:
            if node.op_type == "Cast" and node.output[0] not in outputs:
                for attr in node.attribute:
                    if attr.name == "to" and attr.i == f:
                        attr.i = TensorProto.FLOAT16
    if anodet:
        info = model_info(precision="fp16" if fp16 else "fp32")
        helper.set_model_props(model, {"anodet": info.to_json()})
    onnx.save(model, str(path))
    return path


def fake_engine(tmp_path, **overrides):
    """A plan file plus a sidecar as build_engine writes it (the plan bytes are fake)."""
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"0123456789")
    sidecar = {
        "format": "anodet-engine/1",
        "tensorrt_version": "10.3.0",
        "gpu_name": "Orin",
        "compute_capability": "8.7",
        "plan_bytes": 10,
        "inputs": [],
        "outputs": [],
        "onnx_metadata": {"anodet": model_info().to_json()},
    }
    sidecar.update(overrides)
    (tmp_path / "model.engine.json").write_text(json.dumps(sidecar))
    return engine


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail


@pytest.fixture
def fake_trt(monkeypatch):
    """Pretend TensorRT 10.3.0 on an Orin (compute capability 8.7)."""
    monkeypatch.setattr(
        backend, "import_tensorrt", lambda: types.SimpleNamespace(__version__="10.3.0")
    )
    monkeypatch.setattr(
        backend,
        "gpu_properties",
        lambda: {"device": 0, "name": "Orin", "compute_capability": "8.7"},
    )


def test_modules_import_without_tensorrt_or_torch():
    code = (
        "import sys, anodet.export.tensorrt, anodet.runtime.tensorrt_backend; "
        "bad = [m for m in ('tensorrt', 'torch', 'cuda') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_build_without_tensorrt_says_how_to_install(tmp_path, no_tensorrt):
    model = make_onnx(tmp_path / "model.onnx")
    with pytest.raises(AnodetError, match=TRT_MESSAGE) as err:
        export_trt.build_engine(model, tmp_path / "model.engine")
    assert "JetPack" in str(err.value)
    assert not (tmp_path / "model.engine").exists()


def test_backend_without_tensorrt_says_how_to_install(tmp_path, no_tensorrt):
    with pytest.raises(AnodetError, match=TRT_MESSAGE):
        backend.TensorRTBackend(fake_engine(tmp_path))


def test_build_refuses_before_tensorrt(tmp_path, no_tensorrt):
    """Non-anodet graphs and existing engines are refused without touching TensorRT."""
    with pytest.raises(AnodetError, match="not an anodet export"):
        export_trt.build_engine(
            make_onnx(tmp_path / "plain.onnx", anodet=False), tmp_path / "a.engine"
        )
    (tmp_path / "b.engine").write_bytes(b"old")
    with pytest.raises(AnodetError, match="already exists"):
        export_trt.build_engine(make_onnx(tmp_path / "m.onnx"), tmp_path / "b.engine")
    with pytest.raises(AnodetError, match="not found"):
        export_trt.build_engine(tmp_path / "missing.onnx", tmp_path / "c.engine")


def test_compat_problems():
    side = {"tensorrt_version": "10.3.0", "compute_capability": "8.7", "gpu_name": "Orin"}
    assert backend.compat_problems(side, tensorrt_version="10.3.0", compute_capability="8.7") == []
    version = backend.compat_problems(side, tensorrt_version="11.0.0", compute_capability="8.7")
    assert len(version) == 1 and "TensorRT 10.3.0" in version[0] and "11.0.0" in version[0]
    both = backend.compat_problems(side, tensorrt_version="10.3.1", compute_capability="9.0")
    assert len(both) == 2 and "compute capability 8.7 (Orin)" in both[1]


def test_check_engine_compat(tmp_path, fake_trt, caplog):
    engine = fake_engine(tmp_path)
    assert backend.check_engine_compat(engine)["gpu_name"] == "Orin"
    assert export_trt.check_engine_compat is backend.check_engine_compat
    fake_engine(tmp_path, tensorrt_version="10.0.1", compute_capability="9.0")
    with pytest.raises(AnodetError, match="cannot run here") as err:
        backend.check_engine_compat(engine)
    assert "10.0.1" in str(err.value) and "9.0" in str(err.value) and "rebuild" in str(err.value)
    fake_engine(tmp_path, gpu_name="Jetson AGX Orin 64GB")  # same architecture: warn, run
    with caplog.at_level(logging.WARNING):
        backend.check_engine_compat(engine)
    assert "may be slower" in caplog.text


def test_check_engine_compat_bad_sidecars(tmp_path, fake_trt):
    with pytest.raises(AnodetError, match="engine file not found"):
        backend.check_engine_compat(tmp_path / "none.engine")
    engine = fake_engine(tmp_path)
    (tmp_path / "model.engine.json").unlink()
    with pytest.raises(AnodetError, match="sidecar .* is missing"):
        backend.check_engine_compat(engine)
    (tmp_path / "model.engine.json").write_text("{not json")
    with pytest.raises(AnodetError, match="is corrupt"):
        backend.check_engine_compat(engine)
    (tmp_path / "model.engine.json").write_text(json.dumps({"tensorrt_version": "10.3.0"}))
    with pytest.raises(AnodetError, match="is corrupt"):
        backend.check_engine_compat(engine)
    fake_engine(tmp_path, plan_bytes=99)
    with pytest.raises(AnodetError, match="does not match its sidecar"):
        backend.check_engine_compat(engine)


def test_read_info_reads_the_sidecar(tmp_path):
    info = read_info(fake_engine(tmp_path))
    assert info.image_size == S and info.needs_depth


def test_choose_precision():
    assert export_trt.choose_precision(10, True, "fp32") == {
        "precision": "fp16",
        "fp16_flag": True,
        "strongly_typed": False,
    }
    assert export_trt.choose_precision(10, False, "fp32")["fp16_flag"] is False
    for major in (10, 11):
        mode = export_trt.choose_precision(major, True, "fp16")
        assert mode == {"precision": "fp16", "fp16_flag": False, "strongly_typed": True}
    assert export_trt.choose_precision(11, False, "fp32") == {
        "precision": "fp32",
        "fp16_flag": False,
        "strongly_typed": True,
    }
    with pytest.raises(AnodetError, match="anodet-export onnx --fp16"):
        export_trt.choose_precision(11, True, "fp32")


def test_plan_profile():
    shapes, batch = export_trt.plan_profile({"rgb": (-1, S, S, 3), "depth": (-1, S, S)}, 1, 2, 8)
    assert batch == {"min": 1, "opt": 2, "max": 8}
    assert shapes["rgb"] == ((1, S, S, 3), (2, S, S, 3), (8, S, S, 3))
    assert shapes["depth"][2] == (8, S, S)
    shapes, batch = export_trt.plan_profile({"rgb": (1, S, S, 3)}, 1, 4, 8)  # fixed batch wins
    assert batch == {"min": 1, "opt": 1, "max": 1} and shapes["rgb"][2] == (1, S, S, 3)
    with pytest.raises(AnodetError, match="1 <= min <= opt <= max"):
        export_trt.plan_profile({"rgb": (-1, S, S, 3)}, 4, 2, 8)
    with pytest.raises(AnodetError, match="only the batch dim"):
        export_trt.plan_profile({"rgb": (-1, -1, -1, 3)}, 1, 1, 8)
    with pytest.raises(AnodetError, match="disagree"):
        export_trt.plan_profile({"rgb": (-1, S, S, 3), "depth": (2, S, S)}, 1, 1, 8)


def test_cuda_check_unpacks_and_explains():
    cudart = pytest.importorskip("cuda.bindings.runtime")
    ok = cudart.cudaError_t.cudaSuccess
    assert backend.cuda_check((ok, 7), "x") == 7
    assert backend.cuda_check((ok,), "x") is None
    assert backend.cuda_check((ok, 1, 2), "x") == (1, 2)
    with pytest.raises(
        backend.CudaError, match=r"cudaMalloc\(rgb\) failed: cudaErrorMemoryAllocation"
    ):
        backend.cuda_check((cudart.cudaError_t.cudaErrorMemoryAllocation, None), "cudaMalloc(rgb)")


def test_no_gpu_is_a_clear_error():
    cudart = pytest.importorskip("cuda.bindings.runtime")
    err, *rest = cudart.cudaGetDeviceCount()
    if int(err) == 0 and rest and rest[0] > 0:
        pytest.skip("this machine has a GPU")
    with pytest.raises(AnodetError, match="no NVIDIA GPU is available"):
        backend.gpu_properties()


def test_check_batch():
    info = model_info()
    rgb, depth = np.zeros((2, S, S, 3), np.uint8), np.zeros((2, S, S), np.float32)
    assert backend.check_batch(info, rgb, depth) == 2
    with pytest.raises(AnodetError, match="rgb must be uint8"):
        backend.check_batch(info, rgb.astype(np.float32), depth)
    with pytest.raises(AnodetError, match="rgb must be uint8"):
        backend.check_batch(info, rgb[0], depth)
    with pytest.raises(AnodetError, match="needs depth"):
        backend.check_batch(info, rgb, None)
    with pytest.raises(AnodetError, match="depth must be float32 2"):
        backend.check_batch(info, rgb, depth[:1])
    with pytest.raises(AnodetError, match="RGB-only"):
        backend.check_batch(model_info(depth=False), rgb, depth)


# --------------------------------------------------------------------------- GPU (skipped here)


def _require_gpu():
    trt = pytest.importorskip("tensorrt")
    cudart = pytest.importorskip("cuda.bindings.runtime")
    err, *rest = cudart.cudaGetDeviceCount()
    if int(err) != 0 or not rest or rest[0] == 0:
        pytest.skip("no CUDA GPU visible")
    return trt


def _reference(model, rgb, depth):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return dict(zip(["score", "anomaly_map", "mask"], sess.run(None, {"rgb": rgb, "depth": depth})))


@pytest.mark.gpu
def test_gpu_build_and_run_fp32(tmp_path):
    trt = _require_gpu()
    model = make_onnx(tmp_path / "model.onnx")
    cache = tmp_path / "timing.cache"
    side = export_trt.build_engine(
        model, tmp_path / "m.engine", fp16=False, max_batch=4, timing_cache=cache
    )
    assert side["tensorrt_version"] == trt.__version__ and side["precision"] == "fp32"
    assert side["inputs"][0]["profile"]["max"][0] == 4 and cache.is_file()
    assert (tmp_path / "m.engine").read_bytes()[:4] != b"{"  # raw plan, nothing prepended
    with pytest.raises(AnodetError, match="already exists"):
        export_trt.build_engine(model, tmp_path / "m.engine", fp16=False)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (11, S, S, 3), dtype=np.uint8)  # 11 > max 4: chunked
    depth = rng.random((11, S, S), dtype=np.float32)
    ref = _reference(model, rgb, depth)
    with backend.TensorRTBackend(tmp_path / "m.engine") as be:
        assert be.name == "tensorrt" and be.info.image_size == S and be.max_batch == 4
        for n in (1, 3, 11):
            out = be.predict(rgb[:n], depth[:n])
            assert out["score"].shape == (n,) and out["mask"].dtype == np.uint8
            np.testing.assert_allclose(out["anomaly_map"], ref["anomaly_map"][:n], atol=1e-4)
            np.testing.assert_allclose(out["score"], ref["score"][:n], atol=1e-4)
    be.close()  # twice is fine


@pytest.mark.gpu
def test_gpu_build_fp16(tmp_path):
    trt = _require_gpu()
    model = make_onnx(tmp_path / "fp16.onnx", fp16=True)  # works on TensorRT 10 and 11
    side = export_trt.build_engine(model, tmp_path / "h.engine", fp16=True)
    assert side["precision"] == "fp16" and side["strongly_typed"]
    if int(trt.__version__.split(".")[0]) >= 11:
        with pytest.raises(AnodetError, match="--fp16"):
            export_trt.build_engine(make_onnx(tmp_path / "fp32.onnx"), tmp_path / "x.engine")
    rgb = np.full((2, S, S, 3), 128, np.uint8)
    depth = np.zeros((2, S, S), np.float32)
    with backend.TensorRTBackend(tmp_path / "h.engine") as be:
        out = be.predict(rgb, depth)
    np.testing.assert_allclose(out["anomaly_map"], 128 / 255, atol=2e-3)
