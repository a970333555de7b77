#!/usr/bin/env python
"""Real-data model bundles (IDH, epilepsy, ATRX) from the TCGA-LGG cohort in ../shared/data/cohorts/tcga-lgg.

1. features: `glioma-radiogenomics extract --case-roi --location` over the cohort's case folders (wang2025 preset,
   the manual FLAIR-abnormality mask as the ROI, the sequences present); resumable: finished cases are cached in
   <table>.cases/ and reused;
2. labels: labels.csv joined on case_id (IDH_mutant -> IDH, ATRX_mutant -> ATRX, seizure_history -> epilepsy,
   tumor_grade G2/G3 -> who_grade 2/3; missing labels stay missing);
3. two sequence families, each trained and validated on its own cases:
     flair-t1-t1c  FLAIR + T1 + T1c features (+ segmentation shape, atlas location, VASARI), cases with all three;
     flair         FLAIR features (+ shape, location, VASARI), every case;
   per family: IDH and epilepsy by Wang 2025 single-task (st) and collaborative multi-task (cmt, IDH + epilepsy)
   LASSO on ONE shared fold assignment (train.shared_fold_assignment: the family's cases with an IDH or epilepsy
   label, stratified on IDH x epilepsy; st and cmt hold every case out in the same fold of every repetition), the
   better of the two per task by repeated nested-CV mean AUC; ATRX by Liu 2024 on the IDH-mutant subset (Liu's
   population; Student's t-test; fused clinical variables age + sex (+ VASARI score when the table has one), no WHO
   grade: a pre-operative model): the fusion ships only when its repeated-CV mean AUC is higher than that of its own
   imaging model alone (Liu's imaging model, whose linear predictor is the imaging score) on the same folds, else
   the imaging model ships (method atrx-imaging); two report-only sensitivity analyses on the flair-t1-t1c family
   (all cases; + WHO grade; 5 CV repetitions). Age and sex are offered to every model; age-only and age + sex
   logistic baselines are evaluated on the same folds;
4. ATRX on Liu 2024's own imaging input (family flair-t1c-liu2024, table --liu-table): `extract --case-roi
   --roi-subregions --preset liu2024 --location` (T1c + FLAIR, z-score, original + wavelets + LoG 1 / 2 / 3 mm, on
   overall = the manual outline, tumor = the weight-free enhancing / necrosis labels inside it, edema = the rest),
   then the same Liu fusion (best of 9 imaging models, chosen inside every training fold) on the IDH-mutant cases
   with T1c. When it ships, it replaces the wang2025 flair-t1-t1c ATRX bundle (Liu's method as published takes
   precedence over the same method on another preset's single region; both rows stay in the report); cases without
   T1c keep the flair family. Without ImageNet ResNet34 weights (not obtainable here) the deep-feature candidates
   do not exist;
5. a bundle ships (GliomaRadiogenomicsLib/resources/models/tcga_lgg_<task>_<family>.json) only where the lower
   95 % CI bound of its repeated-CV AUC is above 0.5; defaults.json then lists, per task, the real family where one
   qualifies, else the synthetic default_<task>.json. Evaluation reports go to docs/real-data/. A partial rebuild
   (--families / --liu-table '') keeps the shipped bundles and report rows of the families it does not rebuild.

Every number is internal validation on 64 TCGA-LGG patients (grade 2-3 gliomas), 8-bit resized source images,
nominal geometry: no external validation.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "GliomaRadiogenomics"))

from GliomaRadiogenomicsLib.io import atomic_write_json  # noqa: E402
from GliomaRadiogenomicsLib.pipeline import ROI_SUBREGIONS  # noqa: E402

MODELS = REPO / "GliomaRadiogenomics" / "GliomaRadiogenomicsLib" / "resources" / "models"
COHORT = REPO.parent / "shared" / "data" / "cohorts" / "tcga-lgg"
FAMILIES = {"flair-t1-t1c": "flair,t1,t1c", "flair": "flair"}
TASKS = {"IDH": ("IDH-mutant", "IDH-wildtype"), "epilepsy": ("glioma-associated epilepsy (seizure history)",
                                                             "no seizure history"),
         "ATRX": ("ATRX-mutant", "ATRX-wildtype")}
CLINICAL = ["age", "sex_male"]
# ATRX on Liu 2024's own input: the liu2024 preset on overall / tumor / edema made from the manual outline
LIU_FAMILY, LIU_SEQUENCES, LIU_TAG = "flair-t1c-liu2024", "flair,t1c", "-liu2024-subregions"
LIU_EXTRACT = ("--roi-subregions", "--preset", "liu2024")
LIU_SUPERSEDES = "flair-t1-t1c"  # the wang2025 ATRX family it replaces when it ships
# Liu 2024's fused variables: age, sex, VASARI score (vasari_score is skipped when the table has none); no WHO grade
ATRX_CLINICAL = ["age", "sex_male", "vasari_score"]
SOURCE = ("TCGA-LGG (The Cancer Genome Atlas low-grade glioma collection, The Cancer Imaging Archive; images "
          "licensed CC BY 3.0), via the public 'LGG segmentation' dataset of Buda et al. 2019 (manual FLAIR "
          "abnormality masks drawn by radiologists; not ours); labels: TCGA mutation (IDH1/IDH2, ATRX) and clinical "
          "(seizure history, tumour grade) tables")
CAVEATS = ["TCGA-LGG only: WHO grade 2-3 gliomas (no glioblastoma); 64 patients, one public collection, several "
           "institutions; internal validation only (repeated nested cross-validation), no external test set",
           "source images were co-registered to FLAIR, every slice resized to 256 x 256 and rescaled to 8 bit; not "
           "skull-stripped; no T2 in the source",
           "the source carries no geometry: nominal spacing (in-plane 0.9375 mm, slice spacing 145 mm / number of "
           "slices), so volumes and shape features are approximate (consistently across the cohort)",
           "features were computed inside the MANUAL FLAIR-abnormality mask; at run time the ROI comes from the "
           "automatic segmentation (or a user mask): segmentation differences shift the features",
           "sequences: 59 cases FLAIR + T1 + T1c, 1 FLAIR + T1, 4 FLAIR only"]
INTENDED = ("RESEARCH USE ONLY: a research probability, not a diagnosis. Trained on TCGA-LGG (grade 2-3 gliomas) "
            "from 8-bit, slice-resized images with nominal geometry and manual ROIs; not validated on other "
            "scanners, other grades or automatic segmentations. {extra}")


# what run_extraction's `extract --case-roi --location` (PipelineOptions defaults) records in a current provenance
EXTRACTION_PROVENANCE = {"spacing_mm": 1.0, "n4": False, "reference": "FLAIR", "registration": "rigid (Mattes MI)",
                         "segmentation_source": "given", "atlas": "mni152"}


def run_extraction(cases: Path, table: Path, jobs: int, *extra: str) -> None:
    """``extract --case-roi --location`` (+ ``extra`` options, e.g. another preset) over the cohort's cases."""
    cmd = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli", "extract", "--cases", str(cases), "--out", str(table),
           "--case-roi", "--location", "--jobs", str(jobs), *extra]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO, env={**__import__("os").environ,
                                                    "PYTHONPATH": str(REPO / "GliomaRadiogenomics")})


