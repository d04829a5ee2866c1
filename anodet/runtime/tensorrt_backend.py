"""TensorRT inference backend for exported engines. Torch-free; imports TensorRT lazily.

An engine (``model.engine``) is a raw TensorRT plan; its JSON sidecar (``model.engine.json``,
written by :func:`anodet.export.tensorrt.build_engine`) records the TensorRT version and GPU
that built it plus the ONNX metadata. Plans only run on the TensorRT version and GPU
architecture that built them, so the sidecar is checked before the plan is deserialized.

Buffers: one CUDA stream, pinned host memory and device memory per I/O tensor, sized for the
largest batch of the engine's optimization profile (cuda-python, as NVIDIA's own samples do).
A backend is not thread-safe: use one per thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anodet.artifact import (
    INPUT_DEPTH,
    INPUT_RGB,
    OUTPUT_MAP,
    OUTPUT_MASK,
    OUTPUT_SCORE,
    OUTPUTS,
    ModelInfo,
    read_info,
)
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
SIDECAR_FORMAT = "anodet-engine/1"
_SIDECAR_KEYS = ("tensorrt_version", "compute_capability", "onnx_metadata", "inputs", "outputs")


class CudaError(AnodetError):
    """A CUDA runtime call failed (out of memory, driver problem, ...)."""


def import_tensorrt() -> Any:
    """Return the ``tensorrt`` module or raise AnodetError with install instructions."""
    try:
        import tensorrt as trt
    except ImportError:
        raise AnodetError(TRT_MISSING) from None
    return trt


def import_cudart() -> Any:
    """Return cuda-python's runtime bindings (``cuda.bindings.runtime``)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        raise AnodetError(CUDA_PYTHON_MISSING) from None
    return cudart


def _error_name(cudart: Any, err: Any) -> str:
    name, text = (f(err)[1] for f in (cudart.cudaGetErrorName, cudart.cudaGetErrorString))
    return f"{bytes(name).decode()} ({bytes(text).decode()})"


def cuda_check(result: Any, what: str) -> Any:
    """Unpack cuda-python's ``(err, *values)`` tuple; raise CudaError naming the call on failure."""
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
        raise AnodetError(
            f"no NVIDIA GPU is available ({_error_name(cudart, err)}); TensorRT engines need a "
            "CUDA GPU and driver. Use the onnxruntime backend on machines without one"
        )
    device = cuda_check(cudart.cudaGetDevice(), "cudaGetDevice")
    prop = cuda_check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return {
        "device": int(device),
        "name": name.rstrip("\x00").strip(),
        "compute_capability": f"{prop.major}.{prop.minor}",
    }


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.json``, the rule ``artifact.read_info`` uses."""
    path = Path(engine_path)
    return path.with_name(path.name + ".json")


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    """Load an engine's JSON sidecar; AnodetError when it is missing or corrupt."""
    side = sidecar_path(engine_path)
    if not side.is_file():
        raise AnodetError(
            f"engine sidecar {side} is missing; rebuild with `anodet-export tensorrt`"
        )
    try:
        data = json.loads(side.read_text())
        if not isinstance(data, dict) or any(k not in data for k in _SIDECAR_KEYS):
            raise ValueError("missing keys")
    except (ValueError, OSError):
        raise AnodetError(
            f"engine sidecar {side} is corrupt (expected {', '.join(_SIDECAR_KEYS)}); "
            "rebuild with `anodet-export tensorrt`"
        ) from None
    return data


def compat_problems(
    sidecar: dict[str, Any], *, tensorrt_version: str, compute_capability: str
) -> list[str]:
    """Why an engine described by ``sidecar`` cannot run here (empty list: it can).

    Plans are tied to the exact TensorRT version and to the GPU's compute capability.
    """
    problems = []
    built = str(sidecar.get("tensorrt_version"))
    if built != str(tensorrt_version):
        problems.append(
            f"it was built with TensorRT {built} but TensorRT {tensorrt_version} is installed"
        )
    cc = str(sidecar.get("compute_capability"))
    if cc != str(compute_capability):
        gpu = sidecar.get("gpu_name", "another GPU")
        problems.append(
            f"it was built for compute capability {cc} ({gpu}) "
            f"but this GPU has {compute_capability}"
        )
    return problems


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
    problems = compat_problems(
        sidecar, tensorrt_version=trt.__version__, compute_capability=gpu["compute_capability"]
    )
    if problems:
        raise AnodetError(
            f"engine {path} cannot run here: {'; '.join(problems)}. "
            "TensorRT engines only run on the TensorRT version and GPU architecture that built "
            "them: rebuild it on this machine from the ONNX file with `anodet-export tensorrt`"
        )
    if sidecar.get("gpu_name") and sidecar["gpu_name"] != gpu["name"]:
        log.warning(
            "engine %s was built on %s and runs on %s (same compute capability %s); it works "
            "but may be slower than an engine built here",
            path,
            sidecar["gpu_name"],
            gpu["name"],
            gpu["compute_capability"],
        )
    return sidecar


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_LOGGER: Any = None  # TensorRT wants one logger alive for as long as its objects live


