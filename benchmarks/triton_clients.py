"""Triton server throughput and latency for 1, 4 and 8 concurrent clients (CPU, python flavour).

The tiny trained model of benchmarks/openvino_vs_ort.py (same --size, same cache) is exported
with ``--flavour python`` and served by the tritonserver bundled in nvidia-pytriton on loopback
ports. Each client is a thread with its own gRPC connection that sends one camera-resolution
frame per request (--frame px; the server resizes and preprocesses it) and waits for the
verdict, for --seconds after a warm-up. frames/s = all answered frames / wall time; latency is
per request as the client sees it; mean batch = inferences / model executions from Triton's
statistics (what the dynamic batcher joined). Client and server share this machine's cores.

    .venv/bin/python benchmarks/triton_clients.py --size 128 --seconds 20
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, table, write_result
from openvino_vs_ort import make_model

from anodet.bench.timing import percentile


def _stats(url: str, name: str) -> tuple[int, int]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    stats = client.get_inference_statistics(name).model_stats[0]
    client.close()
    return stats.inference_count, stats.execution_count


def measure_clients(url: str, name: str, n: int, frames: list, seconds: float, warmup: float) -> dict:
    """``n`` clients streaming ``frames`` round-robin for ``seconds``; throughput and latency."""
    from anodet.runtime.backends.triton import TritonBackend

    clients = [TritonBackend(url, name) for _ in range(n)]
    latencies: list[list[float]] = [[] for _ in range(n)]
    start, stop_at = threading.Barrier(n + 1), [0.0, 0.0]  # measurement window [begin, end]
    errors: list[Exception] = []

    def stream(i: int) -> None:
        try:
            start.wait()
            k = i
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at[1]:
                    return
                f = frames[k % len(frames)]
                clients[i].predict_camera(f.rgb[None], f.depth[None])
                t1 = time.perf_counter()
                if t0 >= stop_at[0]:  # requests started in the warm-up are not counted
                    latencies[i].append((t1 - t0) * 1000.0)
                k += n
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    now = time.perf_counter()
    stop_at[:] = [now + warmup, now + warmup + seconds]
    start.wait()
    time.sleep(warmup)
    before = _stats(url, name)
    for t in threads:
        t.join()
    after = _stats(url, name)
    for c in clients:
        c.close()
    if errors:
        raise errors[0]
    flat = [x for per in latencies for x in per]
    inferences, executions = after[0] - before[0], after[1] - before[1]
    return {"clients": n, "frames": len(flat), "seconds": seconds, "fps": len(flat) / seconds,
            "p50_ms": percentile(flat, 50), "p95_ms": percentile(flat, 95),
            "mean_batch": inferences / executions if executions else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="model input size (px)")
    ap.add_argument("--frame", type=int, default=256, help="camera frame side sent by the clients (px)")
    ap.add_argument("--clients", default="1,4,8")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--instances", type=int, default=1, help="model instances on the server")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads per instance")
    ap.add_argument("--queue-delay-us", type=int, default=2000)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--work", type=Path, default=WORK / "openvino")
    ap.add_argument("--name", default="triton_clients")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from anodet.export.triton import write_repository
    from anodet.runtime.sources import SyntheticSource
    from anodet.serve.triton_server import TritonServer

    args.work.mkdir(parents=True, exist_ok=True)
    _, model = make_model(args.work, args.size)
    repo = args.work / "triton_repo"
    write_repository(model, repo, flavour="python", max_batch=args.max_batch, instances=args.instances,
                     threads=args.threads, queue_delay_us=args.queue_delay_us, force=True)
    frames = list(SyntheticSource(32, size=args.frame, seed=1))
    results = []
    with TritonServer(repo) as server:
        for n in (int(c) for c in args.clients.split(",")):
            results.append(measure_clients(server.grpc_url, "anodet", n, frames, args.seconds, args.warmup))
            print(f"{n} clients: {results[-1]['fps']:.1f} frames/s", flush=True)
    base = results[0]["fps"]
    rows = [[r["clients"], r["fps"], f"{r['fps'] / base:.2f}x", r["p50_ms"], r["p95_ms"], f"{r['mean_batch']:.2f}"]
            for r in results]
    text = table(["clients", "frames/s", "vs 1 client", "p50 ms", "p95 ms", "mean batch"], rows)
    print(text)
    path = write_result(args.name, {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        | {"flavour": "python", "server": "tritonserver from nvidia-pytriton 0.7.0 (Triton 2.51), CPU",
           "command": " ".join(sys.argv)},
        "results": results, "table": text})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
