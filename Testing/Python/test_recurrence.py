"""Recurrence pattern of Shim 2021 (recurrence.py, issue 17 item 4): SVM-RFE inside the folds, SMOTE on the training
folds only, MLP vs SVM vs LR on identical folds, Shapley explanations, the JSON bundle (numpy MLP forward pass) and
`train --method shim-recurrence` on a SYNTHETIC rCBV cohort. Small sets: seconds."""
import json

import numpy as np
import pandas as pd
import pytest

from GliomaRadiogenomicsLib import recurrence as R
from GliomaRadiogenomicsLib.bundle import BundleError, FeatureMismatchError, load_bundle
from GliomaRadiogenomicsLib.evaluation import repeated_cv_summary
from GliomaRadiogenomicsLib.explain import brute_force_shapley
from GliomaRadiogenomicsLib.train import cv_splits

LABEL = "distant_recurrence"


def _xy(n=150, seed=0, effect=1.5):
    df, prov = R.synthetic_recurrence_table(n=n, seed=seed, effect=effect)
    cols = [c for c in df.columns if c.startswith("rCBV_")]
    return df, prov, cols, df[cols].to_numpy(float), df[LABEL].to_numpy(int)


def test_synthetic_cohort_deterministic_and_labelled():
    a, pa = R.synthetic_recurrence_table(n=40, seed=3)
    b, _ = R.synthetic_recurrence_table(n=40, seed=3)
    c, _ = R.synthetic_recurrence_table(n=40, seed=4)
    assert a.equals(b) and not a.equals(c)
    assert a["synthetic"].all() and pa["synthetic"] is True and pa["sequences"] == ["rCBV"]
    assert {f for f, _ in R.PLANTED} <= set(a.columns) and set(a[LABEL]) == {0, 1}


def test_svm_rfe_keeps_the_planted_features():
    _, _, cols, X, y = _xy()
    sel = R.SvmRfeSelector(8).fit(X, y)
    kept = {cols[j] for j in sel.support_}
    assert {f for f, _ in R.PLANTED} <= kept, kept
    Z = sel.transform(X)
    assert Z.shape == (len(y), 8) and np.allclose(Z.mean(0), 0, atol=1e-9)


def test_planted_signal_recovered_and_permuted_labels_near_chance():
    _, _, _, X, y = _xy(n=120, seed=1, effect=1.5)
    cv = R.repeated_cv_recurrence(X, y, repeats=2, folds=4, seed=0, params={"n_features": 8, "max_iter": 300},
                                  classifiers=("mlp",))
    auc = repeated_cv_summary(y, cv["oof"]["mlp"], n_boot=100)["auc_mean"]
    assert auc > 0.8, auc
    yp = np.random.default_rng(5).permutation(y)
    cvp = R.repeated_cv_recurrence(X, yp, repeats=2, folds=4, seed=0, params={"n_features": 8, "max_iter": 300},
                                   classifiers=("mlp",))
    auc_p = repeated_cv_summary(yp, cvp["oof"]["mlp"], n_boot=100)["auc_mean"]
    assert abs(auc_p - 0.5) < 0.15, auc_p


def test_smote_touches_training_folds_only(monkeypatch):
    _, _, _, X, y = _xy(n=60, seed=2)
    seen = []
    real = R.oversample

    def spy(Z, yy, k_neighbors=5, seed=0):
        out = real(Z, yy, k_neighbors, seed)
        seen.append((len(Z), np.asarray(yy).copy(), out))
        return out
    monkeypatch.setattr(R, "oversample", spy)
    scored = []
    real_scores = R.scores
    monkeypatch.setattr(R, "scores", lambda m, Z: (scored.append(len(Z)), real_scores(m, Z))[1])
    cv = R.repeated_cv_recurrence(X, y, repeats=2, folds=3, seed=7, params={"n_features": 5}, classifiers=("lr",))
    jobs, _ = cv_splits(__import__("pandas").Series(y.astype(str)), 2, 3, 7)
    assert len(seen) == len(jobs) == len(scored)
    for (r, f, tr, te), (n_in, y_in, (Zs, ys, n_syn)), n_scored, rec in zip(jobs, seen, scored, cv["folds_info"]):
        assert n_in == len(tr) and np.array_equal(y_in, y[tr])          # SMOTE saw exactly the training fold
        assert n_syn > 0 and len(ys) == len(tr) + n_syn and np.bincount(ys)[0] == np.bincount(ys)[1]
        assert n_scored == len(te) == rec["n_test"] == rec["n_scored"]["lr"]   # test fold: original size, no synthetic
    for r in range(2):  # every case scored exactly once per repetition, from its own test fold
        assert np.isfinite(cv["oof"]["lr"][r]).all()
        assert sum(len(te) for rr, _, _, te in jobs if rr == r) == len(y)


