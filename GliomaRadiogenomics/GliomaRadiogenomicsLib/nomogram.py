"""Nomogram of a logistic model bundle as data and as a figure.

Each variable's axis maps its values to 0-100 points (bundle.py's scales: the widest contribution range in the
training data spans 100 points); total points map to the linear predictor and the probability. Single-feature
variables are labelled in the feature's units (age in years, sex 0/1); grouped variables (Radiomics score, Imaging
score) in their contribution to the linear predictor.
"""
from __future__ import annotations

import math
from typing import List, Optional

import numpy as np


def nomogram_axes(bundle) -> List[dict]:
    """Per variable: its points range and tick labels (value -> points)."""
    per_point = float(bundle.nomogram["lp_per_point"])
    out = []
    for v in bundle.variables:
        span = (v.c_max - v.c_min) / per_point
        if v.axis:
            lo, hi = v.axis["x_at_c_min"], v.axis["x_at_c_max"]
            vals = np.linspace(lo, hi, 5)
            ticks = [{"value": float(x), "points": float((x - lo) / (hi - lo) * span) if hi != lo else 0.0}
                     for x in vals]
            unit = v.axis.get("unit", "")
        else:
            vals = np.linspace(v.c_min, v.c_max, 5)
            ticks = [{"value": float(c), "points": float((c - v.c_min) / per_point)} for c in vals]
            unit = "contribution to the linear predictor"
        out.append({"name": v.name, "points_max": float(span), "ticks": ticks, "unit": unit})
    return out


def probability_axis(bundle, probabilities=(0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95)) -> List[dict]:
    n = bundle.nomogram
    lo, hi = n["total_points_range"]
    out = []
    for p in probabilities:
        tp = (math.log(p / (1 - p)) - n["lp_at_zero_points"]) / n["lp_per_point"]
        if lo <= tp <= hi:
            out.append({"probability": p, "total_points": float(tp)})
    return out


def plot_nomogram(bundle, path: Optional[str] = None, marker: Optional[dict] = None):
    """The figure (PNG at ``path``; returns the matplotlib figure). ``marker``: a case's points to draw."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    axes = nomogram_axes(bundle)
    prob = probability_axis(bundle)
    total_max = bundle.nomogram["total_points_range"][1]
    rows = ["Points"] + [a["name"] for a in axes] + ["Total points", "Probability"]
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(rows) + 0.8))
    scale_total = 100.0 / max(total_max, 1e-9)  # total points drawn on the same 0-100 width

    def line(y, x0, x1, ticks, labels):
        ax.plot([x0, x1], [y, y], "k-", lw=1)
        for x, lab in zip(ticks, labels):
            ax.plot([x, x], [y, y + 0.12], "k-", lw=0.8)
            ax.text(x, y + 0.18, lab, ha="center", va="bottom", fontsize=7)

    n = len(rows)
    line(n - 1, 0, 100, range(0, 101, 10), [str(i) for i in range(0, 101, 10)])
    for i, a in enumerate(axes):
        y = n - 2 - i
        fmt = "{:.0f}" if a["unit"] == "years" else "{:.2g}"
        line(y, 0, a["points_max"], [t["points"] for t in a["ticks"]], [fmt.format(t["value"]) for t in a["ticks"]])
        if marker and a["name"] in marker.get("points", {}):
            ax.plot(marker["points"][a["name"]], y, "rv")
    tt = np.linspace(0, total_max, 6)
    line(1, 0, 100, tt * scale_total, [f"{t:.0f}" for t in tt])
    line(0, 0, 100, [p["total_points"] * scale_total for p in prob], [f"{p['probability']:g}" for p in prob])
    if marker and "total_points" in marker:
        ax.plot(marker["total_points"] * scale_total, 1, "rv")
    ax.set_yticks(range(n))
    ax.set_yticklabels(rows[::-1], fontsize=8)
    ax.set_xlim(-5, 105)
    ax.set_ylim(-0.6, n - 0.2)
    ax.set_xticks([])
    for s in ("top", "right", "bottom"):
        ax.spines[s].set_visible(False)
    ax.set_title(f"Nomogram: {bundle.task} ({bundle.name}){' — SYNTHETIC training data' if bundle.synthetic else ''}",
                 fontsize=9)
    if path:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
