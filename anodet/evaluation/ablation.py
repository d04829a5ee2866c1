"""Ablation across presets: train and evaluate each on the same data, one table.

Writes ablation.md, ablation.csv and ablation.json with image ROC-AUC, pixel ROC-AUC and
PRO-AUC overall and per defect type, plus eager forward latency per preset.

``weights="auto"`` gives each preset the best weights that install offline: ImageNet for the
EfficientNet-Lite presets (``rgbd_lite``, ``rgb_lite``), random init for the ResNets.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from anodet import config as cfgmod
from anodet.bench.timing import measure, percentile
from anodet.errors import AnodetError
from anodet.experiment import prepare_out_dir

log = logging.getLogger(__name__)
METRICS = ("image_auroc", "pixel_auroc", "au_pro")
PRESETS = ("rgbd_full", "rgb_baseline", "rgbd_reduced", "rgbd_lite", "rgb_lite")  # the full table


def forward_ms(checkpoint: Path, runs: int = 10) -> float:
    """Median eager PyTorch latency (ms) of one frame at the model's input size, CPU."""
    import torch

    from anodet.export.onnx import parity_samples
    from anodet.models import load_detector

    det = load_detector(checkpoint)
    rgb, depth = parity_samples(det)
    r = torch.from_numpy(rgb[:1])
    d = torch.from_numpy(depth[:1]) if depth is not None else None
    with torch.no_grad():
        return percentile(measure(lambda: det(r, d), warmup=1, runs=runs), 50)


def ablate(data: str | Path, out: str | Path, *, presets: list[str], weights: str = "none",
           epochs: int | None = None, device: str = "auto", overrides: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """Train + evaluate every preset; return one row per preset (also written to ``out``)."""
    from anodet.evaluation.evaluator import evaluate_model, open_model
    from anodet.models.backbone import resolve_weights
    from anodet.train import train

    unknown = [p for p in presets if p not in cfgmod.PRESETS]
    if unknown:
        raise AnodetError(f"unknown preset(s) {', '.join(unknown)}; valid: {', '.join(cfgmod.PRESETS)}")
    out_dir = prepare_out_dir(Path(out))
    rows = []
    for name in presets:
        cfg = cfgmod.load(name)
        for section, values in (overrides or {}).items():
            cfg = cfgmod.with_overrides(cfg, section, **values)
        cfg = cfgmod.with_overrides(cfg, "train", epochs=epochs)
        log.info("ablation: %s", name)
        res = train(cfg, data, out_dir / name, weights=resolve_weights(cfg.model.backbone, weights), device=device)
        metrics = evaluate_model(open_model(res.best_checkpoint, device=device), data, out_dir / name / "eval",
                                 report=False)
        row = {"preset": name, "in_channels": cfg.model.in_channels, "layers": "+".join(cfg.model.layers),
               "backbone": cfg.model.backbone, "fusion": cfg.model.fusion if cfg.model.in_channels == 4 else "-",
               **{k: metrics[k] for k in METRICS}, "forward_ms": forward_ms(res.best_checkpoint),
               "train_s": res.seconds, "weights": res.weights_source,
               "per_defect": {t: {k: v.get(k) for k in METRICS} for t, v in metrics["per_defect"].items()}}
        rows.append(row)
    _write(out_dir, rows, Path(data))
    return rows


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per preset, columns overall + per defect type image AUROC, AU-PRO."""
    types = sorted({t for r in rows for t in r["per_defect"]})
    head = ["preset", "backbone", "channels", "fusion", "layers", "image AUROC", "pixel AUROC", "AU-PRO",
            *[f"{t} img AUROC" for t in types], *[f"{t} AU-PRO" for t in types], "forward ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["preset"], r.get("backbone", "-"), str(r["in_channels"]), r.get("fusion", "-"), r["layers"],
                 _fmt(r["image_auroc"]), _fmt(r["pixel_auroc"]), _fmt(r["au_pro"]), *[_fmt(r["per_defect"].get(t, {}).get("image_auroc")) for t in types],
                 *[_fmt(r["per_defect"].get(t, {}).get("au_pro")) for t in types], f"{r['forward_ms']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write(out_dir: Path, rows: list[dict[str, Any]], data: Path) -> None:
    (out_dir / "ablation.json").write_text(json.dumps({"data": str(data.resolve()), "rows": rows}, indent=2))
    types = sorted({t for r in rows for t in r["per_defect"]})
    with open(out_dir / "ablation.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["preset", *METRICS, *[f"{t}_{k}" for t in types for k in METRICS], "forward_ms", "train_s"])
        for r in rows:
            w.writerow([r["preset"], *[r[k] for k in METRICS],
                        *[r["per_defect"].get(t, {}).get(k) for t in types for k in METRICS],
                        f"{r['forward_ms']:.2f}", f"{r['train_s']:.1f}"])
    weights = "; ".join(f"{r['preset']}: {r['weights']}" for r in rows)
    (out_dir / "ablation.md").write_text(
        f"# Ablation on {data}\n\nBackbone weights: {weights}. Forward: eager PyTorch, batch 1, CPU.\n\n"
        + format_table(rows) + "\n")
