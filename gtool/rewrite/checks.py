"""Prove each applied rewrite on data: the contract of `gtool rewrite --verify`.

Every application recorded by the engine carries two small graphs computing the rewritten
value from the matched inputs, before and after. Both are run (values, and gradients of
sum(out * c) for a fixed random cotangent c, through autodiff) on seeded inputs, and
compared with a reference computed at higher precision (see `reference.py`):

(a) on random inputs, wherever the original is accurate (within 16 ULP of the reference),
    the rewritten graph is accurate too (within 34): old and new agree, values and gradients;
(b) the rewritten graph is never less accurate than the original: its worst error over the
    random samples (and over the extreme ones) is at most the original's plus 2 ULP for
    values, plus 16 for gradients (two different backward graphs round differently); NaN
    and inf count as infinitely far where the reference is finite;
(c) on the rule's extreme inputs (logits near 1000, x near 1e-12, +-inf, equal rows) the
    rewritten graph matches the reference (values within 64 ULP, gradients within 4096, about
    1e-12 relative in float64; +-inf where the exact value rounds to +-inf) and is never NaN
    where the reference is not; the report counts where the original overflowed or lost
    accuracy.

Errors are counted in ULPs of the graph's dtype (`ulp_error`): whole steps from the
correctly rounded reference, but at least in units of how far the exact result moves when
the inputs move by about one ULP (`_condition`: no algorithm on rounded inputs does
better); gradients at least at their own and the cotangent's scale; log-probabilities at
least to an absolute ULP of 1 (`Rule.log_domain`); subnormal results in units of the
smallest normal number.

The reference: float64 for float32 graphs; for float64 graphs mpmath (40 digits and more,
see `_digits`) when it is installed, else long double. On extreme samples a wide original
can itself fail (1 - sigmoid(50) is exactly 0 in long double); there the rewritten subgraph
at the wide precision is the reference, and the report counts those samples (`_errors`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .. import autodiff, interp
from ..errors import GraphError
from ..ir import Graph, Node, Tensor, TensorType
from .reference import evaluate, have_mpmath
from .rules import BY_NAME

if TYPE_CHECKING:
    from .engine import Applied

ACCURATE = 16.0  # ULP: "the original is accurate here"
NO_WORSE = 2.0  # ULP: (b), values
GRAD_NO_WORSE = 16.0  # ULP at the gradient's scale: (b), gradients (two different backward graphs)
EXTREME_TOL = 64.0  # ULP: (c), values
GRAD_EXTREME_TOL = 4096.0  # ULP: (c), gradients (about 1e-12 relative in float64: a VJP of a stable op
# rounds intermediates at the inputs' magnitude, e.g. logsumexp's exp(x - lse) at logits of 1000)
LOST = 1000.0  # ULP: "the original lost accuracy"
SENSITIVE = 64.0  # ULP: the original's float value vs its own wide value
CONDITION_FACTOR = 4.0  # a sampled move under-estimates the worst one: see `_condition`
COT, PROD, LOSS = "__rw_cot", "__rw_prod", "__rw_loss"


@dataclass
class Check:
    """The verdict on one application."""

    applied: Applied
    passed: bool
    message: str
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"rule": self.applied.rule, "node": self.applied.node, "line": self.applied.line,
                "passed": self.passed, "message": self.message, **self.details}


def verify(applied: list[Applied], *, samples: int = 200, extreme_samples: int = 200, seed: int = 0,
           reference: str = "auto") -> list[Check]:
    """Check every recorded application (see the module doc); one Check each."""
    return [verify_one(a, samples=samples, extreme_samples=extreme_samples, seed=seed + k, reference=reference)
            for k, a in enumerate(applied)]


def verify_one(a: Applied, *, samples: int = 200, extreme_samples: int = 200, seed: int = 0,
               reference: str = "auto") -> Check:
    if a.before is None or a.after is None:
        return Check(a, True, f"{a.where()}: {a.note or 'nothing to compare'}", {"samples": 0})
    return _Verifier(a, samples, extreme_samples, seed, reference).run()


# inputs ---------------------------------------------------------------------------------------


def _scale(dtype: str) -> dict:
    if dtype == "float32":
        return {"big": 100.0, "tiny": 1e-5, "moderate": 12.0}
    return {"big": 1000.0, "tiny": 1e-12, "moderate": 30.0}


def extreme(kind: str, shape: tuple, dtype: str, rng: np.random.Generator) -> np.ndarray:
    """One extreme sample of a kind a rule names (see docs/rewrites.md)."""
    s = _scale(dtype)
    x = rng.normal(0.0, 1.0, shape)
    size = max(1, x.size)
    pick = rng.random(shape) < 0.5 if x.size > 1 else np.zeros(shape, bool)
    if x.size > 1 and not pick.any():
        pick.flat[rng.integers(size)] = True
    if x.size > 1 and pick.all():
        pick.flat[rng.integers(size)] = False
    if kind == "large":
        x = s["big"] + rng.normal(0.0, 2.0, shape)
    elif kind == "neg_large":
        x = -s["big"] + rng.normal(0.0, 2.0, shape)
    elif kind == "spread":  # one logit per row (the last axis) near `big`, the rest ordinary
        if x.ndim:
            hot = rng.integers(0, shape[-1], shape[:-1])[..., None] == np.arange(shape[-1])
            x = np.where(hot, s["big"] + rng.normal(0.0, 2.0, shape), x)
        else:
            x = x + s["big"]
    elif kind == "equal":
        x = np.full(shape, rng.choice([-1.0, 1.0]) * s["big"] * rng.uniform(0.5, 1.5))
    elif kind == "neginf":
        x = np.where(pick, -np.inf, x) if x.size > 1 else x
    elif kind == "inf":
        x = np.where(pick, rng.choice([-np.inf, np.inf], shape), x) if x.size > 1 else np.full(shape, np.inf)
    elif kind == "tiny":
        x = x * s["tiny"]
    elif kind == "moderate":
        x = rng.uniform(s["moderate"], 2 * s["moderate"], shape)
    elif kind == "neg_moderate":
        x = -rng.uniform(s["moderate"], 2 * s["moderate"], shape)
    else:  # pragma: no cover - a typo in a rule table
        raise ValueError(f"unknown extreme kind {kind!r}")
    return np.asarray(x, dtype=dtype)


# error measures -----------------------------------------------------------------------------------


def ulp_error(x: np.ndarray, ref: np.ndarray, dtype: str, floor: np.ndarray | float = 0.0) -> np.ndarray:
    """|x - ref| in ULPs of `dtype` at ref (NaN where ref is NaN; inf where x is off to
    NaN/inf). A ref beyond the dtype's range counts as the infinity it rounds to. `floor`
    raises the unit where the exact result is less certain than one ULP (see `_condition`)."""
    ref = np.asarray(ref)
    wide = ref.dtype if ref.dtype.kind == "f" else np.dtype(np.float64)
    ref = ref.astype(wide)
    x = np.asarray(x).astype(wide)
    with np.errstate(all="ignore"):
        rounded = ref.astype(dtype)
        inf_ref = np.isinf(rounded)
        spacing = np.spacing(np.abs(rounded)).astype(wide)
        # gradual underflow is not required: below the smallest normal number an error counts in
        # units of that number (flushing 1e-42 to 0 in float32 is not an accuracy loss)
        tiny = np.finfo(dtype).smallest_normal
        spacing = np.where(np.abs(rounded) < tiny, np.asarray(tiny, dtype=wide), spacing)
        floored = np.asarray(floor, dtype=wide) > spacing
        # Without a floor: whole steps between x and the correctly rounded reference (so an exactly
        # rounded result is 0 ULP off); with one: the distance from the reference in floor units.
        err = np.where(floored, np.abs(x - ref), np.abs(x - rounded.astype(wide))) / np.maximum(spacing, floor)
        err = np.where(np.isfinite(x), err, np.inf)
        err = np.where(inf_ref, np.where(x.astype(dtype) == rounded, 0.0, np.inf), err)
        err = np.where(np.isnan(ref), np.nan, err)
    return np.asarray(err, dtype=np.float64)


def _agree(a: np.ndarray, b: np.ndarray, dtype: str) -> bool:
    """Two wide evaluations agree: the same NaNs and infinities, and within 1/256 ULP."""
    a, b = np.asarray(a, np.longdouble), np.asarray(b, np.longdouble)
    with np.errstate(all="ignore"):
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        close = np.abs(a - b) <= np.spacing(np.abs(b).astype(dtype)).astype(np.longdouble) / 256
    return bool(np.all(same | close))


def _max(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    a = a[~np.isnan(a)]
    return float(a.max()) if a.size else 0.0


def _fmt_ulp(v: float) -> str:
    if v == np.inf:
        return "inf"
    return f"{v:.0f}" if v < 1e6 else f"{v:.1e}"


# the verifier ----------------------------------------------------------------------------------------


class _Verifier:
    def __init__(self, a: Applied, samples: int, extreme_samples: int, seed: int, reference: str) -> None:
        self.a = a
        self.rng = np.random.default_rng(seed)
        self.samples, self.extreme_samples = samples, extreme_samples
        from ..validate import types_of

        types = types_of(a.before)
        self.root = a.before.outputs[0]
        rt = types[self.root]
        self.dtype = rt.dtype if rt.dtype in ("float32", "float64") else None
        self.bindings = {s: a.before.dims.get(s, 3) for t in types.values() for d in t.shape for s in d.symbols()}
        self.inputs = {n: t for n, t in a.before.tensors.items() if t.kind == "input"}
        for n, t in a.after.tensors.items():
            if t.kind == "input":
                self.inputs.setdefault(n, t)
        self.shapes = {n: tuple(d.evaluate(self.bindings) for d in t.shape) for n, t in self.inputs.items()}
        self.root_shape = tuple(d.evaluate(self.bindings) for d in types[self.root].shape)
        self.floats = [n for n, t in self.inputs.items() if t.dtype.startswith("float")]
        self.classes = self._classes()
        if reference == "auto":
            reference = "float64" if self.dtype == "float32" else ("mpmath" if have_mpmath() else "longdouble")
        self.reference = reference
        rule = BY_NAME.get(a.rule)
        self.log_domain = bool(getattr(rule, "log_domain", False))
        self.extremes = {}
        for var, kinds in (rule.extremes if rule is not None else {}).items():
            name = a.vars.get(var)
            if name in self.floats:
                self.extremes[name] = kinds
        cot = self.rng.normal(0.0, 1.0, self.root_shape).astype(self.dtype or "float64") if self.dtype else None
        self.cot_scale = float(np.max(np.abs(cot))) if cot is not None and cot.size else 0.0
        self.before = self._program(a.before, cot)
        self.after = self._program(a.after, cot)

    def _classes(self) -> int:
        """How many classes an int input indexes (for drawing valid targets)."""
        for g in (self.a.before, self.a.after):
            for node in g.nodes.values():
                if node.op == "one_hot":
                    from ..ops.registry import get_op

                    return int(get_op("one_hot").prepare(node.attrs, self.bindings)["depth"])
                if node.op in ("take_along_axis", "cross_entropy"):
                    x = node.inputs[0]
                    shape = self.shapes.get(x)
                    if shape:
                        ax = node.attrs.get("axis", -1)
                        return int(shape[ax])
        return 2

    def _program(self, g: Graph, cot) -> tuple[Graph, list[str]]:
        """The graph whose outputs are the root and the gradients of sum(root * cot)."""
        if cot is None or not self.floats:
            return g, [self.root]
        from ..dims import Dim

        tensors = {**g.tensors, COT: Tensor(COT, "constant", TensorType(tuple(Dim.const(d) for d in cot.shape),
                                                                         self.dtype), cot)}
        nodes = {**g.nodes, PROD: Node(PROD, "mul", (self.root, COT)), LOSS: Node(LOSS, "sum", (PROD,))}
        lg = Graph(tensors, nodes, (self.root, LOSS), loss=LOSS, dims=dict(g.dims), fixed_dims=dict(g.fixed_dims), path=g.path)
        gr = autodiff.grad(lg, wrt=self.floats, of=LOSS)
        return gr.graph, [self.root] + [gr.outputs[w] for w in self.floats]

    def _draw(self, kinds: dict[str, str] | None) -> dict[str, np.ndarray]:
        feed = {}
        for n, t in self.inputs.items():
            shape = self.shapes[n]
            if n in self.floats:
                kind = (kinds or {}).get(n)
                feed[n] = extreme(kind, shape, t.dtype, self.rng) if kind else \
                    self.rng.normal(0.0, 2.0, shape).astype(t.dtype)
            elif t.dtype == "bool":
                feed[n] = self.rng.random(shape) < 0.5
            else:
                feed[n] = self.rng.integers(0, self.classes, shape).astype(t.dtype)
        return feed

    def _eval(self, program, feed) -> list[np.ndarray]:
        g, outs = program
        try:
            res = interp.execute(g, feed, outputs=outs, dim_values=self.bindings)
        except GraphError:
            return [np.full(np.shape(feed.get(o, 0)), np.nan) for o in outs]
        return [np.asarray(res[o]) for o in outs]

    def _ref(self, program, feed, digits: int = 40) -> list[np.ndarray]:
        g, outs = program
        res = evaluate(g, feed, outs, self.reference, self.bindings, digits)
        return [np.asarray(res[o]) for o in outs]

    def _digits(self, feed) -> int:
        """mpmath digits for this sample: 40, plus enough to resolve 1 + x for the smallest
        nonzero input (log(1 + 1e-30) needs 30 more) and 1 + exp(-x) for the largest (1 -
        sigmoid(93) is 2.6e-41), up to 120 more. Beyond that (1 - sigmoid(1000) is 1e-435)
        mpmath would be slow: such absorptions end in an exact 0 or infinity, which `_errors`
        treats as an unreliable reference instead."""
        mags = [np.abs(np.asarray(feed[n], np.float64)) for n in self.floats]
        mags = [a[(a > 0) & np.isfinite(a)] for a in mags]
        low = min((float(a.min()) for a in mags if a.size), default=1.0)
        high = max((float(a.max()) for a in mags if a.size), default=1.0)
        extra = max(0.0, -np.log10(low)) + high / np.log(10.0)
        return int(40 + min(120.0, extra))

    def _condition(self, feed) -> list[np.ndarray]:
        """How far the exact outputs move when the float inputs move by about one ULP: the
        largest change over three random moves, each input moved by u * ulp, |u| uniform in
        [0.5, 1] with a random sign (at the wide precision, so the moves need not be floats of
        the graph's dtype; continuous u, because a softmax ignores a move of every input by the
        same amount), times CONDITION_FACTOR since a sampled move can partly cancel where the
        worst one adds up. No algorithm working on rounded inputs can be held to less (the
        mixed forward-backward error of numerical analysis), so errors are measured in units of
        at least this. Computed at the wide NumPy precision (cheap; it only sets a unit), as the
        smaller of the two formulas' estimates: a precision-sensitive one adds its own rounding."""
        wide = np.float64 if self.dtype == "float32" else np.longdouble
        name = "float64" if self.dtype == "float32" else "longdouble"
        base = [evaluate(p[0], feed, p[1], name, self.bindings) for p in (self.before, self.after)]
        floors = None
        for _ in range(3):
            moved = dict(feed)
            for n in self.floats:
                x = np.asarray(feed[n])
                with np.errstate(invalid="ignore"):
                    step = np.nan_to_num(np.spacing(np.abs(x)).astype(wide), nan=0.0, posinf=0.0)
                u = self.rng.uniform(0.5, 1.0, x.shape) * self.rng.choice([-1.0, 1.0], x.shape)
                moved[n] = x.astype(wide) + u.astype(wide) * step
            deltas = []
            for (g, outs), b in zip((self.before, self.after), base):
                out = evaluate(g, moved, outs, name, self.bindings)
                with np.errstate(invalid="ignore"):
                    deltas.append([np.abs(np.asarray(out[o], np.longdouble) - np.asarray(b[o], np.longdouble))
                                   for o in outs])
            d = [np.nan_to_num(np.fmin(a, b), nan=0.0, posinf=0.0) for a, b in zip(*deltas)]
            floors = d if floors is None else [np.maximum(f, x) for f, x in zip(floors, d)]
        return [f * CONDITION_FACTOR for f in floors]

    def _probe(self, feed, ref_before, ref_after) -> list[np.ndarray]:
        """Where the original is precision-sensitive and the rewritten form is not (long double
        only): both evaluated in float32 and compared with their long-double values. A formula
        that loses many digits loses them in float32 too, visibly; its float64 value could have
        agreed with its long-double value by chance (1 in 2048), a float32 one cannot."""
        self.reference, saved = "float32", self.reference
        try:
            coarse = [self._ref(p, feed) for p in (self.before, self.after)]
        finally:
            self.reference = saved
        out = []
        with np.errstate(all="ignore"):
            for co, cn, ro, rn in zip(*coarse, ref_before, ref_after):
                so = np.abs(np.asarray(co, np.longdouble) - ro)
                sn = np.abs(np.asarray(cn, np.longdouble) - rn)
                so = np.where(np.isnan(so), np.inf, so)
                out.append(np.isfinite(sn) & (sn * 64 < so))
        return out

    def _errors(self, feed, extreme_run: bool) -> tuple[list, list, list, list, int]:
        """Per output array (the value, then each gradient): the original's and the rewritten
        graph's errors, their distance from each other, the arrays, and how many elements the
        reference could not decide (judged against the rewritten form at the wide precision)."""
        orig, new = self._eval(self.before, feed), self._eval(self.after, feed)
        self.digits = self._digits(feed) if self.reference == "mpmath" else 0
        ref = self._ref(self.before, feed, self.digits)
        ref_new = self._ref(self.after, feed, self.digits)
        floors = self._condition(feed) if self.floats else [0.0] * len(ref)
        probe = self._probe(feed, ref, ref_new) if extreme_run and self.reference == "longdouble" else None
        eo, en, apart, undecided = [], [], [], 0
        for k, (o, n, r, fl) in enumerate(zip(orig, new, ref, floors)):
            if not k and self.log_domain:
                fl = np.maximum(fl, np.spacing(np.asarray(1.0, self.dtype)))
            if k:  # a gradient: a VJP rounds at the scale of the cotangent and of the gradient itself
                finite = np.abs(np.asarray(r, np.float64)[np.isfinite(np.asarray(r, np.float64))])
                scale = max(self.cot_scale, float(finite.max()) if finite.size else 0.0)
                fl = np.maximum(fl, np.spacing(np.asarray(scale, self.dtype)))
            e_o = ulp_error(o, r, self.dtype, fl)
            if extreme_run:
                # Where the wide original is itself unreliable, the rewritten form at the wide precision
                # is the better reference: the original ended in an absorbing value (0, +-inf, NaN)
                # that the rewritten form did not, or (long double only) its float value is far from
                # its wide value while the rewritten form's is not: precision-sensitive at both widths.
                rn = np.asarray(ref_new[k])
                r64, rn64 = np.asarray(r, np.float64), np.asarray(rn, np.float64)
                use_new = ((r64 == 0) | ~np.isfinite(r64)) & np.isfinite(rn64) & (rn64 != 0)
                if self.reference == "longdouble":
                    use_new |= probe[k]
                elif self.reference == "float64":
                    use_new |= (e_o > SENSITIVE) & (ulp_error(n, rn, self.dtype, fl) < e_o)
                if use_new.any():
                    undecided += int(np.sum(use_new & (ulp_error(rn, r, self.dtype, fl) > SENSITIVE)))
                    r = np.where(use_new, rn, r)
                    e_o = ulp_error(o, r, self.dtype, fl)
            eo.append(e_o)
            en.append(ulp_error(n, r, self.dtype, fl))
            apart.append(ulp_error(n, o.astype(np.asarray(r).dtype), self.dtype, fl))
        return eo, en, apart, [orig, new, ref], undecided

    def run(self) -> Check:
        a = self.a
        if self.dtype is None:
            return self._exact()
        stats = {"apart": 0.0, "a_bad": 0, "b_bad": 0, "b_worst": 0.0, "c_nan": 0, "c_nonfinite": 0, "c_bad": 0,
                 "c_worst": 0.0, "o_nonfinite": 0, "o_lost": 0, "n": 0, "m": 0,
                 "undecided": 0, "worst_random": {}, "worst_extreme": {}}
        n_random = self.samples if self.inputs else 1
        for _ in range(n_random):
            self._sample(None, stats)
        kinds = [(n, k) for n, ks in self.extremes.items() for k in ks]
        n_ext = self.extreme_samples if kinds else 0
        for i in range(n_ext):
            name, kind = kinds[i % len(kinds)]
            self._sample({name: kind}, stats)
        for worst in (stats["worst_random"], stats["worst_extreme"]):
            for k, (o, n_) in worst.items():
                if n_ - o > (NO_WORSE if k == 0 else GRAD_NO_WORSE):
                    stats["b_bad"] += 1
                    stats["b_worst"] = max(stats["b_worst"], n_ - o)
        passed = stats["a_bad"] == 0 and stats["b_bad"] == 0 and stats["c_nan"] == 0 and stats["c_nonfinite"] == 0 \
            and stats["c_bad"] == 0
        return Check(a, passed, self._message(stats, n_random, n_ext, kinds, passed), {
            "samples": n_random, "extreme_samples": n_ext, "reference": self.reference,
            "original_nonfinite": stats["o_nonfinite"], "original_inaccurate": stats["o_lost"],
            "max_ulp_apart": stats["apart"], "max_ulp_extreme": stats["c_worst"], "undecided": stats["undecided"],
            "failures": {"a": stats["a_bad"], "b": stats["b_bad"], "c_nan": stats["c_nan"],
                         "c_nonfinite": stats["c_nonfinite"], "c_inaccurate": stats["c_bad"]}})

    def _sample(self, kinds, stats) -> None:
        feed = self._draw(kinds)
        extreme_run = kinds is not None
        eo, en, apart, (orig, new, ref), undecided = self._errors(feed, extreme_run)
        stats["undecided"] += int(bool(undecided))
        o_bad = any(np.any(np.isfinite(np.asarray(r, np.float64).astype(self.dtype)) & ~np.isfinite(o))
                    for o, r in zip(orig, ref))
        o_lost = any(_max(e) > LOST for e in eo)
        if not extreme_run:
            stats["n"] += 1
            for e_o, e_n, d in zip(eo, en, apart):
                acc = e_o <= ACCURATE
                if np.any(acc & ~(e_n <= 2 * ACCURATE + NO_WORSE)):
                    stats["a_bad"] += 1
                stats["apart"] = max(stats["apart"], _max(np.where(acc, d, np.nan)))
        else:
            stats["m"] += 1
            stats["o_nonfinite"] += int(o_bad)
            stats["o_lost"] += int(o_lost and not o_bad)
            for k, (n_, r, e_n) in enumerate(zip(new, ref, en)):
                rr = np.asarray(r)
                if np.any(np.isnan(n_) & ~np.isnan(rr)):
                    stats["c_nan"] += 1
                elif np.any(~np.isnan(rr) & (e_n == np.inf)):
                    stats["c_nonfinite"] += 1
                elif _max(e_n) > (EXTREME_TOL if k == 0 else GRAD_EXTREME_TOL):
                    stats["c_bad"] += 1
                stats["c_worst"] = max(stats["c_worst"], _max(e_n))
        # (b) compares worst cases: per output array, over the random samples and over the
        # extreme ones (a single element of a 3-rounding formula is sometimes 3 ULP off, either way)
        worst = stats["worst_extreme" if extreme_run else "worst_random"]
        for k, (e_o, e_n) in enumerate(zip(eo, en)):
            o, n_ = worst.get(k, (0.0, 0.0))
            worst[k] = (max(o, _max(np.where(np.isnan(e_o) & ~np.isnan(e_n), np.inf, e_o))), max(n_, _max(e_n)))

    def _message(self, st, n_random, n_ext, kinds, passed) -> str:
        parts = []
        if n_ext:
            names = ", ".join(sorted({k for _, k in kinds}))
            orig = []
            if st["o_nonfinite"]:
                orig.append(f"overflowed (inf/NaN) on {st['o_nonfinite']}/{n_ext}")
            if st["o_lost"]:
                orig.append(f"lost accuracy (> {LOST:.0f} ULP) on {st['o_lost']}/{n_ext}")
            head = f"on extreme inputs ({names}) the original " + (" and ".join(orig) if orig else "held up on all")
            bad = st["c_nan"] + st["c_nonfinite"] + st["c_bad"]
            if bad:
                head += (f"; rewritten NaN on {st['c_nan']}, non-finite where the reference is finite on "
                         f"{st['c_nonfinite']}, off by more than {EXTREME_TOL:.0f} ULP on {st['c_bad']}")
            else:
                head += f"; rewritten finite and within {_fmt_ulp(st['c_worst'])} ULP of the reference on all"
            parts.append(head)
        if st["undecided"]:
            parts.append(f"on {st['undecided']} extreme samples the {self.reference} value of the original was "
                         "unreliable (the rewritten form at that precision was the reference)" +
                         (" (install mpmath for an independent one)" if self.reference == "longdouble" else ""))
        word = "elsewhere" if n_ext else f"on {n_random} random inputs"
        parts.append(f"{word} max {_fmt_ulp(st['apart'])} ULP apart (values and gradients)")
        if st["a_bad"]:
            parts.append(f"FAILED: on {st['a_bad']} random samples the rewritten graph is inaccurate where the original "
                         "is accurate")
        if st["b_bad"]:
            parts.append(f"FAILED: in the worst case less accurate than the original by {_fmt_ulp(st['b_worst'])} ULP "
                         f"({st['b_bad']} output arrays)")
        text = f"{self.a.where()}: " + "; ".join(parts)
        return text + ("" if passed else " [contract broken]")

    def _exact(self) -> Check:
        """Non-float results (ints, bools): the two graphs must agree exactly."""
        bad = 0
        n = self.samples if self.inputs else 1
        for _ in range(n):
            feed = self._draw(None)
            o, nw = self._eval(self.before, feed)[0], self._eval(self.after, feed)[0]
            bad += int(not np.array_equal(o, nw))
        msg = f"{self.a.where()}: " + (f"identical on {n} random samples" if not bad else
                                       f"differs on {bad}/{n} samples [contract broken]")
        return Check(self.a, bad == 0, msg, {"samples": n})
