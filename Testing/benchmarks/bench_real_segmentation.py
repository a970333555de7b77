#!/usr/bin/env python
"""Whole-tumor Dice of the DEFAULT product path on the real TCGA-LGG cohort (../shared/data/cohorts/tcga-lgg).

Every case goes through ``glioma-radiogenomics segment --case-dir <case> --out ...`` in a subprocess (preprocessing,
registration, brain mask, segmentation, back to the FLAIR's native grid), exactly as a user runs it. Cases that the
shipped lgg-unet2d weights were trained on are segmented only with the fold network that did NOT see them
(``--unet-folds k``, from the weights' manifest): honest out-of-fold Dice. The reference is the manual
``flair_abnormality.nii.gz``; the prediction's whole tumor is every label > 0.

    python Testing/benchmarks/bench_real_segmentation.py [--backend hyperintensity] [--every 2] [--jobs 2]
           [--out build/bench-real-seg] [--figures] [--compare build/bench-real-seg-hyperintensity/results.json]

Prints one line per case (Dice, seconds) and last: lgg_wt_dice_mean=.. median=.. min=.. n=.. seconds_per_case=..
``--figures`` writes docs/real-data/lgg-segmentation-dice.png (Dice distribution, with ``--compare``'s backend beside)
and docs/real-data/lgg-segmentation-worst.png (FLAIR, manual mask and prediction of the three worst cases).
Finished cases are reused (``--fresh`` to redo them).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))

from GliomaRadiogenomicsLib import unet2d  # noqa: E402

COHORT = ROOT.parent / "shared" / "data" / "cohorts" / "tcga-lgg"
DOCS = ROOT / "docs" / "real-data"


def out_of_fold(case_id: str, manifest: dict):
    for f in manifest.get("folds", []):
        if case_id in f.get("test_cases", []):
            return int(f["fold"])
    return None


def wt_dice(seg_path: Path, ref_path: Path) -> dict:
    seg = sitk.ReadImage(str(seg_path))
    ref = sitk.ReadImage(str(ref_path))
    ref = sitk.Resample(ref, seg, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    a = sitk.GetArrayFromImage(seg) > 0
    b = sitk.GetArrayFromImage(ref) > 0
    vox_ml = float(np.prod(seg.GetSpacing())) / 1000.0
    s = a.sum() + b.sum()
    return {"dice": 1.0 if s == 0 else float(2 * (a & b).sum() / s), "pred_ml": float(a.sum() * vox_ml),
            "ref_ml": float(b.sum() * vox_ml)}


def run_case(case_dir: Path, out: Path, backend, fold, fresh: bool, device: str) -> dict:
    res_file = out / "bench.json"
    if res_file.exists() and not fresh:
        return json.loads(res_file.read_text())
    cmd = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli", "segment", "--case-dir", str(case_dir),
           "--out", str(out), "--device", device]
    if backend:
        cmd += ["--backend", backend]
    if fold is not None and backend in (None, "auto", "lgg-unet2d"):
        cmd += ["--unet-folds", str(fold)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "GliomaRadiogenomics") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    sec = time.perf_counter() - t
    if p.returncode != 0:
        return {"case": case_dir.name, "error": (p.stderr or p.stdout).strip()[-500:], "seconds": sec, "fold": fold}
    info = json.loads((out / "segmentation.json").read_text())
    res = {"case": case_dir.name, "fold": fold, "seconds": round(sec, 1), "backend": info.get("backend"),
           "steps": [s for s in info.get("steps", []) if "backend" in s or "lgg-unet2d" in s or "segmentation" in s]}
    res.update(wt_dice(out / "segmentation.nii.gz", case_dir / "flair_abnormality.nii.gz"))
    tmp = res_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, res_file)
    return res


def brain_clip_dice(results, out_root: Path, cohort: Path) -> dict:
    """Post-hoc: would intersecting the prediction with the (dilated, ~3 mm in plane) brain mask have helped?"""
    from scipy import ndimage as ndi
    out = {}
    for r in results:
        d = out_root / r["case"]
        if "dice" not in r or not (d / "brain_mask.nii.gz").exists():
            continue
        seg = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "segmentation.nii.gz"))) > 0
        brain = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "brain_mask.nii.gz"))) > 0
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort / "cases" / r["case"] / "flair_abnormality.nii.gz"))) > 0
        brain = ndi.binary_dilation(brain, structure=np.ones((3, 7, 7), bool))
        a = seg & brain
        out[r["case"]] = float(2 * (a & ref).sum() / max(1, a.sum() + ref.sum()))
    return out


def summary_line(results) -> str:
    d = np.array([r["dice"] for r in results if "dice" in r])
    s = np.array([r["seconds"] for r in results if "dice" in r])
    if not d.size:
        return "lgg_wt_dice_mean=nan median=nan min=nan n=0 seconds_per_case=nan"
    return (f"lgg_wt_dice_mean={d.mean():.3f} median={np.median(d):.3f} min={d.min():.3f} n={d.size} "
            f"seconds_per_case={s.mean():.1f}")


def _mid_slice(mask: np.ndarray) -> int:
    area = mask.reshape(mask.shape[0], -1).sum(1)
    return int(np.argmax(area)) if area.any() else mask.shape[0] // 2


def figures(results, out_root: Path, compare=None, label="default (lgg-unet2d, out-of-fold)") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    DOCS.mkdir(parents=True, exist_ok=True)
    ok = [r for r in results if "dice" in r]
    d = np.array([r["dice"] for r in ok])
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    series = [(label, d)]
    if compare:
        series.append((f"{compare[0]}", np.array([r["dice"] for r in compare[1] if "dice" in r])))
    bins = np.linspace(0, 1, 21)
    for name, v in series:
        ax[0].hist(v, bins=bins, alpha=0.6, label=f"{name}: mean {v.mean():.3f}, median {np.median(v):.3f}, n={v.size}")
    ax[0].axvline(0.85, color="k", ls="--", lw=0.8)
    ax[0].set_xlabel("whole-tumor Dice vs manual FLAIR abnormality")
    ax[0].set_ylabel("patients")
    ax[0].legend(fontsize=7, loc="upper left")
    ax[0].set_title(f"TCGA-LGG, {d.size} patients")
    ax[1].scatter([r["ref_ml"] for r in ok], d, s=12)
    ax[1].set_xscale("log")
    ax[1].set_xlabel("manual FLAIR abnormality volume (mL, nominal geometry)")
    ax[1].set_ylabel("Dice")
    ax[1].set_ylim(0, 1)
    ax[1].set_title("Dice against lesion size")
    fig.tight_layout()
    tmp = DOCS / "lgg-segmentation-dice.tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, DOCS / "lgg-segmentation-dice.png")
    plt.close(fig)

    worst = sorted(ok, key=lambda r: r["dice"])[:3]
    fig, ax = plt.subplots(1, len(worst), figsize=(4.2 * len(worst), 4.9), layout="constrained")
    for a, r in zip(np.atleast_1d(ax), worst):
        flair = sitk.GetArrayFromImage(sitk.ReadImage(str(COHORT / "cases" / r["case"] / "flair.nii.gz")))
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(COHORT / "cases" / r["case"] / "flair_abnormality.nii.gz"))) > 0
        seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out_root / r["case"] / "segmentation.nii.gz"))) > 0
        k = _mid_slice(ref | seg)
        a.imshow(flair[k], cmap="gray")
        if ref[k].any():
            a.contour(ref[k], [0.5], colors="lime", linewidths=1.2)
        if seg[k].any():
            a.contour(seg[k], [0.5], colors="red", linewidths=1.2)
        a.set_title(f"{r['case']}  Dice {r['dice']:.2f}\nmanual {r['ref_ml']:.1f} mL (green), "
                    f"predicted {r['pred_ml']:.1f} mL (red)", fontsize=8)
        a.axis("off")
    tmp = DOCS / "lgg-segmentation-worst.tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, DOCS / "lgg-segmentation-worst.png")
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort", default=str(COHORT))
    ap.add_argument("--backend", default=None, help="default: the product default (auto)")
    ap.add_argument("--out", default=None, help="default: build/bench-real-seg[-<backend>]")
    ap.add_argument("--every", type=int, default=1, help="every n-th case (sorted ids) for a quicker subset")
    ap.add_argument("--cases", nargs="*", help="these case ids only")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--figures", action="store_true", help="write the docs/real-data figures")
    ap.add_argument("--compare", help="results.json of another backend's run, drawn beside in the figure")
    a = ap.parse_args(argv)
    cohort = Path(a.cohort)
    if not (cohort / "cases").is_dir():
        print(f"{cohort}: not found (real data lives in ../shared/data); nothing to benchmark")
        print(summary_line([]))
        return 0
    out_root = Path(a.out) if a.out else ROOT / "build" / ("bench-real-seg" + (f"-{a.backend}" if a.backend else ""))
    out_root.mkdir(parents=True, exist_ok=True)
    manifest = unet2d.read_manifest() if unet2d.weights_available() else {}
    cases = sorted(p for p in (cohort / "cases").iterdir() if (p / "flair_abnormality.nii.gz").is_file())
    if a.cases:
        cases = [c for c in cases if c.name in set(a.cases)]
    cases = cases[:: a.every]
    print(f"{len(cases)} cases, backend {a.backend or 'default (auto)'}, out-of-fold restriction "
          f"{'on' if manifest and a.backend in (None, 'auto', 'lgg-unet2d') else 'off'}, jobs {a.jobs}", flush=True)
    t0 = time.perf_counter()

    def one(c):
        fold = out_of_fold(c.name, manifest) if a.backend in (None, "auto", "lgg-unet2d") else None
        r = run_case(c, out_root / c.name, a.backend, fold, a.fresh, a.device)
        if "dice" in r:
            print(f"{r['case']}: fold {r.get('fold')} dice {r['dice']:.3f}  manual {r['ref_ml']:.1f} mL  predicted "
                  f"{r['pred_ml']:.1f} mL  {r['seconds']:.1f} s", flush=True)
        else:
            print(f"{r['case']}: FAILED {r['error']}", flush=True)
        return r

    with ThreadPoolExecutor(max(1, a.jobs)) as ex:
        results = list(ex.map(one, cases))
    doc = {"backend": a.backend or "auto", "cohort": str(cohort), "n": len(results), "jobs": a.jobs,
           "wall_s": round(time.perf_counter() - t0, 1), "summary": summary_line(results), "cases": results}
    tmp = out_root / "results.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out_root / "results.json")
    clip = brain_clip_dice(results, out_root, cohort)
    if clip:
        base = np.array([r["dice"] for r in results if r["case"] in clip])
        v = np.array([clip[r["case"]] for r in results if r["case"] in clip])
        doc["brain_clip_dice"] = {"mean": round(float(v.mean()), 4), "median": round(float(np.median(v)), 4),
                                  "min": round(float(v.min()), 4), "changed_cases": int((np.abs(v - base) > 1e-4).sum()),
                                  "per_case": clip}
        print(f"post-hoc, prediction clipped to the dilated brain mask: Dice mean {v.mean():.3f} (vs {base.mean():.3f}), "
              f"median {np.median(v):.3f}, min {v.min():.3f}, {doc['brain_clip_dice']['changed_cases']} case(s) changed")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, out_root / "results.json")
    failed = [r["case"] for r in results if "dice" not in r]
    if failed:
        print(f"{len(failed)} case(s) failed: {', '.join(failed)}")
    if a.figures:
        comp = None
        if a.compare and Path(a.compare).exists():
            c = json.loads(Path(a.compare).read_text())
            comp = (c.get("backend", "other"), c["cases"])
        figures(results, out_root, comp)
        print(f"figures: {DOCS / 'lgg-segmentation-dice.png'}, {DOCS / 'lgg-segmentation-worst.png'}")
    print(summary_line(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
