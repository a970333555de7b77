"""Liu 2024 as published (issue 14 item 3): Student's t-test (Welch as an option), the fused clinical variables
(age, sex, VASARI score; WHO grade off by default), the fusion against its imaging model alone on the same folds
(and the ship rule of scripts/build_real_bundles.py), and one shared fold assignment for st and cmt."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_script
from scipy.stats import ttest_ind

from GliomaRadiogenomicsLib.models import LiuFusion, _auc
from GliomaRadiogenomicsLib.train import label_folds, shared_fold_assignment, train_bundles

REPO = Path(__file__).resolve().parents[2]
PROV = {"preset": "wang2025", "settings_hash": "abc123"}


def _build_real_bundles():
    return load_script("build_real_bundles")


def unequal_variance_table(seed=0):
    """Unequal group sizes and variances: Student's and Welch's tests disagree on some columns."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(12), np.zeros(40)]
    X = rng.standard_normal((52, 40))
    X[y == 1] *= 3.0  # the small group is the noisy one: Student's pooled variance understates its spread
    X[:, :20] += 0.9 * y[:, None]
    return X, y


def test_ttest_filter_is_student_by_default_and_welch_on_request_as_scipy():
    X, y = unequal_variance_table()
    sel = {}
    for name, equal_var in (("student", True), ("welch", False)):
        est = LiuFusion(ttest=name) if name == "welch" else LiuFusion()
        cand, p = est.ttest_filter(X, y)
        ref = ttest_ind(X[y == 1], X[y == 0], equal_var=equal_var).pvalue
        np.testing.assert_allclose(p, ref)
        assert cand.tolist() == np.flatnonzero(ref < 0.05).tolist()
        sel[name] = cand.tolist()
    assert sel["student"] != sel["welch"]  # the table separates the two tests
    with pytest.raises(ValueError):
        LiuFusion(ttest="mann-whitney").ttest_filter(X, y)


