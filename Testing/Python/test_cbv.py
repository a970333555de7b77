"""DSC perfusion input (issue 17 item 3): a CBV map as an optional fifth image, registered to the reference and
normalised to contralateral normal-appearing white matter (rCBV); the shim2021 preset on rCBV in CE / NE.

The phantom: the SYNTHETIC case of synthetic.py (3 mm template, native T1 / T1c / T2 / FLAIR) plus a CBV map drawn
from the same truth: CBV = 1 in white matter, 2.5 in grey matter, 0 in CSF, 2 in the enhancing tumour (label 3),
1.2 in the non-enhancing region (label 2), 0.3 in necrosis; times an arbitrary scanner scale (37), on a coarse grid
(3 x 3 x 5 mm) and moved by a known rigid transform (4-5 degrees, 4-6 mm), so that registration has work to do."""
import copy

import numpy as np
import pytest
import SimpleITK as sitk
from radiomics import featureextractor

from GliomaRadiogenomicsLib import synthetic as S
from GliomaRadiogenomicsLib.io import InputError, read_image

CBV_SCALE = 37.0
TRUE_CBV = {"wm": 1.0, "gm": 2.5, 1: 0.3, 2: 1.2, 3: 2.0}
SPEC = S.TumorSpec(center_mm=(-30.0, -28.0, 14.0), radius_mm=22.0, necrosis_fraction=0.2, enhancing_thickness=0.5,
                   edema_factor=1.8, seed=5)


def cbv_truth(anatomy, label):
    tissue = anatomy.wm * TRUE_CBV["wm"] + anatomy.gm * TRUE_CBV["gm"]
    cbv = np.where(label == 0, tissue, 0.0)
    for value in (1, 2, 3):
        cbv[label == value] = TRUE_CBV[value]
    return cbv.astype(np.float32)


