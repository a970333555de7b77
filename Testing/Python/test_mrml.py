"""The Slicer modules' conversions and Logic against real MRML (slicer-core: scene, volume, segmentation, table and
plot nodes). Nothing of MRML is mocked; only the desktop GUI is absent here."""
import json

import numpy as np
import pytest
import SimpleITK as sitk


def _oblique_image(dtype=np.float32):
    rng = np.random.default_rng(0)
    img = sitk.GetImageFromArray(rng.random((12, 14, 16)).astype(dtype) * 100)
    img.SetSpacing((0.9, 1.1, 2.5))
    img.SetOrigin((12.0, -30.0, 5.0))
    c, s = np.cos(0.3), np.sin(0.3)
    img.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, -1.0))  # oblique, and k runs towards inferior
    return img


def test_volume_round_trip_keeps_voxels_and_geometry(mrml):
    from GliomaMRML.convert import sitk_to_volume_node, volume_node_to_sitk
    img = _oblique_image()
    node = sitk_to_volume_node(img, mrml.scene, "oblique")
    back = volume_node_to_sitk(node)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(img))
    assert np.allclose(back.GetSpacing(), img.GetSpacing()) and np.allclose(back.GetOrigin(), img.GetOrigin())
    assert np.allclose(back.GetDirection(), img.GetDirection())
    # orientation: MRML's IJK-to-RAS gives, for a voxel, the LPS point of SimpleITK with x and y negated
    import vtk
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    ras = m.MultiplyPoint((3, 5, 7, 1))[:3]
    lps = img.TransformIndexToPhysicalPoint((3, 5, 7))
    assert np.allclose(ras, (-lps[0], -lps[1], lps[2]))


