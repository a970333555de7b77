"""Module lifecycle, Logic side (issue 15 item 4), on a real slicer-core MRML scene with real child processes:
singleton parameter nodes (also after a scene close), one background job at a time, Segment and Predict in the
background (poll, cancel, finish), a new input selection dropping the previous patient's segmentation, and
``Logic.run`` preprocessing once. The widgets (Qt, observers, enter / exit) run only in the Slicer desktop
application: Slicer's own CTest exercises them (the modules' ScriptedLoadableModuleTest classes)."""
import time

import pytest

FAST = ["--spacing", "2", "--brain-mask", "threshold"]


@pytest.fixture(scope="module")
def volumes(mrml, small_demo_dir):
    nodes = {}
    for s in ("t1", "t1c", "t2", "flair"):
        vol = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", s)
        sn = mrml.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        sn.SetFileName(str(small_demo_dir / f"{s}.nii.gz"))
        assert sn.ReadData(vol)
        nodes[s] = vol
    return nodes


def test_parameter_nodes_are_singletons_per_module_and_survive_a_scene_close(mrml):
    import slicer
    from GliomaMRML.logic import GliomaPredictLogic, GliomaSegmentLogic, parameter_node
    scene = slicer.vtkMRMLScene()  # a scene of its own: it is cleared below
    seg, pred = GliomaSegmentLogic(scene), GliomaPredictLogic(scene)
    a = seg.getParameterNode()
    assert a is seg.getParameterNode() is parameter_node(scene, "GliomaSegment")
    assert a.GetSingletonTag() == "GliomaSegment" and a.GetAttribute("ModuleName") == "GliomaSegment"
    assert pred.getParameterNode() is not a
    a.SetParameter("backend", "hyperintensity")
    assert scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 2
    for _ in range(3):
        seg.getParameterNode()
    assert scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 2
    scene.Clear(0)  # File > Close scene
    b = seg.getParameterNode()
    assert scene.IsNodePresent(b) and b.GetParameter("backend") == ""  # a fresh node for the new scene


def test_clinical_from_parameters():
    from GliomaMRML.logic import clinical_from_parameters
    assert clinical_from_parameters(0, "not given", "not given", "") == {"age": None, "sex": None}
    assert clinical_from_parameters(58, "F", "3", " auto ") == {"age": 58, "sex": "F", "who_grade": 3,
                                                                "vasari_score": "auto"}
    # the web form's text fields: an age typed as text, empty fields = not given
    assert clinical_from_parameters("47", "M", "2", "12") == {"age": 47.0, "sex": "M", "who_grade": 2,
                                                              "vasari_score": "12"}
    assert clinical_from_parameters("", "", "", "") == {"age": None, "sex": None}
    import pytest
    with pytest.raises(ValueError, match="age 'forty'"):
        clinical_from_parameters("forty")


def _wait(job, timeout=600):
    st = job.wait(timeout=timeout)
    assert st.returncode == 0 and st.error is None, st.error
    return st


def test_segment_then_predict_in_the_background_one_job_at_a_time(mrml, volumes, tmp_path, bundles_at_spacing):
    from GliomaMRML.logic import INPUTS_ATTRIBUTE, SOURCE_ATTRIBUTE, GliomaPredictLogic, GliomaSegmentLogic, JobSlot
    seg_logic, pred_logic = GliomaSegmentLogic(mrml.scene), GliomaPredictLogic(mrml.scene)
    job = seg_logic.start(volumes, tmp_path / "seg", backend="hyperintensity", extra_args=FAST)
    with pytest.raises(RuntimeError, match="segmentation job is still running"):
        seg_logic.start(volumes, tmp_path / "seg2", backend="hyperintensity", extra_args=FAST)
    progress = []
    st = _wait(job)
    assert not JobSlot.busy()
    node = seg_logic.finish(tmp_path / "seg", volumes)
    s = node.GetSegmentation()
    assert s.GetNumberOfSegments() == 3 and node.GetAttribute(INPUTS_ATTRIBUTE)
    assert '"automatic"' in node.GetAttribute(SOURCE_ATTRIBUTE)

    job = pred_logic.start(volumes, node, tmp_path / "pred", {"age": 50, "sex": "M"},
                           bundles=bundles_at_spacing(2.0), extra_args=FAST + ["--workers", "1"])
    with pytest.raises(RuntimeError, match="prediction job is still running"):
        seg_logic.start(volumes, tmp_path / "seg3", extra_args=FAST)
    while True:
        st = job.poll()
        progress.append(st.progress)
        if not st.running:
            break
        time.sleep(0.1)
    assert st.returncode == 0 and st.error is None, st.error
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)
    doc, table, charts = pred_logic.finish(tmp_path / "pred")
    assert table.GetNumberOfRows() == 3 and set(charts) == {"IDH", "epilepsy", "ATRX"}
    assert all(doc[t]["probability"] is not None for t in doc["tasks"])
    assert "not diagnoses" in pred_logic.save_report(tmp_path / "r.html").read_text()


