"""Small SVG charts for the shift report (no plotting library): horizontal bars for a Pareto, and a pin's
EWMA control chart. Plain SVG 1.1 that browsers and Qt's SVG renderer (the PDF) both draw."""

from __future__ import annotations

import math
from html import escape

import numpy as np

FONT = 'font-family="DejaVu Sans, Arial, sans-serif"'


def pareto_svg(items: list[tuple[str, int]], width: int = 520, bar_h: int = 18, colour: str = "#c0392b") -> str:
    """Bars longest first with their counts and the cumulative share; `items` as (name, count)."""
    items = sorted(items, key=lambda kv: -kv[1])[:15]
    total = sum(n for _, n in items) or 1
    top = max((n for _, n in items), default=1) or 1
    label_w, h = 120, bar_h * max(len(items), 1) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" viewBox="0 0 {width} {h}">']
    if not items:
        out.append(f'<text x="4" y="16" font-size="12" {FONT} fill="#555">none</text>')
    cumulative = 0
    for i, (name, n) in enumerate(items):
        cumulative += n
        y = 5 + i * bar_h
        w = (width - label_w - 110) * n / top
        out.append(f'<text x="{label_w - 6}" y="{y + bar_h - 5}" font-size="12" {FONT} text-anchor="end">'
                   f'{escape(str(name))}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 5}" fill="{colour}"/>')
        out.append(f'<text x="{label_w + w + 5:.1f}" y="{y + bar_h - 5}" font-size="12" {FONT}>{n} '
                   f'({100 * cumulative / total:.0f} % cum.)</text>')
    out.append("</svg>")
    return "".join(out)


def control_chart_svg(values: np.ndarray, ewma: np.ndarray, upper: np.ndarray, centre: float, title: str,
                      alarm_at: int | None = None, width: int = 640, height: int = 170, points: int = 600) -> str:
    """One pin's chart in log10 score: the parts' values (grey dots), the EWMA (blue), its upper limit (red
    dashes) and centre line (green); a vertical line where the drift alarm was raised. Long series are
    thinned to `points` for drawing (every k-th part; the alarm part is always kept)."""
    n = len(ewma)
    left, right, top, bottom = 52, 10, 22, 22
    pw, ph = width - left - right, height - top - bottom
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}">',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fbfbfb" stroke="#999" stroke-width="0.5"/>',
           f'<text x="{left}" y="14" font-size="12" {FONT} font-weight="bold">{escape(title)}</text>']
    if n == 0:
        out.append(f'<text x="{left + 8}" y="{top + 20}" font-size="12" {FONT}>no parts charted yet</text></svg>')
        return "".join(out)
    finite = np.concatenate([np.asarray(v, float)[np.isfinite(v)] for v in (values, ewma, upper)] + [[centre]])
    lo, hi = float(np.percentile(finite, 0.5)), float(finite.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    step = max(1, math.ceil(n / points))
    keep = np.arange(0, n, step)
    if alarm_at is not None and 0 <= alarm_at < n:
        keep = np.union1d(keep, [alarm_at])

    def x(i: float) -> float:
        return left + pw * (i / max(n - 1, 1))

    def y(v: float) -> float:
        return top + ph * (1 - (min(max(v, lo), hi) - lo) / (hi - lo))

    def line(series: np.ndarray, colour: str, dash: str = "") -> str:
        pts = " ".join(f"{x(i):.1f},{y(series[i]):.1f}" for i in keep if np.isfinite(series[i]))
        return (f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.4"'
                f'{f" stroke-dasharray={chr(34)}{dash}{chr(34)}" if dash else ""}/>')

    out += [f'<circle cx="{x(i):.1f}" cy="{y(values[i]):.1f}" r="1.1" fill="#aaa"/>' for i in keep
            if np.isfinite(values[i])]
    out.append(f'<line x1="{left}" y1="{y(centre):.1f}" x2="{left + pw}" y2="{y(centre):.1f}" stroke="#27ae60" '
               f'stroke-width="1"/>')
    out.append(line(np.asarray(upper, float), "#c0392b", "5,3"))
    out.append(line(np.asarray(ewma, float), "#2c6fbb"))
    if alarm_at is not None and 0 <= alarm_at < n:
        out.append(f'<line x1="{x(alarm_at):.1f}" y1="{top}" x2="{x(alarm_at):.1f}" y2="{top + ph}" '
                   f'stroke="#e67e22" stroke-width="1.5"/>')
        out.append(f'<text x="{x(alarm_at) + 3:.1f}" y="{top + 12}" font-size="11" {FONT} fill="#e67e22">'
                   f'drift alarm</text>')
    for v in (lo + pad, hi - pad):
        out.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" font-size="10" {FONT} text-anchor="end">'
                   f'{10 ** v:.3g}</text>')
    out.append(f'<text x="{left}" y="{height - 6}" font-size="10" {FONT}>part 1</text>')
    out.append(f'<text x="{left + pw}" y="{height - 6}" font-size="10" {FONT} text-anchor="end">part {n}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" font-size="10" {FONT} text-anchor="middle">'
               f'cell score (log scale): grey parts, blue EWMA, red dashed limit, green centre</text>')
    out.append("</svg>")
    return "".join(out)
