"""The ``anodet-capture`` command: record frames into a dataset."""

from __future__ import annotations

from pathlib import Path

import click

from anodet.cli.command import friendly, parse_list, setup_logging


@click.command("capture")
@click.option("--source", required=True,
              help="realsense, realsense:SERIAL, or a .db3/.bag recording")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="dataset folder (folder layout)")
@click.option("--split", default="train/normal", show_default=True,
              help="train/normal, val/normal, test/normal, test/anomaly or test/anomaly/<type>")
@click.option("--depth-format", default="png", show_default=True,
              type=click.Choice(["png", "tiff", "xyz"]),
              help="png: 16-bit millimetres (1 mm cameras); tiff: float32 metres; "
                   "xyz: point cloud, metres")
@click.option("--stride", default=1, show_default=True, help="keep every N-th frame")
@click.option("--interval", type=float, help="keep frames at least this many seconds apart")
@click.option("--max", "max_frames", type=int, help="stop after writing N frames")
@click.option("--width", default=640, show_default=True, help="live camera stream width")
@click.option("--height", default=480, show_default=True, help="live camera stream height")
@click.option("--fps", default=30, show_default=True, help="live camera frame rate")
@click.option("--filters", default="",
              help="SDK filters, comma-separated: spatial, temporal, hole_filling")
@click.option("--align/--no-align", default=True, show_default=True, help="align depth to colour")
@click.option("--give-up-after", default=30.0, show_default=True,
              help="seconds an unplugged camera may take to come back")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("-v", "--verbose", is_flag=True)
def capture_cmd(**opts) -> None:
    """Record RGB-D frames from a RealSense camera or recording into OUT/SPLIT/{rgb,depth}.

    Resumes into an existing folder (numbering continues, nothing is replaced) and writes
    OUT/capture.json with the camera, its settings and every frame's timestamp.
    """
    friendly(_capture)(**opts)


def _capture(source, out, split, depth_format, stride, interval, max_frames, width, height, fps,
             filters, align, give_up_after, progress, verbose) -> None:
    from anodet.capture import capture, check_split, open_capture_source
    from anodet.output_guard import refuse_aliases


    setup_logging(verbose)
    check_split(split)  # before a camera is opened
    refuse_aliases({"--out": out}, {"--source": source}, folders=("--out",))
    src = open_capture_source(source, width=width, height=height, fps=fps,
                              filters=tuple(parse_list(filters) or ()), align=align,
                              give_up_after=give_up_after)
    res = capture(src, out, split, depth_format=depth_format, stride=stride, interval=interval,
                  max_frames=max_frames, progress=progress)
    span = f" ({res.files[0]}..{res.files[-1]})" if res.files else ""
    counts = ((res.skipped, "skipped"), (res.lost, "lost by the SDK"),
              (res.reconnects, "reconnects"))
    extra = "".join(f", {n} {what}" for n, what in counts if n)
    click.echo(f"captured {res.written} frames{span} into {res.folder} "
               f"(stopped by {res.stopped_by}{extra}); log: {Path(out) / 'capture.json'}")
