"""TensorRT export and backend. Most tests run without TensorRT; the gpu ones need both."""

from __future__ import annotations

import ctypes
import json
import logging
import subprocess
import sys
import types

import numpy as np
import pytest
from fake_model import fake_info

from anodet import gpu
from anodet.artifact import ModelInfo, check_inputs, read_info, read_sidecar, sidecar_problems
from anodet.errors import AnodetError
from anodet.export import tensorrt as export_trt
from anodet.runtime.backends import tensorrt as backend

S = 16
TRT_MESSAGE = "TensorRT is not installed: pip install tensorrt cuda-python"


def model_info(depth: bool = True, precision: str = "fp32") -> ModelInfo:
    return fake_info(S, 4 if depth else 3, score_scale=2.0, raw_threshold=1.0, precision=precision)


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
        gpu, "import_tensorrt", lambda: types.SimpleNamespace(__version__="10.3.0")
    )
    monkeypatch.setattr(
        gpu,
        "gpu_properties",
        lambda: {"device": 0, "name": "Orin", "compute_capability": "8.7"},
    )


def test_modules_import_without_tensorrt_or_torch():
    code = (
        "import sys, anodet.export.tensorrt, anodet.runtime.backends.tensorrt; "
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
    assert sidecar_problems(side, tensorrt_version="10.3.0", compute_capability="8.7") == []
    version = sidecar_problems(side, tensorrt_version="11.0.0", compute_capability="8.7")
    assert len(version) == 1 and "TensorRT 10.3.0" in version[0] and "11.0.0" in version[0]
    both = sidecar_problems(side, tensorrt_version="10.3.1", compute_capability="9.0")
    assert len(both) == 2 and "compute capability 8.7 (Orin)" in both[1]


def test_check_engine_compat(tmp_path, fake_trt, caplog):
    engine = fake_engine(tmp_path)
    assert gpu.check_engine_compat(engine)["gpu_name"] == "Orin"
    assert export_trt.check_engine_compat is gpu.check_engine_compat
    fake_engine(tmp_path, tensorrt_version="10.0.1", compute_capability="9.0")
    with pytest.raises(AnodetError, match="cannot run here") as err:
        gpu.check_engine_compat(engine)
    assert "10.0.1" in str(err.value) and "9.0" in str(err.value) and "rebuild" in str(err.value)
    fake_engine(tmp_path, gpu_name="Jetson AGX Orin 64GB")  # same architecture: warn, run
    with caplog.at_level(logging.WARNING):
        gpu.check_engine_compat(engine)
    assert "may be slower" in caplog.text


def test_check_engine_compat_bad_sidecars(tmp_path, fake_trt):
    with pytest.raises(AnodetError, match="engine file not found"):
        gpu.check_engine_compat(tmp_path / "none.engine")
    engine = fake_engine(tmp_path)
    (tmp_path / "model.engine.json").unlink()
    with pytest.raises(AnodetError, match="sidecar .* is missing"):
        gpu.check_engine_compat(engine)
    (tmp_path / "model.engine.json").write_text("{not json")
    with pytest.raises(AnodetError, match="is corrupt"):
        gpu.check_engine_compat(engine)
    (tmp_path / "model.engine.json").write_text(json.dumps({"tensorrt_version": "10.3.0"}))
    with pytest.raises(AnodetError, match="is corrupt"):
        gpu.check_engine_compat(engine)
    fake_engine(tmp_path, plan_bytes=99)
    with pytest.raises(AnodetError, match="does not match its sidecar"):
        gpu.check_engine_compat(engine)


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
    assert gpu.cuda_check((ok, 7), "x") == 7
    assert gpu.cuda_check((ok,), "x") is None
    assert gpu.cuda_check((ok, 1, 2), "x") == (1, 2)
    with pytest.raises(
        gpu.CudaError, match=r"cudaMalloc\(rgb\) failed: cudaErrorMemoryAllocation"
    ):
        gpu.cuda_check((cudart.cudaError_t.cudaErrorMemoryAllocation, None), "cudaMalloc(rgb)")


def test_no_gpu_is_a_clear_error():
    cudart = pytest.importorskip("cuda.bindings.runtime")
    err, *rest = cudart.cudaGetDeviceCount()
    if int(err) == 0 and rest and rest[0] > 0:
        pytest.skip("this machine has a GPU")
    with pytest.raises(AnodetError, match="no NVIDIA GPU is available"):
        gpu.gpu_properties()


def test_check_batch():
    info = model_info()
    rgb, depth = np.zeros((2, S, S, 3), np.uint8), np.zeros((2, S, S), np.float64)
    got_rgb, got_depth = check_inputs(info, rgb, depth)
    assert got_rgb.shape == (2, S, S, 3) and got_depth.dtype == np.float32  # any float depth is cast
    with pytest.raises(AnodetError, match="rgb batch must be uint8"):
        check_inputs(info, rgb.astype(np.float32), depth)
    with pytest.raises(AnodetError, match="rgb batch must be uint8"):
        check_inputs(info, rgb[0], depth)
    with pytest.raises(AnodetError, match="needs depth"):
        check_inputs(info, rgb, None)
    with pytest.raises(AnodetError, match="depth batch must be float32 2"):
        check_inputs(info, rgb, depth[:1])
    with pytest.raises(AnodetError, match="depth batch must be float32"):
        check_inputs(info, rgb, depth.astype(np.uint16))
    assert check_inputs(model_info(depth=False), rgb, depth)[1] is None  # RGB-only: depth dropped


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


# ------------------------------------------------------------- CPU fakes of cudart and TensorRT


class FakeCudart:
    """cuda-python's runtime API over host memory: "device" buffers are host buffers too."""

    class cudaMemcpyKind:
        cudaMemcpyHostToDevice = "h2d"
        cudaMemcpyDeviceToHost = "d2h"

    def __init__(self, devices=1):
        self.devices, self.live, self.log, self.syncs = devices, {}, [], 0

    def _alloc(self, n, what):
        buf = ctypes.create_string_buffer(n)
        self.live[ctypes.addressof(buf)] = (what, buf)
        return 0, ctypes.addressof(buf)

    def cudaMallocHost(self, n):
        return self._alloc(n, "host")

    def cudaMalloc(self, n):
        return self._alloc(n, "device")

    def cudaFree(self, ptr):
        assert self.live.pop(ptr)[0] == "device"
        return (0,)

    def cudaFreeHost(self, ptr):
        assert self.live.pop(ptr)[0] == "host"
        return (0,)

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        assert stream == "stream" and dst in self.live and src in self.live
        ctypes.memmove(dst, src, count)
        self.log.append((kind, count))
        return (0,)

    def cudaStreamCreate(self):
        return 0, "stream"

    def cudaStreamSynchronize(self, stream):
        self.syncs += 1
        return (0,)

    def cudaStreamDestroy(self, stream):
        self.log.append(("destroy", stream))
        return (0,)

    def cudaGetDeviceCount(self):
        return 0, self.devices

    def cudaGetDevice(self):
        return 0, 0

    def cudaGetDeviceProperties(self, device):
        return 0, types.SimpleNamespace(name=b"Orin\x00\x00junk", major=8, minor=7)

    def cudaGetErrorName(self, err):
        return 0, b"cudaErrorFake"

    def cudaGetErrorString(self, err):
        return 0, b"fake error"


def _array(ptr, shape, dtype):
    dtype = np.dtype(dtype)
    raw = (ctypes.c_uint8 * (int(np.prod(shape)) * dtype.itemsize)).from_address(ptr)
    return np.frombuffer(raw, dtype).reshape(shape)


class FakeContext:
    """Runs the tiny graph of make_onnx on the fake device buffers."""

    def __init__(self, engine):
        self.engine, self.addr, self.shapes, self.fail = engine, {}, {}, False

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr
        return True

    def set_input_shape(self, name, shape):
        lo, _, hi = self.engine.profile
        ok = lo <= shape[0] <= hi and tuple(shape[1:]) == self.engine.tensors[name][1][1:]
        self.shapes[name] = tuple(shape)
        return ok

    def get_tensor_shape(self, name):
        n = self.shapes["rgb"][0]
        return (n,) + self.engine.tensors[name][1][1:]

    def execute_async_v3(self, stream_handle):
        assert stream_handle == 1234 and not self.fail
        n = self.shapes["rgb"][0]
        assert self.shapes["depth"][0] == n
        t = self.engine.tensors
        rgb = _array(self.addr["rgb"], (n, S, S, 3), t["rgb"][2])
        depth = _array(self.addr["depth"], (n, S, S), t["depth"][2]).astype(np.float32)
        amap = rgb.astype(np.float32).mean(axis=3) / 255 + depth
        _array(self.addr["anomaly_map"], (n, S, S), np.float32)[:] = amap
        _array(self.addr["score"], (n,), np.float32)[:] = amap.max(axis=(1, 2))
        _array(self.addr["mask"], (n, S, S), np.uint8)[:] = amap > 0.5
        self.engine.runs.append(n)
        return True


class FakeEngine:
    def __init__(self, profile=(1, 2, 4), depth_dtype=np.float32, fixed=None):
        b = -1 if fixed is None else fixed
        self.profile, self.runs = profile, []
        self.tensors = {  # name: (is_input, shape, dtype)
            "rgb": (True, (b, S, S, 3), np.dtype(np.uint8)),
            "depth": (True, (b, S, S), np.dtype(depth_dtype)),
            "score": (False, (b,), np.dtype(np.float32)),
            "anomaly_map": (False, (b, S, S), np.dtype(np.float32)),
            "mask": (False, (b, S, S), np.dtype(np.uint8)),
        }
        self.num_io_tensors = len(self.tensors)
        self.context = FakeContext(self)

    def get_tensor_name(self, i):
        return list(self.tensors)[i]

    def get_tensor_mode(self, name):
        return "in" if self.tensors[name][0] else "out"

    def get_tensor_shape(self, name):
        return self.tensors[name][1]

    def get_tensor_dtype(self, name):
        return self.tensors[name][2]

    def get_tensor_profile_shape(self, name, index):
        assert index == 0 and self.tensors[name][0]
        return [(b,) + self.tensors[name][1][1:] for b in self.profile]

    def create_execution_context(self):
        return self.context


def _nptype(dtype):
    if not isinstance(dtype, np.dtype):
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
    return dtype.type


@pytest.fixture
def fake_gpu(monkeypatch, fake_trt, tmp_path):
    """TensorRTBackend over FakeCudart + a fake TensorRT whose engine is FakeEngine."""
    cudart = FakeCudart()
    holder = {"engine": FakeEngine()}

    class Runtime:
        def __init__(self, logger):
            assert logger == "logger"

        def deserialize_cuda_engine(self, plan):
            assert plan == b"0123456789"
            return holder["engine"]

    trt = types.SimpleNamespace(
        __version__="10.3.0",
        Runtime=Runtime,
        TensorIOMode=types.SimpleNamespace(INPUT="in", OUTPUT="out"),
        nptype=_nptype,
    )
    monkeypatch.setattr(backend, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(backend, "import_cudart", lambda: cudart)
    monkeypatch.setattr(backend, "trt_logger", lambda trt: "logger")
    monkeypatch.setattr(backend, "stream_handle", lambda stream: 1234)
    return types.SimpleNamespace(cudart=cudart, holder=holder, engine=fake_engine(tmp_path))


def _batch(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, S, S, 3), np.uint8), rng.random((n, S, S), np.float32)


def _expected(rgb, depth):
    amap = rgb.astype(np.float32).mean(axis=3) / 255 + depth
    return amap, amap.max(axis=(1, 2))


def test_backend_chunks_pads_and_frees(fake_gpu):
    fake_gpu.holder["engine"] = engine = FakeEngine(profile=(2, 2, 4))
    be = backend.TensorRTBackend(fake_gpu.engine)
    assert (be.min_batch, be.max_batch) == (2, 4)
    cudart = fake_gpu.cudart
    assert len(cudart.live) == 10  # pinned + device memory for each of the 5 tensors
    assert set(engine.context.addr.values()) <= set(cudart.live)  # bound once, at load
    rgb, depth = _batch(7)
    out = be.predict(rgb, depth)
    amap, score = _expected(rgb, depth)
    assert engine.runs == [4, 3]  # 7 > max 4: chunked
    np.testing.assert_allclose(out["anomaly_map"], amap, rtol=1e-6)
    np.testing.assert_allclose(out["score"], score, rtol=1e-6)
    assert out["mask"].dtype == np.uint8 and (out["mask"] == (amap > 0.5)).all()
    out = be.predict(rgb[:1], depth[:1])  # 1 < min 2: padded, the padding dropped
    assert engine.runs[-1] == 2 and out["score"].shape == (1,)
    np.testing.assert_allclose(out["score"], score[:1], rtol=1e-6)
    empty = be.predict(rgb[:0], depth[:0])
    assert empty["anomaly_map"].shape == (0, S, S) and engine.runs[-1] == 2
    be.close()
    assert cudart.live == {} and ("destroy", "stream") in cudart.log
    be.close()  # twice is fine
    with pytest.raises(AnodetError, match="closed"):
        be.predict(rgb, depth)


def test_backend_fp16_input_and_fixed_batch(fake_gpu):
    fake_gpu.holder["engine"] = engine = FakeEngine(depth_dtype=np.float16, fixed=3)
    with backend.TensorRTBackend(fake_gpu.engine) as be:
        assert (be.min_batch, be.max_batch) == (3, 3)
        rgb, depth = _batch(4)
        out = be.predict(rgb, depth)
    assert engine.runs == [3, 3]
    np.testing.assert_allclose(out["anomaly_map"], _expected(rgb, depth)[0], atol=2e-3)
    assert fake_gpu.cudart.live == {}


def test_backend_failed_run_syncs_before_raising(fake_gpu):
    with backend.TensorRTBackend(fake_gpu.engine) as be:
        fake_gpu.holder["engine"].context.fail = True
        syncs = fake_gpu.cudart.syncs
        with pytest.raises(AssertionError):
            be.predict(*_batch(2))
        assert fake_gpu.cudart.syncs == syncs + 1  # queued copies finished before the raise


def test_backend_refuses_untyped_tensor_and_frees(fake_gpu):
    engine = fake_gpu.holder["engine"] = FakeEngine()
    engine.tensors["mask"] = (False, (-1, S, S), "BF16")  # no numpy type
    with pytest.raises(AnodetError, match="no numpy equivalent"):
        backend.TensorRTBackend(fake_gpu.engine)
    assert fake_gpu.cudart.live == {}  # the buffers made before the failure are freed


def test_gpu_properties_with_fake_cudart(monkeypatch):

    monkeypatch.setattr(gpu, "import_cudart", lambda: FakeCudart())
    assert gpu.gpu_properties() == {
        "device": 0,
        "name": "Orin",
        "compute_capability": "8.7",
    }
    monkeypatch.setattr(gpu, "import_cudart", lambda: FakeCudart(devices=0))
    with pytest.raises(AnodetError, match="reports 0 devices"):
        gpu.gpu_properties()


def test_import_cudart_layouts(monkeypatch):
    legacy = types.ModuleType("cuda")
    legacy.cudart = "legacy cudart"  # cuda-python < 12.6.1 only has cuda.cudart
    monkeypatch.setitem(sys.modules, "cuda", legacy)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    assert gpu.import_cudart() == "legacy cudart"
    monkeypatch.setitem(sys.modules, "cuda", None)
    with pytest.raises(AnodetError, match="pip install cuda-python"):
        gpu.import_cudart()


def test_stream_handle(monkeypatch):
    from anodet.runtime.backends import cuda_buffers

    cudart = pytest.importorskip("cuda.bindings.runtime")
    assert cuda_buffers.stream_handle(cudart.cudaStream_t(1234)) == 1234
    monkeypatch.setitem(sys.modules, "cuda.bindings.utils", None)  # cuda-python 12.x
    assert cuda_buffers.stream_handle(cudart.cudaStream_t(99)) == 99


def test_sidecar_format_is_checked(tmp_path):
    engine = fake_engine(tmp_path, format="anodet-engine/2")
    with pytest.raises(AnodetError, match="has format 'anodet-engine/2'"):
        read_sidecar(engine)


def test_plan_profile_scalar_input():
    with pytest.raises(AnodetError, match="only the batch dim"):
        export_trt.plan_profile({"rgb": ()}, 1, 1, 8)


def _fake_builder_trt(version, calls):
    """Enough of TensorRT's builder API for build_engine, recording what it is asked."""

    class Tensor:
        def __init__(self, name, shape, dtype):
            self.name, self.shape, self.dtype = name, shape, dtype

    class Network:
        def __init__(self):
            self.inputs = [
                Tensor("rgb", (-1, S, S, 3), np.dtype(np.uint8)),
                Tensor("depth", (-1, S, S), np.dtype(np.float32)),
            ]
            self.outputs = [
                Tensor("score", (-1,), np.dtype(np.float32)),
                Tensor("anomaly_map", (-1, S, S), np.dtype(np.float32)),
                Tensor("mask", (-1, S, S), np.dtype(np.uint8)),
            ]
            self.num_inputs, self.num_outputs = 2, 3

        def get_input(self, i):
            return self.inputs[i]

        def get_output(self, i):
            return self.outputs[i]

    class Cache:
        def __init__(self, blob):
            self.blob = bytes(blob)

        def serialize(self):
            return b"cache:" + version.encode()

    class Config:
        cache = None

        def set_memory_pool_limit(self, pool, size):
            calls["workspace"] = (pool, size)

        def set_flag(self, flag):
            calls.setdefault("flags", []).append(flag)

        def add_optimization_profile(self, profile):
            calls["profile"] = profile.shapes

        def create_timing_cache(self, blob):
            return Cache(blob)

        def set_timing_cache(self, cache, ignore_mismatch):
            calls.setdefault("caches", []).append(cache.blob)
            ok = cache.blob in (b"", b"cache:" + version.encode())
            self.cache = cache if ok else self.cache
            return ok

        def get_timing_cache(self):
            return Cache(b"")

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (lo, opt, hi)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls["network_flags"] = flags
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"PLAN"

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            return True

    builder_flags = {"FP16": "fp16-flag"} if version.startswith("10.") else {}  # gone in 11
    return types.SimpleNamespace(
        __version__=version,
        Builder=Builder,
        OnnxParser=Parser,
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=1),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="workspace"),
        BuilderFlag=types.SimpleNamespace(**builder_flags),
        nptype=_nptype,
    )


