"""Regenerates the Chebyshev tables of gtool/ops/erf.py from mpmath (run it, paste the output).

    .venv/bin/python bench/erf_coefficients.py

erf(x) / x is fitted in t = x^2 on [0, 0.25] (|x| < 0.5); h(x) = x e^(x^2) erfc(x) in s = 1/x on
x in [0.5, 1], [1, 2], [2, 4], [4, 8], [8, 28] (erfc(28) underflows float64). The fit is the
Chebyshev interpolant at 40 first-kind nodes, computed at 50 digits and cut where its terms drop
below 1e-19 of the first (the truncation error is far below half an ulp), then written as a
polynomial in the interval's variable u in [-1, 1] (exactly, at 50 digits): its coefficients
stay below 1.1, so Horner's rule (2 operations a degree, against Clenshaw's 3) loses nothing.
"""

from __future__ import annotations

import mpmath as m

m.mp.dps = 50
NODES = 40


def cheb(f, a, b):
    nodes = [m.cos(m.pi * (k + m.mpf(1) / 2) / NODES) for k in range(NODES)]
    vals = [f((b - a) / 2 * t + (a + b) / 2) for t in nodes]
    c = [2 * m.fsum(v * m.cos(m.pi * j * (k + m.mpf(1) / 2) / NODES) for k, v in enumerate(vals)) / NODES
         for j in range(NODES)]
    c[0] /= 2
    keep = max(j for j, v in enumerate(c) if abs(v) > abs(c[0]) * m.mpf("1e-19")) + 1
    return [float(v) for v in power_basis(c[:keep])]


def power_basis(c):
    """sum c_k T_k(u) as the coefficients of 1, u, u^2, ... (T_k+1 = 2u T_k - T_k-1)."""
    out = [m.mpf(0)] * len(c)
    prev, cur = [m.mpf(1)], [m.mpf(0), m.mpf(1)]
    for k, ck in enumerate(c):
        tk = prev if k == 0 else cur
        for j, v in enumerate(tk):
            out[j] += ck * v
        if k >= 1:
            nxt = [2 * v for v in [m.mpf(0)] + cur]
            for j, v in enumerate(prev):
                nxt[j] -= v
            prev, cur = cur, nxt
    return out


def erf_over_x(t):
    if t == 0:
        return 2 / m.sqrt(m.pi)
    x = m.sqrt(t)
    return m.erf(x) / x


def h(s):
    x = 1 / s
    return x * m.exp(x * x) * m.erfc(x)


def _tuple(values, indent: str) -> str:
    """A tuple literal wrapped at 110 columns."""
    lines, line = [], indent
    for v in values:
        item = repr(v) + ", "
        if len(line) + len(item) > 110:
            lines.append(line.rstrip())
            line = indent
        line += item
    lines.append(line.rstrip())
    return "(\n" + "\n".join(lines) + "\n" + indent[4:] + ")"


def main() -> None:
    print(f"SMALL = {_tuple(cheb(erf_over_x, 0, m.mpf('0.25')), '    ')}")
    print("TAIL = (")
    for a, b in ((0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 28.0)):
        print(f"    ({a!r}, {b!r}, {_tuple(cheb(h, 1 / m.mpf(b), 1 / m.mpf(a)), '        ')}),")
    print(")")


if __name__ == "__main__":
    main()
