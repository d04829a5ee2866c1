"""Inference backends for exported models: ONNX Runtime here, TensorRT in tensorrt_backend.py.

Every backend takes graph input (rgb uint8 N x S x S x 3, depth float32 N x S x S metres or
None for RGB-only models) and returns the contract's outputs (see anodet.artifact). Torch-free.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from anodet.artifact import (
    INPUT_DEPTH,
    INPUT_RGB,
    OUTPUTS,
    ModelInfo,
    info_from_metadata,
    is_engine,
    run_batched,
)
from anodet.errors import AnodetError

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx-cpu", "onnx-cuda", "onnx-trt", "tensorrt", "openvino", "triton")
PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")
_EP = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_EP_NAME = {v: f"onnx-{k if k != 'tensorrt' else 'trt'}" for k, v in _EP.items()}
TENSORRT_HINT = (
    "install TensorRT: `pip install tensorrt cuda-python --extra-index-url https://pypi.nvidia.com` "
    "(or `pip install 'anodet[tensorrt]'`); on Jetson use JetPack's TensorRT (apt install python3-libnvinfer)"
)


class Backend(Protocol):
    """An opened model. predict returns {"score": (N,) float32, "anomaly_map": (N,S,S) float32,
    "mask": (N,S,S) uint8}; scores and maps are normalised so that > 0.5 is anomalous."""

    name: str
    info: ModelInfo

    def predict(self, rgb: np.ndarray, depth: np.ndarray | None) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


def choose_providers(providers: str, available: list[str]) -> list[str]:
    """ONNX Runtime execution providers for a choice in PROVIDER_CHOICES, best first.

    auto takes TensorRT EP > CUDA EP > CPU among those available; an explicit choice that is
    not available is an error listing what is.
    """
    if providers not in PROVIDER_CHOICES:
        raise AnodetError(f"unknown providers '{providers}'; valid: {', '.join(PROVIDER_CHOICES)}")
    order = [_EP["tensorrt"], _EP["cuda"], _EP["cpu"]]
    if providers != "auto":
        wanted = _EP[providers]
        if wanted not in available:
            raise AnodetError(
                f"ONNX Runtime here has no {wanted} (available: {', '.join(available)}); "
                "install onnxruntime-gpu for CUDA/TensorRT or choose another backend"
            )
        order = order[order.index(wanted) :]
    return [p for p in order if p in available]


class OnnxRuntimeBackend:
    """An anodet ONNX export run by ONNX Runtime."""

    def __init__(self, path: str | Path, providers: str = "auto", threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise AnodetError(
                "onnxruntime is not installed: pip install 'anodet[onnx]' (or 'anodet[gpu]')"
            ) from None
        self.path = Path(path)
        if not self.path.is_file():
            raise AnodetError(f"model file not found: {self.path}")
        chosen = choose_providers(providers, ort.get_available_providers())
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # ORT's warnings about unused initialisers are noise here
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(self.path), opts, providers=provider_options(chosen)
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types for invalid models
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise AnodetError(
                f"{self.path} is not a loadable ONNX model ({exc.__class__.__name__}: {first})"
            ) from None
        self.info: ModelInfo = info_from_metadata(
            self.session.get_modelmeta().custom_metadata_map, str(self.path)
        )
        names = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if names != set(self.info.input_names) or not set(OUTPUTS) <= outputs:
            raise AnodetError(
                f"{self.path}: graph inputs {sorted(names)} / outputs {sorted(outputs)} do not match its "
                f"metadata (expected inputs {list(self.info.input_names)}, outputs {list(OUTPUTS)})"
            )
        active = self.session.get_providers()[0]
        if providers != "auto" and active != chosen[0]:
            raise AnodetError(
                f"ONNX Runtime could not start {chosen[0]} (it fell back to {active}); "
                "check the CUDA/TensorRT libraries on this machine"
            )
        self.name = _EP_NAME.get(active, f"onnx-{active}")
        logger.info(
            "loaded %s with %s (batch %s)", self.path.name, self.name, self.info.batch or "dynamic"
        )

    def predict(self, rgb: np.ndarray, depth: np.ndarray | None) -> dict[str, np.ndarray]:
        """rgb uint8 N x S x S x 3, depth float32 N x S x S metres (None if RGB-only)."""

        def run(r: np.ndarray, d: np.ndarray | None) -> dict[str, np.ndarray]:
            feeds = {INPUT_RGB: r} if d is None else {INPUT_RGB: r, INPUT_DEPTH: d}
            return dict(zip(OUTPUTS, self.session.run(list(OUTPUTS), feeds)))

        return run_batched(run, self.info, rgb, depth)

    def close(self) -> None:
        self.session = None


def provider_options(providers: list[str]) -> list[Any]:
    """ONNX Runtime providers with their options; every ORT session on a GPU takes them here.

    The TensorRT EP gets an engine cache: building its engines takes minutes otherwise.
    """
    out: list[Any] = []
    for p in providers:
        if p == _EP["tensorrt"]:
            cache = Path.home() / ".cache" / "anodet" / "ort-trt"
            cache.mkdir(parents=True, exist_ok=True)
            out.append((p, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}))
        else:
            out.append(p)
    return out


def open_backend(path: str | Path, backend: str = "auto", threads: int | None = None) -> Backend:
    """Open an exported model with one of BACKENDS.

    auto: ``.engine``/``.plan`` -> TensorRT, otherwise ONNX Runtime with the best available
    provider. onnx-cpu/onnx-cuda/onnx-trt force an ONNX Runtime provider; tensorrt runs an
    engine built by ``anodet-export tensorrt``. openvino[:DEVICE] (or auto for an IR ``.xml``)
    runs OpenVINO on DEVICE (default CPU); triton is anodet.runtime.triton_backend.TritonBackend.
    """
    family, _, device = backend.partition(":")
    if family not in BACKENDS or (device and family != "openvino"):
        raise AnodetError(f"unknown backend '{backend}'; valid: {', '.join(BACKENDS)} (openvino:DEVICE too)")
    if family == "triton":
        raise AnodetError("backend 'triton' runs a model on a Triton server: give the server's "
                          "--url HOST:PORT and --model-name instead of a model file")
    path = Path(path)
    if not path.is_file():
        raise AnodetError(f"model file not found: {path}")
    if family == "openvino" or (backend == "auto" and path.suffix.lower() == ".xml"):
        from anodet.runtime.openvino_backend import OpenVinoBackend  # openvino loads lazily

        return OpenVinoBackend(path, device or "CPU", threads)
    engine = is_engine(path)
    if backend == "tensorrt" or (backend == "auto" and engine):
        if not engine:
            raise AnodetError(
                f"backend 'tensorrt' runs engines (.engine/.plan) built by `anodet-export tensorrt`; "
                f"{path.name} is not one (use onnx-trt to run an ONNX file with TensorRT)"
            )
        return _open_tensorrt(path)
    if engine:
        raise AnodetError(
            f"{path.name} is a TensorRT engine; run it with backend 'tensorrt' or 'auto'"
        )
    providers = {"auto": "auto", "onnx-cpu": "cpu", "onnx-cuda": "cuda", "onnx-trt": "tensorrt"}[
        backend
    ]
    return OnnxRuntimeBackend(path, providers, threads)


def _open_tensorrt(path: Path) -> Backend:
    try:
        from anodet.runtime.tensorrt_backend import TensorRTBackend
    except ImportError as exc:
        if exc.name == "anodet.runtime.tensorrt_backend":
            raise AnodetError("this anodet installation has no TensorRT backend module") from None
        raise AnodetError(
            f"cannot run {path.name}: {exc.name or exc} is missing; {TENSORRT_HINT}"
        ) from None
    try:
        return TensorRTBackend(path)
    except ImportError as exc:  # the backend may import tensorrt/cuda lazily
        raise AnodetError(
            f"cannot run {path.name}: {exc.name or exc} is missing; {TENSORRT_HINT}"
        ) from None
