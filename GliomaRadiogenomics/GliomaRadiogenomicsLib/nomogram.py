"""Nomograms in the style of R's ``rms::nomogram``: the geometry as data (computed once, stored in the bundle) and
its renderers (matplotlib here; the Slicer plot in GliomaMRML/convert.py draws the same data).

Conventions (rms / Harrell, Regression Modeling Strategies; re-implemented, no code copied):

* Ranges (rms ``datadist``): a continuous variable's axis spans its *trimmed* training range, the quantiles q and
  1 - q with q = 10 / max(n, 200) (n = training cases): the 10th smallest and 10th largest value from n = 200 on,
  the 5th / 95th percentiles below. We take the order statistics themselves (the ceil(q n)-th smallest and largest
  value: numpy ``method="inverted_cdf"``), where R's ``quantile`` interpolates between neighbours. A grouped
  variable (Radiomics / Imaging score: the sum of its terms' contributions) is trimmed the same way. A variable with
  fewer than 10 distinct training values (rms ``n.unique``) is discrete: its axis holds its observed values only.
* Categorical variables (sex: F / M; WHO grade: 2 / 3 / 4) get one tick per level and nothing in between.
* Points: each variable's contribution to the linear predictor over its axis range; the widest range gets 0-100
  points, the others proportionally (``lp_per_point`` = widest range / 100), so
  ``lp = lp_at_zero_points + total_points * lp_per_point`` exactly and the "Total points" axis maps to the
  "Probability" axis through the logistic function.

The geometry (``geometry_from_training`` at training, ``geometry_from_legacy`` for bundles made before it) is
written into the bundle's ``nomogram`` (points, total-points and probability axes, the range rule) and into each
variable's ``axis`` (kind, title, value range, ticks with their points). ``case_nomogram`` adds a case's values and
points to it for predictions.json; ``draw_nomogram`` and the Slicer plot only read that JSON.
"""
from __future__ import annotations

import math
from typing import List, Mapping, Optional, Sequence

import numpy as np

TRIM_COUNT = 10          # rms datadist: q = 10 / max(n, 200)
TRIM_MIN_N = 200
DISCRETE_MAX_LEVELS = 10  # rms datadist n.unique: fewer distinct values -> discrete axis
MAX_POINTS = 100.0
GEOMETRY_STYLE = "rms-1"
# categorical clinical variables: feature -> axis title and its levels (encoded value -> label)
CATEGORICAL = {"sex_male": {"title": "Sex", "levels": {0.0: "F", 1.0: "M"}},
               "who_grade": {"title": "WHO grade", "levels": {2.0: "2", 3.0: "3", 4.0: "4"}}}
# probability ticks, in the order they are placed (later ones only where they do not crowd earlier ones)
PROBABILITY_TICKS = (0.5, 0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.05, 0.95, 0.4, 0.6, 0.02, 0.98, 0.01, 0.99)
MIN_PROBABILITY_GAP = 0.055  # fraction of the total-points axis between two probability ticks
LEGACY_NOTE = ("variable ranges are the training minimum-maximum: this bundle predates trimmed (rms datadist) "
               "ranges; rebuild it to get them")


# ---------------------------------------------------------------------------------------------- ranges and ticks
def display_quantile(n: int) -> float:
    """rms datadist's q.display: q = 10 / max(n, 200)."""
    return TRIM_COUNT / max(int(n), TRIM_MIN_N)


def trim_rank(n: int) -> int:
    """The rank k of the order statistics that bound the trimmed range (k-th smallest, k-th largest)."""
    return max(1, int(math.ceil(display_quantile(n) * n - 1e-9)))


