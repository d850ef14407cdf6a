"""Converters for domain `gtool`: the one-node stand-ins that `gtool.onnx.meta.collapse` puts
where a gtool export's nodes are intact, turned back into the gtool op they came from (its
attrs are JSON in the attribute `gtool_attrs`). Only gtool's own exports have such nodes."""

from __future__ import annotations

import json

from ...ops import REGISTRY
from ..meta import DOMAIN
from ..registry import ImportContext, OnnxNode, converter


def gtool_node(ctx: ImportContext, node: OnnxNode) -> list[str]:
    try:
        attrs = json.loads(ctx.attr(node, "gtool_attrs", "{}"))
    except ValueError:
        ctx.unsupported(node, "the attribute gtool_attrs is not JSON")
    if not isinstance(attrs, dict):
        ctx.unsupported(node, "the attribute gtool_attrs is not a JSON object")
    return [ctx.add(node.op_type, [ctx.name(i) for i in node.input], attrs, node)]


for _op in list(REGISTRY):
    converter(_op, domain=DOMAIN)(gtool_node)
