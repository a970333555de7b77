"""Nomograms like rms::nomogram (issue 14 item 5): trimmed datadist ranges, categorical axes, points scale, total
points -> probability; one geometry in the bundle JSON drawn identically by the report figure and the Slicer plot.

The references are computed here independently of nomogram.py: numpy order statistics for the trimmed ranges, the
coefficients of a scikit-learn LogisticRegression for the points, and its own predict_proba for the probability."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from GliomaRadiogenomicsLib.bundle import BundleError, ModelBundle, build_nomogram, load_bundle
from GliomaRadiogenomicsLib.nomogram import format_probability, nice_ticks, trimmed_range
from GliomaRadiogenomicsLib.predict import predict_one

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "GliomaRadiogenomics/GliomaRadiogenomicsLib/resources/models"
FEATURES = ["FLAIR_WT_original_firstorder_Mean", "FLAIR_WT_original_shape_Sphericity", "age", "sex_male",
            "who_grade"]
GROUPS = {"Radiomics score": FEATURES[:2], "Age (years)": ["age"], "Sex (male = 1)": ["sex_male"],
          "WHO grade": ["who_grade"]}


def cohort(n, seed=0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(100, 20, n), rng.uniform(0.3, 0.9, n), rng.integers(18, 85, n).astype(float),
                         rng.integers(0, 2, n).astype(float), rng.choice([2.0, 3.0, 4.0], n)])
    lp = 0.04 * (X[:, 0] - 100) - 3 * (X[:, 1] - 0.6) - 0.05 * (X[:, 2] - 50) + 0.6 * X[:, 3] - 0.8 * (X[:, 4] - 3)
    y = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(int)
    return X, y


def fitted_bundle(n=400, seed=0):
    """A bundle around a scikit-learn logistic model (z-scored inputs, as the bundles store them)."""
    X, y = cohort(n, seed)
    center, scale = X.mean(0), X.std(0)
    lr = LogisticRegression(C=1e6, max_iter=5000).fit((X - center) / scale, y)
    coef, intercept = lr.coef_[0], float(lr.intercept_[0])
    variables, nomo = build_nomogram(FEATURES, coef, center, scale, intercept, X, GROUPS, units={"age": "years"})
    b = ModelBundle(task="IDH", name="nomogram-test", version="1", features=FEATURES, center=list(map(float, center)),
                    scale=list(map(float, scale)), coefficients=list(map(float, coef)), intercept=intercept,
                    cutoff=0.5, variables=variables, nomogram=nomo, feature_schema={"preset": "test"},
                    training={"trained_on": "simulated"}, metrics={}, synthetic=True, positive_label="IDH-mutant",
                    negative_label="IDH-wildtype", intended_use="test",
                    encodings={"sex_male": {"M": 1.0, "MALE": 1.0, "F": 0.0, "FEMALE": 0.0}})
    b = ModelBundle.from_dict(json.loads(json.dumps(b.to_dict())))  # as stored: the JSON is the one geometry
    return b, lr, X, center, scale


@pytest.fixture(scope="module")
def fitted():
    return fitted_bundle()


def _axis(b, name):
    return next(v.axis for v in b.variables if v.name == name)


def _row(age, sex, grade, mean=100.0, sph=0.6):
    return {FEATURES[0]: mean, FEATURES[1]: sph, "age": age, "sex": sex, "who_grade": grade}


# ------------------------------------------------------------------------------------------------ ranges, ticks
@pytest.mark.parametrize("n,k", [(400, 10), (250, 10), (120, 6), (50, 3), (20, 1)])
def test_trimmed_range_is_the_datadist_order_statistic(n, k):
    """q = 10 / max(n, 200): the 10th smallest / largest value from n = 200, else the ceil(0.05 n)-th."""
    x = np.random.default_rng(n).normal(size=n)
    lo, hi, kk, nn = trimmed_range(x)
    s = np.sort(x)
    assert (kk, nn) == (k, n) and lo == s[k - 1] and hi == s[-k]
    q = 10 / max(n, 200)
    assert lo == np.quantile(x, q, method="inverted_cdf") and hi == -np.quantile(-x, q, method="inverted_cdf")


def test_axes_of_the_bundle_use_trimmed_ranges(fitted):
    b, lr, X, center, scale = fitted
    s_age = np.sort(X[:, 2])
    age = _axis(b, "Age (years)")
    assert age["kind"] == "continuous" and age["trimmed"] is True
    assert age["value_range"] == [s_age[9], s_age[-10]]                       # n = 400: 10th smallest / largest
    score = (X[:, :2] - center[:2]) / scale[:2] @ np.asarray(b.coefficients[:2])
    s_score = np.sort(score)
    assert _axis(b, "Radiomics score")["value_range"] == pytest.approx([s_score[9], s_score[-10]], abs=1e-12)
    assert b.nomogram["ranges"]["method"] == "trimmed" and b.nomogram["ranges"]["rank"] == 10
    # ticks: readable whole years inside the trimmed range
    vals = [t["value"] for t in age["ticks"]]
    assert all(v == int(v) for v in vals) and s_age[9] <= min(vals) and max(vals) <= s_age[-10]
    assert len(vals) >= 2 and len(set(np.diff(vals))) == 1


def test_nice_ticks_are_readable():
    assert nice_ticks(18, 59, target=5, integer=True) == [20, 30, 40, 50]
    assert nice_ticks(-3.17, 2.86, target=7) == [-3, -2, -1, 0, 1, 2]
    assert nice_ticks(-3.17, 2.86, target=6) == [-2, 0, 2]
    assert nice_ticks(0.31, 0.88, target=5) == [0.4, 0.6, 0.8]
    assert nice_ticks(0, 138.97, target=8, integer=True) == [0, 20, 40, 60, 80, 100, 120]
    assert nice_ticks(-0.37, 0.2, target=2) == [-0.25, 0.0]      # two labels at least: a scale, not a point
    assert nice_ticks(18, 75, target=2, integer=True) == [25, 50, 75]   # a short age axis (was 50 alone)


# ------------------------------------------------------------------------------------------------ points
def test_categorical_axes_have_their_levels_only_and_points_equal_the_coefficient_difference(fitted):
    b, lr, X, center, scale = fitted
    per_point = b.nomogram["lp_per_point"]
    sex, grade = _axis(b, "Sex (male = 1)"), _axis(b, "WHO grade")
    assert sex["kind"] == grade["kind"] == "categorical" and sex["title"] == "Sex"
    assert [(t["label"], t["value"]) for t in sex["ticks"]] == [("F", 0.0), ("M", 1.0)]
    assert [(t["label"], t["value"]) for t in grade["ticks"]] == [("2", 2.0), ("3", 3.0), ("4", 4.0)]
    b_sex, b_grade = lr.coef_[0][3] / scale[3], lr.coef_[0][4] / scale[4]   # per unit of the raw variable
    pts = {t["label"]: t["points"] for t in sex["ticks"]}
    assert pts["M"] - pts["F"] == pytest.approx(b_sex / per_point, abs=1e-3)
    pts = {t["label"]: t["points"] for t in grade["ticks"]}
    assert pts["3"] - pts["2"] == pytest.approx(b_grade / per_point, abs=1e-3)
    assert pts["4"] - pts["2"] == pytest.approx(2 * b_grade / per_point, abs=1e-3)
    assert min(pts.values()) == 0.0
    # a case's points on a categorical axis: the level's tick
    for s, g in (("F", 2), ("M", 4)):
        n = predict_one(b, _row(50, s, g), None)["nomogram"]
        assert n["points"]["Sex (male = 1)"] == pytest.approx(
            next(t["points"] for t in sex["ticks"] if t["label"] == s), abs=0.006)
        assert n["points"]["WHO grade"] == pytest.approx(
            next(t["points"] for t in grade["ticks"] if t["label"] == str(g)), abs=0.006)


def test_the_widest_variable_spans_100_points(fitted):
    b, lr, X, center, scale = fitted
    beta = lr.coef_[0] / scale
    ages = _axis(b, "Age (years)")["value_range"]
    score = (X[:, :2] - center[:2]) / scale[:2] @ lr.coef_[0][:2]
    s_score = np.sort(score)
    ranges = {"Radiomics score": s_score[-10] - s_score[9], "Age (years)": abs(beta[2]) * (ages[1] - ages[0]),
              "Sex (male = 1)": abs(beta[3]), "WHO grade": 2 * abs(beta[4])}
    per_point = max(ranges.values()) / 100
    assert b.nomogram["lp_per_point"] == pytest.approx(per_point, rel=1e-9)
    for v in b.variables:
        assert v.axis["points_range"][1] == pytest.approx(ranges[v.name] / per_point, abs=1e-3)
    assert b.nomogram["total_points_range"][1] == pytest.approx(sum(ranges.values()) / per_point, rel=1e-9)


def test_total_points_give_the_logistic_models_own_probability(fitted):
    """Total points -> linear predictor -> probability equals scikit-learn's predict_proba on new cases, and each
    probability tick sits where the logistic function of its total points is that probability."""
    b, lr, X, center, scale = fitted
    Xn, _ = cohort(60, seed=9)
    ref = lr.predict_proba((Xn - center) / scale)[:, 1]
    n = b.nomogram
    for x, p in zip(Xn, ref):
        res = predict_one(b, _row(x[2], "M" if x[3] else "F", int(x[4]), x[0], x[1]), None)
        nomo = res["nomogram"]
        p_points = 1 / (1 + math.exp(-(n["lp_at_zero_points"] + nomo["total_points"] * n["lp_per_point"])))
        assert p_points == pytest.approx(p, abs=2e-3)
        assert res["probability"] == pytest.approx(p, abs=1e-6)
    for t in n["probability_axis"]:
        lp = n["lp_at_zero_points"] + t["total_points"] * n["lp_per_point"]
        assert 1 / (1 + math.exp(-lp)) == pytest.approx(t["probability"], abs=1e-4)
        assert 0 <= t["total_points"] <= n["total_points_range"][1]
    assert len(n["probability_axis"]) >= 5


def test_out_of_range_value_is_flagged_on_its_axis(fitted):
    b = fitted[0]
    res = predict_one(b, _row(99, "F", 3), None)  # older than the 10th oldest training case
    age = next(a for a in res["nomogram"]["axes"] if a["name"] == "Age (years)")
    assert age["case"]["out_of_range"] and age["case"]["label"] == "99"
    assert any("outside the nomogram's axis range" in w for w in res["warnings"])
    inside = predict_one(b, _row(50, "F", 3), None)
    assert not any(a["case"]["out_of_range"] for a in inside["nomogram"]["axes"])


def test_probability_printed_with_two_significant_digits():
    assert [format_probability(p) for p in (0.085, 0.0849, 0.12, 0.9, 0.0996, 0.00012, 0.999)] == \
        ["0.085", "0.085", "0.12", "0.90", "0.10", "0.00012", ">0.99"]


# ------------------------------------------------------------------------------------------------ older bundles
def test_shipped_bundles_load_with_geometry_and_unchanged_points():
    """Bundles saved before the geometry get it at loading from their min-max ranges (noted), and their points /
    probabilities are those of the old formula: points = (c - c_min) / lp_per_point."""
    for path in sorted(MODELS.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != "glioma-radiogenomics-model-bundle":
            continue
        b = load_bundle(path)
        geometry_stored = "points_axis" in raw["nomogram"]
        assert b.nomogram["ranges"]["method"] == ("trimmed" if geometry_stored else "min-max"), path.name
        if geometry_stored:
            continue
        assert "rebuild" in b.nomogram["ranges"]["note"]
        assert b.nomogram["lp_per_point"] == raw["nomogram"]["lp_per_point"]
        assert [(v.c_min, v.c_max) for v in b.variables] == [(v["c_min"], v["c_max"]) for v in raw["variables"]]
        for v in b.variables:
            if v.features == ["sex_male"]:
                assert [t["label"] for t in v.axis["ticks"]] == ["F", "M"]
            if v.features == ["who_grade"]:
                assert [t["label"] for t in v.axis["ticks"]] == ["2", "3", "4"]
        row = {f: c for f, c in zip(b.features, b.center)}
        res = b.predict_proba_row(row)
        contrib = np.asarray(raw["coefficients"]) * (np.asarray(row_values := [row[f] for f in raw["features"]])
                                                     - np.asarray(raw["center"])) / np.asarray(raw["scale"])
        idx = {f: i for i, f in enumerate(raw["features"])}
        for v in raw["variables"]:
            c = sum(contrib[idx[f]] for f in v["features"])
            assert res["points"][v["name"]] == pytest.approx((c - v["c_min"]) / raw["nomogram"]["lp_per_point"],
                                                             abs=0.006)
        assert len(row_values) == len(b.features)


def test_stored_geometry_is_used_and_a_broken_one_refused(fitted):
    b = fitted[0]
    d = b.to_dict()
    again = ModelBundle.from_dict(json.loads(json.dumps(d)))
    assert again.nomogram == b.nomogram and [v.axis for v in again.variables] == [v.axis for v in b.variables]
    d["nomogram"]["probability_axis"] = [{"probability": 1.5, "total_points": 3}]
    with pytest.raises(BundleError, match="probability_axis"):
        ModelBundle.from_dict(d)
    d = b.to_dict()
    del d["variables"][1]["axis"]["points_range"]
    with pytest.raises(BundleError, match="points_range"):
        ModelBundle.from_dict(d)
    d = b.to_dict()  # an older bundle (no geometry) whose axis cannot be read: refused by name, not a crash
    d["nomogram"] = {k: d["nomogram"][k] for k in ("max_points", "lp_per_point", "lp_at_zero_points",
                                                   "total_points_range")}
    for v in d["variables"]:
        v["axis"] = {"feature": v["features"][0], "unit": "", "x_at_c_min": "young", "x_at_c_max": 80} \
            if len(v["features"]) == 1 else None
    with pytest.raises(BundleError, match="axes cannot be read"):
        ModelBundle.from_dict(d)


# ------------------------------------------------------------------------------------------------ one drawing
def _figure_rows(fig):
    out = {}
    for ax in fig.axes:
        gid = ax.get_gid() or ""
        if gid.startswith("nomogram-row:"):
            out[gid.split(":", 1)[1]] = (list(ax.get_xticks()), [t.get_text() for t in ax.get_xticklabels()], ax)
    return out


def _plot_rows(chart):
    out = {}
    for i in range(chart.GetNumberOfPlotSeriesNodes()):
        s = chart.GetNthPlotSeriesNode(i)
        t = s.GetTableNode().GetTable()
        cols = {t.GetColumnName(j): j for j in range(t.GetNumberOfColumns())}
        rows = [{c: t.GetValue(r, j).ToString() if c == "label" else t.GetValue(r, j).ToDouble()
                 for c, j in cols.items()} for r in range(t.GetNumberOfRows())]
        out[s.GetName()] = rows
    return out


def test_json_figure_and_slicer_plot_show_the_same_axes(fitted, mrml):
    """The points, total-points and probability axes (and each variable's ticks) of predictions.json, the report
    figure and the Slicer plot (a real MRML scene) are the same numbers; the case is marked on each; the
    out-of-range age is marked beside its axis in the figure and in the plot."""
    from GliomaMRML.convert import nomogram_to_plot_nodes
    from GliomaRadiogenomicsLib.nomogram import case_title, nomogram_figure
    b = fitted[0]
    res = predict_one(b, _row(99, "F", 4), None)
    doc = {"tasks": ["IDH"], "IDH": {**res, "label": b.label_for(res["probability"])}}
    block = json.loads(json.dumps(res["nomogram"]))  # as written to predictions.json
    fig = nomogram_figure(block, case_title("IDH", block))
    chart = nomogram_to_plot_nodes(doc, "IDH", mrml.scene)
    frows, prows = _figure_rows(fig), _plot_rows(chart)
    total_max = block["total_points_range"][1]

    expected = {"points": [(v, v) for v in block["points_axis"]],
                "total points": [(v, v) for v in block["total_points_axis"]],
                "probability": [(t["total_points"], t["probability"]) for t in block["probability_axis"]]}
    for a in block["axes"]:
        expected[a["name"]] = [(t["points"], t["value"]) for t in a["ticks"]]
    assert len(block["points_axis"]) == 11 and len(block["total_points_axis"]) >= 4
    titles = {"points": "Points", "total points": "Total points", "probability": "Probability",
              **{a["name"]: a["title"] for a in block["axes"]}}
    for key, ticks in expected.items():
        pos, labels, _ = frows[key]
        assert pos == pytest.approx([p for p, _ in ticks]), key           # figure: tick positions
        if key == "probability":
            assert [float(x) for x in labels] == pytest.approx([v for _, v in ticks])
        series = next(rows for name, rows in prows.items() if name.split(" - OUT OF RANGE")[0] == titles[key])
        plotted = [r for r in series if r["tick"] == 1.0]  # the plot's line runs left to right: by position
        order = np.argsort([p for p, _ in ticks], kind="stable")
        assert [r["position"] for r in plotted] == pytest.approx([ticks[i][0] for i in order]), key  # positions
        assert [r["value"] for r in plotted] == pytest.approx([ticks[i][1] for i in order]), key     # values
        assert [r["label"] for r in plotted] == [labels[i] for i in order], key                      # labels
        scale = 1.0 if key not in ("total points", "probability") else 100.0 / total_max
        assert [r["x"] for r in plotted] == pytest.approx([ticks[i][0] * scale for i in order])
    # categorical axes: only their levels
    assert frows["Sex (male = 1)"][1] == ["F", "M"] and frows["WHO grade"][1] == ["2", "3", "4"]
    # the case: marked on every row of the figure and the plot; out of range beside the age axis
    age_ax = frows["Age (years)"][2]
    assert any(t.get_gid() == "nomogram-out-of-range" and "out of range" in t.get_text() for t in age_ax.texts)
    assert not any(t.get_gid() == "nomogram-out-of-range" for k, (_, _, ax) in frows.items() if k != "Age (years)"
                   for t in ax.texts)
    for key, (_, _, ax) in frows.items():
        if key != "points":
            assert any(line.get_gid() == "nomogram-case" for line in ax.lines), key
    assert any("Age (years) - OUT OF RANGE" in name for name in prows)
    case = prows["This case"]
    assert len(case) == len(block["axes"]) + 2
    assert case[-2]["points"] == pytest.approx(block["total_points"])
    assert case[-1]["label"] == f"probability {format_probability(res['probability'])}"
    assert format_probability(res["probability"]) in fig._suptitle.get_text()
    assert format_probability(res["probability"]) in chart.GetTitle()
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_report_figures_draw_the_nomogram(fitted, tmp_path):
    """HTML report and PDF summary render the nomogram block without error; an old document (points only) still
    renders with its note."""
    import base64
    from GliomaRadiogenomicsLib.report import nomogram_figure, write_pdf_summary
    b = fitted[0]
    res = predict_one(b, _row(60, "M", 2), None)
    doc = {"case": {"case_id": "c"}, "disclaimer": "research", "tasks": ["IDH"],
           "IDH": {**res, "label": b.label_for(res["probability"])}}
    png = base64.b64decode(nomogram_figure("IDH", doc["IDH"]))
    assert png[:4] == b"\x89PNG" and len(png) > 10000
    old = {"probability": 0.085, "nomogram": {"points": {"age": 12.0}, "total_points": 12.0}}
    assert base64.b64decode(nomogram_figure("IDH", old))[:4] == b"\x89PNG"
    pdf = write_pdf_summary(doc, tmp_path / "s.pdf")
    assert pdf.read_bytes()[:4] == b"%PDF"


def test_points_only_figure_labels_add_up_to_the_documents_total():
    """An old document's points bars: bars clipped to the 0-100 axis, labels the document's own points (marked when
    outside it), and the total row the document's total, so the labels add up to the total (issue 18 nit: the
    clipped bars were labelled with the clipped values, beside the unclipped total)."""
    from GliomaRadiogenomicsLib.report import legacy_points_bars
    old = {"probability": 0.9, "nomogram": {"points": {"age": 130.0, "x": -10.0, "y": 40.0}, "total_points": 160.0}}
    rows = legacy_points_bars(old)
    assert [r[0] for r in rows] == ["age", "x", "y", "Total points"]
    assert [r[1] for r in rows] == [100.0, 0.0, 40.0, 160.0]
    assert [r[2] for r in rows] == ["130.0 (beyond 100)", "-10.0 (below 0)", "40.0", "160.0"]
    assert sum(float(r[2].split()[0]) for r in rows[:-1]) == float(rows[-1][2])
