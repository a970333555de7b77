#!/usr/bin/env python
"""Segmentation quality of the default backend (and optionally an nnU-Net model) against known references.

- synthetic phantoms: full pipeline (motion, anisotropy, bias, noise) against the true label map
- BraTS-example: 4 sequences against the BraTS-2025 algorithm output (not a manual ground truth)
- CaPTk-AAAC0: FLAIR only, whole tumor against its binary label
- pyradiomics brain1: T1c only, tumor core against its label
Prints one line per case and writes a Markdown table (default docs/segmentation-quality.md).

    python Testing/benchmarks/eval_segmentation_quality.py [--phantoms 6] [--markdown docs/segmentation-quality.md]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))

from GliomaRadiogenomicsLib import synthetic as S  # noqa: E402
from GliomaRadiogenomicsLib.case import Case, load_case_folder  # noqa: E402
from GliomaRadiogenomicsLib.io import read_image  # noqa: E402
from GliomaRadiogenomicsLib.pipeline import PipelineOptions, segment_case  # noqa: E402
from GliomaRadiogenomicsLib.preprocess import PreprocessOptions  # noqa: E402
from GliomaRadiogenomicsLib.regions import dice, dice_per_region, region_mask  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "cases"


def on_native(ref: sitk.Image, native: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.Resample(ref, native, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))


def evaluate(backend="hyperintensity", backend_options=None, phantoms=6, seed=404):
    rows = []
    opts = dict(backend=backend, backend_options=backend_options or {})
    # synthetic phantoms through the full acquisition simulation
    subjects = S.draw_cohort(phantoms, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        for subj, spec in subjects:
            folder = S.render_subject(subj, spec, Path(tmp) / subj["case_id"])
            case = load_case_folder(folder)
            t = time.perf_counter()
            pre, lab, native = segment_case(case, PipelineOptions(PreprocessOptions(), **opts)).as_tuple()
            truth = on_native(read_image(folder / "label.nii.gz"), native)
            d = dice_per_region(sitk.GetArrayFromImage(native), truth)
            rows.append((f"phantom {subj['case_id']}", "T1, T1c, T2, FLAIR", "true label map", d,
                         time.perf_counter() - t))
    if (SHARED / "BraTS-example").is_dir():
        c = SHARED / "BraTS-example"
        case = load_case_folder(c)
        t = time.perf_counter()
        pre, lab, native = segment_case(case, PipelineOptions(PreprocessOptions(), **opts)).as_tuple()
        ref = on_native(read_image(c / "reference_seg_algorithm.nii.gz"), native)
        rows.append(("BraTS-example", "T1, T1c, T2, FLAIR", "BraTS-2025 algorithm output",
                     dice_per_region(sitk.GetArrayFromImage(native), ref), time.perf_counter() - t))
    if backend == "hyperintensity" and (SHARED / "CaPTk-AAAC0").is_dir():
        c = SHARED / "CaPTk-AAAC0"
        flair = read_image(c / "flair.nii.gz", "FLAIR")
        case = Case("CaPTk-AAAC0", {"flair": flair}, {"flair": str(c / "flair.nii.gz")}, required=("flair",))
        t = time.perf_counter()
        pre, lab, native = segment_case(case, PipelineOptions(PreprocessOptions(), **opts)).as_tuple()
        ref = on_native(read_image(c / "tumor_label.nii.gz"), native) > 0
        rows.append(("CaPTk-AAAC0", "FLAIR only", "CaPTk label (whole tumor)",
                     {"WT": round(dice(region_mask(sitk.GetArrayFromImage(native), "WT"), ref), 4)},
                     time.perf_counter() - t))
    if backend == "hyperintensity" and (SHARED / "pyradiomics-brain").is_dir():
        c = SHARED / "pyradiomics-brain"
        t1c = read_image(c / "brain1_image.nrrd", "T1c")
        case = Case("brain1", {"t1c": t1c}, {"t1c": str(c / "brain1_image.nrrd")}, required=("t1c",))
        t = time.perf_counter()
        pre, lab, native = segment_case(case, PipelineOptions(PreprocessOptions(reference="t1c"), **opts)).as_tuple()
        ref = on_native(read_image(c / "brain1_label.nrrd"), native) > 0
        rows.append(("pyradiomics brain1 (TCGA-02-0003)", "T1c only", "PyRadiomics test label (tumor core)",
                     {"TC": round(dice(region_mask(sitk.GetArrayFromImage(native), "TC"), ref), 4)},
                     time.perf_counter() - t))
    return rows


def markdown(rows, backend) -> str:
    lines = [f"# Segmentation quality: backend `{backend}`", "",
             "Produced by `python Testing/benchmarks/eval_segmentation_quality.py` (2-core CPU). Dice per region "
             "(WT whole tumor, TC tumor core, ET enhancing) on the reference sequence's native grid.", "",
             "| case | input | reference | Dice | seconds |", "|---|---|---|---|---|"]
    for name, inp, ref, d, sec in rows:
        lines.append(f"| {name} | {inp} | {ref} | " + ", ".join(f"{k} {v:.3f}" for k, v in d.items())
                     + f" | {sec:.0f} |")
    ph = [r[3]["WT"] for r in rows if r[0].startswith("phantom")]
    if ph:
        lines += ["", f"Synthetic phantoms: mean WT Dice {np.mean(ph):.3f} (min {np.min(ph):.3f}, n={len(ph)})."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phantoms", type=int, default=6)
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--backend", default="hyperintensity")
    ap.add_argument("--nnunet-model")
    a = ap.parse_args(argv)
    bo = {"model_folder": a.nnunet_model, "device": "auto"} if a.backend == "nnunet" else {}
    rows = evaluate(a.backend, bo, a.phantoms)
    for name, inp, ref, d, sec in rows:
        print(f"{name:40s} {inp:20s} " + " ".join(f"{k}={v:.3f}" for k, v in d.items()) + f"  ({sec:.0f} s)")
    if a.markdown:
        Path(a.markdown).write_text(markdown(rows, a.backend))
        print("wrote", a.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