def load_table(table: Path, labels_csv: Path) -> tuple[pd.DataFrame, dict]:
    """Feature table joined with the cohort labels; the table's provenance."""
    feats = pd.read_csv(table)
    prov_path = table.with_name(table.stem + ".provenance.json")
    prov = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    prov.pop("table_sha256", None)  # the extracted table's bytes, before the labels are joined
    # a table extracted before the pipeline recorded its options in the provenance: the options of this script's
    # own extraction (run_extraction) fill the keys it lacks, and the bundle says so (provenance_note)
    added = [k for k in EXTRACTION_PROVENANCE if k not in prov]
    if added:
        prov.update({k: EXTRACTION_PROVENANCE[k] for k in added})
        prov["provenance_note"] = (f"{', '.join(added)}: not recorded in {prov_path.name}; taken from the options of "
                                   "this script's extraction (`extract --case-roi --location`: default 1 mm working "
                                   "grid, FLAIR reference, rigid registration, no N4, the case-folder ROI, MNI152 "
                                   "atlas), which made the table")
    lab = pd.read_csv(labels_csv)
    lab = lab.rename(columns={"IDH_mutant": "IDH", "ATRX_mutant": "ATRX", "seizure_history": "epilepsy"})
    lab["who_grade"] = lab["tumor_grade"].map({"G2": 2.0, "G3": 3.0})
    feats = feats.drop(columns=[c for c in ("who_grade", "IDH", "ATRX", "epilepsy") if c in feats.columns])
    df = feats.merge(lab[["case_id", "IDH", "ATRX", "epilepsy", "who_grade", "sequences", "age", "sex"]]
                     .rename(columns={"age": "age_labels", "sex": "sex_labels", "sequences": "source_sequences"}),
                     on="case_id", how="inner")
    bad = df[(df["age"] - df["age_labels"]).abs() > 0.5]
    if len(bad):
        raise SystemExit(f"age differs between case.json and labels.csv for {', '.join(bad['case_id'])}")
    df = df.drop(columns=["age_labels", "sex_labels"])
    # the one clinical encoder (sex -> sex_male, numbers): the clinical variables offered are looked up by these names
    # (before 2026-11-28 'sex_male' was not a column yet here, so the ATRX fusions were offered age only)
    from GliomaRadiogenomicsLib.train import add_derived_columns
    df = add_derived_columns(df)
    missing = sorted(set(lab["case_id"]) - set(df["case_id"]))
    if missing:
        print(f"warning: {len(missing)} labelled case(s) have no feature row: {', '.join(missing)}", flush=True)
    return df, prov


