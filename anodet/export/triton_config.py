"""Triton ``config.pbtxt`` text for an anodet model: tensors, batching, instances, metadata.

Batching: with ``max_batch_size > 0`` Triton owns the leading batch dim, so ``dims`` leave it
out, and the batch-only ``score`` output is declared ``dims: [ 1 ]`` with
``reshape: { shape: [ ] }`` (Triton needs non-empty dims). A model exported with a fixed batch
(for example 1) cannot be batched by Triton: it gets ``max_batch_size: 0``, full dims and no
dynamic batcher, and clients send exactly that batch.

The anodet metadata (:class:`anodet.artifact.ModelInfo` JSON) goes into the config's
``parameters`` under the artifact's key, so a client reads the contract from the server itself
(``anodet.runtime.backends.triton``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anodet
from anodet.artifact import METADATA_KEY
from anodet.errors import AnodetError

TRITON_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
}
# The TensorRT execution provider of Triton's onnxruntime backend, for GPU servers.
TRT_ACCELERATOR = (
    "optimization { execution_accelerators { gpu_execution_accelerator: [ {\n"
    '  name: "tensorrt"\n'
    '  parameters { key: "precision_mode" value: "FP16" }\n'
    '  parameters { key: "max_workspace_size_bytes" value: "4294967296" }\n'
    '  parameters { key: "trt_engine_cache_enable" value: "1" }\n'
    "} ] } }"
)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int, ...]  # -1 = dynamic


@dataclass(frozen=True)
class Serving:
    """How Triton serves the model: batching, queueing, instances, versions, parameters."""

    max_batch_size: int
    queue_delay_us: int = 1000  # how long the dynamic batcher waits to fill a batch
    instances: int = 1
    kind: str = "KIND_AUTO"  # KIND_CPU, KIND_GPU or KIND_AUTO (GPU when there is one)
    versions: int = 1  # serve the newest N versions under <name>/
    parameters: dict[str, str] = field(default_factory=dict)


def pbtxt_string(text: str) -> str:
    """``text`` as a protobuf text-format string literal (ASCII JSON needs only two escapes)."""
    if not text.isascii() or "\n" in text:
        raise AnodetError("Triton config strings must be single-line ASCII")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tensor_block(spec: TensorSpec, batched: bool) -> str:
    if spec.dtype not in TRITON_TYPES:
        raise AnodetError(f"tensor {spec.name} has dtype {spec.dtype}, which Triton cannot serve")
    dims = list(spec.shape[1:] if batched else spec.shape)
    lines = ["  {", f'    name: "{spec.name}"', f"    data_type: {TRITON_TYPES[spec.dtype]}"]
    if dims:
        lines.append(f"    dims: [ {', '.join(str(d) for d in dims)} ]")
    else:  # a batch-only tensor such as score [N]
        lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    return "\n".join(lines + ["  }"])


def render_config(
    name: str,
    runner: tuple[str, str],
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    serving: Serving,
    *,
    source: str,
    metadata: str,
    comments: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
) -> str:
    """The config.pbtxt text (protobuf text format of Triton's ModelConfig).

    runner: ("platform", "onnxruntime_onnx") or ("backend", "python"); metadata: the anodet
    JSON; comments: lines written as ``#`` comments at the end; extra: config blocks as text.
    """
    batched = serving.max_batch_size > 0
    parts = [
        f"# Written by anodet {anodet.__version__} from {source}.",
        "# The anodet contract (preprocessing, threshold, I/O) is the 'anodet' parameter below",
        "# and anodet.json beside this file.",
        f'name: "{name}"',
        f'{runner[0]}: "{runner[1]}"',
        f"max_batch_size: {serving.max_batch_size}",
        "input [\n" + ",\n".join(tensor_block(t, batched) for t in inputs) + "\n]",
        "output [\n" + ",\n".join(tensor_block(t, batched) for t in outputs) + "\n]",
        f"version_policy: {{ latest: {{ num_versions: {serving.versions} }} }}",
        f"instance_group [\n  {{\n    count: {serving.instances}\n    kind: {serving.kind}\n  }}\n]",
    ]
    if batched:
        parts.append(
            f"dynamic_batching {{\n  max_queue_delay_microseconds: {serving.queue_delay_us}\n}}"
        )
    params = {METADATA_KEY: metadata, **serving.parameters}
    for key, value in params.items():
        parts.append(
            f"parameters {{\n  key: {pbtxt_string(key)}\n"
            f"  value: {{ string_value: {pbtxt_string(value)} }}\n}}"
        )
    parts += list(extra)
    parts += [f"# {line}" if line else "#" for line in comments]
    return "\n".join(parts) + "\n"


def onnx_io(path: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Graph inputs (initializers excluded) and outputs of an ONNX file."""
    try:
        import onnx
        from onnx import helper
    except ImportError:
        raise AnodetError("reading ONNX inputs and outputs needs onnx: pip install onnx") from None
    model = onnx.load(str(path), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise AnodetError(
            f"{path} keeps its weights in external files; export it as a single .onnx file"
        )
    weights = {t.name for t in model.graph.initializer}

    def spec(value: Any) -> TensorSpec:
        tt = value.type.tensor_type
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tt.shape.dim
        )
        return TensorSpec(value.name, helper.tensor_dtype_to_np_dtype(tt.elem_type).name, dims)

    return (
        [spec(v) for v in model.graph.input if v.name not in weights],
        [spec(v) for v in model.graph.output],
    )


def engine_io(sidecar: dict[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """I/O of an engine from its sidecar (the plan itself needs TensorRT and a GPU to read)."""

    def spec(raw: dict[str, Any]) -> TensorSpec:
        return TensorSpec(raw["name"], raw["dtype"], tuple(int(d) for d in raw["shape"]))

    return [spec(t) for t in sidecar["inputs"]], [spec(t) for t in sidecar["outputs"]]