def cbv_motion(center):
    t = sitk.Euler3DTransform()
    t.SetCenter(tuple(float(c) for c in center))
    t.SetRotation(*np.deg2rad([4.0, -3.0, 5.0]).tolist())
    t.SetTranslation((5.0, -4.0, 6.0))
    return t


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    """A case folder: flair / t1 / t1c / t2, cbv.nii.gz, a decoy cbv_mask.nii.gz, the truth label.nii.gz (FLAIR
    grid); returns (folder, CBV motion transform)."""
    an = S.load_anatomy(3)
    truth, label = S.simulate_truth(SPEC, an)
    rng = np.random.default_rng(3)
    images, lab_nat, icv = S.acquire(truth, label, an, rng, {k: (3.0, 3.0, 3.0) for k in S.DEFAULT_SPACING})
    d = tmp_path_factory.mktemp("cbv_case")
    S.SyntheticCase("cbv-phantom", images, lab_nat, icv).save(d)
    (d / "brain_mask.nii.gz").unlink()
    src = sitk.GetImageFromArray(cbv_truth(an, label))
    src.CopyInformation(an.reference)
    ref = images["flair"]
    center = ref.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in ref.GetSize()])
    motion = cbv_motion(center)
    grid = sitk.Image([int(np.ceil(n * s / t)) for n, s, t in zip(ref.GetSize(), ref.GetSpacing(), (3, 3, 5))],
                      sitk.sitkFloat32)
    grid.SetSpacing((3.0, 3.0, 5.0))
    grid.SetOrigin(ref.GetOrigin())
    grid.SetDirection(ref.GetDirection())
    cbv = sitk.Resample(src, grid, motion, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    a = sitk.GetArrayFromImage(cbv) * CBV_SCALE
    a = np.clip(a + rng.normal(0, 0.02 * CBV_SCALE, a.shape) * (a > 0), 0, None).astype(np.float32)
    out = sitk.GetImageFromArray(a)
    out.CopyInformation(cbv)
    sitk.WriteImage(out, str(d / "cbv.nii.gz"))
    decoy = sitk.Cast(out > CBV_SCALE * 1.5, sitk.sitkUInt8)   # a label map named like the CBV: never an image
    sitk.WriteImage(decoy, str(d / "cbv_mask.nii.gz"))
    return d, motion


@pytest.fixture(scope="module")
def analysis(phantom_dir):
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.pipeline import PipelineOptions, analyze_case
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    d, _ = phantom_dir
    case = load_case_folder(d)
    opt = PipelineOptions(preprocess=PreprocessOptions(spacing=3.0, brain_mask="threshold"), preset="shim2021",
                          feature_workers=1)
    return analyze_case(case, opt, label=read_image(d / "label.nii.gz", "truth", label=True), label_source="truth")


def test_case_folder_finds_cbv_and_sets_the_cbv_mask_aside(phantom_dir):
    from GliomaRadiogenomicsLib.inputs import classify_name, scan_case_folder
    d, _ = phantom_dir
    found = scan_case_folder(d)
    assert found.sequences["cbv"] == d / "cbv.nii.gz"
    assert d / "cbv_mask.nii.gz" in found.masks and d / "label.nii.gz" in found.masks
    assert [classify_name(n) for n in ("rCBV.nii.gz", "nrCBV_map.nrrd", "perfusion_CBV.nii", "dsc-cbv.nii.gz",
                                       "relCBV.nii.gz")] == ["cbv"] * 5
    assert [classify_name(n) for n in ("cbv_mask.nii.gz", "rcbv_seg.nii.gz", "ep2d_perf.nii.gz", "dsc.nii.gz",
                                       "cbf.nii.gz", "brain_volume.nii.gz")] == [None] * 6


def test_dicom_cbv_series_is_recognised():
    """DICOM discovery: a series described as rCBV, or with CBV in its ImageType, is the CBV map; the raw DSC series
    is not (and not a T1 either)."""
    from pathlib import Path
    from GliomaRadiogenomicsLib.inputs import DicomSeries, classify_dicom

    def series(description, image_type="ORIGINAL\\PRIMARY\\M", te="35", tr="1500"):
        return DicomSeries(Path("."), "1.2.3", [], description, {"0008|103e": description, "0008|0008": image_type,
                                                                  "0018|0081": te, "0018|0080": tr})
    assert classify_dicom(series("rCBV leakage corrected")) == "cbv"
    assert classify_dicom(series("Perfusion_Weighted", "DERIVED\\PRIMARY\\RCBV")) == "cbv"
    assert classify_dicom(series("ep2d_perf")) is None
    assert classify_dicom(series("t1_mprage", te="3")) == "t1"


def test_cbv_on_a_structural_grid_uses_that_sequences_transform(phantom_dir):
    """A CBV map exported on the T1's voxel grid (same session) is not registered on its own: the T1's transform."""
    from GliomaRadiogenomicsLib.case import load_case
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions, preprocess
    d, _ = phantom_dir
    case = load_case({"flair": d / "flair.nii.gz", "t1": d / "t1.nii.gz", "cbv": d / "cbv.nii.gz"})
    t1 = case.images["t1"]
    case.images["cbv"] = sitk.Resample(case.images["cbv"], t1, sitk.Transform(), sitk.sitkLinear, 0.0)
    pre = preprocess(case, PreprocessOptions(spacing=3.0, brain_mask="threshold"))
    assert pre.transforms["cbv"] is pre.transforms["t1"] and "cbv" not in pre.registration_metric
    assert any(s.startswith("cbv: shares the t1 voxel grid") for s in pre.steps)
    assert "cbv" in pre.images and "cbv" not in (pre.uncorrected or {})


def test_cli_cbv_argument_is_read(phantom_dir, tmp_path):
    from GliomaRadiogenomicsLib.cli import _load_case_from_args, build_parser
    d, _ = phantom_dir
    args = build_parser().parse_args(["run", "--flair", str(d / "flair.nii.gz"), "--cbv", str(d / "cbv.nii.gz"),
                                      "--out", str(tmp_path / "o")])
    case = _load_case_from_args(args)
    assert case.sequences == ["flair", "cbv"] and case.paths["cbv"] == str((d / "cbv.nii.gz").resolve())
    with pytest.raises(InputError, match="label map"):  # the decoy mask given as the CBV map
        _load_case_from_args(build_parser().parse_args(["run", "--flair", str(d / "flair.nii.gz"), "--cbv",
                                                        str(d / "cbv_mask.nii.gz"), "--out", str(tmp_path / "o")]))


def test_cbv_is_registered_within_a_voxel(analysis, phantom_dir):
    """The registration's transform (reference -> CBV) against the known motion: every brain voxel lands within
    a working-grid voxel (3 mm) of where it belongs, 1 mm on average."""
    _, motion = phantom_dir
    pre = analysis.pre
    tx, truth = pre.transforms["cbv"], motion.GetInverse()
    brain = np.argwhere(sitk.GetArrayViewFromImage(pre.brain_mask) > 0)[::50]
    pts = [pre.grid.TransformIndexToPhysicalPoint([int(i) for i in p[::-1]]) for p in brain]
    err = np.array([np.linalg.norm(np.subtract(tx.TransformPoint(p), truth.TransformPoint(p))) for p in pts])
    assert err.max() < 3.0 and err.mean() < 1.0, (err.mean(), err.max())
    assert any("cbv: rigid registration to flair" in s for s in pre.steps)


def test_rcbv_is_one_in_contralateral_white_matter(analysis):
    """rCBV divides by the contralateral normal-appearing WM: the scanner scale is gone (reference mean ~ 37 x 1),
    the enhancing tumour reads ~2 and the provenance records the normalisation."""
    from GliomaRadiogenomicsLib.perfusion import REFERENCE_REGION, _physical_x, reference_region
    pre, lab = analysis.pre, analysis.label
    rec = analysis.features.provenance["rcbv_reference"]
    assert analysis.features.provenance["rcbv_normalization"] == REFERENCE_REGION
    assert rec["tumour_side"] == "right"  # centre x = -30 mm (LPS): the patient's right
    assert rec["volume_ml"] > 20 and rec["wm_sequence"] == "t1"
    ref, _ = reference_region(pre, lab)
    x = _physical_x(pre.grid)
    assert (x[ref] > rec["midline_x_mm"] + 5).all()   # the patient's left (+x in LPS): contralateral to the tumour
    an = S.load_anatomy(3)
    wm_img = sitk.GetImageFromArray(an.wm)
    wm_img.CopyInformation(an.reference)
    wm = sitk.GetArrayFromImage(sitk.Resample(wm_img, pre.grid, sitk.Transform(), sitk.sitkLinear, 0.0))
    assert wm[ref].mean() > 0.85, wm[ref].mean()   # the region is white matter (ICBM152 probability)
    # the scanner scale is gone: WM = 1 in the phantom, + grey-matter partial volume of the 5 mm CBV slices
    assert 0.95 < rec["mean_cbv"] / CBV_SCALE < 1.3, rec
    rcbv = pre.array("rcbv")
    assert abs(rcbv[ref].mean() - 1.0) < 1e-6
    et = sitk.GetArrayViewFromImage(lab) == 3
    et_cbv = np.median(rcbv[et]) * rec["mean_cbv"] / CBV_SCALE   # back to the phantom's units: ET = 2
    assert abs(et_cbv - 2.0) < 0.25 and np.median(rcbv[et]) > 1.3, (et_cbv, np.median(rcbv[et]))


def test_shim2021_on_rcbv_equals_pyradiomics(analysis):
    """The shim2021 preset's values (CE = label 3, NE = label 2) equal plain PyRadiomics execute() on the same
    whole rCBV image and region masks, 1e-9 relative."""
    from GliomaRadiogenomicsLib.features import expected_columns, load_preset
    from GliomaRadiogenomicsLib.regions import region_image
    preset = load_preset("shim2021")
    ours = analysis.features.values
    assert analysis.features.provenance["sequences"] == ["rCBV"]
    ref = {}
    for region in ("CE", "NE"):
        mask = region_image(analysis.label, region)
        r = featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(preset.params)).execute(
            analysis.pre.images["rcbv"], mask)
        for k, v in r.items():
            if not k.startswith("diagnostics_"):
                ref[f"mask_{region}_{k}" if "_shape_" in k else f"rCBV_{region}_{k}"] = float(v)
    assert set(ours) == set(ref) == set(expected_columns(preset)) and len(ref) == 2 * 851
    worst = max(abs(ours[k] - v) / max(abs(v), 1e-12) for k, v in ref.items())
    assert worst <= 1e-9, worst
    assert ours["rCBV_CE_original_firstorder_Median"] > ours["rCBV_NE_original_firstorder_Median"] + 0.3


