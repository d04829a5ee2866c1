"""TensorRT backend (row tensorrt): exported engines. Torch-free; imports TensorRT lazily.

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
import logging
from pathlib import Path
from typing import Any

import numpy as np

from anodet.artifact import (
    INPUT_DEPTH,
    INPUT_RGB,
    OUTPUTS,
    ModelInfo,
    info_from_metadata,
    run_batched,
)
from anodet.errors import AnodetError
from anodet.gpu import (
    check_engine_compat,
    cuda_check,
    gpu_properties,
    import_cudart,
    import_tensorrt,
    np_dtype,
    trt_logger,
)
from anodet.runtime.backends.cuda_buffers import IOBuffer, quiet, stream_handle

log = logging.getLogger(__name__)


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
        # The sidecar first: an engine paired with another model's sidecar is named as such
        # even on a machine without TensorRT.
        self.sidecar = check_engine_compat(path)
        self._trt = import_tensorrt()
        self._cudart = import_cudart()
        self.info: ModelInfo = info_from_metadata(self.sidecar["onnx_metadata"], str(path))
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
        return run_batched(self._run, self.info, rgb, depth, max_batch=self.max_batch, min_batch=self.min_batch)

    def _run(self, rgb: np.ndarray, depth: np.ndarray | None) -> dict[str, np.ndarray]:
        feeds = {INPUT_RGB: rgb} if depth is None else {INPUT_RGB: rgb, INPUT_DEPTH: depth}
        cudart, ctx, stream = self._cudart, self._context, self._stream
        shapes: dict[str, tuple[int, ...]] = {}
        try:
            for name, arr in feeds.items():
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
        return {k: self._buffers[k].host_view(shape).copy() for k, shape in shapes.items()}

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


def open_model(path: Path, option: str, threads: int | None) -> TensorRTBackend:
    """The table's entry point (an engine fixes its own threads and precision: both unused)."""
    return TensorRTBackend(path)


def unavailable_reason(option: str) -> str | None:
    """None when TensorRT, cuda-python and a GPU are there."""
    try:
        import_tensorrt()
        gpu_properties()
    except (AnodetError, ImportError) as exc:
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return None
