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

import importlib
from typing import Any

# Loaded on first use, so the torch-free runtime importing anodet.bench.timing loads nothing else.
_HOME = {"bench": "core", "exit_status": "core", "format_report": "report", "format_stages": "report",
         "format_table": "report", "machine_info": "report", "REFERENCE": "rows", "ROW_NAMES": "rows",
         "ROWS": "rows", "Row": "rows", "select_rows": "rows", "unavailable_reason": "rows", "measure": "timing",
         "peak_rss_mb": "timing", "percentile": "timing", "rss_mb": "timing", "summarize": "timing"}
__all__ = list(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'anodet.bench' has no attribute {name!r}")
    return getattr(importlib.import_module(f"anodet.bench.{_HOME[name]}"), name)
