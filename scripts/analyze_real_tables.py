#!/usr/bin/env python
"""Models and statistics on the real tables in ../shared/data/tables (issues 5, 14), written to docs/real-data.md.

1. UCSF-PDGM: IDH (mutant vs wildtype) from T1c whole-tumor radiomics (PyRadiomics original, binWidth 25) + age and
   sex, trained by ``train.train_bundles`` (what ``glioma-radiogenomics train`` runs) with its defaults: single-task
   LASSO (st) and collaborative multi-task LASSO (cmt; second task WHO grade 4 by default, ``--second-task MGMT`` for
   the earlier pairing), 10 x 5-fold repeated nested cross-validation with every step inside the training folds and
   the cutoffs chosen there. st, cmt and the baselines age alone and age + sex (logistic regressions fitted on the
   same training folds) use IDENTICAL folds; per method: mean AUC, SD and range over repetitions, 95 % CIs (cases;
   cases + selection), fold-cutoff sensitivity / specificity, calibration intercept / slope with CIs; per pair: the
   per-repetition differences (mean, SD, range, repetitions won), then the DeLong p-value. The features' settings are
   our preset ``ucsf_pdgm``, so the IDH model with the higher repeated-CV mean AUC (st or cmt; ``choose_bundle``),
   trained on all cases, is shipped (resources/models/ucsf_pdgm_IDH.json) with its evaluation report. Only the
   UCSF-PDGM section of docs/real-data.md is rewritten.
2. TCGA: seizure history vs IDH, age and grade (TCGA-LGG clinical table); ATRX vs IDH and age (TCGA GBM+LGG), in
   results.json (the doc's TCGA sections with ``--tcga-doc``).

    python scripts/analyze_real_tables.py [--data ../shared/data/tables] [--bootstrap 100] [--repeats 10]
        [--folds 5] [--jobs N] [--second-task grade4|MGMT] [--no-bundle] [--out DIR] [--doc FILE] [--tcga-doc]

Run time (10 x 5, 100 rounds, --jobs 2, on a busy 2-core machine): st about 3 min, cmt about 9 min.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))

from GliomaRadiogenomicsLib.evaluation import delong_ci, delong_test  # noqa: E402
from GliomaRadiogenomicsLib.features import load_preset  # noqa: E402
from GliomaRadiogenomicsLib.io import atomic_write_json, atomic_write_text  # noqa: E402


def ucsf_table(d: Path) -> pd.DataFrame:
    f = pd.read_csv(d / "ucsf_pdgm" / "radiomic_features_T1c_bias_wholetumor.csv")
    m = pd.read_csv(d / "ucsf_pdgm" / "metadata.csv")
    norm = lambda s: re.sub(r"-0*(\d+)$", lambda g: "-" + g.group(1), str(s))  # noqa: E731  UCSF-PDGM-0004 -> -4
    f["case_id"] = f["ID"].map(norm)
    m["case_id"] = m["ID"].map(norm)
    feats = {c: ("mask_WT_" + c if "_shape_" in c else "T1c_WT_" + c) for c in f.columns if c.startswith("original_")}
    f = f[["case_id"] + list(feats)].rename(columns=feats)
    m = m.assign(age=m["Age at MRI"].astype(float), sex=m["Sex"], who_grade=m["WHO CNS Grade"],
                 IDH=(m["IDH"].str.lower() != "wildtype").astype(int),
                 MGMT=m["MGMT status"].map({"positive": 1, "negative": 0}),
                 grade4=(pd.to_numeric(m["WHO CNS Grade"], errors="coerce") == 4).astype(int))
    t = f.merge(m[["case_id", "age", "sex", "who_grade", "IDH", "MGMT", "grade4"]], on="case_id", how="inner")
    return t


def tcga(d: Path) -> dict:
    c = pd.read_csv(d / "tcga" / "nationwidechildrens_clinical_patient_lgg.txt", sep="\t", skiprows=[1, 2])
    mu = pd.read_csv(d / "tcga" / "TCGA_GBM_LGG_Mutations_all.csv")
    # IDH from the mutation table (IDH1 or IDH2 sequenced) where present, else the clinical table's IDH1 test
    seq_idh = mu[mu["IDH1"].isin(["MUTATED", "NOT_MUTATED"])].set_index("Case_ID")
    seq_idh = ((seq_idh["IDH1"] == "MUTATED") | (seq_idh["IDH2"] == "MUTATED")).astype(float)
    clin_idh = c.set_index("bcr_patient_barcode")["idh1_mutation_found"].map({"YES": 1.0, "NO": 0.0})
    c["idh"] = c["bcr_patient_barcode"].map(seq_idh).fillna(c["bcr_patient_barcode"].map(clin_idh))
    c = c[c["history_seizures"].isin(["YES", "NO"]) & c["idh"].notna()].copy()
    c["seizure"] = (c["history_seizures"] == "YES").astype(int)
    c["idh"] = c["idh"].astype(int)
    c["age"] = pd.to_numeric(c["age_at_initial_pathologic_diagnosis"], errors="coerce")
    out = {"lgg_n": int(len(c))}
    tab = pd.crosstab(c["idh"], c["seizure"])
    odds, p_fisher = stats.fisher_exact(tab.to_numpy())
    rate = c.groupby("idh")["seizure"].mean()
    out["seizure_by_idh"] = {"n_idh_mutant": int((c.idh == 1).sum()), "n_idh_wildtype": int((c.idh == 0).sum()),
                             "seizure_rate_idh_mutant": round(float(rate.get(1, np.nan)), 3),
                             "seizure_rate_idh_wildtype": round(float(rate.get(0, np.nan)), 3),
                             "odds_ratio": round(float(odds), 2), "p_fisher": float(p_fisher),
                             "p_chi2": float(stats.chi2_contingency(tab)[1])}
    a1, a0 = c.loc[c.seizure == 1, "age"].dropna(), c.loc[c.seizure == 0, "age"].dropna()
    out["seizure_by_age"] = {"median_age_seizure": float(a1.median()), "median_age_no_seizure": float(a0.median()),
                             "p_mann_whitney": float(stats.mannwhitneyu(a1, a0).pvalue)}
    g = c[c["tumor_grade"].isin(["G2", "G3"])]
    tg = pd.crosstab(g["tumor_grade"], g["seizure"])
    out["seizure_by_grade"] = {"seizure_rate_G2": round(float(g[g.tumor_grade == "G2"].seizure.mean()), 3),
                               "seizure_rate_G3": round(float(g[g.tumor_grade == "G3"].seizure.mean()), 3),
                               "p_chi2": float(stats.chi2_contingency(tg)[1])}
    # clinical prior: logistic regression seizure ~ IDH + age + grade, cross-validated AUC
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    g = g.dropna(subset=["age"])
    X = np.column_stack([g.idh, (g.age - g.age.mean()) / g.age.std(), (g.tumor_grade == "G3").astype(int)])
    p = cross_val_predict(LogisticRegression(), X, g.seizure, cv=StratifiedKFold(5, shuffle=True, random_state=0),
                          method="predict_proba")[:, 1]
    auc, lo, hi, _ = delong_ci(g.seizure.to_numpy(), p)
    coef = LogisticRegression().fit(X, g.seizure).coef_[0]
    out["seizure_clinical_model"] = {"n": int(len(g)), "auc_cv": round(auc, 3), "auc_95ci": [round(lo, 3), round(hi, 3)],
                                     "odds_ratio_idh": round(float(np.exp(coef[0])), 2),
                                     "odds_ratio_per_sd_age": round(float(np.exp(coef[1])), 2),
                                     "odds_ratio_grade3": round(float(np.exp(coef[2])), 2)}
    mu = mu[mu["IDH1"].isin(["MUTATED", "NOT_MUTATED"]) & mu["ATRX"].isin(["MUTATED", "NOT_MUTATED"])].copy()
    mu["atrx"] = (mu["ATRX"] == "MUTATED").astype(int)
    mu["idh"] = ((mu["IDH1"] == "MUTATED") | (mu.get("IDH2", "") == "MUTATED")).astype(int)
    mu["age"] = mu["Age_at_diagnosis"].map(lambda s: float(re.match(r"(\d+) years", str(s)).group(1))
                                           + float((re.search(r"(\d+) days", str(s)) or [0, 0])[1]) / 365.25
                                           if re.match(r"(\d+) years", str(s)) else np.nan)
    tab = pd.crosstab(mu["idh"], mu["atrx"])
    odds, p_f = stats.fisher_exact(tab.to_numpy())
    r = mu.groupby("idh")["atrx"].mean()
    out["atrx_by_idh"] = {"n": int(len(mu)), "atrx_rate_idh_mutant": round(float(r.get(1)), 3),
                          "atrx_rate_idh_wildtype": round(float(r.get(0)), 3), "odds_ratio": round(float(odds), 2),
                          "p_fisher": float(p_f)}
    im = mu[mu.idh == 1].dropna(subset=["age"])
    b1, b0 = im.loc[im.atrx == 1, "age"], im.loc[im.atrx == 0, "age"]
    out["atrx_by_age_within_idh_mutant"] = {"n": int(len(im)), "median_age_atrx_mutant": round(float(b1.median()), 1),
                                            "median_age_atrx_wildtype": round(float(b0.median()), 1),
                                            "p_mann_whitney": float(stats.mannwhitneyu(b1, b0).pvalue)}
    return out


# ------------------------------------------------------------------------------------------------------------------
# UCSF-PDGM IDH: train_bundles (the CLI `train` path) with repeated nested CV, every method on identical folds
# ------------------------------------------------------------------------------------------------------------------
SECOND_TASK = "grade4"  # CMT's second task: WHO grade 4 (the reference run; see ucsf_models)
TASK_LABELS = {"IDH": ("IDH-mutant", "IDH-wildtype"), "grade4": ("WHO grade 4", "WHO grade 2-3"),
               "MGMT": ("MGMT methylated", "MGMT unmethylated")}
BUNDLE_PATH = ROOT / "GliomaRadiogenomics" / "GliomaRadiogenomicsLib" / "resources" / "models" / "ucsf_pdgm_IDH.json"
USE = ("RESEARCH USE ONLY, not a diagnosis. IDH mutation probability from T1c whole-tumor radiomics "
       "(preset ucsf_pdgm: bias-corrected T1c, binWidth 25 on raw intensities) + age and sex, for adult diffuse "
       "gliomas imaged like UCSF-PDGM (3 T, 1 mm, skull-stripped). Intensity-based features depend on the "
       "scanner's intensity scale and the bias correction: validate on your own data before any use.")


def ucsf_provenance() -> dict:
    prov = load_preset("ucsf_pdgm").provenance()
    prov["source_table"] = "UCSF-PDGM radiomic_features_T1c_bias_wholetumor.csv (PyRadiomics 3.1.0)"
    prov["n4"] = True  # the released table is from UCSF's bias-corrected T1c
    prov["provenance_note"] = ("features from UCSF-PDGM's published table (radiomic_features_T1c_bias: "
                               "bias-corrected T1c, see docs/real-data.md), not from this pipeline: n4 from the "
                               "table's name; their segmentation, spacing and brain mask are not recorded")
    return prov


def _strip_labels(report: Path) -> None:
    """Committed reports keep case ids and out-of-fold probabilities, not the labels (those stay in ../shared)."""
    if report.exists():
        d = json.loads(report.read_text())
        for t in d.get("tasks", []):
            t.pop("label_values", None)
        atomic_write_json(report, d)


def paired(name_a: str, name_b: str, a: dict, b: dict, y=None, p_a=None, p_b=None) -> dict:
    """Per-repetition AUC differences (a - b) of two repeated-CV summaries on the SAME folds (mean, SD, range,
    repetitions won), then - only when the repetition-averaged predictions are given - DeLong's test on those."""
    d = np.asarray(a["auc_per_repetition"], float) - np.asarray(b["auc_per_repetition"], float)
    out = {"a": name_a, "b": name_b, "auc_diff_mean": round(float(d.mean()), 4),
           "auc_diff_sd": round(float(d.std(ddof=1)), 4) if len(d) > 1 else 0.0,
           "auc_diff_min": round(float(d.min()), 4), "auc_diff_max": round(float(d.max()), 4),
           "repetitions_a_better": int((d > 0).sum()), "repetitions_tied": int((d == 0).sum()), "repeats": int(len(d)),
           "auc_diff_per_repetition": [round(float(x), 4) for x in d]}
    if p_a is not None:
        a1, a2, z, p = delong_test(np.asarray(y, int), np.asarray(p_a, float), np.asarray(p_b, float))
        out["delong_mean_prediction"] = {"auc_a": round(a1, 4), "auc_b": round(a2, 4), "z": round(z, 3), "p": p}
    return out


