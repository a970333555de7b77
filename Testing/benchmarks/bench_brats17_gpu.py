#!/usr/bin/env python
"""brats17 network stage on CPU and GPU from the same inputs: seconds and label agreement (docs/segmentation-quality.md).

Two steps, because a GPU machine may lack SimpleITK (the lent device here has torch + numpy + scipy only):

  python Testing/benchmarks/bench_brats17_gpu.py prepare [--out build/device-b17]
      on a machine with the package installed: the product's preprocessing of BraTS-example and one TCGA-LGG case
      (FLAIR fed as T2), ``brats17.network_images``, cropped to the brain box, stored float16 (<out>/<key>.npz), and
      CPU reference labels from the same float16 arrays (<out>/<key>_<n views>_cpu.npy), CPU seconds in meta.json;
  python Testing/benchmarks/bench_brats17_gpu.py run [--out build/device-b17]
      on the GPU machine (repository root as working directory; the folder travels with the tree): axial and 3-view
      on CUDA after one warm-up call, seconds, voxel counts and Dice of the GPU labels against the CPU labels; prints
      JSON and writes $OUT/brats17_gpu.json (or <out>/brats17_gpu.json).

Measured 2026-11-26 on an H200: BraTS-example axial 1.68 s, 3-view 2.62 s; GPU labels = CPU labels up to 7 / 3
voxels of ~146,000.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "GliomaRadiogenomics"))
CASES = {"brats": REPO.parent / "shared" / "data" / "cases" / "BraTS-example",
         "lgg": REPO.parent / "shared" / "data" / "cohorts" / "tcga-lgg" / "cases" / "TCGA-CS-4942"}


def dice(a, b) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * (a & b).sum() / s)


def prepare(out: Path) -> None:
    import SimpleITK as sitk
    from GliomaRadiogenomicsLib import brats17
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions, preprocess
    out.mkdir(parents=True, exist_ok=True)
    meta = {}
    for key, folder in CASES.items():
        if not folder.is_dir():
            print(f"{folder} absent: {key} skipped", file=sys.stderr)
            continue
        pre = preprocess(load_case_folder(folder), PreprocessOptions())
        imgs = dict(pre.images)
        imgs.setdefault("t2", imgs["flair"])
        images, mask = brats17.network_images({s: imgs[s] for s in brats17.CHANNELS}, pre.brain_mask)
        ch = np.stack([sitk.GetArrayFromImage(images[s]) for s in brats17.CHANNELS])
        brain = sitk.GetArrayFromImage(mask) > 0
        box = brats17.bounding_box(brain, 8)
        ch, brain = ch[(slice(None),) + box].astype(np.float16), brain[box]
        np.savez_compressed(out / f"{key}.npz", channels=ch, brain=brain)
        meta[key] = {"shape": list(brain.shape)}
        for views in (("axial",), brats17.VIEWS):
            nets = brats17.load_networks(None, views, "cpu")
            t = time.perf_counter()
            res = brats17.segment_arrays(ch.astype(np.float32), brain, nets, views, seed=0)
            meta[key][f"cpu_s_{len(views)}"] = round(time.perf_counter() - t, 1)
            np.save(out / f"{key}_{len(views)}_cpu.npy", res["label"])
            print(key, views, meta[key][f"cpu_s_{len(views)}"], "s", flush=True)
    (out / "meta.json").write_text(json.dumps(meta, indent=1))


def run(out: Path) -> None:
    # the package's io module imports SimpleITK at the top; the network path never calls it
    sys.modules.setdefault("SimpleITK", types.ModuleType("SimpleITK"))
    import torch
    from GliomaRadiogenomicsLib import brats17
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: run this step on the GPU machine")
    res = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    for key in CASES:
        f = out / f"{key}.npz"
        if not f.exists():
            continue
        d = np.load(f)
        ch, brain = d["channels"].astype(np.float32), d["brain"]
        for views in (("axial",), brats17.VIEWS):
            nets = brats17.load_networks(None, views, "cuda")
            if len(views) == 1:
                brats17.segment_arrays(ch, brain, nets, views, seed=0)   # warm-up (cuDNN autotune, allocator)
            torch.cuda.synchronize()
            t = time.perf_counter()
            g = brats17.segment_arrays(ch, brain, nets, views, seed=0)["label"]
            torch.cuda.synchronize()
            r = {"gpu_s": round(time.perf_counter() - t, 2), "voxels_wt": int((g > 0).sum())}
            cpu = out / f"{key}_{len(views)}_cpu.npy"
            if cpu.exists():
                c = np.load(cpu)
                r.update(differing_voxels=int((c != g).sum()), dice_wt=round(dice(c > 0, g > 0), 4),
                         dice_tc=round(dice(np.isin(c, (1, 3)), np.isin(g, (1, 3))), 4),
                         dice_et=round(dice(c == 3, g == 3), 4))
            res[f"{key}_{len(views)}view"] = r
            print(key, views, r, flush=True)
    print(json.dumps(res, indent=1))
    dest = Path(os.environ.get("OUT") or out)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "brats17_gpu.json").write_text(json.dumps(res, indent=1))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["prepare", "run"])
    ap.add_argument("--out", default=str(REPO / "build" / "device-b17"))
    a = ap.parse_args(argv)
    (prepare if a.step == "prepare" else run)(Path(a.out))


if __name__ == "__main__":
    main()
