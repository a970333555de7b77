#!/usr/bin/env python
"""Per-stage time and peak memory of preprocessing and segmentation on a 240x240x155 case (BraTS-example, CPU), and
the backends side by side (``--compare``).

    python Testing/benchmarks/bench_segmentation.py [--case ../shared/data/cases/BraTS-example] [--brain-masks]
           [--nnunet-model DIR] [--device cpu|cuda]
Without ../shared/data it uses the SYNTHETIC demo case resampled to 240x240x155 (Dice against its truth).
Last line: wt_dice_brats_example=<x> default_backend_seconds=<s>

    python Testing/benchmarks/bench_segmentation.py --compare [--backends hyperintensity,lgg-unet2d,brats17]
           [--views axial,all] [--sets brats,tcga,cohort,phantoms] [--every 8] [--phantoms 2]
           [--substitute-t2 flair] [--device cpu|cuda] [--brats17-weights DIR] [--cohort-views axial] [--markdown FILE]
One row per case x backend: WT / TC / ET Dice and the backend's seconds (preprocessing once per case, not counted):
BraTS-example against its reference segmentation; TCGA-FG-6692 (raw clinical, no reference): plausibility (WT / TC /
ET volume in mL, fraction of the whole tumor inside the brain mask); the TCGA-LGG cohort (every N-th patient; no T2:
brats17 falls back to hyperintensity unless --substitute-t2 flair) WT against the manual FLAIR-abnormality mask
(lgg-unet2d was trained on these patients: in-sample); the SYNTHETIC phantoms (2 mm) against their truth. brats17 runs
once per --views entry (axial only vs the published 3-view fusion). Then the mean per set and backend.
"""
from __future__ import annotations

import argparse
import copy
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


def _ref_on(ref, grid):
    return sitk.GetArrayFromImage(sitk.Resample(ref, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                                sitk.sitkUInt8))


def _compare_sets(a):
    """(set name, case id, case loader, preprocess options, reference loader or None) for the chosen sets."""
    from GliomaRadiogenomicsLib.case import Case
    data = ROOT.parent / "shared" / "data"
    out = []
    sets = a.sets.split(",")
    if "brats" in sets and (data / "cases" / "BraTS-example").is_dir():
        c = data / "cases" / "BraTS-example"
        out.append(("BraTS-example", "BraTS-example", lambda c=c: load_case_folder(c), PreprocessOptions(),
                    lambda c=c: read_image(c / "reference_seg_algorithm.nii.gz")))
    if "tcga" in sets and (data / "cases" / "TCGA-FG-6692").is_dir():
        c = data / "cases" / "TCGA-FG-6692"
        out.append(("TCGA-FG-6692", "TCGA-FG-6692", lambda c=c: load_case_folder(c), PreprocessOptions(), None))
    if "cohort" in sets and (data / "cohorts" / "tcga-lgg" / "cases").is_dir():
        folders = sorted(p for p in (data / "cohorts" / "tcga-lgg" / "cases").iterdir() if p.is_dir())[::a.every]
        for c in folders:
            def load(c=c):
                imgs = {s: read_image(c / f"{s}.nii.gz") for s in ("flair", "t1", "t1c") if (c / f"{s}.nii.gz").exists()}
                return Case(c.name, imgs, required=("flair",))
            out.append(("TCGA-LGG", c.name, load, PreprocessOptions(),
                        lambda c=c: read_image(c / "flair_abnormality.nii.gz")))
    if "phantoms" in sets and a.phantoms > 0:
        from GliomaRadiogenomicsLib import synthetic as S
        tmp = Path(tempfile.mkdtemp(prefix="bench-phantoms-"))
        for subj, spec in S.draw_cohort(max(4, a.phantoms), seed=404, downsample=2)[:a.phantoms]:
            def load(subj=subj, spec=spec):
                return load_case_folder(S.render_subject(subj, spec, tmp / subj["case_id"], downsample=2))
            out.append(("phantoms (SYNTHETIC)", subj["case_id"], load,
                        PreprocessOptions(spacing=2.0, brain_mask="threshold"),
                        lambda subj=subj: read_image(tmp / subj["case_id"] / "label.nii.gz")))
    return out


