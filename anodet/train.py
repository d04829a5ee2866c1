"""Training: cache the fixed features once, fit the autoencoder on pixel vectors, calibrate.

The backbone and aligner never change, so their output for the training set is computed once
(float16 in memory) and every epoch only runs the autoencoder on sampled pixel vectors
(B x C x 1 x 1). Early stopping watches the validation loss; the threshold and score
normalisation are calibrated on validation normals at the end and stored in the checkpoint.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anodet import config as cfgmod
from anodet.calibration import pixel_threshold, threshold
from anodet.checkpoint import check_resume, check_resume_data, read_checkpoint, write_checkpoint
from anodet.config import ExperimentConfig
from anodet.data.arrays import fingerprint, load_arrays
from anodet.data.samples import describe, discover
from anodet.drift import input_stats
from anodet.errors import AnodetError
from anodet.experiment import failed_run_cleanup, log_to, prepare_out_dir, resolve_device
from anodet.features import FIT_IMAGES, aligned_features, fit_fixed_part
from anodet.models.detector import Detector, build_detector, centred_depth
from anodet.preprocess import load_depth, load_rgb
from anodet.progress import progress_bar

log = logging.getLogger(__name__)
PARITY_SAMPLES = 4
INPUT_STAT_FRAMES = 32  # raw training frames summarised for the runtime's drift check
SAVE_EVERY_S = 30.0  # last.pt holds ~100 MB: write it at most this often, and at the end
VAL_PIXELS = 32_768
VAL_BATCH = 4096  # cache-sized chunks: 4x faster on CPU than one 32k-pixel forward pass


@dataclass
class TrainResult:
    out_dir: Path
    best_checkpoint: Path
    epochs_run: int
    best_val_loss: float
    raw_threshold: float
    seconds: float
    weights_source: str


def depth_scale(depth: np.ndarray) -> float:
    """Std (metres) of mean-centred valid depth over the training images."""
    d = torch.from_numpy(depth)
    vals = centred_depth(d)[d > 0]
    return float(vals.std()) if vals.numel() > 1 else 0.01


def _write_history(history: list[dict[str, float]], out_dir: Path) -> None:
    if not history:
        return
    with open(out_dir / "history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["train_loss"] for h in history], label="train")
    ax.plot(ep, [h["val_loss"] for h in history], label="validation")
    ax.set_xlabel("epoch"), ax.set_ylabel("MSE (standardised features)"), ax.set_yscale("log")
    ax.legend(), ax.grid(alpha=0.3), ax.set_title("autoencoder loss")
    fig.tight_layout()
    fig.savefig(out_dir / "curves.png", dpi=100)
    plt.close(fig)


def _pixels(feats: torch.Tensor) -> torch.Tensor:
    """N x C x F x F -> (N*F*F) x C pixel vectors (same dtype)."""
    return feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])


def as_map(px: torch.Tensor) -> torch.Tensor:
    """B x C pixel vectors -> 1 x C x B/k x k: the same numbers as B x C x 1 x 1 (BatchNorm pools over
    batch and space alike), but oneDNN runs a 1x1 convolution over one large map faster than over B pixels."""
    b = px.shape[0]
    k = next(k for k in (64, 32, 16, 8, 4, 2, 1) if b % k == 0)
    return px.T.reshape(1, px.shape[1], b // k, k)


def _val_loss(det: Detector, val_px: torch.Tensor, device: torch.device, batch: int) -> float:
    det.autoencoder.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, val_px.shape[0], batch):
            x = as_map(val_px[i : i + batch].to(device).float())
            total += float(torch.nn.functional.mse_loss(det.autoencoder(x), x, reduction="sum"))
            n += x.numel()
    return total / max(n, 1)


def train(
    cfg: ExperimentConfig,
    data: str | Path,
    out: str | Path,
    *,
    weights: str = "none",
    device: str = "auto",
    resume: bool = False,
    new_data: bool = False,
) -> TrainResult:
    """Train a detector on the normal images under ``data``; write everything to ``out``.

    ``new_data`` lets ``resume`` continue on training files other than the checkpoint's.
    A run that fails before its first checkpoint removes the folder it created.
    """
    start = time.perf_counter()
    created = not Path(out).exists()
    out_dir = prepare_out_dir(Path(out), allow_existing=True)
    ckpt_dir = out_dir / "checkpoints"
    with failed_run_cleanup(out_dir, created=created, keep=ckpt_dir):
        resume_state = None
        if resume:
            resume_state = read_checkpoint(ckpt_dir / "last.pt")
            check_resume(resume_state, cfg.to_dict(), ckpt_dir / "last.pt")
            resume_state["new_data"] = new_data
        with log_to(out_dir / "train.log"):
            return _train(cfg, Path(data), out_dir, weights, resolve_device(device), resume_state, start)


def _check_finite(what: str, value: float, hint: str) -> None:
    if not math.isfinite(value):
        raise AnodetError(f"{what} is {value}: {hint}; nothing calibrated was written")


def _train(cfg, data, out_dir, weights, dev, resume_state, start) -> TrainResult:
    t = cfg.train
    torch.manual_seed(t.seed)
    need_depth = cfg.model.in_channels == 4
    ds = discover(data, need_depth=need_depth, val_fraction=cfg.data.val_fraction, seed=t.seed)
    log.info("data: %s", describe(ds))
    if resume_state is not None and not resume_state["new_data"]:
        check_resume_data(resume_state, fingerprint(ds.train), data)
    det = build_detector(cfg, weights=weights).to(dev)
    cfgmod.check_aligner_fit(cfg, det.backbone.strides, det.aligner.out_channels, min(FIT_IMAGES, len(ds.train)))
    log.info("backbone %s: %s", cfg.model.backbone, det.weights_source)
    if (note := cfgmod.research_note(cfg)) is not None:
        log.warning("%s", note)
    cfgmod.save(cfg, out_dir / "config.yaml")

    spec = cfg.data.preprocess
    # Statistics of the frames as the camera delivered them, for the runtime's drift check.
    stats = input_stats(((load_rgb(s.rgb_path), load_depth(s.depth_path) if need_depth else None)
                         for s in ds.train[:INPUT_STAT_FRAMES]), augment_steps=t.depth_augment_units)
    rgb, depth = load_arrays(ds.train, spec, need_depth=need_depth, desc="train images",
                             depth_units=t.depth_augment_units, seed=t.seed)
    if depth is not None:
        det.input_norm.depth_scale.fill_(depth_scale(depth) / cfg.model.depth_gain)
    t0 = time.perf_counter()
    train_feats = fit_fixed_part(det, rgb, depth, device=dev, seed=t.seed)
    val_feats = None
    keep_rgb, keep_depth = rgb, depth
    if ds.val:
        vrgb, vdepth = load_arrays(ds.val, spec, need_depth=need_depth, desc="val images",
                                   depth_units=t.depth_augment_units, seed=t.seed + 1)
        val_feats = aligned_features(det, vrgb, vdepth, device=dev, desc="val features")
        keep_rgb, keep_depth = vrgb, vdepth
    else:
        log.warning("no validation images: validation loss and calibration use the training set")
    feature_s = time.perf_counter() - t0
    log.info("feature cache: %d train x %s in %.1f s", len(rgb), tuple(train_feats.shape[1:]), feature_s)

    train_px = _pixels(train_feats)
    val_px = _pixels(val_feats if val_feats is not None else train_feats)
    gen = torch.Generator().manual_seed(t.seed)
    # A fixed subsample keeps the per-epoch validation cheaper than the training step itself.
    val_px = val_px[torch.randperm(val_px.shape[0], generator=gen)[:VAL_PIXELS]]

    ae = det.autoencoder
    opt = torch.optim.Adam(ae.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    history: list[dict[str, float]] = []
    first_epoch, best_loss, best_state, bad_epochs = 1, float("inf"), None, 0
    if resume_state is not None:
        ae.load_state_dict({k[len("autoencoder."):]: v for k, v in resume_state["model"].items() if k.startswith("autoencoder.")})
        opt.load_state_dict(resume_state["optimizer"])
        history = list(resume_state["history"])
        first_epoch = int(resume_state["epoch"]) + 1
        best_loss, bad_epochs = float(resume_state["best_val_loss"]), int(resume_state["bad_epochs"])
        best_state = resume_state.get("best_autoencoder")
        gen.set_state(resume_state["rng"])
        log.info("resumed from epoch %d (best val loss %.5f)", first_epoch - 1, best_loss)

    n_draw = min(train_px.shape[0], t.pixels_per_image * len(ds.train))
    fp = fingerprint(ds.train)
    common = {"config": cfg.to_dict(), "weights_source": det.weights_source, "data_fingerprint": fp,
              "input_stats": stats}
    last_save = 0.0
    epoch = first_epoch - 1
    bar = progress_bar(range(first_epoch, t.epochs + 1), desc="training", unit="epoch", initial=first_epoch - 1, total=t.epochs)
    for epoch in bar:
        ep_start = time.perf_counter()
        ae.train()
        idx = torch.randint(0, train_px.shape[0], (n_draw,), generator=gen)
        total = 0.0
        for i in range(0, n_draw, t.batch_size):
            x = as_map(train_px[idx[i : i + t.batch_size]].to(dev).float())
            if x.shape[2] * x.shape[3] < 2:  # BatchNorm needs two samples
                continue
            with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                loss = torch.nn.functional.mse_loss(ae(x), x)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(ae.parameters(), t.grad_clip)
            scaler.step(opt)
            scaler.update()
            total += loss.item() * x.shape[2] * x.shape[3]
        train_loss = total / max(n_draw, 1)
        val_loss = _val_loss(det, val_px, dev, VAL_BATCH)
        _check_finite(f"the loss at epoch {epoch}", train_loss + val_loss,
                      "the features overflowed (extreme input values?) or train.lr is too high")
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                        "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - ep_start})
        if val_loss < best_loss - 1e-6:
            best_loss, bad_epochs = val_loss, 0
            best_state = {k: v.detach().cpu().clone() for k, v in ae.state_dict().items()}
        else:
            bad_epochs += 1
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=f"{best_loss:.4f}")
        stop = bad_epochs >= t.patience
        if time.perf_counter() - last_save > SAVE_EVERY_S or stop or epoch == t.epochs:
            write_checkpoint({**common, "model": det.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                              "history": history, "best_val_loss": best_loss, "bad_epochs": bad_epochs,
                              "best_autoencoder": best_state, "rng": gen.get_state()}, out_dir / "checkpoints" / "last.pt")
            _write_history(history, out_dir)
            last_save = time.perf_counter()
        if stop:
            log.info("early stop at epoch %d: no validation improvement for %d epochs", epoch, t.patience)
            break
    bar.close()

    if best_state is not None:
        ae.load_state_dict(best_state)
    det.eval()
    # The training images are the larger normal set (and the AE saw only a sample of their
    # pixels), so their errors give the per-position spread; validation images stay unseen
    # for the threshold.
    det.scorer.set_error_stats(error_maps(det, train_feats, dev), t.error_norm)
    calib_feats = val_feats if val_feats is not None else train_feats
    raw = raw_maps(det, calib_feats, dev)
    thr, scale = threshold(raw.numpy(), t.threshold_method, t.threshold_quantile)
    _check_finite("the calibrated threshold", thr, "the validation images give non-finite anomaly maps")
    pixel_thr = pixel_threshold(raw.numpy(), t.pixel_fpr)
    det.scorer.set_calibration(thr, scale, pixel_thr)
    log.info("calibrated on %d normal images: raw threshold %.5g, scale %.5g (%s q=%.3f); "
             "pixel threshold %.5g (%.3g of normal pixels above it), %.3f normalised",
             raw.shape[0], thr, scale, t.threshold_method, t.threshold_quantile, pixel_thr, t.pixel_fpr,
             det.scorer.pixel_threshold)
    best_path = out_dir / "checkpoints" / "best.pt"
    write_checkpoint({**common, "model": det.state_dict(), "epoch": epoch, "history": history,
                      "best_val_loss": best_loss, "feature_seconds": feature_s,
                      # Real preprocessed frames: export proves ONNX/PyTorch parity on them.
                      "parity_samples": {"rgb": torch.from_numpy(keep_rgb[:PARITY_SAMPLES].copy()),
                                         "depth": None if keep_depth is None
                                         else torch.from_numpy(keep_depth[:PARITY_SAMPLES].copy())},
                      "calibration": {"raw_threshold": thr, "score_scale": scale, "method": t.threshold_method,
                                      "quantile": t.threshold_quantile, "images": int(raw.shape[0]),
                                      "pixel_raw_threshold": pixel_thr, "pixel_fpr": t.pixel_fpr}}, best_path)
    _write_history(history, out_dir)
    seconds = time.perf_counter() - start
    log.info("done in %.1f s: best val loss %.5f, checkpoint %s", seconds, best_loss, best_path)
    return TrainResult(out_dir, best_path, len(history), best_loss, thr, seconds, det.weights_source)


@torch.no_grad()
def error_maps(det: Detector, feats: torch.Tensor, dev: torch.device, batch: int = 8) -> torch.Tensor:
    """Cached aligned features N x C x F x F -> squared reconstruction error N x 1 x F x F (CPU)."""
    out = []
    for i in range(0, feats.shape[0], batch):
        f = feats[i : i + batch].to(dev).float()
        out.append(det.scorer.error(f, det.autoencoder(f)).cpu())
    return torch.cat(out)


@torch.no_grad()
def raw_maps(det: Detector, feats: torch.Tensor, dev: torch.device, batch: int = 8) -> torch.Tensor:
    """Cached aligned features N x C x F x F -> raw maps N x S x S (float32, CPU)."""
    out = [det.raw_map(feats[i : i + batch].to(dev).float()).cpu() for i in range(0, feats.shape[0], batch)]
    return torch.cat(out)
