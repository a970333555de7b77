"""The web app's upload of DICOM series (.dcm files, files with only the DICOM preamble, or a .zip holding them with
case.json) through trame-slicer's Open Files button, driven in this process as test_web_upload.py does (real trame
server-side state, real SimpleITK DICOM files written here, the project's DICOM reading converting them); bad DICOM
uploads refused naming the file; and the removal of old upload folders (upload.remove_old_uploads: real folders
and mtimes), at the app's start and before each new upload, never the loaded case's folder."""
import io
import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (make test installs it)")

from test_web_upload import client_file, upload  # noqa: E402

DAY = 24 * 3600.0


def dicom_series(img: sitk.Image, description: str, tr: float, te: float, ti=None, uid_tail="1") -> list:
    """(file name, bytes) of one DICOM slice per slice of ``img`` (int16, its spacing, origin and positions), tags
    telling the sequence as a scanner's do (SeriesDescription, TR / TE / TI), written by SimpleITK / GDCM."""
    import tempfile
    a = sitk.GetArrayFromImage(img)
    a = np.clip(a, -32768, 32767).astype(np.int16)
    vol = sitk.GetImageFromArray(a)
    vol.CopyInformation(img)
    uid = "1.2.826.0.1.3680043.2.1125.7." + uid_tail
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    out = []
    with tempfile.TemporaryDirectory() as d:
        for k in range(a.shape[0]):
            sl = vol[:, :, k]
            pos = vol.TransformIndexToPhysicalPoint((0, 0, k))
            d_ = vol.GetDirection()
            tags = {"0008|103e": description, "0018|0080": str(tr), "0018|0081": str(te), "0020|000e": uid,
                    "0020|0013": str(k + 1), "0020|0032": "\\".join(f"{v:.6f}" for v in pos),
                    "0020|0037": "\\".join(f"{v:.6f}" for v in (d_[0], d_[3], d_[6], d_[1], d_[4], d_[7])),
                    "0008|0060": "MR", "0018|0050": f"{vol.GetSpacing()[2]:.6f}"}
            if ti:
                tags["0018|0082"] = str(ti)
            for key, v in tags.items():
                sl.SetMetaData(key, v)
            p = Path(d) / f"IM{k:04d}.dcm"
            w.SetFileName(str(p))
            w.Execute(sl)
            out.append((p.name, p.read_bytes()))
    return out


@pytest.fixture(scope="module")
def flair(small_demo_dir):
    return sitk.ReadImage(str(small_demo_dir / "flair.nii.gz"))


@pytest.fixture(scope="module")
def flair_dcm(flair):
    return dicom_series(flair, "AX T2 FLAIR", 9000, 120, ti=2500, uid_tail="1")


@pytest.fixture(scope="module")
def t1_dcm(small_demo_dir):
    return dicom_series(sitk.ReadImage(str(small_demo_dir / "t1.nii.gz")), "series 5", 500, 10, uid_tail="2")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from trame.app import get_server
    from GliomaWeb.app import GliomaWebApp
    work = tmp_path_factory.mktemp("web-upload-dicom")
    return GliomaWebApp(get_server("glioma-web-upload-dicom", client_type="vue3"), work_dir=work, spacing=2.0,
                        brain_mask="threshold", backend="hyperintensity")


def folders(root: Path) -> list:
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def zipped(members) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def loaded(app, flair_dcm, t1_dcm):
    """FLAIR as .dcm files, T1 as files without a suffix (recognised by the DICOM preamble)."""
    files = ([client_file(n, d) for n, d in flair_dcm] + [client_file(f"T1_{n[:-4]}", d) for n, d in t1_dcm])
    upload(app, files)
    return files


def test_dicom_files_become_a_nifti_case_folder(app, loaded, flair, flair_dcm):
    from GliomaMRML.logic import SOURCE_PATH_ATTRIBUTE
    s = app.state
    assert s.glioma_status.startswith("uploaded case upload-"), s.glioma_status
    assert f"FLAIR converted from DICOM series 'AX T2 FLAIR' ({len(flair_dcm)} files)" in s.glioma_status
    assert "T1 converted from DICOM series 'series 5'" in s.glioma_status  # from TR / TE, files without suffix
    folder = Path(s.glioma_case_dir)
    assert folder.parent == app.work / "uploads" and folder.name.startswith("upload-")
    assert sorted(p.name for p in folder.iterdir()) == ["flair.nii.gz", "t1.nii.gz"]  # raw DICOM not kept
    src = Path(app.nodes["flair"].GetAttribute(SOURCE_PATH_ATTRIBUTE))
    assert src == folder / "flair.nii.gz" and app.nodes["t2"] is None
    got = sitk.ReadImage(str(src))  # the series' voxels and geometry, as sent
    want = np.clip(sitk.GetArrayFromImage(flair), -32768, 32767).astype(np.int16)
    assert np.array_equal(sitk.GetArrayFromImage(got), want)
    assert np.allclose(got.GetSpacing(), flair.GetSpacing(), atol=1e-4)
    assert np.allclose(got.GetOrigin(), flair.GetOrigin(), atol=1e-3)
    assert np.allclose(got.GetDirection(), flair.GetDirection(), atol=1e-5)
    assert folders(app.work / "uploads") == [folder.name]  # no staging left