def trimmed_range(values) -> tuple:
    """(low, high, k, n): the k-th smallest and k-th largest finite value, k = trim_rank(n)."""
    x = np.sort(np.asarray(values, float)[np.isfinite(np.asarray(values, float))])
    n = len(x)
    if n == 0:
        raise ValueError("no finite training values for a nomogram axis")
    k = min(trim_rank(n), (n + 1) // 2)
    return float(x[k - 1]), float(x[n - k]), k, n


def _decimals(step: float) -> int:
    d = max(0, -int(math.floor(math.log10(step) + 1e-9)))
    while d < 12 and abs(round(step, d) - step) > 1e-9 * step:
        d += 1
    return d


def nice_ticks(lo: float, hi: float, target: int = 6, integer: bool = False) -> List[float]:
    """Readable tick values inside [lo, hi]: multiples of 1, 2, 2.5 or 5 x 10^k, at most ``target`` + 1 of them;
    whole numbers only when ``integer``; at least two where a finer readable step gives two (one label alone does
    not make a scale: age 18-75 on a short axis gets 25 / 50 / 75, not 50 alone). None fits: the two ends."""
    lo, hi = float(min(lo, hi)), float(max(lo, hi))
    span = hi - lo
    if not math.isfinite(span) or span <= 0:
        return [lo]
    mag = 10.0 ** math.floor(math.log10(span / target))
    steps = [m * e for e in (mag / 10, mag, mag * 10) for m in (1, 2, 2.5, 5)]
    steps = [s for s in steps if not (integer and (s < 1 or abs(s - round(s)) > 1e-9))]

    def ticks_of(step: float) -> List[float]:
        d = _decimals(step)
        k, out = math.ceil(lo / step - 1e-9), []
        while k * step <= hi + 1e-9 * max(1.0, abs(hi)):
            out.append(round(k * step, d) + 0.0)
            k += 1
        return out
    i = next((j for j, s in enumerate(steps) if span / s <= target + 1e-9), None)
    if i is None:
        return [lo, hi]
    ticks = ticks_of(steps[i])
    while len(ticks) < 2 and i > 0 and len(ticks_of(steps[i - 1])) <= max(target, 2) + 1:
        i -= 1
        ticks = ticks_of(steps[i])
    return ticks or [lo, hi]


def format_value(v: float, step: Optional[float] = None) -> str:
    if step is not None and step > 0:
        return f"{v:.{_decimals(step)}f}"
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.3g}"


def format_probability(p: Optional[float]) -> str:
    """Two significant digits (0.085, 0.12, 0.9): the probability as a nomogram (or a figure title) shows it."""
    if p is None or not math.isfinite(p):
        return "n/a"
    if p >= 0.995:
        return ">0.99"
    if p < 0.0001:
        return "<0.0001"
    r = float(f"{p:.2g}")
    return f"{r:.{max(2, 1 - int(math.floor(math.log10(r))))}f}"


# ---------------------------------------------------------------------------------------------- geometry
class _Spec:
    """One variable's axis before scaling: c(value) = a + s * value (a score: value = its contribution)."""

    def __init__(self, name, features, kind, title, unit, a, s, lo=None, hi=None, levels=None, integer=False,
                 trimmed=False, feature=None):
        self.name, self.features, self.kind, self.title, self.unit = name, list(features), kind, title, unit
        self.a, self.s, self.lo, self.hi, self.levels = float(a), float(s), lo, hi, levels
        self.integer, self.trimmed, self.feature = integer, trimmed, feature

    def c(self, value: float) -> float:
        return self.a + self.s * float(value)

    def values(self) -> List[float]:
        return [v for v, _ in self.levels] if self.levels is not None else [self.lo, self.hi]


def _single_feature_spec(name, feature, b, center, scale, unit, title=None):
    s = b / scale
    return dict(name=name, features=[feature], a=-s * center, s=s, unit=unit, feature=feature,
                title=title or name)


def _categorical_levels(feature: str, observed) -> List[tuple]:
    levels = CATEGORICAL[feature]["levels"]
    obs = np.asarray(list(observed), float)
    return [(v, lab) for v, lab in sorted(levels.items()) if np.any(np.isclose(obs, v, atol=1e-6))]


