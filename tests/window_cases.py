"""Test cases of the convolution and pooling ops (gtool/ops/conv.py, gtool/ops/pool.py), added
to tests/op_cases.py's CASES: 1-d, 2-d and 3-d, stride, explicit and auto padding, dilation,
groups, a broadcast bias, ceil_mode and count_include_pad. Pool inputs are drawn 'distinct'
(no two values within 0.02) so that no window holds a tie a finite difference could cross.
"""

from __future__ import annotations


def window_cases(add, F) -> None:
    """`add(op, *inputs, **case_fields)` and `F(*shape, kind=...)` from tests/op_cases.py."""
    u = "uniform"
    add("conv", F(2, 3, 5, 5, kind=u), F(4, 3, 3, 3, kind=u))
    add("conv", F(2, 3, 5, 5, kind=u), F(4, 3, 3, 3, kind=u), F(4, kind=u), attrs={"stride": 2, "padding": 1})
    add("conv", F(1, 4, 6, 5, kind=u), F(4, 2, 3, 2, kind=u), F(4, kind=u),
        attrs={"groups": 2, "dilation": [2, 1], "padding": [1, 0, 0, 1]})
    add("conv", F(2, 2, 7, kind=u), F(3, 2, 3, kind=u), attrs={"auto_pad": "same_upper", "stride": 2})
    add("conv", F(1, 2, 5, 6, kind=u), F(2, 2, 2, 3, kind=u), attrs={"auto_pad": "same_lower", "stride": 2})
    add("conv", F(1, 2, 4, 4, 3, kind=u), F(2, 2, 2, 2, 2, kind=u), attrs={"padding": 1, "stride": [1, 2, 1]})
    add("conv_transpose", F(2, 3, 3, 3, kind=u), F(3, 2, 3, 3, kind=u),
        attrs={"stride": 2, "padding": 1, "output_padding": 1})
    add("conv_transpose", F(1, 4, 4, 3, kind=u), F(4, 1, 2, 2, kind=u), F(2, kind=u), attrs={"groups": 2, "dilation": 2})
    add("conv_transpose", F(2, 2, 4, kind=u), F(2, 3, 3, kind=u), attrs={"stride": 3, "output_shape": [13]})
    add("conv_transpose", F(1, 2, 3, 2, kind=u), F(2, 2, 3, 3, kind=u), attrs={"stride": 2, "auto_pad": "same_upper"})
    add("conv_filter", F(2, 3, 5, 5, kind=u), F(2, 4, 3, 3, kind=u), attrs={"kernel": [3, 3], "stride": 2, "padding": 1})
    add("conv_filter", F(1, 4, 6, kind=u), F(1, 2, 4, kind=u), attrs={"kernel": [3], "groups": 2})
    d = "distinct"
    add("max_pool", F(2, 2, 5, 5, kind=d), attrs={"kernel": 2})
    add("max_pool", F(1, 2, 6, 5, kind=d), attrs={"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True})
    add("max_pool", F(1, 1, 7, kind=d), attrs={"kernel": 3, "dilation": 2, "stride": 1})
    add("max_pool", F(1, 2, 3, 4, 3, kind=d), attrs={"kernel": [2, 2, 2], "stride": 1, "auto_pad": "same_lower"})
    add("max_pool_indices", F(2, 2, 5, 5, kind=d), attrs={"kernel": 2})
    add("max_pool_indices", F(1, 2, 6, 5, kind=d), attrs={"kernel": 3, "stride": 2, "padding": 1, "storage_order": 1})
    add("max_pool_pick", F(2, 2, 5, 5, kind=d), F(2, 2, 5, 5, kind=u), attrs={"kernel": 2})
    add("max_pool_pick", F(1, 2, 6, 5, kind=d), F(1, 2, 6, 5, kind=u), attrs={"kernel": 3, "stride": 2, "padding": 1})
    add("max_pool_grad", F(2, 2, 5, 5, kind=d), F(2, 2, 2, 2, kind=u), attrs={"kernel": 2})
    add("max_pool_grad", F(1, 2, 6, 5, kind=d), F(1, 2, 4, 3, kind=u),
        attrs={"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True})
    add("avg_pool", F(2, 2, 5, 5, kind=u), attrs={"kernel": 2})
    add("avg_pool", F(1, 2, 6, 5, kind=u), attrs={"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": True})
    add("avg_pool", F(1, 2, 6, 5, kind=u), attrs={"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True})
    add("avg_pool", F(2, 3, 7, kind=u), attrs={"kernel": 3, "stride": 2, "auto_pad": "same_upper", "dilation": 1})
    add("avg_pool_grad", F(2, 2, 2, 2, kind=u), F(2, 2, 5, 5, kind=u), attrs={"kernel": 2})
    add("avg_pool_grad", F(1, 2, 4, 3, kind=u), F(1, 2, 6, 5, kind=u),
        attrs={"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True})
    add("flatten", F(2, 3, 4))
    add("flatten", F(2, 3, 4), attrs={"axis": 0})
    add("flatten", F(2, 3, 4), attrs={"axis": -1})
    add("flatten", F(2, 3, 4), attrs={"axis": 3})
