#!/usr/bin/env python
"""Train a TINY nnU-Net v2 model on SYNTHETIC glioma phantoms (CPU, minutes) to test the nnU-Net backend for real.

It writes an nnU-Net raw dataset (4 channels T1, T1c, T2, FLAIR; labels 1 necrosis, 2 edema, 3 enhancing) from
co-registered synthetic phantoms at 3 mm, runs nnU-Net's own fingerprinting / planning / preprocessing, shrinks the
planned U-Net (fewer features) so that it trains on a CPU, and trains fold 0 for a few short epochs. The result is
a normal nnU-Net model folder (dataset.json, plans.json, fold_0/checkpoint_final.pth) that the `nnunet` backend
loads like any trained model. It is a test fixture, not a clinical model.

    python scripts/train_tiny_nnunet.py --work build/tiny-nnunet [--cases 16 --epochs 30 --iterations 20]
Prints the model folder on its last line: model_folder=<path>
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "GliomaRadiogenomics"))

DATASET_ID = 501
DATASET_NAME = f"Dataset{DATASET_ID:03d}_GliomaSyntheticTiny"
TRAINER_NAME = "nnUNetTrainer"  # same architecture as nnU-Net's default: inference rebuilds it by this name


def lesion_crop(shape, label: np.ndarray, size: int, rng) -> tuple:
    """A ``size``-voxel cube around the lesion (randomly shifted so the lesion is not always centred)."""
    idx = np.argwhere(label > 0)
    c = idx.mean(0).astype(int) if len(idx) else np.array(shape) // 2
    c = c + rng.integers(-size // 6, size // 6 + 1, 3)
    lo = np.clip(c - size // 2, 0, np.maximum(np.array(shape) - size, 0))
    return tuple(slice(int(a), int(a) + size) for a in lo)


def phantom_arrays(spec, an, rng):
    """Co-registered four-channel phantom with bias and Rician noise (no motion), and its label."""
    from GliomaRadiogenomicsLib import synthetic as S
    truth, label = S.simulate_truth(spec, an)
    chans = []
    for seq in S.SEQUENCES:
        a = truth[seq] * S.INT_SCALE[seq]
        a = a * S._bias_field(a.shape, rng, 0.1)
        a = np.sqrt((a + rng.normal(0, 20, a.shape)) ** 2 + rng.normal(0, 20, a.shape) ** 2)
        chans.append(a.astype(np.float32))
    return chans, label


def write_raw_dataset(raw: Path, n: int, seed: int, downsample: int, crop: int = 40) -> None:
    from GliomaRadiogenomicsLib import synthetic as S
    ds = raw / DATASET_NAME
    (ds / "imagesTr").mkdir(parents=True, exist_ok=True)
    (ds / "labelsTr").mkdir(parents=True, exist_ok=True)
    an = S.load_anatomy(downsample)
    rng = np.random.default_rng(seed)
    subjects = S.draw_cohort(n, seed, downsample)
    for i, (subj, spec) in enumerate(subjects):
        cid = f"synth_{i:03d}"
        if (ds / "labelsTr" / f"{cid}.nii.gz").exists():
            continue
        chans, label = phantom_arrays(spec, an, rng)
        box = lesion_crop(label.shape, label, crop, rng)  # the lesion fills ~10x more of a crop than of a head
        for c, a in enumerate(chans):
            img = sitk.GetImageFromArray(np.ascontiguousarray(a[box]))
            img.SetSpacing(an.reference.GetSpacing())
            sitk.WriteImage(img, str(ds / "imagesTr" / f"{cid}_{c:04d}.nii.gz"))
        lab = sitk.GetImageFromArray(np.ascontiguousarray(label[box]).astype(np.uint8))
        lab.SetSpacing(an.reference.GetSpacing())
        sitk.WriteImage(lab, str(ds / "labelsTr" / f"{cid}.nii.gz"))
    meta = {"channel_names": {"0": "T1", "1": "T1c", "2": "T2", "3": "FLAIR"},
            "labels": {"background": 0, "necrosis": 1, "edema": 2, "enhancing": 3},
            "numTraining": n, "file_ending": ".nii.gz",
            "description": "SYNTHETIC glioma phantoms (GliomaRadiogenomics test fixture)"}
    (ds / "dataset.json").write_text(json.dumps(meta, indent=2))


def shrink_plans(preprocessed: Path, max_features: int) -> None:
    p = preprocessed / DATASET_NAME / "nnUNetPlans.json"
    plans = json.loads(p.read_text())
    for name, conf in plans["configurations"].items():
        arch = conf.get("architecture", {}).get("arch_kwargs")
        if arch and "features_per_stage" in arch:
            arch["features_per_stage"] = [min(max_features, 8 * 2 ** i) for i in range(len(arch["features_per_stage"]))]
        conf["batch_size"] = 2
    p.write_text(json.dumps(plans, indent=2))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="build/tiny-nnunet")
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--iterations", type=int, default=20, help="training iterations per epoch")
    ap.add_argument("--downsample", type=int, default=3, help="template downsampling (3 -> 3 mm phantoms)")
    ap.add_argument("--max-features", type=int, default=32)
    ap.add_argument("--crop", type=int, default=40, help="cube (voxels) around the lesion for training")
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args(argv)
    work = Path(a.work).resolve()
    for k in ("raw", "preprocessed", "results"):
        (work / k).mkdir(parents=True, exist_ok=True)
    os.environ.update({"nnUNet_raw": str(work / "raw"), "nnUNet_preprocessed": str(work / "preprocessed"),
                       "nnUNet_results": str(work / "results"), "nnUNet_n_proc_DA": "1",
                       "nnUNet_compile": "false"})
    t0 = time.perf_counter()
    write_raw_dataset(work / "raw", a.cases, a.seed, a.downsample, a.crop)
    print(f"[{time.perf_counter() - t0:6.1f}s] raw dataset written", flush=True)

    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                      preprocess)
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    if not (work / "preprocessed" / DATASET_NAME / "nnUNetPlans_3d_fullres").is_dir():
        extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=True, verbose=False)
        plan_experiments([DATASET_ID])
        shrink_plans(work / "preprocessed", a.max_features)
        preprocess([DATASET_ID], configurations=("3d_fullres",), num_processes=(1,), verbose=False)
    print(f"[{time.perf_counter() - t0:6.1f}s] planned and preprocessed", flush=True)

    epochs, iters = a.epochs, a.iterations
    os.environ["nnUNet_n_proc_DA"] = "0"  # augmentation in the main process (2-core machines, determinism)

    class Tiny(nnUNetTrainer):
        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     device: torch.device = torch.device("cpu")):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = epochs
            self.num_iterations_per_epoch = iters
            self.num_val_iterations_per_epoch = 3
            self.initial_lr = 1e-2
            self.save_every = 10 ** 6

    Tiny.__name__ = TRAINER_NAME
    Tiny.__qualname__ = TRAINER_NAME
    plans = json.loads((work / "preprocessed" / DATASET_NAME / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False  # nnU-Net's run_training sets this key before building a trainer
    dataset_json = json.loads((work / "preprocessed" / DATASET_NAME / "dataset.json").read_text())
    trainer = Tiny(plans=plans, configuration="3d_fullres", fold=0, dataset_json=dataset_json,
                   device=torch.device("cpu"))
    trainer.disable_checkpointing = False
    trainer.run_training()
    out = work / "results" / DATASET_NAME / f"{TRAINER_NAME}__nnUNetPlans__3d_fullres"
    print(f"[{time.perf_counter() - t0:6.1f}s] trained", flush=True)
    print(f"model_folder={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
