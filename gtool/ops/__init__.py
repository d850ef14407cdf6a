"""The op registry and every built-in op (importing this package registers them)."""

from . import (  # noqa: F401  (registration)
    activations,
    binary,
    cast,
    conv,
    elementwise,
    indexing,
    integer,
    linalg,
    nn,
    norm,
    pool,
    products,
    reduce,
    shape,
)
from .registry import REGISTRY, Attr, AttrError, KernelError, OpDef, ShapeError, get_op, register

__all__ = ["REGISTRY", "Attr", "AttrError", "KernelError", "OpDef", "ShapeError", "get_op", "register"]
