#!/usr/bin/env python
"""wang2025 preset on a 4-sequence 240x240x155 case: our extraction against single-process PyRadiomics.

Both get the same normalised images and mask (BraTS-example, default-backend whole tumor) and the same PyRadiomics
settings. PyRadiomics runs the plain way: one RadiomicsFeatureExtractor.execute per sequence on the full image (shape
recomputed each time), one process. Ours: crop once with a 50-voxel pad (exact for LoG sigma 5), shape once,
sequences in parallel processes. Our time includes the [0,1] + CLAHE normalisation, PyRadiomics' does not (it gets
the normalised images); the normalisation's own time is printed too.

    python Testing/benchmarks/bench_features.py [--case DIR] [--workers N] [--label LABELMAP]
--label: use this label map (on the case's working grid, e.g. one written by an earlier run) instead of running the
default segmentation (minutes on a CPU: brats17 for a 4-sequence case); the mask's voxel count and SHA-256 are
printed either way, so two runs can be checked to measure the same mask.
Last line: speedup=<x> max_rel_diff=<d> peak_rss_mb=<m> cpu_speedup=<c>
speedup is wall time (what the user waits); cpu_speedup compares CPU seconds (ours: this process + its worker
processes), the work saved, which other jobs on a shared machine distort less than wall time. The load average
before and after is printed: compare wall-time figures only from runs on an idle machine.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))

from GliomaRadiogenomicsLib.case import SEQUENCE_NAMES, load_case_folder  # noqa: E402
from GliomaRadiogenomicsLib.features import extract_features, load_preset, normalize_images  # noqa: E402
from GliomaRadiogenomicsLib.preprocess import PreprocessOptions, preprocess  # noqa: E402
from GliomaRadiogenomicsLib.segment import get_backend  # noqa: E402


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the pool's workers are joined when it closes)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default=str(ROOT.parent / "shared" / "data" / "cases" / "BraTS-example"))
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--label", help="label map on the working grid (skips the segmentation)")
    ap.add_argument("--save-label", help="write the label map used here (for a later --label)")
    a = ap.parse_args(argv)
    case_dir = Path(a.case)
    if not case_dir.is_dir():
        from GliomaRadiogenomicsLib.synthetic import make_demo_case
        tmp = tempfile.mkdtemp()
        make_demo_case().save(tmp)
        case_dir = Path(tmp)
        print("BraTS-example absent: SYNTHETIC demo case", flush=True)
    pre = preprocess(load_case_folder(case_dir), PreprocessOptions(register=False))
    if a.label:
        label, source = sitk.ReadImage(a.label, sitk.sitkUInt8), a.label
        if label.GetSize() != pre.grid.GetSize():
            raise SystemExit(f"{a.label}: size {label.GetSize()} is not the working grid's {pre.grid.GetSize()}")
        label.CopyInformation(pre.grid)
    else:
        backend = get_backend()
        label = backend.segment(pre)
        source = f"segmentation backend {getattr(backend, 'chosen', None) or backend.name}"
    if a.save_label:
        sitk.WriteImage(label, a.save_label, True)
    preset = load_preset("wang2025")
    wt = sitk.GetArrayFromImage(label) > 0
    print(f"grid {pre.grid.GetSize()}, WT {int(wt.sum())} voxels = {wt.sum() * np.prod(pre.grid.GetSpacing()) / 1000:.1f}"
          f" mL ({source}; label sha256 {hashlib.sha256(sitk.GetArrayFromImage(label).tobytes()).hexdigest()[:12]})",
          flush=True)

    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    c0 = _cpu()
    t = time.perf_counter()
    ours = extract_features(pre, label, preset, workers=a.workers).values
    t_ours = time.perf_counter() - t
    cpu_ours = _cpu() - c0
    print(f"ours: {len(ours)} features in {t_ours:.1f} s", flush=True)

    from radiomics import featureextractor
    t = time.perf_counter()
    images = normalize_images(pre, preset)  # the reference's inputs: the same [0,1] + CLAHE images as ours
    t_norm = time.perf_counter() - t
    mask = sitk.Cast(label > 0, sitk.sitkUInt8)
    c0 = _cpu()
    t = time.perf_counter()
    ref = {}
    for seq in preset.sequences:
        ex = featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(preset.params))
        r = ex.execute(images[seq], mask)
        for k, v in r.items():
            if not k.startswith("diagnostics_"):
                ref[("mask_WT_" + k) if "_shape_" in k else f"{SEQUENCE_NAMES[seq]}_WT_{k}"] = float(v)
    t_ref = time.perf_counter() - t
    cpu_ref = _cpu() - c0
    print(f"PyRadiomics single process: {len(ref)} values in {t_ref:.1f} s", flush=True)
    missing = set(ref) ^ set(ours)
    assert not missing, f"feature sets differ: {sorted(missing)[:5]}"
    rel = [abs(ours[k] - ref[k]) / max(abs(ref[k]), 1e-12) if abs(ref[k]) > 1e-12 else abs(ours[k]) for k in ref]
    worst = max(zip(rel, ref), key=lambda x: x[0])
    print(f"worst relative difference {worst[0]:.2e} ({worst[1]})")
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(f"ours {t_ours:.1f} s wall / {cpu_ours:.1f} s CPU; PyRadiomics {t_ref:.1f} s wall / {cpu_ref:.1f} s CPU; "
          f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"normalisation ([0,1] + CLAHE, one process, part of our {t_ours:.1f} s): {t_norm:.1f} s; with it added "
          f"to PyRadiomics' side (the same work on both sides): speedup {(t_ref + t_norm) / t_ours:.2f}")
    print(f"speedup={t_ref / t_ours:.2f} max_rel_diff={worst[0]:.2e} peak_rss_mb={peak:.0f} "
          f"cpu_speedup={cpu_ref / cpu_ours:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
