"""Run an exported graph in ONNX Runtime CPU over a stack of preprocessed frames. Torch-free.

Export parity, INT8 threshold recalibration and the INT8 accuracy check all do this; it is
one loop: chunked, so a dynamic-batch graph never sees hundreds of frames at once, and padded,
so a fixed-batch graph also takes a short last chunk.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx

from anodet.artifact import INPUT_DEPTH, INPUT_RGB, OUTPUTS

CHUNK = 8  # frames per run for dynamic-batch graphs


def _session(model: str | Path | onnx.ModelProto, outputs: tuple[str, ...]):
    """A CPU session whose graph outputs include ``outputs`` (intermediate tensors are exposed)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if not isinstance(model, onnx.ModelProto):
        sess = ort.InferenceSession(str(model), providers=providers)
        if set(outputs) <= {o.name for o in sess.get_outputs()}:
            return sess
        model = onnx.load(str(model))
    have = {o.name for o in model.graph.output}
    if not set(outputs) <= have:
        model = copy.deepcopy(model)
        for name in outputs:
            if name not in have:
                model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return ort.InferenceSession(model.SerializeToString(), providers=providers)


def run_frames(
    model: str | Path | onnx.ModelProto,
    rgb: np.ndarray,
    depth: np.ndarray | None,
    outputs: tuple[str, ...] = OUTPUTS,
) -> dict[str, np.ndarray]:
    """rgb N x S x S x 3 uint8, depth N x S x S metres (None for RGB models) -> {name: N x ...}.

    ``outputs`` may also name intermediate tensors of the graph.
    """
    sess = _session(model, tuple(outputs))
    fixed = sess.get_inputs()[0].shape[0]
    step = fixed if isinstance(fixed, int) else CHUNK
    n, parts = rgb.shape[0], []
    for i in range(0, n, step):
        idx = np.arange(i, min(i + step, n))
        if isinstance(fixed, int):
            idx = np.pad(idx, (0, step - idx.size), mode="edge")  # repeat the last frame
        feed = {INPUT_RGB: rgb[idx]}
        if depth is not None:
            feed[INPUT_DEPTH] = depth[idx]
        parts.append([r[: min(step, n - i)] for r in sess.run(list(outputs), feed)])
    return {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(outputs)}
