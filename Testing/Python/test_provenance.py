"""Provenance travels with every feature set and is enforced (issue 12 item 3).

Real PyRadiomics extractions on the SYNTHETIC demo case (2 mm grid, threshold brain mask, weight-free backend):
features of another preset (ucsf_pdgm vs wang2025: identical column names) or another spacing are refused by a
bundle trained on the other settings, with a message naming the difference; a segmentation-source difference is
a warning that reaches predictions.json and the screen; `predict --table` needs the table's provenance file
unless --trust-table; the cohort and batch caches are keyed on the options' hash.
"""
import dataclasses
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from GliomaRadiogenomicsLib import synthetic as S
from GliomaRadiogenomicsLib.bundle import FeatureMismatchError, load_default_bundles
from GliomaRadiogenomicsLib.case import load_case_folder
from GliomaRadiogenomicsLib.pipeline import PipelineOptions, analyze_case, run_case
from GliomaRadiogenomicsLib.predict import predict_one
from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
from GliomaRadiogenomicsLib.provenance import merge, options_hash
from GliomaRadiogenomicsLib.train import train_bundles

CLI = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli"]


def _options(preset="wang2025", spacing=2.0, **kw):
    return PipelineOptions(preprocess=PreprocessOptions(spacing=spacing, brain_mask="threshold"),
                           backend="hyperintensity", preset=preset, feature_workers=1, **kw)


@pytest.fixture(scope="module")
def wang(small_demo_dir):
    """wang2025 features inside the automatic (weight-free) segmentation."""
    return analyze_case(load_case_folder(small_demo_dir), _options("wang2025"))


@pytest.fixture(scope="module")
def ucsf(small_demo_dir):
    return analyze_case(load_case_folder(small_demo_dir), _options("ucsf_pdgm"))


def _bundle_from(analysis, columns, seed=0):
    """A real training (train_bundles) on a planted table whose columns are ``columns`` and whose provenance is the
    real extraction's: the bundle records what that extraction recorded."""
    rng = np.random.default_rng(seed)
    n = 60
    X = rng.normal(size=(n, len(columns)))
    y = (rng.random(n) < 1 / (1 + np.exp(-(2.0 * X[:, 0] - 1.5 * X[:, 1])))).astype(int)
    df = pd.DataFrame(X, columns=columns)
    df["label"], df["case_id"] = y, [f"c{i}" for i in range(n)]
    bundles, _ = train_bundles(df, ["label"], "st", analysis.features.provenance, tasks=["IDH"],
                               positive_labels=["IDH-mutant"], negative_labels=["IDH-wildtype"],
                               trained_on="planted values, provenance of a real extraction", synthetic=True,
                               intended_use="test", clinical=[], seed=1, n_bootstrap=5, repeats=1, outer_folds=2,
                               n_jobs=1)
    return bundles[0]


@pytest.fixture(scope="module")
def shared_columns(wang, ucsf):
    """T1c texture columns that both presets produce under the same name."""
    cols = [c for c in wang.features.values if c.startswith("T1c_WT_original_") and c in ucsf.features.values]
    assert len(cols) >= 10  # the presets' identical column names, the reason the settings hash must be enforced
    return cols[:8]


@pytest.fixture(scope="module")
def wang_bundle(wang, shared_columns):
    return _bundle_from(wang, shared_columns)


# ------------------------------------------------------------------------------------------------ recording
def test_feature_provenance_records_every_setting(wang):
    p = wang.features.provenance
    assert p["preset"] == "wang2025" and len(p["settings_hash"]) == 16 and p["normalization"] == "unit_clahe"
    assert p["spacing_mm"] == 2.0 and p["reference"] == "FLAIR" and p["brain_mask_method"] == "threshold"
    assert p["n4"] is False and p["registration"].startswith("rigid")
    assert p["segmentation_source"] == "automatic" and p["segmentation_backend"] == "hyperintensity"
    assert "weight-free" in p["segmentation_backend_version"]
    assert p["sequences"] == ["T1", "T1c", "T2", "FLAIR"]
    for k in ("pyradiomics_version", "simpleitk_version", "numpy_version", "glioma_radiogenomics_version"):
        assert p[k], k
    json.dumps(p)  # flat and JSON-friendly
    assert all(not isinstance(v, dict) for v in p.values())


