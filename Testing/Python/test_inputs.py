from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from GliomaRadiogenomicsLib.case import load_case
from GliomaRadiogenomicsLib.inputs import (classify_dicom, classify_name, find_case_files, find_dicom_series,
                                           group_dicom_series, label_values, scan_case_folder)
from GliomaRadiogenomicsLib.io import InputError


@pytest.mark.parametrize("name,seq", [
    ("t1.nii.gz", "t1"), ("t1c.nii.gz", "t1c"), ("t2.nii.gz", "t2"), ("flair.nii.gz", "flair"),
    ("BraTS-GLI-00001-000-t1n.nii.gz", "t1"), ("BraTS-GLI-00001-000-t1c.nii.gz", "t1c"),
    ("BraTS-GLI-00001-000-t2w.nii.gz", "t2"), ("BraTS-GLI-00001-000-t2f.nii.gz", "flair"),
    ("BraTS20_Training_001_t1ce.nii.gz", "t1c"), ("sub-01_ce-gadolinium_T1w.nii.gz", "t1c"),
    ("sub-01_T1w.nii.gz", "t1"), ("sub-01_T2w.nii.gz", "t2"), ("sub-01_FLAIR.nii.gz", "flair"),
    ("AX_T2_FLAIR.nrrd", "flair"), ("Ax T1 POST GAD.nrrd", "t1c"), ("MPRAGE.nii", "t1"), ("T2 TSE AX.nii", "t2"),
    ("reference_seg_algorithm.nii.gz", None), ("brain_mask.nii.gz", None), ("label.nii.gz", None),
    ("DWI_b1000.nii.gz", None),
    # UCSF-PDGM (the name its published feature table gives for the bias-corrected T1c; the release's own files)
    ("UCSF-PDGM-0004_T1gad_bias.nii.gz", "t1c"), ("UCSF-PDGM-0004_T1c_bias.nii.gz", "t1c"),
    ("UCSF-PDGM-0004_T1_bias.nii.gz", "t1"), ("UCSF-PDGM-0004_T2_bias.nii.gz", "t2"),
    ("UCSF-PDGM-0004_FLAIR_bias.nii.gz", "flair"), ("UCSF-PDGM-0004_DTI_eddy_L2.nii.gz", None),
    ("UCSF-PDGM-0004_ASL.nii.gz", None), ("UCSF-PDGM-0004_brain_segmentation.nii.gz", None),
])
def test_classify_names(name, seq):
    assert classify_name(name) == seq


def _write_dicom_series(folder, description, tr, te, ti=None, contrast=""):
    folder.mkdir(parents=True)
    a = (np.random.default_rng(0).random((4, 16, 16)) * 1000).astype(np.int16)
    img = sitk.GetImageFromArray(a)
    img.SetSpacing((1.0, 1.0, 3.0))
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125." + str(abs(hash(description)) % 10 ** 8)
    for k in range(a.shape[0]):
        sl = img[:, :, k]
        tags = {"0008|103e": description, "0018|0080": str(tr), "0018|0081": str(te), "0020|000e": uid,
                "0020|0013": str(k + 1), "0020|0032": f"0\\0\\{3.0 * k}", "0020|0037": "1\\0\\0\\0\\1\\0",
                "0008|0060": "MR"}
        if ti:
            tags["0018|0082"] = str(ti)
        if contrast:
            tags["0018|0010"] = contrast
        for key, v in tags.items():
            sl.SetMetaData(key, v)
        w.SetFileName(str(folder / f"{k:03d}.dcm"))
        w.Execute(sl)


