"""Triton model repository: config.pbtxt parsed with Triton's own ModelConfig protobuf."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from fake_model import fake_info
from google.protobuf import text_format
from onnx import TensorProto, helper

from anodet.artifact import info_from_json
from anodet.errors import AnodetError
from anodet.export.triton import write_repository

S = 8


def make_onnx(path, *, depth=True, batch="N", anodet=True):
    """A tiny graph with the anodet contract: map = mean(rgb)/255 (+ depth), score = max(map)."""
    nodes = [
        helper.make_node("Cast", ["rgb"], ["rgb_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["rgb_f"], ["mean"], axes=[3], keepdims=0),
        helper.make_node("Div", ["mean", "c255"], ["scaled"]),
    ]
    inputs = [helper.make_tensor_value_info("rgb", TensorProto.UINT8, [batch, S, S, 3])]
    if depth:
        inputs.append(helper.make_tensor_value_info("depth", TensorProto.FLOAT, [batch, S, S]))
        nodes.append(helper.make_node("Add", ["scaled", "depth"], ["anomaly_map"]))
    else:
        nodes.append(helper.make_node("Identity", ["scaled"], ["anomaly_map"]))
    nodes += [
        helper.make_node("ReduceMax", ["anomaly_map"], ["score"], axes=[1, 2], keepdims=0),
        helper.make_node("Greater", ["anomaly_map", "half"], ["over"]),
        helper.make_node("Cast", ["over"], ["mask"], to=TensorProto.UINT8),
    ]
    outputs = [
        helper.make_tensor_value_info("score", TensorProto.FLOAT, [batch]),
        helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [batch, S, S]),
        helper.make_tensor_value_info("mask", TensorProto.UINT8, [batch, S, S]),
    ]
    consts = [
        helper.make_tensor("c255", TensorProto.FLOAT, [], [255.0]),
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
    ]
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if anodet:
        info = fake_info(S, 4 if depth else 3, None if batch == "N" else batch, raw_threshold=1.0, score_scale=2.0)
        helper.set_model_props(model, {"anodet": info.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def parse_config(model_dir):
    return text_format.Parse(
        (model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )


def tensor_by_name(tensors, name):
    return next(t for t in tensors if t.name == name)


def test_onnx_repository_matches_graph(tmp_path):
    model = make_onnx(tmp_path / "model.onnx")
    model_dir = write_repository(model, tmp_path / "repo", name="mvtec", max_batch=8)
    assert model_dir == tmp_path / "repo" / "mvtec"
    assert (model_dir / "1" / "model.onnx").read_bytes() == model.read_bytes()
    cfg = parse_config(model_dir)
    assert cfg.name == "mvtec"
    assert cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size == 8
    assert cfg.HasField("dynamic_batching")
    fp32, u8 = model_config_pb2.TYPE_FP32, model_config_pb2.TYPE_UINT8
    rgb, depth = tensor_by_name(cfg.input, "rgb"), tensor_by_name(cfg.input, "depth")
    assert (rgb.data_type, list(rgb.dims)) == (u8, [S, S, 3])  # batch dim left out
    assert (depth.data_type, list(depth.dims)) == (fp32, [S, S])
    score = tensor_by_name(cfg.output, "score")
    assert (score.data_type, list(score.dims), list(score.reshape.shape)) == (fp32, [1], [])
    assert score.HasField("reshape")
    amap, mask = tensor_by_name(cfg.output, "anomaly_map"), tensor_by_name(cfg.output, "mask")
    assert (amap.data_type, list(amap.dims)) == (fp32, [S, S])
    assert (mask.data_type, list(mask.dims)) == (u8, [S, S])
    group = cfg.instance_group[0]
    assert (group.count, group.kind) == (1, model_config_pb2.ModelInstanceGroup.KIND_AUTO)
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 1000
    assert cfg.version_policy.latest.num_versions == 1
    info = info_from_json((model_dir / "anodet.json").read_text())
    assert info.image_size == S and info.needs_depth and info.score_scale == 2.0
    # the contract travels in the config itself, so a client reads it from the server
    assert info_from_json(cfg.parameters["anodet"].string_value) == info
    assert not cfg.optimization.HasField("execution_accelerators")  # TensorRT EP only as a comment
    assert 'name: "tensorrt"' in (model_dir / "config.pbtxt").read_text()


def test_onnxruntime_flavour_with_tensorrt_accelerator(tmp_path):
    model = make_onnx(tmp_path / "model.onnx")
    cfg = parse_config(write_repository(model, tmp_path / "repo", flavour="onnxruntime",
                                        gpu_accelerator=True, queue_delay_us=500))
    (acc,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == "FP16"
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500


def test_python_flavour_takes_camera_frames(tmp_path):
    model = make_onnx(tmp_path / "b1.onnx", batch=1)  # a fixed batch: the runtime chunks it
    model_dir = write_repository(model, tmp_path / "repo", flavour="python", name="line3",
                                 max_batch=4, instances=2, threads=1)
    cfg = parse_config(model_dir)
    assert cfg.backend == "python" and not cfg.platform and cfg.max_batch_size == 4
    assert list(tensor_by_name(cfg.input, "rgb").dims) == [-1, -1, 3]  # any frame size
    assert list(tensor_by_name(cfg.input, "depth").dims) == [-1, -1]
    assert list(tensor_by_name(cfg.output, "anomaly_map").dims) == [S, S]
    group = cfg.instance_group[0]
    assert (group.count, group.kind) == (2, model_config_pb2.ModelInstanceGroup.KIND_CPU)
    assert cfg.parameters["anodet_frames"].string_value == "camera"
    assert cfg.parameters["onnx_threads"].string_value == "1"
    assert info_from_json(cfg.parameters["anodet"].string_value).batch == 1
    assert (model_dir / "1" / "model.onnx").read_bytes() == model.read_bytes()
    assert "from anodet.serve.triton_model import TritonPythonModel" in (model_dir / "1" / "model.py").read_text()


def test_flavour_must_fit_the_file(tmp_path):
    model = make_onnx(tmp_path / "model.onnx")
    with pytest.raises(AnodetError, match="valid: onnxruntime, tensorrt, python"):
        write_repository(model, tmp_path / "repo", flavour="tf")
    with pytest.raises(AnodetError, match="anodet-export tensorrt"):
        write_repository(model, tmp_path / "repo", flavour="tensorrt")
    assert not (tmp_path / "repo" / "anodet").exists()


def test_rgb_only_and_instances(tmp_path):
    model = make_onnx(tmp_path / "rgb.onnx", depth=False)
    cfg = parse_config(write_repository(model, tmp_path / "repo", max_batch=4, instances=2))
    assert cfg.name == "anodet" and cfg.max_batch_size == 4
    assert [t.name for t in cfg.input] == ["rgb"]
    assert len(cfg.instance_group) == 1
    group = cfg.instance_group[0]
    assert group.count == 2 and group.kind == model_config_pb2.ModelInstanceGroup.KIND_AUTO


def test_fixed_batch_gets_full_dims_and_no_batching(tmp_path):
    model = make_onnx(tmp_path / "b1.onnx", batch=1)
    cfg = parse_config(write_repository(model, tmp_path / "repo"))
    assert cfg.max_batch_size == 0
    assert not cfg.HasField("dynamic_batching")
    assert list(tensor_by_name(cfg.input, "rgb").dims) == [1, S, S, 3]
    score = tensor_by_name(cfg.output, "score")
    assert list(score.dims) == [1] and not score.HasField("reshape")


def test_existing_model_dir_needs_force(tmp_path):
    model = make_onnx(tmp_path / "model.onnx")
    repo = tmp_path / "repo"
    write_repository(model, repo)
    (repo / "anodet" / "stale.txt").write_text("old")
    with pytest.raises(AnodetError, match="already exists"):
        write_repository(model, repo)
    write_repository(model, repo, name="second")  # other models in the repo are fine
    write_repository(model, repo, force=True)
    assert not (repo / "anodet" / "stale.txt").exists()
    assert sorted(p.name for p in repo.iterdir()) == ["anodet", "second"]  # no staging left


def test_non_anodet_onnx_refused(tmp_path):
    model = make_onnx(tmp_path / "plain.onnx", anodet=False)
    with pytest.raises(AnodetError, match="not an anodet export"):
        write_repository(model, tmp_path / "repo")
    assert not (tmp_path / "repo" / "anodet").exists()


def test_bad_arguments(tmp_path):
    model = make_onnx(tmp_path / "model.onnx")
    with pytest.raises(AnodetError, match="model name"):
        write_repository(model, tmp_path / "repo", name="../x")
    with pytest.raises(AnodetError, match=">= 1"):
        write_repository(model, tmp_path / "repo", max_batch=0)
    with pytest.raises(AnodetError, match="expected .onnx, .engine or .plan"):
        write_repository(_copy(model, tmp_path / "model.pt"), tmp_path / "repo")
    with pytest.raises(AnodetError, match="not found"):
        write_repository(tmp_path / "missing.onnx", tmp_path / "repo")


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


def test_engine_repository_from_sidecar(tmp_path):
    """An engine's I/O comes from its sidecar; no TensorRT or GPU needed to write the repo."""
    onnx_model = make_onnx(tmp_path / "model.onnx")
    meta = {p.key: p.value for p in onnx.load(str(onnx_model)).metadata_props}
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan-bytes")
    prof = {"min": [1, S, S, 3], "opt": [1, S, S, 3], "max": [8, S, S, 3]}
    sidecar = {
        "format": "anodet-engine/1",
        "tensorrt_version": "10.3.0",
        "compute_capability": "8.7",
        "gpu_name": "Orin",
        "plan_bytes": 10,
        "onnx_metadata": meta,
        "inputs": [
            {"name": "rgb", "dtype": "uint8", "shape": [-1, S, S, 3], "profile": prof},
            {
                "name": "depth",
                "dtype": "float32",
                "shape": [-1, S, S],
                "profile": {k: v[:3] for k, v in prof.items()},
            },
        ],
        "outputs": [
            {"name": "score", "dtype": "float32", "shape": [-1]},
            {"name": "anomaly_map", "dtype": "float32", "shape": [-1, S, S]},
            {"name": "mask", "dtype": "uint8", "shape": [-1, S, S]},
        ],
    }
    (tmp_path / "model.engine.json").write_text(json.dumps(sidecar))
    model_dir = write_repository(engine, tmp_path / "repo", max_batch=8)
    cfg = parse_config(model_dir)
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 8
    assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert list(tensor_by_name(cfg.input, "depth").dims) == [S, S]
    assert (model_dir / "1" / "model.plan").read_bytes() == b"plan-bytes"
    assert json.loads((model_dir / "1" / "model.plan.json").read_text())["gpu_name"] == "Orin"
    with pytest.raises(AnodetError, match="built for batches 1..8"):
        write_repository(engine, tmp_path / "repo2", max_batch=16)
    with pytest.raises(AnodetError, match="use flavour 'tensorrt'"):
        write_repository(engine, tmp_path / "repo3", flavour="python")


