"""gtool: write, check, run and differentiate computational graphs stored as YAML/JSON files.

Library use::

    import gtool
    g = gtool.load("graphs/fanout.yaml")
    gtool.run(g, {"x": 1.0, "y": 2.0})            # {'L': array(15.)}
    loss, grads = gtool.value_and_grad(g, {"x": 1.0, "y": 2.0}, wrt=["x", "y"])
"""

from __future__ import annotations

from . import ops  # noqa: F401  (registers the built-in ops)
from .api import forward_mode_grad, grad, gradient, jvp, load, run, value_and_grad, vjp
from .errors import Diagnostic, GraphError, UsageError
from .gradcheck import grad_check
from .ir import Graph
from .ops.registry import OpDef, register

__version__ = "0.1.0"

__all__ = [
    "Diagnostic", "Graph", "GraphError", "OpDef", "UsageError", "forward_mode_grad", "grad", "grad_check", "gradient", "jvp",
    "load",
    "register", "run", "value_and_grad", "vjp", "__version__",
]