def test_train_copies_the_full_provenance_into_the_bundle(wang, wang_bundle):
    schema = wang_bundle.feature_schema
    for k, v in wang.features.provenance.items():
        if k != "sequences":  # the bundle's sequences: those its training used (here the T1c columns)
            assert schema[k] == v, k
    assert schema["sequences"] == ["T1c"]


# ------------------------------------------------------------------------------------------------ hard: refused
def test_ucsf_pdgm_features_are_refused_by_a_wang2025_bundle(wang, ucsf, wang_bundle):
    assert wang.features.provenance["settings_hash"] != ucsf.features.provenance["settings_hash"]
    row = ucsf.feature_row()
    assert set(wang_bundle.features) <= set(row)  # every column is there: only the provenance can refuse them
    with pytest.raises(FeatureMismatchError) as exc:
        predict_one(wang_bundle, row, ucsf.features.provenance)
    msg = str(exc.value)
    assert "settings_hash" in msg and "'wang2025'" in msg and "'ucsf_pdgm'" in msg and "--preset wang2025" in msg
    assert "normalization" in msg and "'unit_clahe'" in msg and "'none'" in msg
    # the same bundle takes the features of its own settings
    res = predict_one(wang_bundle, wang.feature_row(), wang.features.provenance)
    assert 0 <= res["probability"] <= 1 and res["provenance_warnings"] == []


def test_a_spacing_difference_is_refused(small_demo_dir, ucsf):
    ucsf3 = analyze_case(load_case_folder(small_demo_dir), _options("ucsf_pdgm", spacing=3.0))
    assert ucsf3.features.provenance["spacing_mm"] == 3.0
    cols = [c for c in ucsf.features.values if c.startswith("T1c_WT_original_")][:8]
    b = _bundle_from(ucsf, cols, seed=3)  # trained on 2 mm features
    assert set(cols) <= set(ucsf3.feature_row())
    with pytest.raises(FeatureMismatchError, match=r"spacing_mm\): the model was trained with '2.0', the offered "
                                                   r"features have '3.0': re-run with --spacing 2.0"):
        predict_one(b, ucsf3.feature_row(), ucsf3.features.provenance)
    assert predict_one(b, ucsf.feature_row(), ucsf.features.provenance)["probability"] is not None


def test_mixed_table_settings_and_missing_hard_keys_are_refused(wang, wang_bundle):
    prov = wang.features.provenance
    table = merge([prov, dict(prov, spacing_mm=1.0), dict(prov, sequences=["FLAIR"])])
    assert table["spacing_mm"].startswith("mixed: ") and table["sequences"] == ["T1", "T1c", "T2", "FLAIR"]
    with pytest.raises(FeatureMismatchError, match="spacing_mm"):
        wang_bundle.check_features(wang_bundle.features, table)
    older = {k: v for k, v in prov.items() if k != "spacing_mm"}  # a table extracted before spacing was recorded
    with pytest.raises(FeatureMismatchError, match="do not record it"):
        wang_bundle.check_features(wang_bundle.features, older)
    with pytest.raises(FeatureMismatchError, match="T1c missing"):
        wang_bundle.check_features(wang_bundle.features, dict(prov, sequences=["FLAIR"]))
    with pytest.raises(FeatureMismatchError, match="PyRadiomics major version"):
        wang_bundle.check_features(wang_bundle.features, dict(prov, pyradiomics_version="v2.2.0"))


# ------------------------------------------------------------------------------------------------ soft: warned
def test_segmentation_source_difference_is_a_warning_in_predictions_json_and_on_screen(small_demo_dir, wang,
                                                                                      wang_bundle, tmp_path):
    from GliomaRadiogenomicsLib.cli import print_summary
    path = tmp_path / "bundle.json"
    wang_bundle.save(path)  # trained on automatic segmentations
    case = load_case_folder(small_demo_dir)
    doc = run_case(case, tmp_path / "out", _options("wang2025", bundles=[str(path)]), label=wang.label_native,
                   label_source="test: the automatic ROI given back as a file")
    saved = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert saved["features"]["segmentation_source"] == "given"
    assert saved["IDH"]["probability"] is not None  # soft: predicted, with the warning
    warn = [w for w in saved["warnings"] if "segmentation source differs" in w]
    assert warn and "'automatic'" in warn[0] and "'given'" in warn[0]
    assert warn[0] in saved["IDH"]["provenance_warnings"] and warn[0] in saved["IDH"]["warnings"]
    screen = io.StringIO()
    print_summary(doc, tmp_path / "out", stream=screen)
    assert "settings: " + warn[0] in screen.getvalue()


