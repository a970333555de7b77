"""One answer everywhere (issue 18 item 1), on a real TCGA-LGG case (../shared/data; skipped with a reason when
absent): a run's own segmentation fed back (CLI `run --segmentation`, the Slicer / web Predict on the segment logic's
node) reproduces the run exactly, because the working-grid labels and the preprocessing are kept with it (kept.py);
an edit on the native grid changes only the working-grid voxels under it; N4 leaves the segmentation alone unless
asked. One CLI run is shared by the module; one lgg-unet2d fold network keeps it fast (the path is under test)."""
import itertools
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

pytestmark = pytest.mark.realdata
CLI = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli"]
CASE = "TCGA-CS-4942"        # FLAIR + T1 + T1c, 6.5 mm FLAIR slices (working grid 1 mm); conftest.LGG_THREE_SEQUENCES
FAST = ["--workers", "1", "--unet-folds", "0"]


def _cli(*args):
    p = subprocess.run(CLI + list(args), capture_output=True, encoding="utf-8", errors="replace", timeout=1200)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def _features(out):
    row = pd.read_csv(out / "features.csv").iloc[0]
    return {k: v for k, v in row.items() if isinstance(v, (int, float, np.number)) and k not in ("age",)}


def _probabilities(doc):
    return {t: doc[t]["probability"] for t in doc["tasks"]}


def _assert_same_features(a: dict, b: dict):
    assert set(a) == set(b)
    x = {k: np.nan if a[k] is None else float(a[k]) for k in a}
    y = {k: np.nan if b[k] is None else float(b[k]) for k in b}
    differ = [k for k in x if not (np.isnan(x[k]) and np.isnan(y[k])) and not abs(x[k] - y[k]) <= 1e-9]
    assert not differ, f"{len(differ)} of {len(a)} features differ, e.g. {differ[:5]}"


@pytest.fixture(scope="module")
def case_dir(lgg_three_sequence_run):
    return lgg_three_sequence_run[0]


@pytest.fixture(scope="module")
def first_run(lgg_three_sequence_run):
    """`run --case-dir CASE --workers 1 --unet-folds 0` (conftest: shared with test_realdata_lgg)."""
    return lgg_three_sequence_run[1]


def test_own_output_fed_back_gives_the_same_answer(case_dir, first_run, tmp_path):
    for name in ("segmentation.work.nii.gz", "segmentation.brain_mask.work.nii.gz", "segmentation.preprocessing.json",
                 "segmentation.provenance.json"):
        assert (first_run / name).is_file(), name          # kept in the output set
    assert set(json.loads((first_run / ".complete.json").read_text())["files"]) >= {"segmentation.work.nii.gz"}
    out = tmp_path / "again"
    _cli("run", "--case-dir", str(case_dir), "--segmentation", str(first_run / "segmentation.nii.gz"), "--out",
         str(out), *FAST)
    _assert_same_features(_features(first_run), _features(out))
    a, b = (json.loads((d / "predictions.json").read_text()) for d in (first_run, out))
    assert _probabilities(a) == _probabilities(b)
    assert a["segmentation"]["volumes_ml"] == b["segmentation"]["volumes_ml"]
    prov = json.loads((out / "features.provenance.json").read_text())
    assert prov["segmentation_grid"] == "working grid kept"
    assert prov["segmentation_source"] == "automatic"       # the digest beside the file: untouched
    # named as what it is in steps and the report: the automatic segmentation, reviewed (not "user-supplied")
    assert prov["segmentation"].startswith("automatic segmentation (lgg-unet2d), reviewed without edits"), \
        prov["segmentation"]
    assert prov["preprocessing"].startswith("reused")        # no registration, no brain extraction
    # the same working-grid labels and native segmentation again
    for name in ("segmentation.work.nii.gz", "segmentation.nii.gz"):
        x, y = (sitk.GetArrayFromImage(sitk.ReadImage(str(d / name))) for d in (first_run, out))
        assert np.array_equal(x, y), name
    assert b["timings_s"]["preprocess_s"] < a["timings_s"]["preprocess_s"] / 3


def _case_and_options(case_dir, **pre):
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.pipeline import PipelineOptions
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    return load_case_folder(case_dir), PipelineOptions(preprocess=PreprocessOptions(**pre),
                                                       backend_options={"unet_folds": "0"})


