"""Per-feature explanations: Shapley values without the `shap` package (issue 17 item 4).

`shap` cannot be installed beside Slicer (it depends on an unrelated PyPI package named `slicer`), so the values are
computed here with numpy only. The value function is INTERVENTIONAL (Janzing 2020; shap's Independent / Kernel
explainers): v(S) = mean over the background rows b of f(x_S, b_not-S), the features outside the coalition S taken
from a background data set (e.g. the training cases).

  ``linear_shap``    exact for a linear model f(x) = w.x + c (or a logistic model explained on its logit):
                     phi_j = w_j (x_j - mean of the background's x_j).
  ``kernel_shap``    Kernel SHAP (Lundberg & Lee 2017) for any ``predict`` function (e.g. an MLP's
                     predict_proba[:, 1]): coalitions weighted by the Shapley kernel
                     (M - 1) / (C(M, |S|) |S| (M - |S|)), a weighted least-squares fit with the efficiency constraint
                     sum phi = f(x) - E f(background) imposed exactly (eliminating one coefficient). All 2^M - 2
                     coalitions are enumerated when ``n_samples`` allows (then the result is exact); otherwise coalition
                     sizes are enumerated completely from both ends while the budget lasts (paired sizes s and M - s),
                     and the rest sampled by size in proportion to their kernel weight, as shap's KernelExplainer does.
  ``brute_force_shapley`` the definition: sum over all coalitions of |S|! (M - |S| - 1)! / M! (v(S + j) - v(S)),
                     the tests' reference (M up to ~12).
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Optional, Sequence

import numpy as np


def _as_2d(x) -> np.ndarray:
    x = np.asarray(x, float)
    return x[None, :] if x.ndim == 1 else x


def coalition_values(f: Callable, x, background, masks) -> np.ndarray:
    """v(S) for each boolean row of ``masks`` (True = feature in S, taken from x; else from each background row),
    averaged over the background rows."""
    x = np.asarray(x, float).ravel()
    B = _as_2d(background)
    masks = np.atleast_2d(np.asarray(masks, bool))
    k, m = masks.shape
    data = np.where(masks[:, None, :], x[None, None, :], B[None, :, :]).reshape(k * len(B), m)
    return np.asarray(f(data), float).reshape(k, len(B)).mean(1)


def brute_force_shapley(f: Callable, x, background) -> np.ndarray:
    """Exact Shapley values from the definition (all 2^M coalitions; interventional value function)."""
    x = np.asarray(x, float).ravel()
    m = len(x)
    masks = np.array(list(itertools.product([False, True], repeat=m)), bool)
    v = dict(zip(map(tuple, masks), coalition_values(f, x, background, masks)))
    phi = np.zeros(m)
    for S in masks:
        s = int(S.sum())
        for j in np.flatnonzero(~S):
            T = S.copy()
            T[j] = True
            w = math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m)
            phi[j] += w * (v[tuple(T)] - v[tuple(S)])
    return phi


def linear_shap(coef, x, background, intercept: float = 0.0) -> dict:
    """Exact interventional Shapley values of f(x) = coef . x + intercept (for a logistic model: of its logit).
    Returns {"values", "base_value" (= f at the background mean = E f), "prediction"}."""
    w = np.asarray(coef, float).ravel()
    X = _as_2d(x)
    mu = _as_2d(background).mean(0)
    phi = (X - mu) * w
    out = {"values": phi[0] if np.ndim(x) == 1 else phi, "base_value": float(intercept + mu @ w),
           "prediction": (X @ w + intercept)[0] if np.ndim(x) == 1 else X @ w + intercept}
    return out


def shapley_kernel_weight(m: int, s: int) -> float:
    """The Shapley kernel weight of one coalition of size s (0 < s < m)."""
    return (m - 1) / (math.comb(m, s) * s * (m - s))


def _coalitions(m: int, n_samples: int, rng) -> tuple:
    """Coalition masks and their regression weights: complete sizes first (pairs s, m - s from the ends) while the
    budget allows, the remaining sizes sampled (with replacement, weight by size in proportion to the kernel)."""
    sizes = list(range(1, m))
    size_w = np.array([(m - 1) / (s * (m - s)) for s in sizes])  # total kernel weight of each size
    size_w /= size_w.sum()
    masks, weights = [], []
    left = n_samples
    done = set()
    remaining_w = 1.0
    for s in range(1, (m + 1) // 2 + 1):
        pair = {s, m - s}
        need = sum(math.comb(m, k) for k in pair)
        if need > left:
            break
        for k in pair:
            for idx in itertools.combinations(range(m), k):
                z = np.zeros(m, bool)
                z[list(idx)] = True
                masks.append(z)
                weights.append(size_w[k - 1] / math.comb(m, k))
            done.add(k)
            remaining_w -= size_w[k - 1]
        left -= need
    rest = [s for s in sizes if s not in done]
    if rest and left > 0:
        p = np.array([size_w[s - 1] for s in rest])
        p /= p.sum()
        counts = {}
        for _ in range(left):
            s = int(rng.choice(rest, p=p))
            idx = tuple(sorted(rng.choice(m, s, replace=False)))
            counts[idx] = counts.get(idx, 0) + 1
        for idx, c in counts.items():
            z = np.zeros(m, bool)
            z[list(idx)] = True
            masks.append(z)
            weights.append(remaining_w * c / left)
    return np.array(masks, bool).reshape(-1, m), np.asarray(weights, float)


def kernel_shap(f: Callable, x, background, n_samples: Optional[int] = None, seed: int = 0) -> dict:
    """Kernel SHAP of one case ``x`` for the prediction function ``f`` (rows -> one value each), interventional
    w.r.t. ``background``. ``n_samples``: coalitions evaluated (default 2^M - 2: all, exact). Returns {"values",
    "base_value" (E f over the background), "prediction" (f(x)), "n_coalitions", "exact"}."""
    x = np.asarray(x, float).ravel()
    m = len(x)
    B = _as_2d(background)
    fx = float(np.asarray(f(x[None, :]), float)[0])
    base = float(np.asarray(f(B), float).mean())
    if m == 1:
        return {"values": np.array([fx - base]), "base_value": base, "prediction": fx, "n_coalitions": 0,
                "exact": True}
    total = 2 ** m - 2
    n_samples = total if n_samples is None else int(min(n_samples, total))
    masks, w = _coalitions(m, n_samples, np.random.default_rng(seed))
    v = coalition_values(f, x, B, masks) - base
    Zm = masks.astype(float)
    # efficiency constraint: phi_last = (fx - base) - sum(phi_others); regress v - z_last (fx - base) on z_j - z_last
    y = v - Zm[:, -1] * (fx - base)
    A = Zm[:, :-1] - Zm[:, -1:]
    sw = np.sqrt(w)
    sol, *_ = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)
    phi = np.r_[sol, (fx - base) - sol.sum()]
    return {"values": phi, "base_value": base, "prediction": fx, "n_coalitions": int(len(masks)),
            "exact": bool(len(masks) == total)}


def explain_case(f: Callable, x, background, feature_names: Sequence[str], linear: Optional[dict] = None,
                 n_samples: int = 2048, seed: int = 0, top: int = 10) -> dict:
    """Per-feature explanation of one case, sorted by |value|: exact for ``linear`` = {"coef", "intercept"} (the
    model's linear predictor: logit for a logistic model), Kernel SHAP otherwise."""
    r = (linear_shap(linear["coef"], x, background, linear.get("intercept", 0.0)) if linear is not None
         else kernel_shap(f, x, background, n_samples=n_samples, seed=seed))
    vals = np.asarray(r["values"], float)
    order = np.argsort(-np.abs(vals))[:top]
    x = np.asarray(x, float).ravel()
    return {"method": "exact linear (interventional)" if linear is not None else
            f"Kernel SHAP ({r.get('n_coalitions')} coalitions{', exact' if r.get('exact') else ''})",
            "base_value": r["base_value"], "prediction": float(r["prediction"]),
            "features": [{"feature": feature_names[j], "value": float(x[j]), "shapley": float(vals[j])}
                         for j in order],
            "sum_check": float(vals.sum() - (r["prediction"] - r["base_value"]))}
