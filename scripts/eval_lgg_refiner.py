#!/usr/bin/env python
"""Does a second, voxel-wise stage that also sees T1 / T1c fix the lgg-unet2d network's failures? (measured: no)

Stacking ("auto-context"): each TCGA-LGG patient's out-of-fold network probability (the fold network that did not
see the patient, as in the benchmark) plus FLAIR, T1 and T1c on the network grid, smoothed probabilities, the
probabilities of the neighbouring slices, the signed distance to the network's outline and the slice position go
into a gradient-boosted classifier (scikit-learn ``HistGradientBoostingClassifier``) trained on the patients of the
other four folds (the same case-level folds as the network: no patient's labels train the network or the refiner
that score it; the refiner's training inputs come from networks that did see it, a slight optimistic leak). The Dice of the refined outline is compared with the network's on the network grid.

    python scripts/eval_lgg_refiner.py [--cohort ../shared/data/cohorts/tcga-lgg] [--work build/lgg-refiner]

Result (2026-11-28, 64 patients, docs/real-segmentation.md): network mean Dice 0.787 (7 below 0.5); refined 0.771
at threshold 0.5, 0.781 at 0.3, 0.787 as the mean of both (6 below 0.5): not adopted.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))
_spec = importlib.util.spec_from_file_location("train_lgg_unet2d", ROOT / "scripts" / "train_lgg_unet2d.py")
T = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(T)


def dump_case(U, models, folder: Path, fold: int, dst: Path) -> float:
    """Network-grid arrays of one patient: FLAIR input, T1 / T1c (same grid, own scale), head mask, manual mask,
    out-of-fold probability."""
    import SimpleITK as sitk

    flair = sitk.ReadImage(str(folder / "flair.nii.gz"))
    x, grid, _ = U.network_input(flair)
    y = U.mask_to_network_grid(sitk.ReadImage(str(folder / "flair_abnormality.nii.gz")), grid)
    p = U.predict_slices(models, x, flip=False)
    oriented = sitk.DICOMOrient(sitk.Cast(flair, sitk.sitkFloat32), U.ORIENTATION)
    head = U.head_mask(sitk.GetArrayFromImage(oriented))
    hm = sitk.GetImageFromArray(head.astype(np.float32))
    hm.CopyInformation(oriented)
    extra = {"head": U.mask_to_network_grid(hm, grid).astype(bool)}
    for s in ("t1", "t1c"):
        if (folder / f"{s}.nii.gz").is_file():
            im = sitk.DICOMOrient(sitk.Cast(sitk.ReadImage(str(folder / f"{s}.nii.gz")), sitk.sitkFloat32),
                                  U.ORIENTATION)
            a = sitk.GetArrayFromImage(im)
            scale = float(np.percentile(a[head] if a.shape == head.shape else a[a > 0], U.PERCENTILE))
            r = sitk.Resample(im, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
            extra[s] = U.normalise(sitk.GetArrayFromImage(r), scale).astype(np.float16)
    np.savez_compressed(dst, x=x.astype(np.float16), y=y, p=p.astype(np.float16), fold=fold, **extra)
    return T.dice(y.astype(bool), p >= 0.5)


def features(z, use_sequences: bool = True):
    from scipy import ndimage as ndi

    p, x, head = z["p"].astype(np.float32), z["x"].astype(np.float32), z["head"]
    F = {"p": p}
    for s in (2, 6, 15):
        F[f"p_s{s}"] = ndi.gaussian_filter(p, (0, s, s))
    up, down = np.concatenate([p[:1], p[:-1]]), np.concatenate([p[1:], p[-1:]])
    F["p_nb_max"], F["p_nb_min"] = np.maximum(up, down), np.minimum(up, down)
    m = p >= 0.5
    inside = np.stack([ndi.distance_transform_edt(s) for s in m])
    outside = np.stack([ndi.distance_transform_edt(~s) for s in m])
    F["sdist"] = np.clip(np.where(m, inside, -outside), -60, 60)
    ref = head & (p < 0.1)

    def rel(a):
        return a / max(float(np.median(a[ref])) if ref.any() else 1.0, 1e-3)

    F["flair"] = rel(x)
    F["flair_s2"], F["flair_s6"] = (ndi.gaussian_filter(F["flair"], (0, s, s)) for s in (2, 6))
    tv = float(np.median(x[m])) if m.sum() > 20 else np.nan
    F["flair_vs_tumor"] = x / tv if np.isfinite(tv) else np.full_like(x, np.nan)
    for s in ("t1", "t1c"):
        a = rel(z[s].astype(np.float32)) if use_sequences and s in z.files else np.full_like(x, np.nan)
        F[s], F[f"{s}_s3"] = a, ndi.gaussian_filter(a, (0, 3, 3))
    F["z_rel"] = np.broadcast_to((np.arange(len(p)) / max(len(p) - 1, 1))[:, None, None], p.shape)
    F["head_depth"] = np.stack([ndi.distance_transform_edt(s) for s in head])
    F["case_volume"] = np.full_like(x, m.sum() / 1000.0)
    return list(F), np.stack([F[k][head] for k in F], 1).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort", default=str(ROOT.parent / "shared" / "data" / "cohorts" / "tcga-lgg"))
    ap.add_argument("--work", default=str(ROOT / "build" / "lgg-refiner"))
    ap.add_argument("--no-sequences", action="store_true", help="FLAIR and probabilities only (no T1 / T1c)")
    a = ap.parse_args(argv)
    from sklearn.ensemble import HistGradientBoostingClassifier

    U = T.load_unet2d()
    man = U.read_manifest()
    work = Path(a.work)
    (work / "cases").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for f in man["folds"]:
        models = None
        for cid in f["test_cases"]:
            dst = work / "cases" / f"{cid}.npz"
            if not dst.exists():
                models = models or U.load_models(folds=str(f["fold"]))[0]
                d = dump_case(U, models, Path(a.cohort) / "cases" / cid, int(f["fold"]), dst)
                print(f"{cid}: fold {f['fold']}, network Dice {d:.3f}", flush=True)
    cases = []
    for dst in sorted((work / "cases").glob("*.npz")):
        z = np.load(dst)
        names, X = features(z, not a.no_sequences)
        cases.append({"id": dst.stem, "fold": int(z["fold"]), "X": X, "head": z["head"], "y": z["y"].astype(bool),
                      "p": z["p"].astype(np.float32)})
    rng = np.random.default_rng(0)
    rules = {"network": None, "refined_0.5": 0.5, "refined_0.3": 0.3, "refined_0.4": 0.4, "refined_0.6": 0.6,
             "mean_of_both_0.5": "blend"}
    res = {}
    for k in sorted({c["fold"] for c in cases}):
        Xs, ys, ws = [], [], []
        for c in (c for c in cases if c["fold"] != k):   # near the outline: 30 %, elsewhere 2 %, weighted back
            X, y = c["X"], c["y"][c["head"]]
            near = (np.abs(X[:, names.index("sdist")]) < 25) | y
            keep = np.where(near, rng.random(len(y)) < 0.3, rng.random(len(y)) < 0.02)
            Xs.append(X[keep])
            ys.append(y[keep])
            ws.append(np.where(near[keep], 1 / 0.3, 1 / 0.02) / len(y))
        clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=200,
                                             random_state=0)
        clf.fit(np.concatenate(Xs), np.concatenate(ys), sample_weight=np.concatenate(ws) * 1e5)
        for c in (c for c in cases if c["fold"] == k):
            q = np.zeros(c["y"].shape, np.float32)
            q[c["head"]] = clf.predict_proba(c["X"])[:, 1]
            out = {}
            for name, rule in rules.items():
                m = (c["p"] >= 0.5 if rule is None else (q + c["p"]) / 2 >= 0.5 if rule == "blend" else q >= rule)
                out[name] = T.dice(T.largest_components(m), c["y"])
            res[c["id"]] = out
        print(f"fold {k} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    summary = {}
    for name in rules:
        v = np.array([r[name] for r in res.values()])
        summary[name] = {"mean": round(float(v.mean()), 4), "median": round(float(np.median(v)), 4),
                         "min": round(float(v.min()), 3), "below_0.5": int((v < 0.5).sum()), "n": len(v)}
        print(f"{name:18s} " + " ".join(f"{kk}={vv}" for kk, vv in summary[name].items()))
    (work / "results.json").write_text(json.dumps({"summary": summary, "cases": res,
                                                   "sequences": not a.no_sequences}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