def test_without_cbv_the_shim_preset_names_the_missing_map(phantom_dir):
    from GliomaRadiogenomicsLib.case import load_case
    from GliomaRadiogenomicsLib.pipeline import PipelineOptions, analyze_case
    d, _ = phantom_dir
    case = load_case({s: d / f"{s}.nii.gz" for s in ("t1", "t1c", "t2", "flair")})
    with pytest.raises(InputError, match=r"needs a DSC-perfusion CBV map .* no CBV: give --cbv FILE"):
        analyze_case(case, PipelineOptions(preset="shim2021"))


def test_slicer_logic_takes_the_cbv_map(mrml, phantom_dir):
    """The Slicer modules (GliomaMRML logic, real MRML): the case folder's CBV map becomes a volume node, is
    recognised by name for the CBV selector, and reaches the core case."""
    from GliomaMRML.logic import assign_volumes_by_name, case_from_nodes, load_case_folder_into_scene
    d, _ = phantom_dir
    nodes, _, case_id = load_case_folder_into_scene(mrml.scene, d)
    assert nodes["cbv"] is not None and nodes["cbv"].GetName() == f"{case_id} cbv"
    assert assign_volumes_by_name(mrml.scene, {"cbv": None})["cbv"] is not None
    case = case_from_nodes(nodes)
    assert case.sequences == ["t1", "t1c", "t2", "flair", "cbv"]
    assert np.allclose(sitk.GetArrayViewFromImage(case.images["cbv"]),
                       sitk.GetArrayViewFromImage(sitk.ReadImage(str(d / "cbv.nii.gz"))), atol=1e-4)