def test_tiny_graph_runs(tmp_path):
    """The fixture graph is a valid model (guards the fixture, not the repository writer)."""
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(
        str(make_onnx(tmp_path / "m.onnx")), providers=["CPUExecutionProvider"]
    )
    rgb = np.full((2, S, S, 3), 255, np.uint8)
    score, amap, mask = sess.run(None, {"rgb": rgb, "depth": np.zeros((2, S, S), np.float32)})
    assert score.shape == (2,) and amap.shape == (2, S, S) and mask.dtype == np.uint8
    assert np.allclose(score, 1.0) and mask.all()


def test_server_side_batches_answer_each_request(tmp_path):
    """The python flavour's execute: one joint run, a bad request answered with its own error."""
    pytest.importorskip("onnxruntime")
    from fake_model import make_fake_model

    from anodet.artifact import OutputError
    from anodet.runtime.backends import OnnxRuntimeBackend
    from anodet.serve.triton_model import prepare_request, serve_batches

    backend = OnnxRuntimeBackend(make_fake_model(tmp_path / "m.onnx", image_size=S), "cpu")
    rng = np.random.default_rng(0)
    camera = rng.integers(0, 255, (2, 20, 24, 3), dtype=np.uint8), rng.uniform(0.4, 0.6, (2, 20, 24)).astype(np.float32)
    bad_depth = camera[1].copy()
    bad_depth[0, 3, 3] = np.nan
    batches = []
    for rgb, depth in (camera, (camera[0], bad_depth)):
        try:
            batches.append(prepare_request(backend, rgb, depth, prepared=False))
        except AnodetError as exc:
            batches.append(exc)
    assert isinstance(batches[1], AnodetError) and "frame 0 of the request" in str(batches[1])
    prepared = batches[0]
    assert prepared[0].shape == (2, S, S, 3) and prepared[1].shape == (2, S, S)
    out = serve_batches(backend, [prepared, batches[1], (prepared[0][:1], prepared[1][:1])])
    assert isinstance(out[1], AnodetError)
    want = backend.predict(*prepared)
    assert np.array_equal(out[0]["anomaly_map"], want["anomaly_map"])
    assert np.array_equal(out[2]["score"], want["score"][:1])

    class Flaky:  # fails on frames whose first pixel is 7, like a model with a NaN output
        info = backend.info

        def predict(self, rgb, depth):
            if (rgb[:, 0, 0, 0] == 7).any():
                raise OutputError("model output holds non-finite scores (NaN or inf)")
            return backend.predict(rgb, depth)

    poisoned = prepared[0].copy()
    poisoned[:, 0, 0, 0] = 7
    out = serve_batches(Flaky(), [prepared, (poisoned, prepared[1])])
    assert np.array_equal(out[0]["score"], want["score"]) and isinstance(out[1], OutputError)
