"""Memory soak: resident memory of ``anodet-run`` over many synthetic frames (leak check).

    .venv/bin/python benchmarks/memory_soak.py                     # 5000 frames, random default model
    .venv/bin/python benchmarks/memory_soak.py --model m.onnx --frames 20000 --interval 5
    .venv/bin/python benchmarks/memory_soak.py --quick             # 64 px model, 60 frames

Starts ``anodet-run --source synthetic:N --events FILE`` as a child process and samples its
VmRSS from /proc every --interval seconds until it exits; the events file counts the frames
judged so far. After a warm-up of 10% of the frames (at least 10), growth = median RSS of the
last 10% of the samples vs the first 10%, in percent, and the trend is a least-squares slope in
MB per 1000 frames. It also checks /proc/PID/maps: torch must never load into the runtime. With the default model
on a 2-core CPU 5000 frames take about half an hour. Writes benchmarks/results/memory_soak.json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _common as C
import numpy as np

from anodet.bench.timing import rss_mb


def _torch_mapped(pid: int) -> bool | None:
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return None
    return "libtorch" in maps or "/torch/lib/" in maps


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="exported .onnx/.engine (default: random model of --preset, batch 1)")
    p.add_argument("--preset", default="rgbd_full")
    p.add_argument("--image-size", type=int)
    p.add_argument("--frames", type=int, default=5000)
    p.add_argument("--interval", type=float, default=2.0, help="seconds between RSS samples")
    p.add_argument("--backend", default="auto")
    p.add_argument("--threads", type=int)
    p.add_argument("--quick", action="store_true", help="64 px model, 100 frames, 0.1 s sampling")
    a = p.parse_args(argv)
    if a.quick:
        a.image_size, a.frames, a.interval = a.image_size or 64, 100, 0.1

    model = Path(a.model) if a.model else C.model_for(None, a.preset, a.image_size, batch=1)[1]
    exe = Path(sys.executable).with_name("anodet-run")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-c", "from anodet.cli import run_cmd; run_cmd()"]
    cmd += ["--model", str(model), "--source", f"synthetic:{a.frames}", "--backend", a.backend]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    C.WORK.mkdir(parents=True, exist_ok=True)
    log_path, events = C.WORK / "memory_soak.log", C.WORK / "memory_soak_events.jsonl"
    events.unlink(missing_ok=True)
    cmd += ["--events", str(events)]  # one JSON line per judged frame: our frame counter
    samples: list[tuple[float, int, float]] = []  # (seconds, frames judged, RSS MB)
    torch_seen = False
    frames_done = 0
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        fh = None
        try:
            while proc.poll() is None:
                rss = rss_mb(proc.pid)
                if fh is None and events.exists():
                    fh = open(events, "rb")  # noqa: SIM115 - read incrementally while the run writes
                if fh is not None:
                    frames_done += fh.read().count(b"\n")
                if rss is not None:
                    samples.append((time.monotonic() - t0, frames_done, rss))
                torch_seen = torch_seen or bool(_torch_mapped(proc.pid))
                time.sleep(a.interval)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(30)
            raise
        finally:
            if fh is not None:
                fh.close()
    seconds = time.monotonic() - t0
    tail = [ln for ln in log_path.read_text().splitlines() if "frames" in ln and "FPS" in ln]
    # Warm-up: the first 10% of the frames (at least 10): model loading, arenas, first batches.
    warm = max(10, a.frames // 10)
    post = [s for s in samples if s[1] >= warm]
    if proc.returncode != 0 or len(post) < 3:
        print(f"anodet-run exited with {proc.returncode}; {len(post)} RSS samples after {warm} warm-up frames "
              f"(need 3; lower --interval for short runs); see {log_path}", file=sys.stderr)
        sys.exit(1)
    rss = [s[2] for s in post]
    n = len(post)
    base = statistics.median(rss[: max(1, n // 10)])
    end = statistics.median(rss[-max(1, n // 10) :])
    slope = float(np.polyfit([s[1] for s in post], rss, 1)[0]) * 1000 if len({s[1] for s in post}) > 1 else 0.0
    growth = (end - base) / base * 100
    rows = [["frames", a.frames], ["duration", f"{seconds:.0f} s"], ["RSS samples after warm-up", n],
            [f"RSS after warm-up ({warm} frames; median of first 10% of samples)", f"{base:.1f} MB"],
            ["RSS at end (median of last 10% of samples)", f"{end:.1f} MB"],
            ["growth", f"{growth:+.2f}%"], ["trend after warm-up", f"{slope:+.2f} MB per 1000 frames" if a.frames >= 1000
             else "n/a (needs >= 1000 frames)"],
            ["max RSS", f"{max(s[2] for s in samples):.1f} MB"],
            ["torch loaded in anodet-run", "yes" if torch_seen else "no"]]
    print(f"anodet-run {model.name} --source synthetic:{a.frames} (backend {a.backend})"
          + (f": {tail[-1].split(': ', 1)[-1]}" if tail else "") + "\n")
    print(C.table(["", "value"], rows))
    result = {"settings": {**vars(a), "model": str(model), "command": cmd}, "seconds": seconds,
              "warmup_frames": warm, "rss_base_mb": base, "rss_end_mb": end, "growth_percent": growth,
              "trend_mb_per_1000_frames": slope, "max_rss_mb": max(s[2] for s in samples),
              "torch_loaded": torch_seen, "summary_line": tail[-1] if tail else None,
              "samples": [{"t_s": round(t, 2), "frames": f, "rss_mb": round(r, 2)} for t, f, r in samples]}
    print(f"\nwrote {C.write_result('memory_soak', result)}")
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
