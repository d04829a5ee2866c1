"""The visual report writes readable PNGs and an escaped, self-contained HTML page."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from anodet.errors import AnodetError
from anodet.evaluation.metrics import evaluate
from anodet.evaluation.report import miss_severity, save_curves, save_panel, write_html


def _frame(rng: np.random.Generator, size: int = 48):
    rgb = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    depth = rng.uniform(0.3, 0.5, (size, size)).astype(np.float32)
    depth[:5, :5] = 0.0  # missing
    gt = np.zeros((size, size), bool)
    gt[10:20, 12:30] = True
    amap = (rng.random((size, size)) * 0.4 + 0.6 * gt).astype(np.float32)
    return rgb, depth, amap, gt


def test_save_panel_variants(tmp_path):
    rng = np.random.default_rng(0)
    rgb, depth, amap, gt = _frame(rng)
    full = save_panel(tmp_path / "a.png", rgb, depth, amap, amap > 0.5, gt, "full")
    # RGB-only model, no GT, no predicted mask, map at a smaller (model) size than the RGB.
    small = cv2.resize(amap, (24, 24))
    bare = save_panel(tmp_path / "sub" / "b.png", rgb, None, small, None, None, "rgb only <&>")
    for path in (full, bare):
        img = cv2.imread(str(path))
        assert img is not None and img.shape[0] > 100 and img.shape[1] > 500
    with pytest.raises(AnodetError, match="uint8"):
        save_panel(tmp_path / "c.png", rgb.astype(np.float32), depth, amap, None, gt, "bad")


def test_save_panel_all_depth_missing(tmp_path):
    rgb, depth, amap, gt = _frame(np.random.default_rng(1))
    path = save_panel(tmp_path / "p.png", rgb, np.zeros_like(depth), amap, None, gt, "holes")
    assert cv2.imread(str(path)) is not None


def test_save_curves(tmp_path):
    rng = np.random.default_rng(2)
    frames = [_frame(rng) for _ in range(6)]
    labels = [1, 0, 1, 0, 1, 0]
    masks = [f[3] if lab else np.zeros_like(f[3]) for f, lab in zip(frames, labels)]
    maps = [f[2] for f in frames]
    scores = [m.max() for m in maps]
    path = save_curves(tmp_path / "curves.png", labels, scores, masks, maps)
    assert cv2.imread(str(path)) is not None
    # Without masks (and with one class only) the figure still comes out, with reasons.
    path = save_curves(tmp_path / "c2.png", [1, 1], scores[:2], None, maps[:2])
    assert cv2.imread(str(path)) is not None


def test_miss_severity_signs():
    assert miss_severity(1, 0.1, 0.5) == pytest.approx(0.4)  # missed defect
    assert miss_severity(0, 0.9, 0.5) == pytest.approx(0.4)  # false alarm
    assert miss_severity(1, 0.9, 0.5) < 0 and miss_severity(0, 0.2, 0.5) < 0


def test_write_html_orders_worst_misses_first_and_escapes(tmp_path):
    rng = np.random.default_rng(3)
    frames = [_frame(rng) for _ in range(4)]
    # name, label, score: severities 0.45 (missed defect), 0.35 (false alarm), -0.1, -0.4
    spec = [("caught", 1, 0.6), ("missed", 1, 0.05), ("calm", 0, 0.1), ("alarm", 0, 0.85)]
    rows = []
    for (name, label, score), (rgb, depth, amap, gt) in zip(spec, frames):
        save_panel(tmp_path / "panels" / f"{name}.png", rgb, depth, amap, None, gt, name)
        rows.append({"panel": f"panels/{name}.png", "rgb_path": f"/data/{name}.png",
                     "defect_type": "<script>x</script>" if name == "caught" else "scratch",
                     "label": label, "score": score, "anomalous": score > 0.5})
    labels = [r["label"] for r in rows]
    scores = [r["score"] for r in rows]
    masks = [f[3] if lab else None for f, lab in zip(frames, labels)]
    maps = [f[2] for f in frames]
    metrics = evaluate(labels, scores, masks, maps, [r["defect_type"] for r in rows], 0.5)
    save_curves(tmp_path / "curves.png", labels, scores, masks, maps)
    index = write_html(tmp_path, metrics, rows)

    text = index.read_text(encoding="utf-8")
    assert index == tmp_path / "index.html"
    order = [text.index(f"panels/{name}.png") for name in ("missed", "alarm", "caught", "calm")]
    assert order == sorted(order)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "image_auroc" in text and f"{metrics['au_pro']:.4f}" in text
    assert "scratch" in text and "curves.png" in text
    assert "http" not in text  # nothing fetched from the internet
    # An absolute panel path inside the report folder becomes relative.
    rows[0]["panel"] = str(tmp_path / "panels" / "caught.png")
    assert "src='panels/caught.png'" in write_html(tmp_path, metrics, rows).read_text()
    with pytest.raises(AnodetError, match="lacks"):
        write_html(tmp_path, metrics, [{"panel": "x.png"}])
