"""``anodet-bench``: measure every way to run a model on this machine, side by side.

    from anodet.bench import bench, format_table
    result = bench("exp/checkpoints/best.pt", data="data/widget", backends=["torch", "onnx-cpu"],
                   batches=[1, 4], out="bench_out")
    print(format_table(result))

Modules: core (orchestration, exports), worker (one row in a fresh process), stages (per-stage
time and MACs, the seed-faithful reference; needs torch), timing (percentiles, RSS), report
(bench.md/json/png).
Importing this package does not import torch.
"""

from anodet.bench.core import BENCH_BACKENDS, REFERENCE, bench, check_backends, unavailable_reason
from anodet.bench.report import format_report, format_stages, format_table, machine_info
from anodet.bench.timing import measure, peak_rss_mb, percentile, rss_mb, summarize

__all__ = [
    "BENCH_BACKENDS",
    "REFERENCE",
    "bench",
    "check_backends",
    "format_report",
    "format_stages",
    "format_table",
    "machine_info",
    "measure",
    "peak_rss_mb",
    "percentile",
    "rss_mb",
    "summarize",
    "unavailable_reason",
]