@pytest.fixture(scope="module")
def shim_bundles(tmp_path_factory):
    """A recurrence bundle and a Cox-LASSO survival bundle trained by the CLI on SYNTHETIC rCBV feature tables whose
    columns and provenance are those of real shim2021 rCBV features (recurrence.synthetic_recurrence_table)."""
    import json
    from GliomaRadiogenomicsLib import recurrence as R
    from GliomaRadiogenomicsLib.cli import main
    d = tmp_path_factory.mktemp("shim_bundles")
    df, prov = R.synthetic_recurrence_table(n=80, seed=4, effect=1.5)
    df.to_csv(d / "rec.csv", index=False)
    (d / "rec.provenance.json").write_text(json.dumps(prov))
    assert main(["train", "--method", "shim-recurrence", "--table", str(d / "rec.csv"), "--label", "distant_recurrence", "--out", str(d / "rec.json"),
                 "--repeats", "1", "--folds", "3", "--n-features", "4", "--inner-folds", "2"]) == 0
    rng = np.random.default_rng(2)
    risk = df[R.PLANTED[0][0]].to_numpy()
    t = rng.exponential(1000 * np.exp(-(risk - risk.mean()) / risk.std()))
    os_df = df.drop(columns=[c for c in df.columns if c not in ("case_id",) and not c.startswith("rCBV_")])
    os_df["os_days"], os_df["death"] = t.round(1), (rng.random(len(t)) < 0.7).astype(int)
    os_df.to_csv(d / "os.csv", index=False)
    (d / "os.provenance.json").write_text(json.dumps(prov))
    assert main(["train", "--method", "cox-lasso", "--table", str(d / "os.csv"), "--time", "os_days", "--event",
                 "death", "--repeats", "1", "--folds", "3", "--inner-folds", "3", "--out", str(d / "os.json")]) == 0
    return d / "rec.json", d / "os.json"


