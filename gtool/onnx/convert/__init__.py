"""Converter modules, one per family of ONNX ops; every module here is imported on first use
(`registry.discover`), so adding a module adds its ops."""
