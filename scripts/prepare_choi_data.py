#!/usr/bin/env python
"""Arrays for the Choi 2021 CNN (issue 17) from the TCGA-LGG cohort (../shared/data/cohorts/tcga-lgg).

Per case, as the paper's methods say (choi.py): each volume of the channel set (``--channels``, default
t1c,t2,flair,mask: the paper's T1c + T2, our FLAIR, and the manual FLAIR-abnormality mask; read from the case
folder's ``<sequence>.nii.gz`` files and ``flair_abnormality.nii.gz``) is resampled to a 128 x 128 x 128 grid over
its field of view (linear / nearest neighbour); the axial slice with the largest tumour area and the slices +-2, +-4
from it are kept (``choi.select_slices``). Stored as uint8 (the source images are 8-bit), with each channel's 3-D
foreground (voxels > 0) mean and SD for the z-scoring the training script applies. A sequence a case lacks (T2 in
the whole TCGA-LGG cohort) is stored as zeros with ``available`` False for that case and channel: the training
script refuses a variant that needs it for a case (the sequence is dropped from the variant, as in the paper's
ablation with fewer sequences; never substituted).

The outer folds are those of our LASSO models (``train.cv_splits`` on the same table, case order, strata and seed
as ``scripts/build_real_bundles.py`` / ``train.train_bundles``), per sequence family:
  folds_flair-t1-t1c  (repeats, n_cases): fold of each case in repetition r, -1 = not in that family's cohort
  folds_flair
so the CNN's out-of-fold probabilities line up with the radiomics models' repetitions.

Output (under build/, never committed): <out>/choi_slices.npz + choi_slices.json (meta). Needs SimpleITK and the
feature table of `make real-bundles` (build/tcga-lgg/features.csv).

    python scripts/prepare_choi_data.py [--cohort ../shared/data/cohorts/tcga-lgg] [--out build/choi-data] \
        [--channels t1c,t2,flair,mask]
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

from GliomaRadiogenomicsLib import choi  # noqa: E402

IMAGE_CHANNELS = ("t1", "t1c", "t2", "flair")   # <sequence>.nii.gz in the case folder
MASK_FILE = "flair_abnormality.nii.gz"           # the tumour mask channel ("mask")
CHANNELS = ("t1c", "t2", "flair", "mask")        # default: the paper's T1c + T2, FLAIR, the mask
FAMILIES = {"flair-t1-t1c": "flair,t1,t1c", "flair": "flair"}


def _real_bundles():
    spec = importlib.util.spec_from_file_location("build_real_bundles", ROOT / "scripts" / "build_real_bundles.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def family_cohort(df, sequences: str, label: str = "IDH"):
    """The case order and strata that train_bundles(method='st') uses for ``label`` on this sequence family."""
    from GliomaRadiogenomicsLib.train import add_derived_columns, restrict_to_sequences
    t, _ = restrict_to_sequences(df, sequences)
    t = add_derived_columns(t)
    t = t[t[label].notna()].reset_index(drop=True)
    strat = t[[label]].fillna(2).astype(int).astype(str).agg("".join, axis=1)
    return t, strat


def family_folds(df, sequences: str, repeats: int, folds: int, seed: int, label: str = "IDH"):
    from GliomaRadiogenomicsLib.train import cv_splits
    t, strat = family_cohort(df, sequences, label)
    jobs, k = cv_splits(strat, repeats, folds, seed)
    F = np.full((repeats, len(t)), -1, int)
    for r, f, tr, te in jobs:
        F[r, te] = f
    return t["case_id"].astype(str).tolist(), F, k


def resample_128(img, interpolator):
    """The volume resampled to GRID^3 voxels spanning the same field of view (edges aligned): choi.resample_grid."""
    return choi.resample_grid(img, interpolator, choi.GRID)


def parse_channels(spec: str) -> tuple:
    """'t1c,t2,flair,mask' -> ('t1c', 't2', 'flair', 'mask'); SystemExit naming an unknown or repeated channel, or a
    set without an image channel."""
    chans = tuple(c.strip().lower() for c in str(spec).split(",") if c.strip())
    bad = [c for c in chans if c not in IMAGE_CHANNELS + ("mask",)]
    if bad:
        raise SystemExit(f"--channels: unknown channel(s) {', '.join(bad)}; choose from "
                         f"{', '.join(IMAGE_CHANNELS + ('mask',))}")
    if len(set(chans)) != len(chans):
        raise SystemExit(f"--channels {spec}: a channel is repeated")
    if not any(c in IMAGE_CHANNELS for c in chans):
        raise SystemExit(f"--channels {spec}: needs at least one image channel ({', '.join(IMAGE_CHANNELS)})")
    return chans


def case_slices(case_dir: Path, channels=CHANNELS):
    """(5, C, 128, 128) uint8 in ``channels`` order, available (C,), norm (C, 2), facts: the case folder's
    ``<sequence>.nii.gz`` files and its mask through choi.volume_slices (the definition the run-time Choi bundle
    applies too). A sequence the folder lacks: zeros, available False (choi.volume_slices)."""
    import SimpleITK as sitk
    images = {seq: sitk.ReadImage(str(case_dir / f"{seq}.nii.gz")) for seq in channels
              if seq != "mask" and (case_dir / f"{seq}.nii.gz").is_file()}
    out, avail, norm, facts = choi.volume_slices(images, sitk.ReadImage(str(case_dir / MASK_FILE)),
                                                 tuple(channels), choi.GRID, "uint8")
    facts.pop("clipped_fraction", None)
    return out, avail, norm, facts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort", default=str(ROOT.parent / "shared" / "data" / "cohorts" / "tcga-lgg"))
    ap.add_argument("--table", default=str(ROOT / "build" / "tcga-lgg" / "features.csv"),
                    help="feature table of `make real-bundles` (defines the case order of the LASSO folds)")
    ap.add_argument("--out", default=str(ROOT / "build" / "choi-data"))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--channels", default=",".join(CHANNELS),
                    help="the stored channels, in order (default %(default)s): sequences among "
                         f"{', '.join(IMAGE_CHANNELS)} and 'mask'; a sequence a case lacks is zeros + available False")
    a = ap.parse_args(argv)
    channels = parse_channels(a.channels)
    cohort, table = Path(a.cohort), Path(a.table)
    if not (cohort / "labels.csv").is_file():
        raise SystemExit(f"{cohort}: no labels.csv (the TCGA-LGG cohort lives in ../shared/data/cohorts/tcga-lgg)")
    if not table.is_file():
        raise SystemExit(f"{table}: feature table not found; run `make real-bundles` first (it defines the folds)")
    df, _ = _real_bundles().load_table(table, cohort / "labels.csv")
    ids = df["case_id"].astype(str).tolist()
    y = df["IDH"].to_numpy(float)
    t0 = time.perf_counter()
    X, A, N, facts = [], [], [], {}
    for cid in ids:
        x, av, nm, f = case_slices(cohort / "cases" / cid, channels)
        X.append(x), A.append(av), N.append(nm)
        facts[cid] = f
        print(f"{cid}: slices {f['slices']} (max area {f['max_area_px']} px), channels "
              f"{'+'.join(c for c, v in zip(channels, av) if v)}", flush=True)
    arrays = {"images": np.stack(X), "available": np.stack(A), "norm": np.stack(N), "case_ids": np.array(ids),
              "y": y, "channels": np.array(channels), "slice_index": np.array([facts[c]["slices"] for c in ids])}
    fold_info = {}
    for fam, seqs in FAMILIES.items():
        fam_ids, F, k = family_folds(df, seqs, a.repeats, a.folds, a.seed)
        full = np.full((a.repeats, len(ids)), -1, int)
        pos = {c: i for i, c in enumerate(ids)}
        for j, c in enumerate(fam_ids):
            full[:, pos[c]] = F[:, j]
        arrays[f"folds_{fam}"] = full
        fold_info[fam] = {"sequences": seqs, "n": len(fam_ids), "n_positive": int(np.nansum(y[full[0] >= 0])),
                          "folds": k}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "choi_slices.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out / "choi_slices.npz")
    meta = {"cohort": str(cohort), "table": str(table), "n_cases": len(ids), "channels": list(channels),
            "cases_with_channel": {c: int(n) for c, n in zip(channels, arrays["available"].sum(0))},
            "grid": choi.GRID, "offsets": list(choi.SLICE_OFFSETS), "repeats": a.repeats, "seed": a.seed,
            "families": fold_info, "label": "IDH (labels.csv IDH_mutant)", "cases": facts,
            "fold_rule": "train.cv_splits(strata = IDH, repeats, folds, seed) on the family's table rows, as "
                         "train_bundles(method='st') / scripts/build_real_bundles.py"}
    (out / "choi_slices.json").write_text(json.dumps(meta, indent=1))
    size = (out / "choi_slices.npz").stat().st_size / 2 ** 20
    print(f"{len(ids)} cases -> {out}/choi_slices.npz ({size:.1f} MiB) in {time.perf_counter() - t0:.0f} s; "
          + "; ".join(f"{k}: {v['n']} cases ({v['n_positive']} IDH-mutant)" for k, v in fold_info.items()),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