def trt_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that forwards TensorRT's messages to Python logging."""
    global _LOGGER
    if _LOGGER is None:
        sev = trt.ILogger.Severity
        # TensorRT's INFO is build chatter: keep it at DEBUG so users see warnings and errors
        levels = {
            sev.INTERNAL_ERROR: logging.ERROR,
            sev.ERROR: logging.ERROR,
            sev.WARNING: logging.WARNING,
            sev.INFO: logging.DEBUG,
            sev.VERBOSE: logging.DEBUG,
        }
        trt_log = logging.getLogger("anodet.tensorrt")

        class _Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                trt_log.log(levels.get(severity, logging.INFO), "TensorRT: %s", msg)

        _LOGGER = _Logger()
    return _LOGGER


def check_batch(info: ModelInfo, rgb: np.ndarray, depth: np.ndarray | None) -> int:
    """Validate a batch against the model contract; return its size N."""
    s = info.image_size
    if (
        not isinstance(rgb, np.ndarray)
        or rgb.dtype != np.uint8
        or rgb.ndim != 4
        or rgb.shape[1:] != (s, s, 3)
    ):
        got = f"{getattr(rgb, 'dtype', type(rgb).__name__)} {getattr(rgb, 'shape', '')}"
        raise AnodetError(f"rgb must be uint8 N x {s} x {s} x 3 (RGB order), got {got}")
    n = rgb.shape[0]
    if info.needs_depth:
        if depth is None:
            raise AnodetError("this model needs depth: pass float32 N x S x S depth in metres")
        if (
            not isinstance(depth, np.ndarray)
            or depth.dtype != np.float32
            or depth.shape != (n, s, s)
        ):
            got = f"{getattr(depth, 'dtype', type(depth).__name__)} {getattr(depth, 'shape', '')}"
            raise AnodetError(
                f"depth must be float32 {n} x {s} x {s} (metres, 0 = missing), got {got}"
            )
    elif depth is not None:
        raise AnodetError("this model is RGB-only: pass depth=None")
    return n