def training_provenance(table: Path, prov: dict, case_ids) -> dict:
    """The table's provenance for the cases a model is trained on: a key mixed over the whole table gets the value
    of those cases (from the per-case cache <table>.cases/), e.g. roi_subregions, not recorded for the FLAIR-only
    cases (no T1c: no core labels) but recorded for every case with T1c that the liu2024 model is trained on."""
    from GliomaRadiogenomicsLib.provenance import MIXED, merge
    cache = Path(f"{table}.cases")
    sub = merge(json.loads((cache / f"{c}.json").read_text()).get("_provenance") for c in case_ids
                if (cache / f"{c}.json").exists()) or {}
    return {**prov, **{k: sub[k] for k, v in prov.items() if k != "sequences" and str(v).startswith(MIXED)
                       and k in sub and not str(sub[k]).startswith(MIXED)}}


def atrx_clinical_of(df: pd.DataFrame) -> list:
    """Liu 2024's fused clinical variables this table has (age, sex, VASARI score; one with no value is left out).
    Without a radiologist's VASARI score (TCGA-LGG has none) the automatic one (vasari.py: ``vasari_auto_score``,
    another scale, computed at run time too) stands in for it, by its own name so a model trained on it is given it."""
    has = lambda c: c in df.columns and df[c].notna().any()  # noqa: E731
    return [c if c != "vasari_score" or has(c) else "vasari_auto_score" for c in ATRX_CLINICAL
            if has(c) or (c == "vasari_score" and has("vasari_auto_score"))]


def strip_labels(report: Path) -> None:
    """The committed evaluation reports keep per-case out-of-fold probabilities, not the cohort's labels: the labels
    stay in ../shared (tests join them there by case_id)."""
    from GliomaRadiogenomicsLib.io import atomic_write_json
    if report.exists():
        d = json.loads(report.read_text())
        for t in d.get("tasks", []):
            t.pop("label_values", None)
        atomic_write_json(report, d)


def train(df, prov, label, method, family, seqs, n_bootstrap, repeats, folds, jobs, reports, seed, clinical,
          subset=None, tag="", fold_assignment=None, imaging_bundle=False):
    from GliomaRadiogenomicsLib.train import train_bundles
    labels = [label] if method != "cmt" else ["IDH", "epilepsy"]
    data = df if subset is None else df[subset(df)]
    name = f"tcga_lgg_{'IDH-epilepsy' if method == 'cmt' else label}_{family}_{method}{tag}"
    extra = ("ATRX model: trained on IDH-mutant gliomas (Liu 2024's population) and meant for them only."
             if label == "ATRX" and subset is not None else "")
    t0 = time.perf_counter()
    bundles, ev = train_bundles(
        data, labels, method, prov, trained_on=f"TCGA-LGG ({family}{', IDH-mutant subset' if subset else ''})",
        synthetic=False, intended_use=INTENDED.format(extra=extra).strip(),
        tasks=labels, positive_labels=[TASKS[t][0] for t in labels], negative_labels=[TASKS[t][1] for t in labels],
        clinical=clinical, seed=seed, n_bootstrap=n_bootstrap, outer_folds=folds, repeats=repeats, sequences=seqs,
        n_jobs=jobs, report_path=reports / name, name_prefix="tcga-lgg-", liu={"ttest": "student"},
        fold_assignment=fold_assignment, imaging_bundle=imaging_bundle)
    seconds = time.perf_counter() - t0
    strip_labels(reports / f"{name}.json")
    print(f"[{seconds:6.0f}s] {name}: " + "; ".join(
        f"{b.task} AUC {b.metrics['auc_cv']} (SD {b.metrics['auc_cv_sd']}, CI {b.metrics['auc_cv_95ci']}), "
        f"age {b.metrics['baselines_cv'].get('age', {}).get('auc')}, age+sex "
        f"{b.metrics['baselines_cv'].get('age + sex', {}).get('auc')}, {len(b.features)} features" for b in bundles),
        flush=True)
    return [(b, name, seconds) for b in bundles]