def test_run_shows_the_shim_tasks_when_a_cbv_map_is_present(phantom_dir, analysis, shim_bundles, tmp_path, capsys):
    """`run --bundle rec.json --bundle os.json` with the default preset (wang2025): the run extracts the shim2021
    rCBV features once more and applies both bundles; the numbers equal the bundles applied to the shim2021-preset
    analysis of the same case (the reference path); marked SYNTHETIC. Without a CBV map: not computed, with the
    reason, never a substitute."""
    import json
    import shutil

    import pandas as pd
    from GliomaRadiogenomicsLib import recurrence as R
    from GliomaRadiogenomicsLib import survival as SV
    from GliomaRadiogenomicsLib.cli import main
    d, _ = phantom_dir
    rec, os_ = shim_bundles
    common = ["--segmentation", str(d / "label.nii.gz"), "--spacing", "3", "--brain-mask", "threshold",
              "--bundle", str(rec), "--bundle", str(os_)]
    assert main(["run", "--case-dir", str(d), "--out", str(tmp_path / "with")] + common) == 0
    doc = json.loads((tmp_path / "with" / "predictions.json").read_text())
    assert doc["schema_version"] == 2 and "shim2021" not in doc  # the list's key since schema version 2
    from GliomaRadiogenomicsLib.predict import validate_predictions
    validate_predictions(doc)  # the entries as the run writes them pass the schema check
    got = {e["kind"]: e for e in doc["bundle_tasks"]}
    table = pd.DataFrame([analysis.features.values])
    want_p = R.predict_recurrence(R.load_recurrence_bundle(rec), table, analysis.features.provenance)
    assert abs(got["recurrence"]["probability"] - want_p["probability"][0]) < 1e-9
    want_r = SV.bundle_risk(SV.load_survival_bundle(os_), analysis.features.values)
    assert abs(got["survival"]["risk_score"] - want_r["risk_score"]) < 1e-9
    assert got["survival"]["risk_group"] == want_r["risk_group"]
    assert all(e["synthetic"] and not e.get("reason") for e in got.values())
    out = capsys.readouterr().out
    assert "recurrence pattern (Shim 2021): probability" in out and "[SYNTHETIC-trained]" in out
    page = (tmp_path / "with" / "report.html").read_text()  # the report's Shim table (render.shim_rows)
    assert "Shim 2021 tasks (DSC perfusion)" in page and "SYNTHETIC model" in page and "risk score " in page
    # the model cards of both tasks, from what their bundles record (render.shim_card_rows)
    import html
    rec_b, os_b = R.load_recurrence_bundle(rec), SV.load_survival_bundle(os_)
    cards = page[page.index("Model cards</h2>"):]
    ci = os_b["metrics"]["cindex_cv_95ci_bootstrap"]
    assert (f"<th>C-index (95% CI)</th><td>{os_b['metrics']['cindex_cv']:.2f} (95% CI {ci[0]:.2f}-{ci[1]:.2f}, "
            "case bootstrap)</td>") in cards
    ci = rec_b["metrics"]["auc_cv_95ci"]
    assert f"<th>AUC (95% CI)</th><td>{rec_b['metrics']['auc_cv']:.2f} (95% CI {ci[0]:.2f}-{ci[1]:.2f}, DeLong)" \
        in cards
    assert f"<th>Intended use</th><td>{html.escape(rec_b['intended_use'])}</td>" in cards
    assert cards.count("[SYNTHETIC: demonstration only]") >= 2
    # the same case without its CBV map
    nocbv = tmp_path / "nocbv"
    shutil.copytree(d, nocbv, ignore=shutil.ignore_patterns("cbv*"))
    assert main(["run", "--case-dir", str(nocbv), "--out", str(tmp_path / "without")]
                + [str(nocbv / "label.nii.gz") if a == str(d / "label.nii.gz") else a for a in common]) == 0
    doc = json.loads((tmp_path / "without" / "predictions.json").read_text())
    assert len(doc["bundle_tasks"]) == 2
    validate_predictions(doc)  # not computed, with the reason in the warnings
    for e in doc["bundle_tasks"]:
        assert "CBV map" in e["reason"] and e.get("probability") is None and e.get("risk_score") is None
    assert "not computed: needs a CBV map" in (tmp_path / "without" / "report.html").read_text()


