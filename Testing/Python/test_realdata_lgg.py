"""The real TCGA-LGG cohort (../shared/data/cohorts/tcga-lgg; skipped with a reason when absent): case folders as
the source ships them (flair / t1 / t1c + flair_abnormality mask, no T2, some FLAIR-only) through the default
command line path."""
import json

import pandas as pd
import pytest

from conftest import run_lgg_case
from GliomaRadiogenomicsLib.predict import validate_predictions

pytestmark = pytest.mark.realdata
THREE_SEQUENCES = "TCGA-CS-4942"     # FLAIR + T1 + T1c (conftest.LGG_THREE_SEQUENCES)
TWO_SEQUENCES = "TCGA-FG-7634"       # FLAIR + T1
FLAIR_ONLY = "TCGA-HT-7877"


def _family(doc):
    """task -> sequences of the model applied (None when not applied)."""
    return {t: (doc[t]["model"]["sequences"] if doc[t]["probability"] is not None else None) for t in doc["tasks"]}


def _real_defaults():
    from GliomaRadiogenomicsLib.bundle import load_default_bundles
    return load_default_bundles()


@pytest.fixture(scope="module")
def cohort(shared_data):
    c = shared_data / "cohorts" / "tcga-lgg" / "cases"
    if not c.is_dir():
        pytest.skip(f"{c} absent: the TCGA-LGG cohort tests are skipped")
    return c


def _run(case_dir, out, *extra):
    p = run_lgg_case(case_dir, out, *extra)
    return json.loads((out / "predictions.json").read_text()), p


def test_case_folder_discovery_sets_the_mask_aside(cohort):
    from GliomaRadiogenomicsLib.case import load_case_folder
    case = load_case_folder(cohort / THREE_SEQUENCES)
    assert case.sequences == ["t1", "t1c", "flair"]
    assert case.mask_path.endswith("flair_abnormality.nii.gz")
    assert case.clinical["age"] == 44.0 and case.clinical["sex"] == "F"     # top-level case.json fields
    assert any("T2" in m for m in case.messages) and any("--segmentation" in m for m in case.messages)
    flair_only = load_case_folder(cohort / FLAIR_ONLY)
    assert flair_only.sequences == ["flair"]


@pytest.mark.slow
def test_three_sequence_case_runs_end_to_end(lgg_three_sequence_run):
    _, out, _ = lgg_three_sequence_run      # the default run of THREE_SEQUENCES (shared with test_round_trip)
    doc = json.loads((out / "predictions.json").read_text())
    validate_predictions(doc)
    assert set(doc["inputs"]) == {"T1", "T1c", "FLAIR"}
    assert doc["features"]["sequences"] == ["T1", "T1c", "FLAIR"]
    cols = pd.read_csv(out / "features.csv").columns
    assert not any(c.startswith("T2_") for c in cols) and any(c.startswith("FLAIR_WT_") for c in cols)
    for t in ("IDH", "epilepsy", "ATRX"):
        r = doc[t]
        if r["probability"] is None:   # not applied: a reason, never an imputed value
            assert r["reason"] and "T2" in r["reason"]
        else:
            assert set(r["model"]["sequences"]) <= {"T1", "T1c", "FLAIR"}
    # every task with a real default model gets a probability on this case (the largest applicable family member)
    for b in _real_defaults():
        if not b.synthetic:
            assert doc[b.task]["probability"] is not None and doc[b.task]["model"]["synthetic"] is False, b.task
    fam = {b.task: b for b in _real_defaults() if {q for q in b.sequences} == {"t1", "t1c", "flair"}}
    for t, b in fam.items():   # the family member trained on exactly this subset is the one chosen
        assert doc[t]["model"]["name"] == b.name
    assert doc["segmentation"]["volumes_ml"]["WT"] > 1.0
    # ATRX: Liu 2024's model on its own input (liu2024 preset on overall / tumor / edema): the columns it reads are
    # extracted beside the run's wang2025 features, written to features.liu2024.csv, and its probability is that
    # bundle applied to that row
    from GliomaRadiogenomicsLib.features import expected_columns
    liu = [b for b in _real_defaults() if b.feature_schema.get("preset") == "liu2024"]
    assert liu, "the ATRX default for FLAIR + T1c cases is Liu 2024's model on liu2024 (build_real_bundles.py)"
    for b in liu:
        assert doc[b.task]["model"]["name"] == b.name and doc[b.task]["model"]["sequences"] == ["T1c", "FLAIR"]
        row = pd.read_csv(out / "features.liu2024.csv").iloc[0].to_dict()
        prov = json.loads((out / "features.liu2024.provenance.json").read_text())
        imaging = [f for f in b.features if f in expected_columns("liu2024")]
        assert prov["preset"] == "liu2024" and prov["columns_subset"].startswith(f"{len(imaging)} of ")
        assert set(imaging) <= set(row) and doc["features"]["other_presets"]["liu2024"]["n"] == len(imaging)
        from GliomaRadiogenomicsLib.predict import feature_row_with_derived   # sex -> sex_male, as a run does
        want = b.predict_proba_row(feature_row_with_derived(row))["probability"]
        assert doc[b.task]["probability"] == pytest.approx(want, abs=1e-6)
        assert not any("roi-subregions" in w for w in doc["warnings"])  # automatic ROI: its own core labels
    # the report's model cards of the real models: calibration with its CIs and the metrics at the cutoffs chosen in
    # each training fold beside the final model's cutoff, as the bundles record them (train.py)
    import html
    from test_report_status import card_texts
    page = html.unescape((out / "report.html").read_text())
    real = [t for t in doc["tasks"] if doc[t]["probability"] is not None and not doc[t]["model"]["synthetic"]
            and "calibration_cv" in doc[t]["model"]["metrics"]]
    assert real
    for t in real:
        for want in card_texts(doc[t]["model"]["metrics"], doc[t]["cutoff"]).values():
            assert want in page, (t, want)


