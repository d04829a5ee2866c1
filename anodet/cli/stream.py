"""`anodet-run` (torch-free streaming) and `anodet-bench`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from anodet.cli.command import friendly, parse_list, setup_logging
from anodet.errors import AnodetError
from anodet.runtime.backends.table import backend_help, backend_spec


@click.command("run")
@click.option("--model", type=click.Path(path_type=Path), help="exported .onnx, .engine or OpenVINO .xml")
@click.option("--source", required=True, help="realsense[:SERIAL], a .bag/.db3 recording, a folder, or synthetic[:N]")
@click.option("--backend", default="auto", show_default=True, help=backend_help())
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
    setup_logging(verbose)
    from anodet.output_guard import model_inputs, refuse_aliases
    from anodet.runtime import run

    refuse_aliases({"--events": events, "--video": video, "--save-anomalies": save_anomalies},
                   {**model_inputs(model), "--source": source}, folders=("--save-anomalies",))
    remote = backend != "auto" and backend_spec(backend).remote
    if remote != (url is not None) or (model is None) != remote:
        raise AnodetError("give --model FILE, or --backend triton with --url HOST:PORT (and --model-name)")
    if remote:
        from anodet.runtime.backends import open_remote

        model = open_remote(backend, url, model_name, timeout=timeout, retry_for=retry_for)
    try:
        summary = run(model, source, backend=backend, events=str(events) if events else None,
                      save_anomalies=save_anomalies, video=video, display=display, max_frames=max_frames,
                      batch=batch, threads=threads, strict_inputs=strict_inputs)
    finally:
        if hasattr(model, "close"):
            model.close()
    click.echo(str(summary), err=events is not None and str(events) == "-")
    if summary.stopped_by == "source lost":
        sys.exit(1)  # the events are complete, but a supervisor must see that the camera is gone


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
@click.option("--force", is_flag=True, help="replace an earlier benchmark in --out")
@friendly
def bench_cmd(checkpoint, models, data, backends, batches, warmup, runs, threads, out, force):
    """Latency, memory, accuracy and parity with ONNX Runtime CPU per backend; exit 1 if one disagrees."""
    setup_logging(False)
    from anodet.experiment import check_fresh_output
    from anodet.output_guard import model_inputs, refuse_aliases

    for inputs in ({"--checkpoint": checkpoint, "--data": data}, *(model_inputs(m) for m in models)):
        refuse_aliases({"--out": out}, inputs, folders=("--out",))
    check_fresh_output(out, ("bench.json", "bench.md", "bench.png"), force=force)
    from anodet.bench import ROW_NAMES, bench, exit_status, format_table

    res = bench(checkpoint, models=models, data=data, backends=parse_list(backends) or ROW_NAMES,
                batches=parse_list(batches, int), warmup=warmup, runs=runs, out=out, threads=threads)
    click.echo(format_table(res))
    click.echo(f"wrote {out}/bench.md, bench.json, bench.png")
    sys.exit(exit_status(res))