def ucsf_models(t: pd.DataFrame, out: Path, *, repeats: int = 10, folds: int = 5, n_bootstrap: int = 100,
                seed: int = 7, n_jobs: Optional[int] = None, second: str = SECOND_TASK) -> dict:
    """st and cmt (IDH + ``second``) through ``train_bundles`` on ONE shared fold assignment
    (``train.shared_fold_assignment`` on IDH x ``second``); the age and age + sex baselines are fitted by
    ``train_bundles`` on the same training folds. Per method the repeated-CV figures, per pair the per-repetition
    differences. Returns the results dict (the IDH bundles under ``_bundles``: {"st": ..., "cmt": ...})."""
    from GliomaRadiogenomicsLib.train import shared_fold_assignment, train_bundles
    desc = (f"UCSF-PDGM (CC BY 4.0), {len(t)} adult diffuse gliomas (WHO 2-4) with released T1c whole-tumor "
            "radiomics; IDH by sequencing / IHC")
    assignment = shared_fold_assignment(t, ["IDH", second], repeats=repeats, folds=folds, seed=seed)
    common = dict(trained_on=desc, synthetic=False, intended_use=USE, seed=seed, n_bootstrap=n_bootstrap,
                  outer_folds=folds, repeats=repeats, n_jobs=n_jobs, fold_assignment=assignment)
    runs = {}
    for key, labels in (("st", ["IDH"]), ("cmt", ["IDH", second])):
        report = out / f"ucsf_{'_'.join(labels)}_{key}"
        t0 = time.perf_counter()
        bundles, ev = train_bundles(t, labels, key, ucsf_provenance(), tasks=labels,
                                    positive_labels=[TASK_LABELS[x][0] for x in labels],
                                    negative_labels=[TASK_LABELS[x][1] for x in labels],
                                    report_path=report, **common)
        seconds = time.perf_counter() - t0
        _strip_labels(report.with_suffix(".json"))
        runs[key] = {"bundle": bundles[0], "ev": ev["tasks"], "seconds": seconds, "report": report.name}
        print(f"[{seconds:6.0f}s] {key}: IDH AUC {bundles[0].metrics['auc_cv']} (SD {bundles[0].metrics['auc_cv_sd']})",
              flush=True)
    e_st, e_cmt = runs["st"]["ev"][0], runs["cmt"]["ev"][0]
    if e_st["case_id"] != e_cmt["case_id"]:
        raise RuntimeError("st and cmt were evaluated on different cases")
    for b in e_st["repeated_cv"]["baselines"]:  # deterministic fits: equal per-repetition AUCs <=> the same folds
        if e_st["repeated_cv"]["baselines"][b]["auc_per_repetition"] != \
                e_cmt["repeated_cv"]["baselines"][b]["auc_per_repetition"]:
            raise RuntimeError(f"baseline {b} differs between st and cmt: the folds are not identical")
    y = np.asarray(e_st["label_values"], int)
    names = {"st": "single-task LASSO (st)", "cmt": f"CMT LASSO (IDH + {second})", "age": "age alone (logistic)",
             "age + sex": "age + sex (logistic)"}
    methods, summ = {}, {}
    for k in ("st", "cmt"):
        ev, b = runs[k]["ev"][0], runs[k]["bundle"]
        cv, rep = ev["cross_validated"], ev["repeated_cv"]
        summ[k] = rep["model"]
        methods[names[k]] = {
            **rep["model"], "at_fold_cutoffs": cv["at_fold_cutoffs"], "calibration": cv["calibration_intercept_slope"],
            "auprc_mean_prediction": cv["auprc"], "brier_mean_prediction": cv["brier"],
            "n_features_per_fold": rep["n_features_per_fold"], "features_final": list(b.features),
            "selection_final": {x: b.training["method_details"].get(x) for x in
                                ("loss", "round_alpha", "round_filter", "n_shared", "n_task_specific", "kept_rounds",
                                 "selection_fallback", "alpha_1se", "n_candidates_after_filter")},
            "seconds": round(runs[k]["seconds"], 1), "report": f"docs/real-data/{runs[k]['report']}.json"}
    for k in ("age", "age + sex"):
        summ[k] = e_st["repeated_cv"]["baselines"][k]
        methods[names[k]] = {**summ[k], "columns": e_st["repeated_cv"]["design"]["baseline_columns"][k]}
    p_mean = {"st": e_st["oof_probability"], "cmt": e_cmt["oof_probability"]}
    comparisons = [paired(names["st"], names["cmt"], summ["st"], summ["cmt"], y, p_mean["st"], p_mean["cmt"])]
    for k in ("st", "cmt"):
        for b in ("age", "age + sex"):
            c = paired(names[k], names[b], summ[k], summ[b])
            tr = [x for x in runs[k]["ev"][0]["repeated_cv"]["comparisons"] if x["b"] == b][0]
            assert abs(tr["auc_diff_mean"] - c["auc_diff_mean"]) < 2e-4  # train's own paired comparison agrees
            c["delong_mean_prediction"] = tr["delong_mean_prediction"]
            comparisons.append(c)
    comparisons.append(paired(names["age + sex"], names["age"], summ["age + sex"], summ["age"]))
    sec = runs["cmt"]["ev"][1]["repeated_cv"]["model"]
    design = e_st["repeated_cv"]["design"]
    return {"n": int(len(y)), "n_idh_mutant": int(y.sum()), "second_task": second,
            "second_task_n": int(sec["n"]), "second_task_n_positive": int(sec["n_positive"]),
            "design": {**design, "folds_identical_for_all_methods": True,
                       "fold_rule": f"train.shared_fold_assignment on IDH x {second} (seed {seed}; repetition r "
                                    "shuffled with seed + 1 + r), passed to train_bundles(fold_assignment=...) for st "
                                    "and cmt; the baselines are fitted by train_bundles on the same training folds "
                                    "(their per-repetition AUCs are equal in both runs: checked)",
                       "baselines": "logistic regression on the named columns, fitted on each outer training fold, "
                                    "predicted out-of-fold"},
            "methods": methods, "comparisons": comparisons,
            "second_task_auc": {"auc_mean": sec["auc_mean"], "auc_sd": sec["auc_sd"],
                                "auc_range": [sec["auc_min"], sec["auc_max"]],
                                "auc_95ci_delong": sec["auc_95ci_delong"]},
            "method_keys": {k: names[k] for k in ("st", "cmt")},
            "_bundles": {k: runs[k]["bundle"] for k in ("st", "cmt")}}