def _backend_runs(a, set_name=""):
    runs = []
    for b in a.backends.split(","):
        if b == "brats17":
            views = a.cohort_views if set_name == "TCGA-LGG" and a.cohort_views else a.views
            for v in views.split(","):
                kw = {"device": a.device, "views": v, "substitute_t2": a.substitute_t2 or None}
                if a.brats17_weights:
                    kw["weights_dir"] = a.brats17_weights
                runs.append((f"brats17 ({v})", b, kw))
        elif b in ("lgg-unet2d", "nnunet"):
            runs.append((b, b, {"device": a.device}))
        else:
            runs.append((b, b, {}))
    return runs


def compare(a) -> int:
    import numpy as np
    from GliomaRadiogenomicsLib.regions import region_mask
    rows = []
    t_all = time.perf_counter()
    print(f"{'set':22s} {'case':16s} {'backend':24s} {'WT':>6s} {'TC':>6s} {'ET':>6s} {'seconds':>8s}  note", flush=True)
    for set_name, case_id, load, popt, ref_loader in _compare_sets(a):
        try:
            pre0 = preprocess(load(), popt)
        except Exception as exc:  # a case that cannot be preprocessed is reported and skipped
            print(f"{set_name:22s} {case_id:16s} preprocessing failed: {exc}", flush=True)
            continue
        ref = _ref_on(ref_loader(), pre0.grid) if ref_loader else None
        brain = sitk.GetArrayFromImage(pre0.brain_mask) > 0
        vox_ml = float(np.prod(pre0.grid.GetSpacing())) / 1000.0
        for label_name, name, kw in _backend_runs(a, set_name):
            pre = copy.copy(pre0)
            pre.steps, pre.warnings = list(pre0.steps), list(pre0.warnings)
            try:
                backend = get_backend(name, **kw)
                t = time.perf_counter()
                lab = sitk.GetArrayFromImage(backend.segment(pre))
                sec = time.perf_counter() - t
            except Exception as exc:
                print(f"{set_name:22s} {case_id:16s} {label_name:24s} failed: {type(exc).__name__}: {exc}", flush=True)
                continue
            note = "fallback: hyperintensity" if getattr(backend, "chosen", None) == "hyperintensity" and \
                name == "brats17" else ""
            if name == "brats17" and kw.get("substitute_t2") and "t2" not in pre.images:
                note = "FLAIR as T2"
            if set_name == "TCGA-FG-6692":
                wt = region_mask(lab, "WT")
                vals = (wt.sum() * vox_ml, region_mask(lab, "TC").sum() * vox_ml, region_mask(lab, "ET").sum() * vox_ml)
                inside = float((wt & brain).sum() / max(1, wt.sum()))
                note = (note + "; " if note else "") + f"volumes mL; {100 * inside:.1f}% of WT inside the brain mask"
            elif set_name == "TCGA-LGG":
                d = dice_per_region(lab, (ref > 0).astype(np.uint8) * 2, ("WT",))
                vals = (d["WT"], float("nan"), float("nan"))
                if name == "lgg-unet2d":
                    note = (note + "; " if note else "") + "in-sample (trained on this cohort)"
            else:
                d = dice_per_region(lab, ref)
                vals = (d["WT"], d["TC"], d["ET"])
            rows.append((set_name, case_id, label_name, vals, sec, note))
            print(f"{set_name:22s} {case_id:16s} {label_name:24s} {vals[0]:6.3f} {vals[1]:6.3f} {vals[2]:6.3f} "
                  f"{sec:8.1f}  {note}", flush=True)
    print("\nmean per set and backend (Dice; TCGA-FG-6692: volumes in mL)")
    print(f"{'set':22s} {'backend':24s} {'n':>3s} {'WT':>6s} {'TC':>6s} {'ET':>6s} {'s/case':>7s}")
    for set_name in dict.fromkeys(r[0] for r in rows):
        for label_name in dict.fromkeys(r[2] for r in rows):
            sel = [r for r in rows if r[0] == set_name and r[2] == label_name]
            if not sel:
                continue
            vals = np.array([r[3] for r in sel], float)
            m = [float(np.nanmean(c)) if np.isfinite(c).any() else float("nan") for c in vals.T]
            print(f"{set_name:22s} {label_name:24s} {len(sel):3d} {m[0]:6.3f} {m[1]:6.3f} {m[2]:6.3f} "
                  f"{np.mean([r[4] for r in sel]):7.1f}", flush=True)
            rows.append((set_name, f"mean (n = {len(sel)})", label_name, m, float(np.mean([r[4] for r in sel])),
                         "mean"))
    if a.markdown:
        write_markdown(a, rows, time.perf_counter() - t_all)
    return 0


