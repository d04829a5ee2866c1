"""OpenVINO FP32 / FP16 / INT8 (NNCF) against ONNX Runtime FP32 / INT8: one model, one run.

Default: a small model trained on a synthetic dataset (tiny ResNet-18 config, like
scripts/tiny_export.py, random init, at --size px). ``--preset rgbd_lite --weights imagenet``
trains that preset instead (EfficientNet-Lite0 with ImageNet weights) on an ``anodet-synth``
dataset (60 train, 15 val, --test per type, seed 0). Either is exported to ONNX (dynamic batch),
then to each format; each ``--int8`` spec adds one INT8 row made by its exporter with
--accept-drop, so every row is measured. Latency (batch 1, or ``--batch``, per frame) is timed in blocks per row, several
rounds in alternating order (see ``blocked``), so load from other jobs on the shared cores hits
all rows alike; image AUROC, false alarms and defect recall come from the test split.

    .venv/bin/python benchmarks/openvino_vs_ort.py --size 128 --runs 60
    .venv/bin/python benchmarks/openvino_vs_ort.py --preset rgbd_lite --weights imagenet --size 256 \\
        --test 150 --int8 ort:stem --int8 ov:stem,layer1:mixed ... --name openvino_vs_ort_lite

An ``--int8`` spec is RUNTIME:KEEP_FP32[:OPTION]: runtime ``ort`` (anodet-export int8) or ``ov``
(anodet-export openvino --precision int8); KEEP_FP32 the comma-separated modules left in FP32
(``none`` for none); OPTION the ORT calibration method or the NNCF preset.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, table, write_result

from anodet.artifact import DECISION_THRESHOLD, compare_outputs
from anodet.bench.timing import summarize, time_ms

TINY = {"data": {"image_size": 64},
        "model": {"backbone": "resnet18", "feature_size": 16, "reduce_channels": 16, "latent_dim": 16,
                  "blur_sigma": 1.0},
        "train": {"epochs": 8, "patience": 50, "pixels_per_image": 256, "batch_size": 512}}


def make_model(work: Path, size: int, preset: str | None, weights: str, test: int | None) -> tuple[Path, Path]:
    """(dataset category folder, FP32 dynamic-batch ONNX) of a trained model; cached in ``work``."""
    from anodet import config as cfgmod
    from anodet.data.synthetic import write_dataset
    from anodet.export.onnx import export_onnx
    from anodet.train import train

    tag = f"{preset}_{weights}_{size}_{test}" if preset else f"{size}"
    data, model = work / f"data{tag}", work / (f"{preset}{tag}.onnx" if preset else f"tiny{size}.onnx")
    category = data / "widget"
    if not category.is_dir():
        if preset:  # anodet-synth's defaults
            write_dataset(data, size=size, n_test_per_type=test or 10, seed=0)
        else:
            write_dataset(data, size=size, n_train=48, n_val=16, n_test_per_type=test or 24, seed=0)
    if not model.is_file():
        if preset:
            cfg = cfgmod.load(preset)
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=size))
        else:
            cfg = cfgmod.from_dict({**TINY, "data": {"image_size": size}})
        res = train(cfg, category, work / f"exp{tag}", weights=weights, device="cpu")
        export_onnx(res.best_checkpoint, model, batch=None, force=True)
    return category, model


def blocked(fns: dict, *, warmup: int, runs: int, rounds: int) -> dict[str, list[float]]:
    """Time each function in ``rounds`` blocks of ``warmup`` + ``runs / rounds`` calls (ms).

    Not call-by-call interleaving: ONNX Runtime's and OpenVINO's worker threads keep spinning
    after a call, and on two cores that spin slows whichever runtime is called next. Blocks in
    alternating order still spread slow changes of the machine's load over all rows.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            for i in range(warmup + max(1, runs // rounds)):
                t = time_ms(fns[name])
                if i >= warmup:
                    times[name].append(t)
    return times