def geometry_from_training(features: Sequence[str], coefficients, center, scale, intercept: float, X: np.ndarray,
                           groups: Mapping[str, Sequence[str]], units: Optional[Mapping[str, str]] = None):
    """rms-style geometry from the training matrix ``X`` (rows = training cases, columns = ``features``).
    Returns (variables as dicts {name, features, c_min, c_max, axis}, nomogram dict)."""
    units = units or {}
    idx = {f: i for i, f in enumerate(features)}
    coefficients, center, scale = (np.asarray(v, float) for v in (coefficients, center, scale))
    X = np.asarray(X, float)
    specs = []
    n_train = int(X.shape[0])
    for name, feats in groups.items():
        cols = [idx[f] for f in feats]
        if len(feats) == 1 and coefficients[cols[0]] != 0:
            i, f = cols[0], feats[0]
            x = X[:, i][np.isfinite(X[:, i])]
            base = _single_feature_spec(name, f, coefficients[i], center[i], scale[i], units.get(f, ""))
            if f in CATEGORICAL:
                levels = _categorical_levels(f, x) or [(v, lab) for v, lab in sorted(CATEGORICAL[f]["levels"].items())]
                specs.append(_Spec(kind="categorical", levels=levels, **{**base, "title": CATEGORICAL[f]["title"]}))
                continue
            distinct = np.unique(x)
            integer = bool(np.all(np.abs(x - np.round(x)) < 1e-9))
            if len(distinct) < DISCRETE_MAX_LEVELS:
                specs.append(_Spec(kind="discrete", levels=[(float(v), format_value(float(v))) for v in distinct],
                                   integer=integer, **base))
                continue
            lo, hi, _, _ = trimmed_range(x)
            specs.append(_Spec(kind="continuous", lo=lo, hi=hi, integer=integer, trimmed=True, **base))
        else:
            Z = (X[:, cols] - center[cols]) / scale[cols]
            c = (Z * coefficients[cols]).sum(axis=1)
            lo, hi, _, _ = trimmed_range(c)
            specs.append(_Spec(name, feats, "score", name, "contribution to the linear predictor", 0.0, 1.0,
                               lo=lo, hi=hi, trimmed=True))
    ranges = {"method": "trimmed", "n": n_train, "q": round(display_quantile(n_train), 6), "rank": trim_rank(n_train),
              "text": (f"trimmed training ranges (rms datadist): continuous variables and scores from the "
                       f"{_ordinal(trim_rank(n_train))} smallest to the {_ordinal(trim_rank(n_train))} largest of "
                       f"{n_train} training values (q = 10/max(n, 200) = {display_quantile(n_train):.3g}); "
                       "categorical and discrete variables: all their levels")}
    return _finish(specs, intercept, ranges)


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def geometry_from_legacy(variables: Sequence[Mapping], features, coefficients, center, scale, intercept: float,
                         nomogram: Mapping):
    """The geometry of a bundle saved before it (variables with min-max c_min / c_max and an optional axis
    {feature, unit, x_at_c_min, x_at_c_max}): same ranges, scale and points as it was trained with (its predictions
    do not change), with categorical axes and readable ticks, and a note saying the ranges are not trimmed."""
    idx = {f: i for i, f in enumerate(features)}
    specs = []
    for v in variables:
        ax = v.get("axis") or {}
        feats = list(v["features"])
        if len(feats) == 1 and "x_at_c_min" in ax and coefficients[idx[feats[0]]] != 0:
            f = feats[0]
            i = idx[f]
            base = _single_feature_spec(v["name"], f, coefficients[i], center[i], scale[i], ax.get("unit", ""))
            lo, hi = sorted((float(ax["x_at_c_min"]), float(ax["x_at_c_max"])))
            if f in CATEGORICAL:
                levels = [(lv, lab) for lv, lab in sorted(CATEGORICAL[f]["levels"].items())
                          if lo - 1e-6 <= lv <= hi + 1e-6]
                specs.append(_Spec(kind="categorical", levels=levels, **{**base, "title": CATEGORICAL[f]["title"]}))
                continue
            integer = abs(lo - round(lo)) < 1e-6 and abs(hi - round(hi)) < 1e-6
            specs.append(_Spec(kind="continuous", lo=round(lo, 6) if integer else lo,
                               hi=round(hi, 6) if integer else hi, integer=integer, **base))
        else:
            specs.append(_Spec(v["name"], feats, "score", v["name"], "contribution to the linear predictor", 0.0, 1.0,
                               lo=float(v["c_min"]), hi=float(v["c_max"])))
    ranges = {"method": "min-max", "n": None, "text": "training minimum-maximum", "note": LEGACY_NOTE}
    fixed = {"c": {v["name"]: (float(v["c_min"]), float(v["c_max"])) for v in variables},
             "lp_per_point": float(nomogram["lp_per_point"]), "lp_at_zero_points": float(nomogram["lp_at_zero_points"])}
    return _finish(specs, intercept, ranges, fixed)