def _erase_native_voxels(native: sitk.Image, n=40):
    """Erase the first ``n`` tumour voxels of a native segmentation (what the Segment Editor's eraser does on the
    native grid) -> (the edited native image, the erased voxel indices (k, j, i))."""
    arr = sitk.GetArrayFromImage(native)
    erased = np.argwhere(arr > 0)[:n]                          # each native voxel 0.94 x 0.94 x 6.5 mm
    arr[tuple(erased.T)] = 0
    edited = sitk.GetImageFromArray(arr)
    edited.CopyInformation(native)
    return edited, erased


def _edit_in_place(folder, n=40):
    """``folder``/segmentation.nii.gz edited in place (_erase_native_voxels)."""
    edited, erased = _erase_native_voxels(sitk.ReadImage(str(folder / "segmentation.nii.gz")), n)
    sitk.WriteImage(edited, str(folder / "segmentation.nii.gz"))
    return edited, erased


def _nearest_native(grid, native, kji):
    """Each working-grid voxel's nearest native voxel(s), from physical coordinates (independent of kept.py): two
    where a coordinate falls on a tie between native voxels (ITK's resampler may round either way there)."""
    D, sp, org = (np.array(grid.GetDirection()).reshape(3, 3), np.array(grid.GetSpacing()), np.array(grid.GetOrigin()))
    Dn, spn, orgn = (np.array(native.GetDirection()).reshape(3, 3), np.array(native.GetSpacing()),
                     np.array(native.GetOrigin()))
    phys = org + (D @ (kji[:, ::-1] * sp).T).T
    c = (np.linalg.inv(Dn) @ (phys - orgn).T).T / spn
    up, down = np.floor(c + 0.5).astype(int), np.floor(c).astype(int)
    tie = np.abs(c - np.floor(c) - 0.5) < 1e-6
    return [{tuple(np.where(np.array(pick), d, u)[::-1]) for pick in itertools.product(*[(0, 1) if x else (0,)
                                                                                         for x in t])}
            for u, d, t in zip(up, down, tie)]


def _assert_changed_only_under(before: sitk.Image, after: sitk.Image, native: sitk.Image, erased):
    """``after`` (working-grid labels) differs from ``before`` only where the nearest native voxel was erased; the
    working-grid voxels surely under an erased native voxel are erased, those surely apart are unchanged."""
    from GliomaRadiogenomicsLib.kept import same_grid
    assert same_grid(before, after)
    b, a = sitk.GetArrayFromImage(before), sitk.GetArrayFromImage(after)
    changed = np.argwhere(b != a)
    assert len(changed) > 0
    erased_set = {tuple(v) for v in erased}
    assert all(cands & erased_set for cands in _nearest_native(before, native, changed))   # nothing else changed
    labelled = np.argwhere(b > 0)
    cands = _nearest_native(before, native, labelled)
    under = np.array([c <= erased_set for c in cands])                        # surely under an erased voxel
    apart = np.array([not (c & erased_set) for c in cands])                   # surely not
    assert under.any() and (a[tuple(labelled[under].T)] == 0).all()          # the erased ones are erased
    assert (a[tuple(labelled[apart].T)] == b[tuple(labelled[apart].T)]).all()


def test_an_edit_changes_only_the_voxels_under_it(case_dir, first_run, tmp_path):
    """Erase a few tumour voxels of the native segmentation (what the Segment Editor does): the working-grid labels
    change only where their nearest native voxel was erased; everything else is the kept labels."""
    from GliomaRadiogenomicsLib.cli import segmentation_origin
    from GliomaRadiogenomicsLib.kept import Kept
    from GliomaRadiogenomicsLib.pipeline import segment_case
    edit = tmp_path / "edit"
    shutil.copytree(first_run, edit)
    edited, erased = _edit_in_place(edit)
    assert segmentation_origin(edit / "segmentation.nii.gz", edited)["segmentation_source"] == "edited"

    case, opt = _case_and_options(case_dir)
    kept = Kept.beside(edit / "segmentation.nii.gz")
    seg = segment_case(case, opt, label=edited, label_source="edited", kept=kept)
    assert seg.provenance["segmentation_grid"].startswith("edited on native grid: 40 native voxels changed")
    assert seg.pre.reused
    _assert_changed_only_under(kept.work_label, seg.label, edited, erased)


