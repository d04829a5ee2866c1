"""Evaluation: metrics (numpy, scikit-learn, OpenCV) and the visual report (matplotlib).

``report`` is not imported here so that computing metrics never pulls in matplotlib.
"""

from anodet.evaluation.metrics import (
    au_pro,
    evaluate,
    image_auroc,
    pixel_auroc,
    pro_curve,
    threshold_metrics,
)

__all__ = ["au_pro", "evaluate", "image_auroc", "pixel_auroc", "pro_curve", "threshold_metrics"]
