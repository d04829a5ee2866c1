"""Command-line interface. Each command parses options and calls one library function.

User errors (AnodetError) become one readable line on stderr and exit code 2, never a
traceback. Heavy modules (torch, onnx) are imported inside the commands so `anodet-run`
stays torch-free and `--help` is instant.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from anodet import __version__
from anodet.errors import AnodetError

WEIGHTS_HELP = "imagenet (torchvision, cached), none (seeded random init) or a .pth path"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname).1s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("anodet").setLevel(logging.DEBUG if verbose else logging.INFO)


def friendly(func):
    """Turn AnodetError into `error: ...` + exit 2, Ctrl-C into exit 130."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except AnodetError as exc:
            click.echo(f"\nerror: {exc}" if _progress_bar_open() else f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:  # a full disk or read-only folder the library did not name itself
            click.echo(f"error: {exc.filename or 'a file'}: {exc.strerror or exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def _progress_bar_open() -> bool:
    """True while a tqdm bar holds the terminal line (the error must start a line of its own)."""
    from tqdm import tqdm

    return any(not bar.disable for bar in list(getattr(tqdm, "_instances", ())))


def _parse_list(value: str | None, cast=str) -> list | None:
    if value is None:
        return None
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise AnodetError(f"cannot parse list {value!r}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="anodet")
def main() -> None:
    """anodet: RGB-D industrial anomaly detection for the edge."""


@click.command("train")
@click.option("--config", "config_name", default="rgbd_full", show_default=True,
              help="preset (rgbd_full, rgb_baseline, rgbd_reduced) or a YAML file")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="dataset folder (MVTec 3D-AD category or folder layout)")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="experiment folder")
@click.option("--weights", default="none", show_default=True, help=WEIGHTS_HELP)
@click.option("--epochs", type=int, help="maximum epochs (early stopping may end sooner)")
@click.option("--batch-size", type=int, help="pixel feature vectors per optimisation step")
@click.option("--lr", type=float, help="Adam learning rate")
@click.option("--image-size", type=int, help="model input size (pixels, multiple of 32)")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda")
@click.option("--resume", is_flag=True, help="continue from EXPDIR/checkpoints/last.pt")
@click.option("--new-data", is_flag=True, help="with --resume: continue on other training files than last.pt's")
@click.option("--force", is_flag=True, help="replace an earlier experiment in --out")
@click.option("-v", "--verbose", is_flag=True)
@friendly
def train_cmd(config_name, data, out, weights, epochs, batch_size, lr, image_size, device, resume, new_data, force,
              verbose):
    """Train a detector on normal images only."""
    _setup_logging(verbose)
    from anodet import config as cfgmod
    from anodet.experiment import check_experiment_dir
    from anodet.train import train

    cfg = cfgmod.load(config_name)
    cfg = cfgmod.with_overrides(cfg, "train", epochs=epochs, batch_size=batch_size, lr=lr)
    cfg = cfgmod.with_overrides(cfg, "data", image_size=image_size)
    if weights == "none":
        click.echo("weights: none -> seeded random init (no pretrained ImageNet weights)", err=True)
    check_experiment_dir(out, resume=resume, force=force)
    res = train(cfg, data, out, weights=weights, device=device, resume=resume, new_data=new_data)
    click.echo(f"trained {cfg.preset} for {res.epochs_run} epochs in {res.seconds:.1f} s "
               f"(best val loss {res.best_val_loss:.5f}; backbone: {res.weights_source})")
    click.echo(f"checkpoint: {res.best_checkpoint}")


@click.command("eval")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="best.pt from anodet-train (PyTorch)")
@click.option("--model", type=click.Path(path_type=Path), help="exported .onnx or .engine (runtime backends)")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="dataset with a test split")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="output folder")
@click.option("--save-maps", is_flag=True, help="write every anomaly map (.npy) and maps/index.csv")
@click.option("--no-report", is_flag=True, help="skip the PNG panels and report/index.html")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda (checkpoints)")
@click.option("--backend", default="auto", show_default=True, help="runtime backend for --model")
@click.option("--batch", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--force", is_flag=True, help="replace an earlier evaluation in --out")
@friendly
def eval_cmd(checkpoint, model, data, out, save_maps, no_report, device, backend, batch, force):
    """Image AUROC, pixel AUROC, AU-PRO and a visual report on the test split."""
    _setup_logging(False)
    from anodet.evaluation.evaluator import evaluate_model, open_model
    from anodet.experiment import check_fresh_output

    check_fresh_output(out, ("metrics.json", "report", "maps"), force=force)

    mut = open_model(checkpoint, model, device=device, backend=backend)
    res = evaluate_model(mut, data, out, save_maps=save_maps, report=not no_report, batch=batch)
    click.echo(format_metrics(res))
    click.echo(f"wrote {out}/metrics.json" + ("" if no_report else f" and {out}/report/index.html"))


def format_metrics(res: dict) -> str:
    """A small aligned table of the headline metrics, overall and per defect type."""
    def f(v):
        return "  n/a" if v is None else f"{v:.3f}"

    lines = [f"{'':<12} {'img AUROC':>9} {'px AUROC':>9} {'AU-PRO':>7} {'img F1':>7}"]
    rows = [("overall", res), *sorted(res.get("per_defect", {}).items())]
    for name, r in rows:
        lines.append(f"{name:<12} {f(r.get('image_auroc')):>9} {f(r.get('pixel_auroc')):>9} "
                     f"{f(r.get('au_pro')):>7} {f(r.get('image_f1')):>7}")
    return "\n".join(lines)


@click.command("synth")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--size", default=256, show_default=True, help="image side, pixels")
@click.option("--train", "n_train", default=60, show_default=True, help="training images")
@click.option("--val", "n_val", default=15, show_default=True, help="validation images")
@click.option("--test", "n_test", default=10, show_default=True, help="test images per type")
@click.option("--seed", default=0, show_default=True)
@click.option("--sensor", default="ideal", show_default=True,
              help="depth camera modelled: ideal (float depth), d435 or d405 (noise, z16 steps, holes)")
@click.option("--force", is_flag=True, help="replace an earlier synthetic dataset in OUT")
@friendly
def synth_cmd(out, size, n_train, n_val, n_test, seed, sensor, force):
    """Write a synthetic RGB-D dataset (MVTec 3D-AD layout) to OUT."""
    from anodet.data.synthetic import write_dataset

    root = write_dataset(out, size=size, n_train=n_train, n_val=n_val, n_test_per_type=n_test, seed=seed,
                         sensor=sensor, replace=force)
    click.echo(f"synthetic dataset written to {root}")


@click.command("ablate")
@click.option("--data", required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--weights", default="none", show_default=True, help=WEIGHTS_HELP)
@click.option("--epochs", type=int, help="maximum epochs per preset")
@click.option("--presets", default="rgbd_full,rgb_baseline,rgbd_reduced", show_default=True)
@click.option("--image-size", type=int, help="override the input size of every preset")
@click.option("--device", default="auto", show_default=True)
@friendly
def ablate_cmd(data, out, weights, epochs, presets, image_size, device):
    """Train and evaluate each preset on the same data; write ablation.md/csv/json."""
    _setup_logging(False)
    from anodet.evaluation.ablation import ablate, format_table

    overrides = {"data": {"image_size": image_size}} if image_size else None
    rows = ablate(data, out, presets=_parse_list(presets), weights=weights, epochs=epochs, device=device,
                  overrides=overrides)
    click.echo(format_table(rows))
    click.echo(f"wrote {out}/ablation.md, ablation.csv, ablation.json")


@click.group("export")
def export_group() -> None:
    """Export a trained model: onnx, int8, tensorrt, triton."""


@export_group.command("onnx")
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path))
@click.option("--opset", default=17, show_default=True)
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1), help="fixed batch size")
@click.option("--dynamic-batch", is_flag=True, help="dynamic batch dimension instead of --batch")
@click.option("--fp16", is_flag=True, help="FP16 graph with FP32 inputs/outputs (for TensorRT 11)")
@click.option("--force", is_flag=True, help="overwrite an existing output")
@friendly
def export_onnx_cmd(checkpoint, output, opset, batch, dynamic_batch, fp16, force):
    """Fused graph: preprocessing -> backbone -> ... -> threshold, with parity proof."""
    _setup_logging(False)
    from anodet.export.onnx import export_onnx

    res = export_onnx(checkpoint, output, opset=opset, batch=None if dynamic_batch else batch, fp16=fp16, force=force)
    p = res.parity
    click.echo("parity vs PyTorch on stored validation frames:")
    click.echo(f"  max |map diff|    {p.max_abs_map:.2e} (bound {p.tolerance:g})")
    click.echo(f"  max |score diff|  {p.max_abs_score:.2e}")
    click.echo(f"  image decisions   {p.image_decisions_equal:.0%} equal")
    click.echo(f"  pixel decisions   {p.pixel_decisions_equal:.4%} equal")
    click.echo(f"wrote {res.path} ({res.size_mb:.1f} MB, {res.info.precision}, batch {res.info.batch or 'dynamic'})")