@pytest.mark.slow
def test_flair_only_case_runs_and_a_bundle_needing_other_sequences_is_skipped(cohort, tmp_path):
    from GliomaRadiogenomicsLib.bundle import default_bundle_paths
    import GliomaRadiogenomicsLib
    from pathlib import Path
    synthetic_idh = Path(GliomaRadiogenomicsLib.__file__).parent / "resources" / "models" / "default_IDH.json"
    # the default path, then the case's own manual mask as ROI with the synthetic IDH bundle (its features need T1 / T1c)
    doc, _ = _run(cohort / FLAIR_ONLY, tmp_path / "default")
    validate_predictions(doc)
    assert doc["features"]["sequences"] == ["FLAIR"]
    for t in doc["tasks"]:
        r = doc[t]
        assert r["probability"] is None or r["model"]["sequences"] == ["FLAIR"], (t, r["model"])
        assert r["probability"] is not None or ("not applied" in r["reason"] and "FLAIR" in r["reason"])
    flair_models = {b.task for b in _real_defaults() if b.sequences == ["flair"]}
    assert all(doc[t]["probability"] is not None for t in flair_models)
    doc, p = _run(cohort / FLAIR_ONLY, tmp_path / "roi", "--segmentation", "case", "--bundle", str(synthetic_idh))
    validate_predictions(doc)
    assert doc["tasks"] == ["IDH"] and doc["IDH"]["probability"] is None
    assert "T1c" in doc["IDH"]["reason"] and "not applied" in doc["IDH"]["reason"]   # its features need T1 / T1c
    assert "case-folder mask flair_abnormality.nii.gz" in doc["features"]["segmentation"]
    assert "not applied" in p.stdout
    assert default_bundle_paths()  # the registry resolves


@pytest.mark.slow
def test_two_sequence_case_runs_with_the_applicable_family_members(cohort, tmp_path):
    doc, _ = _run(cohort / TWO_SEQUENCES, tmp_path / "out")
    validate_predictions(doc)
    assert set(doc["inputs"]) == {"T1", "FLAIR"}
    for t, seqs in _family(doc).items():   # applied models use only FLAIR / T1; the others say why not
        assert seqs is None or set(seqs) <= {"T1", "FLAIR"}, (t, seqs)
        assert seqs is not None or "T1c" in doc[t]["reason"]
