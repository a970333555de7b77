#!/usr/bin/env python
"""The evaluation's bootstraps (evaluation.bootstrap_ci, repeated_cv_summary, calibration_summary) against the same
resamples computed one at a time as before 2026-11-28 (scikit-learn's roc_auc_score per resample; one Newton
logistic fit per resample and repetition).

Data: a SYNTHETIC outcome and R repetitions of out-of-fold-like probabilities for n cases (the TCGA-LGG size by
default: n 62, 10 repetitions, 2000 / 1000 resamples as in `train`). Prints the seconds of each implementation and
the largest difference of the reported intervals; last line:
``evaluation_bootstrap n=.. repeats=.. loop_s=.. vectorised_s=.. speedup=.. max_ci_diff=..``.

    python Testing/benchmarks/bench_evaluation.py [--n 62] [--repeats 10]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "GliomaRadiogenomics"))


def _newton_logistic(Z, y, offset=None, max_iter=100, tol=1e-10):
    """The scalar Newton-Raphson logistic fit of evaluation.py before 2026-11-28 (copied here as the reference)."""
    y = np.asarray(y, float)
    off = np.zeros(len(y)) if offset is None else np.asarray(offset, float)
    beta = np.zeros(Z.shape[1])
    for _ in range(max_iter):
        mu = 1.0 / (1.0 + np.exp(-np.clip(off + Z @ beta, -700, 700)))
        w = np.maximum(mu * (1 - mu), 1e-12)
        step = np.linalg.solve(Z.T @ (Z * w[:, None]) + 1e-12 * np.eye(Z.shape[1]), Z.T @ (y - mu))
        beta = beta + step
        if np.max(np.abs(step)) < tol:
            return beta, True
    return beta, False


def _logit(p, eps=1e-8):
    p = np.clip(np.asarray(p, float), eps, 1 - eps)
    return np.log(p / (1 - p))


def loop_reference(y, P, seed=0):
    """The per-resample loops (the code before the vectorisation, with scikit-learn's AUC and its own scalar Newton
    fit, not the product's)."""
    from sklearn.metrics import roc_auc_score
    q = lambda v: [round(float(x), 4) for x in np.quantile(v, (0.025, 0.975))]  # noqa: E731
    n = len(y)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(2000):
        i = rng.integers(0, n, n)
        if 0 < y[i].sum() < n:
            boot.append(roc_auc_score(y[i], P[0, i]))
    rng = np.random.default_rng(seed)
    means, pooled = [], []
    for _ in range(2000):
        i = rng.integers(0, n, n)
        if 0 < y[i].sum() < n:
            a = [roc_auc_score(y[i], row[i]) for row in P]
            means.append(np.mean(a))
            pooled += a
    rng = np.random.default_rng(seed)
    ia, sl = [], []
    for _ in range(1000):
        i = rng.integers(0, n, n)
        if not 0 < y[i].sum() < n:
            continue
        fa, fb = [], []
        for row in P:
            lp = _logit(row[i])
            one = np.ones((n, 1))
            fa.append(_newton_logistic(one, y[i], offset=lp)[0][0])
            fb.append(_newton_logistic(np.column_stack([one, lp]), y[i])[0][1])
        ia.append(np.mean(fa))
        sl.append(np.mean(fb))
    return [q(boot), q(means), q(pooled), q(ia), q(sl)]


def vectorised(y, P, seed=0):
    from GliomaRadiogenomicsLib import evaluation as E
    b = [round(v, 4) for v in E.bootstrap_ci(y, P[0], 2000, seed)]
    s = E.repeated_cv_summary(y, P, 2000, seed)
    c = E.calibration_summary(y, P, 1000, seed)
    return [b, s["auc_95ci_bootstrap"], s["auc_95ci_repetitions_x_bootstrap"], c["intercept_95ci_bootstrap"],
            c["slope_95ci_bootstrap"]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=62)
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    y = (rng.random(a.n) < 0.35).astype(int)
    y[:2] = [1, 0]
    lp = 1.0 * y + rng.normal(0, 1, a.n)
    P = np.vstack([1 / (1 + np.exp(-(lp + rng.normal(0, 0.4, a.n)))) for _ in range(a.repeats)])
    t = time.perf_counter()
    ref = loop_reference(y, P)
    t_loop = time.perf_counter() - t
    t = time.perf_counter()
    ours = vectorised(y, P)
    t_vec = time.perf_counter() - t
    diff = max(abs(x - z) for r, o in zip(ref, ours) for x, z in zip(r, o))
    for name, r, o in zip(("AUC bootstrap", "repetition-mean AUC", "repetitions x bootstrap", "calibration intercept",
                           "calibration slope"), ref, ours):
        print(f"{name:26s} loop {r}  vectorised {o}")
    print(f"evaluation_bootstrap n={a.n} repeats={a.repeats} loop_s={t_loop:.2f} vectorised_s={t_vec:.2f} "
          f"speedup={t_loop / t_vec:.1f} max_ci_diff={diff:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