def test_slicer_predict_logic_puts_the_shim_rows_into_the_scene(mrml, phantom_dir, shim_bundles):
    """GliomaPredict's logic (real MRML): the Shim bundle paths go through evaluate_case like a run's --bundle, and
    the predictions table node gets a row per Shim task (render.shim_rows) with the SYNTHETIC mark."""
    from GliomaMRML.convert import label_image_to_segmentation_node
    from GliomaMRML.logic import GliomaPredictLogic, load_case_folder_into_scene, reference_node
    from GliomaRadiogenomicsLib.io import read_image
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    d, _ = phantom_dir
    nodes, clinical, _ = load_case_folder_into_scene(mrml.scene, d)
    seg = label_image_to_segmentation_node(read_image(d / "label.nii.gz", "label", label=True), mrml.scene,
                                           "phantom truth", reference_node(nodes))
    logic = GliomaPredictLogic(mrml.scene)
    doc, table, _ = logic.predict(nodes, seg, clinical, bundles=list(shim_bundles),
                                  preprocess_options=PreprocessOptions(spacing=3.0, brain_mask="threshold"))
    assert [e["kind"] for e in doc["bundle_tasks"]] == ["recurrence", "survival"]
    t = table.GetTable()
    rows = [[t.GetColumn(j).GetValue(i) for j in range(t.GetNumberOfColumns())] for i in range(t.GetNumberOfRows())]
    shim = [r for r in rows if r[0].endswith("(Shim 2021)")]
    assert len(shim) == 2 and shim[0][1].startswith("probability ") and shim[1][1].startswith("risk score ")
    assert all("SYNTHETIC model" in r[2] and r[7].startswith("YES") for r in shim)


def test_web_takes_shim_bundles(shim_bundles, tmp_path, monkeypatch):
    """`web --bundle rec.json --bundle os.json`: the Shim bundles pass the upfront check (shim.load_json_bundle)
    and reach the app, which hands them to evaluate_case; a broken bundle still fails before the server starts.
    Only the server start is replaced (it would block)."""
    from GliomaRadiogenomicsLib import cli
    served = {}
    monkeypatch.setattr(cli, "_import_web_app", lambda: lambda case, port, **kw: served.update(kw))
    assert cli.main(["web", "--bundle", str(shim_bundles[0]), "--bundle", str(shim_bundles[1])]) == 0
    assert served["bundles"] == [str(shim_bundles[0]), str(shim_bundles[1])]
    broken = tmp_path / "broken.json"
    from GliomaRadiogenomicsLib.recurrence import RECURRENCE_FORMAT
    broken.write_text(f'{{"format": "{RECURRENCE_FORMAT}"}}')  # a recurrence bundle without its model
    served.clear()
    assert cli.main(["web", "--bundle", str(broken)]) == 2 and not served


def _shim_kinds_computed(doc) -> list:
    return [e["kind"] for e in doc["bundle_tasks"] if not e.get("reason")]


def test_slicer_workflow_logic_passes_the_bundles_and_the_cbv_map(mrml, phantom_dir, shim_bundles, tmp_path):
    """The workflow module (GliomaRadiogenomics): its parameter node's "Model bundles" field (bundle_paths: files
    separated by ;) goes through GliomaRadiogenomicsLogic.start to the child `run` as --bundle, with the CBV volume
    node written beside the other volumes (--cbv): the Shim 2021 tasks are computed and land in the table node."""
    from GliomaMRML.convert import label_image_to_segmentation_node
    from GliomaMRML.logic import GliomaRadiogenomicsLogic, bundle_paths, load_case_folder_into_scene, reference_node
    from GliomaRadiogenomicsLib.io import read_image
    d, _ = phantom_dir
    nodes, clinical, _ = load_case_folder_into_scene(mrml.scene, d)
    seg = label_image_to_segmentation_node(read_image(d / "label.nii.gz", "label", label=True), mrml.scene,
                                           "phantom truth", reference_node(nodes))
    logic = GliomaRadiogenomicsLogic(mrml.scene)
    assert bundle_paths(" ; ") is None
    job = logic.start(nodes, tmp_path / "wf", clinical, segmentation_node=seg,
                      bundles=bundle_paths(f" {shim_bundles[0]} ;{shim_bundles[1]}; "),
                      extra_args=["--spacing", "3", "--brain-mask", "threshold", "--workers", "1"])
    st = job.wait(timeout=600)
    assert st.returncode == 0 and st.error is None, st.error
    assert (tmp_path / "wf" / "inputs" / "cbv.nrrd").is_file()
    _, doc, table, _ = logic.finish(tmp_path / "wf", reference_node(nodes), logic.run_segmentation, nodes=nodes)
    assert _shim_kinds_computed(doc) == ["recurrence", "survival"]
    t = table.GetTable()
    tasks = [t.GetColumn(0).GetValue(i) for i in range(t.GetNumberOfRows())]
    assert tasks[-2:] == ["recurrence pattern (Shim 2021)", "overall survival (Shim 2021)"]


