"""Shipped OPTIONAL models (issue 17: the Choi 2021 hybrid IDH CNN trained on TCGA-LGG) and what `--bundle` means.

- the registry (resources/models/defaults.json, key ``optional``) names the Choi bundle; `--bundle choi-idh` resolves
  to it; the bundle is real (synthetic: false), says what it was trained on, and its repeated-CV figures are those of
  its committed evaluation (docs/real-data/tcga_lgg_IDH_choi.json); its weights (42.7 MB, over the repository's
  5 MB file limit) are built locally, and without them it is refused naming the build script;
- a logistic bundle given to `run` replaces the default models; a Shim / Choi JSON bundle ADDS its task to them;
- `models` lists the defaults and the optional model with what each was trained on.
Float16 weights and the run's native-grid CNN input: test_choi_bundle.py (a bundle trained in the test)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from GliomaRadiogenomicsLib import bundle as B

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "GliomaRadiogenomics")}
CLI = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli"]


def _choi_path() -> Path:
    return B.optional_models()["choi-idh"]["path"]


def test_choi_idh_is_a_registered_optional_model_and_resolves():
    opt = B.optional_models()
    assert set(opt) == {"choi-idh"} and opt["choi-idh"]["task"] == "IDH"
    p = _choi_path()
    assert p.is_file() and p.parent == B.shipped_models_dir()
    assert B.resolve_bundle_ref("choi-idh") == str(p)
    assert B.resolve_bundle_ref(p.name) == str(p)                       # a shipped file name
    assert B.resolve_bundle_ref("no-such-model") == "no-such-model"     # left to the loader, which names it
    # not applied by default: the default families do not include it
    assert p not in B.default_bundle_paths()


def test_the_shipped_choi_bundle_is_real_and_matches_its_evaluation(tmp_path):
    from GliomaRadiogenomicsLib import choi
    b = B.read_bundle_json(_choi_path())   # the JSON ships; its weights are built locally (over the 5 MB limit)
    assert b["format"] == choi.CHOI_FORMAT and b["synthetic"] is False and b["task"] == "IDH"
    assert "TCGA-LGG" in b["training"]["trained_on"] and b["training"]["n"] == 62
    assert b["input"]["channels"] == ["flair", "mask"]
    assert b["cnn"]["dtype"] == "float16" and len(b["cnn"]["sha256"]) == 64
    card = b["training"]["data_card"]  # third-party data: its licence and caveats travel with the model
    assert "CC BY 3.0" in card["licence"] and "Buda" in card["licence"]
    assert any("8 bit" in c for c in card["caveats"]) and any("nominal" in c for c in card["caveats"])
    from GliomaRadiogenomicsLib.render import shim_card_rows
    from GliomaRadiogenomicsLib.shim import entry_card
    rows = dict(shim_card_rows({"kind": "choi", "card": entry_card("choi", b), "synthetic": False}))
    assert "CC BY 3.0" in rows["Data licence"] and "8 bit" in rows["Caveats"]
    assert rows["AUC (95% CI)"].startswith(f"{b['metrics']['auc_cv']:.2f} (95% CI")
    m = b["metrics"]
    ev = json.loads((REPO / m["evaluation"]).read_text())   # the committed evaluation the figures come from
    assert ev["hybrid"]["mean"] == m["auc_cv_hybrid"]["mean"] == m["auc_cv"]
    assert len(m["auc_cv_hybrid"]["per_repetition"]) >= 10                 # repeated CV, >= 10 repetitions
    assert m["auc_cv"] == pytest.approx(np.mean(m["auc_cv_hybrid"]["per_repetition"]), abs=6e-5)
    assert m["auc_cv_95ci"][0] > 0.5                                        # shipped: better than a coin
    assert m["auc_cv_95ci"][0] < m["auc_cv"] < m["auc_cv_95ci"][1]
    assert b["hybrid"]["features"][0] == "cnn_logit" and "age" in b["hybrid"]["features"]
    # the hybrid's committed out-of-fold probabilities give its per-repetition AUCs (labels are not committed:
    # the CNN file's y)
    cv = json.loads(__import__("gzip").open(REPO / "docs" / "real-data" / "choi_cnn_oof.json.gz").read())
    y = np.asarray(cv["variants"]["flair+mask"]["y"], int)
    for r, a in zip(ev["repetitions"], ev["hybrid"]["per_repetition"]):
        assert choi.auc(y, np.asarray(ev["oof_hybrid"][str(r)])) == pytest.approx(a, abs=6e-5)
    # without its weights file the bundle is refused with the file named and how to build it
    (tmp_path / "c.json").write_text(_choi_path().read_text())
    with pytest.raises(B.BundleError, match=r"c\.json.*missing.*scripts/build_choi_bundle\.py"):
        choi.load_choi_bundle(tmp_path / "c.json")


def test_a_logistic_bundle_replaces_the_defaults_a_json_bundle_adds_to_them(tmp_path):
    defaults = [str(p) for p in B.default_bundle_paths()]
    choi_path = str(_choi_path())
    logistic = defaults[0]
    assert B.effective_bundle_paths(None) == defaults
    assert B.effective_bundle_paths([choi_path]) == defaults + [choi_path]
    assert B.effective_bundle_paths([logistic]) == [logistic]
    assert B.effective_bundle_paths([logistic, choi_path]) == [logistic, choi_path]
    # the batch script's options hash counts the defaults when only a JSON bundle is given
    from GliomaMRML.batch import batch_options_hash
    assert batch_options_hash(bundles=[choi_path]) != batch_options_hash(bundles=None)
    assert batch_options_hash(bundles=[choi_path]) == batch_options_hash(bundles=defaults + [choi_path])


def test_models_lists_defaults_and_the_optional_model():
    r = subprocess.run(CLI + ["models", "--json"], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["models"]
    reg = json.loads((B.shipped_models_dir() / "defaults.json").read_text())  # the registry file itself
    assert [Path(x["file"]).name for x in rows if x["role"] == "default"] == [
        f for t in ("IDH", "epilepsy", "ATRX") for f in reg["tasks"][t]]
    (c,) = [x for x in rows if x["role"] == "optional"]
    assert c["name"] == "choi-idh" and c["task"] == "IDH" and c["synthetic"] is False
    weights = _choi_path().parent / json.loads(_choi_path().read_text())["cnn"]["weights"]
    assert c["installed"] is weights.is_file()   # built locally (scripts/build_choi_bundle.py) or not
    assert "TCGA-LGG" in c["trained_on"] and c["sequences"] == ["flair"]
    for x in rows:   # every model shown states what it was trained on; synthetic ones say so
        assert x["trained_on"]
        assert x["synthetic"] == ("SYNTHETIC" in x["trained_on"])
    text = subprocess.run(CLI + ["models"], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120).stdout
    assert "optional IDH       choi-idh" in text and "(SYNTHETIC data)" in text


def test_an_unknown_bundle_name_is_refused_naming_it(tmp_path):
    r = subprocess.run(CLI + ["predict", "--bundle", "choi-idx", "--table", str(tmp_path / "t.csv"),
                              "--out", str(tmp_path / "p.csv")], capture_output=True, text=True, env=ENV, cwd=REPO,
                       timeout=120)
    assert r.returncode == 2 and "choi-idx" in r.stderr


def test_the_run_builds_the_cnn_input_from_the_files_on_the_reference_grid():
    """choi.native_grid_images: the reference as acquired; another sequence from its own file, resampled ONCE onto
    the reference's grid through the run's registration transform (preprocess convention: reference point ->
    moving point). A 1-voxel translation moves the values by exactly one voxel; the working-grid images are not used
    (their second interpolation moved the CNN probability by 0.027 on TCGA-CS-4942)."""
    from types import SimpleNamespace
    import SimpleITK as sitk
    from GliomaRadiogenomicsLib import choi
    rng = np.random.default_rng(3)
    a = rng.uniform(1, 200, (6, 8, 10)).astype(np.float32)
    ref = sitk.GetImageFromArray(a)
    ref.SetSpacing((1.0, 1.0, 2.0))
    flair = sitk.GetImageFromArray(a[:, :, ::-1].copy())
    flair.CopyInformation(ref)
    shift = sitk.TranslationTransform(3, (1.0, 0.0, 0.0))   # reference x -> moving x + 1 mm (one voxel)
    pre = SimpleNamespace(reference_native=ref, reference="t1c", transforms={"t1c": sitk.Transform(), "flair": shift},
                          images={"t1c": None, "flair": None})   # working-grid images must not be read
    case = SimpleNamespace(images={"t1c": ref, "flair": flair})
    out = choi.native_grid_images(case, pre, ["t1c", "flair", "mask"])
    assert set(out) == {"t1c", "flair"} and out["t1c"] is ref
    got = sitk.GetArrayFromImage(out["flair"])
    want = a[:, :, ::-1][:, :, 1:]                # value at x = the file's value at x + 1
    assert np.allclose(got[:, :, :-1], want, atol=1e-4) and np.all(got[:, :, -1] == 0)
