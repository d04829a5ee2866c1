"""Recording playback under load: every recorded frame judged exactly once, in order, every time.

Writes real RealSense ``.db3`` recordings (software device, synthetic frames) of each length,
starts CPU burners (one busy process per core by default, competing with the player and the
model), and plays each recording ``--reps`` times through ``anodet.runtime.run`` with an
events file. A repetition passes when the events name frames 0..N-1 in order and the summary
counts N judged, 0 lost, 0 skipped. Writes benchmarks/results/playback_soak.json.

    nice -n 10 python benchmarks/playback_soak.py --model model.onnx --lengths 30,300 --reps 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, table, write_result


def frames(n: int, h: int = 64, w: int = 64):
    for i in range(n):
        rng = np.random.default_rng(i)
        depth = np.full((h, w), 0.5, np.float32)
        yield rng.integers(0, 256, (h, w, 3), dtype=np.uint8), depth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, type=Path, help="an anodet .onnx export")
    ap.add_argument("--lengths", default="30,300")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--burners", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    from anodet.runtime import run
    from anodet.runtime.sources.recorder import write_recording

    work = WORK / "playback_soak"
    work.mkdir(parents=True, exist_ok=True)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burners)]
    results = []
    try:
        for n in (int(x) for x in args.lengths.split(",")):
            rec = work / f"frames{n}.db3"
            assert write_recording(rec, frames(n)) == n
            for rep in range(args.reps):
                events = work / f"events{n}_{rep}.jsonl"
                events.unlink(missing_ok=True)
                t0 = time.perf_counter()
                s = run(args.model, str(rec), events=events, stats_every=0)
                names = [json.loads(line)["name"] for line in events.read_text().splitlines()]
                exact = names == [f"frame {i}" for i in range(n)]
                results.append({"frames": n, "rep": rep, "judged": s.frames, "lost": s.lost, "skipped": s.skipped,
                                "restarts": s.restarts, "mispaired": s.mispaired,
                                "failed": s.failed, "in_order_exactly_once": exact,
                                "seconds": time.perf_counter() - t0})
                print(results[-1], flush=True)
                write_result("playback_soak", {"settings": {**vars(args), "model": str(args.model)},
                                               "partial": True, "runs": results})
    finally:
        for b in burners:
            b.kill()
            b.wait()
    ok = all(r["in_order_exactly_once"] and r["judged"] == r["frames"] and not r["lost"] for r in results)
    per_len = {}
    for r in results:
        d = per_len.setdefault(r["frames"], {"reps": 0, "passed": 0})
        d["reps"] += 1
        d["passed"] += int(r["in_order_exactly_once"] and r["judged"] == r["frames"] and not r["lost"])
    path = write_result("playback_soak", {"settings": {**vars(args), "model": str(args.model)}, "all_passed": ok,
                                          "per_length": per_len, "runs": results})
    print(table(["frames", "repetitions", "every frame judged once, in order"],
                [[n, d["reps"], d["passed"]] for n, d in per_len.items()]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