@export_group.command("int8")
@click.option("--model", required=True, type=click.Path(path_type=Path), help="FP32 anodet .onnx")
@click.option("--calib", required=True, type=click.Path(path_type=Path), help="dataset whose normal images calibrate")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path))
@click.option("--images", default=64, show_default=True, help="calibration images")
@click.option("--method", default="percentile", show_default=True, help="minmax, percentile or entropy")
@click.option("--max-auroc-drop", default=0.01, show_default=True, help="refuse a larger image AUROC loss")
@click.option("--accept-drop", is_flag=True, help="write the model even when it lost more accuracy")
@click.option("--keep-fp32", default="stem", show_default=True,
              help="comma-separated modules left in FP32 (stem, layer1-layer4, backbone, aligner, autoencoder; "
                   "'' for none)")
@click.option("--recalibrate/--no-recalibrate", default=True, show_default=True,
              help="refit the threshold on the INT8 model's own scores for held-out normals")
@click.option("--force", is_flag=True, help="overwrite an existing output")
@friendly
def export_int8_cmd(model, calib, output, images, method, max_auroc_drop, accept_drop, keep_fp32, recalibrate,
                    force):
    """ONNX Runtime static INT8 (QDQ, per-channel) for CPUs, with measured speed and accuracy."""
    _setup_logging(False)
    from anodet.export.quantize import quantize_int8

    r = quantize_int8(model, calib, output, max_images=images, max_auroc_drop=max_auroc_drop,
                      accept=accept_drop, force=force, method=method, keep_fp32=tuple(_parse_list(keep_fp32)),
                      recalibrate_threshold=recalibrate)
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
    click.echo(f"calibrated on {r.calib_images} normal frames")
    if r.recalibration is not None:
        click.echo(f"threshold refitted on the INT8 scores of {r.recalibration.images} held-out normal frames")
    click.echo(f"latency (ORT CPU, batch 1, median): fp32 {r.fp32_ms:.1f} ms, int8 {r.int8_ms:.1f} ms "
               f"-> {r.speedup:.2f}x")
    spread = "" if r.auroc_drop_sd is None else f" ± {r.auroc_drop_sd:.4f} bootstrap sd over {r.test_images} test images"
    click.echo(f"image AUROC: fp32 {fmt(r.fp32_auroc)}, int8 {fmt(r.int8_auroc)} (drop {fmt(r.auroc_drop)}{spread})")
    pct = lambda v: "n/a" if v is None else f"{v:.1%}"
    click.echo(f"good test images flagged: fp32 {pct(r.fp32_false_alarms)}, int8 {pct(r.int8_false_alarms)}")
    if r.path is None:
        raise AnodetError(f"INT8 model lost {r.auroc_drop:.4f} image AUROC (> {max_auroc_drop}); "
                          "not written (use --accept-drop to write it anyway)")
    click.echo(f"wrote {r.path}")


