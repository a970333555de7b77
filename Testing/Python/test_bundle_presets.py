"""A run applies every bundle to features of the preset it was trained on (Liu 2024's ATRX model on liu2024 beside
Wang 2025's IDH / epilepsy models on wang2025): pipeline.add_bundle_presets extracts another preset once from the
run's preprocessed case and segmentation, with the run's provenance and that preset's keys, and predict_case gives
each bundle its own preset's row. Real SimpleITK / PyRadiomics; the bundle is trained by our train_bundles on a
small table of random numbers (a fixture model: what it predicts is checked against its own coefficients)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from GliomaRadiogenomicsLib.case import load_case_folder
from GliomaRadiogenomicsLib.features import extract_features, load_preset
from GliomaRadiogenomicsLib.pipeline import PipelineOptions, evaluate_case, segment_case
from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
from GliomaRadiogenomicsLib.train import train_bundles

FAST = PipelineOptions(PreprocessOptions(spacing=2.0, brain_mask="threshold"), "hyperintensity", feature_workers=1)


@pytest.fixture(scope="module")
def liu_bundle(tmp_path_factory, small_demo_dir):
    """A bundle trained on liu2024 features (names and provenance from a real liu2024 extraction on the run's
    preprocessed case and segmentation; values of the training table random), and that extraction."""
    seg = segment_case(load_case_folder(small_demo_dir), FAST)
    f = extract_features(seg.pre, seg.label, load_preset("liu2024"), 1)
    names = sorted(k for k in f.values if "_original_firstorder_" in k and k.startswith(("FLAIR_", "T1c_tumor_")))
    assert any(n.startswith("T1c_tumor_") for n in names) and any("_edema_" in n for n in names)
    rng = np.random.default_rng(4)
    df = pd.DataFrame(rng.normal(size=(60, len(names))), columns=names)
    df["case_id"] = [f"c{i}" for i in range(60)]
    df["IDH"] = (df[names[0]] + 0.5 * rng.normal(size=60) > 0).astype(int)
    (b,), _ = train_bundles(df, ["IDH"], "st", f.provenance, trained_on="fixture: random numbers", synthetic=True,
                            intended_use="test", n_bootstrap=4, repeats=1, outer_folds=3, n_jobs=1, seed=1)
    b.name = "liu2024-fixture-idh"
    out = tmp_path_factory.mktemp("presets") / "liu_idh.json"
    b.save(out)
    return out, f, seg


def test_a_bundle_of_another_preset_gets_that_presets_features(small_demo_dir, liu_bundle, bundles_at_spacing):
    from GliomaRadiogenomicsLib.bundle import load_bundle
    bundle_path, direct, _ = liu_bundle
    wang = [p for p in bundles_at_spacing(2.0) if "epilepsy" in str(p)][:1]  # a wang2025 bundle beside it
    opt = dataclasses.replace(FAST, bundles=[str(bundle_path)] + wang)
    analysis, doc = evaluate_case(load_case_folder(small_demo_dir), opt)
    # the run's own preset stays wang2025; liu2024 was extracted once, for its bundle
    assert analysis.features.provenance["preset"] == "wang2025"
    assert list(analysis.preset_features) == ["liu2024"]
    other = analysis.preset_features["liu2024"]
    assert other.provenance["preset"] == "liu2024" and other.provenance["normalization"] == "zscore"
    assert other.provenance["segmentation_source"] == analysis.features.provenance["segmentation_source"] == "automatic"
    # only the columns its bundle reads, with the numbers of extracting all of liu2024 directly on the same
    # preprocessed case and segmentation
    fixture = load_bundle(bundle_path)
    assert set(other.values) == set(fixture.features)
    assert other.provenance["columns_subset"].startswith(f"{len(fixture.features)} of ")
    a = np.array([direct.values[k] for k in sorted(other.values)], float)
    o = np.array([other.values[k] for k in sorted(other.values)], float)
    assert np.array_equal(a, o, equal_nan=True)
    # both bundles applied; the small one's probability is its own model on those features
    assert doc["IDH"]["probability"] is not None, doc["IDH"].get("reason")
    assert doc["epilepsy"]["probability"] is not None, doc["epilepsy"].get("reason")
    row = {**analysis.feature_row(), **{k: direct.values[k] for k in fixture.features}}
    want = fixture.predict_proba_row(row)["probability"]
    assert doc["IDH"]["probability"] == pytest.approx(want, abs=1e-6)
    assert any("features of preset liu2024 too" in s for s in analysis.pre.steps)
    # its bundle reads no ResNet34 column: no deep features tried, so no warning about missing ImageNet weights
    assert "deep_features" not in other.provenance and not any("resnet34" in w for w in doc["warnings"])


def test_a_bundle_whose_preset_cannot_be_made_here_refuses_naming_it(small_demo_dir, liu_bundle, tmp_path):
    """The preset file is gone: nothing is extracted for it and its bundle refuses the run's features, naming the
    preset it was trained on; a bundle that refuses the run's settings anyway (another spacing) costs no extraction.
    One run with both (test copies of the fixture bundle, the second relabelled as the epilepsy task: one bundle per
    task is applied)."""
    bundle_path, _, _ = liu_bundle
    import json
    d = json.loads(bundle_path.read_text())
    d["feature_schema"]["preset"] = str(tmp_path / "gone.yaml")
    gone = tmp_path / "gone.json"
    gone.write_text(json.dumps(d))
    d = json.loads(bundle_path.read_text())
    d["feature_schema"]["spacing_mm"] = 1.0
    d["task"] = "epilepsy"
    other = tmp_path / "spacing.json"
    other.write_text(json.dumps(d))
    analysis, doc = evaluate_case(load_case_folder(small_demo_dir),
                                  dataclasses.replace(FAST, bundles=[str(gone), str(other)]))
    assert not analysis.preset_features
    assert doc["IDH"]["probability"] is None and "gone.yaml" in doc["IDH"]["reason"]
    assert doc["epilepsy"]["probability"] is None and "spacing_mm" in doc["epilepsy"]["reason"]
    assert any(s.startswith(f"features of preset {tmp_path / 'gone.yaml'}") for s in analysis.pre.steps)
    assert any("would refuse them anyway" in s and "spacing" in s for s in analysis.pre.steps)


def test_only_the_asked_columns_are_extracted_with_the_full_extractions_values(liu_bundle):
    """extract_features(columns=...) runs only the jobs that make those columns (one sequence x region x filter
    unit each, its feature classes only) and returns exactly them, equal to the full liu2024 extraction's values
    (the reference here: its values are checked against plain PyRadiomics in test_features); names the preset does
    not make are ignored."""
    from GliomaRadiogenomicsLib.features import _filter_units, column_plan
    _, full, seg = liu_bundle
    preset = load_preset("liu2024")
    asked = ["mask_edema_original_shape_Sphericity", "T1c_tumor_original_firstorder_Median",
             "FLAIR_overall_wavelet-HLH_glcm_Correlation", "T1c_edema_log-sigma-2-0-mm-3D_glszm_ZoneEntropy",
             "T1c_edema_log-sigma-2-0-mm-3D_glcm_Idm", "not_a_liu2024_column"]
    assert set(asked[:-1]) <= set(full.values)
    plan = column_plan(preset, _filter_units(preset.params), asked)
    # 3 extraction jobs of 30 (2 sequences x 3 regions x 5 filter units: original, wavelet, LoG 1 / 2 / 3 mm), one
    # shape job of 3
    assert sorted(plan.jobs) == [("flair", "overall", 1), ("t1c", "edema", 3), ("t1c", "tumor", 0)]
    assert plan.jobs[("t1c", "edema", 3)] == ["glcm", "glszm"] and plan.shape == {"edema"}
    sub = extract_features(seg.pre, seg.label, preset, 1, columns=asked)
    assert list(sub.values) == asked[:-1]
    for k, v in sub.values.items():
        assert v == full.values[k] or (np.isnan(v) and np.isnan(full.values[k])), k
    assert sub.provenance["columns_subset"] == f"5 of {len(full.values)} columns (those asked for; values as in the full extraction)"
    assert sub.provenance["preset"] == full.provenance["preset"] and sub.provenance["settings_hash"] == full.provenance["settings_hash"]


def test_a_bundle_trained_with_roi_subregions_gets_them_inside_a_given_binary_roi(small_demo_dir, liu_bundle, tmp_path):
    """Liu's ATRX bundle was trained on manual binary masks with the weight-free core labels added inside
    (--roi-subregions). A run on a given binary ROI (a Slicer user's drawn mask, `--segmentation FILE`) gives that
    bundle's preset features made the same way, without the option: the same values as extracting liu2024 inside
    add_roi_subregions(the ROI), provenance saying so, no roi_subregions warning; the run's own segmentation and
    features stay binary-ROI ones. A bundle not trained that way gets the plain ROI."""
    import json

    import SimpleITK as sitk
    from GliomaRadiogenomicsLib.pipeline import ROI_SUBREGIONS, add_roi_subregions
    bundle_path, _, seg = liu_bundle
    d = json.loads(bundle_path.read_text())
    d["feature_schema"]["roi_subregions"] = ROI_SUBREGIONS
    d["feature_schema"]["segmentation_source"] = "given"
    # it also reads the automatic VASARI score, as the shipped Liu bundle does (computed from the labels too)
    d["features"].append("vasari_auto_score")
    d["center"].append(0.0)
    d["scale"].append(1.0)
    d["coefficients"].append(0.0)
    max(d["variables"], key=lambda v: len(v["features"]))["features"].append("vasari_auto_score")  # its score
    if isinstance(d.get("imputation"), dict):
        d["imputation"]["vasari_auto_score"] = 0.0
    with_sub = tmp_path / "liu_sub.json"
    with_sub.write_text(json.dumps(d))
    binary = sitk.Cast(seg.native > 0, sitk.sitkUInt8)          # the automatic outline as a 0/1 "manual" mask
    analysis, doc = evaluate_case(load_case_folder(small_demo_dir), dataclasses.replace(FAST, bundles=[str(with_sub)]),
                                  label=binary, label_source="a drawn mask")
    other = analysis.preset_features["liu2024"]
    assert other.provenance["roi_subregions"] == ROI_SUBREGIONS
    assert "roi_subregions" not in analysis.features.provenance
    assert set(np.unique(sitk.GetArrayFromImage(analysis.label))) == {0, 2}   # the run's segmentation: as given
    expected = extract_features(analysis.pre, add_roi_subregions(analysis.label, analysis.pre, {}),
                                load_preset("liu2024"), 1, columns=list(other.values))
    for k, v in other.values.items():
        if k.startswith("vasari_"):
            continue  # checked below
        assert v == expected.values[k] or (np.isnan(v) and np.isnan(expected.values[k])), k
    assert not any("roi-subregions" in w for w in doc["warnings"])
    # the VASARI score that bundle reads comes from the same labels (the run's own is the binary ROI's)
    from GliomaRadiogenomicsLib.vasari import vasari_features
    sub_label = add_roi_subregions(analysis.label, analysis.pre, {})
    want_vasari = vasari_features(analysis.pre, sub_label, registration=analysis.atlas_registration)["vasari_auto_score"]
    assert other.values["vasari_auto_score"] == want_vasari
    assert want_vasari != analysis.features.values["vasari_auto_score"]
    assert analysis.feature_row("liu2024")["vasari_auto_score"] == want_vasari
    assert any("got the weight-free necrosis / enhancing labels the bundle(s) trained on this preset were" in s
               for s in analysis.pre.steps)
    # the same run with the plain fixture bundle (no roi_subregions recorded): the given ROI as it is
    plain, _ = evaluate_case(load_case_folder(small_demo_dir), dataclasses.replace(FAST, bundles=[str(bundle_path)]),
                             label=binary, label_source="a drawn mask")
    assert "roi_subregions" not in plain.preset_features["liu2024"].provenance
    # the core labels change the sub-region columns the bundle reads (edema = whole tumor minus core)
    plain_values = plain.preset_features["liu2024"].values
    region_cols = [k for k in other.values if "_edema_" in k or "_tumor_" in k]
    assert region_cols and any(not np.isclose(other.values[k], plain_values[k], equal_nan=True) for k in region_cols)
