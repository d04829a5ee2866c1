"""Exported ``rgbd_lite`` against exported ``rgbd_full``: ONNX Runtime CPU, batch 1, one process.

Latency does not depend on what the autoencoder learnt, so each preset is built untrained
(weights as the preset would use them: ImageNet for Lite, random init for ResNets), traced with
the same wrapper ``anodet-export onnx`` uses, and the sessions are timed interleaved (A, B, A,
B, ...) so that load from other processes hits both alike. Per-stage conv MACs come from
``anodet.bench.stages.stage_macs``; eager per-stage times from ``stage_breakdown``.
``--dynamic-pad`` adds the ``rgbd_lite`` graph as exported before anodet fixed its padding
(timm's ``Conv2dSame``, whose pad amounts are computed from the input's shape, and the
exporter's empty Pad fill value), for a before/after in one process.

    .venv/bin/python benchmarks/lite_speed.py --out benchmarks/results/lite_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings
from pathlib import Path

import onnx
import onnxruntime as ort
import torch

from anodet import config as cfgmod
from anodet.bench.stages import stage_macs
from anodet.bench.timing import percentile, time_ms
from anodet.export.onnx import ExportGraph, drop_empty_pad_values
from anodet.models.backbone import resolve_weights
from anodet.models.detector import build_detector
from anodet.models.efficientnet_lite import SameConv2d, replace_convs


def export(preset: str, path: Path, size: int, overrides: dict | None = None, dynamic_pad: bool = False) -> dict:
    cfg = cfgmod.from_dict({"preset": preset, "data": {"image_size": size}, **(overrides or {})})
    det = build_detector(cfg, weights=resolve_weights(cfg.model.backbone, "auto"))
    if dynamic_pad:  # timm's shape-computed padding back in place of anodet's constant one
        from timm.layers import Conv2dSame

        replace_convs(det, SameConv2d, Conv2dSame)
    rgb = torch.zeros(1, size, size, 3, dtype=torch.uint8)
    depth = torch.full((1, size, size), 0.5) if cfg.model.in_channels == 4 else None
    args = (rgb, depth) if depth is not None else (rgb,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ExportGraph(det).eval(), args, str(path), opset_version=17, dynamo=False,
                          input_names=["rgb", "depth"][: len(args)], output_names=["score", "anomaly_map", "mask"])
    if not dynamic_pad:  # as anodet-export onnx writes it
        model = onnx.load(str(path))
        drop_empty_pad_values(model)
        onnx.save(model, str(path))
    macs = stage_macs(det, rgb, depth)
    return {"preset": preset, "overrides": overrides or {}, "gmac": {k: v / 1e9 for k, v in macs.items()},
            "feed": {"rgb": rgb.numpy(), **({"depth": depth.numpy()} if depth is not None else {})}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4, help="timed blocks per graph, in alternating order")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                    help="extra rgbd_lite overrides to time, e.g. 'f16={\"model\": {\"feature_size\": 16}}'")
    ap.add_argument("--dynamic-pad", action="store_true",
                    help="also time rgbd_lite with the padding anodet exported before (timm Conv2dSame)")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="time only these graphs (e.g. one per process, as a cross-check of the interleaving)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    specs = {"rgbd_full": ("rgbd_full", None), "rgbd_lite": ("rgbd_lite", None)}
    if args.dynamic_pad:
        specs["rgbd_lite_dynamic_pad"] = ("rgbd_lite", None)
    specs.update({k: ("rgbd_lite", json.loads(v)) for k, v in (x.split("=", 1) for x in args.variant)})
    if args.only:
        specs = {k: v for k, v in specs.items() if k in args.only}
    rows, sessions = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (preset, over) in specs.items():
            rows[name] = export(preset, Path(tmp) / f"{name}.onnx", args.size, over,
                                dynamic_pad=name == "rgbd_lite_dynamic_pad")
            sessions[name] = ort.InferenceSession(str(Path(tmp) / f"{name}.onnx"), opts,
                                                  providers=["CPUExecutionProvider"])
        times: dict[str, list[float]] = {k: [] for k in specs}
        # Blocks of runs per session, in alternating order: single interleaved calls let one
        # session's still-spinning worker threads slow down the next one on 2 cores.
        for r in range(args.rounds):
            for k in list(sessions)[:: 1 if r % 2 == 0 else -1]:
                for _ in range(3):  # warm-up of the block
                    sessions[k].run(None, rows[k]["feed"])
                for _ in range(max(1, args.runs // args.rounds)):
                    times[k].append(time_ms(sessions[k].run, None, rows[k]["feed"]))
    full = percentile(times["rgbd_full"], 50) if "rgbd_full" in times else float("nan")
    out = {"size": args.size, "threads": args.threads, "runs": args.runs, "rounds": args.rounds,
           "load_average_after": os.getloadavg(),
           "rows": []}
    for k, row in rows.items():
        p50 = percentile(times[k], 50)
        out["rows"].append({"name": k, "preset": row["preset"], "overrides": row["overrides"], "p50_ms": p50,
                            "p95_ms": percentile(times[k], 95), "speedup_vs_full": full / p50, "gmac": row["gmac"]})
        g = row["gmac"]
        print(f"{k:<14} p50 {p50:8.1f} ms  x{full / p50:5.2f} vs rgbd_full   GMAC "
              + ", ".join(f"{s.split(' ')[0]} {v:.3f}" for s, v in g.items()))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
