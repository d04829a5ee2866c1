"""Refuse an output path that names an input of the same command. Torch-free, standard library.

``anodet-run --model m.onnx --events m.onnx`` would append JSON lines to the model; ``--out``
inside the dataset would mix results into the training images. Every command calls
``refuse_aliases`` with what it reads and what it writes before it starts any work.

Two paths are the same file when their resolved paths are equal (``./``, ``..`` and symlinks)
or when ``os.stat`` gives the same device and inode (hard links, bind mounts). An output lies
inside an input folder, or an output folder contains an input, when one of the other's
existing ancestors is the same folder by either test.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

from anodet.errors import AnodetError

PathArg = str | os.PathLike | None


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def _identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of an existing path; None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _same(a: Path, b: Path) -> bool:
    if _resolved(a) == _resolved(b):
        return True
    ida = _identity(a)
    return ida is not None and ida == _identity(b)


def _ancestors(path: Path) -> Iterator[Path]:
    """The folders above ``path`` (resolved), nearest first."""
    yield from _resolved(path).parents


def _inside(path: Path, folder: Path) -> bool:
    """True when ``path`` lies somewhere below ``folder`` (by path or by inode)."""
    target = _resolved(folder)
    ident = _identity(folder)
    for parent in _ancestors(path):
        if parent == target or (ident is not None and _identity(parent) == ident):
            return True
    return False


def model_inputs(path: PathArg, option: str = "--model") -> dict[str, Path]:
    """An exported model's files by name: an engine's ``.json`` sidecar, an IR's ``.bin``."""
    if path is None:
        return {}
    path = Path(path)
    files = {option: path}
    if path.suffix == ".engine":
        files[f"the sidecar of {option}"] = path.with_name(path.name + ".json")
    elif path.suffix == ".xml":
        files[f"the weights of {option}"] = path.with_suffix(".bin")
    return files


def refuse_aliases(
    outputs: Mapping[str, PathArg],
    inputs: Mapping[str, PathArg],
    *,
    folders: Collection[str] = (),
) -> None:
    """AnodetError when an output would overwrite, contain or sit inside an input.

    outputs and inputs map the option that names a path (e.g. "--events", "--model") to it;
    None entries and inputs that do not exist are ignored. ``folders`` names the outputs that
    are folders: those must not contain an input either. Two outputs must differ as well.
    """
    named_inputs = [(what, Path(p)) for what, p in inputs.items() if p is not None and os.path.lexists(p)]
    named_outputs = [(what, Path(p)) for what, p in outputs.items() if p is not None and str(p) != "-"]
    for what, out in named_outputs:
        for source, inp in named_inputs:
            if _same(out, inp):
                _refuse(f"{what} {out} is the same file as {source} {inp}")
            if inp.is_dir() and _inside(out, inp):
                _refuse(f"{what} {out} lies inside {source} {inp}")
            if what in folders and _inside(inp, out):
                _refuse(f"{what} {out} contains {source} {inp}")
    for i, (what, out) in enumerate(named_outputs):
        for other, out2 in named_outputs[i + 1 :]:
            if _same(out, out2):
                raise AnodetError(f"{what} {out} and {other} {out2} are the same path; give each output its own")


def _refuse(relation: str) -> None:
    raise AnodetError(f"{relation}: writing there would destroy or change an input; choose another path")
