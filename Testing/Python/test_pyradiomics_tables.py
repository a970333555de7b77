"""`train` / `predict` on standard PyRadiomics tables (issue 14 item 6): the column names PyRadiomics itself writes
(a real extraction here), the published UCSF-PDGM table's own columns, --features REGEX and --id-column."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from GliomaRadiogenomicsLib.io import InputError
from GliomaRadiogenomicsLib.train import imaging_columns, map_standard_names, train_bundles

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
UCSF = SHARED / "tables" / "ucsf_pdgm"
LGG = SHARED / "cohorts" / "tcga-lgg" / "cases"
REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli"]


def _image_and_mask():
    """A real TCGA-LGG FLAIR + manual mask when ../shared is there, else the synthetic demo case (4 x downsampled)."""
    import SimpleITK as sitk
    cases = sorted(LGG.glob("*/flair_abnormality.nii.gz")) if LGG.is_dir() else []
    if cases:
        return sitk.ReadImage(str(cases[0].parent / "flair.nii.gz")), sitk.ReadImage(str(cases[0]))
    from GliomaRadiogenomicsLib.synthetic import make_demo_case
    case = make_demo_case(downsample=4)
    return case.images["flair"], sitk.Cast(case.label > 0, sitk.sitkUInt8)


def test_names_of_a_real_pyradiomics_extraction_are_recognised():
    """Every feature PyRadiomics writes for the usual image types is an imaging column; no diagnostics_* one is."""
    import logging
    import radiomics
    from radiomics import featureextractor
    radiomics.setVerbosity(logging.ERROR)
    image, mask = _image_and_mask()
    ex = featureextractor.RadiomicsFeatureExtractor(binCount=16, label=1)
    ex.disableAllImageTypes()
    for name, args in (("Original", {}), ("LoG", {"sigma": [3.0]}), ("Wavelet", {}), ("Square", {}),
                       ("SquareRoot", {}), ("Logarithm", {}), ("Exponential", {}), ("Gradient", {}), ("LBP2D", {})):
        ex.enableImageTypeByName(name, customArgs=args)
    row = ex.execute(image, mask)
    names = list(row)
    features = [n for n in names if not n.startswith("diagnostics_")]
    prefixes = {n.split("_")[0] for n in features}
    assert {"original", "log-sigma-3-0-mm-3D", "wavelet-LLH", "wavelet-HHH", "square", "squareroot", "logarithm",
            "exponential", "gradient", "lbp-2D"} <= prefixes
    assert any(n.startswith("diagnostics_") for n in names)
    assert imaging_columns(names) == features
    # label / clinical / id columns are never features, even when a regular expression matches them
    assert imaging_columns(names + ["IDH", "age"], features=r"^(original|IDH|age)", exclude=["IDH", "age"]) == \
        [n for n in features if n.startswith("original")]


def _ucsf_joined(tmp_path) -> Path:
    if not UCSF.is_dir():
        pytest.skip(f"UCSF-PDGM table not found at {UCSF} (../shared is absent: real data is not in the repository)")
    f = pd.read_csv(UCSF / "radiomic_features_T1c_bias_wholetumor.csv")
    m = pd.read_csv(UCSF / "metadata.csv")
    t = f.merge(m[["ID", "Sex", "Age at MRI", "IDH", "WHO CNS Grade"]], on="ID")
    t = t.assign(IDH=(t["IDH"] != "wildtype").astype(int), grade4=(t["WHO CNS Grade"] == 4).astype(int),
                 age=t["Age at MRI"], sex=t["Sex"]).drop(columns=["Sex", "Age at MRI", "WHO CNS Grade"])
    path = tmp_path / "ucsf.csv"
    t.to_csv(path, index=False)  # the published columns as they are: ID, Image, Mask, diagnostics_*, original_*
    return path


def _train(table, out, *extra):
    r = subprocess.run(CLI + ["train", "--table", str(table), "--label", "IDH", "--id-column", "ID", "--out", str(out),
                              "--bootstrap", "20", "--repeats", "2", "--jobs", "1", "--alpha", "0.01", *extra],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout[r.stdout.index("{"):])


def test_ucsf_standard_columns_train_st_and_cmt_and_predict(tmp_path):
    table = _ucsf_joined(tmp_path)
    st = _train(table, tmp_path / "st.json", "--method", "st")
    cmt = _train(table, tmp_path / "cmt.json", "--method", "cmt", "--label2", "grade4")
    for summary, path in ((st, tmp_path / "st.json"), (cmt, tmp_path / "cmt_IDH.json")):
        assert summary["auc_cv"]["IDH"][0] > 0.85 and summary["auc_cv_sd"]["IDH"] is not None
        b = json.loads(path.read_text())
        assert b["features"] and all(f.startswith("original_") or f in ("age", "sex_male") for f in b["features"])
        assert b["training"]["validation_design"]["n_imaging_columns_offered"] == 100  # no diagnostics_*, no ID
        assert b["training"]["validation_design"]["clinical_offered"] == ["age", "sex_male"]
    ev = json.loads((tmp_path / "st.evaluation.json").read_text())
    assert ev["tasks"][0]["case_id"][:2] == ["UCSF-PDGM-004", "UCSF-PDGM-010"]
    # predict maps the same names: the bundle applies to the table it was trained on, ids from --id-column
    r = subprocess.run(CLI + ["predict", "--bundle", str(tmp_path / "st.json"), "--table", str(table), "--out",
                              str(tmp_path / "p.csv"), "--id-column", "ID", "--trust-table"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    pred = pd.read_csv(tmp_path / "p.csv")
    t = pd.read_csv(table)
    assert pred["ID"].tolist() == t["ID"].tolist()
    b = json.loads((tmp_path / "st.json").read_text())
    x = t.assign(sex_male=(t["sex"] == "M").astype(float))[b["features"]].to_numpy(float)
    lp = b["intercept"] + ((x - b["center"]) / np.array(b["scale"])) @ np.array(b["coefficients"])
    assert np.allclose(pred["probability"], 1 / (1 + np.exp(-lp)), atol=2e-6)


def test_prefixed_bundle_reads_a_standard_table():
    """The shipped UCSF bundle (trained on T1c_WT_ / mask_WT_ names) applies to the published table's own columns,
    with a warning naming the assumption, and gives the same probabilities as on renamed columns."""
    if not UCSF.is_dir():
        pytest.skip(f"UCSF-PDGM table not found at {UCSF} (../shared is absent)")
    from GliomaRadiogenomicsLib.bundle import load_bundle
    from GliomaRadiogenomicsLib.predict import predict_table
    b = load_bundle(REPO / "GliomaRadiogenomics" / "GliomaRadiogenomicsLib" / "resources" / "models" /
                    "ucsf_pdgm_IDH.json")
    f = pd.read_csv(UCSF / "radiomic_features_T1c_bias_wholetumor.csv").head(40)
    f["age"] = pd.read_csv(UCSF / "metadata.csv")["Age at MRI"].head(40)
    mapping, note = map_standard_names(b.features, list(f.columns))
    assert mapping and "T1c" in note and all(v.startswith("original_") for v in mapping.values())
    got = predict_table(b, f, id_column="ID")
    renamed = f.rename(columns={c: ("mask_WT_" if "_shape_" in c else "T1c_WT_") + c
                                for c in f.columns if c.startswith("original_")})
    ref = predict_table(b, renamed, id_column="ID")
    assert np.allclose(got["probability"], ref["probability"]) and any("PyRadiomics" in w for w in got.attrs["warnings"])
    # ambiguous: a table with prefixed columns too is not mapped
    assert map_standard_names(b.features, list(f.columns) + ["FLAIR_WT_original_firstorder_Mean"]) == ({}, None)


def _odd_table(n=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6))
    df = pd.DataFrame(X, columns=[f"feat.{j}" for j in range(6)])
    df["label"] = (rng.random(n) < 1 / (1 + np.exp(-2 * X[:, 0]))).astype(int)
    df["site"] = "A"
    return df


def test_features_regex_for_other_names():
    df = _odd_table()
    kw = dict(trained_on="t", synthetic=True, intended_use="test", n_bootstrap=10, repeats=1, n_jobs=1,
              wang={"alpha": 0.05})
    with pytest.raises(InputError, match="--features REGEX"):
        train_bundles(df, ["label"], "st", {}, **kw)
    b, _ = train_bundles(df, ["label"], "st", {}, features=r"^feat\.", **kw)
    assert "feat.0" in b[0].features
    with pytest.raises(InputError, match="non-numeric column"):
        train_bundles(df, ["label"], "st", {}, features=r"^(feat|site)", **kw)
    with pytest.raises(InputError, match="no column matches"):
        train_bundles(df, ["label"], "st", {}, features=r"^nothing", **kw)
    with pytest.raises(InputError, match="not a valid regular expression"):
        train_bundles(df, ["label"], "st", {}, features=r"(", **kw)
    with pytest.raises(InputError, match="--id-column"):
        train_bundles(df, ["label"], "st", {}, features=r"^feat", id_column="ID", **kw)