def test_dicom_series_found_and_assigned_from_tags(tmp_path):
    _write_dicom_series(tmp_path / "s1", "Ax T1 pre", 500, 10)
    _write_dicom_series(tmp_path / "s2", "Ax T1 post", 500, 10, contrast="Gadovist")
    _write_dicom_series(tmp_path / "s3", "series 3", 4000, 100)           # T2 from TR / TE
    _write_dicom_series(tmp_path / "s4", "series 4", 9000, 120, ti=2500)  # FLAIR from TI
    series = find_dicom_series(tmp_path)
    assert len(series) == 4
    assigned = {classify_dicom(s): s.description for s in series}
    assert assigned == {"t1": "Ax T1 pre", "t1c": "Ax T1 post", "t2": "series 3", "flair": "series 4"}
    chosen = find_case_files(tmp_path)
    img = chosen["flair"].read()
    assert img.GetSize() == (16, 16, 4) and abs(img.GetSpacing()[2] - 3.0) < 1e-3


def test_dicom_case_folder_with_a_mask_file_beside_the_series(tmp_path):
    _write_dicom_series(tmp_path / "s1", "Ax T1 post", 500, 10, contrast="Gadovist")
    _write_dicom_series(tmp_path / "s2", "Ax FLAIR", 9000, 120, ti=2500)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 16, 16), np.uint8)), str(tmp_path / "tumor_seg.nii.gz"))
    found = scan_case_folder(tmp_path)
    assert set(found.sequences) == {"t1c", "flair"} and [m.name for m in found.masks] == ["tumor_seg.nii.gz"]


def test_dicom_series_grouping_is_one_definition(tmp_path):
    """group_dicom_series (used by case folders and the web upload): series by sequence in their order, the rest
    left out; two FLAIR series in a case folder are ambiguous, named by their descriptions."""
    _write_dicom_series(tmp_path / "s1", "Ax FLAIR", 9000, 120, ti=2500)
    _write_dicom_series(tmp_path / "s2", "FLAIR 2", 9000, 120, ti=2500)
    _write_dicom_series(tmp_path / "s3", "localizer", 1000, 50)   # no sequence from its tags (TE 30-70, no TI)
    series = find_dicom_series(tmp_path)
    groups, left_out = group_dicom_series(series)
    assert {k: [s.description for s in v] for k, v in groups.items()} == {
        "flair": [s.description for s in series if s.description != "localizer"]}
    assert [s.description for s in left_out] == ["localizer"]
    with pytest.raises(InputError, match=r"FLAIR is ambiguous \(series '(Ax FLAIR|FLAIR 2)', series '(Ax FLAIR|FLAIR 2)'"):
        scan_case_folder(tmp_path)


def test_missing_sequences_are_normal_and_ambiguous_ones_are_clear_errors(tmp_path):
    a = sitk.GetImageFromArray(np.random.default_rng(0).random((4, 5, 6)).astype(np.float32))
    for n in ("t1.nii.gz", "t1c.nii.gz", "flair.nii.gz"):
        sitk.WriteImage(a, str(tmp_path / n))
    found = scan_case_folder(tmp_path)
    assert set(found.sequences) == {"t1", "t1c", "flair"}            # no T2: a normal case, not an error
    assert any("not found: T2" in m for m in found.messages)
    sitk.WriteImage(a, str(tmp_path / "t2.nii.gz"))
    sitk.WriteImage(a, str(tmp_path / "T2_TSE.nii.gz"))
    with pytest.raises(InputError, match="T2 is ambiguous"):
        find_case_files(tmp_path)
    chosen = find_case_files(tmp_path, {"t2": str(tmp_path / "T2_TSE.nii.gz")})
    assert chosen["t2"].name == "T2_TSE.nii.gz"


def test_a_folder_without_flair_t2_or_t1c_is_refused(tmp_path):
    a = sitk.GetImageFromArray(np.random.default_rng(0).random((4, 5, 6)).astype(np.float32))
    sitk.WriteImage(a, str(tmp_path / "t1.nii.gz"))
    with pytest.raises(InputError, match="no FLAIR or T2"):
        find_case_files(tmp_path)


def _img(arr):
    return sitk.GetImageFromArray(np.asarray(arr))


