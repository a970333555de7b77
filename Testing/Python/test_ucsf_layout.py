"""A case folder in the UCSF-PDGM release layout through `run --case-dir --segmentation case` (real images: the
BraTS-example case of ../shared laid out under UCSF-PDGM names; skipped without ../shared). Seen before: 'T1 is
ambiguous (UCSF-PDGM-0004_T1.nii.gz, UCSF-PDGM-0004_T1_bias.nii.gz)'."""
from __future__ import annotations

import json
import shutil

import pytest

from GliomaRadiogenomicsLib import cli
from GliomaRadiogenomicsLib.provenance import GIVEN_SUBREGIONS

PID = "UCSF-PDGM-0004"


@pytest.mark.realdata
def test_a_ucsf_pdgm_folder_runs_end_to_end(shared_data, tmp_path):
    src = shared_data / "cases" / "BraTS-example"
    folder = tmp_path / f"{PID}_nifti"
    folder.mkdir()
    for seq, name in (("flair", "FLAIR"), ("t1", "T1"), ("t1c", "T1c"), ("t2", "T2")):
        for suffix in ("", "_bias"):        # the acquired image and its bias-corrected copy (identical here)
            shutil.copy(src / f"{seq}.nii.gz", folder / f"{PID}_{name}{suffix}.nii.gz")
    for other in ("ADC", "DWI", "SWI", "ASL", "DTI_eddy_FA", "DTI_eddy_L2"):
        (folder / f"{PID}_{other}.nii.gz").symlink_to(src / "t2.nii.gz")
    shutil.copy(src / "reference_seg_algorithm.nii.gz", folder / f"{PID}_tumor_segmentation.nii.gz")  # labels 1 2 3
    shutil.copy(src / "reference_seg_algorithm.nii.gz", folder / f"{PID}_brain_segmentation.nii.gz")  # set aside
    out = tmp_path / "out"
    assert cli.main(["run", "--case-dir", str(folder), "--segmentation", "case", "--out", str(out)]) == 0
    doc = json.loads((out / "predictions.json").read_text())
    assert {k: v.rsplit("/", 1)[-1] for k, v in doc["inputs"].items()} == {
        n: f"{PID}_{n}_bias.nii.gz" for n in ("T1", "T1c", "T2", "FLAIR")}
    vol = doc["segmentation"]["volumes_ml"]
    assert vol["TC"] > 0 and vol["ET"] > 0 and vol["WT"] > vol["TC"]          # the tumor mask, not the brain's
    prov = json.loads((out / "features.provenance.json").read_text())
    assert prov["n4_input"] == ["T1", "T1c", "T2", "FLAIR"] and prov["segmentation_source"] == "given"
    assert prov["roi_subregions"] == GIVEN_SUBREGIONS
    liu = json.loads((out / "features.liu2024.provenance.json").read_text())
    assert liu["roi_subregions"] == GIVEN_SUBREGIONS                           # its own labels, none added
    for task in ("IDH", "ATRX"):
        assert doc[task]["probability"] is not None, doc[task].get("reason")
    assert not any("these features 'none'" in w for w in doc["warnings"])
