"""Train + evaluate a list of config variants and print a markdown table.

Every variant is a preset plus overrides (the same shape as a YAML custom preset), trained with
``anodet.train.train`` and evaluated with ``anodet.evaluation.evaluator.evaluate_model``
(no report). Runs one training at a time; use ``--only`` to pick variants by name.

    .venv/bin/anodet-synth /tmp/syn --size 256 --train 60
    .venv/bin/python benchmarks/tune_defaults.py --data /tmp/syn/widget --out /tmp/tune \\
        --suite defaults --epochs 60
    .venv/bin/python benchmarks/tune_defaults.py --data /tmp/syn/widget --out /tmp/tune --suite final
    # EfficientNet-Lite, real ImageNet weights, 600 test images, two data seeds:
    .venv/bin/anodet-synth /tmp/s0 --test 150 --seed 0; .venv/bin/anodet-synth /tmp/s1 --test 150 --seed 1
    .venv/bin/python benchmarks/tune_defaults.py --data /tmp/s0/widget /tmp/s1/widget --out /tmp/tl --suite lite
    # one factor at a time around rgbd_lite (issue 12 item 5; benchmarks/results/tune_lite_item5.jsonl):
    .venv/bin/python benchmarks/tune_defaults.py --data /tmp/s0/widget /tmp/s1/widget --out /tmp/tl5 \
        --suite lite_item5 --weights imagenet

Columns: image AUROC overall and per defect type, pixel AUROC, AU-PRO, the decisions at the
calibrated threshold (good parts flagged, defective parts flagged), training seconds
(features + autoencoder + calibration) and eager forward milliseconds per 256x256 frame
(batch 1, median of a few runs). With several ``--data`` sets every variant runs on each
(one row per variant and data set, ``data`` column). ``--weights auto`` (default) uses the
offline ImageNet weights for EfficientNet-Lite and random init for the ResNets.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from anodet import config as cfgmod
from anodet.evaluation.evaluator import evaluate_model, open_model
from anodet.models.backbone import resolve_weights
from anodet.models.detector import load_detector
from anodet.train import train


# name -> overrides (a custom preset). Epochs come from --epochs unless given.
def _full(gain: float, norm: str, **model) -> dict:
    return {"preset": "rgbd_full", "model": {"depth_gain": gain, **model}, "train": {"error_norm": norm}}


def _lite(**sections: dict) -> dict:
    """rgbd_lite plus overrides; train.depth_augment_units stays the preset's (0.001)."""
    return {"preset": "rgbd_lite", **sections}


SUITES: dict[str, dict[str, dict]] = {
    # How the defaults depth_gain=10 and error_norm=std were chosen (README, "Choosing defaults").
    "defaults": {
        "gain1_none": _full(1.0, "none"),
        "gain1_std": _full(1.0, "std"),
        "gain3_std": _full(3.0, "std"),
        "gain10_none": _full(10.0, "none"),
        "gain10_std": _full(10.0, "std"),
        "gain10_zscore": _full(10.0, "zscore"),
        "gain30_std": _full(30.0, "std"),
        "gain10_std_bnrecal": _full(10.0, "std", bn_recalibration=32),
    },
    # The three presets with the current defaults (what the targets are about).
    # EfficientNet-Lite0 with ImageNet weights: fusion and the rebalanced widths (issue 12).
    # Names as in benchmarks/README.md; rgbd_lite is the preset as shipped.
    "lite": {
        "rgb_lite_l4_32": {"preset": "rgb_lite", "model": {"layers": ["layer1", "layer2", "layer3", "layer4"],
                                                           "reduce_channels": 32}},
        "early_l4_32": {"preset": "rgbd_lite", "model": {"fusion": "early", "depth_gain": 10.0, "depth_stride": 1,
                                                         "layers": ["layer1", "layer2", "layer3", "layer4"],
                                                         "reduce_channels": 32}},
        "late_l4_16": {"preset": "rgbd_lite", "model": {"depth_stride": 1, "reduce_channels": 16,
                                                        "layers": ["layer1", "layer2", "layer3", "layer4"]}},
        "rgbd_lite": {"preset": "rgbd_lite"},
    },
    # Issue 12 item 5: one factor at a time around the shipped rgbd_lite (ImageNet Lite0), both
    # data seeds. Ordered by how much each factor was expected to move (first rows first).
    "lite_item5": {
        "rgbd_lite": {"preset": "rgbd_lite"},
        **{f"gain{g:g}": _lite(model={"depth_gain": g}) for g in (0.5, 2.0, 4.0)},
        **{f"norm_{n}": _lite(train={"error_norm": n}) for n in ("none", "zscore")},
        **{f"blur{b:g}": _lite(model={"blur_sigma": b}) for b in (2.0, 8.0)},
        **{f"latent{d}": _lite(model={"latent_dim": d}) for d in (32, 128)},
        **{f"ch{c}": _lite(model={"reduce_channels": c}) for c in (8, 32)},
        **{f"fs{f}": _lite(model={"feature_size": f}) for f in (24, 48)},
        **{f"q{q:g}": _lite(train={"threshold_quantile": q}) for q in (0.95, 1.0)},
    },
    "final": {
        "rgbd_full": {"preset": "rgbd_full"},
        "rgb_baseline": {"preset": "rgb_baseline"},
        "rgbd_reduced": {"preset": "rgbd_reduced"},
        "rgbd_lite": {"preset": "rgbd_lite"},
        "rgb_lite": {"preset": "rgb_lite"},
    },
}

