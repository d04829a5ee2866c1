"""`anodet-export`: onnx, int8, tensorrt, triton and openvino."""

from __future__ import annotations

from pathlib import Path

import click

from anodet.cli.command import friendly, parse_list, setup_logging
from anodet.errors import AnodetError
from anodet.output_guard import model_inputs, refuse_aliases


@click.group("export")
def export_group() -> None:
    """Export a trained model: onnx, int8, tensorrt, triton, openvino."""


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
    setup_logging(False)
    refuse_aliases({"-o": output}, {"--checkpoint": checkpoint})
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
    setup_logging(False)
    refuse_aliases({"-o": output}, {**model_inputs(model), "--calib": calib})
    from anodet.export.quantize import quantize_int8

    r = quantize_int8(model, calib, output, max_images=images, max_auroc_drop=max_auroc_drop,
                      accept=accept_drop, force=force, method=method, keep_fp32=tuple(parse_list(keep_fp32)),
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
    setup_logging(False)
    # The timing cache is read and written: it must be neither the model nor the engine.
    refuse_aliases({"-o": output, "the sidecar of -o": Path(f"{output}.json"), "--timing-cache": timing_cache},
                   model_inputs(model))
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

    refuse_aliases({"-o": output}, model_inputs(model), folders=("-o",))

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
@click.option("--nncf-preset", type=click.Choice(["performance", "mixed"]),
              help="INT8: NNCF preset (mixed: asymmetric activations; default: NNCF's, performance)")
@click.option("--force", is_flag=True)
@friendly
def export_openvino_cmd(model, output, precision, calib, images, max_auroc_drop, accept_drop, keep_fp32,
                        recalibrate, nncf_preset, force):
    """OpenVINO IR: FP16 weights, FP32, or INT8 through NNCF with the INT8 accuracy guard."""
    setup_logging(False)
    refuse_aliases({"-o": output, "the weights of -o": output.with_suffix(".bin")},
                   {**model_inputs(model), "--calib": calib})
    from anodet.export.openvino import export_openvino

    r = export_openvino(model, output, precision=precision, calib=calib, images=images, max_auroc_drop=max_auroc_drop,
                        accept=accept_drop, keep_fp32=tuple(parse_list(keep_fp32)), recalibrate_threshold=recalibrate,
                        nncf_preset=nncf_preset, force=force)
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