@export_group.command("tensorrt")
@click.option("--model", required=True, type=click.Path(path_type=Path), help="anodet .onnx (use an --fp16 export for TensorRT 11)")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path))
@click.option("--fp16/--fp32", default=True, show_default=True)
@click.option("--min-batch", default=1, show_default=True)
@click.option("--opt-batch", default=1, show_default=True)
@click.option("--max-batch", default=8, show_default=True)
@click.option("--workspace", default=4.0, show_default=True, help="workspace limit, GiB")
@click.option("--timing-cache", type=click.Path(path_type=Path), help="timing cache file (loaded and saved)")
@click.option("--force", is_flag=True)
@friendly
def export_tensorrt_cmd(model, output, fp16, min_batch, opt_batch, max_batch, workspace, timing_cache, force):
    """Build a TensorRT engine (raw plan + JSON sidecar) on this machine's GPU."""
    _setup_logging(False)
    from anodet.export.tensorrt import build_engine

    side = build_engine(model, output, fp16=fp16, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                        workspace_gb=workspace, timing_cache=timing_cache, force=force)
    click.echo(f"wrote {output} and {output}.json (TensorRT {side.get('tensorrt_version')}, {side.get('gpu_name')})")


@export_group.command("triton")
@click.option("--model", required=True, type=click.Path(path_type=Path), help="anodet .onnx or .engine")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="model repository folder")
@click.option("--flavour", type=click.Choice(["onnxruntime", "tensorrt", "python"]),
              help="Triton backend [default: tensorrt for engines, onnxruntime for .onnx]; python = anodet's "
                   "runtime with preprocessing (clients send camera frames)")