def test_shipped_bundles_warn_for_an_automatic_roi_and_refuse_other_presets(wang, ucsf):
    bundles = {b.name: b for b in load_default_bundles()}
    b = bundles["tcga-lgg-IDH-flair"]  # trained inside the manual case-folder masks, on a 1 mm grid
    at_1mm = dict(wang.features.provenance, spacing_mm=1.0)  # these 2 mm features declared at 1 mm: the soft keys
    soft = b.check_features(b.features, at_1mm)
    assert any("segmentation source differs: trained with 'given', these features 'automatic'" in w for w in soft)
    assert not any("spacing_mm" in w for w in soft)  # recorded now (1 mm): checked, not "does not record"
    with pytest.raises(FeatureMismatchError, match=r"spacing_mm\): the model was trained with '1.0', the offered "
                                                   r"features have '2.0'"):
        b.check_features(b.features, wang.features.provenance)
    with pytest.raises(FeatureMismatchError, match="settings_hash"):
        b.check_features(b.features, ucsf.features.provenance)


def test_a_shipped_tcga_bundle_refuses_features_of_a_2mm_run(small_demo_dir, tmp_path):
    """The shipped TCGA-LGG IDH bundle records the 1 mm grid of its training (scripts/build_real_bundles.py ran
    `extract` at the default --spacing 1): a 2 mm run gets no probability, and the reason names the difference."""
    import GliomaRadiogenomicsLib
    from pathlib import Path
    shipped = Path(GliomaRadiogenomicsLib.__file__).parent / "resources" / "models" / "tcga_lgg_IDH_flair.json"
    d = json.loads(shipped.read_text(encoding="utf-8"))
    assert d["feature_schema"]["spacing_mm"] == 1.0
    copy = tmp_path / shipped.name
    copy.write_text(json.dumps(d), encoding="utf-8")
    case = load_case_folder(small_demo_dir)
    doc = run_case(case, tmp_path / "out", _options("wang2025", spacing=2.0, bundles=[str(copy)]))
    saved = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert saved["features"]["spacing_mm"] == 2.0 and saved["tasks"] == ["IDH"]
    for r in (doc["IDH"], saved["IDH"]):
        assert r["probability"] is None and r["nomogram"] is None and r["label"] == "not available"
        assert r["model"]["name"] == "tcga-lgg-IDH-flair"
        reason = r["reason"]
        assert "spacing_mm" in reason and "'1.0'" in reason and "'2.0'" in reason and "--spacing 1.0" in reason, reason
    assert any("spacing_mm" in w for w in saved["warnings"])


# ------------------------------------------------------------------------------------------------ predict --table
def test_predict_table_needs_provenance_unless_trusted(wang, ucsf, wang_bundle, tmp_path):
    bundle = tmp_path / "m.json"
    wang_bundle.save(bundle)
    table = tmp_path / "t.csv"
    pd.DataFrame([wang.feature_row()]).to_csv(table, index=False)
    out = tmp_path / "pred.csv"

    def predict(*extra):
        return subprocess.run(CLI + ["predict", "--bundle", str(bundle), "--table", str(table), "--out", str(out),
                                     *extra], capture_output=True, encoding="utf-8", errors="replace", timeout=300)
    p = predict()
    assert p.returncode == 2 and "no provenance file t.provenance.json" in p.stderr and "--trust-table" in p.stderr
    assert "Traceback" not in p.stderr and not out.exists()
    p = predict("--trust-table")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "warning:" in p.stderr and "NOT checked" in p.stderr
    side = json.loads((tmp_path / "pred.warnings.json").read_text())
    assert side["trusted_without_provenance"] is True and any("NOT checked" in w for w in side["warnings"])
    assert pd.read_csv(out).probability.between(0, 1).all()
    # with the provenance of other settings beside it: refused, naming the difference (exit 2)
    (tmp_path / "t.provenance.json").write_text(json.dumps(ucsf.features.provenance))
    p = predict("--trust-table")
    assert p.returncode == 2 and "settings_hash" in p.stderr and "ucsf_pdgm" in p.stderr
    # with its own provenance: checked, no trust warning
    (tmp_path / "t.provenance.json").write_text(json.dumps(wang.features.provenance))
    p = predict()
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((tmp_path / "pred.warnings.json").read_text())["trusted_without_provenance"] is False


