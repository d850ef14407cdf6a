"""The op registry and every built-in op (importing this package registers them)."""

from . import activations, binary, cast, conv, elementwise, integer, linalg, nn, norm, pool, reduce, shape  # noqa: F401  (registration)
from . import indexing, products  # noqa: F401, E402  (registration: tile, pad, cumsum, argmax, argmin, prod, ...)
from .registry import REGISTRY, Attr, AttrError, KernelError, OpDef, ShapeError, get_op, register

__all__ = ["REGISTRY", "Attr", "AttrError", "KernelError", "OpDef", "ShapeError", "get_op", "register"]
