"""Choi 2021 hybrid IDH model (issue 17): the ResNet34 against the published architecture, the slice selection
against an independent numpy computation on a real TCGA-LGG case, the hybrid logistic against scikit-learn, the
weights-file SHA-256 refusal and the GPU training script's CPU smoke run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from GliomaRadiogenomicsLib import choi

torch = pytest.importorskip("torch")
REPO = Path(__file__).resolve().parents[2]
COHORT = REPO.parent / "shared" / "data" / "cohorts" / "tcga-lgg"


def test_resnet34_matches_the_published_architecture():
    # He et al. 2016 / torchvision resnet34: 21,797,672 parameters for 3 channels and 1000 classes ("21.8 M")
    m = choi.ResNet34(3, 1000)
    assert choi.n_parameters(m) == 21_797_672 == choi.resnet34_parameter_count(3, 1000)
    assert [len(getattr(m, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    convs3 = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3)]
    assert len(convs3) == 2 * (3 + 4 + 6 + 3) and m.conv1.kernel_size == (7, 7)  # 32 + stem + fc = 34 layers
    # our head: 2 inputs (T1c + mask, no T2), one logit: 21.8 M minus the 1000-class head and one input channel
    h = choi.ResNet34(2, 1)
    expected = 21_797_672 - (512 * 1000 + 1000) + (512 + 1) - 64 * 49
    assert choi.n_parameters(h) == expected == choi.resnet34_parameter_count(2, 1) == 21_282_049
    with torch.no_grad():
        out = h.eval()(torch.zeros(3, 2, choi.GRID, choi.GRID))
        assert out.shape == (3, 1)
        assert h.features(torch.zeros(1, 2, 128, 128)).shape == (1, 512)


def test_slice_selection_against_numpy_on_a_real_case():
    case = COHORT / "cases" / "TCGA-CS-4942"
    if not case.is_dir():
        pytest.skip(f"{case} absent: real TCGA-LGG data (../shared) is not on this machine")
    sitk = pytest.importorskip("SimpleITK")
    spec = __import__("importlib.util").util.spec_from_file_location("prep", REPO / "scripts" / "prepare_choi_data.py")
    prep = __import__("importlib.util").util.module_from_spec(spec)
    spec.loader.exec_module(prep)
    img = sitk.ReadImage(str(case / "flair_abnormality.nii.gz"))
    res, sp = prep.resample_128(img, sitk.sitkNearestNeighbor)
    assert res.GetSize() == (128, 128, 128)
    assert np.allclose(np.array(sp) * 128, np.array(img.GetSize()) * np.array(img.GetSpacing()))
    m = sitk.GetArrayFromImage(res) > 0
    # independent: per axial slice count the mask pixels with a python loop, take the largest, +-2, +-4
    areas = [int(np.count_nonzero(m[z])) for z in range(m.shape[0])]
    c = max(range(len(areas)), key=lambda z: (areas[z], -z))
    expected = [min(max(c + o, 0), 127) for o in (-4, -2, 0, 2, 4)]
    assert choi.select_slices(m) == expected
    assert areas[c] > 0 and areas[c] == max(areas)
    # the source volume's own largest slice maps to the same place (the resampling keeps the tumour where it is)
    src = sitk.GetArrayFromImage(img) > 0
    z_src = int(np.argmax(src.reshape(src.shape[0], -1).sum(1)))
    assert abs((c + 0.5) * sp[2] - (z_src + 0.5) * img.GetSpacing()[2]) <= img.GetSpacing()[2]
    x, avail, norm, facts = prep.case_slices(case)  # default channels t1c, t2, flair, mask; TCGA-LGG has no T2
    assert x.shape == (5, 4, 128, 128) and x.dtype == np.uint8 and avail.tolist() == [True, False, True, True]
    assert not x[:, 1].any()  # the missing T2: zeros, flagged unavailable
    assert facts["slices"] == expected and np.array_equal(x[:, 3] > 0, m[expected])


def test_select_slices_clips_at_the_volume_edge_and_refuses_an_empty_mask():
    m = np.zeros((10, 4, 4), bool)
    m[1, :2, :2] = True
    m[8, :1, :1] = True
    assert choi.select_slices(m) == [0, 0, 1, 3, 5]
    with pytest.raises(ValueError, match="empty"):
        choi.select_slices(np.zeros((5, 4, 4)))


def test_hybrid_logistic_equals_sklearn_on_the_same_inputs():
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    n = 80
    y = (rng.random(n) < 0.6).astype(int)
    cnn = np.clip(0.5 + 0.3 * (y - 0.5) + 0.2 * rng.standard_normal(n), 0.01, 0.99)
    age = 45 - 10 * y + 8 * rng.standard_normal(n)
    frontal = 30 * y + 20 * rng.random(n)
    noise = rng.standard_normal(n)
    names = ["cnn_logit", "age", "loc_WT_frontal_lobe_pct", "noise"]
    X = np.column_stack([choi.logit(cnn), age, frontal, noise])
    h = choi.HybridLogistic(C=1.0).fit(X, y, names)
    assert h.features_[0] == "cnn_logit" and {"age", "loc_WT_frontal_lobe_pct"} <= set(h.features_)
    assert "noise" not in h.features_  # t-test p >= 0.05 on pure noise
    cols = [names.index(f) for f in h.features_]
    Z = (X[:, cols] - X[:, cols].mean(0)) / X[:, cols].std(0)
    sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(Z, y)
    assert np.allclose(h.coef_, sk.coef_[0], atol=1e-6) and abs(h.intercept_ - sk.intercept_[0]) < 1e-6
    assert np.allclose(h.predict_proba(X), sk.predict_proba(Z)[:, 1], atol=1e-7)
    # a missing value takes the training mean
    Xm = X[:3].copy()
    Xm[0, 1] = np.nan
    assert np.isfinite(h.predict_proba(Xm)).all()


def test_weights_file_sha256_is_checked_and_a_modified_file_refused(tmp_path):
    src = choi.ResNet34(3, 1000)
    p = tmp_path / "resnet34.pth"
    torch.save(src.state_dict(), p)
    digest = choi.sha256_file(p)
    state = choi.load_state_dict_checked(p, digest)
    net = choi.ResNet34(2, 1)
    info = choi.adapt_resnet34_state(net, state)
    assert sorted(info["fresh"]) == ["fc.bias", "fc.weight"]
    assert torch.equal(net.layer3[2].conv1.weight, src.layer3[2].conv1.weight)
    assert torch.allclose(net.conv1.weight[:, 0], src.conv1.weight.mean(1) * 1.5)
    with pytest.raises(choi.WeightsError, match="64-hex"):
        choi.load_state_dict_checked(p, "")
    raw = bytearray(p.read_bytes())
    raw[-100] ^= 0xFF  # one byte altered
    p.write_bytes(bytes(raw))
    with pytest.raises(choi.WeightsError, match="SHA-256 mismatch"):
        choi.load_state_dict_checked(p, digest)
    with pytest.raises(choi.WeightsError, match="not found"):
        choi.load_state_dict_checked(tmp_path / "absent.pth", digest)


def test_gpu_training_script_cpu_smoke(tmp_path):
    """scripts/train_choi_cnn.py on 4 prepared cases, 1 epoch, CPU: out-of-fold probabilities per case, training
    fold probabilities from the inner CV (the GPU itself cannot run here: the same code path on CPU)."""
    ids = [f"C{i}" for i in range(4)]
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (4, 5, 3, 128, 128), dtype=np.uint8)
    images[:, :, 2] = 0
    images[:, :, 2, 50:70, 50:70] = 1
    folds = np.array([[0, 1, 0, 1]])
    data = tmp_path / "d.npz"
    np.savez_compressed(data, images=images, available=np.ones((4, 3), bool),
                        norm=np.tile(np.array([[127.0, 70.0], [127.0, 70.0], [0.0, 1.0]], np.float32), (4, 1, 1)),
                        case_ids=np.array(ids), y=np.array([1.0, 1.0, 0.0, 0.0]), channels=np.array(["t1c", "flair",
                                                                                                      "mask"]),
                        **{"folds_flair-t1-t1c": folds})
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "train_choi_cnn.py"), "--data", str(data), "--out",
                        str(out), "--device", "cpu", "--epochs", "1", "--repeats", "1", "--inner-folds", "2",
                        "--batch-size", "8", "--variants", "t=t1c,mask@flair-t1-t1c"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "choi_cnn_oof.json").read_text())
    v = res["variants"]["t"]
    rep = v["repetitions"]["0"]
    assert v["case_ids"] == ids and rep["complete"] and all(0 < p < 1 for p in rep["oof"])
    assert len(rep["oof_slices"][0]) == 5 and abs(np.mean(rep["oof_slices"][0]) - rep["oof"][0]) < 1e-5
    f0 = rep["folds"]["0"]
    assert f0["test_cases"] == [0, 2] and f0["train_cases"] == [1, 3] and len(f0["train_cnn_prob"]) == 2
    assert f0["epochs_selected"] == 1


def _cnn_json(y, folds, oof, train_prob, ids):
    """A train_choi_cnn.py-shaped JSON: one repetition, folds given per case."""
    folds = np.asarray(folds)
    rep = {"oof": list(map(float, oof)), "complete": True, "folds": {}}
    for f in range(int(folds.max()) + 1):
        tr, te = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        rep["folds"][str(f)] = {"train_cases": tr.tolist(), "test_cases": te.tolist(),
                                "train_cnn_prob": [float(train_prob[i]) for i in tr]}
    return {"variants": {"v": {"channels": ["t1c", "mask"], "family": "flair-t1-t1c", "case_ids": ids,
                               "y": [int(v) for v in y], "repetitions": {"0": rep}}}}


def test_hybrid_cv_age_baseline_equals_train_and_cnn_inputs_come_from_the_json():
    """The age baseline of the hybrid's folds equals train.repeated_cv's (an independent implementation: the check
    that the CNN's folds are the LASSO models' folds rests on it); the hybrid is fitted on the training cases' inner
    CNN probabilities, and refuses a table whose labels disagree with the CNN file's."""
    import pandas as pd
    from GliomaRadiogenomicsLib.train import _logistic_baseline, cv_splits
    rng = np.random.default_rng(3)
    n = 60
    y = (rng.random(n) < 0.7).astype(int)
    ids = [f"P{i:02d}" for i in range(n)]
    age = 50 - 5 * y + 9 * rng.standard_normal(n)
    age[5] = np.nan
    table = pd.DataFrame({"case_id": ids[::-1], "age": age[::-1], "IDH": y[::-1],  # another row order
                          "loc_WT_frontal_lobe_pct": (8 * y + 30 * rng.random(n))[::-1],
                          "mask_WT_original_shape_Sphericity": rng.random(n)[::-1], "other": rng.random(n)})
    jobs, _ = cv_splits(pd.Series(y.astype(str)), 1, 5, 7)
    folds = np.zeros(n, int)
    for _, f, tr, te in jobs:
        folds[te] = f
    signal = np.clip(0.5 + 0.35 * (y - 0.5) + 0.15 * rng.standard_normal(n), 0.01, 0.99)
    d = _cnn_json(y, folds, oof=signal, train_prob=signal, ids=ids)
    res = choi.hybrid_cv(d, "v", table, "IDH")
    assert res["offered"] == ["loc_WT_frontal_lobe_pct", "mask_WT_original_shape_Sphericity", "age"]  # not "other"
    dfo = table.set_index("case_id").loc[ids].reset_index()
    p_age = np.full(n, np.nan)
    for _, f, tr, te in jobs:
        p_age[te] = _logistic_baseline(dfo.iloc[tr], dfo.iloc[te], "IDH", ["age"])
    assert res["age"]["per_repetition"] == [round(choi.auc(y, p_age), 4)]
    assert res["hybrid"]["per_repetition"][0] > 0.85 and res["cnn"]["per_repetition"][0] > 0.85
    assert all(f[0] == "cnn_logit" for f in res["features_per_fold"]["0"].values())
    # training cases' CNN input = the JSON's train_cnn_prob: uninformative ones there -> the CNN term is not learnt
    noise = rng.random(n)
    res2 = choi.hybrid_cv(_cnn_json(y, folds, oof=signal, train_prob=noise, ids=ids), "v", table, "IDH")
    assert res2["hybrid"]["per_repetition"][0] < res["hybrid"]["per_repetition"][0] - 0.1, (res2["hybrid"], res["hybrid"])
    bad = table.copy()
    bad.loc[bad["case_id"] == "P03", "IDH"] = 1 - y[3]
    with pytest.raises(ValueError, match="differs .* P03"):
        choi.hybrid_cv(d, "v", bad, "IDH")
    with pytest.raises(ValueError, match="no row in the feature table: P07"):
        choi.hybrid_cv(d, "v", table[table["case_id"] != "P07"], "IDH")


