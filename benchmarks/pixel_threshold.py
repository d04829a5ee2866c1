"""Masks at the calibrated pixel threshold: pixel IoU and good-part false positives per budget.

Trains a preset on ``anodet-synth`` (or takes ``--checkpoint``), then, for each per-pixel
false-positive budget, fits the pixel threshold on the validation normals exactly as training
does (``anodet.calibration.pixel_threshold``) and measures the test masks against the ground
truth: pixel precision, recall, IoU and the share of normal pixels flagged (good parts and the
intact area of defective ones). The rule "image threshold" is the mask before the separate
threshold (every pixel above 0.5). Each blur sigma of the map is calibrated on its own.

    python benchmarks/pixel_threshold.py --preset rgbd_full --test 150 --seeds 0,1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from _common import WORK, table, write_result

from anodet import config as cfgmod
from anodet.artifact import DECISION_THRESHOLD
from anodet.calibration import pixel_threshold, threshold
from anodet.data.samples import discover, load_gt, load_sample
from anodet.data.synthetic import write_dataset
from anodet.evaluation.metrics import image_auroc
from anodet.models.detector import load_detector
from anodet.models.scoring import gaussian_kernel
from anodet.progress import progress_bar
from anodet.train import train

BUDGETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01)
BLURS = (1.0, 4.0)
PEAK_SHARES = (0.3, 0.5, 0.7)


@torch.no_grad()
def errors(det, samples, spec, need_depth):
    """Per-position squared error before blurring (N x 1 x F x F) and ground truths at S x S."""
    errs, gts = [], []
    s = spec.image_size
    for smp in progress_bar(samples, desc="errors", unit="img", leave=False):
        rgb, depth, _ = load_sample(smp, spec, need_depth=need_depth)
        feats = det.features(torch.from_numpy(rgb[None]), None if depth is None else torch.from_numpy(depth[None]))
        errs.append(det.scorer.error(feats, det.autoencoder(feats)))
        gt = load_gt(smp)
        gt = np.zeros((s, s), bool) if gt is None else cv2.resize(gt.astype(np.uint8), (s, s),
                                                                   interpolation=cv2.INTER_NEAREST) > 0
        gts.append(gt)
    return torch.cat(errs), gts


@torch.no_grad()
def raw_maps(det, err, sigma):
    """Raw maps N x S x S with the scorer's blur set to ``sigma`` pixels."""
    det.scorer.kernel = gaussian_kernel(sigma) if sigma > 0 else torch.ones(1)
    return torch.cat([det.scorer.raw_map_from_error(err[i : i + 16]) for i in range(0, len(err), 16)]).numpy()


def measure(checkpoint: Path, data: Path, blurs=BLURS) -> list[dict]:
    """For each blur sigma and budget: refit both thresholds on the validation normals as training
    does, then pixel metrics of the test masks."""
    det = load_detector(checkpoint)
    cfg = det.cfg
    need_depth = cfg.model.in_channels == 4
    ds = discover(data, need_depth=need_depth, val_fraction=cfg.data.val_fraction, seed=cfg.train.seed)
    spec = cfg.data.preprocess
    val_err, _ = errors(det, ds.val, spec, need_depth)
    test_err, gts = errors(det, ds.test, spec, need_depth)
    labels = np.array([smp.label for smp in ds.test])
    rows = []
    for sigma in blurs:
        val_raw = raw_maps(det, val_err, sigma)
        thr, scale = threshold(val_raw, cfg.train.threshold_method, cfg.train.threshold_quantile)
        maps = (raw_maps(det, test_err, sigma) - thr) / scale + DECISION_THRESHOLD
        scores = maps.reshape(len(maps), -1).max(axis=1)
        auroc = image_auroc(labels, scores)
        norm = {b: (pixel_threshold(val_raw, b) - thr) / scale + DECISION_THRESHOLD for b in BUDGETS}
        peaks = scores[:, None, None]
        # (name, per-image threshold): the fixed rules, then "a share of the way from the
        # pixel threshold to the image's peak" (half-maximum contours recover a blurred blob's extent)
        rules = [("image threshold", np.full_like(peaks, DECISION_THRESHOLD))]
        rules += [(f"fpr {b:g}", np.full_like(peaks, norm[b])) for b in BUDGETS]
        rules += [(f"fpr 0.003 + {r:g} of peak", norm[0.003] + r * (peaks - norm[0.003])) for r in PEAK_SHARES]
        rules += [(f"fixed {t:g} (oracle sweep)", np.full_like(peaks, t)) for t in (0.75, 1.0, 1.5, 2.0)]
        for name, per_image in rules:
            tp = fp = fn = 0
            for amap, gt, flagged, t in zip(maps, gts, scores > DECISION_THRESHOLD, per_image):
                hit = (amap > t) & flagged
                tp, fp, fn = tp + int((hit & gt).sum()), fp + int((hit & ~gt).sum()), fn + int((~hit & gt).sum())
            normal_px = sum(int((~gt).sum()) for gt in gts)
            rows.append({"blur_sigma": sigma, "rule": name, "pixel_threshold": float(np.median(per_image)),
                         "image_auroc": auroc, "pixel_precision": tp / max(tp + fp, 1),
                         "pixel_recall": tp / max(tp + fn, 1), "pixel_iou": tp / max(tp + fp + fn, 1),
                         "pixel_false_positive_rate": fp / normal_px})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="rgbd_full")
    ap.add_argument("--weights", default="none")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--test", type=int, default=150, help="test images per type")
    ap.add_argument("--seeds", default="0,1", help="data seeds")
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args(argv)
    results = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        root = WORK / f"pixel_threshold_s{seed}_{args.size}_{args.test}"
        data = root / "data" / "widget"
        if not data.exists():
            data = write_dataset(root / "data", size=args.size, n_train=60, n_val=15,
                                 n_test_per_type=args.test, seed=seed)
        cfg = cfgmod.with_overrides(cfgmod.load(args.preset), "train", epochs=args.epochs)
        # The cached model is keyed by the resolved config: a changed preset default retrains.
        digest = hashlib.sha256(json.dumps([cfg.to_dict(), args.weights], sort_keys=True).encode()).hexdigest()[:10]
        exp = root / f"exp_{args.preset}_{digest}"
        ckpt = exp / "checkpoints" / "best.pt"
        if not ckpt.exists():
            ckpt = train(cfg, data, exp, weights=args.weights, device="cpu").best_checkpoint
        results[seed] = rows = measure(ckpt, data)
        print(f"\n{args.preset}, data seed {seed}, {args.test} test images per type")
        print(table(["blur σ", "rule", "threshold", "image AUROC", "precision", "recall", "IoU", "normal px flagged"],
                    [[r["blur_sigma"], r["rule"], f"{r['pixel_threshold']:.3f}", f"{r['image_auroc']:.3f}",
                      f"{r['pixel_precision']:.3f}", f"{r['pixel_recall']:.3f}", f"{r['pixel_iou']:.3f}",
                      f"{100 * r['pixel_false_positive_rate']:.3f} %"] for r in rows]))
    path = write_result(f"pixel_threshold_{args.preset}", {"settings": vars(args), "config": cfg.to_dict(),
                                                          "seeds": results})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
