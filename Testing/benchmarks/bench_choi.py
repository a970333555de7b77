#!/usr/bin/env python
"""CPU seconds per outer fold of the Choi 2021 CNN cross-validation (issue 17; not run by make test).

One outer fold of scripts/train_choi_cnn.py (``run_fold``: an inner --inner-folds CV whose networks are scored after
every epoch, then one network on the whole training fold), variant t1c+mask, on the prepared TCGA-LGG arrays
(build/choi-data/choi_slices.npz; synthetic arrays of the same shape when absent, said in the output), for a small
epoch budget; the time per epoch is extrapolated linearly to the GPU run's 30-epoch budget. Reference: on the NVIDIA
H200 the full fold (30 inner epochs + the chosen count) took ~13 s (build/choi-gpu/choi_cnn_log.txt).

    python Testing/benchmarks/bench_choi.py [--epochs 2] [--threads 2] [--data build/choi-data/choi_slices.npz]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO / "build" / "choi-data" / "choi_slices.npz"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--inner-folds", type=int, default=3)
    ap.add_argument("--cases", type=int, default=0, help="a stratified subset of the cohort (0: all 57); the figures "
                    "are scaled to the full training fold (time is linear in the number of slices)")
    a = ap.parse_args(argv)
    spec = importlib.util.spec_from_file_location("train_choi_cnn", REPO / "scripts" / "train_choi_cnn.py")
    T = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(T)
    import torch
    torch.set_num_threads(a.threads)
    data = Path(a.data)
    if data.is_file():
        D = T.Data(data)
        idx, X, y, Fo = D.cohort("flair-t1-t1c", ["t1c", "mask"])
        src = f"{data} (TCGA-LGG, {len(y)} cases)"
    else:  # the same shapes as the real cohort: 57 cases, 45 positive, 5 slices x 2 channels x 128 x 128
        rng = np.random.default_rng(0)
        y = np.r_[np.ones(45), np.zeros(12)]
        X = rng.standard_normal((57, 5, 2, 128, 128)).astype(np.float32)
        Fo = T.C.stratified_folds(y, 5, 1)[None]
        src = f"SYNTHETIC arrays of the cohort's shape ({data} absent)"
    if a.cases:
        keep = T.subset_for_smoke(y, a.cases, 0)
        X, y = X[keep], y[keep]
        Fo = T.C.stratified_folds(y, 5, 1)[None]
    ns = argparse.Namespace(epochs=a.epochs, inner_folds=a.inner_folds, batch_size=32, lr=1e-3, weight_decay=1e-4)
    tr, te = np.flatnonzero(Fo[0] != 0), np.flatnonzero(Fo[0] == 0)
    Xt = torch.from_numpy(X)
    t_cpu, t0 = time.process_time(), time.perf_counter()
    T.run_fold(Xt, y, tr, te, ns, 2025, 1)
    wall, cpu = time.perf_counter() - t0, time.process_time() - t_cpu
    # work of one fold in training epochs-of-slices: inner nets see (k-1)/k of the training fold each and score
    # the rest, the outer net the whole training fold for the chosen count (at most --epochs)
    n_epoch_units = a.inner_folds * a.epochs + a.epochs
    n_full = 57 * 4 / 5  # training cases of a full outer fold
    per_unit = wall / n_epoch_units * n_full / len(tr)
    full = per_unit * (a.inner_folds * 30 + 15)   # 30 inner epochs, a typical chosen count of ~15 for the outer net
    full_cpu = full * cpu / wall  # CPU seconds: what an uncontended machine with these threads would need as wall
    print(f"data: {src}{f', subset of {len(y)} cases' if a.cases else ''}; torch {torch.__version__}, "
          f"{a.threads} thread(s), CPU; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"one outer fold ({len(tr)} training / {len(te)} test cases, {len(tr) * 5} training slices), "
          f"{a.epochs} epoch(s), {a.inner_folds} inner folds: {wall:.1f} s wall, {cpu:.1f} s CPU")
    print(f"~{per_unit:.1f} s per network-epoch on a full training fold ({n_full:.0f} cases); extrapolated to the GPU run's budget (30 inner epochs + ~15 outer): "
          f"~{full:.0f} s per fold, ~{full * 5 / 60:.0f} min per 5-fold repetition, ~{full * 50 / 3600:.1f} h for "
          f"10 repetitions, wall (H200: ~13 s per fold); in CPU seconds ~{full_cpu:.0f} s per fold "
          f"(~{full_cpu / a.threads:.0f} s wall on {a.threads} uncontended thread(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
