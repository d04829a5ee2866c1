"""The backend table is the one place that knows the backends: everything else reads it."""

from __future__ import annotations

import importlib
import sys

import pytest
from click.testing import CliRunner

from anodet.errors import AnodetError
from anodet.runtime.backends import BACKENDS, TABLE, backend_help, backend_spec, open_backend


def test_backends_are_the_table_rows():
    assert BACKENDS == ("auto", *(spec.name for spec in TABLE))
    assert BACKENDS == ("auto", "onnx-cpu", "onnx-cuda", "onnx-trt", "tensorrt", "openvino", "triton")
    assert len({spec.name for spec in TABLE}) == len(TABLE)
    assert backend_spec("openvino:GPU.1").name == "openvino"
    with pytest.raises(AnodetError, match="valid: auto, onnx-cpu"):
        backend_spec("onnx-cpu:GPU")


def test_every_row_has_its_file_and_entry_point():
    for spec in TABLE:
        module = importlib.import_module(f"anodet.runtime.backends.{spec.module}")  # no engine needed
        assert callable(getattr(module, "open_server" if spec.remote else "open_model")), spec.name
        assert spec.precisions and set(spec.precisions) <= {"fp32", "fp16", "int8"}
        assert spec.install.startswith(("pip install", "install")), spec.name


def test_run_help_and_bench_rows_read_the_table():
    from anodet.bench.rows import ROWS, TORCH
    from anodet.cli import run_cmd

    out = CliRunner().invoke(run_cmd, ["--help"], terminal_width=400).output
    assert " ".join(backend_help().split()) in " ".join(out.split())
    for row in ROWS:
        if row.engine != TORCH:
            spec = backend_spec(row.engine)
            assert row.gpu == spec.gpu and row.precision in spec.precisions, row.name


def test_a_missing_engine_names_the_tables_install_hint(tmp_path, monkeypatch):
    model = tmp_path / "model.xml"
    model.write_text("<net/>")
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    with pytest.raises(AnodetError) as err:
        open_backend(model)
    assert backend_spec("openvino").install in str(err.value)
