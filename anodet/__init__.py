"""anodet: RGB-D industrial anomaly detection for the edge."""

__version__ = "0.1.0"
