"""``anodet-bench``: measure every way to run a model on this machine, side by side.

    from anodet.bench import bench, exit_status, format_table
    result = bench("exp/checkpoints/best.pt", data="data/widget", backends=["torch", "onnx-cpu"],
                   batches=[1, 4], out="bench_out")
    print(format_table(result))

Modules: rows (the table of row definitions), artifacts (the files rows run: given or exported),
core (orchestration, the ONNX Runtime CPU parity reference), worker (one row in a fresh
process), stages (per-stage time and MACs, the seed-faithful reference; needs torch), timing
(the one timing loop and percentile of the tree, RSS), report (bench.md/json/png).
Importing this package does not import torch.
"""

from anodet.bench.core import bench, exit_status
from anodet.bench.report import format_report, format_stages, format_table, machine_info
from anodet.bench.rows import REFERENCE, ROW_NAMES, ROWS, Row, select_rows, unavailable_reason
from anodet.bench.timing import measure, peak_rss_mb, percentile, rss_mb, summarize

__all__ = [
    "REFERENCE",
    "ROWS",
    "ROW_NAMES",
    "Row",
    "bench",
    "exit_status",
    "format_report",
    "format_stages",
    "format_table",
    "machine_info",
    "measure",
    "peak_rss_mb",
    "percentile",
    "rss_mb",
    "select_rows",
    "summarize",
    "unavailable_reason",
]
