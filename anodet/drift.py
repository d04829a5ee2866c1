"""Input drift: statistics of the training frames, and a monitor that compares live frames with them.

A model trained on one camera's frames and fed another's fails quietly: depth in 1 mm steps
where training saw continuous depth, more holes, other lighting, another resolution. Each of
these makes good parts look defective. Training stores :func:`input_stats` of its frames in
the artifact; the runtime's :class:`InputMonitor` samples live frames, names what differs and
how to fix it, and warns once (or raises with ``strict``). It also notices the symptom itself:
nearly every frame flagged. Torch-free; frames as the sources deliver them (rgb uint8 H x W x 3,
depth float32 H x W metres, 0 = missing).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from anodet.errors import AnodetError

logger = logging.getLogger(__name__)

CONTINUOUS_STEP_M = 2e-5  # depth steps finer than 20 µm count as continuous depth
FIX = "retrain on this camera's frames (anodet-capture, then anodet-train)"


def frame_stats(rgb: np.ndarray, depth: np.ndarray | None) -> dict[str, float]:
    """One frame's input statistics: size, RGB mean/std per channel, and for depth the valid
    fraction, the quantisation step (metres; 0 for continuous depth) and the
    noise (median |depth - its 3x3 median| where the neighbourhood is valid, metres)."""
    h, w = rgb.shape[:2]
    px = rgb.reshape(-1, 3).astype(np.float32)
    out = {"height": float(h), "width": float(w)}
    for c, name in enumerate("rgb"):
        out[f"{name}_mean"] = float(px[:, c].mean())
        out[f"{name}_std"] = float(px[:, c].std())
    if depth is None:
        return out
    d = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(d) & (d > 0)
    out["valid_fraction"] = float(valid.mean())
    sub = (slice(None, None, 2),) * 2 if d.size > 100_000 else (slice(None),) * 2  # keeps a sample cheap
    valid_values = d[sub][valid[sub]]
    values = np.unique(valid_values)
    # A sensor's unit makes most valid pixels share a value with others; continuous depth almost
    # never repeats. The median gap between distinct values is then the unit (0: continuous).
    quantised = values.size > 1 and values.size < 0.5 * valid_values.size
    out["depth_step_m"] = float(np.median(np.diff(values))) if quantised else 0.0
    inner = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    if inner.any():
        filled = np.where(valid, d, 0).astype(np.float32)
        out["depth_noise_m"] = float(np.median(np.abs(filled - cv2.medianBlur(filled, 3))[inner]))
    return out


def input_stats(frames: Iterable[tuple[np.ndarray, np.ndarray | None]],
                augment_steps: Sequence[float] = ()) -> dict[str, float]:
    """Summary of training frames for the artifact: the median of each frame statistic, and
    ``<key>_spread`` (the frames' standard deviation) for the RGB means. ``augment_steps``
    (metres): z16 steps the model was also trained on (train.depth_augment_units)."""
    rows = [frame_stats(rgb, depth) for rgb, depth in frames]
    if not rows:
        return {}
    keys = sorted(set.intersection(*(set(r) for r in rows)))
    out = {k: float(np.median([r[k] for r in rows])) for k in keys}
    if augment_steps and "depth_step_m" in out:
        out["depth_augment_step_m"] = float(max(augment_steps))
    for k in ("r_mean", "g_mean", "b_mean"):
        out[f"{k}_spread"] = float(np.std([r[k] for r in rows]))
    out["frames"] = float(len(rows))
    return out


def _mm(m: float) -> str:
    return f"{m * 1000:.2g} mm"


def compare(trained: dict[str, float], live: dict[str, float]) -> dict[str, str]:
    """What differs between training and live statistics: {kind: message}; empty when they match."""
    found: dict[str, str] = {}
    if "height" in trained and (live["height"], live["width"]) != (trained["height"], trained["width"]):
        found["resolution"] = (
            f"frames are {live['width']:.0f}x{live['height']:.0f}; the model was trained on "
            f"{trained['width']:.0f}x{trained['height']:.0f} frames: the part appears at another scale"
        )
    if "depth_step_m" in trained and "depth_step_m" in live:
        t, s = trained["depth_step_m"], live["depth_step_m"]
        # Steps up to the augmentation's (depth re-rounded during training) are known to the model.
        seen = max(t, trained.get("depth_augment_step_m", 0.0))
        if s > CONTINUOUS_STEP_M and s > 3 * t and s > 1.5 * seen:
            was = "continuous depth" if t <= CONTINUOUS_STEP_M else f"{_mm(t)} steps"
            if seen > t:
                was += f" and on {_mm(seen)} steps"
            found["depth_step"] = (f"depth arrives in {_mm(s)} steps; the model was trained on {was}: "
                                   f"good parts may be flagged; if they are, {FIX}")
    if "valid_fraction" in trained and "valid_fraction" in live:
        t, s = trained["valid_fraction"], live["valid_fraction"]
        if s < t - 0.15:
            found["depth_holes"] = (f"only {s:.0%} of depth pixels are valid; the model was trained on {t:.0%}: "
                                    "holes look like defects; check the working distance and the depth filters")
    if "depth_noise_m" in trained and "depth_noise_m" in live:
        t, s = trained["depth_noise_m"], live["depth_noise_m"]
        if s > 3 * t + 2e-4:
            found["depth_noise"] = f"depth noise is {_mm(s)}; the model was trained on {_mm(t)}: {FIX}"
    shifts = [abs(live[f"{c}_mean"] - trained[f"{c}_mean"]) - max(25.0, 4 * trained.get(f"{c}_mean_spread", 0.0))
              for c in "rgb" if f"{c}_mean" in trained]
    if shifts and max(shifts) > 0:
        now = ",".join(f"{live[f'{c}_mean']:.0f}" for c in "rgb")
        was = ",".join(f"{trained[f'{c}_mean']:.0f}" for c in "rgb")
        found["colour"] = (f"colour differs from training (mean R,G,B {now}; trained {was}): "
                           "check lighting and exposure")
    return found


@dataclass
class MonitorSettings:
    first: int = 5  # frames sampled one after another at the start
    every: int = 15  # then every n-th frame (a sample costs a few ms at 640x480)
    window: int = 8  # recent samples whose median is compared
    min_samples: int = 3
    flag_window: int = 50  # recent verdicts watched for "nearly everything flagged"
    flag_share: float = 0.9


class InputMonitor:
    """Compares sampled live frames with the artifact's training statistics.

    ``observe`` each frame and ``record`` the decisions; each problem is logged once as a
    warning (``strict``: raised as AnodetError instead); ``note`` is the short form for the stats
    line and ``problems`` every message seen, for the run summary.
    """

    def __init__(self, trained: dict[str, float], *, strict: bool = False,
                 settings: MonitorSettings | None = None):
        self.trained, self.strict = dict(trained), strict
        self.settings = settings or MonitorSettings()
        self.samples: deque[dict[str, float]] = deque(maxlen=self.settings.window)
        self.verdicts: deque[bool] = deque(maxlen=self.settings.flag_window)
        self.problems: dict[str, str] = {}
        self.active: dict[str, str] = {}
        self._seen = 0
        if not self.trained:
            logger.info("the model carries no training input statistics: input drift is not checked")

    def observe(self, rgb: np.ndarray, depth: np.ndarray | None) -> None:
        """Sample one live frame (most calls return at once)."""
        self._seen += 1
        s = self.settings
        if not self.trained or (self._seen > s.first and self._seen % s.every):
            return
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or (depth is not None and depth.shape != rgb.shape[:2]):
            return  # a malformed frame: the pipeline skips it and says why
        self.samples.append(frame_stats(rgb, depth))
        if len(self.samples) < s.min_samples:
            return
        keys = set.intersection(*(set(x) for x in self.samples))
        live = {k: float(np.median([x[k] for x in self.samples])) for k in keys}
        self.active = compare(self.trained, live)
        for kind, message in self.active.items():
            self._report(kind, message)

    def record(self, judged: int, flagged: int) -> None:
        """Record a batch's decisions; warns when nearly every recent frame is flagged."""
        self.verdicts.extend([True] * flagged + [False] * (judged - flagged))
        s = self.settings
        if len(self.verdicts) == s.flag_window and sum(self.verdicts) >= s.flag_share * s.flag_window:
            self._report("flag_rate", (
                f"{sum(self.verdicts)} of the last {s.flag_window} frames were flagged: if these parts are "
                f"good, the inputs differ from training; {FIX}"))

    def _report(self, kind: str, message: str) -> None:
        if kind in self.problems:
            return
        self.problems[kind] = message
        if self.strict and kind != "flag_rate":
            raise AnodetError(f"input drift: {message} (stopped by --strict-inputs)")
        logger.warning("input drift: %s", message)

    @property
    def note(self) -> str:
        """Short stats-line form, e.g. 'inputs differ: depth_step, colour' ('' when they match)."""
        return f"inputs differ: {', '.join(self.active)}" if self.active else ""