def test_cli_run_on_an_edited_segmentation_changes_only_what_the_edit_touches(case_dir, first_run, tmp_path):
    """The same edit through the CLI (`run --segmentation <the edited native file>`, its kept files beside it): the
    working-grid labels the run keeps (what its features saw) differ from the first run's only under the erased
    native voxels, the preprocessing is reused, and the features move."""
    edit = tmp_path / "edit"
    shutil.copytree(first_run, edit)
    edited, erased = _edit_in_place(edit)
    out = tmp_path / "edited-run"
    _cli("run", "--case-dir", str(case_dir), "--segmentation", str(edit / "segmentation.nii.gz"), "--out", str(out),
         *FAST)
    prov = json.loads((out / "features.provenance.json").read_text())
    assert prov["segmentation_grid"].startswith("edited on native grid: 40 native voxels changed"), \
        prov["segmentation_grid"]
    assert prov["segmentation_source"] == "edited" and prov["preprocessing"].startswith("reused")
    before, after = (sitk.ReadImage(str(d / "segmentation.work.nii.gz")) for d in (first_run, out))
    _assert_changed_only_under(before, after, edited, erased)
    a, b = _features(first_run), _features(out)
    assert set(a) == set(b)
    moved = [k for k in a if not (pd.isna(a[k]) and pd.isna(b[k])) and not abs(float(a[k]) - float(b[k])) <= 1e-9]
    assert moved, "an edit of 40 tumour voxels moved no feature"
    # the native segmentation written (the working-grid labels brought back to native) is the edited one, but for
    # native voxels next to an erased one: a 0.94 mm native voxel may take the label of a 1 mm working voxel whose
    # nearest native voxel is its neighbour, so the edit's border can move by one native voxel, never further
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "segmentation.nii.gz")))
    differ = np.argwhere(written != sitk.GetArrayFromImage(edited))
    print(f"edited run: {len(differ)} native voxels differ from the edited input, {len(erased)} erased")
    assert all((np.abs(erased - v).max(axis=1) <= 1).any() for v in differ), "the native output moved away from the edit"


def test_n4_leaves_the_segmentation_alone_unless_asked(case_dir, first_run):
    from GliomaRadiogenomicsLib.kept import Kept
    from GliomaRadiogenomicsLib.pipeline import segment_case
    case, opt = _case_and_options(case_dir, n4=True)
    kept = Kept.beside(first_run / "segmentation.nii.gz")  # the same transforms and brain mask (N4 comes after)
    seg = segment_case(case, opt, kept=kept)
    assert seg.pre.reused and seg.provenance["n4_segmentation"] is False
    assert np.array_equal(sitk.GetArrayFromImage(seg.label), sitk.GetArrayFromImage(kept.work_label))
    ref = seg.pre.reference
    corrected, plain = seg.pre.images[ref], seg.pre.for_segmentation(False).images[ref]
    assert not np.array_equal(sitk.GetArrayViewFromImage(corrected), sitk.GetArrayViewFromImage(plain))  # features
    assert seg.pre.for_segmentation(True).images[ref] is corrected                  # --n4-segmentation
    assert any("segmentation sees the images without it" in s for s in seg.pre.steps)


def test_slicer_and_web_predict_on_the_unedited_segmentation_equal_the_cli(mrml, case_dir, first_run):
    """The web app's Segment then Predict (and Slicer's "Run again"): the segment logic keeps the working-grid labels
    and preprocessing with the node; the predict logic on the unedited node gives the CLI run's features and
    probabilities, without registering or extracting the brain again."""
    from GliomaMRML.logic import GliomaPredictLogic, GliomaSegmentLogic, kept_from_node, load_case_folder_into_scene
    nodes, clinical, case_id = load_case_folder_into_scene(mrml.scene, case_dir)
    seg = GliomaSegmentLogic(mrml.scene).segment(nodes, backend_options={"unet_folds": "0"})
    assert kept_from_node(seg) is not None
    logic = GliomaPredictLogic(mrml.scene)
    doc, _, _ = logic.predict(nodes, seg, clinical)
    cli_doc = json.loads((first_run / "predictions.json").read_text())
    assert _probabilities(doc) == _probabilities(cli_doc)
    analysis = logic.last_analysis
    assert analysis.pre.reused and analysis.segmentation_provenance["segmentation_grid"] == "working grid kept"
    assert analysis.features.provenance["segmentation_source"] == "automatic"
    cli = _features(first_run)
    mine = {k: v for k, v in analysis.feature_row().items() if k in cli}
    _assert_same_features(cli, mine)


