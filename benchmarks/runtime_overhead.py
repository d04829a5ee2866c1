"""What the streaming runtime adds on top of the model: anodet.runtime.run on a replayed folder
(or RealSense recording) vs bare ``InferenceSession.run`` on the same preprocessed frames.

    .venv/bin/python benchmarks/runtime_overhead.py                # random default model, synthetic .db3 recording
    .venv/bin/python benchmarks/runtime_overhead.py --model m.onnx --source data/widget/test
    .venv/bin/python benchmarks/runtime_overhead.py --quick        # 64 px model, 8 frames

The runtime's per-frame latency comes from its own events (JSON lines): ``total`` is frame
arrival to sinks done (includes waiting in the playback queue behind the previous frame),
``service`` = preprocess + inference + postprocess. Bare session.run gets frames already
preprocessed. Both use the same intra-op threads. Writes benchmarks/results/runtime_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import _common as C

from anodet.bench.timing import summarize


def _record(root: Path, path: Path) -> str:
    """Write the test frames of a synthetic category to a real RealSense .db3 recording."""
    from anodet.data.samples import discover
    from anodet.preprocess import load_depth, load_rgb
    from anodet.runtime.sources.recorder import write_recording

    path.unlink(missing_ok=True)
    frames = [(load_rgb(s.rgb_path), load_depth(s.depth_path)) for s in discover(root).test]
    write_recording(path, frames, fps=30)
    return str(path)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="exported .onnx (default: random model of --preset, batch 1)")
    p.add_argument("--preset", default="rgbd_full")
    p.add_argument("--image-size", type=int)
    p.add_argument("--source", help="folder with rgb/ + xyz|depth/ pairs or a .bag/.db3 recording "
                   "(default: a synthetic test folder)")
    p.add_argument("--frames", type=int, default=40, help="frames in the generated folder")
    p.add_argument("--threads", type=int)
    p.add_argument("--warmup", type=int, default=2, help="bare session.run warm-up calls")
    p.add_argument("--folder", action="store_true",
                   help="replay the generated frames as a folder instead of a RealSense .db3 recording")
    p.add_argument("--quick", action="store_true", help="64 px model, 8 frames")
    a = p.parse_args(argv)
    if a.quick:
        a.image_size, a.frames = a.image_size or 64, min(a.frames, 8)

    import onnxruntime as ort

    from anodet.artifact import INPUT_DEPTH, INPUT_RGB, OUTPUTS, info_from_metadata
    from anodet.bench.timing import measure
    from anodet.preprocess import prepare_frame
    from anodet.runtime import open_source, run

    model = Path(a.model) if a.model else C.model_for(None, a.preset, a.image_size, batch=1)[1]
    if a.source:
        source = a.source
    else:
        from anodet.data.synthetic import write_dataset

        per_type = max(1, a.frames // 4)
        root = write_dataset(C.WORK / "runtime_overhead_data", size=max(a.image_size or 256, 256), n_train=1,
                             n_val=0, n_test_per_type=per_type, seed=5)
        source = str(root / "test")
        if not a.folder:  # the target is about a replayed recording: write one with the RealSense SDK
            source = _record(root, C.WORK / "runtime_overhead.db3")

    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events.jsonl"
        summary = run(model, source, backend="onnx-cpu", events=events, threads=a.threads, stats_every=0)
        recs = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]

    def lat(rec, key):
        return rec["latency_ms"][key]

    rt = {k: [lat(r, k) for r in recs] for k in ("queue", "preprocess", "inference", "postprocess", "total")}
    rt["service"] = [lat(r, "processing") for r in recs]  # preprocess + inference + postprocess

    # Bare: the same frames, preprocessed beforehand, through a plain ONNX Runtime session.
    opts = ort.SessionOptions()
    if a.threads:
        opts.intra_op_num_threads, opts.inter_op_num_threads = a.threads, 1
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    info = info_from_metadata(sess.get_modelmeta().custom_metadata_map, str(model))
    feeds = []
    for frame in open_source(source):
        if frame.rgb is None:
            continue
        r, d = prepare_frame(frame.rgb, frame.depth if info.needs_depth else None, info.preprocess)
        feed = {INPUT_RGB: r[None]}
        if info.needs_depth:
            feed[INPUT_DEPTH] = d[None]
        feeds.append(feed)
    n = len(feeds)
    bare = measure(lambda feed: sess.run(list(OUTPUTS), feed), warmup=a.warmup, runs=n,
                   inputs=lambda i: (feeds[i % n],))

    stats = {k: summarize(v) for k, v in rt.items()}
    stats["bare session.run"] = summarize(bare)
    b50 = stats["bare session.run"]["p50_ms"]
    rows = [["bare session.run (preprocessed frames)", b50, stats["bare session.run"]["p95_ms"], "1.00x"]]
    for key, label in (("inference", "runtime: backend.predict"), ("preprocess", "runtime: prepare_frame"),
                       ("postprocess", "runtime: postprocess + sinks"), ("queue", "runtime: waiting in queue"),
                       ("service", "runtime: preprocess + inference + post"),
                       ("total", "runtime: end to end (arrival -> done)")):
        s = stats[key]
        rows.append([label, s["p50_ms"], s["p95_ms"], f"{s['p50_ms'] / b50:.2f}x" if key in ("inference", "service",
                                                                                                 "total") else ""])
    print(f"{model.name} on {source}: {summary.frames} frames, {summary.fps:.2f} FPS through anodet.runtime.run "
          f"(threads {a.threads or 'default'})\n")
    print(C.table(["path", "p50 ms/frame", "p95 ms/frame", "vs bare"], rows))
    overhead = stats["service"]["p50_ms"] - b50
    print(f"\nruntime overhead per frame (service p50 - bare p50): {overhead:.1f} ms "
          f"({overhead / b50 * 100:.1f}% of bare inference)")
    print("queue wait: playback reads ahead and blocks on a full queue, so a frame waits behind the "
          "queued ones; a live camera no faster than the model sees ~0 (it drops the oldest instead).")
    result = {"settings": {**vars(a), "model": str(model), "source": str(source)}, "frames": summary.frames,
              "fps": summary.fps, "stats_ms": stats, "overhead_ms": overhead, "runtime_ms": rt, "bare_ms": bare}
    print(f"wrote {C.write_result('runtime_overhead', result)}")
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
