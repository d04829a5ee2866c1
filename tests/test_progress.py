"""Progress off a terminal (issue 24, item 4): a few plain lines, never one ``\\r`` per step."""

from __future__ import annotations

import logging
import subprocess
import sys

from anodet.progress import STEPS, PlainProgress, progress_bar


def test_off_a_terminal_a_bar_is_a_few_log_lines(capsys, caplog):
    with caplog.at_level(logging.INFO, logger="anodet.progress"):
        bar = progress_bar(total=56, desc="evaluating", unit="img")  # pytest's stderr is no tty
        assert isinstance(bar, PlainProgress)
        for _ in range(14):
            bar.update(4)
        bar.close()
        for _ in progress_bar(range(300), desc="training", unit="epoch"):
            pass
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:4] == ["evaluating: 16/56 img (29%)", "evaluating: 28/56 img (50%)",
                         "evaluating: 44/56 img (79%)", "evaluating: 56/56 img (100%)"]
    assert len(lines) == 4 + STEPS and lines[-1] == "training: 300/300 epoch (100%)"
    assert "\r" not in capsys.readouterr().err


def test_eval_into_a_log_file_writes_no_carriage_returns(tmp_path, exported, synth_data):
    log = tmp_path / "eval.log"
    with log.open("w") as fh:
        proc = subprocess.run([sys.executable, "-m", "anodet.cli", "eval", "--model", str(exported), "--data",
                               str(synth_data), "--out", str(tmp_path / "e"), "--no-report", "--batch", "1"],
                              stderr=fh, stdout=subprocess.PIPE, text=True, check=False, timeout=300)
    text = log.read_bytes().decode()  # read_text would turn each \r into a newline
    assert proc.returncode == 0, text
    assert "\r" not in text
    progress = [line for line in text.splitlines() if "evaluating:" in line]
    assert 1 <= len(progress) <= STEPS + 1, text
