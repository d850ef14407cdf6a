"""ONNX's backend node tests, loaded once and cached on disk (shared by the conformance test).

`onnx.backend.test.loader.load_node_model_tests()` builds ~1900 tests by running ONNX's
case generators (about 10 s); the result is pickled to the temp folder keyed by the onnx
version, so later sessions and the xdist workers read it in well under a second.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings


def node_tests() -> dict[str, tuple[bytes, list]]:
    """name -> (serialized ModelProto, data_sets [(inputs, outputs)]) for every node test."""
    import onnx

    path = os.path.join(tempfile.gettempdir(), f"gtool-onnx-node-tests-{onnx.__version__}-{os.getuid()}.pkl")
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        pass
    from onnx.backend.test.loader import load_node_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tests = load_node_model_tests()
    out = {t.name: (t.model.SerializeToString(), t.data_sets) for t in tests if t.model is not None}
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "wb") as f:
        pickle.dump(out, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return out
