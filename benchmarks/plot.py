"""The benchmark report's speedups as an SVG bar chart (no plotting library needed).

One group of bars per measurement (a model's forward or training step, an op row's forward or
forward+backward), one bar per backend or baseline against the eager reference, on a log2 axis
around 1x: bars to the right are faster than the reference, bars to the left slower.
"""
from __future__ import annotations

import math
from html import escape

from harness import speedups

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
LABEL_WIDTH, AXIS_WIDTH, BAR_HEIGHT, GROUP_GAP, TOP = 520, 420, 9, 6, 60  # pixels


def speedup_groups(report: dict) -> list[tuple[str, dict[str, float]]]:
    """(label, {contender: speedup over the reference}) per measurement, in the report's order."""
    groups = []
    sources = [(r["model"], r["latency"], (("forward", "forward"), ("train_step", "train step")))
               for r in report["models"]]
    sources += [(f"{r['op']} {r['label']}", r["latency"], (("forward", "forward"), ("forward_backward", "fwd+bwd")))
                for r in report["ops"]]
    for name, latency, keys in sources:
        for key, what in keys:
            ratios = {b: s for b, s in speedups(latency, key).items() if b != "reference"}
            if ratios:
                groups.append((f"{name}: {what}", ratios))
    return groups


def speedup_svg(report: dict) -> str:
    groups = speedup_groups(report)
    contenders = list(dict.fromkeys(b for _, ratios in groups for b in ratios))  # as the report lists them
    color = {b: COLORS[i % len(COLORS)] for i, b in enumerate(contenders)}
    all_ratios = [s for _, ratios in groups for s in ratios.values()] or [1.0]
    lo = min(-1, math.floor(math.log2(min(all_ratios))))
    hi = max(1, math.ceil(math.log2(max(all_ratios))))
    x_of = lambda s: LABEL_WIDTH + (math.log2(s) - lo) / (hi - lo) * AXIS_WIDTH  # noqa: E731
    height = TOP + sum(len(r) * BAR_HEIGHT + GROUP_GAP for _, r in groups) + 20
    env = report["environment"]
    title = (f"hrvit_kernels speedup over the eager reference — {env.get('gpu') or env['processor']} "
             f"({env['device']}), {report['config']['dtype']}, batch {report['config']['batch']}")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL_WIDTH + AXIS_WIDTH + 40}" height="{height}" '
           'font-family="sans-serif" font-size="10">',
           f'<text x="4" y="14" font-size="12">{escape(title)}</text>']
    for i, b in enumerate(contenders):  # legend
        out.append(f'<rect x="{4 + 150 * i}" y="22" width="10" height="10" fill="{color[b]}"/>'
                   f'<text x="{18 + 150 * i}" y="31">{escape(b)}</text>')
    for e in range(lo, hi + 1):  # axis ticks at powers of two
        x = x_of(2.0 ** e)
        out.append(f'<line x1="{x:.1f}" y1="{TOP - 8}" x2="{x:.1f}" y2="{height - 20}" stroke="#999" '
                   f'stroke-width="{1.5 if e == 0 else 0.5}"/>'
                   f'<text x="{x:.1f}" y="{TOP - 10}" text-anchor="middle">{2.0 ** e:g}x</text>')
    y = TOP
    for label, ratios in groups:
        out.append(f'<text x="{LABEL_WIDTH - 6}" y="{y + len(ratios) * BAR_HEIGHT / 2 + 3:.1f}" '
                   f'text-anchor="end">{escape(label)}</text>')
        for b, s in ratios.items():
            x0, x1 = sorted((x_of(1.0), x_of(s)))
            out.append(f'<rect class="bar" x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 0.5):.1f}" '
                       f'height="{BAR_HEIGHT - 1}" fill="{color[b]}"><title>{escape(b)}: {s:.2f}x</title></rect>'
                       f'<text x="{x1 + 3:.1f}" y="{y + BAR_HEIGHT - 2}" font-size="8">{s:.2f}x</text>')
            y += BAR_HEIGHT
        y += GROUP_GAP
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # python benchmarks/plot.py REPORT.json ...: writes REPORT.svg beside each
    import json
    import sys
    from pathlib import Path

    for path in map(Path, sys.argv[1:]):
        path.with_suffix(".svg").write_text(speedup_svg(json.loads(path.read_text())))
        print(f"wrote {path.with_suffix('.svg')}")
