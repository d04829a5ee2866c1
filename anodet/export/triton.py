"""Write a Triton Inference Server model repository for an anodet model, in one of three flavours.

Layout::

    REPO/<name>/config.pbtxt        batching, instances, version policy, the anodet metadata
    REPO/<name>/anodet.json         the same metadata, readable
    REPO/<name>/1/model.onnx        onnxruntime flavour (and the python flavour's model)
    REPO/<name>/1/model.plan        tensorrt flavour (+ model.plan.json, the engine sidecar)
    REPO/<name>/1/model.py          python flavour: anodet.serve.triton_model

Flavours (FLAVOURS):
  onnxruntime  the ONNX graph in Triton's onnxruntime backend (CPU or GPU; the TensorRT
               execution provider is written as a comment, or for real with gpu_accelerator);
  tensorrt     a plan built by ``anodet-export tensorrt`` (GPU only);
  python       anodet's torch-free runtime (ONNX Runtime CPU) in Triton's Python backend, with
               preprocessing: clients send camera-resolution frames of any size.
Config text: :mod:`anodet.export.triton_config`.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from pathlib import Path

from anodet.artifact import (
    ENGINE_SUFFIXES,
    INPUT_RGB,
    METADATA_KEY,
    OUTPUTS,
    info_from_metadata,
    read_onnx_metadata,
    read_sidecar,
    sidecar_path,
)
from anodet.errors import AnodetError
from anodet.export.triton_config import (
    TRT_ACCELERATOR,
    Serving,
    TensorSpec,
    engine_io,
    onnx_io,
    render_config,
)
from anodet.runtime.backends.triton import CAMERA_FRAMES, FRAMES_PARAM, THREADS_PARAM

log = logging.getLogger(__name__)

FLAVOURS = ("onnxruntime", "tensorrt", "python")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MODEL_PY = '''"""Triton Python-backend entry point written by `anodet-export triton --flavour python`.

The model code is anodet's torch-free runtime (anodet.serve.triton_model): install
anodet[onnx] into the Python environment Triton's Python backend runs (the python3 on PATH).
"""

from anodet.serve.triton_model import TritonPythonModel  # noqa: F401
'''
_ORT_COMMENTS = (
    "GPU servers: instances of KIND_AUTO run on the GPU with the CUDA execution provider when",
    "there is one. For the TensorRT execution provider add (or export with --gpu-accelerator):",
    *TRT_ACCELERATOR.splitlines(),
)


def _batch_dim(inputs: list[TensorSpec], outputs: list[TensorSpec], source: Path) -> int:
    """-1 for a dynamic batch, else the fixed batch shared by every tensor."""
    firsts = {t.shape[0] if t.shape else 0 for t in inputs + outputs}
    if len(firsts) != 1 or 0 in firsts:
        raise AnodetError(f"{source} does not have one batch dim shared by all inputs and outputs")
    return firsts.pop()


def _camera_inputs(inputs: list[TensorSpec]) -> list[TensorSpec]:
    """The python flavour's inputs: any frame size (N x H x W x 3 rgb, N x H x W depth)."""
    return [TensorSpec(t.name, t.dtype, (-1,) * (len(t.shape) - 1) + t.shape[-1:])
            if t.name == INPUT_RGB else TensorSpec(t.name, t.dtype, (-1,) * len(t.shape)) for t in inputs]


def _check_flavour(flavour: str | None, model_path: Path) -> str:
    engine = model_path.suffix.lower() in ENGINE_SUFFIXES
    if model_path.suffix.lower() != ".onnx" and not engine:
        raise AnodetError(f"unsupported model file {model_path}; expected .onnx, .engine or .plan")
    flavour = flavour or ("tensorrt" if engine else "onnxruntime")
    if flavour not in FLAVOURS:
        raise AnodetError(f"unknown Triton flavour {flavour!r}; valid: {', '.join(FLAVOURS)}")
    if flavour == "tensorrt" and not engine:
        raise AnodetError(
            f"flavour 'tensorrt' serves a plan: build one from {model_path.name} on the server's "
            "GPU with `anodet-export tensorrt --min-batch 1 --max-batch N` and pass the .engine"
        )
    if flavour != "tensorrt" and engine:
        raise AnodetError(f"{model_path.name} is a TensorRT engine: use flavour 'tensorrt'")
    return flavour


