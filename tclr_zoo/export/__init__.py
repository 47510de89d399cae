"""Export: safetensors + config, ONNX export, graph checks and parity checks."""
