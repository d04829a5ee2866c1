"""Forward pass of the default preset: eager PyTorch (reduce-first) vs the seed's operation order
vs ONNX Runtime CPU, batch 1, the same input, one process, rounds interleaved.

    .venv/bin/python benchmarks/forward_speed.py                       # random default-preset model
    .venv/bin/python benchmarks/forward_speed.py --checkpoint exp/checkpoints/best.pt
    .venv/bin/python benchmarks/forward_speed.py --quick               # 64 px, few runs: smoke test

The seed-faithful variant upsamples every stage to the feature size and then reduces it by half
(1920 channels for ResNet-50 layer1-4) with DFR autoencoder widths and latent 128. MACs count
every 2-D convolution. Writes benchmarks/results/forward_speed.json.
"""

from __future__ import annotations

import argparse
import sys

import _common as C

from anodet.bench.timing import summarize


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="trained checkpoint (default: random model of --preset)")
    p.add_argument("--preset", default="rgbd_full")
    p.add_argument("--image-size", type=int, help="override the preset's input size")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--threads", type=int, help="torch and ONNX Runtime intra-op threads")
    p.add_argument("--quick", action="store_true", help="64 px input, 1 warm-up, 3 runs")
    a = p.parse_args(argv)
    if a.quick:
        a.image_size, a.warmup, a.runs = a.image_size or 64, 1, 3

    import torch

    from anodet.bench.stages import ConvMacCounter, seed_detector
    from anodet.models.detector import load_detector
    from anodet.runtime.backends import open_backend

    if a.threads:
        torch.set_num_threads(a.threads)
    ckpt, onnx_path = C.model_for(a.checkpoint, a.preset, a.image_size, batch=1)
    det = load_detector(ckpt)
    seed = seed_detector(det)
    be = open_backend(onnx_path, "onnx-cpu", a.threads)
    size = det.cfg.data.image_size
    rgb, depth = C.sample_frames(1, size, seed=1)
    if det.cfg.model.in_channels == 3:
        depth = None
    rgb_t = torch.from_numpy(rgb)
    depth_t = torch.from_numpy(depth) if depth is not None else None

    def eager(model):
        def fn():
            with torch.no_grad():
                model(rgb_t, depth_t)
        return fn

    variants = {
        "seed-faithful order, eager PyTorch": eager(seed),
        "reduce-first (ours), eager PyTorch": eager(det),
        "reduce-first (ours), ONNX Runtime CPU": lambda: be.predict(rgb, depth),
    }
    macs = {}
    for name, model in (("seed-faithful order, eager PyTorch", seed), ("reduce-first (ours), eager PyTorch", det)):
        with torch.no_grad(), ConvMacCounter() as c:
            model(rgb_t, depth_t)
        macs[name] = c.macs / 1e9
    macs["reduce-first (ours), ONNX Runtime CPU"] = macs["reduce-first (ours), eager PyTorch"]
    times = C.interleaved(variants, warmup=a.warmup, runs=a.runs)
    ref = summarize(times["seed-faithful order, eager PyTorch"])["p50_ms"]
    rows, out = [], {}
    for name, t in times.items():
        s = summarize(t)
        s.update(gmac=macs[name], speedup_vs_seed=ref / s["p50_ms"], times_ms=t)
        out[name] = s
        rows.append([name, s["p50_ms"], s["p95_ms"], f"{s['gmac']:.2f}", f"{s['speedup_vs_seed']:.2f}x"])
    cfg = det.cfg
    print(f"{cfg.preset} {cfg.model.backbone} {size}x{size}, batch 1, {a.warmup} warm-up + {a.runs} interleaved "
          f"runs, torch threads {torch.get_num_threads()}, model: {'random weights' if a.checkpoint is None else ckpt}\n")
    print(C.table(["variant", "p50 ms", "p95 ms", "GMAC", "speed-up vs seed"], rows))
    result = {"settings": {**vars(a), "image_size": size, "checkpoint": str(ckpt), "onnx": str(onnx_path),
                           "torch_threads": torch.get_num_threads()}, "variants": out}
    print(f"\nwrote {C.write_result('forward_speed', result)}")
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
