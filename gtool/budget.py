"""Refuse a run that cannot fit, before allocating anything.

Once dims are bound, every value's shape is known, so a run's memory is known too: a param
of 10^12 elements, a one_hot with a huge depth or a broadcast_to a huge shape would allocate
until the machine runs out. gtool computes each value's size from the inferred shapes and
refuses (exit 2) when

- any value has more elements than `--max-elements` (default 2**34, GTOOL_MAX_ELEMENTS):
  this also catches a huge broadcast_to that is only a view but that a reduction would walk
  element by element (`sum(broadcast_to(x, [1e5, 1e5, 1e5]))` is 10^15 additions);
- the run's peak, estimated by walking the plan (inputs and params stay alive, each node's
  output is allocated, intermediates are freed after their last use, views cost nothing), is
  more than `--max-memory` (GTOOL_MAX_MEMORY), or, when no limit is set, more than the
  memory the system has available (MemAvailable in /proc/meminfo).

The estimate leaves out a kernel's own scratch space, so it is a floor: a run it passes may
still run out of memory, but one it refuses could not have fit.
"""

from __future__ import annotations

import contextlib
import os
import re

from .dtypes import np_dtype
from .errors import UsageError

DEFAULT_MAX_ELEMENTS = 2**34
_override: dict[str, int | None] = {"max_memory": None, "max_elements": None}
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50}


def parse_size(text: str, what: str = "--max-memory") -> int:
    """`2GiB`, `512M`, `1.5G`, `4GB`, `1e9` -> bytes. K/M/G/T and KiB... are powers of 1024,
    KB/MB/GB/TB powers of 1000."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = m and _UNITS.get(m.group(2).lower())
    if not m or unit is None or float(m.group(1)) * unit < 1 or float(m.group(1)) * unit > 2**80:
        raise UsageError("usage", f"{what} wants a size such as 2GiB, 512M or 1e9 (bytes), got {text!r}")
    return int(float(m.group(1)) * unit)


def parse_count(text: str, what: str = "--max-elements") -> int:
    """`2**34`-style limits are written as plain numbers: `17179869184`, `1e10`."""
    try:
        n = float(text)
    except (TypeError, ValueError):
        n = -1
    if not 1 <= n <= 2**80:
        raise UsageError("usage", f"{what} wants a positive number of elements such as 1e10, got {text!r}")
    return int(n)


def _read_env() -> tuple[str | None, str | None]:
    return os.environ.get("GTOOL_MAX_MEMORY") or None, os.environ.get("GTOOL_MAX_ELEMENTS") or None


_env = _read_env()  # read here and by `limited`, not per run: os.environ costs microseconds a look-up


@contextlib.contextmanager
def limited(max_memory: int | None = None, max_elements: int | None = None):
    """Set the limits for the runs inside the block (the CLI's --max-memory, --max-elements);
    also re-reads GTOOL_MAX_MEMORY and GTOOL_MAX_ELEMENTS."""
    global _env
    saved = dict(_override)
    _override.update(max_memory=max_memory, max_elements=max_elements)
    _env = _read_env()
    try:
        yield
    finally:
        _override.update(saved)


def available_memory() -> int | None:
    """Bytes the system can give without swapping (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def limits_key() -> tuple:
    """What the limits depend on, cheaply: a plan re-checks when this changes."""
    return _override["max_memory"], _override["max_elements"], _env


def limits() -> tuple[int | None, str, int, str]:
    """(max bytes or None, where it came from, max elements, where it came from)."""
    mem, mem_from = _override["max_memory"], "--max-memory"
    if mem is None and _env[0]:
        mem, mem_from = parse_size(_env[0], "GTOOL_MAX_MEMORY"), "GTOOL_MAX_MEMORY"
    if mem is None:
        mem, mem_from = available_memory(), "the memory available (MemAvailable)"
    count, count_from = _override["max_elements"], "--max-elements"
    if count is None and _env[1]:
        count, count_from = parse_count(_env[1], "GTOOL_MAX_ELEMENTS"), "GTOOL_MAX_ELEMENTS"
    if count is None:
        count, count_from = DEFAULT_MAX_ELEMENTS, "the default --max-elements"
    return mem, mem_from, count, count_from


def human(n: int) -> str:
    """Bytes in binary units: `1.5 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _what(shape: tuple[int, ...], dtype: str, count: int) -> str:
    return f"{list(shape)} {dtype}: {count:,} elements, {human(count * np_dtype(dtype).itemsize)}"


def check_value(name: str, shape: tuple[int, ...], dtype: str, op: str | None = None, **where) -> None:
    """One value about to be allocated (a param's init, a random input): refuse it when over a limit."""
    count = 1
    for n in shape:
        count *= n
    if count <= 2**20:  # small: not worth reading the limits (/proc/meminfo) on every random draw
        return
    mem, mem_from, max_count, count_from = limits()
    size = count * np_dtype(dtype).itemsize
    if count > max_count:
        raise too_many(name, op, shape, dtype, count, max_count, count_from, **where)
    if mem is not None and size > mem:
        raise UsageError("too-much-memory", f"its value would be {_what(shape, dtype, count)}, more than the "
                         f"{human(mem)} of {mem_from}", **{"node": name, **where}, op=op, hint=_HINT_MEM)


_HINT_MEM = "check the sizes in its shape, `dims:` and --dim; or raise the limit with --max-memory (GTOOL_MAX_MEMORY)"


def too_many(name, op, shape, dtype, count, max_count, count_from, **where) -> UsageError:
    return UsageError("too-many-elements", f"its value would be {_what(shape, dtype, count)}, more than the "
                      f"{max_count:,} elements of {count_from}", **{"node": name, **where}, op=op,
                      hint="check the sizes in its shape, `dims:` and --dim; or raise the limit with "
                           "--max-elements (GTOOL_MAX_ELEMENTS)")


def check_plan(values: list[tuple[str, str | None, tuple[int, ...], str, bool, tuple[int, ...]]],
               n_tensors: int, where) -> int:
    """Walk a plan's values in order and refuse it when over a limit; returns the peak bytes.

    `values[k]` is (name, op or None, shape, dtype, is a view, slots freed after it) for slot k;
    the first `n_tensors` slots are the run's tensors (alive throughout). `where(name)` gives
    the location keywords of a name for the error.
    """
    mem, mem_from, max_count, count_from = limits()
    sizes = []
    itemsize = {d: np_dtype(d).itemsize for d in {v[3] for v in values}}
    counts: dict[tuple, int] = {}
    for name, op, shape, dtype, view, _ in values:
        count = counts.get(shape)
        if count is None:
            count = 1
            for n in shape:
                count *= n
            counts[shape] = count
        if count > max_count:
            raise too_many(name, op, shape, dtype, count, max_count, count_from, **where(name))
        sizes.append(0 if view else count * itemsize[dtype])
    live = peak = sum(sizes[:n_tensors])
    for k in range(n_tensors, len(values)):
        live += sizes[k]
        if live > peak:
            peak = live
        for s in values[k][5]:
            live -= sizes[s]
    if mem is not None and peak > mem:
        k = max(range(len(sizes)), key=sizes.__getitem__)  # the biggest value: the likely mistake
        name, op, shape, dtype = values[k][:4]
        count = sizes[k] // np_dtype(dtype).itemsize
        raise UsageError("too-much-memory", f"the run needs at least {human(peak)} at its peak, more than the "
                         f"{human(mem)} of {mem_from}; its biggest value is this one, {_what(shape, dtype, count)}",
                         **{"node": name, **where(name)}, op=op, hint=_HINT_MEM)
    return peak