def int8_row(spec: str, model: Path, data: Path, work: Path, tag: str) -> tuple[str, Path, dict]:
    """Export the INT8 model of one ``--int8`` spec; (row name, model path, exporter's guard)."""
    from anodet.export.openvino import export_openvino
    from anodet.export.quantize import DEFAULT_KEEP_FP32, DEFAULT_METHOD, quantize_int8

    runtime, keep, *option = spec.split(":")
    modules = tuple(m for m in keep.split(",") if m and m != "none")
    option = option[0] if option else None
    default = modules == DEFAULT_KEEP_FP32 and option is None
    name = f"{runtime}-int8" + ("" if default else f" {keep}" + (f" {option}" if option else ""))
    stem = work / f"{runtime}_int8_{keep.replace(',', '+')}_{option or 'default'}_{tag}"
    if runtime == "ort":
        r = quantize_int8(model, data, stem.with_suffix(".onnx"), accept=True, force=True, keep_fp32=modules,
                          method=option or DEFAULT_METHOD)
        return name, r.path, {"auroc_drop": r.auroc_drop, "drop_sd": r.auroc_drop_sd}
    if runtime != "ov":
        raise SystemExit(f"--int8 {spec}: runtime must be ort or ov")
    e = export_openvino(model, stem.with_suffix(".xml"), precision="int8", calib=data, accept=True, force=True,
                        keep_fp32=modules, nncf_preset=option)
    return name, e.path, {"auroc_drop": e.int8.auroc_drop, "drop_sd": e.int8.auroc_drop_sd,
                          "runtime_parity": e.runtime_parity.describe()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="model input size and synthetic image size (px)")
    ap.add_argument("--preset", help="train this preset instead of the tiny random-init ResNet-18")
    ap.add_argument("--weights", default="none", help="backbone weights for --preset (imagenet, none)")
    ap.add_argument("--test", type=int, help="test images per type (default: 24 tiny, 10 preset)")
    ap.add_argument("--int8", action="append", help="INT8 row RUNTIME:KEEP_FP32[:OPTION], repeatable "
                    "(default: ort:stem and ov:stem)")
    ap.add_argument("--fold-pad", action="store_true", help="measure every row on the model with its Pad nodes "
                    "folded into the convolutions (benchmarks/_fold_pad.py)")
    ap.add_argument("--batch", type=int, default=1, help="frames per timed call (rows report ms per frame)")
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls at the start of each block")
    ap.add_argument("--rounds", type=int, default=4, help="blocks per row, in alternating row order")
    ap.add_argument("--threads", type=int, help="threads per runtime (default: the runtimes' own)")
    ap.add_argument("--work", type=Path, default=WORK / "openvino")
    ap.add_argument("--name", default="openvino_vs_ort")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from anodet.data.arrays import load_arrays
    from anodet.data.samples import discover
    from anodet.evaluation.metrics import image_auroc
    from anodet.export.openvino import export_openvino
    from anodet.export.quantize import paired_drop_sd
    from anodet.runtime.backends import OnnxRuntimeBackend
    from anodet.runtime.backends.openvino import OpenVinoBackend

    args.work.mkdir(parents=True, exist_ok=True)
    data, model = make_model(args.work, args.size, args.preset, args.weights, args.test)
    shipped, tag = model, f"{args.size}"
    if args.fold_pad:
        from _fold_pad import fold_pads

        model, tag = model.with_name(model.stem + "_foldpad.onnx"), f"{args.size}_foldpad"
        print(f"folded {fold_pads(shipped, model)} Pad nodes into their convolutions: {model}")
    int8 = [int8_row(s, model, data, args.work, tag) for s in args.int8 or ["ort:stem", "ov:stem"]]
    ir = {p: export_openvino(model, args.work / f"ov_{p}_{tag}.xml", precision=p, calib=data,
                             force=True).path for p in ("fp32", "fp16")}
    backends = {"ort-fp32": OnnxRuntimeBackend(model, "cpu", args.threads),
                **{f"ov-{p}": OpenVinoBackend(path, "CPU", args.threads) for p, path in ir.items()}}
    for name, path, _ in int8:
        backends[name] = (OnnxRuntimeBackend(path, "cpu", args.threads) if name.startswith("ort")
                          else OpenVinoBackend(path, "CPU", args.threads))
    info = backends["ort-fp32"].info
    ds = discover(data, need_depth=info.needs_depth)
    labels = np.array([s.label for s in ds.test])
    rgb, depth = load_arrays(ds.test, info.preprocess, need_depth=info.needs_depth, desc="test images")
    one = (rgb[:args.batch], None if depth is None else depth[:args.batch])
    load_before = os.getloadavg()  # other jobs on the shared cores, reported with the table
    times = blocked({k: (lambda b=b: b.predict(*one)) for k, b in backends.items()},
                    warmup=args.warmup, runs=args.runs, rounds=args.rounds)
    load = {"before_timing": load_before, "after_timing": os.getloadavg()}
    # image scores of all test images in chunks (all 600 at once need > 20 GB), full outputs of the first 16
    scores = {k: np.concatenate([b.predict(rgb[i:i + 16], None if depth is None else depth[i:i + 16])["score"]
                                 for i in range(0, len(labels), 16)]) for k, b in backends.items()}
    head = (rgb[:16], None if depth is None else depth[:16])
    outputs = {k: b.predict(*head) for k, b in backends.items()}
    fold_parity = None
    if args.fold_pad:  # the folded graph must score exactly as the shipped one
        fold_parity = compare_outputs(OnnxRuntimeBackend(shipped, "cpu").predict(*head), outputs["ort-fp32"],
                                      precision="fp32")
        print(f"folded vs shipped FP32 graph (ONNX Runtime, 16 test images): {fold_parity.describe()}")
    ref = scores["ort-fp32"]
    per_frame = {k: summarize(t, args.batch) for k, t in times.items()}
    ref_auroc, p50 = image_auroc(labels, ref), {k: v["p50_ms_per_frame"] for k, v in per_frame.items()}
    header = ["row", "p50 ms/frame", "p95 ms/frame", "vs ort-fp32", "vs own fp32", "image AUROC", "drop vs ort-fp32 ± sd",
              "good flagged", "defect recall", "max abs score diff (16 images)"]
    rows, result_rows = [], {}
    for name, out in outputs.items():
        stats, score = per_frame[name], scores[name]
        auroc = image_auroc(labels, score)
        parity = compare_outputs(outputs["ort-fp32"], out, precision="fp16" if name != "ort-fp32" else "fp32")
        sd = paired_drop_sd(labels, ref, score) if name != "ort-fp32" else 0.0
        row = {**stats, "image_auroc": auroc, "auroc_drop": ref_auroc - auroc, "auroc_drop_sd": sd,
               "good_flagged": float(np.mean(score[labels == 0] > DECISION_THRESHOLD)),
               "defect_recall": float(np.mean(score[labels == 1] > DECISION_THRESHOLD)),
               "max_abs_score_diff_vs_ort_fp32_16_images": parity.max_abs_score,
               "speedup_vs_ort_fp32": p50["ort-fp32"] / stats["p50_ms_per_frame"],
               "speedup_vs_own_fp32": p50["ort-fp32" if name.startswith("ort") else "ov-fp32"]
               / stats["p50_ms_per_frame"]}
        result_rows[name] = row
        rows.append([name, row["p50_ms_per_frame"], row["p95_ms_per_frame"], f"{row['speedup_vs_ort_fp32']:.2f}x",
                     f"{row['speedup_vs_own_fp32']:.2f}x", f"{auroc:.4f}", f"{row['auroc_drop']:+.4f} ± {sd:.4f}",
                     f"{row['good_flagged']:.1%}", f"{row['defect_recall']:.1%}", f"{parity.max_abs_score:.1e}"])
    text = table(header, rows)
    print(text)
    print(f"load average (1, 5, 15 min) before timing {load['before_timing']}, after {load['after_timing']}")
    model_desc = (f"{args.preset}, weights {args.weights}" if args.preset else "tiny ResNet-18 rgbd (see TINY)")
    path = write_result(args.name, {
        "settings": {"size": args.size, "runs": args.runs, "warmup": args.warmup, "rounds": args.rounds,
                     "threads": args.threads, "batch": args.batch, "test_images": len(labels), "model": model_desc,
                     "int8": args.int8 or ["ort:stem", "ov:stem"], "command": " ".join(sys.argv), "load_average": load,
                     "fold_pad_parity": None if fold_parity is None else fold_parity.describe()},
        "rows": result_rows, "int8_export_guard": {name: guard for name, _, guard in int8}, "table": text})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
