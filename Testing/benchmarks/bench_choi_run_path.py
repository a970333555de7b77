#!/usr/bin/env python
"""The Choi 2021 IDH bundle through the product's run path against its training input, on real TCGA-LGG cases.

For each case (FLAIR-family cases of ../shared/data/cohorts/tcga-lgg, spread over the cohort), three CNN / hybrid
probabilities of the same bundle:
  native  the training data's input: the case folder's own images + manual mask resampled straight to the 128 grid
          (choi.read_case_folder_images, the function prepare_choi_data.py's arrays come from);
  run     `run --case-dir CASE --segmentation case --bundle B`: the product path with the same manual mask (the
          reference as acquired, other sequences registered onto its grid, the mask through the working grid and
          back: choi.native_grid_images);
  auto    `run --case-dir CASE --bundle B`: the product's automatic segmentation instead of the manual mask.
The CNN has seen these cases in training (the final network is trained on all of them), so the probabilities are
NOT a validation; the differences show what the input path and the mask source change. Prints one row per case and
a last line ``choi_run_path max_abs_cnn_run=.. max_abs_hybrid_run=.. median_abs_hybrid_auto=.. n=..``.

    python Testing/benchmarks/bench_choi_run_path.py [--bundle choi-idh] [--cases 6] [--out build/choi-run-path]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))
COHORT = ROOT.parent / "shared" / "data" / "cohorts" / "tcga-lgg"


def main(argv=None) -> int:
    from GliomaRadiogenomicsLib import choi
    from GliomaRadiogenomicsLib.bundle import resolve_bundle_ref
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="choi-idh")
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--cohort", default=str(COHORT))
    ap.add_argument("--out", default=str(ROOT / "build" / "choi-run-path"))
    ap.add_argument("--no-auto", action="store_true", help="skip the automatic-segmentation runs")
    a = ap.parse_args(argv)
    bpath = resolve_bundle_ref(a.bundle)
    b = choi.load_choi_bundle(bpath)
    chans = b["input"]["channels"]
    folders = sorted(p for p in (Path(a.cohort) / "cases").iterdir() if p.is_dir())
    folders = [f for f in folders if all((f / f"{c}.nii.gz").is_file() for c in chans if c != "mask")]
    pick = [folders[int(i)] for i in np.linspace(0, len(folders) - 1, min(a.cases, len(folders)))]
    rows = []
    for f in pick:
        meta = json.loads((f / "case.json").read_text()) if (f / "case.json").is_file() else {}
        row = {"case": f.name}
        for mode in ("run", "auto")[: 1 if a.no_auto else 2]:
            out = Path(a.out) / f.name / mode
            cmd = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli", "run", "--case-dir", str(f), "--bundle", bpath,
                   "--out", str(out)] + (["--segmentation", "case"] if mode == "run" else [])
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                               env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "GliomaRadiogenomics")})
            if r.returncode != 0:
                print(f"{f.name} {mode}: exit {r.returncode}: {r.stderr[-400:]}", file=sys.stderr)
                continue
            doc = json.loads((out / "predictions.json").read_text())
            (e,) = [e for e in doc["bundle_tasks"] if e.get("kind") == "choi"]
            row[f"cnn_{mode}"], row[f"hybrid_{mode}"] = e.get("cnn_probability"), e.get("probability")
            if mode == "run":  # the same bundle on the training data's input, with the run's shape / loci / age
                feats = pd.read_csv(out / "features.csv").iloc[0].to_dict()
                feats.setdefault("age", meta.get("age"))
                images, mask = choi.read_case_folder_images(f, chans)
                x, _ = choi.case_input(b, images, mask)
                q, _ = choi.cnn_probability(choi.load_cnn(b), x)
                p, _ = choi.hybrid_probability(b["hybrid"], q, feats)
                row["cnn_native"], row["hybrid_native"] = q, p
        rows.append(row)
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    df = pd.DataFrame(rows)
    d_cnn = (df["cnn_run"] - df["cnn_native"]).abs()
    d_hyb = (df["hybrid_run"] - df["hybrid_native"]).abs()
    auto = (df["hybrid_auto"] - df["hybrid_run"]).abs() if "hybrid_auto" in df else pd.Series([np.nan])
    print(f"choi_run_path max_abs_cnn_run={d_cnn.max():.4f} max_abs_hybrid_run={d_hyb.max():.4f} "
          f"median_abs_hybrid_auto={auto.median():.4f} max_abs_hybrid_auto={auto.max():.4f} n={len(df)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