def choose_bundle(u: dict) -> dict:
    """The IDH model shipped: st or cmt, whichever has the higher repeated-CV mean AUC on the identical folds (the
    rule of scripts/build_real_bundles.py; the choice is made on the same CV, so mildly optimistic), shipped only
    when the lower 95 % CI bound (cases + selection) is above 0.5."""
    keys = u["method_keys"]
    auc = {k: u["methods"][keys[k]]["auc_mean"] for k in keys}
    k = max(auc, key=lambda x: (auc[x], x == "st"))  # a tie goes to the simpler single-task model
    other = "cmt" if k == "st" else "st"
    c = [c for c in u["comparisons"] if {c["a"], c["b"]} == {keys["st"], keys["cmt"]}][0]
    won = c["repetitions_a_better"] if c["a"] == keys[k] else c["repeats"] - c["repetitions_a_better"] - \
        c.get("repetitions_tied", 0)
    lo = u["methods"][keys[k]]["auc_95ci_repetitions_x_bootstrap"][0]
    return {"method": k, "ships": bool(lo > 0.5),
            "rule": f"higher repeated-CV mean AUC on identical folds: {k} {auc[k]:.3f} vs {other} {auc[other]:.3f} "
                    f"(better in {won} of {c['repeats']} repetitions); chosen on the same CV (mildly optimistic); "
                    f"lower 95 % CI bound {lo:.3f} > 0.5"}