def liu_table(n=60, p=20, seed=1, clinical_effect=0.0):
    """IDH-mutant-like table: two informative imaging columns; age, sex, VASARI score and WHO grade noise (or,
    with ``clinical_effect``, age informative)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    age = rng.normal(45, 12, n)
    lp = 2.2 * X[:, 0] - 1.8 * X[:, 1] + clinical_effect * (age - 45) / 12
    y = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(int)
    df = pd.DataFrame(X, columns=[f"FLAIR_WT_original_firstorder_F{i}" for i in range(p)])
    df["age"] = age
    df["sex"] = rng.choice(["M", "F"], n)
    df["vasari_score"] = rng.normal(70, 6, n)
    df["who_grade"] = rng.choice([3.0, 4.0], n)
    df["ATRX"] = y
    df.insert(0, "case_id", [f"a{i:03d}" for i in range(n)])
    return df


@pytest.fixture(scope="module")
def liu_run():
    return train_bundles(liu_table(), ["ATRX"], "atrx-fusion", PROV, trained_on="synthetic", synthetic=True,
                         intended_use="test", repeats=2, n_jobs=1, seed=5, imaging_bundle=True)


def test_atrx_fusion_defaults_age_sex_vasari_no_who_grade(liu_run):
    bundles, ev = liu_run
    fusion = ev["tasks"][0]
    assert fusion["repeated_cv"]["design"]["clinical_offered"] == ["age", "sex_male", "vasari_score"]
    assert fusion["model"]["fused_clinical"] == ["age", "sex_male", "vasari_score"]
    assert "who_grade" not in bundles[0].features
    assert {"age", "sex_male", "vasari_score"} <= set(bundles[0].features)
    details = bundles[0].training["method_details"]
    assert details["ttest"] == "student" and "Student" in details["ttest_description"]
    assert LiuFusion().clinical == ("age", "sex_male", "vasari_score") and LiuFusion().ttest == "student"
    from GliomaRadiogenomicsLib.cli import build_parser
    args = build_parser().parse_args(["train", "--table", "t.csv", "--out", "o.json", "--method", "atrx-fusion"])
    assert args.ttest == "student" and args.clinical is None
    assert build_parser().parse_args(["train", "--table", "t.csv", "--out", "o.json", "--ttest", "welch"]).ttest == "welch"


def test_who_grade_when_named_and_welch_recorded():
    from GliomaRadiogenomicsLib.train import _fit, add_derived_columns
    df = add_derived_columns(liu_table(n=50, p=12, seed=2))
    img = [c for c in df.columns if c.startswith("FLAIR_")]
    m = _fit("atrx-fusion", df, ["ATRX"], img, ["age", "sex_male", "who_grade"], 0, 0, liu={"ttest": "welch"})[0]
    assert "who_grade" in m["features"] and m["info"]["fused_clinical"] == ["age", "sex_male", "who_grade"]
    assert m["info"]["ttest"] == "welch" and m["extra"]["imaging"].ttest == "welch"


def test_fusion_and_imaging_model_paired_on_the_same_folds_and_imaging_ships(liu_run):
    bundles, ev = liu_run
    fusion_b, imaging_b = bundles
    assert imaging_b.name.endswith("-atrx-imaging") and imaging_b.task == "ATRX"
    assert set(imaging_b.features) <= {f"FLAIR_WT_original_firstorder_F{i}" for i in range(20)}  # no clinical
    assert {v.name for v in imaging_b.variables} == {"Imaging score"}  # one nomogram axis: the imaging score
    fe, ie = ev["tasks"]
    assert fe["method"] == "atrx-fusion" and ie["method"] == "atrx-imaging"
    assert fe["repeated_cv"]["fold"] == ie["repeated_cv"]["fold"]  # same folds
    fi = fe["repeated_cv"]["fusion_vs_imaging"]
    assert fi == ie["repeated_cv"]["fusion_vs_imaging"] and fi["repeats"] == 2
    # the per-repetition AUCs are those of each model's own out-of-fold predictions
    assert fi["auc_fusion_per_repetition"] == fe["repeated_cv"]["model"]["auc_per_repetition"]
    assert fi["auc_imaging_per_repetition"] == ie["repeated_cv"]["model"]["auc_per_repetition"]
    d = np.subtract(fi["auc_fusion_per_repetition"], fi["auc_imaging_per_repetition"])
    assert fi["auc_diff_mean"] == pytest.approx(d.mean(), abs=2e-4)
    # the imaging model's final fit is the fusion's imaging part: its linear predictor is the imaging score
    y = np.asarray(ie["label_values"])
    assert _auc(y, np.asarray(ie["oof_probability"])) > 0.75  # imaging informative
    assert fusion_b.metrics["fusion_vs_imaging_cv"]["auc_diff_mean"] == fi["auc_diff_mean"]
    # clinical noise: the fusion does not validate better than its imaging score -> the imaging model ships
    assert fi["auc_diff_mean"] <= 0, fi
    mod = _build_real_bundles()
    cands = [(b, {"method": mod.method_of(b), "auc_mean": b.metrics["auc_cv"]}) for b in bundles]
    b, row, text, comparison = mod.choose("ATRX", cands)
    assert b is imaging_b and row["method"] == "atrx-imaging" and comparison["shipped"] == "atrx-imaging"
    assert comparison["auc_diff_mean"] == fi["auc_diff_mean"] and "imaging" in text


def test_ship_rule_keeps_the_fusion_when_it_is_better():
    mod = _build_real_bundles()

    class B:
        def __init__(self, name, diff):
            self.name, self.metrics = name, {"fusion_vs_imaging_cv": {
                "auc_fusion_mean": 0.8 + diff, "auc_imaging_mean": 0.8, "auc_diff_mean": diff, "auc_diff_sd": 0.01,
                "repetitions_fusion_better": 10 if diff > 0 else 0, "repeats": 10, "delong_p_mean_prediction": 0.3}}
    for diff, shipped in ((0.02, "atrx-fusion"), (0.0, "atrx-imaging"), (-0.01, "atrx-imaging")):
        cands = [(b, {"method": mod.method_of(b), "auc_mean": 0.5}) for b in
                 (B("x-ATRX-atrx-fusion", diff), B("x-ATRX-atrx-imaging", diff))]
        assert mod.choose("ATRX", cands)[1]["method"] == shipped


def test_liu_input_replaces_the_wang2025_atrx_model_it_covers_and_a_partial_rebuild_keeps_the_rest(tmp_path):
    """build_real_bundles.merge_shipped: a rebuild of only the flair-t1c-liu2024 family keeps the IDH / epilepsy /
    ATRX-flair files and rows of the families it did not rebuild; the Liu ATRX model, shipping, replaces the
    wang2025 flair-t1-t1c ATRX model (file deleted, its row says why) but not the FLAIR-only one (cases without
    T1c); a file of a rebuilt family that no longer ships is deleted."""
    mod = _build_real_bundles()
    models = tmp_path / "models"
    models.mkdir()
    old_files = {"IDH": ["tcga_lgg_IDH_flair.json"], "epilepsy": ["default_epilepsy.json"],
                 "ATRX": ["tcga_lgg_ATRX_flair-t1-t1c.json", "tcga_lgg_ATRX_flair.json"]}
    for f in ("tcga_lgg_IDH_flair.json", "tcga_lgg_ATRX_flair-t1-t1c.json", "tcga_lgg_ATRX_flair.json",
              "tcga_lgg_ATRX_flair-t1c-liu2024.json"):
        (models / f).write_text("{}")
    old_rows = [{"task": t, "family": f, "chosen": True, "ships": True, "ship_rule": "lower 95% CI bound 0.6 > 0.5"}
                for t, f in (("IDH", "flair"), ("ATRX", "flair-t1-t1c"), ("ATRX", "flair"), ("ATRX", mod.LIU_FAMILY))]
    rows = [{"task": "ATRX", "family": mod.LIU_FAMILY, "chosen": True, "ships": True, "ship_rule": "x"}]
    shipped = {"ATRX": ["tcga_lgg_ATRX_flair-t1c-liu2024.json"]}
    mod.merge_shipped(shipped, rows, {"tasks": old_files}, old_rows, {mod.LIU_FAMILY}, models)
    assert shipped == {"IDH": ["tcga_lgg_IDH_flair.json"], "epilepsy": [],
                       "ATRX": ["tcga_lgg_ATRX_flair-t1c-liu2024.json", "tcga_lgg_ATRX_flair.json"]}
    assert sorted(p.name for p in models.iterdir()) == ["tcga_lgg_ATRX_flair-t1c-liu2024.json",
                                                        "tcga_lgg_ATRX_flair.json", "tcga_lgg_IDH_flair.json"]
    assert [(r["task"], r["family"]) for r in rows] == [("ATRX", mod.LIU_FAMILY), ("IDH", "flair"),
                                                         ("ATRX", "flair-t1-t1c"), ("ATRX", "flair")]
    gone = rows[2]
    assert gone["ships"] is False and "superseded by flair-t1c-liu2024" in gone["ship_rule"]
    assert "superseded by flair-t1c-liu2024" in mod.markdown_table([{**gone, **{k: TABLE_ROW[k] for k in TABLE_ROW}}])
    # the Liu model does not ship (its CI reaches 0.5): the wang2025 model stays, the Liu file goes
    (models / "tcga_lgg_ATRX_flair-t1-t1c.json").write_text("{}")
    shipped, rows = {"ATRX": []}, []
    mod.merge_shipped(shipped, rows, {"tasks": old_files}, old_rows, {mod.LIU_FAMILY}, models)
    assert shipped["ATRX"] == ["tcga_lgg_ATRX_flair-t1-t1c.json", "tcga_lgg_ATRX_flair.json"]
    assert not (models / "tcga_lgg_ATRX_flair-t1c-liu2024.json").exists()
    assert all(r.get("ships") for r in rows)
    # the Liu model had superseded the wang2025 one (its file deleted) and now fails the coin rule: the old row
    # says the wang2025 model is gone and how to get it back (it is not silently listed as shipping)
    (models / "tcga_lgg_ATRX_flair-t1-t1c.json").unlink()
    shipped, rows = {"ATRX": []}, []
    mod.merge_shipped(shipped, rows, {"tasks": {"ATRX": ["tcga_lgg_ATRX_flair-t1c-liu2024.json",
                                                         "tcga_lgg_ATRX_flair.json"]}},
                      [{**old_rows[1], "ships": False, "ship_rule": gone["ship_rule"]}], {mod.LIU_FAMILY}, models)
    assert shipped["ATRX"] == ["tcga_lgg_ATRX_flair.json"]
    assert "no longer ships: rebuild --families flair-t1-t1c" in rows[0]["ship_rule"]


def test_the_cohort_table_offers_sex_to_the_atrx_fusion(tmp_path):
    """build_real_bundles.load_table encodes sex with the one clinical encoder, so Liu's fused variables found in the
    table are age AND sex (the table has 'sex' as M / F; before the fix only age was offered); a VASARI score with
    no value is left out."""
    mod = _build_real_bundles()
    pd.DataFrame({"case_id": ["a", "b", "c"], "age": [40.0, 51.0, 33.0], "sex": ["M", "F", "F"],
                  "vasari_score": [None, None, None], "FLAIR_WT_original_firstorder_Mean": [1.0, 2.0, 3.0]}
                 ).to_csv(tmp_path / "t.csv", index=False)
    pd.DataFrame({"case_id": ["a", "b", "c"], "IDH_mutant": [1, 1, 0], "ATRX_mutant": [1, 0, 0],
                  "seizure_history": [1, 0, 1], "tumor_grade": ["G2", "G3", "G2"], "sequences": ["flair"] * 3,
                  "age": [40, 51, 33], "sex": ["M", "F", "F"]}).to_csv(tmp_path / "labels.csv", index=False)
    df, _ = mod.load_table(tmp_path / "t.csv", tmp_path / "labels.csv")
    assert df["sex_male"].tolist() == [1.0, 0.0, 0.0] and df["who_grade"].tolist() == [2.0, 3.0, 2.0]
    assert mod.atrx_clinical_of(df) == ["age", "sex_male"]


TABLE_ROW = {"n": 45, "n_positive": 23, "auc_mean": 0.74, "auc_sd": 0.02, "auc_range": [0.7, 0.78],
             "auc_95ci": [0.6, 0.89], "age_auc": 0.75, "age_auc_95ci": [0.6, 0.9], "age_sex_auc": 0.83,
             "age_sex_auc_95ci": [0.7, 0.95], "n_features_final": 8, "method": "atrx-fusion", "note": ""}


def two_label_table(n=60, p=8, seed=3):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.standard_normal((n, p)), columns=[f"FLAIR_WT_original_glcm_F{i}" for i in range(p)])
    df["IDH"] = (rng.random(n) < 1 / (1 + np.exp(-2 * df.iloc[:, 0]))).astype(float)
    df["epilepsy"] = (rng.random(n) < 1 / (1 + np.exp(-2 * df.iloc[:, 1]))).astype(float)
    df.loc[[3], "IDH"] = np.nan  # one case without IDH, epilepsy known
    df.loc[[5, 17, 40], "epilepsy"] = np.nan
    df.loc[df.index[(df["IDH"] == 0)][:1], "epilepsy"] = np.nan  # a joint stratum of ONE case
    df["age"] = rng.normal(50, 10, n)
    df["sex"] = rng.choice(["M", "F"], n)
    df.insert(0, "case_id", [f"s{i:03d}" for i in range(n)])
    return df


def test_st_and_cmt_share_one_fold_assignment():
    df = two_label_table()
    folds = shared_fold_assignment(df, ["IDH", "epilepsy"], repeats=2, folds=5, seed=9)
    assert folds.shape == (60, 2) and set(np.unique(folds.to_numpy())) == set(range(5))  # 5 folds, not 2
    common = dict(trained_on="t", synthetic=True, intended_use="t", n_bootstrap=4, repeats=2, n_jobs=1, seed=9,
                  clinical=["age", "sex_male"], fold_assignment=folds)
    _, st = train_bundles(df, ["IDH", "epilepsy"], "st", PROV, **common)
    _, cmt = train_bundles(df, ["IDH", "epilepsy"], "cmt", PROV, **common)

    def fold_of(t):
        return dict(zip(t["case_id"], map(tuple, np.asarray(t["repeated_cv"]["fold"]).T)))
    for a, b in zip(st["tasks"], cmt["tasks"]):
        assert a["task"] == b["task"]
        fa, fb = fold_of(a), fold_of(b)
        assert fa.keys() == fb.keys() and fa == fb  # every case held out in the same fold by st and cmt
        assert all(fa[c] == tuple(folds.loc[c]) for c in fa)
    # without a shared assignment the folds are capped by each label's smaller class, never by a joint stratum
    assert label_folds(df[df[["IDH", "epilepsy"]].notna().any(axis=1)], ["IDH", "epilepsy"], 5) == 5
    assert cmt["tasks"][0]["repeated_cv"]["design"]["folds"] == 5
