"""Choi 2021 hybrid IDH through the CLI (issue 17): `train --method choi-hybrid --choi-data` trains the FINAL CNN and
writes the run-time bundle (JSON + torch state dict, SHA-256 in the bundle); `predict --bundle --cases` and
`run --bundle` apply it, and their probability equals a recomputation by hand from the bundle (the CNN's forward
pass with torch on the case's slices + the logistic formula). A tampered weights file is refused with its name; a
case without the sequence the input variant needs gets no probability and the reason. Tiny SYNTHETIC cohort
(12 cases, 32 x 32 slices, 2 epochs): about a minute on the CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
sitk = pytest.importorskip("SimpleITK")

from GliomaRadiogenomicsLib import choi  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "GliomaRadiogenomics")}
CLI = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli"]
GRID = 32
CHANNELS = ("t1c", "flair", "mask")
VOLUME = "mask_WT_original_shape_VoxelVolume"
SHAPE_PRESET = """glioma_radiogenomics:
  name: choi-test-shape
  sequences: [t1c, flair]
  regions: [WT]
  normalization: zscore
imageType:
  Original: {}
featureClass:
  shape:
"""


def _image(a, dtype=sitk.sitkFloat32):
    img = sitk.GetImageFromArray(a)
    img.SetSpacing((2.0, 2.0, 2.0))
    return sitk.Cast(img, dtype)


def write_case(folder: Path, mutant: int, rng, with_t1c: bool = True) -> float:
    """A SYNTHETIC case folder (t1c, flair, flair_abnormality; 40 x 40 x 24 voxels of 2 mm) with the planted
    signal: IDH-mutant tumours are dark on T1c and larger, wildtype ones enhance (bright) and are smaller.
    Returns the tumour volume (mm^3). 2-mm voxels: 80 x 80 x 48 mm, large enough for `run`."""
    z, y, x = np.mgrid[:24, :40, :40]
    brain = ((z - 12) / 11.0) ** 2 + ((y - 20) / 18.0) ** 2 + ((x - 20) / 18.0) ** 2 <= 1
    r = rng.uniform(6, 7.5) if mutant else rng.uniform(3.5, 5)
    c = rng.uniform([10, 15, 15], [14, 25, 25])
    tumour = ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r * r) & brain
    t1c = np.where(brain, 110 + 8 * rng.standard_normal(brain.shape), 0)
    t1c[tumour] = (55 if mutant else 215) + 8 * rng.standard_normal(tumour.sum())
    flair = np.where(brain, 90 + 8 * rng.standard_normal(brain.shape), 0)
    flair[tumour] = 190 + 8 * rng.standard_normal(tumour.sum())
    folder.mkdir(parents=True)
    if with_t1c:
        sitk.WriteImage(_image(np.clip(t1c, 1, 250) * brain), str(folder / "t1c.nii.gz"))
    sitk.WriteImage(_image(np.clip(flair, 1, 250) * brain), str(folder / "flair.nii.gz"))
    sitk.WriteImage(_image(tumour.astype(np.uint8), sitk.sitkUInt8), str(folder / "flair_abnormality.nii.gz"))
    return float(tumour.sum()) * 8.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """12 SYNTHETIC cases -> choi_slices.npz (choi.volume_slices, grid 32) -> `train --method choi-hybrid`."""
    d = tmp_path_factory.mktemp("choi")
    rng = np.random.default_rng(17)
    y = np.array([1, 0] * 6)
    ids = [f"S{i:02d}" for i in range(len(y))]
    rows, X, A, N = [], [], [], []
    for cid, t in zip(ids, y):
        vol = write_case(d / "cases" / cid, t, rng)
        rows.append({"case_id": cid, "IDH": int(t), "age": round(float(rng.uniform(30, 70)), 1), VOLUME: vol})
        images, mask = choi.read_case_folder_images(d / "cases" / cid, CHANNELS)
        x, av, nm, _ = choi.volume_slices(images, mask, CHANNELS, GRID, "uint8")
        X.append(x), A.append(av), N.append(nm)
    table = pd.DataFrame(rows)
    table.to_csv(d / "t.csv", index=False)
    np.savez_compressed(d / "choi_slices.npz", images=np.stack(X), available=np.stack(A), norm=np.stack(N),
                        case_ids=np.array(ids), y=y.astype(float), channels=np.array(CHANNELS),
                        **{"folds_flair-t1-t1c": choi.stratified_folds(y, 2, 3)[None]})
    r = subprocess.run(CLI + ["train", "--method", "choi-hybrid", "--table", str(d / "t.csv"), "--label", "IDH",
                              "--out", str(d / "choi.json"), "--choi-data", str(d / "choi_slices.npz"),
                              "--choi-epochs", "2", "--choi-device", "cpu", "--repeats", "1", "--synthetic"],
                       capture_output=True, text=True, timeout=900, cwd=REPO, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    return d, table, d / "choi.bundle.json"


def by_hand(bundle_path: Path, images: dict, mask, values: dict) -> float:
    """The bundle's probability recomputed without predict_entry: weights via torch.load(weights_only=True), the
    ResNet34's forward pass on the case's slices (choi.case_input), the mean over the slices, then the logistic
    formula written out."""
    b = json.loads(bundle_path.read_text())
    net = choi.ResNet34(b["cnn"]["in_channels"], 1)
    net.load_state_dict(torch.load(bundle_path.parent / b["cnn"]["weights"], weights_only=True))
    x, _ = choi.case_input(b, images, mask)
    with torch.no_grad():
        q = float(torch.sigmoid(net.eval()(torch.from_numpy(x))).mean())
    h = b["hybrid"]
    q = min(max(q, 1e-4), 1 - 1e-4)
    xs = [np.log(q / (1 - q))] + [float(values[f]) for f in h["features"][1:]]
    eta = h["intercept"] + sum(c * (v - m) / s for c, v, m, s in zip(h["coef"], xs, h["center"], h["scale"]))
    return 1 / (1 + np.exp(-eta))


def test_train_writes_the_bundle_and_the_final_cnn(trained):
    d, table, bp = trained
    b = json.loads(bp.read_text())
    w = bp.parent / b["cnn"]["weights"]
    assert b["format"] == choi.CHOI_FORMAT and b["kind"] == "choi-hybrid" and b["task"] == "IDH"
    assert w.name == "choi.bundle.cnn.pt" and b["cnn"]["sha256"] == choi.sha256_file(w)
    assert b["input"]["channels"] == ["t1c", "mask"] and b["input"]["grid"] == GRID
    assert b["input"]["quantisation"] == "uint8" and b["input"]["slice_offsets"] == list(choi.SLICE_OFFSETS)
    assert b["cnn"]["in_channels"] == 2 and 1 <= b["cnn"]["epochs"] <= 2
    assert b["synthetic"] is True and "SYNTHETIC" in b["name"] and "SYNTHETIC" in b["training"]["trained_on"]
    assert b["training"]["n"] == 12 and b["training"]["n_positive"] == 6
    assert "not a diagnosis" in b["intended_use"]
    h = b["hybrid"]
    assert h["features"][0] == "cnn_logit" and VOLUME in h["features"]  # the planted volume signal is selected
    assert len(h["coef"]) == len(h["center"]) == len(h["scale"]) == len(h["means"]) == len(h["features"])
    ev = json.loads((d / "choi.json").read_text())
    assert b["metrics"]["auc_cv_hybrid"] == ev["hybrid"] and ev["final_hybrid"]["coef"] == h["coef"]
    assert b["metrics"]["auc_cv_hybrid"]["mean"] > 0.8  # the planted signal is recovered out of fold
    # the state dict loads with weights_only=True into the bundle's architecture
    state = torch.load(w, weights_only=True)
    choi.ResNet34(2, 1).load_state_dict(state)
    from GliomaRadiogenomicsLib.shim import json_bundle_kind
    assert json_bundle_kind(bp) == "choi"


def test_a_bundle_from_an_earlier_final_network_in_float16(trained, tmp_path):
    """`train --choi-final` builds the bundle from an earlier final network (not trained again; its SHA-256 checked)
    and `--choi-float16` stores the weights in float16: half the file, loaded into the float32 network, the same
    hybrid, and the case's probability within 1e-3 of the float32 bundle's (the shipped choi-idh: 0.0023 at most)."""
    d, table, bp = trained
    out = tmp_path / "h.json"
    r = subprocess.run(CLI + ["train", "--method", "choi-hybrid", "--table", str(d / "t.csv"), "--label", "IDH",
                              "--choi-cnn", str(d / "choi.cnn" / "choi_cnn_oof.json"), "--choi-variant", "t1c+mask",
                              "--choi-final", str(d / "choi.cnn" / "choi_cnn_final.json"), "--choi-float16",
                              "--synthetic", "--out", str(out)], capture_output=True, text=True, timeout=600,
                       cwd=REPO, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    b16, b32 = (json.loads(p.read_text()) for p in (tmp_path / "h.bundle.json", bp))
    assert b16["cnn"]["dtype"] == "float16" and b16["cnn"]["trained_sha256_float32"] == b32["cnn"]["sha256"]
    assert b16["hybrid"]["coef"] == b32["hybrid"]["coef"]
    w16 = tmp_path / b16["cnn"]["weights"]
    assert w16.stat().st_size < 0.6 * (bp.parent / b32["cnn"]["weights"]).stat().st_size
    assert all(v.dtype == torch.float16 for v in torch.load(w16, weights_only=True).values() if v.is_floating_point())
    l16 = choi.load_choi_bundle(tmp_path / "h.bundle.json")   # SHA-256 of the float16 file
    net = choi.load_cnn(l16)
    assert next(net.parameters()).dtype == torch.float32
    images, mask = choi.read_case_folder_images(d / "cases" / "S03", CHANNELS)
    x, _ = choi.case_input(l16, images, mask)
    q16, _ = choi.cnn_probability(net, x)
    q32, _ = choi.cnn_probability(choi.load_cnn(choi.load_choi_bundle(bp)), x)
    assert abs(q16 - q32) < 1e-3
    # a final network whose weights were altered is refused
    (d / "choi.cnn" / "tampered.json").write_text((d / "choi.cnn" / "choi_cnn_final.json").read_text().replace(
        json.loads((d / "choi.cnn" / "choi_cnn_final.json").read_text())["variants"]["t1c+mask"]["sha256"], "0" * 64))
    r = subprocess.run(CLI + ["train", "--method", "choi-hybrid", "--table", str(d / "t.csv"), "--label", "IDH",
                              "--choi-cnn", str(d / "choi.cnn" / "choi_cnn_oof.json"), "--choi-variant", "t1c+mask",
                              "--choi-final", str(d / "choi.cnn" / "tampered.json"), "--synthetic", "--out",
                              str(tmp_path / "t.json")], capture_output=True, text=True, timeout=600, cwd=REPO, env=ENV)
    assert r.returncode == 2 and "SHA-256" in r.stderr


def test_predict_cli_equals_the_bundle_by_hand(trained, tmp_path):
    d, table, bp = trained
    # the case input of the run-time path is the training data's exactly (the same slices, normalised the same)
    data = np.load(d / "choi_slices.npz")
    images, mask = choi.read_case_folder_images(d / "cases" / "S03", CHANNELS)
    x, _ = choi.case_input(json.loads(bp.read_text()), images, mask)
    assert np.array_equal(x, choi.network_input(data["images"][3], list(CHANNELS), data["norm"][3], ["t1c", "mask"]))
    table.head(4).to_csv(tmp_path / "new.csv", index=False)
    r = subprocess.run(CLI + ["predict", "--bundle", str(bp), "--table", str(tmp_path / "new.csv"), "--cases",
                              str(d / "cases"), "--trust-table", "--out", str(tmp_path / "p.csv")],
                       capture_output=True, text=True, timeout=300, cwd=REPO, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    got = pd.read_csv(tmp_path / "p.csv")
    assert got["case_id"].tolist() == table["case_id"].head(4).tolist() and got["synthetic_model"].all()
    assert "SYNTHETIC" in r.stdout
    for _, row in got.iterrows():
        images, mask = choi.read_case_folder_images(d / "cases" / row["case_id"], CHANNELS)
        want = by_hand(bp, images, mask, table.set_index("case_id").loc[row["case_id"]].to_dict())
        assert abs(row["probability"] - want) <= 1e-6, (row["case_id"], row["probability"], want)
        assert row["label"] == ("IDH-mutant" if want >= 0.5 else "IDH-wildtype")
    # without --cases the CNN has no images: a clear error
    r = subprocess.run(CLI + ["predict", "--bundle", str(bp), "--table", str(tmp_path / "new.csv"), "--trust-table",
                              "--out", str(tmp_path / "q.csv")], capture_output=True, text=True, timeout=300,
                       cwd=REPO, env=ENV)
    assert r.returncode == 2 and "--cases" in r.stderr


def test_run_applies_the_bundle_into_predictions_json(trained, tmp_path):
    d, table, bp = trained
    (tmp_path / "shape.yaml").write_text(SHAPE_PRESET)
    case = d / "cases" / "S04"
    out = tmp_path / "run"
    # a 3 mm working grid on the 2 mm case: the CNN input is nevertheless made on the case's own grid, as training was
    r = subprocess.run(CLI + ["run", "--case-dir", str(case), "--segmentation", "case", "--no-register",
                              "--spacing", "3", "--brain-mask", "nonzero", "--preset", str(tmp_path / "shape.yaml"),
                              "--bundle", str(bp), "--age", "47", "--workers", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=REPO, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((out / "predictions.json").read_text())
    (e,) = [e for e in doc["bundle_tasks"] if e["kind"] == "choi"]
    from GliomaRadiogenomicsLib.predict import validate_predictions
    validate_predictions(doc)  # the Choi entry as the run writes it (nomogram included) passes the schema check
    # a Choi bundle is ADDED to the default models (here not applicable: their preset's features are not computed,
    # each task says why), it does not replace them
    assert doc["tasks"] == ["IDH", "epilepsy", "ATRX"]
    assert all(doc[t]["probability"] is None and doc[t]["reason"] for t in doc["tasks"])
    assert e["model"] == json.loads(bp.read_text())["name"] and e["synthetic"] is True and not e.get("reason")
    assert e["paper"] == "Choi 2021" and "SYNTHETIC" in e["trained_on"]
    feats = pd.read_csv(out / "features.csv").iloc[0].to_dict()
    images, _ = choi.read_case_folder_images(case, CHANNELS)   # the files as acquired + the run's written mask
    want = by_hand(bp, images, sitk.ReadImage(str(out / "segmentation.nii.gz")), {**feats, "age": 47.0})
    assert abs(e["probability"] - want) <= 1e-6, (e["probability"], want)
    nomo = json.loads(bp.read_text())["nomogram"]  # the case's nomogram block in its predictions.json entry
    assert list(e["nomogram"]["points"]) == [v["name"] for v in nomo["variables"]]
    assert e["nomogram"]["probability"] == pytest.approx(e["probability"], abs=1e-9)
    assert "IDH (Choi 2021): probability" in r.stdout and "SYNTHETIC" in r.stdout
    # the report: the Choi heading (render.shim_title) and the model card from what the bundle records
    page = (out / "report.html").read_text()
    m = json.loads(bp.read_text())["metrics"]
    auc = m["auc_cv_hybrid"]
    assert "<h3>Choi 2021 hybrid IDH (CNN on the tumour slices + shape / loci / age)</h3>" in page
    assert "<img alt='nomogram IDH (Choi 2021)'" in page  # its nomogram (the next test: the entry's numbers)
    lo, hi = m["auc_cv_95ci"]  # the hybrid's repeated-CV CI (evaluation.repeated_cv_summary), recorded and shown
    assert m["auc_cv"] == auc["mean"] and lo <= auc["mean"] <= hi
    assert (f"<th>AUC (95% CI)</th><td>{auc['mean']:.2f} (95% CI {lo:.2f}-{hi:.2f}, DeLong (mean of the "
            f"repetitions&#x27; variances)); mean of {len(auc['per_repetition'])} repetition(s)</td>") in page


def test_tampered_or_missing_weights_are_refused_with_the_file_named(trained, tmp_path):
    d, table, bp = trained
    b = json.loads(bp.read_text())
    (tmp_path / "b.json").write_text(bp.read_text())
    raw = bytearray((bp.parent / b["cnn"]["weights"]).read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one byte changed
    (tmp_path / b["cnn"]["weights"]).write_bytes(bytes(raw))
    table.head(1).to_csv(tmp_path / "new.csv", index=False)
    args = ["predict", "--bundle", str(tmp_path / "b.json"), "--table", str(tmp_path / "new.csv"), "--cases",
            str(d / "cases"), "--trust-table", "--out", str(tmp_path / "p.csv")]
    r = subprocess.run(CLI + args, capture_output=True, text=True, timeout=300, cwd=REPO, env=ENV)
    assert r.returncode == 2 and "SHA-256" in r.stderr and b["cnn"]["weights"] in r.stderr, r.stderr
    assert not (tmp_path / "p.csv").exists()
    from GliomaRadiogenomicsLib.bundle import BundleError
    (tmp_path / b["cnn"]["weights"]).unlink()
    with pytest.raises(BundleError, match=f"{b['cnn']['weights']}.*missing") as err:
        choi.load_choi_bundle(tmp_path / "b.json")
    # a user's own bundle: told to copy its weights, not to build the shipped model's
    assert "train --method choi-hybrid" in str(err.value) and "build_choi_bundle" not in str(err.value)


def test_a_case_without_the_variants_sequence_gets_no_probability(trained, tmp_path):
    d, table, bp = trained
    write_case(tmp_path / "cases" / "N01", 1, np.random.default_rng(5), with_t1c=False)
    pd.DataFrame([{"case_id": "N01", "age": 40.0, VOLUME: 900.0}]).to_csv(tmp_path / "n.csv", index=False)
    r = subprocess.run(CLI + ["predict", "--bundle", str(bp), "--table", str(tmp_path / "n.csv"), "--cases",
                              str(tmp_path / "cases"), "--trust-table", "--out", str(tmp_path / "p.csv")],
                       capture_output=True, text=True, timeout=300, cwd=REPO, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    got = pd.read_csv(tmp_path / "p.csv").iloc[0]
    assert pd.isna(got["probability"]) and pd.isna(got["cnn_probability"]) and pd.isna(got["label"])
    assert "needs T1C" in got["reason"] and "not imputed" in got["reason"]


def test_the_case_on_the_hybrids_nomogram(trained):
    """Issue 17: the bundle's nomogram (nomogram.geometry_from_training on the hybrid's coefficients / centering /
    training ranges) and the case's block in its predictions.json entry (case_predictions -> predict_entry, through
    ModelBundle.predict_proba_row + nomogram.case_nomogram, the logistic path's code)."""
    from GliomaRadiogenomicsLib.nomogram import check_geometry
    d, table, bp = trained
    b = choi.load_choi_bundle(bp)
    h, nomo = b["hybrid"], b["nomogram"]
    assert check_geometry(nomo, nomo["variables"]) is None and nomo["style"]
    assert [v["features"] for v in nomo["variables"]] == [[f] for f in h["features"]]  # CNN logit, shape, age
    images, mask = choi.read_case_folder_images(d / "cases" / "S05", CHANNELS)
    values = table.set_index("case_id").loc["S05"].to_dict()
    e, _ = choi.predict_entry(b, images, mask, values, None)
    n = e["nomogram"]
    lp0, lpp = n["lp_at_zero_points"], n["lp_per_point"]
    assert (lp0, lpp) == (nomo["lp_at_zero_points"], nomo["lp_per_point"])
    # per variable: the points nomogram.py's axis gives the case's value (c = offset + slope * value, from c_min)
    x = {"cnn_logit": float(choi.logit(e["cnn_probability"])), **{f: float(values[f]) for f in h["features"][1:]}}
    exact = {}
    for v, ax in zip(nomo["variables"], n["axes"]):
        assert ax["name"] == v["name"] and ax["case"]["value"] == pytest.approx(x[ax["feature"]], abs=1e-9)
        exact[v["name"]] = (ax["offset"] + ax["slope"] * x[ax["feature"]] - v["c_min"]) / lpp
        assert n["points"][v["name"]] == ax["case"]["points"] == round(exact[v["name"]], 2)
    assert n["total_points"] == pytest.approx(sum(n["points"].values()), abs=1e-9)
    # exact points -> probability: the entry's probability to 1e-6
    assert abs(1 / (1 + np.exp(-(lp0 + lpp * sum(exact.values())))) - e["probability"]) <= 1e-6
    # the entry's total points (points rounded to 0.01, as the logistic bundles print them) through the nomogram's
    # own scale: the probability up to that rounding
    tol = 0.005 * len(exact) * lpp * 0.25 + 1e-9
    assert abs(1 / (1 + np.exp(-(lp0 + lpp * n["total_points"]))) - e["probability"]) <= tol
    assert n["probability"] == pytest.approx(e["probability"], abs=1e-12)