def ship_bundle(b, choice: dict, report: str, path: Path = BUNDLE_PATH) -> str:
    b.name = f"ucsf-pdgm-IDH-{choice['method']}-lasso"
    b.training["data_card"] = {
        "source": "UCSF-PDGM (Calabrese et al., Radiology: AI 2022; TCIA), CC BY 4.0: the released T1c whole-tumor "
                  "radiomics table (radiomic_features_T1c_bias_wholetumor.csv) and metadata.csv",
        "population": "adult diffuse gliomas, WHO CNS grade 2-4 (WHO 2021), preoperative 3 T MRI at UCSF",
        "roi": "UCSF-PDGM's whole-tumor segmentation (not ours)",
        "caveats": "single centre, one scanner family; features from the released table, not from this pipeline; "
                   "binWidth 25 on raw bias-corrected intensities ties texture values to the intensity scale; "
                   "internal validation only (repeated nested CV)",
        "selection": choice["rule"]}
    b.training["evaluation_report"] = report
    b.save(path)
    return str(BUNDLE_PATH.relative_to(ROOT))  # where it ships (a run writing elsewhere is copied there)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tables"))
    ap.add_argument("--bootstrap", type=int, default=100, help="stability-selection rounds (default 100)")
    ap.add_argument("--repeats", type=int, default=10, help="outer CV repetitions (default 10)")
    ap.add_argument("--folds", type=int, default=5, help="outer folds (default 5)")
    ap.add_argument("--jobs", type=int, default=None, help="processes for the outer folds (default: CPUs, max 4)")
    ap.add_argument("--second-task", default=SECOND_TASK, choices=("grade4", "MGMT"), help="CMT's second task")
    ap.add_argument("--out", default=str(ROOT / "docs" / "real-data"))
    ap.add_argument("--doc", default=str(ROOT / "docs" / "real-data.md"),
                    help="the UCSF-PDGM section of this file is replaced ('' = no doc)")
    ap.add_argument("--tcga-doc", action="store_true", help="also rewrite the doc's two TCGA clinical-table sections")
    ap.add_argument("--bundle", default=str(BUNDLE_PATH), help="where the st bundle is written")
    ap.add_argument("--no-bundle", action="store_true")
    a = ap.parse_args(argv)
    d = Path(a.data)
    if not (d / "ucsf_pdgm").is_dir():
        print(f"real tables not found in {d}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t = ucsf_table(d)
    u = ucsf_models(t, out, repeats=a.repeats, folds=a.folds, n_bootstrap=a.bootstrap, n_jobs=a.jobs,
                    second=a.second_task)
    bundles = u.pop("_bundles")
    choice = choose_bundle(u)
    b = bundles[choice["method"]]
    results = {"ucsf_n": int(len(t)), "ucsf_idh_mutant": int(t.IDH.sum()), "ucsf_mgmt_known": int(t.MGMT.notna().sum()),
               "ucsf_grade4": int(t.grade4.sum()), "ucsf_idh_wildtype_grade4": int(t.grade4[t.IDH == 0].sum()),
               "ucsf": u}
    results["bundle_choice"] = choice
    if not a.no_bundle and choice["ships"]:
        results["bundle"] = ship_bundle(b, choice, u["methods"][u["method_keys"][choice["method"]]]["report"],
                                        Path(a.bundle))
    results["bundle_features"] = list(b.features)
    results["tcga"] = tcga(d)
    atomic_write_json(out / "results.json", results)
    if a.doc:
        doc = Path(a.doc)
        text = splice_section(doc.read_text(), render_ucsf(results))
        if a.tcga_doc:
            for heading, section in render_tcga(results):
                text = splice_section(text, section, heading)
        atomic_write_text(doc, text)
    print(json.dumps({k: v for k, v in results.items() if k != "tcga"}, indent=1, default=str)[:3000])
    return 0


def splice_section(text: str, section: str, heading: str = "## UCSF-PDGM") -> str:
    """``text`` with its section starting at ``heading`` (up to the next '## ' heading) replaced by ``section``."""
    i = text.index(heading)
    j = text.find("\n## ", i + 1)
    return text[:i] + section.rstrip("\n") + "\n\n" + (text[j + 1:] if j >= 0 else "")


def _ci(v) -> str:
    return f"{v[0]:.3f} to {v[1]:.3f}" if v else ""


def render_ucsf(r: dict) -> str:
    u = r["ucsf"]
    d = u["design"]
    m = u["methods"]
    st, cmt = list(m)[0], list(m)[1]
    sel = m[st]["selection_final"]
    L = [f"## UCSF-PDGM: IDH from T1c whole-tumor radiomics + age and sex (n = {r['ucsf_n']}, "
         f"{r['ucsf_idh_mutant']} IDH-mutant)", "",
         "100 PyRadiomics 3.1.0 features released with the cohort (original image, binWidth 25 on the bias-corrected "
         "T1c; our preset `ucsf_pdgm` has exactly these settings and column set, tested), plus age and sex offered "
         "to the selection. Models trained by `train_bundles` (the function behind `glioma-radiogenomics train`) "
         f"with its defaults (Wang 2025 LASSO: loss {sel['loss']}, round alpha {sel['round_alpha']}, round filter "
         f"{sel['round_filter']}, {d['n_bootstrap']} bootstrap rounds); "
         f"**{d['repeats']} repetitions x {d['folds']}-fold nested cross-validation**, every step (missing-data rule, "
         "correlation filter, stability selection, 1-SE LASSO, the Youden cutoff) inside the training folds. "
         f"Single-task (st) and collaborative multi-task (cmt; second task: WHO grade 4, {r['ucsf_grade4']} of "
         f"{r['ucsf_n']}) ran on **identical folds** (one assignment stratified by IDH x grade 4, seed {d['seed']}; "
         "checked), and the "
         "baselines age alone and age + sex are logistic regressions fitted in the same training folds and "
         f"predicted out-of-fold. Why grade 4 as CMT's second task: it is known for every case and tied to IDH "
         f"({r['ucsf_idh_wildtype_grade4']} of {r['ucsf_n'] - r['ucsf_idh_mutant']} IDH-wildtype gliomas here are "
         "grade 4), which is what CMT's shared selection assumes, and it is the issue's reference run; MGMT (the "
         "earlier pairing, `--second-task MGMT`) is known for fewer cases and not tied to IDH. Grade enters only as "
         "a training label, never as an input. Script: `python scripts/analyze_real_tables.py`; numbers in "
         "`docs/real-data/results.json`, per-method reports `docs/real-data/ucsf_IDH_st.*` and "
         f"`docs/real-data/ucsf_IDH_{u['second_task']}_cmt.*`.", "",
         "| model | AUC mean | SD over repetitions | min-max | 95 % CI (repetitions x bootstrap: cases + selection) "
         "| 95 % CI (DeLong, cases) | sens / spec at fold-chosen cutoff | calibration slope (95 % CI) | "
         "calibration intercept (95 % CI) |",
         "|---|---|---|---|---|---|---|---|---|"]
    for name, v in m.items():
        c, cal = v.get("at_fold_cutoffs"), v.get("calibration")
        L.append(f"| {name} | {v['auc_mean']:.3f} | {v['auc_sd']:.3f} | {v['auc_min']:.3f}-{v['auc_max']:.3f} | "
                 f"{_ci(v['auc_95ci_repetitions_x_bootstrap'])} | {_ci(v['auc_95ci_delong'])} | "
                 + (f"{c['sensitivity']:.3f} / {c['specificity']:.3f} | " if c else "- | ")
                 + (f"{cal['slope']:.2f} ({_ci(cal['slope_95ci_bootstrap'])}) | "
                    f"{cal['intercept']:.2f} ({_ci(cal['intercept_95ci_bootstrap'])}) |" if cal else "- | - |"))
    L += ["", "Paired differences on the same folds, per repetition (first model minus second), before any p-value:", "",
          "| comparison | mean difference | SD | min-max | repetitions first better | DeLong p (repetition-averaged "
          "predictions) |", "|---|---|---|---|---|---|"]
    for c in u["comparisons"]:
        L.append(f"| {c['a']} vs {c['b']} | {c['auc_diff_mean']:+.3f} | {c['auc_diff_sd']:.3f} | "
                 f"{c['auc_diff_min']:+.3f} to {c['auc_diff_max']:+.3f} | {c['repetitions_a_better']}/{c['repeats']} | "
                 + (f"{c['delong_mean_prediction']['p']:.2g} |" if c.get("delong_mean_prediction") else "- |"))
    L += ["", *ucsf_findings(r), ""]
    for name in (st, cmt):
        v = m[name]
        s = v["selection_final"]
        nf = v["n_features_per_fold"]
        L.append(f"- {name}: final model (all {r['ucsf_n']} cases) {len(v['features_final'])} features: "
                 + ", ".join(f"`{f}`" for f in v["features_final"])
                 + f"; fold models {nf['mean']} features on average ({nf['min']}-{nf['max']}); final stability "
                 f"selection: {s['n_shared']} shared and {s['n_task_specific']} task-specific candidates, rounds kept "
                 f"{s['kept_rounds']}"
                 + (", selection fell back" if s["selection_fallback"] else "") + f"; run time {v['seconds']:.0f} s.")
    c = m[st]["at_fold_cutoffs"]
    L += ["", f"Classification figures use the Youden cutoff chosen on each outer training fold and applied to its "
          f"held-out cases (st: fold cutoffs {c['fold_cutoffs']['min']:.2f}-{c['fold_cutoffs']['max']:.2f}). "
          "Calibration: logistic recalibration of each repetition's pooled out-of-fold probabilities, mean over "
          "repetitions, percentile bootstrap of cases (smoothed curve: `calibration_smoothed` in the report JSON). "
          f"Second CMT task ({u['second_task']}): out-of-fold AUC {u['second_task_auc']['auc_mean']:.3f} "
          f"(SD {u['second_task_auc']['auc_sd']:.3f}). Internal validation of one centre only.", ""]
    if r.get("bundle"):
        ch = r["bundle_choice"]
        L += [f"Shipped: `{r['bundle']}`, the {'single-task' if ch['method'] == 'st' else 'CMT'} IDH model ("
              f"rule: {ch['rule']}), trained on all {r['ucsf_n']} cases, with the repeated-CV figures above, "
              "fold-chosen cutoff metrics, calibration and an rms-style nomogram (trimmed training ranges) in "
              "its card; its own cutoff (Youden on the final fit) is what `predict` applies. "
              "Apply it only to features from `--preset ucsf_pdgm` (the bundle refuses others); UCSF's T1c were "
              "N4-corrected, so run ours with `--n4` on uncorrected images, and without it on UCSF-PDGM's own "
              "`_bias` files (a case folder in the release layout takes them, and the features record `n4_input`); "
              "binWidth 25 on raw intensities ties texture values to the scanner's intensity scale, so external use "
              "needs local validation.", ""]
    return "\n".join(L)


def ucsf_findings(r: dict) -> list:
    """Sentences read off the figures (no claim the numbers do not carry)."""
    u = r["ucsf"]
    m = u["methods"]
    names = list(m)
    comp = {(c["a"], c["b"]): c for c in u["comparisons"]}
    out = []
    c = comp[(names[0], names[1])]
    out.append(f"st vs cmt: mean per-repetition difference {c['auc_diff_mean']:+.3f} (range {c['auc_diff_min']:+.3f} "
               f"to {c['auc_diff_max']:+.3f}), st better in {c['repetitions_a_better']} of {c['repeats']} "
               f"repetitions; the two AUCs' SDs over repetitions are {m[names[0]]['auc_sd']:.3f} and "
               f"{m[names[1]]['auc_sd']:.3f}"
               + ("; neither is better in at least 80 % of the repetitions."
                  if 0.2 * c["repeats"] < c["repetitions_a_better"] < 0.8 * c["repeats"] else "."))
    for n in names[:2]:
        a, s = comp[(n, names[2])], comp[(n, names[3])]
        out.append(f"{n} vs age alone: {a['auc_diff_mean']:+.3f} (better in {a['repetitions_a_better']}/"
                   f"{a['repeats']}); vs age + sex: {s['auc_diff_mean']:+.3f} (better in {s['repetitions_a_better']}/"
                   f"{s['repeats']}).")
    return [" ".join(out)]


def render_tcga(r: dict) -> str:
    """The two TCGA clinical-table sections of docs/real-data.md as [(heading, text)] (written with --tcga-doc)."""
    lines = []
    tc = r["tcga"]
    s, a, g, m = tc["seizure_by_idh"], tc["seizure_by_age"], tc["seizure_by_grade"], tc["seizure_clinical_model"]
    lines += ["## TCGA: the clinical prior behind the epilepsy task (TCGA-LGG clinical table)", "",
              f"- {tc['lgg_n']} LGG patients with seizure history and IDH status (IDH1/IDH2 from the mutation "
              "table, else the clinical table's IDH1 test). Seizures: IDH-mutant "
              f"{s['seizure_rate_idh_mutant']:.0%} (n = {s['n_idh_mutant']}) vs IDH-wildtype {s['seizure_rate_idh_wildtype']:.0%} "
              f"(n = {s['n_idh_wildtype']}); odds ratio {s['odds_ratio']}, Fisher p = {s['p_fisher']:.2g}.",
              f"- Age: median {a['median_age_seizure']:.0f} years with seizures vs {a['median_age_no_seizure']:.0f} without "
              f"(Mann-Whitney p = {a['p_mann_whitney']:.2g}).",
              f"- Grade: seizures in G2 {g['seizure_rate_G2']:.0%} vs G3 {g['seizure_rate_G3']:.0%} (chi-square p = {g['p_chi2']:.2g}).",
              f"- Clinical model seizure ~ IDH + age + grade (n = {m['n']}): 5-fold AUC {m['auc_cv']} "
              f"({m['auc_95ci'][0]}-{m['auc_95ci'][1]}); odds ratios IDH {m['odds_ratio_idh']}, per SD of age "
              f"{m['odds_ratio_per_sd_age']}, grade 3 {m['odds_ratio_grade3']}. Within LGG these clinical "
              "variables carry little seizure information (Wang 2025 and the literature report more seizures with IDH "
              "mutation across grades, i.e. with GBM in the comparison); the epilepsy task has to come from imaging "
              "(location, cortical involvement), which this table cannot test.", ""]
    first, lines = "\n".join(lines), []
    x, y = tc["atrx_by_idh"], tc["atrx_by_age_within_idh_mutant"]
    lines += ["## TCGA: ATRX against IDH and age (TCGA GBM + LGG mutation table)", "",
              f"- {x['n']} patients: ATRX mutated in {x['atrx_rate_idh_mutant']:.0%} of IDH-mutant vs "
              f"{x['atrx_rate_idh_wildtype']:.0%} of IDH-wildtype gliomas (odds ratio {x['odds_ratio']}, Fisher p = "
              f"{x['p_fisher']:.2g}): ATRX is an IDH-mutant (astrocytoma) marker, which is why the ATRX model is "
              "trained and meant for IDH-mutant gliomas (Liu 2024's population).",
              f"- Within IDH-mutant (n = {y['n']}): median age {y['median_age_atrx_mutant']} (ATRX-mutant) vs "
              f"{y['median_age_atrx_wildtype']} (ATRX-wildtype), Mann-Whitney p = {y['p_mann_whitney']:.2g}.", ""]
    return [("## TCGA: the clinical prior", first), ("## TCGA: ATRX against IDH", "\n".join(lines))]


if __name__ == "__main__":
    sys.exit(main())
