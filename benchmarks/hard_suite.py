"""The hard suite (issue 22): per-family accuracy at the deployed threshold, several data seeds.

Writes the hard synthetic bracket (``anodet-synth --difficulty hard``: shallow dents, thin
scratches, chips, D435 depth) once per seed, trains every variant on each, evaluates the
checkpoint and prints, per variant, mean +- sd over seeds of: image AUROC overall and per family,
AU-PRO, recall per family at the calibrated threshold and the share of good parts flagged.

    .venv/bin/python benchmarks/hard_suite.py --seeds 0,1,2 --out /tmp/hard
    .venv/bin/python benchmarks/hard_suite.py --seeds 0,1 --only rgbd_lite relief16 --out /tmp/hard
    .venv/bin/python benchmarks/hard_suite.py --variant 'r24={"preset": "rgbd_lite", "data": {"depth_relief_sigma": 24}}'

Every run appends one JSON line per (variant, seed) to OUT/results.jsonl and merges its rows into
``benchmarks/results/hard_suite_<difficulty>.json`` (table included). ``--difficulty standard``
runs the same variants on the standard widget suite (for the "no loss elsewhere" check).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

from anodet import config as cfgmod
from anodet.data.hard_parts import HARD_DEFECT_TYPES
from anodet.data.synthetic import DEFECT_TYPES, write_dataset
from anodet.evaluation.evaluator import evaluate_model, open_model
from anodet.models.backbone import resolve_weights
from anodet.train import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result

# The candidates of issue 22, named as in benchmarks/README.md ("Hard suite"). Each states every key
# it relies on, so a row means the same whatever rgbd_lite's defaults are when it is rerun.
_RELIEF = {"depth_relief_sigma": 16.0, "depth_sigma": 2.0}  # Gaussian-fit relief, 2 px low-pass first
_EDGE = {**_RELIEF, "depth_relief_step": 0.0015}  # edge-aware fit: steps over ~1.5 mm are structure
_V1 = {"data": {"depth_relief_sigma": 0.0, "depth_relief_step": 0.0, "depth_sigma": 0.0},
       "model": {"depth_stride": 2, "feature_size": 32, "depth_gain": 0.5, "score_fusion": "joint"}}
_E2_MODEL = {"depth_stride": 1, "feature_size": 64, "depth_gain": 0.5, "score_fusion": "max"}


def _lite(data: dict | None = None, **model) -> dict:
    return {"preset": "rgbd_lite", "data": {**_V1["data"], **(data or {})}, "model": {**_V1["model"], **model}}


VARIANTS: dict[str, dict] = {
    "rgbd_lite": {"preset": "rgbd_lite"},  # as shipped by the anodet that runs this
    "rgbd_lite_v1": _lite(),  # rgbd_lite before issue 22
    "relief16": _lite({"depth_relief_sigma": 16.0}),
    "r16s2g2": _lite(_RELIEF, depth_gain=2.0),
    "r16s2g4": _lite(_RELIEF, depth_gain=4.0),
    "r32s2g2": _lite({**_RELIEF, "depth_relief_sigma": 32.0}, depth_gain=2.0),
    "s2g2": _lite({"depth_sigma": 2.0}, depth_gain=2.0),
    "r16s2g2c32": _lite(_RELIEF, depth_gain=2.0, reduce_channels=32),
    "r16s2g2ds1": _lite(_RELIEF, depth_gain=2.0, depth_stride=1),
    "r16s2g2f64": _lite(_RELIEF, depth_gain=2.0, feature_size=64),
    "r16s2g2orth": _lite(_RELIEF, depth_gain=2.0, reduction="orthogonal"),
    "C1std": _lite(_RELIEF, depth_gain=2.0, depth_stride=1, feature_size=64, score_fusion="max"),
    "E1": _lite(_EDGE, **{**_E2_MODEL, "depth_gain": 2.0}),
    "E2": _lite(_EDGE, **_E2_MODEL),
    "E2j": _lite(_EDGE, **{**_E2_MODEL, "score_fusion": "joint"}),
    "E2c32": _lite(_EDGE, **_E2_MODEL, reduce_channels=32),
    "E2b2": _lite(_EDGE, **{**_E2_MODEL, "blur_sigma": 2.0}),
    "E2g025": _lite(_EDGE, **{**_E2_MODEL, "depth_gain": 0.25}),
    "E2_320": _lite({**_EDGE, "image_size": 320, "depth_relief_sigma": 20.0, "depth_sigma": 2.5},
                    **{**_E2_MODEL, "feature_size": 80}),
    "E2c48": _lite(_EDGE, **_E2_MODEL, reduce_channels=48),
    "E2c32b2": _lite(_EDGE, **{**_E2_MODEL, "blur_sigma": 2.0}, reduce_channels=32),
    "E2c32ds2": _lite(_EDGE, **{**_E2_MODEL, "depth_stride": 2}, reduce_channels=32),
    "E2c32ds2f48": _lite(_EDGE, **{**_E2_MODEL, "depth_stride": 2, "feature_size": 48}, reduce_channels=32),
    "E2c32ds2f32": _lite(_EDGE, **{**_E2_MODEL, "depth_stride": 2, "feature_size": 32}, reduce_channels=32),
    "E2c32l96": _lite(_EDGE, **_E2_MODEL, reduce_channels=32, latent_dim=96),
}


def run(name: str, overrides: dict, data: Path, out: Path, weights: str, families: tuple[str, ...]) -> dict:
    cfg = cfgmod.from_dict(json.loads(json.dumps(overrides)), source=name)
    t0 = time.perf_counter()
    res = train(cfg, data, out / "train", weights=resolve_weights(cfg.model.backbone, weights), device="cpu")
    m = evaluate_model(open_model(checkpoint=res.best_checkpoint, device="cpu"), data, out / "eval", report=False)
    per = m.get("per_defect", {})
    row = {"variant": name, "image_auroc": m["image_auroc"], "au_pro": m["au_pro"], "pixel_iou": m.get("pixel_iou"),
           "good_flagged": m["image_false_alarm_rate"], "defects_flagged": m["image_recall"],
           "train_s": res.seconds, "wall_s": time.perf_counter() - t0, "overrides": overrides}
    for f in families:
        row[f"{f}_auroc"] = per.get(f, {}).get("image_auroc")
        row[f"{f}_recall"] = per.get(f, {}).get("image_recall")
        row[f"{f}_au_pro"] = per.get(f, {}).get("au_pro")
    return row


def mean_sd(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(rows: list[dict], families: tuple[str, ...]) -> str:
    cols = ["image_auroc", *(f"{f}_auroc" for f in families), "au_pro",
            *(f"{f}_recall" for f in families), "good_flagged"]
    head = ["variant", "seeds", "image AUROC", *families, "AU-PRO", *(f"{f} caught" for f in families),
            "good flagged", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == name]
        cells = [name, str(len(mine))] + [mean_sd([r[c] for r in mine]) for c in cols]
        cells.append(f"{statistics.mean(r['train_s'] for r in mine):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", default="0,1,2", help="data seeds, comma-separated")
    ap.add_argument("--difficulty", choices=("hard", "standard"), default="hard")
    ap.add_argument("--size", type=int, default=256, help="rendered image side (the model resizes)")
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--val", type=int, default=25)
    ap.add_argument("--test", type=int, default=40, help="test images per type (good and each family)")
    ap.add_argument("--weights", default="auto")
    ap.add_argument("--only", nargs="*", help="variant names (default: all)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON", help="ad-hoc variant")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    variants = dict(VARIANTS)
    extra = dict(v.split("=", 1) for v in args.variant)
    variants.update({k: json.loads(v) for k, v in extra.items()})
    names = args.only or (list(extra) if extra else list(variants))
    families = HARD_DEFECT_TYPES if args.difficulty == "hard" else DEFECT_TYPES
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        data_root = args.out / f"data_{args.difficulty}_{args.size}_{args.train}_{args.test}_s{seed}"
        marker = data_root / ("bracket" if args.difficulty == "hard" else "widget")
        if not (marker / "anodet_synthetic.json").is_file():
            write_dataset(data_root, size=args.size, n_train=args.train, n_val=args.val, n_test_per_type=args.test,
                          seed=seed, difficulty=args.difficulty)
        for name in names:
            row = run(name, variants[name], marker, args.out / f"{name}_s{seed}", args.weights, families)
            row.update(seed=seed, difficulty=args.difficulty)
            rows.append(row)
            with open(args.out / "results.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(table([row], families).splitlines()[-1], flush=True)  # one line per run, as it lands
    print(table(rows, families))
    # Merged by (variant, seed) into the results file, so the suite can be run in parts (and in
    # parallel processes, one variant list each) and the file still holds every row.
    name = f"hard_suite_{args.difficulty}"
    path = RESULTS / f"{name}.json"
    kept = json.loads(path.read_text())["rows"] if path.is_file() else []
    done = {(r["variant"], r["seed"]) for r in rows}
    merged = [r for r in kept if (r["variant"], r["seed"]) not in done] + rows
    write_result(name, {"args": {k: str(v) for k, v in vars(args).items()}, "rows": merged,
                        "table": table(merged, families)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