def collect(trained, family, reports, work, rows, candidates) -> None:
    """Report rows, saved bundles (``work``) and ship candidates of one family's trained models."""
    for b, name, seconds, method, note in trained:
        if note.startswith("sensitivity"):  # numbers (JSON) only: keeps docs/real-data small
            (reports / f"{name}.html").unlink(missing_ok=True)
        rows.append(summary_row(b, f"{name}.html", family, method, seconds, note))
        b.save(work / f"{name}_{b.task}{'_imaging' if b.name.endswith('-atrx-imaging') else ''}.json")
        if not note.startswith("sensitivity"):
            candidates.setdefault((b.task, family), []).append((b, rows[-1]))


def merge_shipped(shipped: dict, rows: list, old_registry: dict, old_rows: list, rebuilt: set, models: Path) -> None:
    """The shipped files per task (``shipped``, updated) and report rows (``rows``, extended), after a rebuild of the
    families ``rebuilt``: a family not rebuilt keeps its registered files (when present) and its earlier rows; ATRX on
    Liu's own input, when it ships, replaces the wang2025 model of the sequences it covers (flair-t1-t1c: its row
    says so; the FLAIR-only family stays for cases without T1c); a file of a known family that no longer ships is
    deleted (no stale file stays beside the registry)."""
    for task in TASKS:
        shipped[task] = shipped.get(task, []) + [
            f for f in old_registry.get("tasks", {}).get(task, []) if f.startswith("tcga_lgg_")
            and family_of(task, f) not in rebuilt and (models / f).exists()]
    rows += [dict(r) for r in old_rows if r["family"] not in rebuilt]
    liu_file, superseded = f"tcga_lgg_ATRX_{LIU_FAMILY}.json", f"tcga_lgg_ATRX_{LIU_SUPERSEDES}.json"
    if liu_file not in shipped["ATRX"] and superseded not in shipped["ATRX"] and LIU_SUPERSEDES not in rebuilt:
        for r in rows:  # superseded by an earlier Liu model that no longer ships: its file is gone, say so
            if r["task"] == "ATRX" and r["family"] == LIU_SUPERSEDES and "superseded" in r.get("ship_rule", ""):
                r["ship_rule"] = r["ship_rule"].split("; superseded")[0] + (
                    f"; was superseded by {LIU_FAMILY}, which no longer ships: rebuild --families {LIU_SUPERSEDES} "
                    "to ship it again")
                print(f"warning: the ATRX {LIU_FAMILY} model does not ship and the {LIU_SUPERSEDES} one it had "
                      f"replaced is gone: rebuild with --families {LIU_SUPERSEDES}", flush=True)
    if liu_file in shipped["ATRX"] and superseded in shipped["ATRX"]:
        shipped["ATRX"].remove(superseded)
        for r in rows:
            if r["task"] == "ATRX" and r["family"] == LIU_SUPERSEDES and r.get("chosen"):
                r["ships"] = False
                r["ship_rule"] += f"; superseded by {LIU_FAMILY} (Liu 2024's own input), which ships"
    for task in TASKS:
        for fam in [*FAMILIES, LIU_FAMILY]:
            p = models / f"tcga_lgg_{task}_{fam}.json"
            if p.exists() and p.name not in shipped[task]:
                p.unlink()


def find_key(obj, key):
    """The first value stored under ``key`` anywhere in nested dicts / lists (None when absent)."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        for v in obj:
            found = find_key(v, key)
            if found is not None:
                return found
    return None


def family_of(task: str, filename: str) -> str:
    """'tcga_lgg_ATRX_flair-t1c-liu2024.json' -> 'flair-t1c-liu2024' (the shipped file names of this script)."""
    return filename[len(f"tcga_lgg_{task}_"):-len(".json")]


def method_of(b) -> str:
    """atrx-imaging for Liu's imaging model alone (bundle name ...-atrx-imaging), else atrx-fusion."""
    return "atrx-imaging" if b.name.endswith("-atrx-imaging") else "atrx-fusion"


