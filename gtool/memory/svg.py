"""Small SVG line plots written by hand (no matplotlib): `gtool memory -o plot.svg` draws live
bytes over the run, and bench/memory_bench.py the time/memory curve of each policy."""

from __future__ import annotations

from html import escape

from ..budget import human

W, H, L, R, T, B = 640, 360, 72, 16, 28, 44  # size and margins
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * k / (n - 1) for k in range(n)]


def line_plot(series: list[tuple[str, list[tuple[float, float]]]], title: str, xlabel: str, ylabel: str,
              y_bytes: bool = True, x_bytes: bool = False, marks: list[tuple[float, str]] = (),
              points: bool = False) -> str:
    """An SVG document: one polyline per (label, [(x, y)...]); `marks` are labelled vertical lines."""
    xs = [x for _, pts in series for x, _ in pts] or [0.0]
    ys = [y for _, pts in series for _, y in pts] or [0.0]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = 0.0, max(ys) * 1.05 if max(ys) > 0 else 1.0
    if not y_bytes:
        y0 = min(0.0, min(ys))

    def px(x: float) -> float:
        return L + (x - x0) / (x1 - x0) * (W - L - R)

    def py(y: float) -> float:
        return H - B - (y - y0) / (y1 - y0) * (H - T - B)

    def fmt(v: float, as_bytes: bool) -> str:
        return human(int(v)) if as_bytes else f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>']
    for v in _ticks(y0, y1):
        out.append(f'<line x1="{L - 4}" y1="{py(v):.1f}" x2="{W - R}" y2="{py(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{escape(fmt(v, y_bytes))}</text>')
    for v in _ticks(x0, x1):
        out.append(f'<text x="{px(v):.1f}" y="{H - B + 16}" text-anchor="middle">{escape(fmt(v, x_bytes))}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 8}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{(T + H - B) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {(T + H - B) / 2})">{escape(ylabel)}</text>')
    for x, label in marks:
        out.append(f'<line x1="{px(x):.1f}" y1="{T}" x2="{px(x):.1f}" y2="{H - B}" stroke="#888" '
                   'stroke-dasharray="4 3"/>')
        out.append(f'<text x="{px(x) + 3:.1f}" y="{T + 10}">{escape(label)}</text>')
    for k, (label, pts) in enumerate(series):
        color = COLORS[k % len(COLORS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        if points:
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{color}"/>' for x, y in pts]
        out.append(f'<text x="{W - R - 4}" y="{T + 14 + 14 * k}" text-anchor="end" fill="{color}">'
                   f'{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def timeline_svg(reports: list, title: str) -> str:
    """Live bytes per step of one or more MemoryReports (one line each, labelled by policy)."""
    series = [(f"{r.policy} (peak {human(r.peak_bytes)})",
               [(float(k), float(s.live_during)) for k, s in enumerate(r.plan.steps)]) for r in reports]
    marks = [(float(reports[0].boundary), "backward")] if reports else []
    return line_plot(series, title, "step of the run", "live bytes", marks=marks)