def test_train_choi_hybrid_cli_smoke_on_real_cases(tmp_path):
    """`train --method choi-hybrid --choi-data`: 8 real TCGA-LGG cases' slices (prepare_choi_data.case_slices), the
    CNN CV on the CPU for 1 epoch (the script's subprocess), then the hybrid (CNN + age) in the same folds; the
    evaluation JSON carries per-repetition AUCs and the final hybrid."""
    import csv
    labels = COHORT / "labels.csv"
    if not labels.is_file():
        pytest.skip(f"{labels} absent: real TCGA-LGG data (../shared) is not on this machine")
    pytest.importorskip("SimpleITK")
    spec = __import__("importlib.util").util.spec_from_file_location("prep", REPO / "scripts" / "prepare_choi_data.py")
    prep = __import__("importlib.util").util.module_from_spec(spec)
    spec.loader.exec_module(prep)
    rows = [r for r in csv.DictReader(labels.open()) if r["IDH_mutant"] in ("0.0", "1.0")
            and "t1c" in r["sequences"]]
    pick = [r for r in rows if r["IDH_mutant"] == "0.0"][:4] + [r for r in rows if r["IDH_mutant"] == "1.0"][:4]
    ids = [r["case_id"] for r in pick]
    y = np.array([float(r["IDH_mutant"]) for r in pick])
    X, A, N = zip(*[prep.case_slices(COHORT / "cases" / c)[:3] for c in ids])
    data = tmp_path / "choi_slices.npz"
    np.savez_compressed(data, images=np.stack(X), available=np.stack(A), norm=np.stack(N), case_ids=np.array(ids),
                        y=y, channels=np.array(prep.CHANNELS),
                        **{"folds_flair-t1-t1c": choi.stratified_folds(y, 2, 5)[None]})
    table = tmp_path / "t.csv"
    table.write_text("case_id,age,IDH\n" + "".join(f"{r['case_id']},{r['age']},{r['IDH_mutant']}\n" for r in pick))
    out = tmp_path / "choi.json"
    r = subprocess.run([sys.executable, "-m", "GliomaRadiogenomicsLib.cli", "train", "--method", "choi-hybrid",
                        "--table", str(table), "--label", "IDH", "--out", str(out), "--choi-data", str(data),
                        "--choi-epochs", "1", "--choi-device", "cpu", "--repeats", "1"],
                       capture_output=True, text=True, timeout=600, cwd=REPO,
                       env={**__import__("os").environ, "PYTHONPATH": str(REPO / "GliomaRadiogenomics")})
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["n"] == 8 and res["repetitions"] == [0] and res["offered"] == ["age"]
    assert res["case_ids"] == ids and len(res["oof_hybrid"]["0"]) == 8
    assert all(0 <= v <= 1 for v in res["cnn"]["per_repetition"] + res["hybrid"]["per_repetition"])
    assert res["final_hybrid"]["features"][0] == "cnn_logit" and "choi.bundle.json" in res["what"]
    assert (tmp_path / "choi.cnn" / "choi_cnn_oof.json").is_file()
    # --choi-data also trains the final CNN: the run-time bundle + its weights (test_choi_bundle.py applies one)
    b = json.loads((tmp_path / "choi.bundle.json").read_text())
    assert b["cnn"]["sha256"] == choi.sha256_file(tmp_path / "choi.bundle.cnn.pt") and b["input"]["grid"] == 128
    assert b["synthetic"] is False and b["training"]["n"] == 8
    # a CNN source is needed
    r = subprocess.run([sys.executable, "-m", "GliomaRadiogenomicsLib.cli", "train", "--method", "choi-hybrid",
                        "--table", str(table), "--label", "IDH", "--out", str(out)], capture_output=True, text=True,
                       timeout=120, cwd=REPO, env={**__import__("os").environ,
                                                   "PYTHONPATH": str(REPO / "GliomaRadiogenomics")})
    assert r.returncode != 0 and "needs --choi-cnn" in r.stderr
