"""Converters for normalization, activations, losses and dropout (gtool/ops/activations.py,
gtool/ops/norm.py; the losses are lowered onto the stable cross_entropy and log_softmax).

ONNX's optional outputs are built from gtool ops when the model asks for them (LayerNorm's
Mean and InvStdDev, BatchNorm's running statistics, Dropout's mask, SCE's log_prob).
Dropout in training mode draws its mask from the node's `seed` (0 when absent): the same mask
on every run; ONNX's node tests that compare a random mask are skipped for that reason.
"""

from __future__ import annotations

import numpy as np

from ...dims import Dim
from ..registry import ImportContext, OnnxNode, converter

# activations -------------------------------------------------------------------------------------

_SIMPLE = {"Erf": "erf", "Softsign": "softsign", "Reciprocal": "reciprocal", "Floor": "floor", "Ceil": "ceil", "Sign": "sign",
           "Round": "round"}
_WITH_ATTRS = {  # ONNX op -> (gtool op, {onnx attr: (gtool attr, default)})
    "LeakyRelu": ("leaky_relu", {"alpha": ("alpha", 0.01)}),
    "Elu": ("elu", {"alpha": ("alpha", 1.0)}),
    "Selu": ("selu", {"alpha": ("alpha", 1.67326319217681884765625), "gamma": ("gamma", 1.05070102214813232421875)}),
    "HardSigmoid": ("hard_sigmoid", {"alpha": ("alpha", 0.2), "beta": ("beta", 0.5)}),
    "Gelu": ("gelu", {"approximate": ("approximate", "none")}),
}


def _activation(gop: str, attrs: dict):
    def conv(ctx: ImportContext, node: OnnxNode) -> list[str]:
        (x,) = ctx.inputs(node, 1)
        given = {g: ctx.attr(node, o, d) for o, (g, d) in attrs.items()}
        return [ctx.add(gop, [x], given, node)]

    return conv


for _op, _gop in _SIMPLE.items():
    converter(_op)(_activation(_gop, {}))
# node tests whose graph does arithmetic on a storage-only dtype, refused at load (storage-only-dtype)
_CELU_BF16 = ("bfloat16 is a storage-only dtype in gtool: Celu's expansion multiplies and divides in bfloat16, "
              "which gtool refuses")
_SKIPS = {"Elu": {"test_celu_bfloat16_expanded": _CELU_BF16, "test_celu_bfloat16": _CELU_BF16}}
for _op, (_gop, _attrs) in _WITH_ATTRS.items():
    converter(_op, skips=_SKIPS.get(_op, {}))(_activation(_gop, _attrs))


# helpers ------------------------------------------------------------------------------------------


def _zero_like(ctx: ImportContext, name: str) -> str:
    return ctx.const(np.zeros((), dtype=ctx.type(name).dtype))


def _scalar(ctx: ImportContext, value: float, like: str) -> str:
    return ctx.const(np.asarray(value, dtype=ctx.type(like).dtype))


def _stats(ctx: ImportContext, node: OnnxNode, x: str, axes: list[int], eps: float) -> tuple[str, str]:
    """(mean, 1 / sqrt(var + eps)) over axes, kept as size-1 axes: LayerNorm's extra outputs."""
    mean = ctx.add("mean", [x], {"axis": axes, "keepdims": True}, node)
    var = ctx.add("mean", [ctx.add("square", [ctx.add("sub", [x, mean], {}, node)], {}, node)],
                  {"axis": axes, "keepdims": True}, node)
    inv = ctx.add("reciprocal", [ctx.add("sqrt", [ctx.add("add", [var, _scalar(ctx, eps, x)], {}, node)], {}, node)],
                  {}, node)
    return mean, inv


def _wanted(node: OnnxNode, k: int) -> bool:
    return k < len(node.output) and node.output[k] != ""


# normalization ------------------------------------------------------------------------------------


@converter("LayerNormalization")
def layer_normalization(ctx: ImportContext, node: OnnxNode) -> list[str | None]:
    x, scale, bias = ctx.inputs(node, 3)
    axis = ctx.attr(node, "axis", -1)
    eps = float(ctx.attr(node, "epsilon", 1e-5))
    if ctx.attr(node, "stash_type", 1) not in (1, 11):  # float or double: gtool computes in float64 anyway
        ctx.unsupported(node, f"stash_type {ctx.attr(node, 'stash_type')} (float and double are supported)")
    y = ctx.add("layer_norm", [x, scale, bias if bias is not None else _zero_like(ctx, scale)],
                {"axis": axis, "epsilon": eps}, node)
    out: list[str | None] = [y]
    if _wanted(node, 1) or _wanted(node, 2):
        rank = len(ctx.shape(x))
        out += list(_stats(ctx, node, x, list(range(axis % rank, rank)), eps))
    return out