def _finish(specs: List[_Spec], intercept: float, ranges: dict, fixed: Optional[dict] = None):
    crange = {}
    for sp in specs:
        cs = [sp.c(v) for v in sp.values()]
        crange[sp.name] = (min(cs), max(cs))
    if fixed:  # a legacy bundle: keep its stored scale exactly (predictions unchanged)
        crange.update(fixed["c"])
        lp_per_point = fixed["lp_per_point"]
        lp0 = fixed["lp_at_zero_points"]
    else:
        span = max(hi - lo for lo, hi in crange.values())
        lp_per_point = span / MAX_POINTS if span > 0 else 1.0
        lp0 = float(intercept + sum(lo for lo, _ in crange.values()))
    variables = []
    for sp in specs:
        c_min, c_max = crange[sp.name]
        pts = lambda value, sp=sp, c_min=c_min: (sp.c(value) - c_min) / lp_per_point  # noqa: E731
        if sp.levels is not None:
            ticks = [{"value": float(v), "label": lab, "points": round(pts(v), 4) + 0.0} for v, lab in sp.levels]
            value_range = [float(min(sp.values())), float(max(sp.values()))]
        else:
            # about one labelled tick per 12 points of axis (2 to 6): short axes stay legible
            target = max(2, min(6, int(round((c_max - c_min) / lp_per_point / 12.0))))
            tv = nice_ticks(sp.lo, sp.hi, target=target, integer=sp.integer)
            step = (tv[1] - tv[0]) if len(tv) > 1 and tv != [min(sp.lo, sp.hi), max(sp.lo, sp.hi)] else None
            ticks = [{"value": float(v), "label": format_value(v, step), "points": round(pts(v), 4) + 0.0} for v in tv]
            value_range = [float(sp.lo), float(sp.hi)]
        axis = {"kind": sp.kind, "title": sp.title, "unit": sp.unit, "value_range": value_range,
                "points_range": [0.0, round((c_max - c_min) / lp_per_point, 4)], "trimmed": bool(sp.trimmed),
                "ticks": ticks}
        if sp.feature is not None:  # single-feature variables: value = center + scale * c / b (older readers)
            axis.update({"feature": sp.feature, "slope": sp.s, "offset": sp.a,
                         "x_at_c_min": float((c_min - sp.a) / sp.s), "x_at_c_max": float((c_max - sp.a) / sp.s)})
        variables.append({"name": sp.name, "features": sp.features, "c_min": float(c_min), "c_max": float(c_max),
                          "axis": axis})
    total_max = float(sum((v["c_max"] - v["c_min"]) / lp_per_point for v in variables))
    nomogram = {"max_points": int(MAX_POINTS), "lp_per_point": float(lp_per_point), "lp_at_zero_points": float(lp0),
                "total_points_range": [0.0, total_max], "style": GEOMETRY_STYLE, "ranges": ranges,
                "points_axis": [float(v) for v in range(0, int(MAX_POINTS) + 1, 10)],
                "total_points_axis": nice_ticks(0.0, total_max, target=8, integer=total_max >= 10),
                "probability_axis": probability_ticks(lp0, lp_per_point, total_max)}
    return variables, nomogram


def probability_ticks(lp0: float, lp_per_point: float, total_max: float) -> List[dict]:
    """Probability ticks on the total-points scale: total = (logit(p) - lp0) / lp_per_point, inside [0, total_max],
    no two closer than MIN_PROBABILITY_GAP of the axis (0.5, 0.1, 0.9, ... placed first)."""
    kept = []
    gap = MIN_PROBABILITY_GAP * total_max
    for p in PROBABILITY_TICKS:
        tp = (math.log(p / (1 - p)) - lp0) / lp_per_point
        if -1e-9 <= tp <= total_max + 1e-9 and all(abs(tp - k["total_points"]) >= gap for k in kept):
            kept.append({"probability": p, "total_points": round(float(tp), 4)})
    return sorted(kept, key=lambda k: k["probability"])


