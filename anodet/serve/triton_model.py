"""The python flavour's server side: anodet's runtime inside Triton's Python backend. Torch-free.

``anodet-export triton --flavour python`` writes a ``model.py`` that imports
:class:`TritonPythonModel` from here, so the Python environment Triton's Python backend runs
(the python3 on the server's PATH) needs ``anodet[onnx]``. Each request holds a batch of
camera-resolution frames (rgb uint8 N x H x W x 3, depth float32 N x H x W metres) that are
preprocessed here exactly as ``anodet-run`` does; a request with the parameter
``anodet_prepared: true`` holds graph input (N x S x S) instead. The requests of one dynamic
batch are run as one ONNX Runtime batch; a request that fails (bad frame, unusable output)
gets an error response and the others are still answered.
"""

from __future__ import annotations

import json
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
    OutputError,
    info_from_metadata,
)
from anodet.errors import AnodetError
from anodet.preprocess import prepare_frame
from anodet.runtime.backends.onnx import OnnxRuntimeBackend
from anodet.runtime.backends.table import Backend
from anodet.runtime.backends.triton import (  # noqa: F401 - the flavour's names, re-exported
    CAMERA_FRAMES,
    FRAMES_PARAM,
    OUTPUT_ERROR,
    PREPARED_PARAM,
    THREADS_PARAM,
)

Batch = tuple[np.ndarray, "np.ndarray | None"]  # rgb N x S x S x 3, depth N x S x S or None


def prepare_request(backend: Backend, rgb: np.ndarray, depth: np.ndarray | None, prepared: bool) -> Batch:
    """One request's frames as graph input; AnodetError names the first bad frame."""
    info = backend.info
    if rgb.ndim != 4:
        raise AnodetError(f"rgb must be uint8 N x H x W x 3, got {rgb.dtype} {rgb.shape}")
    if info.needs_depth and depth is None:
        raise AnodetError("this model needs depth (float32 N x H x W metres) but none was sent")
    if prepared:
        return rgb, depth if info.needs_depth else None
    out_rgb, out_depth = [], []
    for i in range(rgb.shape[0]):
        try:
            r, d = prepare_frame(rgb[i], depth[i] if info.needs_depth else None, info.preprocess,
                                 strict=True)
        except AnodetError as exc:
            raise AnodetError(f"frame {i} of the request: {exc}") from None
        out_rgb.append(r)
        out_depth.append(d)
    return np.stack(out_rgb), np.stack(out_depth) if info.needs_depth else None


def serve_batches(backend: Backend, batches: list[Batch | AnodetError]) -> list[dict[str, np.ndarray] | AnodetError]:
    """Outputs per request for the prepared batches of one execute call, run as one batch.

    When the joint run fails (an unusable output), each request is run alone so only the
    failing ones get an error.
    """
    ok = [b for b in batches if not isinstance(b, AnodetError)]
    if not ok:
        return list(batches)
    try:
        rgb = np.concatenate([b[0] for b in ok])
        depth = None if ok[0][1] is None else np.concatenate([b[1] for b in ok])
        joint = backend.predict(rgb, depth)
    except AnodetError:
        return [b if isinstance(b, AnodetError) else _predict_alone(backend, b) for b in batches]
    results: list[dict[str, np.ndarray] | AnodetError] = []
    start = 0
    for b in batches:
        if isinstance(b, AnodetError):
            results.append(b)
            continue
        n = b[0].shape[0]
        results.append({k: joint[k][start:start + n] for k in OUTPUTS})
        start += n
    return results


def _predict_alone(backend: Backend, batch: Batch) -> dict[str, np.ndarray] | AnodetError:
    try:
        return backend.predict(*batch)
    except AnodetError as exc:
        return exc


def _array(tensor: Any) -> np.ndarray | None:
    """A request tensor as numpy. Through DLPack: the stub's ``as_numpy`` (built against numpy 1)
    reads wrong values under numpy 2, and ``Tensor(name, array)`` sends empty outputs."""
    return None if tensor is None else np.from_dlpack(tensor)


class TritonPythonModel:
    """Triton's Python-backend model interface (initialize, execute, finalize)."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils  # only exists inside the backend's stub

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        threads = int(params.get(THREADS_PARAM, 0)) or None
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.backend = OnnxRuntimeBackend(path, "cpu", threads)
        served = info_from_metadata(params, f"{config['name']}/config.pbtxt")
        if served != self.backend.info:
            raise AnodetError(f"{path}: its anodet metadata differs from the one in config.pbtxt; "
                              "export the repository again")

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        batches: list[Batch | AnodetError] = []
        for request in requests:
            try:
                rgb = _array(pb.get_input_tensor_by_name(request, INPUT_RGB))
                depth = _array(pb.get_input_tensor_by_name(request, INPUT_DEPTH))
                prepared = bool(json.loads(request.parameters() or "{}").get(PREPARED_PARAM, False))
                batches.append(prepare_request(self.backend, rgb, depth, prepared))
            except AnodetError as exc:
                batches.append(exc)
        responses = []
        for result in serve_batches(self.backend, batches):
            if isinstance(result, AnodetError):
                text = (OUTPUT_ERROR if isinstance(result, OutputError) else "") + str(result)
                responses.append(pb.InferenceResponse(output_tensors=[], error=pb.TritonError(text)))
            else:
                # score is declared dims [1] (reshape []): the backend hands Triton N x 1
                score = np.ascontiguousarray(result[OUTPUT_SCORE].reshape(-1, 1))
                arrays = {OUTPUT_SCORE: score, **{k: result[k] for k in (OUTPUT_MAP, OUTPUT_MASK)}}
                tensors = [pb.Tensor.from_dlpack(k, np.ascontiguousarray(a).__dlpack__()) for k, a in arrays.items()]
                responses.append(pb.InferenceResponse(tensors))
        return responses

    def finalize(self) -> None:
        self.backend.close()
