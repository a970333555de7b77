#!/usr/bin/env python
"""Liu 2024's ATRX model on Liu's own imaging input, as far as this cohort allows (issue 14 item 3).

The shipped TCGA-LGG ATRX bundles (scripts/build_real_bundles.py) use the wang2025 table: one region (the manual
FLAIR-abnormality mask), so Liu's choice among 9 imaging models (3 feature types x 3 regions) falls back to one model.
This script rebuilds Liu's input:

1. features: `glioma-radiogenomics extract --case-roi --roi-subregions --preset liu2024 --location` over the cohort:
   the liu2024 preset (T1c + FLAIR, z-score, original + wavelets + LoG 1/2/3 mm, 1 130 features per region and
   sequence) on Liu's three regions, made from the manual mask: overall = the manual outline; tumor = the weight-free
   enhancing / necrosis labels inside it (T1c; empty in non-enhancing tumours, docs/features.md); edema = the rest;
   plus VASARI (Liu's clinical-radiological variable) and location. Resumable (<table>.cases/).
2. ATRX by LiuFusion (`imaging_models="best-of-9"`, Student's t-test, fused with age + sex + VASARI score, no WHO
   grade) on the IDH-mutant subset with FLAIR + T1c, 10 x 5 repeated nested CV (seed 2025, the seed of
   build_real_bundles.py), and Liu's imaging model alone on the same folds. Deep (ResNet34) features are not in
   the table: ImageNet weights cannot be fetched here (`--resnet34-weights` takes a local file), so 3 of the 9
   candidates (radiomics x 3 regions) exist, and a region missing in more than the missingness threshold of a
   training fold is absent (stated per fold in the report).

Writes docs/real-data/tcga_lgg_ATRX_liu2024-subregions*.json/.html and prints one summary row per model and a last
line `liu2024_atrx fusion_auc=.. imaging_auc=.. age_sex_auc=.. n=..`. Report only: no bundle is shipped from here.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "GliomaRadiogenomics"))
sys.path.insert(0, str(REPO / "scripts"))

import build_real_bundles as brb  # noqa: E402  (one definition of the cohort join, training call and table rows)


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    brb.cohort_arguments(ap, "build/liu64/features.csv")
    ap.add_argument("--reports", default="docs/real-data")
    a = ap.parse_args(argv)
    cohort, table, reports = Path(a.cohort), Path(a.table), Path(a.reports)
    if not (cohort / "labels.csv").exists():
        raise SystemExit(f"{cohort}: no labels.csv (the TCGA-LGG cohort lives in ../shared/data/cohorts/tcga-lgg)")
    if not a.skip_extract:
        brb.run_extraction(cohort / "cases", table, a.jobs, "--roi-subregions", "--preset", "liu2024")
    df, prov = brb.load_table(table, cohort / "labels.csv")
    if prov.get("preset") != "liu2024" or "roi_subregions" not in prov:
        raise SystemExit(f"{table}: not a liu2024 table with --roi-subregions (provenance: preset "
                         f"{prov.get('preset')}, roi_subregions {prov.get('roi_subregions')})")
    reports.mkdir(parents=True, exist_ok=True)
    tumor = df.filter(regex=r"^mask_tumor_original_shape_VoxelVolume$")
    n_enh = int((df.get("volume_TC_ml", 0) > 0).sum())
    print(f"{len(df)} cases; a tumor (enhancing / necrosis) region in {n_enh}; "
          f"{'tumor shape column present' if tumor.shape[1] else 'no tumor shape column'}", flush=True)
    clinical = [c for c in brb.ATRX_CLINICAL if c in df.columns and df[c].notna().any()]
    t0 = time.perf_counter()
    trained = brb.train(df, prov, "ATRX", "atrx-fusion", "flair-t1c", "flair,t1c", n_bootstrap=a.bootstrap,
                        repeats=a.repeats, folds=a.folds, jobs=a.jobs, reports=reports, seed=a.seed,
                        clinical=clinical, subset=lambda d: d["IDH"] == 1, tag="-liu2024-subregions",
                        imaging_bundle=True)
    rows = [brb.summary_row(b, f"{name}.html", "flair-t1c (liu2024, sub-regions)", brb.method_of(b), s,
                            "IDH-mutant subset; liu2024 preset on overall / tumor / edema from the manual mask")
            for b, name, s in trained]
    keep = table.parent / "bundles"  # every trained bundle, for a later decision to ship (not shipped from here)
    keep.mkdir(parents=True, exist_ok=True)
    for b, name, _ in trained:
        b.save(keep / f"{name}_{brb.method_of(b)}.json")
    fusion = next(b for b, _, _ in trained if brb.method_of(b) == "atrx-fusion")
    imaging = next(b for b, _, _ in trained if brb.method_of(b) == "atrx-imaging")
    print(brb.markdown_table(rows))
    print(json.dumps({"imaging_model_chosen_in_outer_folds": find_key(fusion.__dict__,
                                                                      "imaging_model_chosen_in_outer_folds"),
                      "fusion_vs_imaging": fusion.metrics.get("fusion_vs_imaging_cv")}, indent=1, default=str))
    m = fusion.metrics
    print(f"liu2024_atrx fusion_auc={m['auc_cv']} imaging_auc={imaging.metrics['auc_cv']} "
          f"age_sex_auc={m['baselines_cv'].get('age + sex', {}).get('auc')} n={fusion.training['n']} "
          f"seconds={time.perf_counter() - t0:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
