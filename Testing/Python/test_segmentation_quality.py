"""Floors on segmentation quality, so that a regression fails. Figures in docs/segmentation-quality.md
(Testing/benchmarks/eval_segmentation_quality.py prints them)."""
import numpy as np
import pytest
import SimpleITK as sitk

from GliomaRadiogenomicsLib.case import Case, load_case_folder
from GliomaRadiogenomicsLib.io import read_image
from GliomaRadiogenomicsLib.pipeline import PipelineOptions, segment_case
from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
from GliomaRadiogenomicsLib.regions import dice, dice_per_region, region_mask

# floors of the weight-free backend, pinned here (the default "auto" uses the lgg-unet2d FLAIR network when its weights
# are installed: test_unet2d_lgg.py); measured (docs/segmentation-quality.md) minus a margin for platform differences
HB = "hyperintensity"
FLOORS = {"brats_WT": 0.88, "brats_TC": 0.65, "brats_ET": 0.65, "captk_WT": 0.78, "brain1_TC": 0.6,
          "phantom_WT": 0.75}


def _on(ref, native):
    return sitk.GetArrayFromImage(sitk.Resample(ref, native, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                                sitk.sitkUInt8))


@pytest.mark.realdata
def test_brats_example_against_reference(shared_data):
    c = shared_data / "cases" / "BraTS-example"
    pre, lab, native = segment_case(load_case_folder(c), PipelineOptions(PreprocessOptions(), HB)).as_tuple()
    assert pre.brain_mask_method == "nonzero"  # skull-stripped input detected
    d = dice_per_region(sitk.GetArrayFromImage(native), _on(read_image(c / "reference_seg_algorithm.nii.gz"), native))
    assert d["WT"] >= FLOORS["brats_WT"] and d["TC"] >= FLOORS["brats_TC"] and d["ET"] >= FLOORS["brats_ET"], d


@pytest.mark.realdata
def test_captk_flair_only(shared_data):
    c = shared_data / "cases" / "CaPTk-AAAC0"
    case = Case("CaPTk-AAAC0", {"flair": read_image(c / "flair.nii.gz")}, required=("flair",))
    pre, lab, native = segment_case(case, PipelineOptions(PreprocessOptions(), HB)).as_tuple()
    ref = _on(read_image(c / "tumor_label.nii.gz"), native) > 0
    d = dice(region_mask(sitk.GetArrayFromImage(native), "WT"), ref)
    assert d >= FLOORS["captk_WT"], d


@pytest.mark.realdata
def test_pyradiomics_brain1_t1c_only(shared_data):
    c = shared_data / "cases" / "pyradiomics-brain"
    case = Case("brain1", {"t1c": read_image(c / "brain1_image.nrrd")}, required=("t1c",))
    pre, lab, native = segment_case(case, PipelineOptions(PreprocessOptions(reference="t1c"), HB)).as_tuple()
    ref = _on(read_image(c / "brain1_label.nrrd"), native) > 0
    d = dice(region_mask(sitk.GetArrayFromImage(native), "TC"), ref)
    assert d >= FLOORS["brain1_TC"], d


def test_synthetic_phantoms_full_pipeline(tmp_path):
    """Two cohort phantoms through the whole acquisition simulation, at 2 mm (speed), against their truth."""
    from GliomaRadiogenomicsLib import synthetic as S
    scores = []
    for subj, spec in S.draw_cohort(4, seed=404, downsample=2)[:2]:
        folder = S.render_subject(subj, spec, tmp_path / subj["case_id"], downsample=2)
        pre, lab, native = segment_case(load_case_folder(folder), PipelineOptions(PreprocessOptions(spacing=2.0, brain_mask="threshold"), HB)).as_tuple()
        truth = _on(read_image(folder / "label.nii.gz"), native)
        scores.append(dice_per_region(sitk.GetArrayFromImage(native), truth)["WT"])
    assert np.mean(scores) >= FLOORS["phantom_WT"], scores
