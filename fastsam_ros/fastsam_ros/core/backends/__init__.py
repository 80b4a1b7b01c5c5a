"""Inference runtimes (PyTorch, ONNX Runtime, OpenVINO), loading a model onto one, and their quality checks."""
