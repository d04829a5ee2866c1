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
import hashlib
import json
import logging
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
from anodet.runtime.cuda_buffers import (  # re-exported: callers import them from here
    CUDA_PYTHON_MISSING,  # noqa: F401
    CudaError,  # noqa: F401
    IOBuffer,
    cuda_check,
    gpu_properties,
    import_cudart,
    quiet,
    stream_handle,
)

log = logging.getLogger(__name__)

TRT_MISSING = (
    "TensorRT is not installed: pip install tensorrt cuda-python (NVIDIA's wheels) "
    "or use JetPack's TensorRT on Jetson"
)
SIDECAR_FORMAT = "anodet-engine/1"
_SIDECAR_KEYS = ("tensorrt_version", "compute_capability", "onnx_metadata", "inputs", "outputs")


def import_tensorrt() -> Any:
    """Return the ``tensorrt`` module or raise AnodetError with install instructions."""
    try:
        import tensorrt as trt
    except ImportError:
        raise AnodetError(TRT_MISSING) from None
    return trt


def np_dtype(trt: Any, dtype: Any) -> np.dtype:
    """numpy dtype of a TensorRT DataType; AnodetError for BF16/FP8/INT4 (no numpy type)."""
    try:
        return np.dtype(trt.nptype(dtype))
    except TypeError:
        raise AnodetError(
            f"engine tensor type {dtype} has no numpy equivalent; anodet engines use "
            "float32/float16/uint8 I/O"
        ) from None


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
    if data.get("format", SIDECAR_FORMAT) != SIDECAR_FORMAT:
        raise AnodetError(
            f"engine sidecar {side} has format {data['format']!r}, this anodet reads "
            f"{SIDECAR_FORMAT!r}; rebuild with `anodet-export tensorrt` or upgrade anodet"
        )
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


class TensorRTBackend:
    """Run an anodet TensorRT engine: ``predict(rgb, depth)`` -> score, anomaly_map, mask."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path) -> None:
        self._closed = True
        self._buffers: dict[str, IOBuffer] = {}
        self._stream: Any = None
        self._context: Any = None
        self._engine: Any = None
        self._runtime: Any = None
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
        self._engine = engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise AnodetError(
                f"TensorRT could not deserialize {path} (see the TensorRT errors logged above)"
            )
        self._context = engine.create_execution_context()
        if self._context is None:
            raise AnodetError(f"TensorRT could not create an execution context for {path}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if sorted(inputs) != sorted(self.info.input_names) or not set(OUTPUTS) <= set(names):
            raise AnodetError(
                f"engine {path} has tensors {names}; expected inputs {list(self.info.input_names)} "
                f"and outputs {list(OUTPUTS)}"
            )
        self.min_batch, self.max_batch = self._batch_range(inputs)
        self._stream = cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._stream_ptr = stream_handle(self._stream)
        for n in names:
            shape = tuple(int(d) for d in engine.get_tensor_shape(n))
            full = (self.max_batch,) + shape[1:]
            if any(d < 0 for d in full):
                raise AnodetError(f"engine tensor {n} has a dynamic non-batch dimension {shape}")
            dtype = np_dtype(trt, engine.get_tensor_dtype(n))
            buf = IOBuffer(n, n in inputs, dtype, int(np.prod(full)) * dtype.itemsize)
            self._buffers[n] = buf  # registered first so close() frees a half-made buffer
            buf.allocate(cudart)
            # the buffers never move, so their addresses are bound once for every run
            if self._context.set_tensor_address(n, buf.device_ptr) is False:
                raise AnodetError(f"TensorRT refused the device address of tensor {n}")
        log.info("TensorRT engine %s loaded (batch %d..%d)", path, self.min_batch, self.max_batch)

    def _batch_range(self, inputs: list[str]) -> tuple[int, int]:
        """Batch sizes every input accepts: its fixed batch, or optimization profile 0's range."""
        lo, hi = 1, 1 << 31
        for name in inputs:
            first = int(next(iter(self._engine.get_tensor_shape(name))))
            if first < 0:  # dynamic batch: profile 0 holds (min, opt, max) shapes
                mins, _, maxs = self._engine.get_tensor_profile_shape(name, 0)
                lo, hi = max(lo, int(next(iter(mins)))), min(hi, int(next(iter(maxs))))
            else:
                lo, hi = max(lo, first), min(hi, first)
        if lo > hi:
            raise AnodetError(f"engine {self.path} inputs accept no common batch size")
        return lo, hi

    def predict(self, rgb: np.ndarray, depth: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Run a batch; batches above the profile's max are chunked, below its min padded."""
        if self._closed:
            raise AnodetError("this TensorRTBackend is closed")
        n = check_batch(self.info, rgb, depth)
        s = self.info.image_size
        if n == 0:
            return {
                "score": np.zeros(0, np.float32),
                "anomaly_map": np.zeros((0, s, s), np.float32),
                "mask": np.zeros((0, s, s), np.uint8),
            }
        parts = []
        for start in range(0, n, self.max_batch):
            stop = min(n, start + self.max_batch)
            feeds = {INPUT_RGB: rgb[start:stop]}
            if self.info.needs_depth:
                feeds[INPUT_DEPTH] = depth[start:stop]
            parts.append(self._run(feeds, stop - start))
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
        run_n = max(n, self.min_batch)
        shapes: dict[str, tuple[int, ...]] = {}
        try:
            for name, arr in feeds.items():
                if run_n > n:  # an engine built with min_batch > 1: repeat the last frame
                    arr = np.concatenate([arr, np.repeat(arr[-1:], run_n - n, axis=0)])
                if ctx.set_input_shape(name, tuple(arr.shape)) is False:
                    raise AnodetError(f"engine rejected input shape {arr.shape} for {name}")
                self._buffers[name].upload(cudart, arr, stream)
            if not ctx.execute_async_v3(self._stream_ptr):
                raise AnodetError(
                    "TensorRT inference failed (see the TensorRT errors logged above)"
                )
            for buf in self._buffers.values():
                if not buf.is_input:
                    shapes[buf.name] = tuple(int(d) for d in ctx.get_tensor_shape(buf.name))
                    buf.download(cudart, shapes[buf.name], stream)
            cuda_check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        except BaseException:
            # copies already queued still read/write the pinned buffers: let them finish
            # before anyone (the next predict) touches those buffers again
            quiet(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
            raise
        # copy out of the pinned buffers: the next call reuses them
        return {k: self._buffers[k].host_view(shape)[:n].copy() for k, shape in shapes.items()}

    def close(self) -> None:
        """Free GPU and pinned memory; safe to call twice."""
        if self._closed and not self._buffers and self._stream is None:
            return
        self._closed = True
        cudart = self._cudart
        if self._stream is not None:
            quiet(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        # the context and engine go before the memory and the runtime they came from
        self._context = None
        self._engine = None
        self._runtime = None
        for buf in self._buffers.values():
            buf.free(cudart)
        self._buffers = {}
        if self._stream is not None:
            quiet(cudart.cudaStreamDestroy(self._stream), "cudaStreamDestroy")
            self._stream = None

    def __enter__(self) -> TensorRTBackend:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: modules may be gone
            self.close()