@pytest.mark.parametrize("mask_name", ["flair_abnormality.nii.gz", "t2_seg.nii.gz", "FLAIR_mask.nrrd",
                                       "t1c_label.nii.gz", "flair_roi.nii.gz", "BraTS_001_seg.nii.gz",
                                       "lesion_flair.nii.gz"])
def test_mask_files_named_like_a_sequence_are_never_taken_for_one(tmp_path, mask_name):
    rng = np.random.default_rng(1)
    sitk.WriteImage(_img(rng.random((6, 8, 8)).astype(np.float32)), str(tmp_path / "flair.nii.gz"))
    sitk.WriteImage(_img(rng.random((6, 8, 8)).astype(np.float32)), str(tmp_path / "t2.nii.gz"))
    sitk.WriteImage(_img((rng.random((6, 8, 8)) > 0.7).astype(np.uint8)), str(tmp_path / mask_name))
    found = scan_case_folder(tmp_path)
    assert found.sequences["flair"].name == "flair.nii.gz"
    assert [m.name for m in found.masks] == [mask_name]
    assert found.mask.name == mask_name


def test_a_label_map_is_recognised_by_its_voxels_whatever_its_name(tmp_path):
    rng = np.random.default_rng(2)
    sitk.WriteImage(_img(rng.random((6, 8, 8)).astype(np.float32)), str(tmp_path / "flair.nii.gz"))
    # named like a sequence, but holds BraTS labels only (float storage too)
    sitk.WriteImage(_img(rng.integers(0, 4, (6, 8, 8)).astype(np.float32)), str(tmp_path / "t1c.nii.gz"))
    found = scan_case_folder(tmp_path)
    assert "t1c" not in found.sequences
    assert [m.name for m in found.masks] == ["t1c.nii.gz"]
    assert any("label map" in m for m in found.messages)
    # an 8-bit MRI (many grey levels) is an image, not a label map
    assert label_values(_img(rng.integers(0, 256, (6, 8, 8)).astype(np.uint8))) is None
    assert label_values(_img(np.array([[[0, 1], [1, 0]]] * 2, np.uint8))) == [0, 1]
    # an image given explicitly that is in fact a mask: a clear error naming the file
    with pytest.raises(InputError, match="label map"):
        load_case({"flair": tmp_path / "t1c.nii.gz"})


