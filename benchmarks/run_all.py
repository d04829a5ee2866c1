"""Run every benchmark script, one after another, each in its own process.

    .venv/bin/python benchmarks/run_all.py                 # full size (the soak takes ~30 min)
    .venv/bin/python benchmarks/run_all.py --quick         # smoke test of every script, ~2 min
    .venv/bin/python benchmarks/run_all.py --only forward_speed,runtime_overhead

Each script prints its markdown table and writes benchmarks/results/<name>.json; this one
prints them in turn and writes benchmarks/results/run_all.json (exit codes and durations).
benchmarks/tune_defaults.py is not part of the run (see its header); GPU rows are `anodet-bench`'s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import _common as C

SCRIPTS = ("forward_speed", "training_speed", "runtime_overhead", "memory_soak")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="pass --quick to every script")
    p.add_argument("--only", help=f"comma-separated subset of {', '.join(SCRIPTS)}")
    p.add_argument("--soak-frames", type=int, help="frames for memory_soak (default: its own)")
    p.add_argument("--threads", type=int, help="passed to every script")
    a = p.parse_args(argv)
    names = [n.strip() for n in a.only.split(",")] if a.only else list(SCRIPTS)
    unknown = sorted(set(names) - set(SCRIPTS))
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; valid: {', '.join(SCRIPTS)}")
    here = Path(__file__).resolve().parent
    results = []
    for name in names:
        cmd = [sys.executable, str(here / f"{name}.py")]
        if a.quick:
            cmd.append("--quick")
        if a.threads:
            cmd += ["--threads", str(a.threads)]
        if name == "memory_soak" and a.soak_frames:
            cmd += ["--frames", str(a.soak_frames)]
        print(f"\n## {name}\n", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, check=False).returncode
        results.append({"script": name, "returncode": rc, "seconds": round(time.perf_counter() - t0, 1),
                        "command": cmd})
    print("\n## summary\n")
    print(C.table(["benchmark", "exit code", "seconds"], [[r["script"], r["returncode"], r["seconds"]] for r in results]))
    print(f"\nwrote {C.write_result('run_all', {'quick': a.quick, 'runs': results})}")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