def test_the_report_draws_the_choi_nomogram_with_the_entrys_numbers(trained, tmp_path):
    """Issue 17: the report (HTML and PDF, one list of blocks) draws the Choi entry's nomogram block with the
    logistic tasks' renderer (report.nomogram_figure -> nomogram.nomogram_figure), titled as its model card ("IDH
    (Choi 2021)"). The PNG it embeds is that renderer's drawing of the entry's block, and that drawing carries the
    entry's numbers: each variable's case marker at the entry's points (and its "N pts" label), the total points and
    the probability of the entry on their rows and in the title."""
    import base64
    import re

    import matplotlib.pyplot as plt
    from GliomaRadiogenomicsLib.nomogram import case_title, format_probability, nomogram_figure as draw
    from GliomaRadiogenomicsLib.report import _png, render_report, write_report
    from GliomaRadiogenomicsLib.shim import entry_card
    from test_report_status import status_doc
    d, table, bp = trained
    b = choi.load_choi_bundle(bp)
    images, mask = choi.read_case_folder_images(d / "cases" / "S05", CHANNELS)
    e, _ = choi.predict_entry(b, images, mask, table.set_index("case_id").loc["S05"].to_dict(), None)
    e["card"] = entry_card("choi", b)
    doc = status_doc()
    for t in doc["tasks"]:  # the logistic tasks' figures are test_nomogram.py's: here the Choi entry's alone
        doc[t]["nomogram"] = None
    doc = json.loads(json.dumps({**doc, "bundle_tasks": [e]}))  # as read back from predictions.json
    entry = doc["bundle_tasks"][0]
    nomo = entry["nomogram"]
    assert nomo["probability"] == pytest.approx(entry["probability"], abs=1e-12) and len(nomo["axes"]) >= 2
    page = render_report(doc, analysis=None)
    m = re.search(r"<img alt='nomogram IDH \(Choi 2021\)' src='data:image/png;base64,([^']+)'", page)
    assert m, "the report draws no nomogram for the Choi entry"
    assert page.index("Nomograms</h2>") < m.start() < page.index("Segmentation</h2>")
    assert page.count("<img") == 1 and "nomogram figure failed" not in page
    # the drawing of the entry's block: the case's numbers on it
    fig = draw(nomo, case_title("IDH (Choi 2021)", nomo, entry["synthetic"]))
    rows = {ax.get_gid().split(":", 1)[1]: ax for ax in fig.axes if (ax.get_gid() or "").startswith("nomogram-row:")}
    assert set(rows) == {"points", "total points", "probability"} | {a["name"] for a in nomo["axes"]}
    for a in nomo["axes"]:  # each variable: the marker at the entry's points (clipped to the axis, flagged beyond)
        ax, pts = rows[a["name"]], nomo["points"][a["name"]]
        lo, hi = a["points_range"]
        (marker,) = [ln for ln in ax.lines if ln.get_gid() == "nomogram-case"]
        assert marker.get_xdata()[0] == pytest.approx(min(max(pts, lo), hi)), a["name"]
        want = (f"{a['case']['label']} (beyond the axis: {min(max(pts, lo), hi):.1f} pts, extrapolated)"
                if a["case"]["out_of_range"] else f"{a['case']['label']}: {pts:.1f} pts")
        assert want in [t.get_text() for t in ax.texts], (a["name"], want)
    total = min(nomo["total_points"], nomo["total_points_range"][1])
    for key, text in (("total points", f"{total:.1f} points"),
                      ("probability", f"probability {format_probability(entry['probability'])}")):
        (marker,) = [ln for ln in rows[key].lines if ln.get_gid() == "nomogram-case"]
        assert marker.get_xdata()[0] == pytest.approx(total), key
        assert any(t.get_text().startswith(text) for t in rows[key].texts), key
    suptitle = fig._suptitle.get_text()
    assert suptitle.startswith("Nomogram IDH (Choi 2021): total points") and "SYNTHETIC" in suptitle
    assert f"{nomo['total_points']:.1f}" in suptitle and format_probability(entry["probability"]) in suptitle
    # ... is the figure the report embeds, byte for byte
    assert base64.b64decode(m.group(1)) == base64.b64decode(_png(fig))
    plt.close("all")
    # the PDF (the same blocks) embeds one image more than without the Choi entry
    for w in ("with", "without"):
        (tmp_path / w).mkdir()
    write_report(doc, None, tmp_path / "with" / "report.html")
    write_report({**doc, "bundle_tasks": []}, None, tmp_path / "without" / "report.html")
    n_img = [(tmp_path / w / "report.pdf").read_bytes().count(b"/Subtype /Image") for w in ("with", "without")]
    assert n_img[0] == n_img[1] + 1, n_img