def test_volume_read_by_slicer_equals_simpleitk(mrml, small_demo_dir):
    """A file read by Slicer's own reader (storage node) converts to what SimpleITK reads from the same file."""
    from GliomaMRML.convert import volume_node_to_sitk
    path = str(small_demo_dir / "t1c.nii.gz")
    vol = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    sn = mrml.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    sn.SetFileName(path)
    assert sn.ReadData(vol)
    ours, ref = volume_node_to_sitk(vol), sitk.ReadImage(path)
    assert np.array_equal(sitk.GetArrayViewFromImage(ours), sitk.GetArrayViewFromImage(ref))
    assert np.allclose(ours.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    assert np.allclose(ours.GetDirection(), ref.GetDirection(), atol=1e-5)
    assert np.allclose(ours.GetSpacing(), ref.GetSpacing(), atol=1e-5)


def test_parent_transform_is_applied(mrml):
    import vtk
    from GliomaMRML.convert import sitk_to_volume_node, volume_node_to_sitk
    img = _oblique_image()
    node = sitk_to_volume_node(img, mrml.scene, "moved")
    tnode = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    m = vtk.vtkMatrix4x4()
    m.SetElement(0, 3, 10.0)  # 10 mm towards Right... in RAS: +x = right-to-left is -x in LPS
    tnode.SetMatrixTransformToParent(m)
    node.SetAndObserveTransformNodeID(tnode.GetID())
    back = volume_node_to_sitk(node)
    assert np.allclose(np.array(back.GetOrigin()) - img.GetOrigin(), (-10.0, 0.0, 0.0))


def test_segmentation_round_trip_with_named_coloured_segments(mrml):
    from GliomaMRML.convert import (BRATS_SEGMENTS, label_image_to_segmentation_node,
                                    segmentation_node_to_label_image, sitk_to_volume_node)
    ref_img = _oblique_image()
    ref = sitk_to_volume_node(ref_img, mrml.scene, "reference")
    lab = np.zeros((12, 14, 16), np.uint8)
    lab[3:9, 4:10, 4:12] = 2
    lab[4:8, 5:9, 6:10] = 3
    lab[5:7, 6:8, 7:9] = 1
    label = sitk.GetImageFromArray(lab)
    label.CopyInformation(ref_img)
    seg = label_image_to_segmentation_node(label, mrml.scene, "Glioma segmentation", ref)
    s = seg.GetSegmentation()
    assert s.GetNumberOfSegments() == 3
    for value, (name, color) in BRATS_SEGMENTS.items():
        segment = s.GetSegment(s.GetSegmentIdBySegmentName(name))
        assert segment is not None and np.allclose(segment.GetColor(), color)
    back = segmentation_node_to_label_image(seg, ref)
    assert np.array_equal(sitk.GetArrayFromImage(back), lab)
    assert np.allclose(back.GetDirection(), ref_img.GetDirection())
    assert seg.CreateClosedSurfaceRepresentation()  # the converter rules are registered: 3D display works


@pytest.fixture(scope="module")
def scene_case(mrml, small_demo_dir):
    """The SYNTHETIC demo case loaded into the scene with Slicer's reader; clinical data from its case.json."""
    nodes = {}
    for s in ("t1", "t1c", "t2", "flair"):
        vol = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", s)
        sn = mrml.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        sn.SetFileName(str(small_demo_dir / f"{s}.nii.gz"))
        sn.ReadData(vol)
        nodes[s] = vol
    return nodes


@pytest.fixture(scope="module")
def predicted(mrml, scene_case, bundles_at_spacing):
    """At 2 mm with test copies of the shipped bundles declared at 2 mm (the shipped ones record 1 mm: refused)."""
    from GliomaMRML.logic import GliomaPredictLogic, GliomaSegmentLogic
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    opts = PreprocessOptions(spacing=2.0, brain_mask="threshold")
    # the weight-free model: these tests are about the Slicer logic, not the network (auto would run the BraTS 2017
    # cascade on this 4-sequence case: a minute of CPU; brats17 and the auto choice have their own tests)
    seg = GliomaSegmentLogic(mrml.scene).segment(scene_case, backend="hyperintensity", preprocess_options=opts)
    logic = GliomaPredictLogic(mrml.scene)
    doc, table, charts = logic.predict(scene_case, seg, {"age": 61, "sex": "F"}, preprocess_options=opts,
                                       synthetic_case=True, bundles=bundles_at_spacing(2.0))
    return seg, logic, doc, table, charts


def test_segment_logic_gives_segments_on_the_flair_volume(mrml, predicted, scene_case, small_demo_dir):
    from GliomaMRML.convert import label_image_to_segmentation_node, segmentation_node_to_label_image
    from GliomaMRML.logic import GliomaSegmentLogic
    from GliomaRadiogenomicsLib.regions import dice_per_region
    seg = predicted[0]
    names = {seg.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(seg.GetSegmentation().GetNumberOfSegments())}
    assert names == {"necrosis", "edema", "enhancing"}
    lab = segmentation_node_to_label_image(seg, scene_case["flair"])
    assert sitk.GetArrayViewFromImage(lab).any()
    # the demo's true label map (written by SyntheticCase.save as label.nii.gz; always present: no silent skip)
    truth = sitk.ReadImage(str(small_demo_dir / "label.nii.gz"))
    truth = sitk.Resample(truth, lab, sitk.Transform(), sitk.sitkNearestNeighbor, 0, truth.GetPixelID())
    t, a = sitk.GetArrayFromImage(truth), sitk.GetArrayFromImage(lab)
    assert set(np.unique(t)) == {0, 1, 2, 3}
    d = dice_per_region(a, t)
    assert d["WT"] > 0.6, d
    # Logic.dice against the truth as a segmentation node (Slicer's own labelmap -> segment conversion), checked
    # against a plain numpy Dice of the same arrays (written out here, not the package's dice function)
    truth_node = label_image_to_segmentation_node(truth, mrml.scene, "demo truth", scene_case["flair"])
    got = GliomaSegmentLogic.dice(seg, truth_node, scene_case["flair"])
    for region, labels in (("WT", (1, 2, 3)), ("TC", (1, 3)), ("ET", (3,))):
        x, y = np.isin(a, labels), np.isin(t, labels)
        assert got[region] == pytest.approx(2 * (x & y).sum() / (x.sum() + y.sum()), abs=1e-4), region
    assert got["WT"] < 0.999  # a real comparison, not a segmentation with itself


def test_table_and_plot_nodes_from_a_real_prediction(predicted):
    seg, logic, doc, table, charts = predicted
    from GliomaRadiogenomicsLib.predict import validate_predictions
    validate_predictions(doc)
    assert table.GetNumberOfRows() == 3 and table.GetNumberOfColumns() >= 7
    cols = [table.GetColumnName(j) for j in range(table.GetNumberOfColumns())]
    assert {"task", "probability", "label", "trained on", "synthetic"} <= set(cols)
    tasks = [table.GetCellText(i, cols.index("task")) for i in range(3)]
    assert tasks == ["IDH", "epilepsy", "ATRX"]
    assert all("SYNTHETIC" in table.GetCellText(i, cols.index("trained on")) or
               table.GetCellText(i, cols.index("synthetic")).startswith("YES") or
               "TCGA-LGG" in table.GetCellText(i, cols.index("trained on")) for i in range(3))
    for t in tasks:
        p = float(table.GetCellText(tasks.index(t), cols.index("probability")))
        assert p == pytest.approx(doc[t]["probability"], abs=1e-3)
        chart = charts[t]  # the nomogram: Points, one axis per variable, Total points, Probability + this case
        nomo = doc[t]["nomogram"]
        assert chart.GetNumberOfPlotSeriesNodes() == len(nomo["axes"]) + 4
        case = chart.GetNthPlotSeriesNode(chart.GetNumberOfPlotSeriesNodes() - 1)
        assert case.GetName() == "This case"
        case_table = case.GetTableNode().GetTable()
        total = case_table.GetValueByName(case_table.GetNumberOfRows() - 2, "points").ToDouble()
        assert total == pytest.approx(nomo["total_points"], abs=1e-6)
    # the widgets' "Nomogram:" selector (test_nomogram_selector.py): one choice per task, in the document's order,
    # each a plot chart of the scene drawing that task's nomogram, labelled SYNTHETIC (the test bundles are)
    from GliomaMRML.logic import nomogram_choices
    from GliomaRadiogenomicsLib.nomogram import rows
    choices = nomogram_choices(doc, charts)
    assert [c.title for c in choices] == tasks == doc["tasks"]
    assert [c.label for c in choices] == [f"{t} - SYNTHETIC model" for t in tasks]
    for c in choices:
        chart = c.chart.GetScene().GetNodeByID(c.chart.GetID())
        assert chart is c.chart and chart.IsA("vtkMRMLPlotChartNode") and chart.GetName() == f"{c.title} nomogram"
        series = [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]
        assert [s.GetName().split(" - OUT OF RANGE")[0] for s in series] == \
            [r["title"] for r in rows(doc[c.title]["nomogram"])] + ["This case"]


def test_edited_roi_is_what_the_prediction_uses(mrml, predicted, scene_case, bundles_at_spacing):
    """Erase the enhancing segment (an 'edit') and predict again: volumes and features follow the edit."""
    seg, logic, doc, _, _ = predicted
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    edited = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "edited")
    edited.Copy(seg)
    s = edited.GetSegmentation()
    s.RemoveSegment(s.GetSegmentIdBySegmentName("enhancing"))
    doc2, _, _ = logic.predict(scene_case, edited, {"age": 61, "sex": "F"},
                               preprocess_options=PreprocessOptions(spacing=2.0, brain_mask="threshold"),
                               synthetic_case=True, bundles=bundles_at_spacing(2.0))
    assert doc2["case"]["synthetic"] is True
    assert doc2["segmentation"]["volumes_ml"]["ET"] == 0 < doc["segmentation"]["volumes_ml"]["ET"]
    assert any(abs(doc2[t]["probability"] - doc[t]["probability"]) > 1e-6 for t in doc["tasks"])


