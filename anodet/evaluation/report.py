"""The visual report: per-image panels, ROC/PRO curves and a self-contained HTML page.

Figures are drawn on matplotlib ``Figure`` objects with the Agg canvas directly, never
through pyplot, so the library neither changes the user's backend nor leaks open figures.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cv2
import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from anodet.errors import AnodetError
from anodet.evaluation.metrics import au_pro, fill_normal_masks, pro_curve

MISSING_DEPTH_COLOUR = "magenta"  # no real depth map is magenta, so holes stand out
GT_COLOUR = (0, 255, 0)  # ground-truth contours, RGB
_PLOT_POINTS = 4000  # curves with millions of points are decimated to this for drawing


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _fit(img: np.ndarray | None, hw: tuple[int, int], nearest: bool) -> np.ndarray | None:
    """Resize a map/mask to the RGB size (maps come at model size, RGB at camera size)."""
    if img is None or img.shape[:2] == hw:
        return img
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    src = img.astype(np.uint8) if img.dtype == bool else img.astype(np.float32)
    out = cv2.resize(src, (hw[1], hw[0]), interpolation=interp)
    return out.astype(bool) if img.dtype == bool else out


def _contoured(base: np.ndarray, gt: np.ndarray | None) -> np.ndarray:
    """Draw the ground-truth outline on an RGB uint8 copy of ``base``."""
    out = np.ascontiguousarray(base.copy())
    if gt is not None and gt.any():
        contours, _ = cv2.findContours(gt.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_NONE)
        thickness = max(1, round(max(gt.shape) / 200))
        cv2.drawContours(out, contours, -1, GT_COLOUR, thickness)
    return out


def save_panel(
    path: str | Path,
    rgb: np.ndarray,
    depth: np.ndarray | None,
    amap: np.ndarray,
    pred_mask: np.ndarray | None,
    gt_mask: np.ndarray | None,
    title: str,
) -> Path:
    """Write a one-row PNG: RGB | depth | heat map | prediction vs GT | heat-map overlay.

    rgb uint8 H x W x 3; depth float32 H x W metres (0 = missing) or None for RGB-only models;
    amap float H' x W' normalised so 0.5 is the threshold; pred_mask / gt_mask bool H' x W'
    or None (pred_mask None means amap > 0.5). Maps and masks are resized to H x W.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise AnodetError(f"rgb must be uint8 H x W x 3; got {rgb.dtype} {rgb.shape}")
    hw = rgb.shape[:2]
    amap = _fit(np.asarray(amap, np.float32), hw, nearest=False)
    pred = amap > 0.5 if pred_mask is None else _fit(np.asarray(pred_mask, bool), hw, True)
    gt = None if gt_mask is None else _fit(np.asarray(gt_mask, bool), hw, True)

    fig = _new_figure(20, 4.6)
    axes = fig.subplots(1, 5)
    for ax in axes:
        ax.set_axis_off()
    axes[0].imshow(rgb)
    axes[0].set_title("RGB")

    if depth is None:
        axes[1].imshow(np.full((*hw, 3), 0.85))
        axes[1].text(0.5, 0.5, "no depth\n(RGB-only model)", ha="center", va="center",
                     transform=axes[1].transAxes, fontsize=12, color="0.3")
        axes[1].set_title("depth")
    else:
        d = _fit(np.asarray(depth, np.float32), hw, nearest=True)  # never blend across holes
        valid = np.isfinite(d) & (d > 0)
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad=MISSING_DEPTH_COLOUR)
        lo, hi = np.percentile(d[valid], [1, 99]) if valid.any() else (0.0, 1.0)
        im = axes[1].imshow(np.ma.masked_where(~valid, d), cmap=cmap, vmin=lo,
                            vmax=max(hi, lo + 1e-6))
        fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.02, label="m")
        axes[1].set_title(f"depth ({MISSING_DEPTH_COLOUR} = missing)")

    im = axes[2].imshow(amap, cmap="jet", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.02)
    axes[2].set_title("anomaly map (0.5 = threshold)")

    pred_rgb = np.where(pred[..., None], np.uint8(200), np.uint8(30)).repeat(3, axis=2)
    axes[3].imshow(_contoured(pred_rgb, gt))
    axes[3].set_title("prediction (white), GT (green)" if gt is not None else
                      "prediction (white), no GT")

    heat = matplotlib.colormaps["jet"](np.clip(amap, 0.0, 1.0))[..., :3] * 255
    blend = (0.5 * rgb + 0.5 * heat).astype(np.uint8)
    axes[4].imshow(_contoured(blend, gt))
    axes[4].set_title("overlay")

    fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


