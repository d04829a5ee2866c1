"""Pinned host and device buffers for the TensorRT backend (cuda-python). Torch-free.

cuda-python is passed in (see :func:`anodet.gpu.import_cudart`): importing this module needs
neither it nor a GPU.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from anodet.errors import AnodetError
from anodet.gpu import CudaError, cuda_check

log = logging.getLogger(__name__)


def quiet(result: Any, what: str) -> None:
    """Cleanup must not raise: log a failed CUDA call instead."""
    try:
        cuda_check(result, what)
    except CudaError as exc:
        log.warning("%s", exc)


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
