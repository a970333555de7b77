"""Real tables (../shared/data/tables): the UCSF-PDGM IDH bundle and the TCGA analyses."""
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from GliomaRadiogenomicsLib.bundle import FeatureMismatchError, load_bundle
from GliomaRadiogenomicsLib.evaluation import delong_ci
from GliomaRadiogenomicsLib.features import expected_columns, load_preset
from GliomaRadiogenomicsLib.predict import predict_table

REPO = Path(__file__).resolve().parents[2]
TABLES = Path(os.environ.get("GLIOMA_SHARED_DATA", REPO.parent / "shared" / "data")) / "tables"
BUNDLE = REPO / "GliomaRadiogenomics" / "GliomaRadiogenomicsLib" / "resources" / "models" / "ucsf_pdgm_IDH.json"
needs_tables = pytest.mark.skipif(not (TABLES / "ucsf_pdgm").is_dir(),
                                  reason="real tables absent (../shared/data/tables is for developers and CI only)")


def _script():
    spec = importlib.util.spec_from_file_location("analyze_real_tables", REPO / "scripts" / "analyze_real_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ucsf_bundle_card_and_schema():
    b = load_bundle(BUNDLE)
    assert b.synthetic is False and "UCSF-PDGM" in b.training["trained_on"] and b.training["n"] > 300
    assert b.feature_schema["preset"] == "ucsf_pdgm"
    assert b.feature_schema["settings_hash"] == load_preset("ucsf_pdgm").settings_hash()
    assert "not a diagnosis" in b.intended_use.lower() or "research use" in b.intended_use.lower()
    lo, hi = b.metrics["auc_cv_95ci"]
    assert 0.8 < lo <= b.metrics["auc_cv"] <= hi
    assert set(b.features) <= set(expected_columns("ucsf_pdgm")) | {"age"}
    with pytest.raises(FeatureMismatchError, match="settings_hash"):
        b.check_features(b.features, {"preset": "ucsf_pdgm", "settings_hash": load_preset("wang2025").settings_hash()})


@needs_tables
def test_ucsf_columns_are_our_preset_and_the_bundle_predicts_them():
    t = _script().ucsf_table(TABLES)
    assert len(t) > 300
    radiomic = [c for c in t.columns if c.startswith(("mask_WT_", "T1c_WT_"))]
    assert set(radiomic) == set(expected_columns("ucsf_pdgm"))  # our extraction has exactly their feature set
    b = load_bundle(BUNDLE)
    pred = predict_table(b, t, load_preset("ucsf_pdgm").provenance())
    auc = delong_ci(t["IDH"].to_numpy(), pred["probability"].to_numpy())[0]
    assert auc > 0.9  # apparent (training data); the out-of-fold figure is in the card
    assert set(pred.label) == {"IDH-mutant", "IDH-wildtype"}


@needs_tables
def test_tcga_relations():
    r = _script().tcga(TABLES)
    a = r["atrx_by_idh"]
    assert a["n"] > 800 and a["atrx_rate_idh_mutant"] > 0.3 > a["atrx_rate_idh_wildtype"] and a["p_fisher"] < 1e-10
    assert r["atrx_by_age_within_idh_mutant"]["median_age_atrx_mutant"] < r["atrx_by_age_within_idh_mutant"][
        "median_age_atrx_wildtype"]
    s = r["seizure_by_idh"]
    assert r["lgg_n"] > 400 and 0 < s["seizure_rate_idh_mutant"] < 1 and np.isfinite(s["p_fisher"])
    assert json.dumps(r)  # plain JSON
