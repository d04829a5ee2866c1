"""cuda-python helpers for the TensorRT backend: import, error checks, GPU query, I/O buffers.

Torch-free, and cuda-python is imported lazily (importing this module needs neither it nor a
GPU). cuda-python's layout changed: ``cuda.bindings.runtime`` exists since cuda-python 12.6.1
(and 11.8.4); the old ``from cuda import cudart`` trampoline was deprecated then and removed in
13.0, so :func:`import_cudart` tries the new path first and falls back to the old one (JetPack 6
boxes often carry an older 12.x wheel). Every runtime call returns a tuple ``(err, *values)``.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from anodet.errors import AnodetError

log = logging.getLogger(__name__)

CUDA_PYTHON_MISSING = (
    "cuda-python is not installed: pip install cuda-python (NVIDIA's wheel); "
    "the TensorRT backend needs it for GPU memory"
)


class CudaError(AnodetError):
    """A CUDA runtime call failed (out of memory, driver problem, ...)."""


def import_cudart() -> Any:
    """Return cuda-python's runtime bindings (``cuda.bindings.runtime``, else ``cuda.cudart``)."""
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
    """Unpack cuda-python's ``(err, *values)`` tuple; raise CudaError naming the call on failure."""
    err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if int(err) != 0:
        raise CudaError(f"CUDA call {what} failed: {_error_name(import_cudart(), err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def quiet(result: Any, what: str) -> None:
    """Cleanup must not raise: log a failed CUDA call instead."""
    try:
        cuda_check(result, what)
    except CudaError as exc:
        log.warning("%s", exc)


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
    return {
        "device": int(device),
        "name": name.split("\x00", 1)[0].strip(),
        "compute_capability": f"{prop.major}.{prop.minor}",
    }


def stream_handle(stream: Any) -> int:
    """The raw ``cudaStream_t`` address TensorRT's ``execute_async_v3(stream_handle)`` takes.

    ``int(cuda_obj)`` is deprecated since cuda-bindings 13.0 in favour of
    ``cuda.bindings.utils.get_cuda_native_handle``; older cuda-python only has ``int()``.
    """
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(stream)
    return int(get_cuda_native_handle(stream))


@dataclass
class IOBuffer:
    """Pinned host + device memory for one I/O tensor, sized for the profile's max batch."""

    name: str
    is_input: bool
    dtype: np.dtype
    nbytes: int
    host_ptr: int = 0
    device_ptr: int = 0

    def allocate(self, cudart: Any) -> None:
        self.host_ptr = cuda_check(
            cudart.cudaMallocHost(self.nbytes), f"cudaMallocHost({self.name})"
        )
        self.device_ptr = cuda_check(cudart.cudaMalloc(self.nbytes), f"cudaMalloc({self.name})")

    def free(self, cudart: Any) -> None:
        if self.device_ptr:
            quiet(cudart.cudaFree(self.device_ptr), f"cudaFree({self.name})")
            self.device_ptr = 0
        if self.host_ptr:
            quiet(cudart.cudaFreeHost(self.host_ptr), f"cudaFreeHost({self.name})")
            self.host_ptr = 0

    def host_view(self, shape: tuple[int, ...]) -> np.ndarray:
        """A numpy view of the pinned memory (no copy); refuses shapes larger than the buffer."""
        count = int(np.prod(shape))
        if count * self.dtype.itemsize > self.nbytes or not self.host_ptr:
            raise AnodetError(
                f"tensor {self.name} of shape {list(shape)} does not fit its {self.nbytes}-byte "
                "buffer"
            )
        raw = (ctypes.c_uint8 * self.nbytes).from_address(self.host_ptr)
        return np.frombuffer(raw, dtype=self.dtype, count=count).reshape(shape)

    def upload(self, cudart: Any, arr: np.ndarray, stream: Any) -> None:
        """Stage ``arr`` in pinned memory and queue the host-to-device copy on ``stream``."""
        view = self.host_view(tuple(arr.shape))
        np.copyto(view, arr, casting="same_kind")  # same_kind: float32 -> an FP16 input
        cuda_check(
            cudart.cudaMemcpyAsync(
                self.device_ptr,
                self.host_ptr,
                view.nbytes,
                cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                stream,
            ),
            f"cudaMemcpyAsync({self.name}, host to device)",
        )

    def download(self, cudart: Any, shape: tuple[int, ...], stream: Any) -> None:
        """Queue the device-to-host copy of a ``shape`` result; read it after a sync."""
        nbytes = self.host_view(shape).nbytes
        cuda_check(
            cudart.cudaMemcpyAsync(
                self.host_ptr,
                self.device_ptr,
                nbytes,
                cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                stream,
            ),
            f"cudaMemcpyAsync({self.name}, device to host)",
        )