@click.option("--name", default="anodet", show_default=True)
@click.option("--max-batch", default=8, show_default=True)
@click.option("--instances", default=1, show_default=True)
@click.option("--queue-delay-us", default=1000, show_default=True, help="dynamic batcher's wait to fill a batch")
@click.option("--threads", type=int, help="python flavour: ONNX Runtime threads per instance")
@click.option("--gpu-accelerator", is_flag=True, help="onnxruntime flavour: TensorRT execution provider on GPUs")
@click.option("--force", is_flag=True)
@friendly
def export_triton_cmd(model, output, flavour, name, max_batch, instances, queue_delay_us, threads,
                      gpu_accelerator, force):
    """Write a Triton Inference Server model repository."""
    from anodet.export.triton import write_repository

    path = write_repository(model, output, flavour=flavour, name=name, max_batch=max_batch, instances=instances,
                            queue_delay_us=queue_delay_us, threads=threads, gpu_accelerator=gpu_accelerator,
                            force=force)
    click.echo(f"wrote Triton model {path} (serve with: tritonserver --model-repository {output})")


@export_group.command("openvino")
@click.option("--model", required=True, type=click.Path(path_type=Path), help="FP32 anodet .onnx")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="IR .xml (.bin beside it)")
@click.option("--precision", default="fp16", show_default=True, type=click.Choice(["fp32", "fp16", "int8"]))
@click.option("--calib", type=click.Path(path_type=Path), help="dataset: INT8 calibration/accuracy, parity check")
@click.option("--images", default=64, show_default=True, help="INT8 calibration images")
@click.option("--max-auroc-drop", default=0.01, show_default=True, help="refuse a larger INT8 image AUROC loss")
@click.option("--accept-drop", is_flag=True, help="write the INT8 model even when it lost more accuracy")
@click.option("--keep-fp32", default="stem", show_default=True, help="modules left in FP32 (as export int8)")
@click.option("--recalibrate/--no-recalibrate", default=True, show_default=True)
@click.option("--force", is_flag=True)
@friendly
def export_openvino_cmd(model, output, precision, calib, images, max_auroc_drop, accept_drop, keep_fp32,
                        recalibrate, force):
    """OpenVINO IR: FP16 weights, FP32, or INT8 through NNCF with the INT8 accuracy guard."""
    _setup_logging(False)
    from anodet.export.openvino import export_openvino

    r = export_openvino(model, output, precision=precision, calib=calib, images=images, max_auroc_drop=max_auroc_drop,
                        accept=accept_drop, keep_fp32=tuple(_parse_list(keep_fp32)), recalibrate_threshold=recalibrate,
                        force=force)
    for parity, what in ((r.parity, "vs ONNX Runtime"), (r.runtime_parity, "INT8 graph vs ONNX Runtime")):
        if parity is not None:
            click.echo(f"parity {what}: {parity.describe()}")
    if r.int8 is not None:
        q, fmt = r.int8, (lambda v: "n/a" if v is None else f"{v:.4f}")
        click.echo(f"latency (OpenVINO CPU, batch 1, median): fp32 {q.fp32_ms:.1f} ms, int8 {q.int8_ms:.1f} ms "
                   f"-> {q.speedup:.2f}x")
        click.echo(f"image AUROC: fp32 {fmt(q.fp32_auroc)}, int8 {fmt(q.int8_auroc)} (drop {fmt(q.auroc_drop)})")
    if r.path is None:
        raise AnodetError(f"INT8 IR lost {r.int8.auroc_drop:.4f} image AUROC (> {max_auroc_drop}); "
                          "not written (use --accept-drop to write it anyway)")
    click.echo(f"wrote {r.path} and {r.path.with_suffix('.bin').name} ({r.precision})")