TYPES = ("colour", "geometry", "crack")


def forward_ms(ckpt: Path, reps: int = 5) -> float:
    det = load_detector(ckpt)
    s = det.cfg.data.image_size
    rgb = torch.randint(0, 256, (1, s, s, 3), dtype=torch.uint8)
    depth = 0.5 + 0.01 * torch.rand(1, s, s)
    times = []
    with torch.no_grad():
        det(rgb, depth)  # warm-up
        for _ in range(reps):
            t0 = time.perf_counter()
            det(rgb, depth)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def run_variant(name: str, overrides: dict, data: Path, out: Path, epochs: int | None,
                weights: str = "auto") -> dict:
    raw = json.loads(json.dumps(overrides))
    if epochs is not None:
        raw.setdefault("train", {}).setdefault("epochs", epochs)
    cfg = cfgmod.from_dict(raw, source=name)
    weights = resolve_weights(cfg.model.backbone, weights)
    res = train(cfg, data, out / name / "train", weights=weights, device="cpu")
    metrics = evaluate_model(open_model(checkpoint=res.best_checkpoint, device="cpu"), data,
                             out / name / "eval", report=False)
    row = {
        "variant": name,
        "image_auroc": metrics["image_auroc"],
        **{t: metrics.get("per_defect", {}).get(t, {}).get("image_auroc", float("nan")) for t in TYPES},
        "pixel_auroc": metrics["pixel_auroc"],
        "au_pro": metrics["au_pro"],
        **{f"{t}_au_pro": metrics.get("per_defect", {}).get(t, {}).get("au_pro", float("nan")) for t in TYPES},
        # Decisions at the calibrated threshold (0.5 in normalised units): good parts flagged
        # (false alarms) and defective parts flagged (recall), in [0, 1].
        "good_flagged": metrics.get("image_false_alarm_rate"),
        "defects_flagged": metrics.get("image_recall"),
        "data": str(data),
        "test_images": metrics.get("num_images"),
        "weights": res.weights_source,
        "epochs": res.epochs_run,
        "train_s": res.seconds,
        "forward_ms": forward_ms(res.best_checkpoint),
        "overrides": overrides,
        "load_avg_1m": os.getloadavg()[0],
    }
    return row


def table(rows: list[dict]) -> str:
    head = ("| variant | data | image AUROC | colour | geometry | crack | pixel AUROC | AU-PRO | good flagged "
            "| defects flagged | epochs | train s | fwd ms |")
    lines = [head, "|" + "---|" * 13]

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    for r in rows:
        data = Path(r.get("data", "")).parent.name or "-"
        lines.append(
            f"| {r['variant']} | {data} | {r['image_auroc']:.3f} | {r['colour']:.3f} | {r['geometry']:.3f} | "
            f"{r['crack']:.3f} | {r['pixel_auroc']:.3f} | {r['au_pro']:.3f} | {pct(r.get('good_flagged'))} | "
            f"{pct(r.get('defects_flagged'))} | {r['epochs']} | {r['train_s']:.0f} | {r['forward_ms']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="one or more categories (data seeds)")
    ap.add_argument("--weights", default="auto", help="auto | none | imagenet | PATH (see anodet-train)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--suite", choices=sorted(SUITES), default="final")
    ap.add_argument("--only", nargs="*", help="variant names to run (default: all of the suite)")
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs of every variant")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                    help="ad-hoc variant, e.g. 'l16={\"preset\": \"rgbd_reduced\", \"model\": {\"latent_dim\": 16}}'")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    variants = dict(SUITES[args.suite])
    extra = dict(v.split("=", 1) for v in args.variant)
    variants.update({k: json.loads(v) for k, v in extra.items()})
    names = args.only or (list(extra) if extra else list(variants))
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        for i, data in enumerate(args.data):
            out = args.out / f"data{i}" if len(args.data) > 1 else args.out
            row = run_variant(name, variants[name], data, out, args.epochs, args.weights)
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
            with open(args.out / "results.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
    md = table(rows)
    (args.out / f"{args.suite}.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