@dataclass
class _Buffer:
    """Pinned host + device memory for one I/O tensor, sized for the profile's max batch."""

    name: str
    is_input: bool
    dtype: np.dtype
    nbytes: int
    host_ptr: int = 0
    device_ptr: int = 0

    def host_view(self, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        raw = (ctypes.c_uint8 * self.nbytes).from_address(self.host_ptr)
        return np.frombuffer(raw, dtype=self.dtype, count=count).reshape(shape)


class TensorRTBackend:
    """Run an anodet TensorRT engine: ``predict(rgb, depth)`` -> score, anomaly_map, mask."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path) -> None:
        self._closed = True
        self._buffers: dict[str, _Buffer] = {}
        self._stream: Any = None
        path = Path(engine_path)
        self._trt = import_tensorrt()
        self._cudart = import_cudart()
        self.sidecar = check_engine_compat(path)
        self.info: ModelInfo = read_info(path)
        self.path = path
        self._closed = False
        try:
            self._load(path)
        except BaseException:
            self.close()
            raise

    def _load(self, path: Path) -> None:
        trt, cudart = self._trt, self._cudart
        self._runtime = trt.Runtime(trt_logger(trt))
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise AnodetError(
                f"TensorRT could not deserialize {path} (see the TensorRT errors logged above)"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise AnodetError(f"TensorRT could not create an execution context for {path}")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if sorted(inputs) != sorted(self.info.input_names) or not set(OUTPUTS) <= set(names):
            raise AnodetError(
                f"engine {path} has tensors {names}; expected inputs {list(self.info.input_names)} "
                f"and outputs {list(OUTPUTS)}"
            )
        rgb_shape = tuple(self._engine.get_tensor_shape(INPUT_RGB))
        if rgb_shape[0] == -1:  # dynamic batch: the range comes from optimization profile 0
            mins, _, maxs = self._engine.get_tensor_profile_shape(INPUT_RGB, 0)
            self.min_batch, self.max_batch = int(next(iter(mins))), int(next(iter(maxs)))
        else:
            self.min_batch = self.max_batch = int(rgb_shape[0])
        self._stream = cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        for n in names:
            shape = tuple(self._engine.get_tensor_shape(n))
            full = (self.max_batch,) + tuple(int(d) for d in shape[1:])
            if any(d < 0 for d in full):
                raise AnodetError(f"engine tensor {n} has a dynamic non-batch dimension {shape}")
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(n)))
            buf = _Buffer(n, n in inputs, dtype, int(np.prod(full)) * dtype.itemsize)
            self._buffers[n] = buf  # registered first so close() frees a half-made buffer
            buf.host_ptr = cuda_check(cudart.cudaMallocHost(buf.nbytes), f"cudaMallocHost({n})")
            buf.device_ptr = cuda_check(cudart.cudaMalloc(buf.nbytes), f"cudaMalloc({n})")
        log.info("TensorRT engine %s loaded (batch %d..%d)", path, self.min_batch, self.max_batch)

    def predict(self, rgb: np.ndarray, depth: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Run a batch; batches above the profile's max are chunked, below its min padded."""
        if self._closed:
            raise AnodetError("this TensorRTBackend is closed")
        n = check_batch(self.info, rgb, depth)
        parts = []
        for start in range(0, n, self.max_batch):
            stop = min(n, start + self.max_batch)
            feeds = {INPUT_RGB: rgb[start:stop]}
            if self.info.needs_depth:
                feeds[INPUT_DEPTH] = depth[start:stop]
            parts.append(self._run(feeds, stop - start))
        s = self.info.image_size
        return {
            "score": np.concatenate([p[OUTPUT_SCORE] for p in parts]).astype(np.float32).reshape(n),
            "anomaly_map": np.concatenate([p[OUTPUT_MAP] for p in parts])
            .astype(np.float32)
            .reshape(n, s, s),
            "mask": np.concatenate([p[OUTPUT_MASK] for p in parts])
            .astype(np.uint8)
            .reshape(n, s, s),
        }

    def _run(self, feeds: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        cudart, ctx, stream = self._cudart, self._context, self._stream
        kind = cudart.cudaMemcpyKind
        run_n = max(n, self.min_batch)
        for name, arr in feeds.items():
            if run_n > n:  # an engine built with min_batch > 1: repeat the last frame
                arr = np.concatenate([arr, np.repeat(arr[-1:], run_n - n, axis=0)])
            if ctx.set_input_shape(name, tuple(arr.shape)) is False:
                raise AnodetError(f"engine rejected input shape {arr.shape} for {name}")
            view = self._buffers[name].host_view(arr.shape)
            np.copyto(view, arr, casting="same_kind")  # same_kind: an FP16-input engine
            buf = self._buffers[name]
            cuda_check(
                cudart.cudaMemcpyAsync(
                    buf.device_ptr, buf.host_ptr, view.nbytes, kind.cudaMemcpyHostToDevice, stream
                ),
                f"cudaMemcpyAsync({name}, host to device)",
            )
        for buf in self._buffers.values():
            ctx.set_tensor_address(buf.name, buf.device_ptr)
        if not ctx.execute_async_v3(int(stream)):
            raise AnodetError("TensorRT inference failed (see the TensorRT errors logged above)")
        shapes = {}
        for buf in self._buffers.values():
            if buf.is_input:
                continue
            shapes[buf.name] = tuple(int(d) for d in ctx.get_tensor_shape(buf.name))
            nbytes = int(np.prod(shapes[buf.name])) * buf.dtype.itemsize
            cuda_check(
                cudart.cudaMemcpyAsync(
                    buf.host_ptr, buf.device_ptr, nbytes, kind.cudaMemcpyDeviceToHost, stream
                ),
                f"cudaMemcpyAsync({buf.name}, device to host)",
            )
        cuda_check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        # copy out of the pinned buffers: the next call reuses them
        return {k: self._buffers[k].host_view(shape)[:n].copy() for k, shape in shapes.items()}

    def close(self) -> None:
        """Free GPU and pinned memory; safe to call twice."""
        if self._closed and not self._buffers and self._stream is None:
            return
        self._closed = True
        cudart = self._cudart
        if self._stream is not None:
            _quiet(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        # the context and engine go before the memory and the runtime they came from
        self._context = self._engine = self._runtime = None
        for buf in self._buffers.values():
            if buf.device_ptr:
                _quiet(cudart.cudaFree(buf.device_ptr), "cudaFree")
            if buf.host_ptr:
                _quiet(cudart.cudaFreeHost(buf.host_ptr), "cudaFreeHost")
        self._buffers = {}
        if self._stream is not None:
            _quiet(cudart.cudaStreamDestroy(self._stream), "cudaStreamDestroy")
            self._stream = None

    def __enter__(self) -> TensorRTBackend:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: modules may be gone
            self.close()


def _quiet(result: Any, what: str) -> None:
    """Cleanup must not raise: log a failed CUDA call instead."""
    try:
        cuda_check(result, what)
    except CudaError as exc:
        log.warning("%s", exc)
