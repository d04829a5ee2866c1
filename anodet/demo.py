"""`make demo`: the main job end to end on an embedded default.

synthetic RGB-D data -> train -> evaluate -> export ONNX -> stream through the torch-free
runtime -> latency table. Uses --weights none (seeded random init): ImageNet weights cannot be
downloaded on an offline machine, and the demo says so in its output.
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
from anodet.cli import _setup_logging, format_metrics, friendly


def _step(title: str) -> None:
    click.secho(f"\n== {title}", bold=True)


@click.command()
@click.option("--out", default="demo", show_default=True, type=click.Path(path_type=Path))
@click.option("--preset", default="rgbd_full", show_default=True)
@click.option("--epochs", default=40, show_default=True)
@click.option("--frames", default=40, show_default=True, help="frames streamed through the runtime")
@friendly
def main(out: Path, preset: str, epochs: int, frames: int) -> None:
    """Run the whole anodet pipeline on synthetic data and print what it did."""
    _setup_logging(False)
    logging.getLogger("anodet").setLevel(logging.WARNING)
    from anodet import config as cfgmod
    from anodet.data.synthetic import write_dataset
    from anodet.evaluation.evaluator import evaluate_model, open_model
    from anodet.export.onnx import export_onnx, parity_samples
    from anodet.train import train

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    _step("1/5 synthetic RGB-D dataset (MVTec 3D-AD layout)")
    data = write_dataset(out / "data", size=256, n_train=60, n_val=15, n_test_per_type=10, seed=0)
    click.echo(f"{data}: 60 train, 15 val, 40 test (good, colour-only, geometry-only, crack)")

    _step(f"2/5 train {preset} (weights: none -> seeded random init; no ImageNet download offline)")
    cfg = cfgmod.with_overrides(cfgmod.load(preset), "train", epochs=epochs)
    res = train(cfg, data, out / "experiment", weights="none", device="cpu")
    click.echo(f"{res.epochs_run} epochs in {res.seconds:.0f} s, best val loss {res.best_val_loss:.4f}; "
               f"checkpoint {res.best_checkpoint}")

    _step("3/5 evaluate on the test split")
    metrics = evaluate_model(open_model(res.best_checkpoint, device="cpu"), data, out / "eval")
    click.echo(format_metrics(metrics))
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

    _step("latency, 256 x 256, batch 1, this CPU (median of 10 runs after warm-up)")
    import onnxruntime as ort
    import torch

    from anodet.models import load_detector

    det = load_detector(res.best_checkpoint)
    rgb_np, depth_np = parity_samples(det)
    rgb, depth = torch.from_numpy(rgb_np[:1]), torch.from_numpy(depth_np[:1])
    with torch.no_grad():
        torch_ms = measure(lambda: det(rgb, depth), warmup=1, runs=10)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {"rgb": rgb.numpy(), "depth": depth.numpy()}
    ort_ms = measure(lambda: sess.run(None, feed), warmup=1, runs=10)
    rows = [("PyTorch eager (checkpoint)", percentile(torch_ms, 50)),
            ("ONNX Runtime CPU, session.run", percentile(ort_ms, 50)),
            # Queue time is left out: in playback the reader runs ahead and frames wait their turn.
            ("runtime per frame (preprocess+infer+post)",
             percentile([x["preprocess"] + x["inference"] + x["postprocess"] for x in lat], 50))]
    click.echo(f"{'path':<44} {'p50 ms':>8}")
    for name, ms in rows:
        click.echo(f"{name:<44} {ms:>8.1f}")
    click.echo(f"\ndone in {time.perf_counter() - start:.0f} s; everything is under {out}/")


if __name__ == "__main__":
    main()
