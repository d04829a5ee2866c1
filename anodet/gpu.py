"""TensorRT and CUDA discovery shared by the engine builder and the runtime. Torch-free.

Imports are lazy: importing this module needs neither TensorRT, cuda-python nor a GPU.
cuda-python's layout changed: ``cuda.bindings.runtime`` exists since cuda-python 12.6.1 (and
11.8.4); the old ``from cuda import cudart`` was deprecated then and removed in 13.0, so
:func:`import_cudart` tries the new path first (JetPack 6 boxes often carry an older 12.x).
Every cuda-python runtime call returns a tuple ``(err, *values)``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from anodet.artifact import read_sidecar, sidecar_problems
from anodet.errors import AnodetError

log = logging.getLogger(__name__)

TRT_MISSING = (
    "TensorRT is not installed: pip install tensorrt cuda-python (NVIDIA's wheels) "
    "or use JetPack's TensorRT on Jetson"
)
CUDA_PYTHON_MISSING = (
    "cuda-python is not installed: pip install cuda-python (NVIDIA's wheel); "
    "the TensorRT backend needs it for GPU memory"
)


class CudaError(AnodetError):
    """A CUDA runtime call failed (out of memory, driver problem, ...)."""


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or AnodetError with install instructions."""
    try:
        import tensorrt as trt
    except ImportError:
        raise AnodetError(TRT_MISSING) from None
    return trt


def import_cudart() -> Any:
    """cuda-python's runtime bindings (``cuda.bindings.runtime``, else ``cuda.cudart``)."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6.1, 13.x
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6.1; removed in 13.0
        except ImportError:
            raise AnodetError(CUDA_PYTHON_MISSING) from None
    return cudart


def _error_name(cudart: Any, err: Any) -> str:
    name, text = (f(err)[1] for f in (cudart.cudaGetErrorName, cudart.cudaGetErrorString))
    return f"{bytes(name).decode()} ({bytes(text).decode()})"


def cuda_check(result: Any, what: str) -> Any:
    """Unpack cuda-python's ``(err, *values)`` tuple; CudaError naming the call on failure."""
    err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if int(err) != 0:
        raise CudaError(f"CUDA call {what} failed: {_error_name(import_cudart(), err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def gpu_properties() -> dict[str, Any]:
    """Name and compute capability of the current CUDA device; AnodetError when there is none."""
    cudart = import_cudart()
    err, *rest = cudart.cudaGetDeviceCount()
    if int(err) != 0 or not rest or not rest[0]:
        why = _error_name(cudart, err) if int(err) != 0 else "the driver reports 0 devices"
        raise AnodetError(
            f"no NVIDIA GPU is available ({why}); TensorRT engines need a "
            "CUDA GPU and driver. Use the onnxruntime backend on machines without one"
        )
    device = cuda_check(cudart.cudaGetDevice(), "cudaGetDevice")
    prop = cuda_check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return {"device": int(device), "name": name.split("\x00", 1)[0].strip(),
            "compute_capability": f"{prop.major}.{prop.minor}"}


def np_dtype(trt: Any, dtype: Any) -> np.dtype:
    """numpy dtype of a TensorRT DataType; AnodetError for BF16/FP8/INT4 (no numpy type)."""
    try:
        return np.dtype(trt.nptype(dtype))
    except TypeError:
        raise AnodetError(
            f"engine tensor type {dtype} has no numpy equivalent; anodet engines use "
            "float32/float16/uint8 I/O"
        ) from None


_LOGGER: Any = None  # TensorRT wants one logger alive for as long as its objects live


def trt_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that forwards TensorRT's messages to Python logging."""
    global _LOGGER
    if _LOGGER is None:
        sev = trt.ILogger.Severity
        # TensorRT's INFO is build chatter: keep it at DEBUG so users see warnings and errors
        levels = {sev.INTERNAL_ERROR: logging.ERROR, sev.ERROR: logging.ERROR, sev.WARNING: logging.WARNING,
                  sev.INFO: logging.DEBUG, sev.VERBOSE: logging.DEBUG}
        trt_log = logging.getLogger("anodet.tensorrt")

        class _Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                trt_log.log(levels.get(severity, logging.INFO), "TensorRT: %s", msg)

        _LOGGER = _Logger()
    return _LOGGER


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_engine_compat(engine_path: str | Path) -> dict[str, Any]:
    """Refuse an engine built by another TensorRT or GPU architecture; return its sidecar."""
    path = Path(engine_path)
    if not path.is_file():
        raise AnodetError(f"engine file not found: {path}")
    sidecar = read_sidecar(path)
    size = path.stat().st_size
    if "plan_bytes" in sidecar and int(sidecar["plan_bytes"]) != size:
        raise AnodetError(
            f"engine {path} does not match its sidecar ({size} bytes, sidecar says "
            f"{sidecar['plan_bytes']}); rebuild with `anodet-export tensorrt`"
        )
    trt = import_tensorrt()
    gpu = gpu_properties()
    problems = sidecar_problems(sidecar, tensorrt_version=trt.__version__,
                                compute_capability=gpu["compute_capability"])
    if problems:
        raise AnodetError(
            f"engine {path} cannot run here: {'; '.join(problems)}. TensorRT engines only run on "
            "the TensorRT version and GPU architecture that built them: rebuild it on this machine "
            "from the ONNX file with `anodet-export tensorrt`"
        )
    if sidecar.get("gpu_name") and sidecar["gpu_name"] != gpu["name"]:
        log.warning("engine %s was built on %s and runs on %s (same compute capability %s); it works "
                    "but may be slower than an engine built here", path, sidecar["gpu_name"], gpu["name"],
                    gpu["compute_capability"])
    return sidecar
