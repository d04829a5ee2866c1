"""Train on one kind of depth, stream another through the runtime: do real sensors break it?

Cases (train data -> streamed frames, both from ``anodet-synth`` with the same seeds):
  ideal_to_z16   float depth -> a RealSense .db3 recording of the held-out test frames, written
                 with the SDK's software device (z16, depth units 1 mm, the D4xx default)
  ideal_to_float float depth -> the same test frames from the folder (the in-distribution reference)
  z16_to_z16     float depth rounded to 1 mm (what a z16 capture stores) -> the z16 recording
  d435_to_d435   ``--sensor d435`` data -> a z16 recording of its test frames
  ideal_to_d435  float depth -> the z16 recording of the d435 test frames (a new camera)
Each trained model is exported to ONNX and streamed with ``anodet.runtime.run`` (onnx-cpu), as
``anodet-run`` does; verdicts come from its events. Variants are config overrides (the
depth path and its augmentation); results are merged into benchmarks/results/sensor_cross.json by (preset, variant,
case, size), so the suite can be run in parts.

    nice -n 10 .venv/bin/python benchmarks/sensor_cross.py --variants sigma0,sigma2 \\
        --cases ideal_to_z16,ideal_to_float,z16_to_z16,d435_to_d435
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

from anodet import config as cfgmod
from anodet.data.sensor import depth_to_xyz, quantise
from anodet.data.synthetic import TEST_TYPES, write_dataset
from anodet.evaluation.metrics import image_auroc
from anodet.preprocess import load_depth, load_rgb

log = logging.getLogger("sensor_cross")

CASES = {  # train data -> (test frames of which data, streamed as a z16 recording or a folder)
    "ideal_to_z16": ("ideal", "ideal", "z16"),
    "ideal_to_float": ("ideal", "ideal", "float"),
    "z16_to_z16": ("z16", "z16", "z16"),
    "d435_to_d435": ("d435", "d435", "z16"),
    "ideal_to_d435": ("ideal", "d435", "z16"),
}
VARIANTS = {  # config-section overrides of the preset; each states its depth augmentation, so a
    # row means the same whatever the preset's default is (rgbd_lite now ships with q1mm)
    "as_shipped": {},  # the preset as this anodet ships it, whatever that is
    "sigma0": {"data": {"depth_sigma": 0.0}, "train": {"depth_augment_units": []}},
    "sigma1": {"data": {"depth_sigma": 1.0}, "train": {"depth_augment_units": []}},
    "sigma2": {"data": {"depth_sigma": 2.0}, "train": {"depth_augment_units": []}},
    "sigma3": {"data": {"depth_sigma": 3.0}, "train": {"depth_augment_units": []}},
    "q1mm": {"data": {"depth_sigma": 0.0}, "train": {"depth_augment_units": [0.001]}},  # D4xx default unit
    "sigma2_q1mm": {"data": {"depth_sigma": 2.0}, "train": {"depth_augment_units": [0.001]}},
    # q1mm with the depth rendering at half the gain (issue 12 item 5's sweep favoured 0.5)
    "q1mm_gain0.5": {"data": {"depth_sigma": 0.0}, "model": {"depth_gain": 0.5},
                     "train": {"depth_augment_units": [0.001]}},
}


def make_data(kind: str, work: Path, a: argparse.Namespace) -> Path:
    """The synthetic category for one kind of training depth (ideal, z16, d435)."""
    root = work / "data" / kind / "widget"
    if (root / "anodet_synthetic.json").is_file():
        return root
    sensor = "d435" if kind == "d435" else "ideal"
    root = write_dataset(work / "data" / kind, size=a.size, n_train=a.n_train, n_val=a.n_val,
                         n_test_per_type=a.n_test, seed=a.seed, sensor=sensor)
    if kind == "z16":  # what a z16 capture stores: the same frames in whole millimetres
        import tifffile

        for path in root.glob("*/*/xyz/*.tiff"):
            depth = quantise(load_depth(path), 0.001)
            tifffile.imwrite(path, depth_to_xyz(depth), photometric="minisblack", planarconfig="contig")
    return root


def test_frames(root: Path) -> list[tuple[str, Path, Path]]:
    """(type, rgb path, xyz path) of every test frame, in a fixed order."""
    out = []
    for kind in TEST_TYPES:
        for rgb in sorted((root / "test" / kind / "rgb").glob("*.png")):
            out.append((kind, rgb, rgb.parent.parent / "xyz" / f"{rgb.stem}.tiff"))
    return out


def make_recording(frames: list, path: Path) -> Path:
    """A z16 (1 mm) .db3 of the test frames, written by the SDK's software device."""
    from anodet.runtime.sources.recorder import write_recording

    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        pairs = ((load_rgb(r), load_depth(x)) for _, r, x in frames)
        n = write_recording(path, pairs, depth_units=0.001)
        assert n == len(frames), (n, len(frames))
    return path


