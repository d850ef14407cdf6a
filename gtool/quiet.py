"""`np.errstate(all="ignore")` at a fifth of its cost, for the hot paths of a run.

`quiet()` is a context manager; `hush()` / `unhush(token)` are its enter and exit as two plain
calls (`token = hush(); ...; unhush(token)`). The context variable NumPy reads is set directly
with an error state made once (NumPy 2); another NumPy gets the public `np.errstate`. The
executor's generated plans (gtool/fastplan.py) and the ops' fast paths (gtool/ops/rowfast.py)
both use it, so it sits below both and knows nothing of gtool.
"""

from __future__ import annotations

import functools

import numpy as np


def _quiet_factory():
    """(quiet, hush, unhush): the context manager, and its enter and exit as two plain calls."""
    try:
        from numpy._core._multiarray_umath import _make_extobj
        from numpy._core._ufunc_config import _extobj_contextvar

        state = _make_extobj(all="ignore")
    except (ImportError, AttributeError, TypeError):  # another NumPy: the public context manager
        cm = functools.partial(np.errstate, all="ignore")

        def hush():
            e = cm()
            e.__enter__()
            return e

        return cm, hush, lambda e: e.__exit__(None, None, None)

    class Quiet:
        """np.errstate(all="ignore") without building the error state each time."""

        __slots__ = ("token",)

        def __enter__(self):
            self.token = _extobj_contextvar.set(state)

        def __exit__(self, *exc):
            _extobj_contextvar.reset(self.token)
            return False

    return Quiet, functools.partial(_extobj_contextvar.set, state), _extobj_contextvar.reset


quiet, hush, unhush = _quiet_factory()
