"""Real data from ../shared/data (skipped with a reason when absent)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from GliomaRadiogenomicsLib.predict import validate_predictions

pytestmark = pytest.mark.realdata


def test_run_on_raw_tcga_case(shared_data, tmp_path):
    """TCGA-FG-6692: raw native T1 / T1c / T2 / FLAIR on four different grids with 5.5 mm slices."""
    case = shared_data / "cases" / "TCGA-FG-6692"
    if not case.is_dir():
        pytest.skip(f"{case} absent")
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "GliomaRadiogenomicsLib.cli", "run",
                        *sum(([f"--{s}", str(case / f"{s}.nii.gz")] for s in ("t1", "t1c", "t2", "flair")), []),
                        "--age", "50", "--sex", "F", "--out", str(out), "--workers", "2"],
                       capture_output=True, encoding="utf-8", errors="replace", timeout=1500)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads((out / "predictions.json").read_text())
    validate_predictions(doc)
    for t in ("IDH", "epilepsy", "ATRX"):
        assert 0.0 <= doc[t]["probability"] <= 1.0
    seg = sitk.ReadImage(str(out / "segmentation.nii.gz"))
    flair = sitk.ReadImage(str(case / "flair.nii.gz"))
    assert seg.GetSize() == flair.GetSize() and np.allclose(seg.GetDirection(), flair.GetDirection())
    lab = sitk.GetArrayFromImage(seg)
    assert (lab > 0).sum() > 0, "empty tumor segmentation"
    # the tumor lies inside the brain: compare with the brain mask the pipeline used (written on the FLAIR grid)
    brain = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "brain_mask.nii.gz"))) > 0
    assert doc["preprocessing"]["brain_mask"] == "deepbet"
    inside = float((brain & (lab > 0)).sum()) / float((lab > 0).sum())
    assert inside > 0.98, f"only {inside:.1%} of the tumor inside the brain mask"
    assert 1.0 < doc["segmentation"]["volumes_ml"]["WT"] < 400
    # the default segmentation on this 4-sequence case is the BraTS 2017 cascade; 5.5 mm FLAIR slices: axial only
    steps = " ".join(doc["preprocessing"].get("steps", []))
    assert "auto -> brats17" in steps and "axial networks only" in steps, steps[-2000:]
    assert "WNet -> TNet -> ENet (axial view only)" in steps
    assert 1000 < brain.sum() * np.prod(flair.GetSpacing()) / 1000 < 2200
