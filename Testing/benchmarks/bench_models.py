#!/usr/bin/env python
"""CMT-LASSO (Wang 2025) with 100 bootstrap rounds on 400 patients x 1,700 features, two tasks.

Planted answer: features 0-4 drive both tasks, 5-7 only task 0, 8-10 only task 1; the rest is noise (pairs of
correlated noise features included, so the |r| > 0.99 filter has work to do).

    python Testing/benchmarks/bench_models.py [--n 400] [--p 1700] [--bootstrap 100]
Last line: cmt_seconds=<s>
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "GliomaRadiogenomics"))
from GliomaRadiogenomicsLib.models import WangLasso  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--p", type=int, default=1700)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="processes for the bootstrap rounds (default 2)")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    X = rng.standard_normal((a.n, a.p))
    X[:, a.p - 100:] = X[:, a.p - 200:a.p - 100] + 0.01 * rng.standard_normal((a.n, 100))  # 100 near-duplicates
    shared = X[:, :5].sum(1)
    lp0, lp1 = 0.8 * shared + 0.9 * X[:, 5:8].sum(1), 0.8 * shared + 0.9 * X[:, 8:11].sum(1)
    Y = np.column_stack([rng.random(a.n) < 1 / (1 + np.exp(-lp0)), rng.random(a.n) < 1 / (1 + np.exp(-lp1))])
    t = time.perf_counter()
    est = WangLasso(method="cmt", n_bootstrap=a.bootstrap, n_jobs=a.jobs, random_state=1).fit(X, Y.astype(float))
    seconds = time.perf_counter() - t
    for k in range(2):
        used = sorted(est.kept_[est.task_features_[k]][est.coef_[k] != 0].tolist())
        print(f"task {k}: {len(used)} features {used}, alpha_1se {est.alpha_[k]:.4g}")
    print(f"kept rounds {est.selection_.kept_rounds}; after |r| filter {len(est.kept_)} of {a.p} features")
    print(f"cmt_seconds={seconds:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