def test_no_import_circle_between_case_and_inputs():
    """case.py imports inputs.py at module level; inputs.py must not import case.py (the sequence names live in
    sequences.py): issue 12 item 7."""
    import ast
    import GliomaRadiogenomicsLib.inputs as inputs_module
    tree = ast.parse(open(inputs_module.__file__, encoding="utf-8").read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "case" not in imported and "sequences" in imported


def _ucsf_pdgm_folder(folder, with_raw: bool = True):
    """A case folder laid out like the UCSF-PDGM release: every sequence acquired and bias-field corrected
    (<id>_T1c.nii.gz, <id>_T1c_bias.nii.gz), DWI / SWI / ASL / DTI maps, a tumor segmentation with BraTS 2017-2020
    labels (1, 2, 4) and two brain masks."""
    rng = np.random.default_rng(3)

    def write(arr, name):  # 12 mm voxels: a head-sized volume for load_case's checks
        img = _img(arr)
        img.SetSpacing((12.0, 12.0, 12.0))
        sitk.WriteImage(img, str(folder / name))

    pid = "UCSF-PDGM-0004"
    folder.mkdir()
    field = np.linspace(0.8, 1.2, 8)[None, None, :].astype(np.float32)   # a smooth bias along x
    for s in ("FLAIR", "T1", "T1c", "T2", "ADC", "ASL", "DWI", "SWI", "DTI_eddy_FA", "DTI_eddy_L2", "DTI_eddy_MD"):
        acquired = rng.random((6, 8, 8)).astype(np.float32) + 0.5
        for suffix in ("", "_bias") if with_raw or s in ("ADC", "ASL", "DTI_eddy_FA", "DTI_eddy_L2") else ("_bias",):
            write(acquired / field if suffix else acquired, f"{pid}_{s}{suffix}.nii.gz")
    tumor = np.zeros((6, 8, 8), np.uint8)
    tumor[2:4, 2:5, 2:5] = 2
    tumor[2, 3, 3], tumor[3, 3, 3] = 1, 4
    write(tumor, f"{pid}_tumor_segmentation.nii.gz")
    for b in ("brain_segmentation", "brain_parenchyma_segmentation"):
        write(np.ones((6, 8, 8), np.uint8), f"{pid}_{b}.nii.gz")
    return pid


def test_a_ucsf_pdgm_case_folder_takes_the_bias_corrected_sequences_and_the_tumor_mask(tmp_path):
    """Seen: `run --case-dir UCSF-PDGM-0004_nifti` stopped with 'T1 is ambiguous (UCSF-PDGM-0004_T1.nii.gz,
    UCSF-PDGM-0004_T1_bias.nii.gz)', and with three label maps none was offered as the ROI."""
    from GliomaRadiogenomicsLib.case import load_case_folder

    folder = tmp_path / "UCSF-PDGM-0004_nifti"
    pid = _ucsf_pdgm_folder(folder)
    found = scan_case_folder(folder)
    assert {k: v.name for k, v in found.sequences.items()} == {
        s.lower(): f"{pid}_{s}_bias.nii.gz" for s in ("FLAIR", "T1", "T1c", "T2")}
    assert sum("(bias-field corrected) chosen over" in m for m in found.messages) == 4
    assert found.mask.name == f"{pid}_tumor_segmentation.nii.gz"
    unused = next(m for m in found.messages if m.startswith("images not used"))
    assert f"{pid}_ADC.nii.gz" in unused and f"{pid}_DTI_eddy_L2_bias.nii.gz" in unused and "T1c" not in unused.split(":")[1]
    case = load_case_folder(folder)
    assert Path(case.mask_path).name == f"{pid}_tumor_segmentation.nii.gz"
    assert any("brain_segmentation" in m and "not the tumor ROI" in m for m in case.messages)
    assert sorted(case.bias_corrected_inputs) == ["flair", "t1", "t1c", "t2"]   # -> feature provenance n4_input
    assert "t1c" not in load_case_folder(folder, overrides={"t1c": folder / f"{pid}_T1c.nii.gz"}).bias_corrected_inputs
    # the user's choice wins over the rule
    chosen = find_case_files(folder, {"t1c": str(folder / f"{pid}_T1c.nii.gz")})
    assert chosen["t1c"].name == f"{pid}_T1c.nii.gz" and chosen["t1"].name == f"{pid}_T1_bias.nii.gz"


def test_only_an_image_and_its_bias_corrected_copy_are_paired(tmp_path):
    a = sitk.GetImageFromArray(np.random.default_rng(0).random((4, 5, 6)).astype(np.float32))
    for n in ("flair.nii.gz", "t1c.nii.gz", "t1c_n4.nii.gz"):
        sitk.WriteImage(a, str(tmp_path / n))
    assert find_case_files(tmp_path)["t1c"].name == "t1c_n4.nii.gz"
    # an estimated bias FIELD named like a corrected copy (FSL FAST writes <name>_bias): smooth, uncorrelated with
    # the image, so not paired; nor is a copy on another grid
    field = sitk.GetImageFromArray(np.broadcast_to(np.linspace(0.9, 1.1, 6, dtype=np.float32), (4, 5, 6)).copy())
    sitk.WriteImage(a, str(tmp_path / "t1.nii.gz"))
    sitk.WriteImage(field, str(tmp_path / "t1_bias.nii.gz"))
    with pytest.raises(InputError, match="T1 is ambiguous"):
        find_case_files(tmp_path)
    moved = sitk.Image(a)
    moved.SetOrigin((0.0, 0.0, 40.0))
    sitk.WriteImage(moved, str(tmp_path / "t1_bias.nii.gz"))
    with pytest.raises(InputError, match="T1 is ambiguous"):
        find_case_files(tmp_path)
    (tmp_path / "t1_bias.nii.gz").unlink()
    sitk.WriteImage(a, str(tmp_path / "t1c_2_bias.nii.gz"))     # three candidates: still the user's choice
    with pytest.raises(InputError, match="T1c is ambiguous"):
        find_case_files(tmp_path)
    (tmp_path / "t1c_2_bias.nii.gz").unlink()
    (tmp_path / "t1c.nii.gz").rename(tmp_path / "t1c_other.nii.gz")  # two names that differ by more than the suffix
    with pytest.raises(InputError, match="T1c is ambiguous"):
        find_case_files(tmp_path)


@pytest.mark.parametrize("names,offered", [
    (["brain_mask.nii.gz", "tumor_seg.nii.gz"], "tumor_seg.nii.gz"),
    (["brain_mask.nii.gz"], None),
    (["skullstrip_mask.nii.gz", "seg.nii.gz"], "seg.nii.gz"),
    (["brain_tumor_seg.nii.gz", "brain_mask.nii.gz"], "brain_tumor_seg.nii.gz"),
    (["lesion_mask.nii.gz", "seg.nii.gz"], "lesion_mask.nii.gz"),
    (["seg_a.nii.gz", "seg_b.nii.gz"], None),
    (["flair_bet_mask.nii.gz", "seg.nii.gz"], "seg.nii.gz"),          # a skull-strip (BET / HD-BET) mask
    (["edema_tissue_seg.nii.gz"], "edema_tissue_seg.nii.gz"),           # tumor sub-region names stay tumor masks
    (["brainstem_seg.nii.gz"], "brainstem_seg.nii.gz"),
    (["GTV_brain_mask.nii.gz", "brain_mask.nii.gz"], "GTV_brain_mask.nii.gz"),
    (["BrainExtractionMask.nii.gz", "seg.nii.gz"], "seg.nii.gz"),        # ANTs' brain extraction
    (["seg.nii.gz", "et_mask.nii.gz"], None),                              # a tumor part is never preferred
    (["tumor_seg.nii.gz", "edema_seg.nii.gz"], "tumor_seg.nii.gz"),
])
def test_a_brain_mask_is_never_offered_as_the_tumor_roi(tmp_path, names, offered):
    sitk.WriteImage(_img(np.random.default_rng(1).random((6, 8, 8)).astype(np.float32)), str(tmp_path / "flair.nii.gz"))
    for n in names:
        sitk.WriteImage(_img(np.ones((6, 8, 8), np.uint8)), str(tmp_path / n))
    found = scan_case_folder(tmp_path)
    assert sorted(m.name for m in found.masks) == sorted(names)
    assert (found.mask.name if found.mask else None) == offered


def test_a_folder_whose_only_label_map_is_a_brain_mask_says_so_when_a_tumor_roi_is_asked(tmp_path):
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.pipeline import case_roi
    img = _img(np.random.default_rng(4).random((6, 8, 8)).astype(np.float32))
    img.SetSpacing((12.0, 12.0, 12.0))
    sitk.WriteImage(img, str(tmp_path / "flair.nii.gz"))
    sitk.WriteImage(_img(np.ones((6, 8, 8), np.uint8)), str(tmp_path / "brain_mask.nii.gz"))
    case = load_case_folder(tmp_path)
    assert case.mask_path is None and case.masks_set_aside == ["brain_mask.nii.gz"]
    with pytest.raises(InputError, match=r"no mask / segmentation file .*\(brain_mask.nii.gz\) are brain masks.*--segmentation FILE"):
        case_roi(case)
