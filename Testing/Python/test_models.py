import json
import math

import numpy as np
import pandas as pd
import pytest

from GliomaRadiogenomicsLib.bundle import BundleError, FeatureMismatchError, load_bundle, nomogram_probability
from GliomaRadiogenomicsLib.predict import predict_one, predict_table
from GliomaRadiogenomicsLib.train import drop_correlated, train_bundles

PROV = {"preset": "wang2025", "settings_hash": "abc123", "pyradiomics_version": "v3.1.4"}


def planted_table(n=240, p=40, seed=0, age_effect=-0.05, sex_effect=0.0):
    """Two informative radiomic features + age; the rest noise. Known answer: the informative ones are chosen.
    ``sex_effect``: log-odds of men against women (0: sex is noise)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    age = rng.normal(50, 12, n)
    sex = rng.choice(["M", "F"], n)
    lp = 1.8 * X[:, 0] - 1.4 * X[:, 1] + age_effect * (age - 50) + sex_effect * (sex == "M")
    y = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(int)
    df = pd.DataFrame(X, columns=[f"FLAIR_WT_original_firstorder_F{i}" for i in range(p)])
    df["age"] = age
    df["sex"] = sex
    df["label"] = y
    df["case_id"] = [f"c{i}" for i in range(n)]
    return df


@pytest.fixture(scope="module")
def bundle():
    bundles, _ = train_bundles(planted_table(), ["label"], "st", PROV, tasks=["IDH"], positive_labels=["IDH-mutant"],
                               negative_labels=["IDH-wildtype"], trained_on="planted test data", synthetic=True,
                               intended_use="test", clinical=["age", "sex_male"], seed=1, n_bootstrap=30,
                               repeats=3)
    return bundles[0]


@pytest.fixture(scope="module")
def clinical_bundle():
    """A model that uses age AND sex (planted: strong effects; fixed seeds, so always selected): the clinical checks
    below always run instead of being skipped when the selection leaves age or sex out."""
    bundles, _ = train_bundles(planted_table(seed=21, age_effect=-0.12, sex_effect=2.0), ["label"], "st", PROV,
                               tasks=["IDH"], positive_labels=["IDH-mutant"], negative_labels=["IDH-wildtype"],
                               trained_on="planted test data", synthetic=True, intended_use="test",
                               clinical=["age", "sex_male"], seed=1, n_bootstrap=30, repeats=1)
    b = bundles[0]
    assert {"age", "sex_male"} <= set(b.features), b.features
    return b


def test_training_recovers_planted_features(bundle):
    assert "FLAIR_WT_original_firstorder_F0" in bundle.features
    assert "FLAIR_WT_original_firstorder_F1" in bundle.features
    c = dict(zip(bundle.features, bundle.coefficients))
    assert c["FLAIR_WT_original_firstorder_F0"] > 0 > c["FLAIR_WT_original_firstorder_F1"]
    assert len(bundle.features) <= 8  # noise features are not stable across the bootstrap rounds
    assert bundle.training["method_details"]["selection_fallback"] is False
    assert bundle.metrics["auc_cv"] > 0.75
    lo, hi = bundle.metrics["auc_cv_95ci"]
    assert lo < bundle.metrics["auc_cv"] < hi
    assert 0 < bundle.cutoff < 1
    # repeated nested CV: 3 repetitions summarised; the planted features beat the clinical baselines on the same folds
    m = bundle.metrics
    assert m["auc_cv_repeats"] == 3 and len(m["auc_cv_per_repetition"]) == 3
    assert m["auc_cv_range"][0] <= m["auc_cv"] <= m["auc_cv_range"][1] and m["auc_cv_sd"] >= 0
    assert set(m["baselines_cv"]) == {"age", "age + sex"}
    assert m["baselines_cv"]["age"]["auc"] < m["auc_cv"] - 0.1
    assert m["comparison_with_baselines"]["age"]["repetitions_model_better"] == 3
    assert bundle.feature_schema["sequences"] == ["FLAIR"] and bundle.sequences == ["flair"]


def test_drop_correlated_removes_one_of_a_pair():
    rng = np.random.default_rng(0)
    a = rng.normal(size=100)
    X = np.c_[a, a * 2 + 1e-4 * rng.normal(size=100), rng.normal(size=100)]
    _, names = drop_correlated(X, ["a", "a2", "b"])
    assert names == ["a", "b"]


def test_bundle_roundtrip_is_plain_json(tmp_path, bundle):
    p = bundle.save(tmp_path / "b.json")
    d = json.loads(p.read_text())
    assert d["format"] == "glioma-radiogenomics-model-bundle" and d["schema_version"] == 1
    assert d["synthetic"] is True and d["training"]["trained_on"] == "planted test data"
    b2 = load_bundle(p)
    row = planted_table(5, seed=9).iloc[0].to_dict()
    assert predict_one(b2, row, PROV)["probability"] == pytest.approx(predict_one(bundle, row, PROV)["probability"])


def test_malformed_bundles_are_refused(tmp_path, bundle):
    d = bundle.to_dict()
    cases = {
        "format": dict(d, format="something"),
        "schema version": dict(d, schema_version=99),
        "missing key": {k: v for k, v in d.items() if k != "cutoff"},
        "has 1 values": dict(d, coefficients=[1.0]),
        "scale values": dict(d, scale=[0.0] * len(d["scale"])),
    }
    for msg, doc in cases.items():
        p = tmp_path / "bad.json"
        p.write_text(json.dumps(doc))
        with pytest.raises(BundleError, match=msg):
            load_bundle(p)
    p.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(p)


def test_feature_mismatch_is_refused(bundle):
    row = planted_table(3, seed=2).iloc[0].to_dict()
    row.pop(bundle.features[0])
    with pytest.raises(FeatureMismatchError, match="not offered"):
        predict_one(bundle, row, PROV)
    row = planted_table(3, seed=2).iloc[0].to_dict()
    with pytest.raises(FeatureMismatchError, match="settings_hash"):
        predict_one(bundle, row, dict(PROV, settings_hash="other"))


def test_sex_goes_through_the_one_encoder_into_a_model_that_uses_it(clinical_bundle):
    """M -> 1, F -> 0 (the coefficient's sign follows the planted effect: men more often positive), 'X' refused with
    a message naming the value, missing sex imputed with a warning."""
    from GliomaRadiogenomicsLib.io import InputError
    b = clinical_bundle
    i = b.features.index("sex_male")
    assert b.coefficients[i] > 0
    row = planted_table(3, seed=2).iloc[0].to_dict()
    res = {sex: predict_one(b, dict(row, sex=sex), PROV) for sex in ("M", "male", "F", "female")}
    lp = {sex: r["nomogram"]["linear_predictor"] for sex, r in res.items()}
    assert lp["M"] == lp["male"] and lp["F"] == lp["female"]
    assert lp["M"] - lp["F"] == pytest.approx(b.coefficients[i] / b.scale[i], abs=1e-5)  # x = 1 for men, 0 for women
    assert res["M"]["probability"] > res["F"]["probability"]
    for bad in ("X", "U", "2"):
        with pytest.raises(InputError, match=f"sex '{bad}'"):
            predict_one(b, dict(row, sex=bad), PROV)
    missing = predict_one(b, dict(row, sex=None), PROV)
    assert any("sex_male" in w and "missing" in w for w in missing["warnings"])
    assert lp["F"] < missing["nomogram"]["linear_predictor"] < lp["M"]  # the training proportion, between the two


def test_nomogram_points_reproduce_the_probability(bundle):
    table = planted_table(50, seed=4)
    for _, r in table.iterrows():
        res = predict_one(bundle, r.to_dict(), PROV)
        n = res["nomogram"]
        assert sum(n["points"].values()) == pytest.approx(n["total_points"], abs=0.05)
        assert nomogram_probability(bundle, n["total_points"]) == pytest.approx(res["probability"], abs=2e-3)
        assert res["probability"] == pytest.approx(1 / (1 + math.exp(-n["linear_predictor"])), abs=1e-6)
    # on the training data every variable lies in 0..100 points and the widest spans exactly 100
    spans = [(v.c_max - v.c_min) / bundle.nomogram["lp_per_point"] for v in bundle.variables]
    assert max(spans) == pytest.approx(100.0)


def test_missing_age_is_imputed_with_a_warning(clinical_bundle):
    row = planted_table(3, seed=5).iloc[0].to_dict()
    row["age"] = None
    res = predict_one(clinical_bundle, row, PROV)
    assert any("'age' missing" in w for w in res["warnings"])
    assert res["feature_contributions"]["age"] == pytest.approx(  # replaced by the training mean
        clinical_bundle.coefficients[clinical_bundle.features.index("age")]
        * (clinical_bundle.imputation["age"] - clinical_bundle.center[clinical_bundle.features.index("age")])
        / clinical_bundle.scale[clinical_bundle.features.index("age")], abs=1e-4)


def test_predict_table(bundle):
    out = predict_table(bundle, planted_table(10, seed=6))
    assert list(out.columns) == ["case_id", "task", "probability", "label", "total_points", "status", "model",
                                 "synthetic", "warnings"]
    assert out.probability.between(0, 1).all() and set(out.label) <= {"IDH-mutant", "IDH-wildtype"}


def test_extreme_linear_predictor_gives_a_probability_not_an_overflow(bundle):
    from GliomaRadiogenomicsLib.bundle import nomogram_probability
    lo, hi = nomogram_probability(bundle, -1e6), nomogram_probability(bundle, 1e6)  # math.exp overflowed here
    assert {round(lo), round(hi)} == {0, 1}
