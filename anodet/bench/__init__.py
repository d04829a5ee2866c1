"""anodet-bench: latency, throughput, memory and accuracy per backend (see runner.py)."""