def test_web_app_segment_and_predict_on_the_real_case_equal_the_cli(case_dir, first_run, tmp_path):
    """The web app itself (Web/GliomaWeb/app.py, driven in this process through its handlers, its state and its
    background jobs on an asyncio loop, as test_web_upload drives it; no browser): load the case folder, Segment
    (the CLI run's model: auto with one lgg-unet2d fold, `--unet-folds 0`), Predict with the clinical fields
    case.json prefilled (the CLI run's clinical values): the predictions.json it serves has the CLI run's
    probabilities and volumes, its features equal the CLI's to 1e-9, and Predict reused Segment's preprocessing. Its
    results card shows the real bundles' model cards (calibration, metrics at the cutoffs of the training folds)."""
    pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (make test installs it)")
    import time
    from trame.app import get_server
    from GliomaWeb.app import GliomaWebApp
    from test_report_status import card_texts
    from test_web_upload import run_job

    t0 = time.perf_counter()
    app = GliomaWebApp(get_server("glioma-web-round-trip", client_type="vue3"), work_dir=tmp_path / "web",
                       backend_options={"unet_folds": "0"})
    cli_doc = json.loads((first_run / "predictions.json").read_text())
    s = app.state
    app.load_case(str(case_dir))
    assert app.case_id == cli_doc["case"]["id"] == CASE and s.glioma_volume_loaded, s.glioma_status
    assert (s.glioma_age, s.glioma_sex) == ("44", "F"), (s.glioma_age, s.glioma_sex)   # from case.json
    t1 = time.perf_counter()
    run_job(app, app.segment)
    assert "segmentation ready" in s.glioma_status and "lgg-unet2d" in s.glioma_status, s.glioma_status
    t2 = time.perf_counter()
    run_job(app, app.predict)
    assert app.last_document is not None, s.glioma_status
    t3 = time.perf_counter()
    doc = json.loads((app.work / "predictions.json").read_text())      # what the page links to
    assert doc["case"]["clinical"] == cli_doc["case"]["clinical"]
    assert _probabilities(doc) == _probabilities(cli_doc)
    assert doc["segmentation"]["volumes_ml"] == cli_doc["segmentation"]["volumes_ml"]
    analysis = app.last_analysis
    assert analysis.pre.reused and analysis.segmentation_provenance["segmentation_grid"] == "working grid kept"
    assert analysis.features.provenance["segmentation_source"] == "automatic"
    assert s.glioma_reuse.startswith("Segmentation automatic (lgg-unet2d); preprocessing reused from Segment"), \
        s.glioma_reuse
    cli = _features(first_run)
    _assert_same_features(cli, {k: v for k, v in analysis.feature_row().items() if k in cli})
    # the results card: each real model's card as its bundle records it
    cards = {r["task"]: dict(r["model_card"]) for r in s.glioma_results}
    real = [t for t in doc["tasks"] if doc[t]["probability"] is not None and not doc[t]["model"]["synthetic"]
            and "calibration_cv" in doc[t]["model"]["metrics"]]
    assert real, "no real model with a recorded calibration was applied"
    for t in real:
        for field, want in card_texts(doc[t]["model"]["metrics"], doc[t]["cutoff"]).items():
            assert want in cards[t][field], (t, field, cards[t][field])
    print(f"web round trip: app {t1 - t0:.1f} s + load, Segment {t2 - t1:.1f} s, Predict {t3 - t2:.1f} s")