def test_background_segment_can_be_cancelled(mrml, volumes, tmp_path):
    from GliomaMRML.logic import GliomaSegmentLogic, JobSlot
    logic = GliomaSegmentLogic(mrml.scene)
    job = logic.start(volumes, tmp_path / "c", backend="hyperintensity", extra_args=FAST)
    while job.poll().progress <= 0.0:
        assert job.poll().running, job.poll().error
        time.sleep(0.05)
    job.cancel()
    st = job.poll()
    assert not st.running and st.cancelled and st.error == "cancelled"
    assert not JobSlot.busy() and not (tmp_path / "c" / "segmentation.nii.gz").exists()


def test_predict_refuses_the_previous_patients_segmentation(mrml, volumes, tmp_path, small_demo_case):
    """A new input selection: the segmentation made for other volumes is not used (Predict says so; the workflow
    segments again), and the node itself stays in the scene."""
    import SimpleITK as sitk
    from GliomaMRML.convert import label_image_to_segmentation_node, sitk_to_volume_node
    from GliomaMRML.logic import GliomaPredictLogic, remember_inputs, segmentation_for_run
    seg = label_image_to_segmentation_node(small_demo_case.label, mrml.scene, "patient A", volumes["flair"])
    remember_inputs(seg, volumes)
    assert segmentation_for_run(mrml.scene, seg, volumes) is seg
    other = dict(volumes, flair=sitk_to_volume_node(sitk.Cast(small_demo_case.images["flair"], sitk.sitkFloat32) * 2,
                                                    mrml.scene, "patient B flair"))
    assert segmentation_for_run(mrml.scene, seg, other) is None
    with pytest.raises(ValueError, match="made for other input volumes"):
        GliomaPredictLogic(mrml.scene).start(other, seg, tmp_path / "p")
    assert mrml.scene.IsNodePresent(seg)
    # what the modules do on a new input selection: the same patient keeps it (shown), another patient's is hidden
    from GliomaMRML.logic import segmentation_for_inputs
    seg.SetDisplayVisibility(True)
    assert segmentation_for_inputs(mrml.scene, seg, volumes) is seg and seg.GetDisplayVisibility()
    assert segmentation_for_inputs(mrml.scene, seg, other) is None and not seg.GetDisplayVisibility()
    assert mrml.scene.IsNodePresent(seg) and seg.GetSegmentation().GetNumberOfSegments() > 0


def test_logic_run_preprocesses_once(mrml, volumes, monkeypatch, bundles_at_spacing):
    """The workflow's synchronous run (batch script): one preprocessing per case (registration, brain mask), shared
    by segmentation and features. The real preprocess runs; it is only counted."""
    from GliomaMRML.logic import GliomaRadiogenomicsLogic
    from GliomaRadiogenomicsLib import pipeline
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    calls = []
    real = pipeline.preprocess
    monkeypatch.setattr(pipeline, "preprocess", lambda *a, **k: calls.append(1) or real(*a, **k))
    seg, doc, table, _ = GliomaRadiogenomicsLogic(mrml.scene).run(
        volumes, {"age": 50, "sex": "M"}, preprocess_options=PreprocessOptions(spacing=2.0, brain_mask="threshold"),
        bundles=bundles_at_spacing(2.0), backend="hyperintensity")
    assert len(calls) == 1 and table.GetNumberOfRows() == 3 and seg.GetSegmentation().GetNumberOfSegments() == 3
