"""Training cost of the default preset on a synthetic set, and what the feature cache saves.

    .venv/bin/python benchmarks/training_speed.py                  # 60 train images, 256 px
    .venv/bin/python benchmarks/training_speed.py --quick          # 64 px, 8 images, 3 epochs

Runs ``anodet.train.train`` end to end (BN statistics, backbone features, aligner fit, feature
cache, autoencoder epochs with early stopping, calibration) and reports the time of each part.
The backbone and aligner are fixed, so their features are computed once and every epoch only
trains the autoencoder on cached pixel vectors. Without the cache each epoch would rerun the
backbone on every training image: that cost is estimated (measured per-image feature time x
images + one measured cached epoch) and, unless --no-recompute-epoch, also measured by running
one such epoch. Writes benchmarks/results/training_speed.json.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import sys
import time
from pathlib import Path

import _common as C


def recompute_epoch(det, rgb, depth, vrgb, vdepth, cfg) -> float:
    """Seconds of one epoch that reruns backbone + aligner per batch of images (no cache).

    Like a cached epoch it ends with the validation loss, whose features must then be
    recomputed too.
    """
    import torch

    t = cfg.train
    ae = det.autoencoder
    opt = torch.optim.Adam(ae.parameters(), lr=t.lr)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    ae.train()
    pending = []
    for i in range(0, rgb.shape[0], 8):
        r = torch.from_numpy(rgb[i : i + 8])
        d = torch.from_numpy(depth[i : i + 8]) if depth is not None else None
        feats = det.features(r, d)
        px = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
        pending.append(px[torch.randint(0, px.shape[0], (t.pixels_per_image * feats.shape[0],), generator=gen)])
        if sum(p.shape[0] for p in pending) >= t.batch_size or i + 8 >= rgb.shape[0]:
            x = torch.cat(pending)[:, :, None, None]
            pending = []
            for j in range(0, x.shape[0], t.batch_size):
                xb = x[j : j + t.batch_size]
                if xb.shape[0] < 2:
                    continue
                loss = torch.nn.functional.mse_loss(ae(xb), xb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    ae.eval()
    with torch.no_grad():
        for i in range(0, vrgb.shape[0], 8):
            vd = torch.from_numpy(vdepth[i : i + 8]) if vdepth is not None else None
            feats = det.features(torch.from_numpy(vrgb[i : i + 8]), vd)
            torch.nn.functional.mse_loss(ae(feats), feats)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="rgbd_full")
    p.add_argument("--size", type=int, default=256, help="synthetic image and model input size")
    p.add_argument("--n-train", type=int, default=60)
    p.add_argument("--n-val", type=int, default=15)
    p.add_argument("--epochs", type=int, help="maximum epochs (default: the preset's, early stopping on)")
    p.add_argument("--threads", type=int)
    p.add_argument("--work", type=Path, default=C.WORK / "training_speed")
    p.add_argument("--no-recompute-epoch", action="store_true", help="only estimate the uncached epoch")
    p.add_argument("--quick", action="store_true", help="64 px, 8 train / 2 val images, 3 epochs")
    a = p.parse_args(argv)
    if a.quick:
        a.size, a.n_train, a.n_val, a.epochs = 64, 8, 2, a.epochs or 3

    import torch

    from anodet import config as cfgmod
    from anodet.bench.timing import time_ms
    from anodet.checkpoint import read_checkpoint
    from anodet.data.arrays import load_arrays
    from anodet.data.samples import discover
    from anodet.data.synthetic import write_dataset
    from anodet.models.detector import load_detector
    from anodet.train import train

    if a.threads:
        torch.set_num_threads(a.threads)
    data = write_dataset(a.work / "data", size=a.size, n_train=a.n_train, n_val=a.n_val, n_test_per_type=0)
    cfg = cfgmod.with_overrides(cfgmod.load(a.preset), "data", image_size=a.size)
    cfg = cfgmod.with_overrides(cfg, "train", epochs=a.epochs)
    exp = a.work / "exp"
    shutil.rmtree(exp, ignore_errors=True)
    res = train(cfg, data, exp, weights="none", device="cpu")
    ckpt = read_checkpoint(res.best_checkpoint)
    feature_s = float(ckpt.get("feature_seconds", float("nan")))
    with open(exp / "history.csv") as fh:
        epoch_s = [float(r["seconds"]) for r in csv.DictReader(fh)]
    epoch_med = statistics.median(epoch_s)
    n_feat = a.n_train + a.n_val

    det = load_detector(res.best_checkpoint)
    ds = discover(data, need_depth=cfg.model.in_channels == 4)
    rgb, depth = load_arrays(ds.train, cfg.data.preprocess, need_depth=cfg.model.in_channels == 4)
    per_img = []
    for i in range(0, min(rgb.shape[0], 16), 8):  # per-image time of the fixed part, batches of 8
        r = torch.from_numpy(rgb[i : i + 8])
        d = torch.from_numpy(depth[i : i + 8]) if depth is not None else None
        per_img.append(time_ms(det.features, r, d) / 1000.0 / r.shape[0])
    per_img_s = statistics.median(per_img)
    estimate = per_img_s * (a.n_train + a.n_val) + epoch_med
    vrgb, vdepth = load_arrays(ds.val, cfg.data.preprocess, need_depth=cfg.model.in_channels == 4)
    measured = None if a.no_recompute_epoch else recompute_epoch(det, rgb, depth, vrgb, vdepth, cfg)
    n_epochs = len(epoch_s)
    rows = [
        ["whole training run (anodet.train.train)", f"{res.seconds:.1f} s", f"{n_epochs} epochs" + (" (early stop)" if n_epochs < cfg.train.epochs else "")],
        ["  feature extraction (BN stats, fit, cache)", f"{feature_s:.1f} s", f"{n_feat} images"],
        ["  autoencoder epochs (sum)", f"{sum(epoch_s):.1f} s", ""],
        ["epoch with feature cache (median)", f"{epoch_med:.2f} s", "measured"],
        ["epoch recomputing the backbone (estimate)", f"{estimate:.2f} s",
         f"{per_img_s * 1000:.0f} ms/image x {a.n_train + a.n_val} + cached epoch"],
        ["epoch recomputing the backbone (measured)", "n/a" if measured is None else f"{measured:.2f} s", "one epoch"],
        ["cache speed-up per epoch", f"{(measured or estimate) / epoch_med:.0f}x", ""],
        [f"{n_epochs} epochs without cache (projected)", f"{(measured or estimate) * n_epochs:.0f} s",
         f"vs {sum(epoch_s) + feature_s:.0f} s with cache"],
    ]
    print(f"{cfg.preset} ({cfg.model.backbone}, {a.size} px), {a.n_train} train + {a.n_val} val synthetic images, "
          f"CPU, torch threads {torch.get_num_threads()}\n")
    print(C.table(["what", "time", "note"], rows))
    result = {
        "settings": {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
                     "config": cfg.to_dict(), "torch_threads": torch.get_num_threads()},
        "train_seconds": res.seconds, "feature_seconds": feature_s, "epochs": n_epochs, "epoch_seconds": epoch_s,
        "epoch_cached_median_s": epoch_med, "feature_ms_per_image": per_img_s * 1000,
        "epoch_recompute_estimate_s": estimate, "epoch_recompute_measured_s": measured,
        "best_val_loss": res.best_val_loss,
    }
    print(f"\nwrote {C.write_result('training_speed', result)}")
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