@click.command("run")
@click.option("--model", type=click.Path(path_type=Path), help="exported .onnx, .engine or OpenVINO .xml")
@click.option("--source", required=True, help="realsense[:SERIAL], a .bag/.db3 recording, a folder, or synthetic[:N]")
@click.option("--backend", default="auto", show_default=True,
              help="auto, onnx-cpu, onnx-cuda, onnx-trt, tensorrt, openvino[:DEVICE], triton")
@click.option("--url", help="triton: the server's gRPC HOST:PORT")
@click.option("--model-name", default="anodet", show_default=True, help="triton: the model's name on the server")
@click.option("--timeout", default=10.0, show_default=True, help="triton: seconds per request")
@click.option("--retry-for", default=30.0, show_default=True, help="triton: seconds to retry an unavailable server")
@click.option("--events", type=click.Path(path_type=Path), help="JSON-lines events file ('-' for stdout)")
@click.option("--save-anomalies", type=click.Path(path_type=Path), help="folder for anomalous frames")
@click.option("--video", type=click.Path(path_type=Path), help="annotated .mp4")
@click.option("--display", is_flag=True, help="show a window (needs OpenCV with GUI)")
@click.option("--max-frames", type=click.IntRange(min=1))
@click.option("--batch", default=1, show_default=True)
@click.option("--threads", type=int, help="ONNX Runtime intra-op threads")
@click.option("--strict-inputs", is_flag=True, help="stop when frames differ from the training frames")
@click.option("-v", "--verbose", is_flag=True)
@friendly
def run_cmd(model, source, backend, url, model_name, timeout, retry_for, events, save_anomalies, video, display,
            max_frames, batch, threads, strict_inputs, verbose):
    """Stream RGB-D frames through an exported model (torch-free)."""
    _setup_logging(verbose)
    from anodet.runtime import run

    if (backend == "triton") != (url is not None) or (model is None) == (backend != "triton"):
        raise AnodetError("give --model FILE, or --backend triton with --url HOST:PORT (and --model-name)")
    if backend == "triton":
        from anodet.runtime.triton_backend import TritonBackend

        model = TritonBackend(url, model_name, timeout=timeout, retry_for=retry_for)
    try:
        summary = run(model, source, backend=backend, events=str(events) if events else None,
                      save_anomalies=save_anomalies, video=video, display=display, max_frames=max_frames,
                      batch=batch, threads=threads, strict_inputs=strict_inputs)
    finally:
        if hasattr(model, "close"):
            model.close()
    click.echo(str(summary), err=events is not None and str(events) == "-")


@click.command("bench")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="trained best.pt (exports what each row needs)")
@click.option("--model", "models", multiple=True, type=click.Path(path_type=Path),
              help="an exported .onnx (fp32/fp16/int8) or .engine: rows that run that kind of file use it (repeatable)")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="dataset whose test split is timed")
@click.option("--backends", help="comma-separated rows (default: all; an unknown name lists them)")
@click.option("--batch", "batches", default="1", show_default=True, help="comma-separated batch sizes")
@click.option("--warmup", default=3, show_default=True)
@click.option("--runs", default=20, show_default=True)
@click.option("--threads", type=int, help="intra-op threads (torch and ONNX Runtime)")
@click.option("--out", required=True, type=click.Path(path_type=Path))
@friendly
def bench_cmd(checkpoint, models, data, backends, batches, warmup, runs, threads, out):
    """Latency, memory, accuracy and parity with ONNX Runtime CPU per backend; exit 1 if one disagrees."""
    _setup_logging(False)
    from anodet.bench import ROW_NAMES, bench, exit_status, format_table

    res = bench(checkpoint, models=models, data=data, backends=_parse_list(backends) or ROW_NAMES,
                batches=_parse_list(batches, int), warmup=warmup, runs=runs, out=out, threads=threads)
    click.echo(format_table(res))
    click.echo(f"wrote {out}/bench.md, bench.json, bench.png")
    sys.exit(exit_status(res))


from anodet.capture_cli import capture_cmd  # noqa: E402  (its own module; imports nothing heavy)

for _cmd in (train_cmd, eval_cmd, synth_cmd, ablate_cmd, export_group, run_cmd, bench_cmd, capture_cmd):
    main.add_command(_cmd)
    # anodet-train etc. are these commands as scripts: -h must work there as under `anodet`.
    _cmd.context_settings.setdefault("help_option_names", ["-h", "--help"])

if __name__ == "__main__":
    main()