def test_slicer_run_again_without_edits_equals_the_cli(mrml, case_dir, first_run, tmp_path):
    """Slicer's "Run again" (GliomaRadiogenomicsWidget.onRun / onJobDone; the Qt widget cannot run here, these are the
    Logic calls it makes, in its order): the CLI run's outputs loaded into a real MRML scene as the module loads a
    finished run (Logic.finish: segmentation node with its kept working-grid labels and preprocessing), then
    Logic.start with that segmentation, unedited: the child process gets the volumes, the segmentation and the kept
    files in its inputs/ folder and runs `run`; its features equal the CLI run's to 1e-9, its probabilities are the
    same, and it neither registers nor extracts the brain again."""
    import time
    from GliomaMRML.logic import GliomaRadiogenomicsLogic, kept_from_node, load_case_folder_into_scene, reference_node
    nodes, clinical, _ = load_case_folder_into_scene(mrml.scene, case_dir)
    logic = GliomaRadiogenomicsLogic(mrml.scene)
    seg, _, _, _ = logic.finish(first_run, reference_node(nodes), None, nodes=nodes)      # after the first run
    assert kept_from_node(seg) is not None
    out = tmp_path / "run-again"
    t = time.perf_counter()
    job = logic.start(nodes, out, clinical, segmentation_node=seg, extra_args=FAST, python=sys.executable)
    assert logic.run_segmentation is seg
    for name in ("segmentation.nrrd", "segmentation.work.nii.gz", "segmentation.brain_mask.work.nii.gz",
                 "segmentation.preprocessing.json", "segmentation.provenance.json"):
        assert (out / "inputs" / name).is_file(), name        # what the child process is given
    st = job.wait(timeout=1200)
    assert st.returncode == 0 and st.error is None, st.error
    print(f"Slicer run again: {time.perf_counter() - t:.1f} s")
    prov = json.loads((out / "features.provenance.json").read_text())
    assert prov["segmentation_grid"] == "working grid kept", prov["segmentation_grid"]
    assert prov["segmentation_source"] == "automatic" and prov["preprocessing"].startswith("reused")
    _assert_same_features(_features(first_run), _features(out))
    a, b = (json.loads((d / "predictions.json").read_text()) for d in (first_run, out))
    assert _probabilities(a) == _probabilities(b)
    assert a["segmentation"]["volumes_ml"] == b["segmentation"]["volumes_ml"]
    for name in ("segmentation.work.nii.gz", "segmentation.nii.gz"):
        x, y = (sitk.GetArrayFromImage(sitk.ReadImage(str(d / name))) for d in (first_run, out))
        assert np.array_equal(x, y), name
    # and the finished run loads back onto the same node (the user's segmentation is not duplicated)
    seg2, doc2, _, _ = logic.finish(out, reference_node(nodes), logic.run_segmentation, nodes=nodes)
    assert seg2 is seg and _probabilities(doc2) == _probabilities(a)


def test_slicer_predict_on_an_edited_node_changes_only_what_the_edit_touches(mrml, case_dir, first_run):
    """The same edit on the segmentation node (the CLI run loaded as the module loads a finished run, then 40 native
    voxels erased on the node itself, its kept labels and preprocessing left with it): the Predict logic (the web
    app's Predict, Slicer's Predict module) uses the kept working-grid labels but for the voxels under the edit,
    reuses the preprocessing, and the features move."""
    from GliomaMRML.convert import label_image_to_segmentation_node, segmentation_node_to_label_image
    from GliomaMRML.logic import GliomaPredictLogic, GliomaRadiogenomicsLogic, kept_from_node, \
        load_case_folder_into_scene, reference_node
    nodes, clinical, _ = load_case_folder_into_scene(mrml.scene, case_dir)
    ref = reference_node(nodes)
    seg, _, _, _ = GliomaRadiogenomicsLogic(mrml.scene).finish(first_run, ref, None, nodes=nodes)
    kept = kept_from_node(seg)
    edited, erased = _erase_native_voxels(segmentation_node_to_label_image(seg, ref))
    label_image_to_segmentation_node(edited, mrml.scene, seg.GetName(), ref, node=seg)   # the edit, on the node
    assert np.array_equal(sitk.GetArrayFromImage(segmentation_node_to_label_image(seg, ref)),
                          sitk.GetArrayFromImage(edited))
    logic = GliomaPredictLogic(mrml.scene)
    logic.predict(nodes, seg, clinical)
    analysis = logic.last_analysis
    grid = analysis.segmentation_provenance["segmentation_grid"]
    assert grid.startswith("edited on native grid: 40 native voxels changed"), grid
    assert analysis.pre.reused and analysis.features.provenance["segmentation_source"] == "edited"
    _assert_changed_only_under(kept.work_label, analysis.label, edited, erased)
    cli = _features(first_run)
    mine = {k: v for k, v in analysis.feature_row().items() if k in cli}
    moved = [k for k in cli if not (pd.isna(cli[k]) and pd.isna(mine[k])) and
             not abs(float(cli[k]) - float(mine[k])) <= 1e-9]
    assert moved, "an edit of 40 tumour voxels moved no feature"


def test_registration_is_reproducible_to_the_last_bit(shared_data):
    """Two registrations of the same real images give the same transform to the last bit (the kept preprocessing
    makes the round trip exact; this makes two fresh runs, e.g. the CLI's and the web app's Segment, agree too).
    With the metric multithreaded, four runs of TCGA-CS-4942's T1 onto its FLAIR gave four transforms."""
    from GliomaRadiogenomicsLib.preprocess import register_rigid
    case = shared_data / "cohorts" / "tcga-lgg" / "cases" / CASE
    fixed, moving = (sitk.ReadImage(str(case / f"{s}.nii.gz")) for s in ("flair", "t1"))
    runs = {tuple(register_rigid(fixed, moving)[0].GetParameters()) for _ in range(3)}
    assert len(runs) == 1, runs
