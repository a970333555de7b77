"""Shapley values without `shap` (issue 17 item 4; explain.py): exact for linear / logistic-on-logit models and
Kernel SHAP for any predict function, both against a brute-force enumeration of all 2^M coalitions (interventional
value function on a small background set)."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from GliomaRadiogenomicsLib import explain as E


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    y = (X[:, 0] + X[:, 1] * X[:, 2] - 0.7 * X[:, 4] + 0.5 * rng.normal(size=200) > 0).astype(int)
    return X, y


def test_brute_force_is_the_definition():
    # f = x0 * x1 with a one-row background at 0: the interaction is split equally (x0 x1 / 2 each)
    f = lambda Z: Z[:, 0] * Z[:, 1]  # noqa: E731
    phi = E.brute_force_shapley(f, np.array([2.0, 3.0, 5.0]), np.zeros((1, 3)))
    assert np.allclose(phi, [3.0, 3.0, 0.0])
    # a three-way interaction: a third each (the Banzhaf value would give a quarter)
    phi = E.brute_force_shapley(lambda Z: Z.prod(1), np.array([2.0, 3.0, 1.0]), np.zeros((1, 3)))
    assert np.allclose(phi, [2.0, 2.0, 2.0])


def test_linear_and_logit_exact_against_brute_force(data):
    X, y = data
    bg = X[:7]
    w, c = np.array([0.5, -1.0, 2.0, 0.0, 0.3]), 0.7
    lin = lambda Z: Z @ w + c  # noqa: E731
    for x in X[20:25, :5]:
        r = E.linear_shap(w, x, bg[:, :5], c)
        assert np.allclose(r["values"], E.brute_force_shapley(lin, x, bg[:, :5]), atol=1e-12)
        assert abs(r["values"].sum() - (r["prediction"] - lin(bg[:, :5]).mean())) < 1e-12  # efficiency
    lr = LogisticRegression().fit(X, y)
    logit = lambda Z: lr.decision_function(Z)  # noqa: E731
    x = X[42]
    r = E.linear_shap(lr.coef_[0], x, bg, lr.intercept_[0])
    assert np.allclose(r["values"], E.brute_force_shapley(logit, x, bg), atol=1e-10)


def test_kernel_shap_exact_with_all_coalitions_and_close_with_fewer(data):
    X, y = data
    mlp = MLPClassifier((16,), max_iter=2000, random_state=0).fit(X, y)
    f = lambda Z: mlp.predict_proba(Z)[:, 1]  # noqa: E731
    bg = X[:8]
    for x in X[50:53]:
        bf = E.brute_force_shapley(f, x, bg)
        k = E.kernel_shap(f, x, bg)                       # all 2^6 - 2 coalitions
        assert k["exact"] and k["n_coalitions"] == 62
        assert np.allclose(k["values"], bf, atol=1e-10)
        assert abs(k["values"].sum() - (f(x[None])[0] - f(bg).mean())) < 1e-10  # efficiency
        err = {}
        for n in (24, 56):  # sizes 1 and 5 complete (12 coalitions), the rest sampled
            errs = []
            for seed in range(6):
                few = E.kernel_shap(f, x, bg, n_samples=n, seed=seed)
                assert not few["exact"]
                assert abs(few["values"].sum() - (few["prediction"] - few["base_value"])) < 1e-10  # always exact
                errs.append(np.max(np.abs(few["values"] - bf)) / np.abs(bf).max())
            err[n] = errs
        assert np.mean(err[56]) < np.mean(err[24])          # more coalitions, closer
        assert max(err[56]) < 0.3                           # close with 56 of the 62 coalitions
    # M = 5 on a linear function: any budget that completes the sizes gives the exact linear values
    w = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    lin = lambda Z: Z @ w  # noqa: E731
    k = E.kernel_shap(lin, X[3, :5], X[:5, :5], n_samples=30)
    assert np.allclose(k["values"], E.linear_shap(w, X[3, :5], X[:5, :5])["values"], atol=1e-10)


def test_explain_case_sorted_and_named(data):
    X, y = data
    lr = LogisticRegression().fit(X, y)
    names = [f"f{j}" for j in range(6)]
    r = E.explain_case(None, X[9], X[:20], names, linear={"coef": lr.coef_[0], "intercept": lr.intercept_[0]})
    v = [abs(d["shapley"]) for d in r["features"]]
    assert v == sorted(v, reverse=True) and abs(r["sum_check"]) < 1e-12 and r["features"][0]["feature"] in names