def choose(task, cands):
    """The candidate that ships for a task and family, and the selection text. ``cands``: [(bundle, row)].
    ATRX: Liu's fusion only when its repeated-CV mean AUC is higher than its imaging model's on the SAME folds
    (paired, per repetition: metrics['fusion_vs_imaging_cv']), else the imaging model. Other tasks: the method
    with the best repeated-CV mean AUC (st and cmt on one shared fold assignment)."""
    by_method = {row["method"]: (b, row) for b, row in cands}
    if task == "ATRX" and {"atrx-fusion", "atrx-imaging"} <= set(by_method):
        fi = by_method["atrx-fusion"][0].metrics["fusion_vs_imaging_cv"]
        fusion = fi["auc_diff_mean"] > 0
        b, row = by_method["atrx-fusion" if fusion else "atrx-imaging"]
        comparison = {"rule": "the fusion ships only when its repeated-CV mean AUC is higher than its imaging "
                              "model's (imaging score alone) on the same folds; otherwise the imaging model ships",
                      "shipped": row["method"], **fi}
        text = (f"{row['method']} shipped: fusion {fi['auc_fusion_mean']} vs imaging score alone "
                f"{fi['auc_imaging_mean']} (repeated-CV mean AUC, same folds; difference fusion - imaging "
                f"{fi['auc_diff_mean']:+.4f}, SD {fi['auc_diff_sd']}, fusion better in "
                f"{fi['repetitions_fusion_better']}/{fi['repeats']} repetitions, DeLong p (repetition-averaged "
                f"predictions) {fi['delong_p_mean_prediction']:.3g}); rule: the fusion only when its mean AUC is "
                "higher, else the imaging model (Liu 2024's imaging score)")
        return b, row, text, comparison
    b, row = max(cands, key=lambda c: c[1]["auc_mean"])
    text = (f"{row['method']} chosen among {', '.join(c[1]['method'] for c in cands)} by repeated nested-CV mean "
            "AUC on one shared fold assignment (the choice itself is made on the same CV: mildly optimistic)")
    return b, row, text, None


def summary_row(b, report, family, method, seconds, note=""):
    m = b.metrics
    bl = m.get("baselines_cv", {})
    cmp_ = m.get("comparison_with_baselines", {})
    return {"task": b.task, "family": family, "method": method, "bundle_name": b.name, "report": report,
            "sequences": b.feature_schema.get("sequences"), "n": b.training["n"], "n_positive": b.training["n_positive"],
            "auc_mean": m["auc_cv"], "auc_sd": m["auc_cv_sd"], "auc_range": m["auc_cv_range"],
            "auc_95ci": m["auc_cv_95ci"], "auc_95ci_bootstrap": m["auc_cv_95ci_bootstrap"],
            "age_auc": bl.get("age", {}).get("auc"), "age_auc_95ci": bl.get("age", {}).get("auc_95ci"),
            "age_sex_auc": bl.get("age + sex", {}).get("auc"),
            "age_sex_auc_95ci": bl.get("age + sex", {}).get("auc_95ci"),
            "vs_age": cmp_.get("age"), "vs_age_sex": cmp_.get("age + sex"),
            "n_features_final": len(b.features), "n_features_per_fold": m.get("n_features_per_fold"),
            "repeats": m.get("auc_cv_repeats"),
            "features": list(b.features), "training_seconds": round(seconds, 1), "note": note}


def _ci(v):
    return f"{v[0]:.3f}-{v[1]:.3f}" if v else ""