def has_geometry(nomogram: Mapping, variables: Sequence[Mapping]) -> bool:
    return nomogram.get("style") == GEOMETRY_STYLE and all(
        isinstance(v.get("axis"), Mapping) and "ticks" in v["axis"] for v in variables)


def check_geometry(nomogram: Mapping, variables: Sequence[Mapping]) -> Optional[str]:
    """None when the stored geometry is well-formed, else what is wrong (the bundle is refused)."""
    def num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    for k in ("points_axis", "total_points_axis"):
        if not isinstance(nomogram.get(k), list) or not all(num(v) for v in nomogram[k]):
            return f"nomogram '{k}' must be a list of finite numbers"
    pa = nomogram.get("probability_axis")
    if not isinstance(pa, list) or not all(isinstance(t, Mapping) and num(t.get("probability")) and
                                           0 < t["probability"] < 1 and num(t.get("total_points")) for t in pa):
        return "nomogram 'probability_axis' must list {probability in (0, 1), total_points}"
    for v in variables:
        ax = v["axis"]
        if not isinstance(ax.get("ticks"), list) or not all(
                isinstance(t, Mapping) and num(t.get("value")) and num(t.get("points")) and isinstance(t.get("label"), str)
                for t in ax["ticks"]):
            return f"nomogram variable '{v['name']}': axis ticks must be {{value, label, points}}"
        if ax.get("kind") not in ("continuous", "categorical", "discrete", "score"):
            return f"nomogram variable '{v['name']}': unknown axis kind {ax.get('kind')!r}"
        for k in ("points_range", "value_range"):
            if not isinstance(ax.get(k), list) or len(ax[k]) != 2 or not all(num(x) for x in ax[k]):
                return f"nomogram variable '{v['name']}': axis '{k}' must be two finite numbers"
        if not isinstance(ax.get("title"), str):
            return f"nomogram variable '{v['name']}': axis 'title' must be a string"
        if "feature" in ax and not (ax["feature"] in v["features"] and num(ax.get("slope")) and num(ax.get("offset"))):
            return f"nomogram variable '{v['name']}': axis feature / slope / offset do not match the variable"
    return None


# ---------------------------------------------------------------------------------------------- a case on it
def case_nomogram(bundle, result: Mapping, imputed: Sequence[str] = ()) -> dict:
    """The nomogram block of predictions.json: the bundle's geometry plus this case's value, points and range flag
    on every axis (``result``: ModelBundle.predict_proba_row)."""
    n = bundle.nomogram
    contrib = result["feature_contributions"]
    axes = []
    for v in bundle.variables:
        ax = dict(v.axis)
        pts = float(result["points"][v.name])
        if "feature" in ax:
            value = float(result["values"][ax["feature"]])
            label = None
            if ax["kind"] in ("categorical", "discrete"):
                label = next((t["label"] for t in ax["ticks"] if abs(t["value"] - value) < 1e-6), None)
            label = label or format_value(round(value, 4))
        else:
            value = float(sum(contrib[f] for f in v.features))
            label = f"{value:+.2f}"
        is_imputed = any(f in imputed for f in v.features)
        out = v.name in result["out_of_range"]  # decided on the exact contribution (bundle.predict_proba_row)
        lo, hi = ax["value_range"]
        ax["case"] = {"value": value, "label": label + (" (imputed)" if is_imputed else ""), "points": pts,
                      "out_of_range": bool(out), "imputed": bool(is_imputed),
                      "range_text": f"axis range {format_value(round(lo, 4))} to {format_value(round(hi, 4))}"}
        axes.append({"name": v.name, **ax})
    total = float(result["total_points"])
    return {"points": dict(result["points"]), "total_points": total,
            "linear_predictor": round(float(result["linear_predictor"]), 6),
            "probability": float(result["probability"]),
            "max_points_per_variable": n["max_points"], "total_points_range": n["total_points_range"],
            "lp_per_point": n["lp_per_point"], "lp_at_zero_points": n["lp_at_zero_points"],
            "style": n.get("style"), "ranges": n.get("ranges"), "axes": axes,
            "points_axis": n["points_axis"], "total_points_axis": n["total_points_axis"],
            "probability_axis": n["probability_axis"],
            "total_out_of_range": bool(result["out_of_range"]) and not (
                0.0 <= total <= n["total_points_range"][1])}