@converter("InstanceNormalization")
def instance_normalization(ctx: ImportContext, node: OnnxNode) -> list[str]:
    x, scale, bias = ctx.inputs(node, 3)
    return [ctx.add("instance_norm", [x, scale, bias], {"epsilon": float(ctx.attr(node, "epsilon", 1e-5))}, node)]


@converter("BatchNormalization")
def batch_normalization(ctx: ImportContext, node: OnnxNode) -> list[str | None]:
    x, scale, bias, mean, var = ctx.inputs(node, 5)
    eps = float(ctx.attr(node, "epsilon", 1e-5))
    if ctx.attr(node, "spatial", 1) != 1:
        ctx.unsupported(node, "spatial=0 (per-activation statistics)")
    training = bool(ctx.attr(node, "training_mode", 0)) or ctx.attr(node, "is_test", 1) == 0
    if training and ctx.opset < 14:
        ctx.unsupported(node, f"training mode at opset {ctx.opset} (its outputs changed in opset 14)")
    y = ctx.add("batch_norm", [x, scale, bias, mean, var], {"epsilon": eps, "training": training}, node)
    if not training:
        return [y]
    momentum = float(ctx.attr(node, "momentum", 0.9))
    rank = len(ctx.shape(x))
    axes = [0] + list(range(2, rank))
    bmean = ctx.add("mean", [x], {"axis": axes}, node)
    centered = ctx.add("sub", [x, _per_channel(ctx, node, bmean, rank)], {}, node)
    bvar = ctx.add("mean", [ctx.add("square", [centered], {}, node)], {"axis": axes}, node)
    outs: list[str | None] = [y]
    for running, batch in ((mean, bmean), (var, bvar)):
        kept = ctx.add("mul", [running, _scalar(ctx, momentum, x)], {}, node)
        new = ctx.add("mul", [batch, _scalar(ctx, 1.0 - momentum, x)], {}, node)
        outs.append(ctx.add("add", [kept, new], {}, node))
    return outs


def _per_channel(ctx: ImportContext, node: OnnxNode, p: str, rank: int) -> str:
    return ctx.add("expand_dims", [p], {"axis": list(range(1, rank - 1))}, node) if rank > 2 else p


# dropout --------------------------------------------------------------------------------------------

_RANDOM = "compares ONNX's random dropout mask (gtool's mask is a seeded draw of its own)"


@converter("Dropout", skips={
    "test_training_dropout": _RANDOM, "test_training_dropout_mask": _RANDOM,
    "test_training_dropout_default": _RANDOM, "test_training_dropout_default_mask": _RANDOM})
def dropout(ctx: ImportContext, node: OnnxNode) -> list[str | None]:
    """ratio and training_mode known at load become attrs; otherwise both are passed as inputs."""
    x = ctx.name(node.input[0])
    attrs = {"ratio": float(ctx.attr(node, "ratio", 0.5)), "seed": int(ctx.attr(node, "seed", 0)),
             "training": ctx.attr(node, "is_test", 1) == 0 and ctx.opset < 7}
    given = [ctx.has_input(node, k) for k in (1, 2)]
    known = [ctx.constant(node.input[k]) if given[k - 1] else None for k in (1, 2)]
    extra: list[str] = []
    if all(k is not None or not g for k, g in zip(known, given)):
        if known[0] is not None:
            attrs["ratio"] = float(known[0])
        if known[1] is not None:
            attrs["training"] = bool(known[1])
    else:
        extra = [ctx.name(node.input[1]) if given[0] else ctx.const(np.asarray(attrs["ratio"], ctx.type(x).dtype)),
                 ctx.name(node.input[2]) if given[1] else ctx.const(np.asarray(attrs["training"]))]
    y = ctx.add("dropout", [x] + extra, attrs, node)
    if not _wanted(node, 1):
        return [y]
    ones = ctx.add("broadcast_to", [ctx.const(np.array(1.0))], {"shape": [Dim.to_json(d) for d in ctx.shape(x)]}, node)
    kept = ctx.add("dropout", [ones] + extra, attrs, node)
    return [y, ctx.add("greater", [kept, ctx.const(np.array(0.0))], {}, node)]