def test_report_saved_from_the_logic(predicted, tmp_path):
    logic = predicted[1]
    p = logic.save_report(tmp_path / "report.html")
    html = p.read_text()
    assert "SYNTHETIC" in html and "not diagnoses" in html


def test_background_run_keeps_polling_and_loads_outputs(mrml, scene_case, tmp_path, bundles_at_spacing):
    """The one-button workflow in a background process: poll() never blocks, progress rises, outputs load."""
    import time
    from GliomaMRML.logic import GliomaRadiogenomicsLogic
    logic = GliomaRadiogenomicsLogic(mrml.scene)
    out = tmp_path / "run"
    job = logic.start(scene_case, out, {"age": 50, "sex": "M"},
                      extra_args=["--spacing", "2", "--brain-mask", "threshold", "--workers", "1",
                                  "--backend", "hyperintensity"] +
                      [a for b in bundles_at_spacing(2.0) for a in ("--bundle", b)])
    seen, slowest = [], 0.0
    while True:
        t = time.perf_counter()
        st = job.poll()
        slowest = max(slowest, time.perf_counter() - t)
        seen.append(st.progress)
        if not st.running:
            break
        time.sleep(0.1)
    assert st.returncode == 0 and st.error is None, st.error
    assert slowest < 0.5 and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    seg, doc, table, charts = logic.finish(out, scene_case["flair"])
    assert table.GetNumberOfRows() == 3 and set(charts) == {"IDH", "epilepsy", "ATRX"}
    assert all(doc[t]["probability"] is not None for t in doc["tasks"])  # the 2 mm test copies were applied
    assert seg.GetSegmentation().GetNumberOfSegments() == 3
    report = logic.predict_logic.save_report(tmp_path / "r.html").read_text()
    assert "not diagnoses" in report and all(doc[t]["model"]["trained_on"] in report for t in doc["tasks"])


