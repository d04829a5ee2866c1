"""Why small inputs break the default model: validation vs training loss per input size.

For each size, a synthetic category is written at that size and the default preset
(random-init backbone, so no download) is trained on it. Reported per run: best validation
loss, the training loss of that epoch, and per backbone stage the feature-map side, the pixel
vectors the PCA aligner is fitted on (images x side^2), the channels it keeps, and the
smallest kept eigenvalue relative to the largest (read back from the whitened projection:
row norm = 1 / sqrt(eigenvalue)). Writes benchmarks/results/image_size_sweep.json.

    nice -n 10 python benchmarks/image_size_sweep.py --sizes 64,96,128,256
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, table, write_result

STRIDES = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}


def run_one(size: int, n_train: int, reduction: str, epochs: int, work: Path) -> dict:
    import torch

    from anodet.checkpoint import read_checkpoint
    from anodet.config import PRESETS, with_overrides
    from anodet.data.synthetic import write_dataset
    from anodet.features import FIT_IMAGES
    from anodet.train import train

    data = write_dataset(work / f"data_{size}_{n_train}", size=size, n_train=n_train, n_val=max(n_train // 4, 2),
                         n_test_per_type=0, seed=1)
    cfg = with_overrides(PRESETS["rgbd_full"], "data", image_size=size)
    cfg = with_overrides(cfg, "model", reduction=reduction)
    cfg = with_overrides(cfg, "train", epochs=epochs, patience=epochs)
    out = work / f"exp_{size}_{n_train}_{reduction}"
    t0 = time.perf_counter()
    train(cfg, data, out, weights="none", device="cpu")
    with open(out / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    best = min(rows, key=lambda r: float(r["val_loss"]))
    state = read_checkpoint(out / "checkpoints" / "best.pt")["model"]
    stages = []
    for i, layer in enumerate(cfg.model.layers):
        w = state[f"aligner.weight{i}"].double().flatten(1)
        evals = 1.0 / (w.norm(dim=1) ** 2)  # valid for the whitened PCA rows only
        side = size // STRIDES[layer]
        stages.append({"layer": layer, "side": side, "fit_vectors": min(n_train, FIT_IMAGES) * side * side,
                       "in_channels": w.shape[1], "kept": w.shape[0],
                       "min_over_max_eigenvalue": float(evals.min() / evals.max()) if reduction == "pca" else None})
    return {"size": size, "n_train": n_train, "reduction": reduction, "epochs": epochs,
            "best_epoch": int(best["epoch"]), "val_loss": float(best["val_loss"]),
            "train_loss": float(best["train_loss"]), "seconds": time.perf_counter() - t0, "stages": stages,
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="64,96,128,256")
    ap.add_argument("--n-train", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--name", default="image_size_sweep", help="results file name (no suffix)")
    ap.add_argument("--extra", default="64:160:pca,64:40:orthogonal",
                    help="size:n_train:reduction runs added after the sweep")
    args = ap.parse_args()
    work = WORK / "image_size_sweep"
    work.mkdir(parents=True, exist_ok=True)
    plan = [(int(s), args.n_train, "pca") for s in args.sizes.split(",")]
    plan += [(int(a), int(b), c) for a, b, c in (e.split(":") for e in args.extra.split(",") if e)]
    runs = []
    for size, n, red in plan:
        runs.append(run_one(size, n, red, args.epochs, work))
        write_result(args.name, {"settings": vars(args), "runs": runs})  # partial results survive
        print(runs[-1], flush=True)
    rows = [[r["size"], r["n_train"], r["reduction"], f"{r['train_loss']:.4g}", f"{r['val_loss']:.4g}",
             ", ".join(f"{s['layer']} {s['side']}px {s['fit_vectors']}v/{s['kept']}k"
                       + ("" if s["min_over_max_eigenvalue"] is None else f" {s['min_over_max_eigenvalue']:.1e}")
                       for s in r["stages"])] for r in runs]
    print(table(["size", "train imgs", "reduction", "train loss", "val loss", "stages (side, fit vectors/kept, min/max eigenvalue)"],
                rows))


if __name__ == "__main__":
    main()