# losses ------------------------------------------------------------------------------------------------


def _class_last(ctx: ImportContext, node: OnnxNode, scores: str, rank: int) -> str:
    """[N, C, d1, ...] -> [N, d1, ..., C] (gtool's class axis is the last)."""
    if rank == 2:
        return scores
    return ctx.add("transpose", [scores], {"perm": [0] + list(range(2, rank)) + [1]}, node)


def _class_back(ctx: ImportContext, node: OnnxNode, v: str, rank: int) -> str:
    if rank == 2:
        return v
    return ctx.add("transpose", [v], {"perm": [0, rank - 1] + list(range(1, rank - 1))}, node)


def _ignoring(ctx: ImportContext, node: OnnxNode, labels: str) -> tuple[str | None, str]:
    """(where labels == ignore_index, or None; labels with those set to 0, a valid class)."""
    ii = ctx.attr(node, "ignore_index", None)
    if ii is None:
        return None, labels
    dt = ctx.type(labels).dtype
    ignored = ctx.add("equal", [labels, ctx.const(np.asarray(ii, dtype=dt))], {}, node)
    return ignored, ctx.add("where", [ignored, ctx.const(np.zeros((), dt)), labels], {}, node)


def _weighted(ctx: ImportContext, node: OnnxNode, per: str, safe: str, ignored: str | None, weights: str | None,
              n_cls: Dim, dtype: str) -> str:
    """The per-element loss weighted and reduced as ONNX's losses are: weight[label] (0 at
    ignore_index); mean divides by the sum of those weights (by the count without weights)."""
    reduction = ctx.attr(node, "reduction", "mean")
    if reduction not in ("mean", "sum", "none"):
        ctx.unsupported(node, f"reduction '{reduction}'")
    w = None
    if weights is not None:
        oh = ctx.add("one_hot", [safe], {"depth": Dim.to_json(n_cls), "dtype": dtype}, node)
        w = ctx.add("matmul", [oh, weights], {}, node)
    if ignored is not None:
        w = ctx.add("where", [ignored, ctx.const(np.zeros((), dtype)), w if w is not None else ctx.const(np.ones((), dtype))],
                    {}, node)
    if w is not None:
        per = ctx.add("mul", [per, w], {}, node)
    if reduction == "none":
        return per
    if reduction == "sum":
        return ctx.add("sum", [per], {}, node)
    if w is None:
        return ctx.add("mean", [per], {}, node)
    return ctx.add("div", [ctx.add("sum", [per], {}, node), ctx.add("sum", [w], {}, node)], {}, node)


@converter("SoftmaxCrossEntropyLoss")
def softmax_cross_entropy_loss(ctx: ImportContext, node: OnnxNode) -> list[str | None]:
    scores, labels, weights = ctx.inputs(node, 3)
    shape = ctx.shape(scores)
    rank, dtype = len(shape), ctx.type(scores).dtype
    last = _class_last(ctx, node, scores, rank)
    ignored, safe = _ignoring(ctx, node, labels)
    per = ctx.add("cross_entropy", [last, safe], {"reduction": "none"}, node)
    loss = _weighted(ctx, node, per, safe, ignored, weights, shape[1], dtype)
    if not _wanted(node, 1):
        return [loss]
    logp = ctx.add("log_softmax", [last], {"axis": -1}, node)
    return [loss, _class_back(ctx, node, logp, rank)]


@converter("NegativeLogLikelihoodLoss")
def negative_log_likelihood_loss(ctx: ImportContext, node: OnnxNode) -> list[str]:
    logp, target, weights = ctx.inputs(node, 3)
    shape = ctx.shape(logp)
    ignored, safe = _ignoring(ctx, node, target)
    index = ctx.add("expand_dims", [safe], {"axis": 1}, node)
    picked = ctx.add("squeeze", [ctx.add("take_along_axis", [logp, index], {"axis": 1}, node)], {"axis": 1}, node)
    per = ctx.add("neg", [picked], {}, node)
    return [_weighted(ctx, node, per, safe, ignored, weights, shape[1], ctx.type(logp).dtype)]