@pytest.mark.parametrize(
    ("version", "onnx_fp16", "network_flags", "builder_flags"),
    [
        ("10.3.0", False, 0, ["fp16-flag"]),  # FP32 graph lowered with BuilderFlag.FP16
        ("10.3.0", True, 1 << 1, None),  # FP16 graph: strongly typed, no FP16 flag
        ("11.0.0", True, 0, None),  # 11.x is always strongly typed: no flag needed
    ],
)
def test_build_engine_with_fake_tensorrt(
    tmp_path, monkeypatch, version, onnx_fp16, network_flags, builder_flags
):
    calls = {}
    monkeypatch.setattr(export_trt, "import_tensorrt", lambda: _fake_builder_trt(version, calls))
    monkeypatch.setattr(export_trt, "trt_logger", lambda trt: "logger")
    monkeypatch.setattr(
        export_trt,
        "gpu_properties",
        lambda: {"device": 0, "name": "Orin", "compute_capability": "8.7"},
    )
    model = make_onnx(tmp_path / "m.onnx", fp16=onnx_fp16)
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"cache:9.9.9")  # from another TensorRT: replaced by a fresh one
    side = export_trt.build_engine(
        model, tmp_path / "m.engine", fp16=True, opt_batch=2, max_batch=4, timing_cache=cache
    )
    assert calls["network_flags"] == network_flags and calls.get("flags") == builder_flags
    assert calls["workspace"] == ("workspace", 4 << 30)
    assert calls["profile"]["rgb"] == ((1, S, S, 3), (2, S, S, 3), (4, S, S, 3))
    assert calls["profile"]["depth"][2] == (4, S, S)
    assert calls["caches"] == [b"cache:9.9.9", b""]
    assert cache.read_bytes() == b"cache:" + version.encode()
    assert (tmp_path / "m.engine").read_bytes() == b"PLAN"
    assert side["precision"] == "fp16" and side["strongly_typed"] is (builder_flags is None)
    assert side["inputs"][0]["dtype"] == "uint8" and side["batch"]["max"] == 4
    assert read_sidecar(tmp_path / "m.engine")["plan_bytes"] == 4
