#!/usr/bin/env python
"""Install trained lgg-unet2d fold weights into the package with their manifest (SHA-256, folds, data, licence).

    python scripts/update_lgg_unet_weights.py --trained build/lgg-unet-weights [--oof build/lgg-oof.json]

``--trained`` holds fold<k>.pt and train_summary.json from scripts/train_lgg_unet2d.py (a fine-tuning run's summary
names its warm start in ``init``; pass ``--history`` with the earlier summaries to record the whole recipe).
``--oof`` (optional) is a JSON {case_id: dice} of out-of-fold Dice measured on the network grid.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))

from GliomaRadiogenomicsLib import unet2d  # noqa: E402

DATA = {
    "name": "TCGA-LGG FLAIR with manual FLAIR-abnormality masks ('LGG segmentation dataset', Buda et al. 2019)",
    "n_patients": 64,
    "source": "../shared/data/cohorts/tcga-lgg (64 of the dataset's 110 TCGA-LGG patients; FLAIR only used)",
    "images": "The Cancer Imaging Archive (TCIA), TCGA-LGG collection; licence CC BY 3.0 "
              "(https://creativecommons.org/licenses/by/3.0/); cite Pedano et al. 2016, TCIA doi:10.7937/K9/TCIA.2016.L4LTD3TK",
    "masks": "Buda M, Saha A, Mazurowski MA. Association of genomic subtypes of lower-grade gliomas with shape "
             "features automatically extracted by a deep learning algorithm. Comput Biol Med 2019;109:218-225. "
             "Manual FLAIR abnormality masks (Mazurowski lab 'LGG segmentation dataset')",
    "licence_note": "The data licence is the data owners', not this project's: the weights were trained on data "
                    "under CC BY 3.0 (images) and the terms of Buda et al.'s dataset (masks); credit both.",
    "caveats": ["8-bit images (each sequence rescaled to 0-255 by the dataset's authors)",
                "every slice resized to 256 x 256; geometry nominal (0.9375 mm in plane, 145 mm / slices)",
                "not skull-stripped",
                "TCGA-LGG only: WHO grade 2-3 gliomas from 5 institutions, 1990s-2000s scanners",
                "whole tumor (FLAIR abnormality) only: no necrosis / enhancing tumor"],
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trained", required=True)
    ap.add_argument("--history", nargs="*", default=[], help="earlier train_summary.json files (warm starts)")
    ap.add_argument("--oof", help="JSON with out-of-fold metrics to record")
    ap.add_argument("--dest", default=str(unet2d.WEIGHTS_DIR))
    a = ap.parse_args(argv)
    src, dest = Path(a.trained), Path(a.dest)
    summ = json.loads((src / "train_summary.json").read_text())
    dest.mkdir(parents=True, exist_ok=True)
    folds = []
    for f in sorted(summ["per_fold"], key=lambda r: r["fold"]):
        name = f"fold{f['fold']}.pt"
        tmp = dest / (name + ".tmp")
        shutil.copyfile(src / name, tmp)
        os.replace(tmp, dest / name)
        size = (dest / name).stat().st_size
        if size > 5 * 2 ** 20:
            raise SystemExit(f"{dest / name}: {size / 2 ** 20:.1f} MiB, over the 5 MiB budget per file")
        folds.append({"fold": f["fold"], "file": name, "sha256": unet2d.sha256(dest / name), "bytes": size,
                      "train_cases": f["train_cases"], "test_cases": f["test_cases"]})
    recipe = []
    for s in [json.loads(Path(h).read_text()) for h in a.history] + [summ]:
        r = {k: s.get(k) for k in ("epochs_max", "time_budget_s", "batch", "lr", "warmup", "seed")}
        r["sample_dice"] = s.get("sample_dice") or 0.0
        r["data"] = s.get("data") or "build/lgg-unet-data (all slices)"
        r["init"] = "the previous stage's fold<k>.pt (same fold, same training cases)" if s.get("init") else None
        r["epochs_done"] = [p["epochs"] for p in s["per_fold"]]
        r["device"] = s["per_fold"][0]["device"]
        recipe.append(r)
    man = {
        "name": "lgg-unet2d",
        "task": "whole tumor (FLAIR abnormality) on FLAIR, BraTS label 2",
        "format": "torch.save(state_dict) in float16, load with torch.load(weights_only=True); SHA-256 checked first",
        "architecture": {"class": "unet2d.build_unet", "base": summ["base"], "depth": summ["depth"], "in_channels": 1,
                         "out_channels": 1, "norm": "InstanceNorm2d(affine)", "activation": "LeakyReLU(0.01)",
                         "output": "one logit per pixel (sigmoid)"},
        "input_grid": unet2d.grid_facts(),
        "training": {"split": f"case-level {summ['folds']}-fold, seeded permutation (seed {summ['seed']}) dealt "
                              "round-robin; fold k's network never saw fold k's test_cases",
                     "loss": "binary cross-entropy + batch soft Dice (+ per-slice soft Dice when sample_dice > 0)",
                     "augmentation": "left-right flip, rotation +-15 deg, scale 0.85-1.15, shift +-8 %, gamma "
                                     "0.67-1.5, intensity scale 0.85-1.15, noise, low-resolution simulation",
                     "optimiser": "AdamW (weight decay 1e-4), cosine learning rate, bf16 autocast on CUDA",
                     "recipe": recipe,
                     "script": "scripts/prepare_lgg_unet_data.py, scripts/train_lgg_unet2d.py (make lgg-unet)"},
        "data": DATA,
        "folds": folds,
        "metrics": json.loads(Path(a.oof).read_text()) if a.oof else {},
        "intended_use": "Research use only. Whole-tumor segmentation of adult lower-grade glioma on FLAIR, to be "
                        "reviewed and edited; not a medical device.",
    }
    tmp = dest / "manifest.json.tmp"
    tmp.write_text(json.dumps(man, indent=1) + "\n")
    os.replace(tmp, dest / "manifest.json")
    print(f"{len(folds)} fold(s) -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
