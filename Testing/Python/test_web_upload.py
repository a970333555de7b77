"""The web app's upload (trame-slicer's Open Files button, driven in this process through the button's own chunk
trigger, as the browser's chunk_loader.js calls it; no browser): real NIfTI bytes become a fresh case folder on the
server, loaded by the case-folder discovery, which the app then segments and predicts; bad uploads are refused with
the file named and leave the loaded case and the uploads folder as they were."""
import asyncio
import json

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (make test installs it)")

SEQS = ("flair", "t1", "t1c", "t2")


def client_file(name: str, data: bytes, size=None) -> dict:
    """One file as trame sends it from a browser File (name, size, type, lastModified, content)."""
    return {"name": name, "size": len(data) if size is None else size, "type": "application/gzip",
            "lastModified": 0, "content": data}


@pytest.fixture(scope="module")
def app(tmp_path_factory, bundles_at_spacing):
    from trame.app import get_server
    from GliomaWeb.app import GliomaWebApp
    work = tmp_path_factory.mktemp("web-upload")
    return GliomaWebApp(get_server("glioma-web-upload", client_type="vue3"), work_dir=work, spacing=2.0,
                        brain_mask="threshold", bundles=bundles_at_spacing(2.0), backend="hyperintensity")


def upload(app, files):
    """The browser's upload: chunks through the Open Files button's trigger, then the empty end-of-upload chunk."""
    button = app._ui.load_volume_items_buttons.load_volume_files_button

    async def send():
        await button.load_chunk(files)
        await button.load_chunk([])
    asyncio.run(send())


def run_job(app, action):
    async def drive():
        action()
        await asyncio.sleep(0.1)
        while app.state.glioma_busy:
            await asyncio.sleep(0.2)
    asyncio.run(drive())


def upload_folders(app):
    return sorted(p.name for p in (app.work / "uploads").iterdir())


@pytest.fixture(scope="module")
def uploaded(app, small_demo_dir):
    files = [client_file(f"{s}.nii.gz", (small_demo_dir / f"{s}.nii.gz").read_bytes()) for s in SEQS]
    files.append(client_file("case.json", json.dumps({"case_id": "up-01", "age": 47, "sex": "F"}).encode()))
    upload(app, files)
    return files


def test_uploaded_files_become_a_case_that_segments_and_predicts(app, uploaded, small_demo_dir):
    from GliomaMRML.logic import SOURCE_PATH_ATTRIBUTE
    from pathlib import Path
    s = app.state
    assert app.case_id == "up-01" and s.glioma_case_id == "up-01", s.glioma_status
    assert s.glioma_volume_loaded and s.glioma_status.startswith("uploaded case up-01 loaded (5 files"), s.glioma_status
    assert (s.glioma_age, s.glioma_sex) == ("47", "F")   # case.json prefilled the clinical fields
    assert s.glioma_sequences.startswith("Sequences: T1, T1c, T2, FLAIR")
    folders = upload_folders(app)
    assert len(folders) == 1 and folders[0].startswith("upload-")   # one fresh folder, no staging left
    folder = app.work / "uploads" / folders[0]
    assert s.glioma_case_dir == str(folder)
    for seq in SEQS:  # each node read from the uploaded copy, byte-identical to the file sent
        src = Path(app.nodes[seq].GetAttribute(SOURCE_PATH_ATTRIBUTE))
        assert src.parent == folder and src.name == f"{seq}.nii.gz"
        assert src.read_bytes() == (small_demo_dir / f"{seq}.nii.gz").read_bytes()
    run_job(app, app.segment)
    assert app.segmentation is not None and "segmentation ready" in s.glioma_status, s.glioma_status
    run_job(app, app.predict)
    doc = app.last_document
    assert doc is not None, s.glioma_status
    assert doc["case"]["id"] == "up-01" and doc["case"]["clinical"]["age"] == 47
    assert (doc["segmentation"]["volumes_ml"]["WT"] or 0) > 0 and s.glioma_results


@pytest.mark.parametrize("files, named", [
    (lambda d: [client_file("flair.nii.gz", (d / "flair.nii.gz").read_bytes()[:5000])], "flair.nii.gz"),
    (lambda d: [client_file("flair.nii.gz", (d / "flair.nii.gz").read_bytes()), client_file("notes.txt", b"hi")],
     "notes.txt"),
    (lambda d: [client_file("t1.nii.gz", (d / "t1.nii.gz").read_bytes())], "no FLAIR or T2"),
    (lambda d: [client_file("flair.nii.gz", b"\x1f\x8b" + b"0" * 100, size=10 ** 6)],
     "flair.nii.gz: upload incomplete"),
    (lambda d: [client_file("flair.nii.gz", (d / "flair.nii.gz").read_bytes()), client_file("case.json", b"{age")],
     "case.json: not valid JSON"),
    (lambda d: [client_file("flair.nii.gz", (d / "flair.nii.gz").read_bytes()),
                client_file("FLAIR.nii.gz", (d / "flair.nii.gz").read_bytes())], "FLAIR.nii.gz: uploaded twice"),
    (lambda d: [client_file("../flair.nii.gz", (d / "flair.nii.gz").read_bytes())], "not a plain file name"),
])
def test_a_bad_upload_is_refused_naming_the_file_and_the_case_stays(app, uploaded, small_demo_dir, files, named):
    before = (app.case_id, app.nodes["flair"], upload_folders(app))
    upload(app, files(small_demo_dir))
    status = app.state.glioma_status
    assert status.startswith("upload refused: ") and named in status, status
    assert str(app.work) not in status   # the file by its name, not the server's staging path
    assert (app.case_id, app.nodes["flair"], upload_folders(app)) == before   # nothing loaded, nothing left
    assert app.state.glioma_volume_loaded


def test_a_label_map_named_like_a_sequence_is_not_taken(app, uploaded, small_demo_dir):
    """t2.nii.gz holding 0 / 1 (a mask): FLAIR alone is the case's image, the mask becomes a segmentation node (the
    ROI / reference), and the status says why T2 was not taken; an unknown image name is reported as ignored."""
    flair = sitk.ReadImage(str(small_demo_dir / "flair.nii.gz"))
    mask = sitk.Cast(flair > float(np.percentile(sitk.GetArrayViewFromImage(flair), 99)), sitk.sitkUInt8)
    path = small_demo_dir.parent / "upload-mask-t2.nii.gz"
    sitk.WriteImage(mask, str(path), True)
    upload(app, [client_file("flair.nii.gz", (small_demo_dir / "flair.nii.gz").read_bytes()),
                 client_file("t2.nii.gz", path.read_bytes()),
                 client_file("scout.nii.gz", (small_demo_dir / "t1.nii.gz").read_bytes())])
    status = app.state.glioma_status
    assert status.startswith("uploaded case upload-"), status
    assert app.nodes["flair"] is not None and app.nodes["t2"] is None
    assert "t2.nii.gz: holds only the values [0, 1] (a label map), not taken for T2" in status
    assert "not recognised as a sequence (ignored): scout.nii.gz" in status
    names = [app.scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode").GetName()
             for i in range(app.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]
    assert any("case-folder mask (t2.nii.gz)" in n for n in names), names
    assert len(upload_folders(app)) == 2