def test_train_without_provenance_warns_and_the_bundle_says_so(tmp_path, capsys):
    from GliomaRadiogenomicsLib.bundle import load_bundle
    from GliomaRadiogenomicsLib.cli import main
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(60, 4)), columns=[f"FLAIR_WT_original_firstorder_F{i}" for i in range(4)])
    df["label"] = (df.iloc[:, 0] + rng.normal(0, 0.5, 60) > 0).astype(int)
    df["case_id"] = [f"c{i}" for i in range(60)]
    df.to_csv(tmp_path / "t.csv", index=False)
    rc = main(["train", "--table", str(tmp_path / "t.csv"), "--label", "label", "--method", "st", "--bootstrap", "5",
               "--repeats", "1", "--folds", "2", "--jobs", "1", "--out", str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert rc == 0 and "WARNING" in err and "t.provenance.json" in err
    b = load_bundle(tmp_path / "m.json")
    assert "not recorded" in b.feature_schema["provenance"]
    soft = b.check_features(b.features, {"preset": "wang2025", "settings_hash": "x", "spacing_mm": 1.0})
    assert any("does not record preset, settings_hash, normalization, spacing_mm" in w for w in soft)
    # a table whose cases were extracted at two spacings: trained, but said loudly
    (tmp_path / "t.provenance.json").write_text(json.dumps(merge([{"preset": "wang2025", "spacing_mm": 1.0},
                                                                   {"preset": "wang2025", "spacing_mm": 2.0}])))
    rc = main(["train", "--table", str(tmp_path / "t.csv"), "--label", "label", "--method", "st", "--bootstrap", "5",
               "--repeats", "1", "--folds", "2", "--jobs", "1", "--out", str(tmp_path / "m2.json")])
    err = capsys.readouterr().err
    assert rc == 0 and "mixes cases extracted with different spacing_mm (mixed: 1.0 | 2.0)" in err


# ------------------------------------------------------------------------------------------------ caches
def test_options_hash_covers_what_changes_the_numbers():
    base = _options()
    assert options_hash(base) == options_hash(_options())
    assert options_hash(base) == options_hash(dataclasses.replace(base, feature_workers=4))  # same numbers
    others = [_options(spacing=3.0), _options("ucsf_pdgm"), dataclasses.replace(base, case_roi=True),
              dataclasses.replace(base, backend="auto"), dataclasses.replace(base, location=True),
              dataclasses.replace(base, preprocess=dataclasses.replace(base.preprocess, n4=True)),
              dataclasses.replace(base, preprocess=dataclasses.replace(base.preprocess, register=False)),
              dataclasses.replace(base, case_roi=True, roi_subregions=True)]
    hashes = {options_hash(o) for o in others}
    assert len(hashes) == len(others) and options_hash(base) not in hashes


def test_extract_cache_is_reused_with_the_same_options_and_recomputed_with_others(tmp_path):
    from GliomaRadiogenomicsLib.cohort import extract_cohort
    cohort = tmp_path / "cohort"
    S.generate_cohort(1, cohort, seed=5, downsample=3)
    out = tmp_path / "table.csv"
    opt = _options("ucsf_pdgm", spacing=3.0)
    s1 = extract_cohort(cohort, out, opt)
    assert s1["n_ok"] == 1 and s1["n_cached"] == 0
    cached = next((tmp_path / "table.csv.cases").glob("*.json"))
    first = json.loads(cached.read_text())
    assert first["_options_hash"] == options_hash(opt)
    mtime = cached.stat().st_mtime_ns
    s2 = extract_cohort(cohort, out, dataclasses.replace(opt, feature_workers=2))  # same numbers: reused
    assert s2["n_cached"] == 1 and cached.stat().st_mtime_ns == mtime
    assert json.loads((tmp_path / "table.provenance.json").read_text())["spacing_mm"] == 3.0
    other = _options("ucsf_pdgm", spacing=4.0)
    s3 = extract_cohort(cohort, out, other)  # other options: the case is analysed again
    assert s3["n_cached"] == 0
    again = json.loads(cached.read_text())
    assert again["_options_hash"] == options_hash(other) != first["_options_hash"]
    assert again["_provenance"]["spacing_mm"] == 4.0
    assert json.loads((tmp_path / "table.provenance.json").read_text())["spacing_mm"] == 4.0
    assert pd.read_csv(out)["mask_WT_original_shape_VoxelVolume"].iloc[0] != \
        first["mask_WT_original_shape_VoxelVolume"]


def test_batch_skips_only_cases_done_with_the_same_options(tmp_path):
    pytest.importorskip("slicer", reason="slicer-core is not installed (make test installs it)")
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "GliomaRadiogenomics" / "Batch"))
    import GliomaBatch as B
    opts = PreprocessOptions(spacing=3.0, brain_mask="threshold")
    key = B.batch_options_hash(opts)
    assert key == B.batch_options_hash(PreprocessOptions(spacing=3.0, brain_mask="threshold"))
    assert key != B.batch_options_hash(PreprocessOptions(spacing=2.0, brain_mask="threshold"))
    assert key != B.batch_options_hash(opts, preset="ucsf_pdgm")
    bundle = tmp_path / "b.json"
    bundle.write_text(json.dumps(load_default_bundles()[0].to_dict()))
    with_bundle = B.batch_options_hash(opts, bundles=[bundle])
    bundle.write_text(json.dumps(dict(load_default_bundles()[0].to_dict(), version="9")))  # retrained: other content
    assert B.batch_options_hash(opts, bundles=[bundle]) != with_bundle
    # a case done before: ok, its predictions.json present. Its image is not an image now, so a case that is run
    # again fails at once (observable, and no minutes of image work)
    from GliomaRadiogenomicsLib.io import output_set
    cohort, out = tmp_path / "cohort", tmp_path / "out"
    (cohort / "c1").mkdir(parents=True)
    (cohort / "c1" / "flair.nii.gz").write_bytes(b"not an image")  # a folder without an image is no case
    with output_set(out / "c1") as staging:  # the case's complete output set
        (staging / "predictions.json").write_text("{}")
    pd.DataFrame([{"case": "c1", "status": "ok", "error": "", "seconds": 12.5, "options_hash": key}]).to_csv(
        out / "batch_results.csv", index=False)
    rows = B.run_batch(cohort, out, opts)
    assert rows[0]["status"] == "ok" and rows[0]["seconds"] == 12.5  # same options: skipped
    rows = B.run_batch(cohort, out, PreprocessOptions(spacing=2.0, brain_mask="threshold"))
    assert rows[0]["status"] == "failed" and rows[0]["options_hash"] != key  # other options: run again
    saved = pd.read_csv(out / "batch_results.csv", dtype={"options_hash": str})
    assert saved.options_hash[0] == B.batch_options_hash(PreprocessOptions(spacing=2.0, brain_mask="threshold"))