def bundle_nomogram(bundle) -> dict:
    """The nomogram block of a bundle without a case (training report figure)."""
    n = bundle.nomogram
    return {"axes": [{"name": v.name, **v.axis} for v in bundle.variables], "points_axis": n["points_axis"],
            "total_points_axis": n["total_points_axis"], "probability_axis": n["probability_axis"],
            "total_points_range": n["total_points_range"], "ranges": n.get("ranges"),
            "lp_per_point": n["lp_per_point"], "lp_at_zero_points": n["lp_at_zero_points"]}


# kept for callers of the first version: per variable its points range and ticks; the probability ticks
def nomogram_axes(bundle) -> List[dict]:
    return [{"name": a["name"], "points_max": a["points_range"][1], "ticks": a["ticks"], "unit": a["unit"]}
            for a in bundle_nomogram(bundle)["axes"]]


def probability_axis(bundle) -> List[dict]:
    return list(bundle.nomogram["probability_axis"])


# ---------------------------------------------------------------------------------------------- the figure
def rows(block: Mapping) -> List[dict]:
    """The rows of the drawing, top to bottom, from a nomogram block: {key, title, ticks [(position, label,
    value)], range (line ends), scale ('points' | 'total'), case}. The figure and the Slicer plot both use it."""
    out = [{"key": "points", "title": "Points", "scale": "points",
            "range": [0.0, float(block["points_axis"][-1])],
            "ticks": [(float(v), format_value(v), float(v)) for v in block["points_axis"]], "case": None}]
    for a in block["axes"]:
        out.append({"key": a["name"], "title": a.get("title") or a["name"], "scale": "points",
                    "range": [float(a["points_range"][0]), float(a["points_range"][1])],
                    "ticks": [(float(t["points"]), t["label"], float(t["value"])) for t in a["ticks"]],
                    "case": a.get("case"), "unit": a.get("unit", ""), "kind": a.get("kind")})
    total = block.get("total_points")
    out.append({"key": "total points", "title": "Total points", "scale": "total",
                "range": [0.0, float(block["total_points_range"][1])],
                "ticks": [(float(v), format_value(v), float(v)) for v in block["total_points_axis"]],
                "case": None if total is None else {
                    "points": float(total), "label": f"{float(total):.1f}",
                    "out_of_range": bool(block.get("total_out_of_range"))}})
    prob = block.get("probability")
    out.append({"key": "probability", "title": "Probability", "scale": "total",
                "range": [0.0, float(block["total_points_range"][1])],
                "ticks": [(float(t["total_points"]), f"{t['probability']:g}", float(t["probability"]))
                          for t in block["probability_axis"]],
                "case": None if prob is None else {
                    "points": float(total), "label": format_probability(prob),
                    "out_of_range": bool(block.get("total_out_of_range"))}})
    return out


def case_marker_text(row: Mapping) -> str:
    """The label over the case's marker on one ``rows()`` row: its points clipped to the row's axis, as the text and
    HTML show them (render.task_rows: "0.0*", "(clipped: off axis)"); beyond the axis (or its value outside the
    training range) flagged, e.g. "75 (beyond the axis: 0.0 pts, extrapolated)", never as -15.6 points (the exact
    value stays in predictions.json)."""
    case = row["case"]
    lo, hi = row["range"]
    raw = float(case["points"])
    pts = min(max(raw, lo), hi)
    beyond = bool(case.get("out_of_range")) or not lo - 1e-6 <= raw <= hi + 1e-6
    if row["key"] == "probability":
        return f"probability {case['label']}"
    if row["key"] == "total points":
        return f"{pts:.1f} points" + (" (beyond the axis, extrapolated)" if beyond else "")
    if beyond:
        return f"{case['label']} (beyond the axis: {pts:.1f} pts, extrapolated)"
    return f"{case['label']}: {pts:.1f} pts"


