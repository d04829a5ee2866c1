"""OpenVINO FP32 / FP16 / INT8 (NNCF) against ONNX Runtime FP32 / INT8: one model, one run.

A small real model is trained on a synthetic dataset (tiny ResNet-18 config, like
scripts/tiny_export.py, at --size px), exported to ONNX, then to each format; the INT8 files go
through their exporters' accuracy guard with --accept-drop semantics so every row is measured.
Batch-1 latency is timed in blocks per row, several rounds in alternating order (see
``blocked``), so load from other jobs on the shared cores hits all rows alike; image AUROC and false alarms come from the test split.

    .venv/bin/python benchmarks/openvino_vs_ort.py --size 128 --runs 60
"""

from __future__ import annotations

import argparse
import logging
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


def make_model(work: Path, size: int) -> tuple[Path, Path]:
    """(dataset category folder, FP32 dynamic-batch ONNX) of a tiny trained model; cached in ``work``."""
    from anodet.config import from_dict
    from anodet.data.synthetic import write_dataset
    from anodet.export.onnx import export_onnx
    from anodet.train import train

    data, model = work / f"data{size}", work / f"tiny{size}.onnx"
    category = data / "widget"
    if not category.is_dir():
        write_dataset(data, size=size, n_train=48, n_val=16, n_test_per_type=24, seed=0)
    if not model.is_file():
        cfg = {**TINY, "data": {"image_size": size}}
        res = train(from_dict(cfg), category, work / f"exp{size}", weights="none", device="cpu")
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


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="model input size (px)")
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
    from anodet.export.openvino import export_openvino
    from anodet.export.quantize import quantize_int8
    from anodet.runtime.backends import OnnxRuntimeBackend
    from anodet.runtime.openvino_backend import OpenVinoBackend

    args.work.mkdir(parents=True, exist_ok=True)
    data, model = make_model(args.work, args.size)
    ort_int8 = quantize_int8(model, data, args.work / f"ort_int8_{args.size}.onnx", accept=True, force=True)
    exports = {p: export_openvino(model, args.work / f"ov_{p}_{args.size}.xml", precision=p, calib=data,
                                  accept=True, force=True) for p in ("fp32", "fp16", "int8")}
    backends = {
        "ort-fp32": OnnxRuntimeBackend(model, "cpu", args.threads),
        "ort-int8": OnnxRuntimeBackend(ort_int8.path, "cpu", args.threads),
        **{f"ov-{p}": OpenVinoBackend(e.path, "CPU", args.threads) for p, e in exports.items()},
    }
    info = backends["ort-fp32"].info
    ds = discover(data, need_depth=info.needs_depth)
    labels = np.array([s.label for s in ds.test])
    rgb, depth = load_arrays(ds.test, info.preprocess, need_depth=info.needs_depth, desc="test images")
    one = (rgb[:1], depth[:1])
    times = blocked({k: (lambda b=b: b.predict(*one)) for k, b in backends.items()},
                    warmup=args.warmup, runs=args.runs, rounds=args.rounds)
    outputs = {k: b.predict(rgb, depth) for k, b in backends.items()}
    ref = outputs["ort-fp32"]
    rows, header = [], ["row", "p50 ms", "p95 ms", "frames/s", "vs ort-fp32", "image AUROC", "AUROC drop",
                        "good flagged", "max |score diff|"]
    p50_ref = summarize(times["ort-fp32"])["p50_ms"]
    result_rows = {}
    for name, out in outputs.items():
        stats = summarize(times[name])
        auroc = _auroc(labels, out["score"])
        parity = compare_outputs(ref, out, precision="fp16" if name != "ort-fp32" else "fp32")
        same_runtime_fp32 = "ort-fp32" if name.startswith("ort") else "ov-fp32"
        row = {**stats, "image_auroc": auroc, "auroc_drop": _auroc(labels, ref["score"]) - auroc,
               "good_flagged": float(np.mean(out["score"][labels == 0] > DECISION_THRESHOLD)),
               "max_abs_score_diff_vs_ort_fp32": parity.max_abs_score,
               "speedup_vs_ort_fp32": p50_ref / stats["p50_ms"],
               "speedup_vs_own_fp32": summarize(times[same_runtime_fp32])["p50_ms"] / stats["p50_ms"]}
        result_rows[name] = row
        rows.append([name, row["p50_ms"], row["p95_ms"], 1000.0 / row["p50_ms"], f"{row['speedup_vs_ort_fp32']:.2f}x",
                     f"{auroc:.4f}", f"{row['auroc_drop']:+.4f}", f"{row['good_flagged']:.1%}",
                     f"{parity.max_abs_score:.1e}"])
    guard = {"ort-int8": {"auroc_drop": ort_int8.auroc_drop, "drop_sd": ort_int8.auroc_drop_sd},
             "ov-int8": {"auroc_drop": exports["int8"].int8.auroc_drop, "drop_sd": exports["int8"].int8.auroc_drop_sd,
                         "runtime_parity": exports["int8"].runtime_parity.describe()}}
    text = table(header, rows)
    print(text)
    path = write_result(args.name, {
        "settings": {"size": args.size, "runs": args.runs, "warmup": args.warmup, "rounds": args.rounds, "threads": args.threads,
                     "batch": 1, "test_images": len(labels), "model": "tiny ResNet-18 rgbd (see TINY)",
                     "command": " ".join(sys.argv)},
        "rows": result_rows, "int8_export_guard": guard, "table": text})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