def markdown_table(rows) -> str:
    """The results table of docs/real-data.md (also written to docs/real-data/tcga_lgg_table.md)."""
    out = ["| task | sequences | method | n (pos) | AUC mean | SD | min-max | 95 % CI | age only | age + sex | "
           "diff vs age (reps better), DeLong p | diff vs age + sex (reps better), DeLong p | features final "
           "(per fold mean; min-max) | shipped |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def diff(c):
        c = c or {}
        return (f"{c.get('auc_diff_mean', float('nan')):+.3f} ({c.get('repetitions_model_better')}/{r.get('repeats')})"
                f", p = {c.get('delong_p_mean_prediction', float('nan')):.2g}")
    for r in rows:
        nf = r.get("n_features_per_fold") or {}
        ship = (("yes" if r.get("ships") else f"no: superseded by {LIU_FAMILY}" if "superseded" in
                 r.get("ship_rule", "") else "no: CI includes 0.5") if r.get("chosen") else
                ("not chosen" if "chosen" in r else r["note"].replace("sensitivity, not shipped: ", "sensitivity: ")))
        out.append(f"| {r['task']} | {r['family']} | {r['method']} | {r['n']} ({r['n_positive']}) | "
                   f"{r['auc_mean']:.3f} | {r['auc_sd']:.3f} | {r['auc_range'][0]:.3f}-{r['auc_range'][1]:.3f} | "
                   f"{_ci(r['auc_95ci'])} | {r['age_auc']:.3f} ({_ci(r['age_auc_95ci'])}) | "
                   f"{r['age_sex_auc']:.3f} ({_ci(r['age_sex_auc_95ci'])}) | {diff(r.get('vs_age'))} | "
                   f"{diff(r.get('vs_age_sex'))} | "
                   f"{r['n_features_final']} ({nf.get('mean')}; {nf.get('min')}-{nf.get('max')}) | {ship} |")
    return "\n".join(out) + "\n"


def card(b, family, rows_note):
    """The model card added to a shipped bundle's training section."""
    return {"source": SOURCE, "licence": "TCIA TCGA-LGG: CC BY 3.0 (cite TCGA / TCIA); masks: Buda et al., Comput "
            "Biol Med 2019 (LGG segmentation dataset) - third-party data, not ours",
            "population": "TCGA-LGG: adult WHO grade 2-3 diffuse gliomas" + rows_note,
            "sequence_family": family, "caveats": CAVEATS,
            "roi": "manual FLAIR-abnormality mask (whole-tumour equivalent) during training" + (
                "; Liu 2024's regions made from it (--roi-subregions): overall = the mask, tumor = the weight-free "
                "enhancing / necrosis labels (T1c) inside it, edema = the rest" if family == LIU_FAMILY else ""),
            **({"liu2024_input": LIU_CARD} if family == LIU_FAMILY else {})}


# what the liu2024 ATRX bundle is and is not, in its data card
LIU_CARD = ("Liu 2024's imaging input as far as this build could make it: PyRadiomics on overall / tumor / edema of T1c "
            "and FLAIR; the ResNet34 deep-feature candidates are absent (ImageNet weights could not be obtained on the "
            "build machine: no download), and the tumor region exists in few low-grade cases, so radiomics on overall "
            "and on edema were the candidates of the best-of-9 choice; the VASARI score fused is the automatic one "
            "(vasari_auto_score, vasari.py), standing in for Liu's radiologist-scored VASARI")


def cohort_arguments(ap: argparse.ArgumentParser, table: str) -> None:
    """The options of the cohort script: cohort, table, CV design."""
    ap.add_argument("--cohort", default=str(COHORT), help="cohort folder with cases/ and labels.csv")
    ap.add_argument("--table", default=table, help="feature table (extracted if absent or incomplete; "
                    "<table>.cases/ caches finished cases)")
    ap.add_argument("--skip-extract", action="store_true", help="use --table as it is")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--seed", type=int, default=2025)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cohort_arguments(ap, "build/tcga-lgg/features.csv")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--sensitivity-families", default="flair-t1-t1c",
                    help="families that get the report-only ATRX variants (all cases; + WHO grade); '' for none")
    ap.add_argument("--sensitivity-repeats", type=int, default=5,
                    help="CV repetitions of the report-only variants (default 5: Liu's fit dominates the run time)")
    ap.add_argument("--models", default=str(MODELS), help="folder of the shipped bundles and defaults.json")
    ap.add_argument("--registry", help="where the defaults registry goes (default: <models>/defaults.json, which "
                    "makes the qualifying real bundles the defaults of every run); a copy is kept in "
                    "<reports>/tcga_lgg_defaults.json")
    ap.add_argument("--reports", default="docs/real-data")
    ap.add_argument("--work", default="build/tcga-lgg/bundles", help="every trained bundle (shipped or not)")
    ap.add_argument("--liu-table", default="build/liu64/features.csv",
                    help="liu2024 table for ATRX on Liu 2024's regions (extracted if absent or incomplete, unless "
                    "--skip-extract); '' skips that family")
    a = ap.parse_args(argv)
    cohort, table = Path(a.cohort), Path(a.table)
    if not (cohort / "labels.csv").exists():
        raise SystemExit(f"{cohort}: no labels.csv (the TCGA-LGG cohort lives in ../shared/data/cohorts/tcga-lgg)")
    families = [f for f in a.families.split(",") if f]
    if families:  # the wang2025 table (not needed when only the Liu family is rebuilt)
        if not a.skip_extract:
            run_extraction(cohort / "cases", table, a.jobs)
        df, prov = load_table(table, cohort / "labels.csv")
        print(f"{len(df)} cases x {df.shape[1]} columns; IDH {int(df.IDH.sum())}/{int(df.IDH.notna().sum())}, "
              f"epilepsy {int(df.epilepsy.sum())}/{int(df.epilepsy.notna().sum())}, "
              f"ATRX {int(df.ATRX.sum())}/{int(df.ATRX.notna().sum())}", flush=True)
    reports, work, models = Path(a.reports), Path(a.work), Path(a.models)
    for d in (reports, work):
        d.mkdir(parents=True, exist_ok=True)
    common = dict(n_bootstrap=a.bootstrap, repeats=a.repeats, folds=a.folds, jobs=a.jobs, reports=reports,
                  seed=a.seed)
    idh_mutant = lambda d: d["IDH"] == 1  # noqa: E731
    t_all = time.perf_counter()
    rows, candidates = [], {}
    from GliomaRadiogenomicsLib.train import restrict_to_sequences, shared_fold_assignment
    atrx_clinical = atrx_clinical_of(df) if families else []
    n_cases = len(df) if families else None
    for family in families:
        seqs = FAMILIES[family]
        trained = []
        # one fold assignment for st (IDH, epilepsy) and cmt: the same outer folds for the methods compared
        folds = shared_fold_assignment(restrict_to_sequences(df, seqs)[0], ["IDH", "epilepsy"], repeats=a.repeats,
                                       folds=a.folds, seed=a.seed)
        for label, method in (("IDH", "st"), ("epilepsy", "st"), ("IDH", "cmt")):
            trained += [(b, n, s, method, "") for b, n, s in
                        train(df, prov, label, method, family, seqs, clinical=CLINICAL, fold_assignment=folds,
                              **common)]
        atrx_note = f"IDH-mutant subset (Liu 2024 population); {' + '.join(atrx_clinical)}"
        trained += [(b, n, s, method_of(b), atrx_note + ("; imaging model alone (imaging score)"
                                                         if method_of(b) == "atrx-imaging" else ""))
                    for b, n, s in train(df, prov, "ATRX", "atrx-fusion", family, seqs, clinical=atrx_clinical,
                                         subset=idh_mutant, imaging_bundle=True, **common)]
        if family in a.sensitivity_families.split(","):
            sens = {**common, "repeats": a.sensitivity_repeats}
            trained += [(b, n, s, "atrx-fusion", "sensitivity, not shipped: all cases (IDH-wildtype included)")
                        for b, n, s in train(df, prov, "ATRX", "atrx-fusion", family, seqs, clinical=atrx_clinical,
                                             tag="-all-cases", **sens)]
            trained += [(b, n, s, "atrx-fusion", "sensitivity, not shipped: + WHO grade (post-operative)")
                        for b, n, s in train(df, prov, "ATRX", "atrx-fusion", family, seqs,
                                             clinical=atrx_clinical + ["who_grade"], subset=idh_mutant, tag="-grade",
                                             **sens)]
        collect(trained, family, reports, work, rows, candidates)
    if a.liu_table:
        ltable = Path(a.liu_table)
        if not a.skip_extract:
            run_extraction(cohort / "cases", ltable, a.jobs, *LIU_EXTRACT)
        ldf, lprov = load_table(ltable, cohort / "labels.csv")
        n_cases = max(n_cases or 0, len(ldf))
        if lprov.get("preset") != "liu2024" or lprov.get("roi_subregions") != ROI_SUBREGIONS:
            raise SystemExit(f"{ltable}: not a liu2024 table with --roi-subregions (provenance: preset "
                             f"{lprov.get('preset')}, roi_subregions {lprov.get('roi_subregions')})")
        from GliomaRadiogenomicsLib.train import restrict_to_sequences
        lprov = training_provenance(ltable, lprov, restrict_to_sequences(ldf[idh_mutant(ldf)], LIU_SEQUENCES)[0]
                                    ["case_id"])
        lclin = atrx_clinical_of(ldf)
        atrx_clinical = atrx_clinical or lclin
        print(f"{ltable}: {len(ldf)} cases x {ldf.shape[1]} columns (liu2024, regions overall / tumor / edema)",
              flush=True)
        note = (f"IDH-mutant subset (Liu 2024 population); {' + '.join(lclin)}; liu2024 preset on overall / tumor / "
                "edema (Liu 2024's input)")
        collect([(b, n, s, method_of(b), note + ("; imaging model alone (imaging score)"
                                                 if method_of(b) == "atrx-imaging" else ""))
                 for b, n, s in train(ldf, lprov, "ATRX", "atrx-fusion", "flair-t1c", LIU_SEQUENCES, clinical=lclin,
                                      subset=idh_mutant, tag=LIU_TAG, imaging_bundle=True, **common)],
                LIU_FAMILY, reports, work, rows, candidates)
        fusion = next(b for b, _ in candidates[("ATRX", LIU_FAMILY)] if method_of(b) == "atrx-fusion")
        print("imaging model chosen in the outer folds (liu2024 regions): "
              f"{find_key(fusion.__dict__, 'imaging_model_chosen_in_outer_folds')}", flush=True)
    # per task and family: st vs cmt chosen by the repeated-CV mean AUC on shared folds (never by apparent fit);
    # ATRX: the fusion only when it beats its imaging score on the same folds; ship if CI > 0.5
    shipped, atrx_rule = {}, {}
    for (task, family), cands in candidates.items():
        b, row, selection, comparison = choose(task, cands)
        if comparison is not None:
            atrx_rule[family] = {**comparison, "report": row["report"]}
            row["fusion_vs_imaging"] = comparison
        row["chosen"] = True
        others = [c[1] for c in cands if c[1] is not row]
        for o in others:
            o["chosen"] = False
        lo = b.metrics["auc_cv_95ci"][0]
        row["ships"] = bool(lo > 0.5)
        row["ship_rule"] = f"lower 95% CI bound of the repeated-CV AUC {lo} {'>' if lo > 0.5 else '<='} 0.5"
        if not row["ships"]:
            continue
        rows_note = " (IDH-mutant subset)" if task == "ATRX" else ""
        b.training["trained_on"] = (f"TCGA-LGG: {b.training['n']} patients ({b.training['n_positive']} "
                                    f"{b.positive_label}){rows_note}, sequences {'+'.join(b.feature_schema['sequences'])}"
                                    f"; 8-bit slice-resized source images, nominal geometry, manual FLAIR ROI")
        b.training["data_card"] = card(b, family, rows_note)
        b.training["evaluation_report"] = f"{reports.as_posix()}/{Path(row['report']).stem}.json"
        b.training["selection"] = selection
        if comparison is not None:
            b.training["selection_comparison"] = comparison
        b.name = f"tcga-lgg-{task}-{family}"
        path = models / f"tcga_lgg_{task}_{family}.json"
        b.save(path)
        shipped.setdefault(task, []).append(path.name)
    # a partial rebuild keeps what the families it did not rebuild ship (their files, registry entries, report rows)
    rebuilt = {f for f in a.families.split(",") if f} | ({LIU_FAMILY} if a.liu_table else set())
    old_registry = models / "defaults.json"  # the optional models (e.g. the Choi 2021 CNN) are not rebuilt here
    old_reg = json.loads(old_registry.read_text()) if old_registry.exists() else {}
    old_results = reports / "tcga_lgg_results.json"
    old_res = json.loads(old_results.read_text()) if old_results.exists() else {}
    merge_shipped(shipped, rows, old_reg, old_res.get("rows", []), rebuilt, models)
    atrx_rule.update({f: v for f, v in old_res.get("atrx_fusion_vs_imaging", {}).items() if f not in rebuilt})
    registry = {"tasks": {}, "note": "Per task, the bundle family used by default (select_bundles picks one per case "
                "by its sequences). tcga_lgg_*: real TCGA-LGG models (synthetic: false) where one validated better "
                "than a coin (lower 95% CI of the repeated-CV AUC > 0.5); default_<task>.json: synthetic "
                "demonstration models (synthetic: true) for tasks without a qualifying real model. ATRX: Liu 2024's "
                "model on its own input (liu2024 preset, three regions) for cases with FLAIR + T1c; FLAIR-only "
                "cases get the FLAIR family."}
    for task in TASKS:
        fam = shipped.get(task)
        registry["tasks"][task] = sorted(fam, key=lambda f: -len(f)) if fam else [f"default_{task}.json"]
    if old_reg.get("optional"):
        registry["optional"] = old_reg["optional"]
    atomic_write_json(Path(a.registry) if a.registry else models / "defaults.json", registry)
    atomic_write_json(reports / "tcga_lgg_defaults.json", registry)
    total = time.perf_counter() - t_all
    atomic_write_json(reports / "tcga_lgg_results.json", {
        "cohort": "TCGA-LGG (../shared/data/cohorts/tcga-lgg)", "n_cases": n_cases,
        "design": {"repeats": a.repeats, "folds": a.folds, "n_bootstrap": a.bootstrap, "seed": a.seed,
                   "jobs": a.jobs, "clinical_offered": CLINICAL, "atrx_clinical_fused": atrx_clinical,
                   "atrx_ttest": "student",
                   "folds_note": "IDH / epilepsy: st and cmt on one shared fold assignment per family "
                                 "(stratified on IDH x epilepsy); ATRX: fusion and imaging model on the same folds"},
        "atrx_fusion_vs_imaging": atrx_rule, "rebuilt_families": sorted(rebuilt),
        "caveats": CAVEATS, "source": SOURCE, "rows": rows, "defaults": registry["tasks"],
        "training_seconds_total": round(total, 1)})
    from GliomaRadiogenomicsLib.io import atomic_write_text
    atomic_write_text(reports / "tcga_lgg_table.md", markdown_table(rows))
    print(markdown_table(rows))
    print(json.dumps({"defaults": registry["tasks"], "seconds": round(total)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
