#!/usr/bin/env python
"""Rebuild the shipped OPTIONAL Choi 2021 hybrid IDH bundle (`run --bundle choi-idh`) from the TCGA-LGG cohort.

Steps (each through the product's own commands):
1. the labelled feature table: build/tcga-lgg/features.csv of `make real-bundles` (shape, loci, age) joined with the
   cohort's labels.csv by build_real_bundles.load_table -> build/choi-bundle/tcga_lgg_labelled.csv (+ provenance);
2. the CNN's slices: scripts/prepare_choi_data.py -> build/choi-data/choi_slices.npz (when absent);
3. `glioma-radiogenomics train --method choi-hybrid --choi-variant flair+mask` with the committed cross-validation
   of the CNN (docs/real-data/choi_cnn_oof.json.gz: 10 x 5 folds run on a GPU) and the FINAL network trained here on
   all 62 cases (`--choi-data`; CPU: ~19 min on 2 idle cores, GPU: ~1 min) or taken from an earlier run
   (`--final DIR/choi_cnn_final.json`); weights stored in float16 (`--choi-float16`);
4. installed: the bundle + its weights into GliomaRadiogenomicsLib/resources/models (file names kept: the bundle
   names its weights), the evaluation into docs/real-data/tcga_lgg_IDH_choi.json (per-case out-of-fold
   probabilities, no labels), and the `optional` entry `choi-idh` of resources/models/defaults.json.

    python scripts/build_choi_bundle.py [--final build/choi-bundle/ship/tcga_lgg_IDH_choi.cnn/choi_cnn_final.json]
        [--device cpu|cuda] [--no-install]
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))
sys.path.insert(0, str(ROOT / "scripts"))

MODELS = ROOT / "GliomaRadiogenomics" / "GliomaRadiogenomicsLib" / "resources" / "models"
REPORTS = ROOT / "docs" / "real-data"
NAME = "tcga_lgg_IDH_choi"
OPTIONAL_KEY = "choi-idh"
TRAINED_ON = ("TCGA-LGG: 62 patients (49 IDH-mutant), FLAIR + the manual FLAIR-abnormality mask (CNN input), shape / "
              "loci / age from our extraction; 8-bit slice-resized source images, nominal geometry")


def main(argv=None) -> int:
    import build_real_bundles as brb
    from GliomaRadiogenomicsLib.io import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort", default=str(brb.COHORT))
    ap.add_argument("--table", default=str(ROOT / "build" / "tcga-lgg" / "features.csv"))
    ap.add_argument("--data", default=str(ROOT / "build" / "choi-data" / "choi_slices.npz"))
    ap.add_argument("--cnn-cv", default=str(REPORTS / "choi_cnn_oof.json.gz"))
    ap.add_argument("--final", help="choi_cnn_final.json of an earlier final network (not trained again)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", default=str(ROOT / "build" / "choi-bundle"))
    ap.add_argument("--no-install", action="store_true", help="build under --work only")
    a = ap.parse_args(argv)
    work = Path(a.work)
    (work / "ship").mkdir(parents=True, exist_ok=True)
    if not Path(a.table).is_file():
        raise SystemExit(f"{a.table}: missing; `make real-bundles` extracts it (shape, loci and age columns)")
    df, prov = brb.load_table(Path(a.table), Path(a.cohort) / "labels.csv")
    table = work / "tcga_lgg_labelled.csv"
    df.to_csv(table, index=False)
    atomic_write_json(work / "tcga_lgg_labelled.provenance.json", prov)
    if not Path(a.data).is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_choi_data.py"), "--cohort", a.cohort,
                        "--table", a.table, "--out", str(Path(a.data).parent)], check=True)
    cv = work / "choi_cnn_oof.json"
    opener = gzip.open if a.cnn_cv.endswith(".gz") else open
    with opener(a.cnn_cv, "rt") as fh:
        cv.write_text(fh.read())
    out = work / "ship" / f"{NAME}.json"

    def rel(p) -> str:  # the bundle and its evaluation record these paths: relative to the repository
        p = Path(p).resolve()
        return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)
    cmd = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli", "train", "--method", "choi-hybrid", "--table",
           rel(table), "--label", "IDH", "--choi-cnn", rel(cv), "--choi-variant", "flair+mask", "--choi-float16",
           "--seed", "2025", "--trained-on", TRAINED_ON, "--out", rel(out)]
    cmd += ["--choi-final", rel(a.final)] if a.final else ["--choi-data", rel(a.data), "--choi-device", a.device]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env={**__import__("os").environ,
                                                    "PYTHONPATH": str(ROOT / "GliomaRadiogenomics")})
    bundle, weights = out.with_name(f"{NAME}.bundle.json"), out.with_name(f"{NAME}.bundle.cnn.pt")
    b = json.loads(bundle.read_text())
    b["metrics"]["evaluation"] = f"docs/real-data/{NAME}.json"
    b["training"]["data_card"] = {  # the LASSO bundles' card (build_real_bundles.card), this model's ROI and weights
        **brb.card(None, "flair", ""),
        "roi": "manual FLAIR-abnormality mask during training (the CNN's tumour channel and the shape / loci "
               "features); `run` gives the product's segmentation unless --segmentation",
        "weights": "the CNN weights derive from the TCGA-LGG images and the Buda et al. masks: credit both"}
    atomic_write_json(bundle, b)
    m = b["metrics"]
    print(f"choi_bundle hybrid_auc={m['auc_cv']:.3f} (95% CI {m['auc_cv_95ci'][0]:.3f}-{m['auc_cv_95ci'][1]:.3f}, "
          f"SD {m['auc_cv_sd']:.3f}) cnn_auc={m['auc_cv_cnn']['mean']:.3f} age_auc={m['auc_cv_age']['mean']:.3f} "
          f"epochs={b['cnn']['epochs']} weights_mb={weights.stat().st_size / 1e6:.1f}")
    if a.no_install:
        return 0
    shutil.copyfile(bundle, MODELS / bundle.name)
    shutil.copyfile(weights, MODELS / weights.name)
    shutil.copyfile(out, REPORTS / out.name)
    reg_path = MODELS / "defaults.json"
    reg = json.loads(reg_path.read_text())
    reg.setdefault("optional", {})[OPTIONAL_KEY] = {
        "file": bundle.name, "task": "IDH", "title": "IDH (Choi 2021 hybrid CNN)",
        "note": (f"Choi 2021 model 2 (ResNet34 on FLAIR + tumour-mask slices, then CNN + shape + loci + age), "
                 f"trained on {b['training']['n']} TCGA-LGG patients; repeated-CV AUC {m['auc_cv']:.3f}. Not applied "
                 f"by default: `run --bundle {OPTIONAL_KEY}` adds it (docs/choi.md).")}
    atomic_write_json(reg_path, reg)
    print(f"installed {bundle.name} + {weights.name} -> {MODELS}; {out.name} -> {REPORTS}; defaults.json optional "
          f"'{OPTIONAL_KEY}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
