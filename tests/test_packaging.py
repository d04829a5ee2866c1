"""The built wheel holds every module of the source tree (an editable install hides a missing one)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_every_module(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("anodet-*.whl")
    in_wheel = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")}
    in_tree = {p.relative_to(ROOT).as_posix() for p in (ROOT / "anodet").rglob("*.py")}
    assert in_tree - in_wheel == set()
    packages = {Path(p).parent for p in in_tree}
    assert all((ROOT / d / "__init__.py").is_file() for d in packages), "a package without __init__.py"
