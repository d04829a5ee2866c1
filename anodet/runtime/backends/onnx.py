"""ONNX Runtime backend: the rows onnx-cpu, onnx-cuda and onnx-trt (one execution provider each).

Every backend takes graph input (rgb uint8 N x S x S x 3, depth float32 N x S x S metres or
None for RGB-only models) and returns the contract's outputs (see anodet.artifact). Torch-free;
onnxruntime is imported when a model is opened.
"""

from __future__ import annotations

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
from anodet.runtime.backends.table import Backend, install_hint

logger = logging.getLogger(__name__)

PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")
_EP = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_EP_NAME = {v: f"onnx-{k if k != 'tensorrt' else 'trt'}" for k, v in _EP.items()}


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
            raise AnodetError(f"onnxruntime is not installed: {install_hint('onnx-cpu')}") from None
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


def open_model(path: Path, option: str, threads: int | None) -> Backend:
    """The table's entry point: option is the provider choice (PROVIDER_CHOICES)."""
    return OnnxRuntimeBackend(path, option, threads)


def unavailable_reason(option: str) -> str | None:
    """None when this onnxruntime has the execution provider of ``option``."""
    import onnxruntime as ort

    wanted = _EP.get(option)
    if option == "cpu" or wanted is None or wanted in ort.get_available_providers():
        return None
    return f"this onnxruntime has no {wanted} (onnxruntime-gpu needed)"