# ------------------------------------------------------------------------------------------------ Slicer logic
def test_slicer_logic_tells_automatic_edited_and_given_segmentations(mrml, small_demo_dir):
    import SimpleITK as sitk
    from GliomaMRML.convert import label_image_to_segmentation_node, segmentation_node_to_label_image
    from GliomaMRML.logic import (GliomaPredictLogic, GliomaSegmentLogic, load_case_folder_into_scene,
                                  reference_node, segmentation_provenance)
    scene = mrml.scene
    scene.Clear(0)
    nodes, clinical, _ = load_case_folder_into_scene(scene, small_demo_dir)
    popt = PreprocessOptions(spacing=3.0, brain_mask="threshold")
    seg = GliomaSegmentLogic(scene).segment(nodes, backend="hyperintensity", preprocess_options=popt)
    ref = reference_node(nodes)
    label = segmentation_node_to_label_image(seg, ref)
    origin = segmentation_provenance(seg, label)
    assert origin["segmentation_source"] == "automatic" and origin["segmentation_backend"] == "hyperintensity"
    doc, _, _ = GliomaPredictLogic(scene).predict(nodes, seg, clinical, preset="ucsf_pdgm", preprocess_options=popt)
    assert doc["features"]["segmentation_source"] == "automatic"
    assert doc["features"]["segmentation_backend"] == "hyperintensity"
    # the user edits it (half of the tumor erased, in the same node): edited, the backend it started from kept
    arr = sitk.GetArrayFromImage(label)
    arr[: arr.shape[0] // 2] = 0
    edited = sitk.GetImageFromArray(arr)
    edited.CopyInformation(label)
    label_image_to_segmentation_node(edited, scene, "Glioma segmentation", ref, seg)
    after = segmentation_provenance(seg, segmentation_node_to_label_image(seg, ref))
    assert after["segmentation_source"] == "edited" and after["segmentation_backend"] == "hyperintensity"
    # a segmentation the logic did not make (the user's own, loaded or drawn; here the same labels): given
    own = label_image_to_segmentation_node(label, scene, "user's segmentation", ref)
    assert segmentation_provenance(own, segmentation_node_to_label_image(own, ref)) == {"segmentation_source": "given"}


def test_a_segmentation_file_declares_its_origin_beside_it(tmp_path):
    """The `segment` command writes segmentation.provenance.json (backend + digest of its labels) beside its
    output; `run --segmentation` reads it: automatic while the file is untouched (after a real NIfTI round trip),
    edited once its labels change, given without a record."""
    import numpy as np
    import SimpleITK as sitk
    from GliomaRadiogenomicsLib.cli import segmentation_origin
    from GliomaRadiogenomicsLib.io import InputError, read_image, write_image
    from GliomaRadiogenomicsLib.provenance import segmentation_origin_record
    arr = np.zeros((20, 30, 40), np.uint8)
    arr[5:10, 10:20, 10:30] = 2
    label = sitk.GetImageFromArray(arr)
    label.SetSpacing((0.9375, 0.9375, 4.8333333))
    label.SetOrigin((-120.123456789, 7.1, 3.3))
    seg = tmp_path / "segmentation.nii.gz"
    write_image(label, seg)
    assert segmentation_origin(seg, read_image(seg, label=True)) is None  # nothing declared: "given"
    (tmp_path / "segmentation.provenance.json").write_text(json.dumps(segmentation_origin_record(
        {"segmentation_source": "automatic", "segmentation_backend": "lgg-unet2d",
         "segmentation_backend_version": "weights abc"}, label)))
    assert segmentation_origin(seg, read_image(seg, label=True)) == {
        "segmentation_source": "automatic", "segmentation_backend": "lgg-unet2d",
        "segmentation_backend_version": "weights abc"}
    arr[6, 12, 12] = 0  # one voxel edited
    edited = sitk.GetImageFromArray(arr)
    edited.CopyInformation(label)
    write_image(edited, seg)
    assert segmentation_origin(seg, read_image(seg, label=True))["segmentation_source"] == "edited"
    (tmp_path / "segmentation.provenance.json").write_text(json.dumps({"segmentation_source": "manual"}))
    with pytest.raises(InputError, match="segmentation.provenance.json: segmentation_source must be"):
        segmentation_origin(seg, edited)


def test_roi_subregions_is_a_soft_setting_and_travels_with_a_written_segmentation(tmp_path):
    """Features made with --roi-subregions and without differ in their core regions: a bundle trained one way warns
    on the other (absent = none; bundles and runs that never made them stay silent); the record travels through
    segmentation.provenance.json into a later `run --segmentation`."""
    import numpy as np
    import SimpleITK as sitk
    from GliomaRadiogenomicsLib.cli import segmentation_origin
    from GliomaRadiogenomicsLib.io import read_image, write_image
    from GliomaRadiogenomicsLib.pipeline import ROI_SUBREGIONS, segmentation_record
    from GliomaRadiogenomicsLib.provenance import compare
    base = {"preset": "liu2024", "settings_hash": "h", "segmentation_source": "given"}
    made = {**base, "roi_subregions": ROI_SUBREGIONS}
    def about_it(want, have):
        hard, soft = compare("m", want, have)
        assert not hard
        return [w for w in soft if "roi-subregions" in w]
    assert about_it(base, base) == [] and about_it(made, made) == []
    for want, have in ((made, base), (base, made)):
        (w,) = about_it(want, have)
        assert "differs" in w and "'none'" in w, w
    # a run on the automatic segmentation: its backend draws the core labels, so a bundle trained on a given ROI
    # with --roi-subregions does not warn about them (the segmentation source / backend keys speak for it)
    auto = {**base, "segmentation_source": "automatic"}
    assert about_it(made, auto) == [] and about_it(made, {**auto, "segmentation_source": "edited"}) == []
    assert any("segmentation source differs" in w for w in compare("m", made, auto)[1])
    # a given ROI with its own core labels: compared (and named) as such against a bundle that recorded its own
    # core labels; silent against a bundle that recorded none
    from GliomaRadiogenomicsLib.provenance import GIVEN_SUBREGIONS
    labelled = {**base, "roi_subregions": GIVEN_SUBREGIONS}
    (w,) = about_it(made, labelled)
    assert f"'{GIVEN_SUBREGIONS}'" in w and "'none'" not in w, w
    assert about_it(base, labelled) == [] and about_it(labelled, labelled) == []
    arr = np.zeros((10, 12, 14), np.uint8)
    arr[3:6, 4:8, 4:9] = 2
    arr[4, 5, 5] = 3
    label = sitk.GetImageFromArray(arr)
    seg = tmp_path / "segmentation.nii.gz"
    write_image(label, seg)
    (tmp_path / "segmentation.provenance.json").write_text(json.dumps(segmentation_record(
        {"segmentation_source": "given", "roi_subregions": ROI_SUBREGIONS}, label)))
    assert segmentation_origin(seg, read_image(seg, label=True)) == {"segmentation_source": "given",
                                                                     "roi_subregions": ROI_SUBREGIONS}


def test_inputs_bias_corrected_before_they_reached_us_count_as_n4():
    """UCSF-PDGM's '_bias' files are N4-corrected already: a bundle trained on such images (n4: true) is silent on
    features from them made without --n4 (correcting twice is what it used to ask for), and says so when only some
    of its sequences were corrected; a bundle trained without N4 is told the inputs were corrected."""
    from GliomaRadiogenomicsLib.provenance import compare
    base = {"preset": "ucsf_pdgm", "settings_hash": "h", "n4": False}
    n4_trained = {**base, "n4": True, "sequences": ["T1c"]}
    plain = {**base, "n4": False}

    def about_n4(want, have, needed=None):
        return [w for w in compare("m", want, have, needed)[1] if "N4" in w]

    assert len(about_n4(n4_trained, base)) == 1                                  # no N4 anywhere: warned
    assert about_n4(n4_trained, {**base, "n4_input": ["T1c"]}) == []             # corrected upstream: silent
    assert about_n4(n4_trained, {**base, "n4_input": ["T1c"]}, ["T1c"]) == []
    (w,) = about_n4(n4_trained, {**base, "n4_input": ["FLAIR"]}, ["T1c", "FLAIR"])
    assert "bias-corrected already: FLAIR" in w
    (w,) = about_n4(plain, {**base, "n4_input": ["T1c"]})                        # trained without, given corrected
    assert "trained with 'False'" in w and "bias-corrected already: T1c" in w
    assert about_n4(plain, base) == []
    # trained on files corrected upstream (no N4 of ours): warned on raw inputs, silent on corrected ones
    upstream_trained = {**plain, "n4_input": ["T1c"], "sequences": ["T1c"]}
    (w,) = about_n4(upstream_trained, base)
    assert "trained with 'input files bias-corrected already: T1c'" in w and "these features 'False'" in w
    assert about_n4(upstream_trained, {**base, "n4": True}) == []
    # a table of cases: only the sequences corrected upstream in every case count
    from GliomaRadiogenomicsLib.provenance import merge
    assert merge([{**base, "n4_input": ["T1c", "FLAIR"]}, {**base, "n4_input": ["FLAIR", "T1c"]}])["n4_input"] == \
        ["T1c", "FLAIR"]
    assert merge([{**base, "n4_input": ["T1c"]}, {**base, "n4_input": ["FLAIR"]}]).get("n4_input") is None
    assert merge([{**base, "n4_input": ["T1c"]}, base]).get("n4_input") is None
