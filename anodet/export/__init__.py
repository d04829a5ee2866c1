"""Export a trained detector: fused ONNX graph, INT8, TensorRT engine, Triton repository."""
