"""ONNX interop (the `gtool[onnx]` extra): import in `importer.py`, export in `export.py`.

Nothing here is imported by the core; every module imports `onnx` lazily.
"""