def write_repository(
    model_path: str | Path,
    repo_dir: str | Path,
    *,
    flavour: str | None = None,
    name: str = "anodet",
    max_batch: int = 8,
    instances: int = 1,
    queue_delay_us: int = 1000,
    threads: int | None = None,
    gpu_accelerator: bool = False,
    force: bool = False,
) -> Path:
    """Write ``repo_dir/<name>/`` for an anodet ``.onnx`` or ``.engine``/``.plan``; return that dir.

    flavour: one of FLAVOURS (default: tensorrt for engines, onnxruntime for ONNX); threads: ONNX
    Runtime threads per instance (python flavour); gpu_accelerator: write the TensorRT execution
    provider into an onnxruntime config. Other models in ``repo_dir`` are left alone; an
    existing ``<name>`` dir is only replaced with ``force=True``.
    """
    model_path, repo_dir = Path(model_path), Path(repo_dir)
    if not _NAME.match(name):
        raise AnodetError(f"model name {name!r} must be letters, digits, '_', '-' or '.'")
    if max_batch < 1 or instances < 1 or queue_delay_us < 0 or (threads is not None and threads < 1):
        raise AnodetError(
            f"max_batch, instances and threads must be >= 1 and queue_delay_us >= 0, got "
            f"{max_batch}, {instances}, {threads} and {queue_delay_us}"
        )
    if not model_path.is_file():
        raise AnodetError(f"model file not found: {model_path}")
    flavour = _check_flavour(flavour, model_path)
    if flavour == "tensorrt":
        sidecar = read_sidecar(model_path)
        metadata = sidecar["onnx_metadata"]
        inputs, outputs = engine_io(sidecar)
    else:
        metadata = read_onnx_metadata(model_path)
        inputs, outputs = onnx_io(model_path)
    info = info_from_metadata(metadata, str(model_path))  # refuses non-anodet models
    names_in, names_out = [t.name for t in inputs], [t.name for t in outputs]
    if sorted(names_in) != sorted(info.input_names) or not set(OUTPUTS) <= set(names_out):
        raise AnodetError(
            f"{model_path} has inputs {names_in} and outputs {names_out}; the anodet contract "
            f"needs inputs {list(info.input_names)} and outputs {list(OUTPUTS)}"
        )

    batch = _batch_dim(inputs, outputs, model_path)
    # the python flavour chunks and pads batches itself (anodet.artifact.run_batched)
    max_batch_size = max_batch if batch == -1 or flavour == "python" else 0
    if max_batch_size == 0:
        log.warning("%s has a fixed batch of %d: Triton cannot batch it (max_batch_size 0); "
                    "re-export with a dynamic batch", model_path, batch)
    elif flavour == "tensorrt":
        profile = sidecar["inputs"][0]["profile"]
        lo, hi = int(profile["min"][0]), int(profile["max"][0])
        if lo != 1 or max_batch > hi:
            raise AnodetError(
                f"engine {model_path} was built for batches {lo}..{hi}; Triton sends 1..{max_batch}. "
                f"Rebuild with min_batch=1 and max_batch>={max_batch}, or pass max_batch<={hi}"
            )
    serving = Serving(max_batch_size, queue_delay_us, instances,
                      {"tensorrt": "KIND_GPU", "python": "KIND_CPU"}.get(flavour, "KIND_AUTO"))
    runner, filename, comments, extra = ("platform", "onnxruntime_onnx"), "model.onnx", (), ()
    if flavour == "tensorrt":
        runner, filename = ("platform", "tensorrt_plan"), "model.plan"
    elif flavour == "python":
        runner = ("backend", "python")
        params = {FRAMES_PARAM: CAMERA_FRAMES, **({THREADS_PARAM: str(threads)} if threads else {})}
        serving = Serving(max_batch_size, queue_delay_us, instances, "KIND_CPU", parameters=params)
        inputs = _camera_inputs(inputs)
    elif gpu_accelerator:
        extra = (TRT_ACCELERATOR,)
    else:
        comments = _ORT_COMMENTS
    config = render_config(name, runner, inputs, outputs, serving, source=model_path.name,
                           metadata=metadata[METADATA_KEY], comments=comments, extra=extra)

    model_dir = repo_dir / name
    if model_dir.exists() and not force:
        raise AnodetError(f"{model_dir} already exists; pass force=True (--force) to replace it")
    repo_dir.mkdir(parents=True, exist_ok=True)
    # build next to the target and rename, so Triton never sees a half-written model
    staging = Path(tempfile.mkdtemp(dir=repo_dir, prefix=f".{name}."))
    try:
        (staging / "1").mkdir()
        shutil.copyfile(model_path, staging / "1" / filename)
        if flavour == "tensorrt":  # keeps read_info/check_engine_compat working on the copy
            shutil.copyfile(sidecar_path(model_path), staging / "1" / (filename + ".json"))
        if flavour == "python":
            (staging / "1" / "model.py").write_text(MODEL_PY)
        (staging / "config.pbtxt").write_text(config)
        meta = json.loads(metadata[METADATA_KEY])
        (staging / "anodet.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if model_dir.exists():
            shutil.rmtree(model_dir)
        staging.rename(model_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("wrote Triton model %s (%s flavour, max_batch_size %d)", model_dir, flavour, max_batch_size)
    return model_dir