def draw_nomogram(fig, block: Mapping, title: str = ""):
    """Draw a nomogram block (predictions.json's, or bundle_nomogram) into a matplotlib Figure / SubFigure: one
    row per axis (gid 'nomogram-row:<key>'), ticks at the JSON's positions labelled with its values; the case's
    value marked in red with its points; 'out of range' written beside an axis the case falls off."""
    rs = rows(block)
    axs = fig.subplots(len(rs), 1, squeeze=False)[:, 0]
    total_max = max(float(block["total_points_range"][1]), 1e-9)
    for ax, r in zip(axs, rs):
        ax.set_gid(f"nomogram-row:{r['key']}")
        width = 100.0 if r["scale"] == "points" else total_max
        ax.set_xlim(-0.04 * width, 1.04 * width)
        ax.set_ylim(-1, 1)
        ax.set_yticks([])
        for s in ("top", "right", "left"):
            ax.spines[s].set_visible(False)
        ax.spines["bottom"].set_position(("data", 0))
        ax.spines["bottom"].set_bounds(*r["range"])
        pos = [t[0] for t in r["ticks"]]
        ax.set_xticks(pos)
        ax.set_xticklabels([t[1] for t in r["ticks"]], fontsize=7)
        ax.tick_params(axis="x", direction="inout", length=5, pad=2)
        ax.text(-0.01, 0.0, r["title"], transform=ax.get_yaxis_transform(), ha="right", va="center", fontsize=8)
        case = r["case"]
        if case:
            lo, hi = r["range"]
            x = min(max(case["points"], lo), hi)
            out = bool(case.get("out_of_range"))
            ax.plot([x], [0.35], marker=(">" if case["points"] > hi else "<") if out else "v", color="#c0392b",
                    markersize=7, gid="nomogram-case", clip_on=False)
            ax.text(x, 0.62, case_marker_text(r), ha="center", va="bottom", fontsize=7, color="#c0392b",
                    gid="nomogram-case-label")
            if out:  # beside the axis, after its right end
                ax.text(hi + 0.015 * width, 0.0, "out of range" + (f" ({case['range_text']})"
                                                                     if case.get("range_text") else ""),
                        ha="left", va="center", fontsize=7, color="#c0392b", fontweight="bold",
                        gid="nomogram-out-of-range", clip_on=False)
    if title:
        fig.suptitle(title, fontsize=9)
    note = (block.get("ranges") or {}).get("note")
    if note:
        fig.text(0.01, 0.002, f"Note: {note}", fontsize=6, va="bottom", color="#7f6000")
    return axs


def nomogram_figure(block: Mapping, title: str = ""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(block["axes"]) + 3
    fig = plt.figure(figsize=(8.5, 0.62 * n + 0.9))
    draw_nomogram(fig, block, title)
    fig.subplots_adjust(left=0.2, right=0.78, top=1 - 0.5 / (0.62 * n + 0.9), bottom=0.35 / (0.62 * n + 0.9),
                        hspace=0.0)
    return fig


def case_title(task: str, block: Mapping, synthetic: bool = False, name: str = "") -> str:
    p = block.get("probability")
    head = f"Nomogram {task}" + (f" ({name})" if name else "")
    if p is not None:
        head += f": total points {block['total_points']:.1f} -> probability {format_probability(p)}"
    return head + (" - SYNTHETIC training data" if synthetic else "")


def plot_nomogram(bundle, path: Optional[str] = None, marker: Optional[dict] = None):
    """The bundle's nomogram (PNG at ``path``; returns the matplotlib figure); ``marker``: a predictions.json
    nomogram block of a case, drawn instead of the bare bundle."""
    block = marker if marker and "axes" in marker else bundle_nomogram(bundle)
    fig = nomogram_figure(block, case_title(bundle.task, block, bundle.synthetic, bundle.name))
    if path:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
