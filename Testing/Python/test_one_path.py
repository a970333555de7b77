"""One path (issue 12 item 7): "preprocess then segment" lives in pipeline.segment_case only; analyze_case, the
`segment` command and the Slicer segment logic call it, and the Slicer predict logic uses pipeline.evaluate_case
(the `run` path without files). Real SimpleITK / PyRadiomics / MRML (slicer-core); no mocks."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from GliomaRadiogenomicsLib.case import load_case_folder
from GliomaRadiogenomicsLib.pipeline import PipelineOptions, add_roi_subregions, analyze_case, segment_case
from GliomaRadiogenomicsLib.preprocess import PreprocessOptions

REPO = Path(__file__).resolve().parents[2]
FAST = PipelineOptions(PreprocessOptions(spacing=2.0, brain_mask="threshold"), "hyperintensity", feature_workers=1)


def test_preprocess_and_segmentation_called_in_one_place():
    """No module but pipeline.py calls preprocess(...) or a backend's .segment(pre ...) (the auto backend delegates
    to the backend it chose, inside segment.py)."""
    calls = []
    for path in list((REPO / "GliomaRadiogenomics").rglob("*.py")) + list(REPO.glob("Glioma*/*.py")):
        if ".venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if name == "preprocess" or (name == "segment" and node.args and getattr(node.args[0], "id", "") == "pre"):
                    calls.append(f"{path.relative_to(REPO)}:{node.lineno}:{name}")
    outside = [c for c in calls if not c.startswith(("GliomaRadiogenomics/GliomaRadiogenomicsLib/pipeline.py",
                                                      "GliomaRadiogenomics/GliomaRadiogenomicsLib/segment.py"))]
    assert not outside, outside
    assert any(c.startswith("GliomaRadiogenomics/GliomaRadiogenomicsLib/pipeline.py") for c in calls)


def test_segment_command_analysis_and_slicer_logic_give_the_same_segmentation(small_demo_dir, tmp_path, mrml):
    from GliomaMRML.convert import segmentation_node_to_label_image
    from GliomaMRML.logic import GliomaSegmentLogic, load_case_folder_into_scene, reference_node
    from GliomaRadiogenomicsLib.cli import main
    from GliomaRadiogenomicsLib.io import read_image
    seg = segment_case(load_case_folder(small_demo_dir), FAST)
    assert seg.source == "automatic: hyperintensity" and seg.provenance["segmentation_source"] == "automatic"
    native = sitk.GetArrayFromImage(seg.native)
    assert (native > 0).sum() > 100
    analysis = analyze_case(load_case_folder(small_demo_dir), FAST)
    assert np.array_equal(sitk.GetArrayFromImage(analysis.label_native), native)
    out = tmp_path / "seg"
    assert main(["segment", "--case-dir", str(small_demo_dir), "--out", str(out), "--spacing", "2",
                 "--brain-mask", "threshold", "--backend", "hyperintensity"]) == 0
    assert np.array_equal(sitk.GetArrayFromImage(read_image(out / "segmentation.nii.gz", label=True)), native)
    nodes, _, _ = load_case_folder_into_scene(mrml.scene, small_demo_dir)
    node = GliomaSegmentLogic(mrml.scene).segment(nodes, backend="hyperintensity",
                                                  preprocess_options=FAST.preprocess)
    got = sitk.GetArrayFromImage(segmentation_node_to_label_image(node, reference_node(nodes)))
    assert np.array_equal(got, native)


def test_workflow_logic_run_preprocesses_once_and_records_an_automatic_segmentation(small_demo_dir, mrml,
                                                                                     monkeypatch):
    """Logic.run (the workflow module, the batch script) is one pass like `run`: the case is preprocessed once (the
    real preprocess, counted), the automatic segmentation node equals segment_case's output and is recorded as
    automatic, and the features / predictions come from the same pass."""
    import GliomaRadiogenomicsLib.pipeline as P
    from GliomaMRML.convert import segmentation_node_to_label_image
    from GliomaMRML.logic import (GliomaRadiogenomicsLogic, load_case_folder_into_scene, reference_node,
                                  segmentation_provenance)
    expected = sitk.GetArrayFromImage(segment_case(load_case_folder(small_demo_dir), FAST).native)
    calls = []
    real = P.preprocess
    monkeypatch.setattr(P, "preprocess", lambda *a, **k: calls.append(1) or real(*a, **k))
    nodes, clinical, _ = load_case_folder_into_scene(mrml.scene, small_demo_dir)
    seg, doc, table, charts = GliomaRadiogenomicsLogic(mrml.scene).run(
        nodes, clinical, preprocess_options=FAST.preprocess, backend="hyperintensity")
    assert len(calls) == 1
    label = segmentation_node_to_label_image(seg, reference_node(nodes))
    assert np.array_equal(sitk.GetArrayFromImage(label), expected)
    assert segmentation_provenance(seg, label)["segmentation_source"] == "automatic"
    assert doc["features"]["segmentation_source"] == "automatic"
    assert doc["segmentation"]["volumes_ml"]["WT"] > 0 and table.GetTable().GetNumberOfRows() == len(doc["tasks"])


def test_a_mask_on_another_grid_is_resampled_once_and_the_grid_is_stated(small_demo_dir):
    """A given ROI on a grid that is neither the native reference grid nor kept with a run (here the automatic
    native mask resampled to 3 mm): one nearest-neighbour resampling onto the working grid, the two grids named in
    the provenance; the labels equal a single direct resampling."""
    case = load_case_folder(small_demo_dir)
    seg = segment_case(case, FAST)
    other = sitk.Image(seg.native)
    ref = sitk.Image([int(round(n * s / 3.0)) for n, s in zip(other.GetSize(), other.GetSpacing())], sitk.sitkUInt8)
    ref.SetSpacing((3.0, 3.0, 3.0))
    ref.SetOrigin(other.GetOrigin())
    ref.SetDirection(other.GetDirection())
    other = sitk.Resample(other, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    given = segment_case(load_case_folder(small_demo_dir), FAST, label=other, label_source="a 3 mm mask")
    stated = given.provenance["segmentation_grid"]
    assert stated.startswith("resampled once from") and "3 x 3 x 3" in stated.replace("3.0", "3"), stated
    direct = sitk.Resample(other, given.pre.grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    assert np.array_equal(sitk.GetArrayFromImage(given.label) > 0, sitk.GetArrayFromImage(direct) > 0)
    assert given.source.startswith("user-supplied segmentation (a 3 mm mask)")


def test_roi_subregions_add_the_weight_free_core_inside_a_binary_mask_only(small_demo_dir):
    """--roi-subregions (liu2024 'tumor', shim2021 'CE' on a manual whole-tumor mask): a binary whole-tumor ROI gets
    the weight-free backend's necrosis / enhancing labels exactly where they fall inside it (the same labels the
    automatic hyperintensity segmentation of the same preprocessed case gives), its outline unchanged; the feature
    provenance says so. Without the option the mask stays label 2 only; a ROI with core labels is kept as given; a
    case without T1c gets a warning and no sub-regions."""
    import dataclasses
    auto = segment_case(load_case_folder(small_demo_dir), FAST)
    a = sitk.GetArrayFromImage(auto.label)
    assert np.isin(a, (1, 3)).sum() > 50  # the demo case enhances
    # a manual-like 0/1 outline: the automatic one cut in half (left-right), so part of the enhancing tumour lies
    # outside it and must stay unlabelled
    cut = sitk.GetArrayFromImage(auto.native) > 0
    xs = np.flatnonzero(cut.any(axis=(0, 1)))
    cut[:, :, : (xs.min() + xs.max()) // 2] = False
    binary = sitk.GetImageFromArray(cut.astype(np.uint8))
    binary.CopyInformation(auto.native)
    opt = dataclasses.replace(FAST, roi_subregions=True)
    plain = segment_case(load_case_folder(small_demo_dir), FAST, label=binary, label_source="manual")
    sub = segment_case(load_case_folder(small_demo_dir), opt, label=binary, label_source="manual")
    p, s = sitk.GetArrayFromImage(plain.label), sitk.GetArrayFromImage(sub.label)
    assert set(np.unique(p)) == {0, 2} and "roi_subregions" not in plain.provenance
    wt = p > 0
    assert np.array_equal(s > 0, wt)  # the outline is the given one
    core = wt & np.isin(a, (1, 3))
    expected = np.where(core, a, 2 * wt.astype(np.uint8))
    assert core.sum() > 20 and (np.isin(a, (1, 3)) & ~wt).sum() > 20  # core on both sides of the cut
    assert np.array_equal(s, expected)
    assert sub.provenance["roi_subregions"].startswith("weight-free necrosis / enhancing")
    assert any(x.startswith("--roi-subregions: weight-free") for x in sub.pre.steps)
    # a ROI that already has core labels is kept as given; without a T1c nothing is added, and that is said
    prov = {}
    assert np.array_equal(sitk.GetArrayFromImage(add_roi_subregions(auto.label, auto.pre, prov)), a) and not prov
    no_t1c = dataclasses.replace(plain.pre, images={k: v for k, v in plain.pre.images.items() if k != "t1c"},
                                 steps=[], warnings=[])
    assert np.array_equal(sitk.GetArrayFromImage(add_roi_subregions(plain.label, no_t1c, prov)), p) and not prov
    assert any("no T1c" in w for w in no_t1c.warnings)
    # a given ROI with its own core labels (BraTS labels, UCSF-PDGM's tumor segmentation) says so in its provenance,
    # with or without the option: the features do have core regions ('none' would be false)
    from GliomaRadiogenomicsLib.provenance import GIVEN_SUBREGIONS
    for o in (FAST, opt):
        given = segment_case(load_case_folder(small_demo_dir), o, label=auto.native, label_source="BraTS labels")
        assert given.provenance["roi_subregions"] == GIVEN_SUBREGIONS
    # a binary ROI whose sidecar still claims core labels (edited down after an earlier run): decided again
    stale = segment_case(load_case_folder(small_demo_dir), FAST, label=binary, label_source="manual",
                         label_provenance={"segmentation_source": "given", "roi_subregions": GIVEN_SUBREGIONS})
    assert "roi_subregions" not in stale.provenance
    edited = segment_case(load_case_folder(small_demo_dir), FAST, label=auto.native, label_source="edited",
                          label_provenance={"segmentation_source": "edited"})
    assert "roi_subregions" not in edited.provenance  # its backend's core labels: the source says it


def test_roi_subregions_needs_a_given_roi(small_demo_dir, tmp_path, capsys):
    """The option only acts on a given ROI: without one the command refuses at once (exit 2), naming the option."""
    from GliomaRadiogenomicsLib.cli import main
    assert main(["run", "--case-dir", str(small_demo_dir), "--roi-subregions", "--out", str(tmp_path / "o")]) == 2
    assert "--roi-subregions adds labels inside a given ROI: give one with --segmentation" in capsys.readouterr().err
    assert main(["extract", "--cases", str(small_demo_dir.parent), "--roi-subregions", "--out",
                 str(tmp_path / "t.csv")]) == 2
    assert "give one with --case-roi" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "t.csv").exists()


def test_a_run_on_files_bias_corrected_upstream_records_them(small_demo_dir, tmp_path):
    """A case folder whose FLAIR is a '_bias' copy beside the acquired one (UCSF-PDGM): the run reads the corrected
    file and its features record n4_input with the sequence's display name (what provenance.compare reads)."""
    import shutil
    folder = tmp_path / "case"
    shutil.copytree(small_demo_dir, folder)
    flair = next(p for p in folder.iterdir() if p.name.lower().startswith("flair"))
    shutil.copy(flair, folder / flair.name.replace("flair", "flair_bias", 1))
    case = load_case_folder(folder)
    assert Path(case.paths["flair"]).name.startswith("flair_bias")
    a = analyze_case(case, FAST)
    assert a.features.provenance["n4_input"] == ["FLAIR"] and a.features.provenance["n4"] is False