def train_model(preset: str, variant: str, kind: str, data: Path, work: Path, a) -> Path:
    """Train (or reuse) and export one model; returns the .onnx path."""
    from anodet.export.onnx import export_onnx
    from anodet.train import train

    out = work / "models" / f"{preset}-{variant}-{kind}"
    onnx_path = out / "model.onnx"
    if onnx_path.is_file():
        return onnx_path
    over = VARIANTS[variant]
    raw = {"preset": preset, "data": {"image_size": a.size, **over.get("data", {})},
           "model": over.get("model", {}), "train": {"epochs": a.epochs, **over.get("train", {})}}
    cfg = cfgmod.from_dict(raw, source=f"variant {variant}")
    t0 = time.perf_counter()
    res = train(cfg, data, out, weights=a.weights)
    log.info("trained %s in %.0f s (%d epochs)", out.name, time.perf_counter() - t0, res.epochs_run)
    export_onnx(res.best_checkpoint, onnx_path, force=True)
    return onnx_path


def stream(model: Path, source: str, labels: dict[str, str] | None, events: Path) -> dict:
    """Run the model over a source; flagged shares of good and defective parts, AUROC."""
    from anodet.runtime import run

    events.unlink(missing_ok=True)
    summary = run(model, source, backend="onnx-cpu", events=events)
    recs = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    if labels is None:  # folder: truth from the layout, type from nothing (good vs defect only)
        kinds = ["good" if not r["truth"] else "defect" for r in recs]
    else:  # recording: frame numbers are the order the frames were written in
        kinds = [labels[r["name"]] for r in recs]
    flagged = np.array([r["anomalous"] for r in recs])
    good = np.array([k == "good" for k in kinds])
    per_type = {k: float(flagged[[x == k for x in kinds]].mean()) for k in sorted(set(kinds)) if k != "good"}
    return {"frames": len(recs), "good": int(good.sum()), "defective": int((~good).sum()),
            "good_flagged": float(flagged[good].mean()), "defect_flagged": float(flagged[~good].mean()),
            "flagged_by_type": per_type, "image_auroc": image_auroc((~good).astype(int), [r["score"] for r in recs]),
            "skipped": summary.skipped, "failed": summary.failed, "lost": summary.lost}


def merge_row(row: dict) -> list[dict]:
    """Add or replace one (preset, variant, case, size) row in the results file; return all rows."""
    path = C.RESULTS / "sensor_cross.json"
    old = json.loads(path.read_text()).get("rows", []) if path.is_file() else []
    def key(r: dict) -> tuple:
        return r["preset"], r["variant"], r["case"], r["settings"]["size"]

    rows = [r for r in old if key(r) != key(row)] + [row]
    C.write_result("sensor_cross", {"rows": rows})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=C.WORK / "sensor_cross")
    ap.add_argument("--presets", default="rgbd_full")
    ap.add_argument("--variants", default="sigma0,sigma2")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--weights", default="none")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--n-train", type=int, default=80)
    ap.add_argument("--n-val", type=int, default=30)
    ap.add_argument("--n-test", type=int, default=40, help="test frames per type (good + 3 defects)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for preset in a.presets.split(","):
        for variant in a.variants.split(","):
            for case in a.cases.split(","):
                train_kind, test_kind, stream_kind = CASES[case]
                data = make_data(train_kind, a.work, a)
                model = train_model(preset, variant, train_kind, data, a.work, a)
                test_data = make_data(test_kind, a.work, a)
                frames = test_frames(test_data)
                ev = a.work / "events" / f"{preset}-{variant}-{case}.jsonl"
                ev.parent.mkdir(parents=True, exist_ok=True)
                if stream_kind == "float":
                    got = stream(model, str(test_data / "test"), None, ev)
                else:
                    rec = make_recording(frames, a.work / "recordings" / f"{test_kind}-test.db3")
                    labels = {f"frame {i}": kind for i, (kind, _, _) in enumerate(frames)}
                    got = stream(model, str(rec), labels, ev)
                settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
                row = {"preset": preset, "variant": variant, "case": case, "overrides": VARIANTS[variant],
                       "settings": settings, **got}
                log.info("%s", json.dumps(row))
                rows = merge_row(row)
    header = ["preset", "variant", "case", "good flagged %", "defective flagged %", "image AUROC", "frames"]
    print(C.table(header, [[r["preset"], r["variant"], r["case"], 100 * r["good_flagged"], 100 * r["defect_flagged"],
                            f"{r['image_auroc']:.3f}", r["frames"]] for r in rows]))


if __name__ == "__main__":
    main()