def write_markdown(a, rows, seconds_total: float) -> None:
    """The run's table as markdown (written atomically), for docs/segmentation-quality.md."""
    import os
    import platform

    def f(v, vol):
        if v != v:  # NaN: region not measured
            return ""
        return f"{v:.1f} mL" if vol else f"{v:.3f}"

    lines = [f"<!-- bench_segmentation.py --compare, one run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"device {a.device}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), load average "
             f"at the end {os.getloadavg()[0]:.1f}, {seconds_total / 60:.0f} min in all; options: backends "
             f"{a.backends}, views {a.views}, cohort views {a.cohort_views or a.views}, every {a.every}, phantoms "
             f"{a.phantoms}, substitute T2 {a.substitute_t2} -->",
             "| set | case | backend | WT | TC | ET | seconds | note |", "|---|---|---|---|---|---|---|---|"]
    last_set = last_case = None
    for set_name, case_id, label_name, vals, sec, note in sorted(
            rows, key=lambda r: ([r[0] for r in rows].index(r[0]), r[5] == "mean")):
        vol = set_name == "TCGA-FG-6692"
        bold = case_id.startswith("mean")
        cells = [f(v, vol) for v in vals]
        lines.append(f"| {set_name if set_name != last_set else ''} | {case_id if case_id != last_case else ''} | "
                     f"{label_name} | " + " | ".join(f"**{c}**" if bold and c else c for c in cells)
                     + f" | {sec:.0f} | {'' if note == 'mean' else note} |")
        last_set, last_case = set_name, case_id
    tmp = Path(a.markdown).with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(a.markdown)
    print(f"-> {a.markdown}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default=str(ROOT.parent / "shared" / "data" / "cases" / "BraTS-example"))
    ap.add_argument("--brain-masks", action="store_true", help="also time deepbet and HD-BET on the T1")
    ap.add_argument("--nnunet-model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compare", action="store_true", help="backends side by side on several data sets")
    ap.add_argument("--backends", default="hyperintensity,lgg-unet2d,brats17")
    ap.add_argument("--views", default="axial,all", help="brats17 views, comma-separated runs (axial, all)")
    ap.add_argument("--sets", default="brats,tcga,cohort,phantoms")
    ap.add_argument("--every", type=int, default=8, help="TCGA-LGG cohort: every N-th patient")
    ap.add_argument("--cohort-views", default="axial",
                    help="brats17 views on the TCGA-LGG cohort (its slices are 1.6-7.3 mm thick, so the product's "
                    "auto rule runs the axial networks there); empty: the same as --views")
    ap.add_argument("--markdown", help="also write the table (every row and the means) as markdown to this file")
    ap.add_argument("--phantoms", type=int, default=2)
    ap.add_argument("--substitute-t2", choices=["flair"], help="brats17 on cases without T2: FLAIR as the T2 channel")
    ap.add_argument("--brats17-weights", help="brats17 weights folder (default: $GLIOMA_BRATS17_WEIGHTS or the package)")
    a = ap.parse_args(argv)
    if a.compare:
        return compare(a)
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