def test_background_run_can_be_cancelled(mrml, scene_case, tmp_path):
    import time
    from GliomaMRML.logic import GliomaRadiogenomicsLogic
    logic = GliomaRadiogenomicsLogic(mrml.scene)
    job = logic.start(scene_case, tmp_path / "c", extra_args=["--spacing", "2", "--brain-mask", "threshold"])
    while job.poll().progress <= 0.0:
        time.sleep(0.05)
        assert job.poll().running, job.poll().error
    t = time.perf_counter()
    job.cancel()
    st = job.wait(timeout=20)
    assert not st.running and st.cancelled and st.error == "cancelled" and time.perf_counter() - t < 10
    assert not (tmp_path / "c" / "predictions.json").exists()


def test_assign_and_load_case_folder(mrml, small_demo_dir):
    from GliomaMRML.logic import assign_volumes_by_name, load_case_folder_into_scene
    scene = mrml.scene
    nodes, clinical, case_id = load_case_folder_into_scene(scene, small_demo_dir)
    assert set(nodes) == {"t1", "t1c", "t2", "flair", "cbv"} and clinical.get("age") is not None
    assert nodes["cbv"] is None   # the demo case has no CBV map (test_cbv.py: one that has)
    assigned = assign_volumes_by_name(scene, {"t1": None, "t1c": None, "t2": None, "flair": None})
    assert all(assigned[s] is not None for s in ("t1", "t1c", "t2", "flair"))
    assert assigned["t1c"].GetName().endswith("t1c") and assigned["t2"].GetName().endswith("t2")
    keep = assign_volumes_by_name(scene, {"t1": nodes["t2"]})  # a user's choice is kept
    assert keep["t1"] is nodes["t2"]


def test_pdf_and_contribution_table(predicted, tmp_path):
    seg, logic, doc, table, charts = predicted
    t = logic.contributions.GetTable()
    assert t.GetNumberOfRows() > 0 and t.GetColumnByName("contribution") is not None
    p = logic.save_report(tmp_path / "summary.pdf")
    assert p.read_bytes()[:5] == b"%PDF-" and p.stat().st_size > 2000


