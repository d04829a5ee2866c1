"""Write a Triton Inference Server model repository for an anodet ONNX model or TensorRT engine.

Layout::

    REPO/<name>/config.pbtxt
    REPO/<name>/anodet.json          the anodet metadata: threshold, preprocessing, I/O
    REPO/<name>/1/model.onnx         or model.plan (+ model.plan.json, the engine sidecar)

Batching: with ``max_batch_size > 0`` Triton owns the leading batch dim, so ``dims`` leave it
out, and the batch-only ``score`` output is declared ``dims: [ 1 ]`` with
``reshape: { shape: [ ] }`` (Triton needs non-empty dims). A model exported with a fixed batch
(for example 1) cannot be batched by Triton: it gets ``max_batch_size: 0``, full dims and no
dynamic batcher, and clients send exactly that batch. Re-export with a dynamic batch to let
Triton batch requests.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anodet
from anodet.artifact import (
    ENGINE_SUFFIXES,
    METADATA_KEY,
    OUTPUTS,
    info_from_metadata,
    read_onnx_metadata,
    read_sidecar,
    sidecar_path,
)
from anodet.errors import AnodetError

log = logging.getLogger(__name__)

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
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int, ...]  # -1 = dynamic


def onnx_io(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
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


def _tensor_block(spec: TensorSpec, batched: bool) -> str:
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
    platform: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    *,
    max_batch_size: int,
    instances: int,
    source: str,
) -> str:
    """The config.pbtxt text (protobuf text format of Triton's ModelConfig)."""
    batched = max_batch_size > 0
    parts = [
        f"# Written by anodet {anodet.__version__} from {source}.",
        "# Preprocessing, decision threshold and score meaning: anodet.json beside this file.",
        f'name: "{name}"',
        f'platform: "{platform}"',
        f"max_batch_size: {max_batch_size}",
        "input [\n" + ",\n".join(_tensor_block(t, batched) for t in inputs) + "\n]",
        "output [\n" + ",\n".join(_tensor_block(t, batched) for t in outputs) + "\n]",
    ]
    if batched:
        parts.append("dynamic_batching { }")
    # A plan only runs on a GPU. ONNX Runtime runs anywhere: KIND_AUTO lets Triton pick the GPU
    # when there is one and the CPU otherwise (Triton's default when no group is given).
    kind = "KIND_GPU" if platform == "tensorrt_plan" else "KIND_AUTO"
    if kind == "KIND_GPU" or instances > 1:
        parts.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]")
    return "\n".join(parts) + "\n"


def _batch_dim(inputs: list[TensorSpec], outputs: list[TensorSpec], source: Path) -> int:
    """-1 for a dynamic batch, else the fixed batch shared by every tensor."""
    firsts = {t.shape[0] if t.shape else 0 for t in inputs + outputs}
    if len(firsts) != 1 or 0 in firsts:
        raise AnodetError(f"{source} does not have one batch dim shared by all inputs and outputs")
    return firsts.pop()


def write_repository(
    model_path: str | Path,
    repo_dir: str | Path,
    *,
    name: str = "anodet",
    max_batch: int = 8,
    instances: int = 1,
    force: bool = False,
) -> Path:
    """Write ``repo_dir/<name>/`` for an anodet ``.onnx`` or ``.engine``/``.plan``; return that dir.

    Other models already in ``repo_dir`` are left alone; an existing ``<name>`` dir is only
    replaced with ``force=True``.
    """
    model_path, repo_dir = Path(model_path), Path(repo_dir)
    if not _NAME.match(name):
        raise AnodetError(f"model name {name!r} must be letters, digits, '_', '-' or '.'")
    if max_batch < 1 or instances < 1:
        raise AnodetError(f"max_batch and instances must be >= 1, got {max_batch} and {instances}")
    if not model_path.is_file():
        raise AnodetError(f"model file not found: {model_path}")
    suffix = model_path.suffix.lower()
    if suffix == ".onnx":
        metadata = read_onnx_metadata(model_path)
        inputs, outputs = onnx_io(model_path)
        platform, filename = "onnxruntime_onnx", "model.onnx"
    elif suffix in ENGINE_SUFFIXES:
        sidecar = read_sidecar(model_path)
        metadata = sidecar["onnx_metadata"]
        inputs, outputs = engine_io(sidecar)
        platform, filename = "tensorrt_plan", "model.plan"
    else:
        raise AnodetError(f"unsupported model file {model_path}; expected .onnx, .engine or .plan")
    info = info_from_metadata(metadata, str(model_path))  # refuses non-anodet models
    names_in, names_out = [t.name for t in inputs], [t.name for t in outputs]
    if sorted(names_in) != sorted(info.input_names) or not set(OUTPUTS) <= set(names_out):
        raise AnodetError(
            f"{model_path} has inputs {names_in} and outputs {names_out}; the anodet contract "
            f"needs inputs {list(info.input_names)} and outputs {list(OUTPUTS)}"
        )

    batch = _batch_dim(inputs, outputs, model_path)
    max_batch_size = max_batch if batch == -1 else 0
    if batch != -1:
        log.warning(
            "%s has a fixed batch of %d: Triton cannot batch it (max_batch_size 0)",
            model_path,
            batch,
        )
    elif platform == "tensorrt_plan":
        profile = sidecar["inputs"][0]["profile"]
        lo, hi = int(profile["min"][0]), int(profile["max"][0])
        if lo != 1 or max_batch > hi:
            raise AnodetError(
                f"engine {model_path} was built for batches {lo}..{hi}; "
                f"Triton sends 1..{max_batch}. "
                f"Rebuild with min_batch=1 and max_batch>={max_batch}, or pass max_batch<={hi}"
            )

    model_dir = repo_dir / name
    if model_dir.exists() and not force:
        raise AnodetError(f"{model_dir} already exists; pass force=True (--force) to replace it")
    repo_dir.mkdir(parents=True, exist_ok=True)
    # build next to the target and rename, so Triton never sees a half-written model
    staging = Path(tempfile.mkdtemp(dir=repo_dir, prefix=f".{name}."))
    try:
        (staging / "1").mkdir()
        shutil.copyfile(model_path, staging / "1" / filename)
        if platform == "tensorrt_plan":  # keeps read_info/check_engine_compat working on the copy
            shutil.copyfile(sidecar_path(model_path), staging / "1" / (filename + ".json"))
        config = render_config(
            name,
            platform,
            inputs,
            outputs,
            max_batch_size=max_batch_size,
            instances=instances,
            source=model_path.name,
        )
        (staging / "config.pbtxt").write_text(config)
        meta = json.loads(metadata[METADATA_KEY])
        (staging / "anodet.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if model_dir.exists():
            shutil.rmtree(model_dir)
        staging.rename(model_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("wrote Triton model %s (%s, max_batch_size %d)", model_dir, platform, max_batch_size)
    return model_dir
