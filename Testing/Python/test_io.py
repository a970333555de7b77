import gzip
import numpy as np
import pytest
import SimpleITK as sitk

from GliomaRadiogenomicsLib.io import InputError, atomic_write_text, read_image, write_image
from GliomaRadiogenomicsLib.case import load_case, normalize_clinical


def _img(shape=(8, 9, 10), value=None):
    a = np.random.default_rng(0).random(shape).astype(np.float32) if value is None else np.full(shape, value, np.float32)
    return sitk.GetImageFromArray(a)


def test_read_image_errors_name_file_and_problem(tmp_path):
    with pytest.raises(InputError, match="not found.*nope.nii.gz"):
        read_image(tmp_path / "nope.nii.gz", "T1")
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.*empty.nii.gz"):
        read_image(empty, "T1")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(gzip.compress(b"this is not nifti"))
    with pytest.raises(InputError, match="cannot read.*bad.nii.gz"):
        read_image(bad, "FLAIR")
    txt = tmp_path / "x.txt"
    txt.write_text("hello")
    with pytest.raises(InputError, match="unsupported extension"):
        read_image(txt)
    const = tmp_path / "const.nii.gz"
    sitk.WriteImage(_img(value=3.0), str(const))
    with pytest.raises(InputError, match="constant"):
        read_image(const, "T2")
    with pytest.raises(InputError, match="folder"):
        read_image(tmp_path)


def test_read_image_accepts_nifti_and_nrrd(tmp_path):
    for ext in (".nii.gz", ".nrrd"):
        p = tmp_path / f"ok{ext}"
        sitk.WriteImage(_img(), str(p))
        assert read_image(p).GetSize() == (10, 9, 8)


def test_four_d_single_volume_is_squeezed_multi_volume_refused(tmp_path):
    a = np.random.default_rng(1).random((2, 5, 6, 7)).astype(np.float32)
    p = tmp_path / "4d.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(a, isVector=False), str(p))
    with pytest.raises(InputError, match="4D"):
        read_image(p)


def test_atomic_write_keeps_backup(tmp_path):
    p = tmp_path / "out.txt"
    atomic_write_text(p, "first")
    atomic_write_text(p, "second", backup=True)
    assert p.read_text() == "second"
    baks = list(tmp_path.glob("out.txt.bak-*"))
    assert len(baks) == 1 and baks[0].read_text() == "first"
    assert not list(tmp_path.glob(".out.txt.*"))  # no temporary left behind
    img = tmp_path / "seg.nii.gz"
    write_image(_img(), img)
    write_image(_img(), img, backup=True)
    assert len(list(tmp_path.glob("seg.nii.gz.bak-*"))) == 1


def _head(seed: int):
    """A random volume the size of a head (10 mm voxels: 100 x 90 x 80 mm), so that the size check passes."""
    img = sitk.GetImageFromArray(np.random.default_rng(seed).random((8, 9, 10)).astype(np.float32))
    img.SetSpacing((10.0, 10.0, 10.0))
    return img


def test_load_case_reports_missing_sequence_and_bad_clinical(tmp_path):
    paths = {}
    for i, s in enumerate(("t1", "t2", "flair")):
        paths[s] = tmp_path / f"{s}.nii.gz"
        sitk.WriteImage(_head(i), str(paths[s]))
    assert load_case(paths).sequences == ["t1", "t2", "flair"]  # no T1c: a normal case
    with pytest.raises(InputError, match="FLAIR or T2"):
        load_case({"t1": paths["t1"], "t1c": paths["t2"]})
    with pytest.raises(InputError, match="T1 and FLAIR are the same file: .*flair.nii.gz; each sequence needs its own"):
        load_case({"t1": paths["flair"], "flair": paths["flair"]})
    with pytest.raises(InputError, match=r"t1.nii.gz covers only 10 x 9 x 8 mm .*too small to hold a brain"):
        sitk.WriteImage(_img(), str(paths["t1"]))
        load_case(paths)
    with pytest.raises(InputError, match="age"):
        normalize_clinical({"age": "old"})
    with pytest.raises(InputError, match="sex"):
        normalize_clinical({"sex": "X"})
    assert normalize_clinical({"age": "45", "sex": "female"}) == {"age": 45.0, "sex": "F"}


def test_non_overlapping_sequences_refused(tmp_path):
    a, b = _head(0), _head(1)
    b.SetOrigin((5000.0, 0.0, 0.0))
    pa, pb = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    sitk.WriteImage(a, str(pa))
    sitk.WriteImage(b, str(pb))
    with pytest.raises(InputError, match="does not overlap"):
        load_case({"t1": pb, "flair": pa})


def test_one_sex_encoder_refuses_unknown_values():
    from GliomaRadiogenomicsLib.case import sex_male
    from GliomaRadiogenomicsLib.predict import feature_row_with_derived
    assert [sex_male(v) for v in ("M", "male", "F", "Female", None, float("nan"), "")] == [1.0, 1.0, 0.0, 0.0,
                                                                                         None, None, None]
    with pytest.raises(InputError, match="sex 'X'"):
        feature_row_with_derived({"case_id": "c1", "sex": "X"})   # was silently encoded as female


def test_truncated_or_corrupt_gzip_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    good = tmp_path / "flair.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(rng.random((40, 64, 64)).astype(np.float32)), str(good))
    data = good.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(data[: len(data) // 3])            # an interrupted copy: ITK alone reads it silently
    with pytest.raises(InputError, match="cut.nii.gz is damaged or incomplete"):
        read_image(cut, "FLAIR")
    flipped = bytearray(data)
    flipped[-6] ^= 0xFF                                 # CRC / length trailer damaged
    bad = tmp_path / "crc.nii.gz"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(InputError, match="damaged or incomplete"):
        read_image(bad, "FLAIR")
    assert read_image(good, "FLAIR").GetSize() == (64, 64, 40)
