"""Where an exported model's time goes in ONNX Runtime CPU: kernel time per module scope.

Runs the model with ONNX Runtime's profiler (batch 1, random camera frame) and sums each node's
kernel time by the exporter's module scope (``/backbone/stages.0/...`` -> ``layer1``), so the
share of the backbone stages, aligner, autoencoder, input normalisation and scoring can be read
off. Profiling adds a little per-node overhead; the shares, not the total, are the result.

    .venv/bin/python benchmarks/ort_profile.py model.onnx [--runs 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from anodet.artifact import read_info

STAGES = {"0": "layer1", "1": "layer2", "2": "layer3", "3": "layer4"}
_SCOPE = re.compile(r"/(backbone/stem|backbone/stages\.(\d)|backbone/layer(\d)|backbone|aligner|autoencoder|"
                    r"input_norm|scorer)(/|$)")


def scope_of(node: str) -> str:
    """Module scope of an ONNX node name; top-level nodes (scoring, upsampling) are 'top level'."""
    m = _SCOPE.match(node)
    if not m:
        return "top level (scoring, upsampling, mask)"
    if m.group(2) is not None:
        return STAGES[m.group(2)]
    if m.group(3) is not None:
        return f"layer{m.group(3)}"
    return m.group(1).replace("backbone/", "")


def profile(model: Path, runs: int, threads: int) -> dict[str, float]:
    """Share of total kernel time per scope, plus ``total_ms`` per run."""
    info = read_info(model)
    s = info.image_size
    rng = np.random.default_rng(0)
    feed = {"rgb": rng.integers(0, 255, (1, s, s, 3), dtype=np.uint8)}
    if info.needs_depth:
        feed["depth"] = rng.uniform(0.3, 0.5, (1, s, s)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_scope: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_scope[scope_of(e["name"][: -len("_kernel_time")])] += e["dur"]
    total = sum(per_scope.values())
    return {"total_ms": total / runs / 1e3, **{k: v / total for k, v in per_scope.most_common()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    shares = profile(args.model, args.runs, args.threads)
    print(f"kernel time per run {shares.pop('total_ms'):.2f} ms (profiled)")
    for scope, share in shares.items():
        print(f"  {scope:<40} {share:6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
