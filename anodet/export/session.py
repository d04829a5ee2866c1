"""Run an exported graph in ONNX Runtime CPU over a stack of preprocessed frames. Torch-free.

Export parity, INT8 threshold recalibration and the INT8 accuracy check all do this. Chunking
and padding are the contract's (:func:`anodet.artifact.run_batched`), so a dynamic-batch graph
never sees hundreds of frames at once and a fixed-batch graph also takes a short last chunk.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx

from anodet.artifact import INPUT_DEPTH, INPUT_RGB, OUTPUTS, info_from_metadata, run_batched

CHUNK = 8  # frames per run for dynamic-batch graphs


def _session(model: onnx.ModelProto, outputs: tuple[str, ...]):
    """A CPU session whose graph outputs include ``outputs`` (intermediate tensors are exposed)."""
    import onnxruntime as ort

    have = {o.name for o in model.graph.output}
    if not set(outputs) <= have:
        model = copy.deepcopy(model)
        for name in outputs:
            if name not in have:
                model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run_frames(
    model: str | Path | onnx.ModelProto,
    rgb: np.ndarray,
    depth: np.ndarray | None,
    outputs: tuple[str, ...] = OUTPUTS,
) -> dict[str, np.ndarray]:
    """rgb N x S x S x 3 uint8, depth N x S x S metres (None for RGB models) -> {name: N x ...}.

    ``outputs`` may also name intermediate tensors of the graph; the contract's output checks
    apply when exactly the contract's outputs are asked for.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    info = info_from_metadata({p.key: p.value for p in model.metadata_props}, "model")
    sess = _session(model, tuple(outputs))

    def run(r: np.ndarray, d: np.ndarray | None) -> dict[str, np.ndarray]:
        feed = {INPUT_RGB: r} if d is None else {INPUT_RGB: r, INPUT_DEPTH: d}
        return dict(zip(outputs, sess.run(list(outputs), feed)))

    return run_batched(run, info, rgb, depth, max_batch=CHUNK, check=tuple(outputs) == OUTPUTS)
