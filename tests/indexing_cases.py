"""Test cases of tile, pad, cumsum, argmax, argmin, prod, greater_equal and less_equal
(gtool/ops/indexing.py, gtool/ops/products.py), added to tests/op_cases.py's CASES: every pad
mode with crops, cumsum's four directions, prod with zeros in the reduced set (one zero and
two: the VJP's special cases), argmax/argmin with keepdims and select_last_index.
"""

from __future__ import annotations


def indexing_cases(add, F, I, B) -> None:  # noqa: E741 - the helpers of tests/op_cases.py
    """`add(op, *inputs, **case_fields)` and the input makers of tests/op_cases.py."""
    u = "uniform"
    add("tile", F(2, 3, kind=u), attrs={"reps": [2, 1]})
    add("tile", F(2, 1, 3, kind=u), attrs={"reps": [1, 3, 2]})
    add("tile", F(4, kind=u), attrs={"reps": 3})
    add("tile", I(2, 2, hi=9), attrs={"reps": [2, 2]})
    for mode in ("constant", "reflect", "edge", "wrap"):
        add("pad", F(3, 4, kind=u), attrs={"pads": [1, 2, 2, 1], "mode": mode})
        add("pad", F(2, 3, 4, kind=u), attrs={"pads": [0, -1, 2, 1, 0, -1], "mode": mode})
    add("pad", F(3, 4, kind=u), attrs={"pads": [2, 3, 0, 1], "value": -1.5})
    add("pad", F(5, kind=u), attrs={"pads": [-2, 2], "mode": "reflect"})
    add("pad", F(4, kind=u), attrs={"pads": [4, 4], "mode": "wrap"})
    add("pad", I(2, 3, hi=9), attrs={"pads": [1, 1, 1, 1], "value": 4})
    for ex in (False, True):
        for rv in (False, True):
            add("cumsum", F(3, 4, kind=u), attrs={"axis": 1, "exclusive": ex, "reverse": rv})
    add("cumsum", F(2, 3, 4, kind=u), attrs={"axis": 0, "exclusive": True})
    add("cumsum", F(5, kind=u), attrs={"axis": -1, "reverse": True})
    add("cumsum", I(3, 4, lo=-9, hi=9, dtype="int32"), attrs={"axis": 0})
    for op in ("argmax", "argmin"):
        add(op, F(3, 4, kind="distinct"))
        add(op, F(3, 4, kind="distinct"), attrs={"axis": 0, "keepdims": True})
        add(op, F(2, 3, 4, kind="grid"), attrs={"axis": 1, "select_last_index": True})
        add(op, F(2, 3, 4, kind="grid"), attrs={"axis": -1, "keepdims": True})
        add(op, I(4, 3, lo=-3, hi=3), attrs={"axis": 1})
    for attrs in ({}, {"axis": 1}, {"axis": [0, 2], "keepdims": True}, {"axis": -1, "keepdims": True}):
        add("prod", F(2, 3, 4, kind="away0"), attrs=attrs)
    add("prod", F(5, kind="away0"), attrs={"axis": 0})
    add("prod", F(4, 5, kind="grid"), attrs={"axis": 1})  # rows with one zero and with several: FD is exact there
    add("prod", I(3, 4, lo=-3, hi=4), attrs={"axis": 1})
    for op in ("greater_equal", "less_equal"):
        add(op, F(3, 4, kind="grid"), F(4, kind="grid"))
        add(op, F(kind="grid"), F(3, kind="grid"))
        add(op, I(2, 4, lo=-2, hi=2), I(4, lo=-2, hi=2))
