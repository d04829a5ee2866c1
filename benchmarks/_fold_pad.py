"""Fold each zero-constant ``Pad -> Conv`` of an anodet ONNX graph into the Conv's own ``pads``.

An experiment for the ONNX exporter (not a benchmark itself): timm's TF-"same" padding of the
EfficientNet-Lite stride-2 convolutions exports as a Pad whose amounts are computed from the
input's shape at run time (Shape/Gather/Cast/... nodes), so neither ONNX Runtime's Pad fusion
nor OpenVINO's folds it, and a Pad between a quantized tensor and its convolution splits the
INT8 chain. The spatial input size of an anodet export is fixed, so the amounts are constants:
they are read from one run of the graph, written into the Conv (ONNX Conv takes asymmetric
pads) and the shape nodes left unused are dropped. Scores are bit-identical (checked by the
caller with ``compare_outputs``). The anodet metadata is kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper


def _attr(node: onnx.NodeProto, name: str, default):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def fold_pads(src: Path, dst: Path) -> int:
    """Write ``src`` with its foldable Pads folded to ``dst``; return how many were folded."""
    import onnxruntime as ort

    model = onnx.load(str(src))
    graph, outputs = model.graph, {o.name for o in model.graph.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    pairs = [(n, readers[n.output[0]][0]) for n in graph.node
             if n.op_type == "Pad" and n.output[0] not in outputs and len(readers.get(n.output[0], [])) == 1
             and readers[n.output[0]][0].op_type == "Conv" and _attr(n, "mode", b"constant") == b"constant"
             and _attr(readers[n.output[0]][0], "auto_pad", b"NOTSET") in (b"NOTSET", b"")]
    # the pad amounts (and fill values) as the graph computes them, from one all-zero frame
    probe = onnx.load(str(src))
    wanted = [i for n, _ in pairs for i in n.input[1:] if i]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(i) for i in wanted)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape],
                              np.uint8 if "uint8" in i.type else np.float32) for i in sess.get_inputs()}
    values = dict(zip(wanted, sess.run(wanted, feeds)))
    folded = 0
    for pad, conv in pairs:
        amounts = values[pad.input[1]].astype(int).tolist()  # [begin per axis..., end per axis...]
        fill = float(values[pad.input[2]]) if len(pad.input) > 2 and pad.input[2] else 0.0
        r = len(amounts) // 2
        if fill != 0.0 or min(amounts) < 0 or any(amounts[:2]) or any(amounts[r:r + 2]):
            continue  # only zero padding of the spatial axes is a Conv's own padding
        old = next((a for a in conv.attribute if a.name == "pads"), None)
        base = list(old.ints) if old is not None else [0] * (2 * (r - 2))
        new = [base[i] + amounts[2 + i] for i in range(r - 2)] + \
              [base[r - 2 + i] + amounts[r + 2 + i] for i in range(r - 2)]
        if old is not None:
            conv.attribute.remove(old)
        conv.attribute.append(helper.make_attribute("pads", new))
        conv.input[0] = pad.input[0]
        graph.node.remove(pad)
        folded += 1
    while True:  # drop the shape arithmetic nobody reads any more
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    onnx.save(model, str(dst))
    return folded
