"""ONNX Runtime backend and open_backend: the artifact contract, batching, errors."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from fake_model import flat_frame, make_fake_model

from anodet.errors import AnodetError
from anodet.runtime.backends import (
    BACKENDS,
    OnnxRuntimeBackend,
    choose_providers,
    open_backend,
)


@pytest.fixture(scope="module", params=["fake"])
def model_path(request, tmp_path_factory):
    """Any anodet-contract ONNX model (the lead adds real exports as further params)."""
    return make_fake_model(tmp_path_factory.mktemp("model") / "fake.onnx")


def batch_of(n, s=32, bumps=None):
    frames = [flat_frame(s, s, bump=(bumps or [0.0] * n)[i], seed=i) for i in range(n)]
    return np.stack([f[0] for f in frames]), np.stack([f[1] for f in frames])


@pytest.mark.parametrize("n", [1, 3])
def test_predict_follows_the_contract(model_path, n):
    backend = open_backend(model_path, "onnx-cpu", threads=1)
    s = backend.info.image_size
    rgb, depth = batch_of(n, s)
    out = backend.predict(rgb, depth if backend.info.needs_depth else None)
    assert backend.name == "onnx-cpu"
    assert out["score"].shape == (n,) and out["score"].dtype == np.float32
    assert out["anomaly_map"].shape == (n, s, s) and out["anomaly_map"].dtype == np.float32
    assert out["mask"].shape == (n, s, s) and out["mask"].dtype == np.uint8
    backend.close()


def test_fake_model_flags_depth_bumps(tmp_path):
    backend = open_backend(make_fake_model(tmp_path / "m.onnx"))
    out = backend.predict(*batch_of(3, bumps=[0.0, 0.03, 0.0]))
    assert list(out["score"] > 0.5) == [False, True, False]
    assert out["mask"][1].any() and not out["mask"][0].any()


def test_fixed_batch_is_chunked_and_padded(tmp_path):
    dynamic = open_backend(make_fake_model(tmp_path / "dyn.onnx"))
    fixed = open_backend(make_fake_model(tmp_path / "fixed.onnx", batch=2))
    assert fixed.info.batch == 2
    rgb, depth = batch_of(5, bumps=[0.0, 0.03, 0.0, 0.02, 0.04])
    a, b = dynamic.predict(rgb, depth), fixed.predict(rgb, depth)
    for key in a:
        assert b[key].shape == a[key].shape
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6)


def test_rgb_only_model_takes_no_depth(tmp_path):
    backend = open_backend(make_fake_model(tmp_path / "rgb.onnx", in_channels=3))
    assert not backend.info.needs_depth
    rgb, _ = batch_of(2)
    out = backend.predict(rgb, None)
    assert out["score"].shape == (2,)


def test_depth_model_refuses_missing_depth_and_bad_shapes(model_path):
    backend = open_backend(model_path)
    rgb, depth = batch_of(2, backend.info.image_size)
    with pytest.raises(AnodetError, match="needs depth"):
        backend.predict(rgb, None)
    with pytest.raises(AnodetError, match="uint8 N x"):
        backend.predict(rgb[:, :16], depth)
    with pytest.raises(AnodetError, match="uint8 N x"):
        backend.predict(rgb.astype(np.float32), depth)


def test_non_anodet_onnx_is_refused_in_one_line(tmp_path):
    path = make_fake_model(tmp_path / "plain.onnx", metadata=False)
    with pytest.raises(AnodetError) as err:
        OnnxRuntimeBackend(path)
    assert "not an anodet export" in str(err.value) and "\n" not in str(err.value)


def test_garbage_file_is_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(AnodetError, match="not a loadable ONNX model"):
        open_backend(bad)
    with pytest.raises(AnodetError, match="not found"):
        open_backend(tmp_path / "missing.onnx")


def test_unknown_backend_lists_valid_ones(model_path):
    with pytest.raises(AnodetError) as err:
        open_backend(model_path, "tflite")
    assert all(name in str(err.value) for name in BACKENDS)


def test_provider_choice():
    avail = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("auto", avail) == avail
    assert choose_providers("cuda", avail) == avail[1:]
    assert choose_providers("auto", ["AzureExecutionProvider", "CPUExecutionProvider"]) == [
        "CPUExecutionProvider"
    ]
    with pytest.raises(
        AnodetError, match="available: AzureExecutionProvider, CPUExecutionProvider"
    ):
        choose_providers("cuda", ["AzureExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(AnodetError, match="valid: auto, cpu, cuda, tensorrt"):
        choose_providers("gpu", avail)


def test_explicit_unavailable_provider_is_an_error(model_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA EP")
    with pytest.raises(AnodetError, match="no CUDAExecutionProvider"):
        open_backend(model_path, "onnx-cuda")


def test_engine_files_go_to_the_tensorrt_backend_lazily(tmp_path, monkeypatch, model_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    opened = []
    fake = types.ModuleType("anodet.runtime.backends.tensorrt")

    class TensorRTBackend:
        def __init__(self, path):
            opened.append(path)

    fake.TensorRTBackend = TensorRTBackend
    fake.open_model = lambda path, option, threads: TensorRTBackend(path)  # the table's entry point
    monkeypatch.setitem(sys.modules, "anodet.runtime.backends.tensorrt", fake)
    assert isinstance(open_backend(engine), TensorRTBackend)
    assert isinstance(open_backend(engine, "tensorrt"), TensorRTBackend)
    assert opened == [engine, engine]
    with pytest.raises(AnodetError, match="is a TensorRT engine"):
        open_backend(engine, "onnx-cpu")
    with pytest.raises(AnodetError, match="use onnx-trt"):
        open_backend(model_path, "tensorrt")


def test_missing_tensorrt_says_how_to_install(tmp_path, monkeypatch):
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"plan")
    fake = types.ModuleType("anodet.runtime.backends.tensorrt")

    class TensorRTBackend:
        def __init__(self, path):
            raise ModuleNotFoundError("No module named 'tensorrt'", name="tensorrt")

    fake.TensorRTBackend = TensorRTBackend
    fake.open_model = lambda path, option, threads: TensorRTBackend(path)  # the table's entry point
    monkeypatch.setitem(sys.modules, "anodet.runtime.backends.tensorrt", fake)
    with pytest.raises(
        AnodetError,
        match=r"tensorrt is missing; install TensorRT: `pip install tensorrt cuda-python",
    ):
        open_backend(engine)
