"""Build a TensorRT engine from an anodet ONNX export. Torch-free; imports TensorRT lazily.

The engine file holds the raw TensorRT plan only (Triton and trtexec refuse anything else);
``<engine>.json`` beside it records how and where it was built plus the ONNX metadata, so
``anodet.artifact.read_info(engine)`` and :func:`anodet.gpu.check_engine_compat` work on it.

FP16: TensorRT 10.x (JetPack 6) lowers an FP32 graph with ``BuilderFlag.FP16``. TensorRT 11
removed that flag: networks are strongly typed, so the ONNX graph itself must already be FP16
(``anodet-export onnx --fp16``, metadata ``precision: fp16``). An FP16 graph is built strongly
typed on both versions, so TensorRT keeps the types the export chose.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from anodet.artifact import (
    OUTPUTS,
    SIDECAR_FORMAT,
    info_from_metadata,
    read_onnx_metadata,
    sidecar_path,
)
from anodet.errors import AnodetError
from anodet.gpu import check_engine_compat, gpu_properties, import_tensorrt, sha256_file, trt_logger

__all__ = ["build_engine", "check_engine_compat", "choose_precision", "plan_profile"]

log = logging.getLogger(__name__)
Shape = tuple[int, ...]


def choose_precision(trt_major: int, fp16: bool, onnx_precision: str) -> dict[str, Any]:
    """Decide builder flags: ``{"precision", "fp16_flag", "strongly_typed"}``."""
    if onnx_precision == "fp16":
        if not fp16:
            log.info("the ONNX graph is FP16: the engine follows its types (fp16=False ignored)")
        return {"precision": "fp16", "fp16_flag": False, "strongly_typed": True}
    if not fp16:
        return {"precision": "fp32", "fp16_flag": False, "strongly_typed": trt_major >= 11}
    if trt_major >= 11:
        raise AnodetError(
            f"TensorRT {trt_major}.x builds strongly typed networks and has no FP16 builder flag, "
            "so FP16 must already be in the ONNX graph, and this one is FP32. Export an FP16 "
            "graph with `anodet-export onnx --fp16` and build from it, or build an FP32 engine "
            "(fp16=False / --fp32)"
        )
    return {"precision": "fp16", "fp16_flag": True, "strongly_typed": False}


def plan_profile(
    input_shapes: dict[str, Shape], min_batch: int, opt_batch: int, max_batch: int
) -> tuple[dict[str, tuple[Shape, Shape, Shape]], dict[str, int]]:
    """Optimization-profile shapes over the batch dim of every input; a fixed batch is kept."""
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise AnodetError(
            f"batch range must satisfy 1 <= min <= opt <= max, got min={min_batch} "
            f"opt={opt_batch} max={max_batch}"
        )
    for name, shape in input_shapes.items():  # before shape[0]: a scalar input has none
        if len(shape) < 1 or any(d <= 0 for d in shape[1:]):
            raise AnodetError(
                f"ONNX input {name} has shape {list(shape)}: only the batch dim may be dynamic"
            )
    firsts = {shape[0] for shape in input_shapes.values()}
    if len(firsts) != 1:
        raise AnodetError(f"ONNX inputs disagree on the batch dim: {input_shapes}")
    batch = firsts.pop()
    if batch > 0:  # exported with a fixed batch: the engine can only run that batch
        log.info("the ONNX graph has a fixed batch of %d; the engine runs only that batch", batch)
        min_batch = opt_batch = max_batch = batch
    shapes = {
        name: tuple((b,) + tuple(shape[1:]) for b in (min_batch, opt_batch, max_batch))
        for name, shape in input_shapes.items()
    }
    return shapes, {"min": min_batch, "opt": opt_batch, "max": max_batch}


def _np_dtype(trt: Any, dtype: Any) -> str:
    try:
        return np.dtype(trt.nptype(dtype)).name
    except TypeError:  # BF16/FP8/INT4 have no numpy type
        return str(dtype)


def _write_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _use_timing_cache(config: Any, path: Path) -> None:
    """Load a saved timing cache; one from another GPU/TensorRT (or damaged) is replaced."""
    blob = path.read_bytes() if path.is_file() else b""
    cache = None
    if blob:
        try:
            cache = config.create_timing_cache(blob)
        except Exception:  # noqa: BLE001 - a damaged cache file: TensorRT's binding raises its own types
            cache = None
    # ignore_mismatch=False: tactics timed on another GPU would be wrong here
    if cache is None or not config.set_timing_cache(cache, False):
        if blob:
            log.warning(
                "timing cache %s does not match this GPU/TensorRT; starting a new one", path
            )
        config.set_timing_cache(config.create_timing_cache(b""), False)


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    fp16: bool = True,
    min_batch: int = 1,
    opt_batch: int = 1,
    max_batch: int = 8,
    workspace_gb: float = 4.0,
    timing_cache: str | Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Build ``engine_path`` (raw plan) and its ``.json`` sidecar from an anodet ONNX file.

    Returns the sidecar dict. Takes minutes on first build; a ``timing_cache`` file is loaded
    when present and saved afterwards, which makes rebuilds on the same GPU much faster.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    metadata = read_onnx_metadata(onnx_path)
    info = info_from_metadata(metadata, str(onnx_path))  # refuse non-anodet graphs up front
    if engine_path.exists() and not force:
        raise AnodetError(
            f"{engine_path} already exists; pass force=True (--force) to overwrite it"
        )
    if workspace_gb <= 0:
        raise AnodetError(f"workspace_gb must be > 0, got {workspace_gb}")
    trt = import_tensorrt()
    gpu = gpu_properties()
    major = int(trt.__version__.split(".")[0])
    mode = choose_precision(major, fp16, info.precision)

    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if mode["strongly_typed"] and major < 11:  # 11.x is always strongly typed; the flag is ignored
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise AnodetError(f"TensorRT {trt.__version__} could not parse {onnx_path}: {errors}")
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    names_in, names_out = [t.name for t in inputs], [t.name for t in outputs]
    if sorted(names_in) != sorted(info.input_names) or not set(OUTPUTS) <= set(names_out):
        raise AnodetError(
            f"{onnx_path} has inputs {names_in} and outputs {names_out}; the anodet contract "
            f"needs inputs {list(info.input_names)} and outputs {list(OUTPUTS)}"
        )
    shapes, batch = plan_profile(
        {t.name: tuple(int(d) for d in t.shape) for t in inputs}, min_batch, opt_batch, max_batch
    )

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if mode["fp16_flag"]:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else None
    if cache_path is not None:
        _use_timing_cache(config, cache_path)

    log.info(
        "building %s TensorRT %s engine from %s on %s (this takes minutes)",
        mode["precision"],
        trt.__version__,
        onnx_path,
        gpu["name"],
    )
    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise AnodetError(
            f"TensorRT failed to build an engine from {onnx_path} (see its errors logged above)"
        )
    seconds = time.perf_counter() - start
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(engine_path, memoryview(plan))
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(cache_path, memoryview(config.get_timing_cache().serialize()))

    sidecar = {
        "format": SIDECAR_FORMAT,
        "tensorrt_version": trt.__version__,
        "gpu_name": gpu["name"],
        "compute_capability": gpu["compute_capability"],
        "onnx_file": onnx_path.name,
        "onnx_sha256": sha256_file(onnx_path),
        "plan_bytes": engine_path.stat().st_size,
        "plan_sha256": sha256_file(engine_path),
        "precision": mode["precision"],
        "fp16_builder_flag": mode["fp16_flag"],
        "strongly_typed": mode["strongly_typed"],
        "workspace_gb": workspace_gb,
        "batch": batch,
        "inputs": [
            {
                "name": t.name,
                "dtype": _np_dtype(trt, t.dtype),
                "shape": [int(d) for d in t.shape],
                "profile": dict(zip(("min", "opt", "max"), ([*s] for s in shapes[t.name]))),
            }
            for t in inputs
        ],
        "outputs": [
            {"name": t.name, "dtype": _np_dtype(trt, t.dtype), "shape": [int(d) for d in t.shape]}
            for t in outputs
        ],
        "build_seconds": round(seconds, 1),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "onnx_metadata": metadata,
    }
    _write_atomic(sidecar_path(engine_path), json.dumps(sidecar, indent=2).encode())
    log.info(
        "wrote %s (%.1f MB, built in %.0f s) and its sidecar",
        engine_path,
        sidecar["plan_bytes"] / 1e6,
        seconds,
    )
    return sidecar
