"""Choosing and opening a backend from the table: open_backend, open_remote, unavailable_reason.

The one module that loads the backend files, by the module names in the table's rows
(importlib, on first use): importing it needs no engine. Torch-free.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

from anodet.errors import AnodetError
from anodet.runtime.backends.table import AUTO, TABLE, Backend, BackendSpec, backend_spec


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run here (engine missing, no GPU provider...), or None.

    The engine's module must be importable; then the backend's own ``unavailable_reason(option)``,
    if its file has one, looks further (an ONNX Runtime without the CUDA EP, no TensorRT GPU).
    """
    spec = backend_spec(name)
    if importlib.util.find_spec(spec.needs) is None:
        return f"{spec.needs} not installed ({spec.install})"
    probe = getattr(_module(spec), "unavailable_reason", None)
    return probe(spec.option) if probe is not None else None


def _module(spec: BackendSpec) -> ModuleType:
    return importlib.import_module(f"anodet.runtime.backends.{spec.module}")


def _choose(path: Path, backend: str) -> tuple[BackendSpec, str]:
    """The row and the option that run ``path`` for ``backend`` (auto: by the file's suffix)."""
    suffix = path.suffix.lower()
    owner = next((s for s in TABLE if s.only and suffix in s.suffixes), None)
    if backend == AUTO:
        spec = next((s for s in TABLE if suffix in s.suffixes), None)
        # any other file: ONNX Runtime with the best provider available here
        return (spec, spec.option) if spec is not None else (backend_spec("onnx-cpu"), AUTO)
    spec = backend_spec(backend)
    if spec.only and suffix not in spec.suffixes:
        tip = f" ({spec.tip})" if spec.tip else ""
        raise AnodetError(f"backend '{spec.name}' runs {spec.runs}; {path.name} is not one{tip}")
    if owner is not None and owner is not spec:
        raise AnodetError(f"{path.name} is a {owner.engine} engine; run it with backend "
                          f"'{owner.name}' or '{AUTO}'")
    return spec, backend.partition(":")[2] or spec.option


def open_backend(path: str | Path, backend: str = AUTO, threads: int | None = None) -> Backend:
    """Open an exported model file with one of BACKENDS (see TABLE).

    auto: ``.engine``/``.plan`` -> TensorRT, ``.xml`` -> OpenVINO, otherwise ONNX Runtime with
    the best available provider. openvino:DEVICE runs OpenVINO on DEVICE (default CPU). A
    remote backend (triton) is opened with open_remote instead.
    """
    if backend != AUTO:
        spec = backend_spec(backend)
        if spec.remote:
            raise AnodetError(f"backend '{spec.name}' runs {spec.runs}: give the server's --url "
                              "HOST:PORT and --model-name instead of a model file")
    path = Path(path)
    if not path.is_file():
        raise AnodetError(f"model file not found: {path}")
    spec, option = _choose(path, backend)
    try:
        module = _module(spec)
        return module.open_model(path, option, threads)
    except ImportError as exc:  # the engine, or a library it needs, is not installed
        if exc.name == f"anodet.runtime.backends.{spec.module}":
            raise AnodetError(f"this anodet installation has no {spec.engine} backend module") from None
        raise AnodetError(f"cannot run {path.name}: {exc.name or exc} is missing; {spec.install}") from None


def open_remote(backend: str, url: str, model_name: str, **options: float) -> Backend:
    """Open a model served at ``url`` with a remote backend (triton); options go to its class."""
    spec = backend_spec(backend)
    if not spec.remote:
        raise AnodetError(f"backend '{spec.name}' runs a model file (--model), not a server (--url)")
    return _module(spec).open_server(url, model_name, **options)