def test_a_zip_with_series_folders_and_case_json(app, loaded, flair_dcm, t1_dcm):
    """A .zip: the series in their own folders (same slice names in both), case.json at the top, a localiser whose
    tags tell no sequence (named as ignored), macOS resource forks skipped."""
    scout = dicom_series(sitk.Image(8, 8, 2, sitk.sitkInt16) + 5, "localizer", 8, 30, uid_tail="3")
    members = ([(f"exam/flair/{n}", d) for n, d in flair_dcm] + [(f"exam/t1/{n}", d) for n, d in t1_dcm]
               + [(f"exam/loc/{n}", d) for n, d in scout] + [("__MACOSX/exam/flair/IM0000.dcm", b"junk"),
                                                              ("exam/.DS_Store", b"junk"),
                                                              ("case.json", json.dumps({"case_id": "dcm-07",
                                                                                        "age": 52}).encode())])
    upload(app, [client_file("exam.zip", zipped(members))])
    s = app.state
    assert app.case_id == "dcm-07" and s.glioma_age == "52", s.glioma_status
    assert s.glioma_status.startswith("uploaded case dcm-07 loaded (1 files: exam.zip)"), s.glioma_status
    assert "not recognised as a sequence (ignored): DICOM series 'localizer' (2 files)" in s.glioma_status
    assert sorted(p.name for p in Path(s.glioma_case_dir).iterdir()) == ["case.json", "flair.nii.gz", "t1.nii.gz"]


def _gap(flair_dcm):
    return [client_file(n, d) for i, (n, d) in enumerate(flair_dcm) if i != 3]


def _not_dicom(flair_dcm):
    return [client_file(n, d) for n, d in flair_dcm] + [client_file("IM9999.dcm", b"\x00" * 200 + b"not dicom")]


@pytest.mark.parametrize("files, named", [
    (_gap, "DICOM series 'AX T2 FLAIR' in the upload: 1 slice(s) missing"),  # DicomSeries.read's check
    (_not_dicom, "IM9999.dcm: not a readable DICOM image"),
    (lambda f: [client_file("exam.zip", zipped([("../IM0001.dcm", f[0][1])]))],
     "exam.zip: member '../IM0001.dcm' has a path outside the archive"),
    (lambda f: [client_file("exam.zip", zipped([(n, d) for n, d in f])[:-40])], "exam.zip: not a readable zip"),
    (lambda f: [client_file("exam.zip", zipped([("inner.zip", zipped(f[:1]))]))],
     "exam.zip: inner.zip: an archive inside the archive"),
    (lambda f: [client_file("a.zip", zipped([(f"a/{n}", d) for n, d in f])),
                client_file("b.zip", zipped([(f"b/{n}", d) for n, d in dicom_series(
                    sitk.GetImageFromArray(np.ones((3, 8, 8), np.int16)), "FLAIR 2", 9000, 120, ti=2500,
                    uid_tail="9")]))],
     "are both FLAIR: upload one series per sequence"),
    (lambda f: [client_file("localizer.dcm", dicom_series(sitk.Image(8, 8, 2, sitk.sitkInt16), "localizer", 8, 30,
                                                          uid_tail="4")[0][1])],
     "DICOM series whose sequence their tags do not tell: DICOM series 'localizer' (1 files)"),
])
def test_a_bad_dicom_upload_is_refused_naming_the_file(app, loaded, flair_dcm, files, named):
    before = (app.case_id, app.nodes["flair"], folders(app.work / "uploads"))
    upload(app, files(flair_dcm))
    status = app.state.glioma_status
    assert status.startswith("upload refused: ") and named in status, status
    assert str(app.work) not in status
    assert (app.case_id, app.nodes["flair"], folders(app.work / "uploads")) == before  # nothing loaded or left


# --- old uploads --------------------------------------------------------------------------------------------------

def _aged(folder: Path, age_s: float, now: float) -> Path:
    """Set ``folder`` and everything in it to ``age_s`` seconds before ``now``."""
    t = now - age_s
    for base, dirs, names in os.walk(folder):
        for n in names:
            os.utime(os.path.join(base, n), (t, t))
    os.utime(folder, (t, t))
    return folder


def _folder(root: Path, name: str, files=("flair.nii.gz",)) -> Path:
    d = root / name
    d.mkdir(parents=True)
    for f in files:
        (d / f).write_bytes(b"x" * 10)
    return d


