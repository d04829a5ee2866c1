"""The import graph of ``anodet``: no cycle, no arrow up a layer, no torch in the runtime; and
no module over 300 lines.

The graph is read from the source with ``ast`` (nothing is imported). What counts as an arrow
A -> B: every ``import``/``from ... import`` of an anodet module B in A, wherever it stands: at
module level, inside a function (a lazy import that breaks a cycle is still an arrow) and under
``if TYPE_CHECKING:`` (a type the module needs is still a dependency). ``from P import n`` points
at ``P.n`` when that is a module, else at ``P``; relative imports are resolved. The backend table
names its modules as strings, so each row adds the arrow backends.choice (which loads them) ->
its backend module.

For "reaches torch", importing a module also runs its parent packages' ``__init__``, so those
arrows are added there (and only there: a package re-exporting its submodules is no cycle).
Deprecated aliases (DEPRECATED) point up on purpose, for one release; nothing may import them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import anodet
from anodet.runtime.backends.table import TABLE

ROOT = Path(anodet.__file__).parent
TORCH = {"torch", "torchvision", "timm"}  # third-party packages that are (or import) torch
RUNTIME, SERVE = "anodet.runtime", "anodet.serve"
DATA = {"anodet.runtime.frames", "anodet.runtime.regions"}  # the types every layer shares
# sub-package -> the runtime modules outside it that it may import (besides itself)
LAYERS = {
    "anodet.runtime.backends": DATA,
    "anodet.runtime.sources": DATA,
    "anodet.runtime.sinks": DATA,
}
DEPRECATED = {f"anodet.runtime.{m}" for m in (
    "openvino_backend", "realsense", "recorder", "tensorrt_backend", "triton_backend",
    "triton_model", "triton_server")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def read_imports(name: str, path: Path, modules: set[str]) -> tuple[set[str], set[str]]:
    """(anodet modules, third-party top-level packages) that ``name`` imports anywhere."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inner, outer = set(), set()

    def add(target: str) -> None:
        if target.split(".")[0] == "anodet":
            inner.add(target)
        else:
            outer.add(target.split(".")[0])

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = node.module if not node.level else ".".join(p for p in (base, node.module) if p)
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                add(candidate if candidate in modules else source)
    return {t for t in inner if t in modules}, outer


def build_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """({module: anodet modules it imports}, {module: third-party packages it imports})."""
    graph, external = {}, {}
    for name, path in MODULES.items():
        graph[name], external[name] = read_imports(name, path, set(MODULES))
    graph["anodet.runtime.backends.choice"] |= {f"anodet.runtime.backends.{s.module}" for s in TABLE}
    return graph, external


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def with_parents(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph plus, for every arrow to a.b.c, arrows to a and a.b: importing runs them."""
    out = {}
    for name, targets in graph.items():
        out[name] = set(targets)
        for target in targets:
            parts = target.split(".")
            out[name] |= {".".join(parts[:i]) for i in range(1, len(parts))}
    return out


def torch_reachers(graph: dict[str, set[str]], external: dict[str, set[str]]) -> dict[str, str]:
    """{module: why it reaches torch} for every module from which an import chain gets to torch."""
    why = {m: f"{m} imports {', '.join(sorted(e & TORCH))}" for m, e in external.items() if e & TORCH}
    full = with_parents(graph)
    changed = True
    while changed:
        changed = False
        for name, targets in full.items():
            hit = next((t for t in sorted(targets) if t in why), None)
            if name not in why and hit is not None:
                why[name] = f"{name} -> {why[hit]}"
                changed = True
    return why


def layer_violations(graph: dict[str, set[str]], external: dict[str, set[str]]) -> list[str]:
    """Every arrow that breaks the runtime's layering rules (see anodet/runtime/__init__.py)."""
    bad = []
    reach = torch_reachers(graph, external)
    runtime = [m for m in graph if (m == RUNTIME or m.startswith(RUNTIME + ".")) and m not in DEPRECATED]
    for name in runtime:
        if name in reach:
            bad.append(f"{name} reaches torch: {reach[name]}")
        for target in sorted(graph[name]):
            if target == SERVE or target.startswith(SERVE + "."):
                bad.append(f"{name} imports {target}: the edge runtime never loads anodet.serve")
            if target in DEPRECATED:
                bad.append(f"{name} imports the deprecated alias {target}")
            if not (target == RUNTIME or target.startswith(RUNTIME + ".")):
                continue
            if name in DATA and target not in DATA:
                bad.append(f"{name} imports {target}: the data types import no other runtime module")
            for layer, allowed in LAYERS.items():
                inside = name == layer or name.startswith(layer + ".")
                if inside and not (target == layer or target.startswith(layer + ".")) and target not in allowed:
                    bad.append(f"{name} imports {target}: {layer} may import only itself and "
                               f"{', '.join(sorted(allowed))} of the runtime")
    for name, targets in graph.items():
        for target in sorted(targets & DEPRECATED):
            if name not in DEPRECATED:
                bad.append(f"{name} imports the deprecated alias {target}")
    return sorted(set(bad))


@pytest.fixture(scope="module")
def graph():
    return build_graph()


def test_the_graph_sees_the_package(graph):
    arrows, external = graph
    assert {"anodet.runtime.pipeline", "anodet.runtime.backends.table", "anodet.serve.triton_model"} <= set(arrows)
    assert "anodet.runtime.frames" in arrows["anodet.runtime.pipeline"]  # a module-level arrow
    assert "anodet.runtime.sources.realsense" in arrows["anodet.runtime.sources.forms"]  # in a function
    assert "anodet.runtime.backends.tensorrt" in arrows["anodet.runtime.backends.choice"]  # a table row
    assert "torch" in external["anodet.train"]


def test_no_import_cycle_under_anodet(graph):
    cycle = find_cycle(graph[0])
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_runtime_layers_hold(graph):
    assert layer_violations(*graph) == []


def test_the_checks_catch_violations():
    """The checks themselves, on a small graph with one of each violation."""
    graph = {
        "anodet.runtime.frames": {"anodet.runtime.sinks.video"},  # data type up to a sink
        "anodet.runtime.sinks.video": {"anodet.runtime.frames", "anodet.runtime.backends.onnx"},
        "anodet.runtime.backends.onnx": {"anodet.serve.triton_model"},
        "anodet.runtime.sources.synthetic": {"anodet.data.synthetic"},
        "anodet.data.synthetic": set(),
        "anodet.data": {"anodet.data.samples"},
        "anodet.data.samples": set(),
        "anodet.serve.triton_model": set(),
    }
    external = {name: set() for name in graph}
    external["anodet.data.samples"] = {"torch"}
    assert find_cycle(graph) == ["anodet.runtime.frames", "anodet.runtime.sinks.video", "anodet.runtime.frames"]
    found = "\n".join(layer_violations(graph, external))
    assert "anodet.runtime.frames imports anodet.runtime.sinks.video" in found
    assert "anodet.runtime.sinks.video imports anodet.runtime.backends.onnx" in found
    assert "anodet.runtime.backends.onnx imports anodet.serve.triton_model" in found
    # a parent package's __init__ runs on import: anodet.data -> samples -> torch
    assert ("anodet.runtime.sources.synthetic reaches torch: anodet.runtime.sources.synthetic -> "
            "anodet.data -> anodet.data.samples imports torch") in found


def test_no_module_over_300_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 300}
    assert long == {}, f"split these modules (lines): {long}"
