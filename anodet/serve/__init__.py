"""What runs inside or beside a Triton server, never on the edge box.

triton_model: the python flavour's model (anodet's runtime inside Triton's Python backend);
triton_server: starts the tritonserver bundled in nvidia-pytriton on loopback ports, for tests
and benchmarks. The model repository itself is written by anodet.export.triton (an export
format, made on the build machine).

May import: anodet.runtime and its sub-packages, anodet.artifact, anodet.preprocess,
anodet.errors. Nothing under anodet.runtime imports this package, so an edge install never
loads it. Torch-free.
"""