def test_batch_script_on_two_cases_with_one_failure(tmp_path, bundles_at_spacing):
    """The batch script in plain Python (slicer-core): two synthetic cases + one broken folder."""
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd
    from GliomaRadiogenomicsLib import synthetic as S
    pytest.importorskip("slicer")
    cohort = tmp_path / "cohort"
    S.generate_cohort(2, cohort, seed=11, downsample=3)
    for seq in ("t1", "t1c"):  # a case without T1 / T1c: a normal case (FLAIR + T2)
        next((cohort / "synth-0001").glob(f"{seq}.nii*")).unlink()
    (cohort / "zz-broken").mkdir()
    (cohort / "zz-broken" / "flair.nii.gz").write_bytes(b"not an image")
    script = Path(__file__).resolve().parents[2] / "GliomaRadiogenomics" / "Batch" / "GliomaBatch.py"
    out = tmp_path / "out"
    cmd = [sys.executable, str(script), "--input", str(cohort), "--output", str(out), "--spacing", "3",
           "--brain-mask", "threshold", "--backend", "hyperintensity"] + [a for b in bundles_at_spacing(3.0) for a in ("--bundle", b)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 1, r.stderr[-2000:]  # one case failed
    res = pd.read_csv(out / "batch_results.csv").set_index("case")
    assert res.loc["synth-0000", "status"] == "ok" and res.loc["synth-0001", "status"] == "ok"
    err = res.loc["zz-broken", "error"]
    assert res.loc["zz-broken", "status"] == "failed" and "zz-broken" in err and "flair.nii.gz" in err  # file + problem
    assert "not gzip-compressed" in err or "cannot read" in err
    assert res["p_IDH"].dropna().between(0, 1).all() and 0 <= res.loc["synth-0000", "p_IDH"] <= 1
    doc = json.loads((out / "synth-0001" / "predictions.json").read_text())
    assert set(doc["inputs"]) == {"T2", "FLAIR"}
    for t in doc["tasks"]:  # models needing T1 / T1c are not applied: null + reason
        assert doc[t]["probability"] is None or not {"T1", "T1c"} & set(doc[t]["model"]["sequences"])
        assert doc[t]["probability"] is not None or "T1" in doc[t]["reason"]
    for c in ("synth-0000", "synth-0001"):
        assert (out / c / "predictions.json").exists() and (out / c / "segmentation.nii.gz").exists()
    # re-run: finished cases are skipped (same table), the broken one is tried again
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r2.stdout.count('"case"') == 1


def test_next_patient_never_gets_the_previous_patients_segmentation(mrml, predicted, scene_case, tmp_path):
    """The workflow module's Run button: GliomaRadiogenomicsWidget.onRun gives the Logic its last segmentation and
    onPoll gives finish() the one start() passed on (the Qt widget itself cannot run here: these are the Logic calls it
    makes, in its order). An edited segmentation goes with a re-run of the SAME volumes; with another patient's
    volumes it is not sent, a new one is made, and the old node stays in the scene with the user's edits."""
    import sys
    from GliomaMRML.convert import segmentation_node_to_label_image, sitk_to_volume_node, volume_node_to_sitk
    from GliomaMRML.logic import GliomaRadiogenomicsLogic, segmentation_for_run
    seg0, predict_logic, doc, _, _ = predicted
    logic = GliomaRadiogenomicsLogic(mrml.scene)

    def finished_run(folder, label_node, nodes):  # a finished run's outputs (a real prediction document)
        folder.mkdir()
        (folder / "predictions.json").write_text(json.dumps(doc))
        sitk.WriteImage(segmentation_node_to_label_image(label_node, nodes["flair"]), str(folder / "segmentation.nii.gz"))
        return folder

    def start(nodes, seg, name):
        job = logic.start(nodes, tmp_path / name, segmentation_node=seg, python=sys.executable)
        job.cancel()  # only what the run is given matters here
        job.wait(timeout=30)
        return job.cmd

    # patient A: the first run made the segmentation; the user edits it (erases the enhancing segment)
    seg_a = logic.finish(finished_run(tmp_path / "a-done", seg0, scene_case), scene_case["flair"], None, nodes=scene_case)[0]
    assert seg_a is not seg0 and seg_a.GetSegmentation().GetNumberOfSegments() == 3
    seg_a.GetSegmentation().RemoveSegment(seg_a.GetSegmentation().GetSegmentIdBySegmentName("enhancing"))
    # re-run on the same volumes: the edited segmentation is what the run gets
    cmd = start(scene_case, seg_a, "a2")
    assert logic.run_segmentation is seg_a and "--segmentation" in cmd
    sent = sitk.GetArrayFromImage(sitk.ReadImage(cmd[cmd.index("--segmentation") + 1]))
    assert sent.any() and 3 not in np.unique(sent)  # the edit travels
    # patient B (other images in the selectors): the segmentation of A is not sent, and not deleted
    nodes_b = {s: sitk_to_volume_node(sitk.Flip(volume_node_to_sitk(n), (True, False, False), flipAboutOrigin=False),
                                      mrml.scene, f"patient B {s}") for s, n in scene_case.items()}
    cmd = start(nodes_b, seg_a, "b")
    assert logic.run_segmentation is None and "--segmentation" not in cmd
    seg_b = logic.finish(finished_run(tmp_path / "b-done", seg0, nodes_b), nodes_b["flair"], logic.run_segmentation,
                         nodes=nodes_b)[0]
    assert seg_b is not seg_a and mrml.scene.IsNodePresent(seg_a)
    assert seg_a.GetSegmentation().GetNumberOfSegments() == 2  # the user's edit is kept
    # A's segmentation still belongs to A's volumes; B's does not; fewer sequences = other inputs
    assert segmentation_for_run(mrml.scene, seg_a, scene_case) is seg_a
    assert segmentation_for_run(mrml.scene, seg_b, scene_case) is None
    assert segmentation_for_run(mrml.scene, seg_a, dict(scene_case, t1c=None)) is None
    # the same node re-filled with another patient's voxels is another input too
    flair_a = volume_node_to_sitk(scene_case["flair"])
    sitk_to_volume_node(volume_node_to_sitk(nodes_b["flair"]), mrml.scene, "", node=scene_case["flair"])
    try:
        assert segmentation_for_run(mrml.scene, seg_a, scene_case) is None
    finally:
        sitk_to_volume_node(flair_a, mrml.scene, "", node=scene_case["flair"])
    assert segmentation_for_run(mrml.scene, seg_a, scene_case) is seg_a
    # the synchronous Logic.run follows the same rule: B's run does not predict on A's segmentation
    mrml.scene.RemoveNode(seg_b)
    assert segmentation_for_run(mrml.scene, seg_b, nodes_b) is None  # a node removed from the scene is not used


def test_a_ucsf_pdgm_folder_in_the_scene_keeps_which_inputs_were_bias_corrected(mrml, tmp_path):
    """Slicer / web load a case folder into the scene and rebuild the case from the volume nodes: the '_bias' files
    UCSF-PDGM ships stay marked (feature provenance n4_input, as on the command line); a volume loaded by hand from
    such a file is told by its name."""
    from test_inputs import _ucsf_pdgm_folder
    from GliomaMRML.convert import sitk_to_volume_node
    from GliomaMRML.logic import case_from_nodes, load_case_folder_into_scene
    folder = tmp_path / "UCSF-PDGM-0004_nifti"
    _ucsf_pdgm_folder(folder)
    nodes, clinical, case_id = load_case_folder_into_scene(mrml.scene, folder)
    assert sorted(case_from_nodes(nodes, clinical, case_id).bias_corrected_inputs) == ["flair", "t1", "t1c", "t2"]
    by_hand = {"flair": sitk_to_volume_node(sitk.ReadImage(str(folder / "UCSF-PDGM-0004_FLAIR_bias.nii.gz")),
                                            mrml.scene, "UCSF-PDGM-0004_FLAIR_bias"),
               "t1c": sitk_to_volume_node(sitk.ReadImage(str(folder / "UCSF-PDGM-0004_T1c.nii.gz")), mrml.scene,
                                          "UCSF-PDGM-0004_T1c")}
    assert case_from_nodes(by_hand).bias_corrected_inputs == ["flair"]
