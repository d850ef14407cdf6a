"""ONNX interop: `.onnx` files as a second graph format (the optional extra `gtool[onnx]`).

The core never imports this package except through the loader's dispatch on a `.onnx` path
(or ONNX content), and this package imports `onnx` only inside its functions, so a missing
extra is a usage error naming it instead of an ImportError at start-up.
"""

from __future__ import annotations

INSTALL_HINT = "pip install 'gtool[onnx]'"


def require_onnx():
    """The `onnx` module, or a UsageError (exit 2) naming the extra that provides it."""
    try:
        import onnx
    except ImportError:
        from ..errors import UsageError

        raise UsageError("usage", "reading .onnx files needs the onnx package",
                         hint=INSTALL_HINT) from None
    return onnx
