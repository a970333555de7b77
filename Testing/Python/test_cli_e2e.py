"""End to end through the real command line (subprocess), on the SYNTHETIC demo case at reduced resolution."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from GliomaRadiogenomicsLib.predict import validate_predictions

CLI = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, bundles_at_spacing):
    """The demo at 2 mm: the shipped bundles (1 mm) would refuse it, so test copies declared at 2 mm are passed."""
    out = tmp_path_factory.mktemp("demo_out")
    bundle_args = [a for b in bundles_at_spacing(2.0) for a in ("--bundle", b)]
    p = subprocess.run(CLI + ["demo", "--out", str(out), "--downsample", "2", "--spacing", "2",
                              "--brain-mask", "threshold", "--workers", "2"] + bundle_args, capture_output=True,
                       encoding="utf-8", errors="replace", timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return out, p


SHIPPED_DEFAULTS = json.loads((Path(__import__("GliomaRadiogenomicsLib").__file__).parent / "resources" / "models"
                               / "defaults.json").read_text())["tasks"]

def test_demo_writes_all_outputs(demo_run):
    out, p = demo_run
    for f in ("predictions.json", "features.csv", "segmentation.nii.gz", "brain_mask.nii.gz", "report.html",
              "features.provenance.json"):
        assert (out / f).exists(), f
    doc = json.loads((out / "predictions.json").read_text())
    validate_predictions(doc)
    assert doc["tasks"] == ["IDH", "epilepsy", "ATRX"]
    for t in doc["tasks"]:
        r = doc[t]
        assert 0.0 <= r["probability"] <= 1.0
        # test copies of the shipped defaults declared at 2 mm: marked synthetic, and saying what the shipped
        # default was trained on (real TCGA-LGG families; the SYNTHETIC cohort where no real model qualified)
        assert r["model"]["name"].endswith("(test copy declared at 2 mm)") and r["model"]["synthetic"] is True
        real = SHIPPED_DEFAULTS[t][0].startswith("tcga_lgg_")
        assert "TEST FIXTURE" in r["model"]["trained_on"]
        assert ("TCGA-LGG" if real else "SYNTHETIC cases") in r["model"]["trained_on"], (t, r["model"]["trained_on"])
        assert r["nomogram"]["points"] and r["label"]
    assert doc["case"]["synthetic"] is True
    assert doc["segmentation"]["volumes_ml"]["WT"] > 20
    # summary printed, with the synthetic notice and the disclaimer
    assert "IDH" in p.stdout and "not diagnoses" in p.stdout and "SYNTHETIC" in p.stdout
    # progress was shown for long steps
    assert "registering" in p.stderr and "features" in p.stderr


def test_demo_segmentation_is_on_the_flair_grid_with_brats_labels(demo_run):
    out, _ = demo_run
    seg = sitk.ReadImage(str(out / "segmentation.nii.gz"))
    flair = sitk.ReadImage(str(out / "demo_case" / "flair.nii.gz"))
    assert seg.GetSize() == flair.GetSize()
    assert np.allclose(seg.GetOrigin(), flair.GetOrigin()) and np.allclose(seg.GetSpacing(), flair.GetSpacing())
    labels = set(np.unique(sitk.GetArrayFromImage(seg)).tolist())
    assert labels <= {0, 1, 2, 3} and {2, 3} <= labels
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "demo_case" / "label.nii.gz"))) > 0
    a = sitk.GetArrayFromImage(seg) > 0
    assert 2 * (a & truth).sum() / (a.sum() + truth.sum()) > 0.7


def test_features_csv_and_report(demo_run):
    import pandas as pd
    out, _ = demo_run
    t = pd.read_csv(out / "features.csv")
    assert len(t) == 1 and t.shape[1] > 1500
    assert {"case_id", "age", "sex", "FLAIR_WT_original_glcm_Contrast"} <= set(t.columns)
    html = (out / "report.html").read_text()
    assert "SYNTHETIC" in html and "not diagnoses" in html and "data:image/png;base64" in html
    doc = json.loads((out / "predictions.json").read_text())
    for t in doc["tasks"]:  # each applied model's nomogram: its axes in the JSON, drawn in the report
        if doc[t]["probability"] is not None:
            assert doc[t]["nomogram"]["axes"] and doc[t]["nomogram"]["probability_axis"]
            assert f"alt='nomogram {t}'" in html


def test_rerun_replaces_the_previous_outputs_as_one_set(demo_run, tmp_path):
    from GliomaRadiogenomicsLib.io import read_output_set
    out, _ = demo_run
    seg = out / "segmentation.nii.gz"
    case = out / "demo_case"
    previous = read_output_set(out, verify=True)
    assert previous is not None
    previous_bytes = {n: (out / n).read_bytes() for n in previous["files"]}
    case_files = {f.name: f.read_bytes() for f in case.iterdir()}
    p = subprocess.run(CLI + ["run", "--t1", str(case / "t1.nii.gz"), "--t1c", str(case / "t1c.nii.gz"),
                              "--t2", str(case / "t2.nii.gz"), "--flair", str(case / "flair.nii.gz"),
                              "--segmentation", str(seg), "--age", "58", "--sex", "M", "--out", str(out),
                              "--spacing", "2", "--brain-mask", "threshold", "--json-progress", "--keep-previous", "1"],
                       capture_output=True, encoding="utf-8", errors="replace", timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    # the new set replaced the previous one; the previous set is one dated copy beside the folder, no .bak files;
    # the demo case (inputs in the output folder, not part of the set) is untouched
    assert not list(out.glob("*.bak-*")) and read_output_set(out, verify=True)["id"] != previous["id"]
    (copy,) = out.parent.glob(f"{out.name}.previous-*")
    assert {n: (copy / n).read_bytes() for n in previous["files"]} == previous_bytes
    assert {f.name: f.read_bytes() for f in case.iterdir()} == case_files
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    assert lines and all(0 <= x["progress"] <= 1 for x in lines)
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["case"]["clinical"]["age"] == 58
    # the run's own, unedited segmentation given back: named as the automatic one it is (its digest matches)
    assert any("automatic segmentation (" in s and "reviewed without edits" in s
               for s in doc["preprocessing"]["steps"]), doc["preprocessing"]["steps"]


def test_bad_inputs_give_clear_errors(tmp_path):
    p = subprocess.run(CLI + ["run", "--t1", str(tmp_path / "missing.nii.gz"), "--t1c", "a.nii.gz", "--t2",
                              "b.nii.gz", "--flair", "c.nii.gz", "--out", str(tmp_path / "o")],
                       capture_output=True, encoding="utf-8", errors="replace", timeout=120)
    assert p.returncode == 2
    assert "missing.nii.gz" in p.stderr and "not found" in p.stderr and "Traceback" not in p.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    p = subprocess.run(CLI + ["predict", "--bundle", str(bad), "--table", str(bad), "--out", str(tmp_path / "x.csv")],
                       capture_output=True, encoding="utf-8", errors="replace", timeout=120)
    assert p.returncode == 2 and "not a GliomaRadiogenomics model bundle" in p.stderr


def test_segment_command_default_backend_with_dice(small_demo_dir, tmp_path):
    out = tmp_path / "seg"
    p = subprocess.run(CLI + ["segment", "--case-dir", str(small_demo_dir), "--spacing", "2", "--brain-mask",
                              "threshold", "--backend", "hyperintensity", "--reference-seg", str(small_demo_dir / "label.nii.gz"), "--out", str(out)],
                       capture_output=True, encoding="utf-8", errors="replace", timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    info = json.loads((out / "segmentation.json").read_text())
    assert info["backend"] == "hyperintensity" and info["dice"]["WT"] > 0.7
    assert (out / "segmentation.nii.gz").exists() and (out / "brain_mask.nii.gz").exists()
    p = subprocess.run(CLI + ["segment", "--case-dir", str(small_demo_dir), "--backend", "nnunet", "--out", str(out)],
                       capture_output=True, encoding="utf-8", errors="replace", timeout=120)
    assert p.returncode == 2 and "model folder" in p.stderr
