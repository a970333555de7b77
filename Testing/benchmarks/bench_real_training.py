#!/usr/bin/env python
"""Time of ONE fit of each estimator on the real TCGA-LGG feature table (the unit of the repeated nested CV:
10 repetitions x 5 folds + the final fit = 51 fits per training), one process.

Needs build/tcga-lgg/features.csv (`make real-bundles` or `glioma-radiogenomics extract --case-roi --location`) and
../shared/data/cohorts/tcga-lgg/labels.csv. An outer training fold is imitated by 80 % of the family's cases.

    python Testing/benchmarks/bench_real_training.py [--table build/tcga-lgg/features.csv] [--bootstrap 100]
Prints one line per family and estimator: seconds=<s>, and an estimate of the whole training on 2 cores.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))
sys.path.insert(0, str(ROOT / "scripts"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default=str(ROOT / "build" / "tcga-lgg" / "features.csv"))
    ap.add_argument("--labels", default=str(ROOT.parent / "shared" / "data" / "cohorts" / "tcga-lgg" / "labels.csv"))
    ap.add_argument("--bootstrap", type=int, default=100)
    a = ap.parse_args(argv)
    if not Path(a.table).exists() or not Path(a.labels).exists():
        print(f"skipped: {a.table} or {a.labels} absent")
        return 0
    warnings.simplefilter("ignore")
    from build_real_bundles import load_table
    from GliomaRadiogenomicsLib.train import _fit, _usable, add_derived_columns, imaging_columns, restrict_to_sequences
    df, _ = load_table(Path(a.table), Path(a.labels))
    total = 0.0
    for fam, n_liu in (("flair,t1,t1c", 3), ("flair", 1)):
        d = add_derived_columns(restrict_to_sequences(df, fam)[0])
        d = d[d.IDH.notna() & d.epilepsy.notna()].reset_index(drop=True)
        dtr = d.iloc[np.random.default_rng(0).choice(len(d), int(0.8 * len(d)), replace=False)]
        cols = _usable(dtr, imaging_columns(dtr.columns))
        times = {}
        for name, method, labels, rows in (("st", "st", ["IDH"], dtr), ("cmt", "cmt", ["IDH", "epilepsy"], dtr),
                                           ("liu", "atrx-fusion", ["ATRX"], dtr[(dtr.IDH == 1) & dtr.ATRX.notna()])):
            t = time.perf_counter()
            _fit(method, rows, labels, cols, ["age", "sex_male"], 0, a.bootstrap, n_jobs=1)
            times[name] = time.perf_counter() - t
            print(f"{fam:13s} {name:4s} n={len(rows)} imaging_columns={len(cols)} seconds={times[name]:.1f}", flush=True)
        # per family: st IDH + st epilepsy + cmt + Liu (x3 on flair-t1-t1c: two 5-repetition sensitivity variants)
        fits = 51 * (2 * times["st"] + times["cmt"] + times["liu"]) + (n_liu - 1) * 26 * times["liu"]
        total += fits / 2
    print(f"estimated_training_minutes_2_cores={total / 60:.1f} (fits only; reports add ~20 s per training)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
