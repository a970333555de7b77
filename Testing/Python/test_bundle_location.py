"""Atlas location features for JSON bundles (issue 17 leftovers): a Shim 2021 / Choi 2021 JSON bundle whose features
include ``loc_*`` columns gets them computed at run time without --location, by the same rule as the logistic
bundles (pipeline.options_for_bundles / bundle_features)."""
import json

import numpy as np
import pytest

from test_cbv import phantom_dir  # noqa: F401  (the CBV phantom case folder: a module fixture)

LOC = "loc_WT_frontal_lobe_pct"


def test_options_for_bundles_reads_json_bundles_as_the_logistic_ones():
    from GliomaRadiogenomicsLib.bundle import load_default_bundles
    from GliomaRadiogenomicsLib.pipeline import PipelineOptions, bundle_features, options_for_bundles
    opt = PipelineOptions()
    choi = ("choi", {"features": ["mask_WT_original_shape_Sphericity", LOC]})
    survival = ("survival", {"features": ["rCBV_CE_original_firstorder_Mean"]})
    assert bundle_features(choi) == ["mask_WT_original_shape_Sphericity", LOC]
    assert options_for_bundles(opt, [choi]).location is True
    assert options_for_bundles(opt, [survival]).location is False
    logistic = load_default_bundles()
    uses_atlas = any(f.startswith(("loc_", "vasari_", "t2flair_")) for b in logistic for f in b.features)
    assert options_for_bundles(opt, logistic).location is uses_atlas  # the logistic rule, unchanged
    assert options_for_bundles(opt, [survival] + logistic).location is uses_atlas


@pytest.fixture(scope="module")
def loc_survival_bundle(tmp_path_factory):
    """A Cox-LASSO survival bundle trained by the CLI on a SYNTHETIC table (rCBV columns with real shim2021
    provenance, recurrence.synthetic_recurrence_table) plus an atlas column ``loc_WT_frontal_lobe_pct`` that drives the
    survival time: the bundle's features include it."""
    from GliomaRadiogenomicsLib import recurrence as R
    from GliomaRadiogenomicsLib.cli import main
    d = tmp_path_factory.mktemp("loc_bundle")
    df, prov = R.synthetic_recurrence_table(n=80, seed=4, effect=1.5)
    rng = np.random.default_rng(7)
    df = df.drop(columns=[c for c in df.columns if c != "case_id" and not c.startswith("rCBV_")])
    df[LOC] = rng.uniform(0, 100, len(df)).round(3)
    t = rng.exponential(1000 * np.exp(-(df[LOC] - 50) / 15))
    df["os_days"], df["death"] = t.round(1), (rng.random(len(t)) < 0.8).astype(int)
    df.to_csv(d / "os.csv", index=False)
    (d / "os.provenance.json").write_text(json.dumps(prov))
    assert main(["train", "--method", "cox-lasso", "--table", str(d / "os.csv"), "--time", "os_days", "--event",
                 "death", "--repeats", "1", "--folds", "3", "--inner-folds", "3", "--out", str(d / "os.json")]) == 0
    b = json.loads((d / "os.json").read_text())
    assert LOC in b["features"], b["features"]  # precondition: the bundle needs the atlas column
    return d / "os.json"


def test_a_json_bundle_needing_loc_columns_gets_them_without_location(phantom_dir, loc_survival_bundle):  # noqa: F811
    """evaluate_case (the one run path) with the bundle, location left off: the atlas features are computed, reach
    the bundle (not imputed) and the risk score is the bundle applied to them."""
    from GliomaRadiogenomicsLib import survival as SV
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.io import read_image
    from GliomaRadiogenomicsLib.pipeline import PipelineOptions, evaluate_case
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    from GliomaRadiogenomicsLib import render
    from GliomaRadiogenomicsLib.shim import _shim_features
    d, _ = phantom_dir
    opt = PipelineOptions(preprocess=PreprocessOptions(spacing=3.0, brain_mask="threshold"), feature_workers=1,
                          bundles=[str(loc_survival_bundle)])
    assert opt.location is False
    analysis, doc = evaluate_case(load_case_folder(d), opt, label=read_image(d / "label.nii.gz", "truth", label=True),
                                  label_source="truth")
    values = analysis.features.values
    assert LOC in values and 0 <= values[LOC] <= 100 and analysis.features.provenance.get("atlas") == "mni152"
    (entry,) = doc[getattr(render, "BUNDLE_TASKS_KEY", "shim2021")]  # the JSON-bundle tasks' list
    assert entry["kind"] == "survival" and not entry.get("reason"), entry
    assert LOC not in (entry.get("imputed") or "")
    b = SV.load_survival_bundle(loc_survival_bundle)
    rcbv, _ = _shim_features(analysis)
    want = SV.bundle_risk(b, {**rcbv, LOC: values[LOC]})
    assert want["imputed"] == [] and abs(entry["risk_score"] - want["risk_score"]) < 1e-9


def test_extract_computes_the_features_a_given_bundle_needs(phantom_dir, loc_survival_bundle, tmp_path):  # noqa: F811
    """`extract --bundle B` applies no model but computes what B needs (options_for_bundles, as `run` does): the
    bundle's atlas column is in the table without --location; without --bundle it is not."""
    import shutil
    import pandas as pd
    from GliomaRadiogenomicsLib.cli import main
    d, _ = phantom_dir
    cohort = tmp_path / "cohort"
    shutil.copytree(d, cohort / "P01", ignore=shutil.ignore_patterns("cbv*"))  # label.nii.gz: the one mask
    common = ["extract", "--cases", str(cohort), "--case-roi", "--spacing", "3", "--brain-mask", "threshold",
              "--workers", "1"]
    assert main(common + ["--bundle", str(loc_survival_bundle), "--out", str(tmp_path / "with.csv")]) == 0
    row = pd.read_csv(tmp_path / "with.csv").iloc[0]
    assert 0 <= row[LOC] <= 100
    assert main(common + ["--out", str(tmp_path / "without.csv")]) == 0
    assert LOC not in pd.read_csv(tmp_path / "without.csv").columns
