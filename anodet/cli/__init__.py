"""Command-line interface. Each command parses options and calls one library function.

User errors (AnodetError) become one readable line on stderr and exit code 2, never a
traceback (:mod:`anodet.cli.command`). Heavy modules (torch, onnx) are imported inside the
commands so `anodet-run` stays torch-free and `--help` is instant.
"""

import click

from anodet import __version__
from anodet.cli.capture import capture_cmd
from anodet.cli.command import friendly, parse_list, setup_logging
from anodet.cli.export import export_group
from anodet.cli.model import ablate_cmd, eval_cmd, format_metrics, synth_cmd, train_cmd
from anodet.cli.stream import bench_cmd, run_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="anodet")
def main() -> None:
    """anodet: RGB-D industrial anomaly detection for the edge."""


for _cmd in (train_cmd, eval_cmd, synth_cmd, ablate_cmd, export_group, run_cmd, bench_cmd, capture_cmd):
    main.add_command(_cmd)
    # anodet-train etc. are these commands as scripts: -h must work there as under `anodet`.
    _cmd.context_settings.setdefault("help_option_names", ["-h", "--help"])

__all__ = ["ablate_cmd", "bench_cmd", "capture_cmd", "eval_cmd", "export_group", "format_metrics", "friendly",
           "main", "parse_list", "run_cmd", "setup_logging", "synth_cmd", "train_cmd"]