def test_web_app_takes_a_cbv_map_file_and_shows_the_shim_rows(phantom_dir, analysis, shim_bundles, tmp_path):
    """The web app (trame-slicer in this process: its own Load and Predict, no browser): a case folder without a
    CBV map plus the CBV field -> the map reaches the core run (evaluate_case) and the Shim 2021 rows have numbers,
    equal to the bundles applied to the shim2021 analysis of the same case; the same folder without the field ->
    the rows say why they are not computed."""
    pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (make test installs it)")
    import asyncio
    import shutil

    import pandas as pd
    from trame.app import get_server
    from GliomaMRML.convert import label_image_to_segmentation_node
    from GliomaMRML.logic import reference_node
    from GliomaRadiogenomicsLib import recurrence as R
    from GliomaRadiogenomicsLib.render import shim_rows
    from GliomaWeb.app import GliomaWebApp
    d, _ = phantom_dir
    case = tmp_path / "case"
    shutil.copytree(d, case, ignore=shutil.ignore_patterns("cbv*"))
    app = GliomaWebApp(get_server("glioma-web-cbv", client_type="vue3"), work_dir=tmp_path / "web", spacing=3.0,
                       brain_mask="threshold", bundles=[str(b) for b in shim_bundles])

    def predict():
        app.segmentation = label_image_to_segmentation_node(read_image(case / "label.nii.gz", "label", label=True),
                                                            app.scene, "phantom truth", reference_node(app.nodes))
        app.last_document = None

        async def drive():
            app.predict()
            await asyncio.sleep(0.1)
            while app.state.glioma_busy:
                await asyncio.sleep(0.2)
        asyncio.run(drive())
        assert app.last_document is not None, app.state.glioma_status
        return app.last_document

    app.state.glioma_cbv_path = str(d / "cbv.nii.gz")
    app.load_case(str(case))
    assert app.nodes["cbv"] is not None and app.state.glioma_cbv_path == "", app.state.glioma_status
    assert app.state.glioma_sequences == "Sequences: T1, T1c, T2, FLAIR; CBV map: cbv.nii.gz"
    doc = predict()
    assert _shim_kinds_computed(doc) == ["recurrence", "survival"]
    want = R.predict_recurrence(R.load_recurrence_bundle(shim_bundles[0]), pd.DataFrame([analysis.features.values]),
                                analysis.features.provenance)
    assert abs(doc["bundle_tasks"][0]["probability"] - want["probability"][0]) < 1e-6
    assert [r["result"] for r in app.state.glioma_shim] == [r.result_text for r in shim_rows(doc)]
    assert app.state.glioma_shim_title == "Shim 2021 tasks (DSC perfusion)"
    app.load_case(str(case))  # the CBV field was for that load only
    assert app.nodes["cbv"] is None and "no CBV map" in app.state.glioma_sequences
    doc = predict()
    assert _shim_kinds_computed(doc) == [] and all("needs a CBV map" in e["reason"] for e in doc["bundle_tasks"])
    assert all(r["result"].startswith("not computed: needs a CBV map") for r in app.state.glioma_shim)
