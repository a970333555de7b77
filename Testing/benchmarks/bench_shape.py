#!/usr/bin/env python
"""PyRadiomics' shape class with its C mesh (cShape.calculate_coefficients) against ours (shape_fast, numpy).

Per mask: CPU seconds (best of --repeat) of the mesh call alone and of the whole shape class (what one shape job
computes: padding, mesh, PCA, 14 features), and whether every value is equal (== on the mesh values, max relative
difference over the features). Masks: the SYNTHETIC demo case's regions (full resolution), BraTS-example's reference
segmentation, and the first --lgg TCGA-LGG FLAIR abnormality masks when ../shared/data has them.

    python Testing/benchmarks/bench_shape.py [--repeat 3] [--lgg 3] [--no-demo]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))
DATA = ROOT.parent / "shared" / "data"

from GliomaRadiogenomicsLib.shape_fast import calculate_coefficients, pyradiomics_classes  # noqa: E402


def _best(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
    return best, out


def _masks(args):
    if not args.no_demo:
        from GliomaRadiogenomicsLib.synthetic import make_demo_case
        lab = make_demo_case().label
        a = sitk.GetArrayViewFromImage(lab)
        for name, m in (("demo WT", a > 0), ("demo TC", (a == 1) | (a == 3)), ("demo ET", a == 3)):
            yield name, m, lab
    brats = DATA / "cases" / "BraTS-example" / "reference_seg_algorithm.nii.gz"
    if brats.exists():
        lab = sitk.ReadImage(str(brats))
        yield "BraTS-example WT", sitk.GetArrayViewFromImage(lab) > 0, lab
    cases = sorted((DATA / "cohorts" / "tcga-lgg" / "cases").glob("*/flair_abnormality.nii.gz"))[:args.lgg]
    for f in cases:
        lab = sitk.ReadImage(str(f))
        yield f"{f.parent.name} FLAIR abnormality", sitk.GetArrayViewFromImage(lab) > 0, lab


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--lgg", type=int, default=3)
    ap.add_argument("--no-demo", action="store_true")
    args = ap.parse_args(argv)
    from radiomics import cShape, shape
    fast_cls = pyradiomics_classes()[0]
    tot = np.zeros(4)
    for name, m, ref_img in _masks(args):
        idx = np.argwhere(m)
        lo, hi = np.maximum(idx.min(axis=0) - 1, 0), np.minimum(idx.max(axis=0) + 2, m.shape)
        crop = np.ascontiguousarray(m[tuple(slice(a, b) for a, b in zip(lo, hi))])
        spacing = np.array(ref_img.GetSpacing()[::-1], float)
        padded = np.pad(crop, 1)
        t_cmesh, r_c = _best(lambda: cShape.calculate_coefficients(padded, spacing), args.repeat)
        t_omesh, r_o = _best(lambda: calculate_coefficients(padded, spacing), args.repeat)
        mesh_equal = np.array_equal(np.r_[r_c[0], r_c[1], r_c[2]], np.r_[r_o[0], r_o[1], r_o[2]])
        mask = sitk.GetImageFromArray(crop.astype(np.uint8))
        mask.SetSpacing(ref_img.GetSpacing())
        image = sitk.Cast(mask, sitk.sitkFloat32)

        def features(cls):
            fc = cls(image, mask, label=1)
            fc.enableAllFeatures()
            return {k: float(v) for k, v in fc.execute().items()}
        t_ccls, f_c = _best(lambda: features(shape.RadiomicsShape), args.repeat)
        t_ocls, f_o = _best(lambda: features(fast_cls), args.repeat)
        rel = max(abs(f_o[k] - v) / max(abs(v), 1e-12) for k, v in f_c.items() if np.isfinite(v))
        tot += (t_cmesh, t_omesh, t_ccls, t_ocls)
        sp = "x".join(f"{float(s):g}" for s in spacing)
        print(f"{name}: {crop.sum() * np.prod(spacing) / 1000:.1f} mL, spacing {sp} (z y x): "
              f"mesh C {t_cmesh:.3f} s / ours {t_omesh:.3f} s; shape class C {t_ccls:.3f} s / ours {t_ocls:.3f} s; "
              f"mesh bit-identical={mesh_equal} features max_rel_diff={rel:.2e}", flush=True)
    print(f"total: mesh C {tot[0]:.2f} s / ours {tot[1]:.2f} s ({tot[0] / max(tot[1], 1e-9):.1f}x); "
          f"shape class C {tot[2]:.2f} s / ours {tot[3]:.2f} s ({tot[2] / max(tot[3], 1e-9):.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
