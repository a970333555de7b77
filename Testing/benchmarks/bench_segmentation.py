#!/usr/bin/env python
"""Per-stage time and peak memory of preprocessing and segmentation on a 240x240x155 case (BraTS-example, CPU).

    python Testing/benchmarks/bench_segmentation.py [--case ../shared/data/cases/BraTS-example] [--brain-masks]
           [--nnunet-model DIR] [--device cpu|cuda]
Without ../shared/data it uses the SYNTHETIC demo case resampled to 240x240x155 (Dice against its truth).
Last line: wt_dice_brats_example=<x> default_backend_seconds=<s>
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))

from GliomaRadiogenomicsLib.brainmask import compute_brain_mask  # noqa: E402
from GliomaRadiogenomicsLib.case import load_case_folder  # noqa: E402
from GliomaRadiogenomicsLib.io import read_image  # noqa: E402
from GliomaRadiogenomicsLib.preprocess import PreprocessOptions, preprocess  # noqa: E402
from GliomaRadiogenomicsLib.regions import dice_per_region  # noqa: E402
from GliomaRadiogenomicsLib.segment import get_backend  # noqa: E402


def rss_mb() -> float:
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024.0


def timed(label, fn, results):
    t = time.perf_counter()
    out = fn()
    results.append((label, time.perf_counter() - t, rss_mb()))
    print(f"{label:38s} {results[-1][1]:7.1f} s   peak RSS so far {results[-1][2]:7.0f} MB", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default=str(ROOT.parent / "shared" / "data" / "cases" / "BraTS-example"))
    ap.add_argument("--brain-masks", action="store_true", help="also time deepbet and HD-BET on the T1")
    ap.add_argument("--nnunet-model")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    case_dir = Path(a.case)
    ref_path = case_dir / "reference_seg_algorithm.nii.gz"
    tmp = None
    if not case_dir.is_dir():
        from GliomaRadiogenomicsLib.synthetic import make_demo_case
        tmp = tempfile.TemporaryDirectory()
        case_dir = Path(tmp.name)
        make_demo_case().save(case_dir)
        ref_path = case_dir / "label.nii.gz"
        print("BraTS-example absent: using the SYNTHETIC demo case", flush=True)
    results = []
    case = timed("load", lambda: load_case_folder(case_dir), results)
    print("size", case.images["flair"].GetSize(), "spacing", case.images["flair"].GetSpacing())
    pre = timed("preprocess (registration + brain mask)", lambda: preprocess(case, PreprocessOptions()), results)
    if a.brain_masks:
        for m in ("deepbet", "hdbet"):
            try:
                timed(f"brain mask {m} ({a.device})", lambda: compute_brain_mask(pre, m, a.device), results)
            except RuntimeError as exc:
                print(f"brain mask {m}: skipped ({exc})")
    lab = timed("default backend (hyperintensity)", lambda: get_backend().segment(pre), results)
    seconds = results[-1][1]
    ref = sitk.Resample(read_image(ref_path), pre.grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    d = dice_per_region(sitk.GetArrayFromImage(lab), sitk.GetArrayFromImage(ref))
    print("Dice default backend:", d)
    if a.nnunet_model:
        nl = timed(f"nnU-Net ({a.device})", lambda: get_backend("nnunet", model_folder=a.nnunet_model,
                                                               device=a.device).segment(pre), results)
        print("Dice nnU-Net:", dice_per_region(sitk.GetArrayFromImage(nl), sitk.GetArrayFromImage(ref)))
    print(f"wt_dice_brats_example={d['WT']:.4f} default_backend_seconds={seconds:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
