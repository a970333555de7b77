#!/usr/bin/env python
"""Cox-LASSO radiomic risk score (Shim 2021, issue 17 item 5) on the OVERALL SURVIVAL of the real TCGA-LGG cohort.

Times: ../shared/data/tables/tcga/nationwidechildrens_clinical_patient_lgg.txt (the TCGA clinical table: one header
row of names, then two rows of alternative names / CDE ids, skipped): event = vital_status Dead; time =
death_days_to for the dead, last_contact_days_to for the living (days from the initial diagnosis). Matched on the
patient barcode (TCGA-CS-4942) to the case ids of ../shared/data/cohorts/tcga-lgg/labels.csv and of the features
(build/tcga-lgg/features.csv: radiomics inside the manual FLAIR masks, 64 cases; ``make real-bundles``).

Repeated nested CV (survival.repeated_cv_cox: the outer folds of train.cv_splits stratified by the event, every step
inside the training folds, the penalty by an inner CV of the partial likelihood, lambda.min as Shim 2021's
cv.glmnet), risk groups at each training fold's median, compared with a Cox model on age alone on the same folds.
Prints the C-index (mean, SD, bootstrap CI), td-AUC, log-rank p; writes the evaluation JSON / HTML, the survival
bundle and the Kaplan-Meier PNG of the out-of-fold risk groups.

    python scripts/evaluate_cox_lasso_os.py [--repeats 10 --folds 5 --inner-folds 10] [--out build/tcga-lgg/cox_os]
        [--docs docs/real-data]      # also copies the JSON summary and the KM figure there
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time as _time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "GliomaRadiogenomics"))

from GliomaRadiogenomicsLib import survival  # noqa: E402
from GliomaRadiogenomicsLib.io import atomic_write_json  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
CLINICAL = SHARED / "tables" / "tcga" / "nationwidechildrens_clinical_patient_lgg.txt"
LABELS = SHARED / "cohorts" / "tcga-lgg" / "labels.csv"


def overall_survival(path=CLINICAL) -> pd.DataFrame:
    """case_id, os_days, death from the TCGA clinical patient table (rows 2-3 are header rows: skipped)."""
    c = pd.read_csv(path, sep="\t", skiprows=[1, 2], dtype=str)
    dead = c["vital_status"].str.strip().eq("Dead")
    t = np.where(dead, pd.to_numeric(c["death_days_to"], errors="coerce"),
                 pd.to_numeric(c["last_contact_days_to"], errors="coerce"))
    return pd.DataFrame({"case_id": c["bcr_patient_barcode"].str.strip(), "os_days": t, "death": dead.astype(int)})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default=str(REPO / "build" / "tcga-lgg" / "features.csv"))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--inner-folds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "build" / "tcga-lgg" / "cox_os"))
    ap.add_argument("--docs", help="folder to copy the summary JSON and the KM figure to (e.g. docs/real-data)")
    a = ap.parse_args(argv)
    feats = pd.read_csv(a.table)
    labels = pd.read_csv(LABELS, usecols=["case_id"])
    os_ = overall_survival()
    df = feats[feats["case_id"].isin(labels["case_id"])].merge(os_, on="case_id", how="left")
    missing = df[df["os_days"].isna()]["case_id"].tolist()
    print(f"{len(feats)} feature rows, {len(df)} in labels.csv; no survival time for {len(missing)}: {missing}")
    df = df[df["os_days"].notna()].reset_index(drop=True)
    prov_path = Path(a.table).with_suffix(".provenance.json")
    prov = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = _time.time()
    bundle, ev = survival.train_cox_bundle(
        df, "os_days", "death", prov, trained_on=f"TCGA-LGG overall survival, {len(df)} patients (manual FLAIR "
        "masks; TCGA clinical table)", synthetic=False,
        intended_use="Research only: internal validation on 64 TCGA-LGG patients; not a prognosis.",
        seed=a.seed, repeats=a.repeats, folds=a.folds, inner_folds=a.inner_folds, times=[365.0, 730.0, 1095.0],
        report_path=out / "tcga_lgg_os_cox-lasso", progress=lambda i, n: print(f"  outer fold {i}/{n} "
                                                                              f"({_time.time() - t0:.0f} s)",
                                                                              flush=True))
    atomic_write_json(out / "tcga_lgg_os_cox-lasso.bundle.json", bundle)
    m, b = ev["model"], ev["baselines"].get("age")
    fmt = lambda s: (f"C {s['cindex_mean']:.3f} (SD {s['cindex_sd']:.3f}, range {s['cindex_min']:.3f}-"  # noqa: E731
                     f"{s['cindex_max']:.3f}; 95% CI bootstrap {s['cindex_95ci_bootstrap']}, repetitions x "
                     f"bootstrap {s['cindex_95ci_repetitions_x_bootstrap']}); td-AUC at {s['td_auc_times']} days "
                     f"{s['td_auc_mean']} (SD {s['td_auc_sd']}); log-rank p median {s['logrank_p_median']} "
                     f"(p < 0.05 in {s['logrank_repetitions_p_below_0.05']}/{s['repeats']}); majority groups "
                     f"p = {(s['logrank_majority_group'] or {}).get('p')}")
    print(f"n = {m['n']}, events = {m['events']}, {a.repeats} x {ev['design']['outer_folds']}-fold outer, "
          f"{a.inner_folds}-fold inner CV; {ev['design']['n_imaging_columns_offered']} imaging columns offered; "
          f"{_time.time() - t0:.0f} s")
    print("Cox-LASSO:", fmt(m))
    if b:
        print("age alone:", fmt(b))
        print("difference:", ev["comparison_with_baselines"]["age"])
    nf = np.asarray(ev["n_features_per_fold"])
    print(f"features per fold model: mean {nf.mean():.1f}, min {nf.min()}, max {nf.max()}; final model "
          f"{len(ev['features'])}: {dict(zip(ev['features'], np.round(ev['coefficients'], 3)))}")
    print("selected most often:", dict(list(bundle["training"]["selection_frequency_cv"].items())[:8]))
    summary = {k: v for k, v in ev.items() if k not in ("oof_risk_score_mean", "time", "event", "case_id")}
    summary["model"] = {k: v for k, v in m.items() if k != "majority_group"}
    atomic_write_json(out / "summary.json", summary)
    if a.docs:
        d = Path(a.docs)
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "tcga_lgg_os_cox-lasso.km.png", d / "tcga_lgg_os_cox-lasso_km.png")
        atomic_write_json(d / "tcga_lgg_os_cox-lasso.json", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