def test_remove_old_uploads_by_the_newest_file(tmp_path):
    from GliomaWeb.upload import remove_old_uploads
    now = time.time()
    root = tmp_path / "uploads"
    old = _aged(_folder(root, "upload-20260101-000000"), 3 * DAY, now)
    fresh = _aged(_folder(root, "upload-20260105-000000"), 0.5 * DAY, now)
    touched = _aged(_folder(root, "upload-20260102-000000", ("flair.nii.gz", "t1.nii.gz")), 3 * DAY, now)
    os.utime(touched / "t1.nii.gz", (now - 60, now - 60))        # one file written a minute ago: still used
    in_use = _aged(_folder(root, "upload-20260103-000000"), 5 * DAY, now)
    staging = _aged(_folder(root, ".incoming-abc"), 3 * DAY, now)  # left by a killed server
    other = _aged(_folder(root, "my-case"), 9 * DAY, now)           # not an upload: never touched
    target = _aged(_folder(tmp_path, "elsewhere"), 9 * DAY, now)
    (root / "upload-20260104-000000").symlink_to(target)             # a link: neither removed nor followed
    removed = remove_old_uploads(root, 2 * DAY, in_use=[str(in_use / "flair.nii.gz"), in_use], now=now)
    assert sorted(p.name for p in removed) == [".incoming-abc", "upload-20260101-000000"]
    assert not old.exists() and not staging.exists()
    for d in (fresh, touched, in_use, other, target, target / "flair.nii.gz"):
        assert d.exists(), d
    assert remove_old_uploads(root, 0, now=now + 100 * DAY) == []     # 0: keep all
    assert remove_old_uploads(tmp_path / "none", DAY) == []


def test_the_app_removes_old_uploads_at_start_and_on_upload_never_the_loaded_one(tmp_path, flair_dcm, small_demo_dir):
    from trame.app import get_server
    from GliomaWeb.app import GliomaWebApp
    now = time.time()
    work = tmp_path / "work"
    stale = _aged(_folder(work / "uploads", "upload-20250101-000000"), 10 * DAY, now)
    loaded_at_start = _aged(_folder(work / "uploads", "upload-20250102-000000", ()), 10 * DAY, now)
    for n in ("flair.nii.gz", "t1.nii.gz"):
        (loaded_at_start / n).write_bytes((small_demo_dir / n).read_bytes())
    _aged(loaded_at_start, 10 * DAY, now)
    app = GliomaWebApp(get_server("glioma-web-upload-cleanup", client_type="vue3"), case_dir=str(loaded_at_start),
                       work_dir=work, spacing=2.0, brain_mask="threshold", backend="hyperintensity",
                       upload_max_age_s=DAY)
    assert not stale.exists() and loaded_at_start.is_dir()  # at start; the case given at start is in use
    assert app.state.glioma_case_dir == str(loaded_at_start) and app.nodes["flair"] is not None
    stale2 = _aged(_folder(work / "uploads", "upload-20250103-000000"), 2 * DAY, now)
    upload(app, [client_file(n, d) for n, d in flair_dcm])  # a new upload: the old one goes, the loaded one stays
    assert app.state.glioma_status.startswith("uploaded case upload-"), app.state.glioma_status
    assert not stale2.exists() and loaded_at_start.is_dir()
    new = Path(app.state.glioma_case_dir)
    _aged(new, 3 * DAY, now)  # the case now loaded, old: kept on the next (refused) upload, the previous one removed
    upload(app, [client_file("notes.txt", b"hi")])
    assert app.state.glioma_status.startswith("upload refused"), app.state.glioma_status
    assert new.is_dir() and (new / "flair.nii.gz").is_file()
    assert not loaded_at_start.exists()


def test_web_command_takes_the_upload_age():
    """`web --upload-max-age-hours` is an option of the web command (it once sat on `segment`, where web refused it)."""
    from GliomaRadiogenomicsLib.cli import build_parser
    assert build_parser().parse_args(["web", "--upload-max-age-hours", "2"]).upload_max_age_hours == 2.0
    assert build_parser().parse_args(["web"]).upload_max_age_hours == 168.0


def test_web_command_passes_the_segmentation_model_options(monkeypatch):
    """`web --unet-folds 0 --device cpu` reaches the app as the options of the model selected at start (the same
    dictionary `segment` / `run` build; GliomaWebApp uses it while that model is selected: test_round_trip). Only the
    server start is replaced: it would block the test."""
    from GliomaRadiogenomicsLib import cli
    served = {}
    monkeypatch.setattr(cli, "_import_web_app", lambda: lambda case, port, **kw: served.update(kw))
    assert cli.main(["web", "--unet-folds", "0", "--device", "cpu"]) == 0
    assert served["backend"] == "auto" and served["backend_options"] == {"unet_folds": "0", "device": "cpu"}
    served.clear()
    assert cli.main(["web", "--backend", "lgg-unet2d", "--unet-folds", "1,2"]) == 0
    assert served["backend_options"] == {"folds": "1,2", "device": "auto"}