def test_mlp_json_forward_equals_sklearn_predict_proba():
    _, _, cols, X, y = _xy(n=80, seed=4)
    est = R.ShimRecurrence(n_features=6, max_iter=200).fit(X, y, cols)
    d = json.loads(json.dumps(R.mlp_to_dict(est.model_)))
    Z = est.selector_.transform(X)
    assert len(d["weights"]) == 6  # 5 hidden layers + output
    assert np.max(np.abs(R.mlp_forward(d, Z) - est.model_.predict_proba(Z)[:, 1])) <= 1e-12


@pytest.mark.parametrize("kind", ["mlp", "lr", "svm"])
def test_shapley_sums_and_equals_brute_force(kind):
    _, _, cols, X, y = _xy(n=80, seed=6)
    est = R.ShimRecurrence(classifier=kind, n_features=5, max_iter=200, n_background=6).fit(X, y, cols)
    e = est.explain(X[3], top=5)
    z = est.selector_.transform(X[3:4])[0]
    f = (lambda Z: est.model_.predict_proba(Z)[:, 1]) if kind == "mlp" else est.model_.decision_function
    bf = brute_force_shapley(f, z, est.background_)
    got = {d["feature"]: d["shapley"] for d in e["features"]}
    assert np.allclose([got[c] for c in est.features_], bf, atol=1e-10)
    assert abs(sum(got.values()) - (e["prediction"] - e["base_value"])) < 1e-10
    assert e["method"].startswith("Kernel SHAP" if kind == "mlp" else "exact linear")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`train --method shim-recurrence` once on a SYNTHETIC table with its provenance (no --synthetic flag)."""
    from GliomaRadiogenomicsLib.cli import main
    d = tmp_path_factory.mktemp("rec")
    df, prov = R.synthetic_recurrence_table(n=90, seed=8, effect=1.5)
    df.to_csv(d / "t.csv", index=False)
    (d / "t.provenance.json").write_text(json.dumps(prov))
    rc = main(["train", "--method", "shim-recurrence", "--table", str(d / "t.csv"), "--label", LABEL, "--out",
               str(d / "rec.json"), "--repeats", "1", "--folds", "3", "--n-features", "4,8", "--inner-folds", "2"])
    return rc, d, df, prov


def test_cli_train_writes_a_synthetic_json_bundle(trained, capsys):
    rc, d, df, _ = trained
    assert rc == 0
    b = json.loads((d / "rec.json").read_text())
    assert b["format"] == R.RECURRENCE_FORMAT and b["synthetic"] is True and b["card"]["synthetic"] is True
    assert "SYNTHETIC" in b["name"] and b["feature_schema"]["sequences"] == ["cbv"]
    assert set(b["metrics"]["classifiers_cv"]) == {"mlp", "svm", "lr"} and len(b["features"]) in (4, 8)
    assert all(isinstance(w, list) for w in b["mlp"]["weights"])
    ev = json.loads((d / "rec.evaluation.json").read_text())
    assert ev["synthetic"] is True and (d / "rec.evaluation.html").exists()
    assert "[SYNTHETIC]" in (d / "rec.evaluation.html").read_text()


def test_bundle_round_trip_applies_and_refuses(trained, tmp_path):
    rc, d, df, prov = trained
    b = R.load_recurrence_bundle(d / "rec.json")
    out = R.predict_recurrence(b, df.head(4), prov)
    assert out["synthetic_model"].all() and out["probability"].between(0, 1).all()
    assert out["case_id"].tolist() == df["case_id"].head(4).tolist() and out["top_shapley"].str.len().gt(0).all()
    Z = (df[b["features"]].to_numpy(float) - b["center"]) / np.asarray(b["scale"])
    assert np.allclose(out["probability"], R.mlp_forward(b["mlp"], Z[:4]), atol=0)
    with pytest.raises(FeatureMismatchError, match="rCBV"):
        R.predict_recurrence(b, df, {**prov, "sequences": ["T1c"]})
    with pytest.raises(FeatureMismatchError, match="not offered"):
        R.predict_recurrence(b, df.drop(columns=[b["features"][0]]), prov)
    with pytest.raises(BundleError, match="recurrence-pattern bundle"):
        load_bundle(d / "rec.json")
    # the bytes of a pickle stream (protocol 4: PROTO, BININT1 1, STOP), written literally: nothing is pickled here
    (tmp_path / "p.json").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(BundleError, match="pickle"):
        R.load_recurrence_bundle(tmp_path / "p.json")


def test_cli_refuses_a_table_not_from_rcbv(tmp_path, capsys):
    from GliomaRadiogenomicsLib.cli import main
    df, prov = R.synthetic_recurrence_table(n=40, seed=9)
    df.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "t.provenance.json").write_text(json.dumps({**prov, "sequences": ["T1c"]}))
    rc = main(["train", "--method", "shim-recurrence", "--table", str(tmp_path / "t.csv"), "--label", LABEL,
               "--out", str(tmp_path / "r.json"), "--repeats", "1", "--folds", "3", "--n-features", "4"])
    assert rc == 2 and "rCBV" in capsys.readouterr().err and not (tmp_path / "r.json").exists()


def test_cli_predict_applies_the_recurrence_bundle(trained, tmp_path, capsys):
    """`predict --bundle <recurrence bundle>`: the CLI's probabilities are the bundle's numpy MLP on the table (the
    same numbers as predict_recurrence), marked synthetic; a table from T1c is refused with exit 2."""
    from GliomaRadiogenomicsLib.cli import main
    rc, d, df, prov = trained
    df.head(5).to_csv(tmp_path / "new.csv", index=False)
    (tmp_path / "new.provenance.json").write_text(json.dumps(prov))
    assert main(["predict", "--bundle", str(d / "rec.json"), "--table", str(tmp_path / "new.csv"),
                 "--out", str(tmp_path / "p.csv")]) == 0
    got = pd.read_csv(tmp_path / "p.csv")
    b = R.load_recurrence_bundle(d / "rec.json")
    Z = (df[b["features"]].head(5).to_numpy(float) - b["center"]) / np.asarray(b["scale"])
    assert np.allclose(got["probability"], R.mlp_forward(b["mlp"], Z), atol=1e-12)
    assert got["case_id"].astype(str).tolist() == df["case_id"].head(5).astype(str).tolist()
    assert got["synthetic_model"].all() and "SYNTHETIC" in capsys.readouterr().out
    (tmp_path / "new.provenance.json").write_text(json.dumps({**prov, "sequences": ["T1c"]}))
    assert main(["predict", "--bundle", str(d / "rec.json"), "--table", str(tmp_path / "new.csv"),
                 "--out", str(tmp_path / "q.csv")]) == 2
    assert "rCBV" in capsys.readouterr().err and not (tmp_path / "q.csv").exists()


def test_a_bundle_from_the_synthetic_table_accepts_real_shim2021_provenance(trained):
    """The synthetic table carries the provenance keys that real rCBV features get (pipeline: the shim2021 preset's
    own keys + perfusion.REFERENCE_REGION), so its bundle applies to a real rCBV extraction; another rCBV definition
    or another preset is refused."""
    from GliomaRadiogenomicsLib.features import load_preset
    from GliomaRadiogenomicsLib.perfusion import REFERENCE_REGION
    rc, d, df, _ = trained
    b = R.load_recurrence_bundle(d / "rec.json")
    real = {**load_preset("shim2021").provenance(), "rcbv_normalization": REFERENCE_REGION, "sequences": ["rCBV"],
            "spacing_mm": 1.0, "segmentation_source": "automatic"}
    assert R.check_recurrence_features(b, df.columns, real) is not None  # accepted (soft warnings at most)
    with pytest.raises(FeatureMismatchError, match="rCBV normalisation"):
        R.check_recurrence_features(b, df.columns, {**real, "rcbv_normalization": "rcbv-v0: another region"})
    with pytest.raises(FeatureMismatchError, match="preset"):
        R.check_recurrence_features(b, df.columns, {**real, **load_preset("wang2025").provenance()})