def _decimate(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.size <= _PLOT_POINTS:
        return x, y
    idx = np.unique(np.linspace(0, x.size - 1, _PLOT_POINTS).astype(int))
    return x[idx], y[idx]


def _no_data(ax: Any, title: str, reason: str) -> None:
    ax.text(0.5, 0.5, reason, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_title(title)


def save_curves(
    path: str | Path,
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    masks: Sequence[np.ndarray | None] | None,
    maps: Sequence[np.ndarray] | np.ndarray,
    fpr_limit: float = 0.3,
) -> Path:
    """Write one PNG with the image ROC, the pixel ROC and the PRO curve (limit marked).

    labels (N,), scores (N,), masks N x (bool H_i x W_i or None) or None, maps N x H_i x W_i.
    A curve that cannot be drawn (one class only, missing masks) shows the reason instead.
    """
    y = np.asarray(labels).astype(bool).reshape(-1)
    s = np.asarray(scores, np.float64).reshape(-1)
    maps = [np.asarray(m) for m in maps]
    gts = fill_normal_masks(y, masks, maps)
    fig = _new_figure(16, 5)
    ax_img, ax_pix, ax_pro = fig.subplots(1, 3)
    for ax in (ax_img, ax_pix):
        ax.plot([0, 1], [0, 1], ls=":", color="0.6")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")

    if y.all() or not y.any():
        _no_data(ax_img, "image ROC", "needs normal and anomalous images")
    else:
        fpr, tpr, _ = roc_curve(y, s)
        ax_img.plot(fpr, tpr)
        ax_img.set_title("image ROC")

    if any(g is None for g in gts):
        _no_data(ax_pix, "pixel ROC", "ground-truth masks missing")
        _no_data(ax_pro, "PRO curve", "ground-truth masks missing")
    else:
        truth = np.concatenate([np.asarray(g, bool).ravel() for g in gts])
        if truth.all() or not truth.any():
            _no_data(ax_pix, "pixel ROC", "needs defect and normal pixels")
            _no_data(ax_pro, "PRO curve", "needs defect and normal pixels")
        else:
            fpr, tpr, _ = roc_curve(truth, np.concatenate([m.ravel() for m in maps]))
            ax_pix.plot(*_decimate(fpr, tpr))
            ax_pix.set_title("pixel ROC")
            fpr, pro = pro_curve(gts, maps)
            ax_pro.plot(*_decimate(fpr, pro))
            ax_pro.axvline(fpr_limit, ls="--", color="red", label=f"FPR limit {fpr_limit:g}")
            ax_pro.legend(loc="lower right")
            score = au_pro(gts, maps, fpr_limit)
            ax_pro.set_title(f"PRO curve (AU-PRO@{fpr_limit:g} = {score:.3f})")
    ax_pro.set_xlabel("false positive rate")
    ax_pro.set_ylabel("per-region overlap")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


def miss_severity(label: int | bool, score: float, threshold: float) -> float:
    """Signed distance to the threshold on the wrong side: > 0 for a miss or false alarm.

    An anomalous image scoring 0.1 under a 0.5 threshold has severity 0.4; a normal image
    scoring 0.9 also 0.4; correctly decided images are negative (most borderline nearest 0).
    """
    return float(threshold - score) if label else float(score - threshold)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _src(path: Any, out_dir: Path) -> str:
    """An escaped, URL-quoted link to ``path``, made relative to out_dir when inside it."""
    p = Path(str(path))
    if p.is_absolute():
        try:
            p = p.resolve().relative_to(out_dir.resolve())
        except ValueError:  # outside the report folder: keep the absolute path
            pass
    return html.escape(quote(p.as_posix()), quote=True)


_CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #bbb;padding:3px 8px}
th{background:#eee}td.num{text-align:right}.miss{background:#fde2e2}.ok{background:#e6f4e6}
.card{margin:1em 0;padding:0.5em;border:1px solid #ccc}.card img{max-width:100%}
.warn{color:#a33}"""


def write_html(out_dir: str | Path, metrics: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    """Write ``out_dir/index.html`` (out_dir is the report folder, e.g. ``<run>/report``).

    metrics: the dict from ``evaluate``; rows: one dict per image with keys panel (PNG path
    relative to out_dir), rgb_path, defect_type, label (1 = anomalous), score, anomalous
    (the model's decision). Rows are listed worst miss first, by ``miss_severity`` against
    ``metrics["threshold"]`` (0.5, the normalised threshold, if absent). A ``curves.png`` in
    out_dir is shown too. No scripts and no external resources; every string is escaped.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threshold = float(metrics.get("threshold", 0.5))
    for i, row in enumerate(rows):
        missing = {"panel", "label", "score"} - set(row)
        if missing:
            raise AnodetError(f"report row {i} lacks {sorted(missing)}; rows need panel, "
                              "rgb_path, defect_type, label, score, anomalous")
    ranked = sorted(rows, key=lambda r: -miss_severity(r["label"], float(r["score"]), threshold))

    scalars = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>anodet report</title>",
             f"<style>{_CSS}</style></head><body><h1>anodet evaluation report</h1>",
             "<h2>Metrics</h2><table><tr><th>metric</th><th>value</th></tr>"]
    parts += [f"<tr><td>{html.escape(str(k))}</td><td class='num'>{_fmt(v)}</td></tr>"
              for k, v in scalars.items()]
    parts.append("</table>")

    per_defect = metrics.get("per_defect") or {}
    if per_defect:
        cols = list(dict.fromkeys(k for d in per_defect.values() for k in d))
        parts.append("<h2>Per defect type (its images + all normal images)</h2><table><tr>"
                     "<th>defect</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols)
                     + "</tr>")
        for kind, vals in per_defect.items():
            cells = "".join(f"<td class='num'>{_fmt(vals.get(c))}</td>" for c in cols)
            parts.append(f"<tr><td>{html.escape(str(kind))}</td>{cells}</tr>")
        parts.append("</table>")

    if metrics.get("warnings"):
        parts.append("<h2>Warnings</h2><ul class='warn'>")
        parts += [f"<li>{html.escape(str(w))}</li>" for w in metrics["warnings"]]
        parts.append("</ul>")
    if (out_dir / "curves.png").is_file():
        parts.append("<h2>Curves</h2><img src='curves.png' alt='ROC and PRO curves'>")

    parts.append(f"<h2>Images, worst misses first (threshold {threshold:g})</h2>")
    for rank, row in enumerate(ranked, 1):
        severity = miss_severity(row["label"], float(row["score"]), threshold)
        truth = "anomalous" if row["label"] else "normal"
        decided = row.get("anomalous", float(row["score"]) > threshold)
        verdict = "anomalous" if decided else "normal"
        css = "ok" if bool(decided) == bool(row["label"]) else "miss"
        parts.append(
            f"<div class='card {css}'><b>#{rank}</b> "
            f"defect: {html.escape(str(row.get('defect_type', '')))} | truth: {truth} | "
            f"predicted: {verdict} | score {float(row['score']):.4f} | "
            f"miss severity {severity:+.4f}<br>"
            f"<small>{html.escape(str(row.get('rgb_path', '')))}</small><br>"
            f"<img src='{_src(row['panel'], out_dir)}' alt='panel {rank}' loading='lazy'></div>"
        )
    parts.append("</body></html>")
    index = out_dir / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index
