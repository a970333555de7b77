"""Issue 18 items 2, 4, 6: each task's status beside its number everywhere (one definition, render.task_status),
points never shown beyond their axis, the report a clinician files (HTML and PDF with the same text, real figures
from a real analysis of the SYNTHETIC demo case), CLI help / --sex spellings / monotonic progress / where the
previous outputs went. Nothing is mocked: real pipeline (hyperintensity backend), real matplotlib PDF read back
with pypdf, real MRML table node."""
from __future__ import annotations

import argparse
import copy
import html.parser
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from GliomaRadiogenomicsLib.render import STATUS_WORDS, task_rows, task_status

CLI = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli"]


# --- the status of a task ----------------------------------------------------------------------------------------

def _axis(name, points, out=False, imputed=False):
    return {"name": name, "title": name, "kind": "continuous", "value_range": [0, 1], "points_range": [0, 100],
            "ticks": [], "case": {"value": 0.5, "label": "0.5", "points": points, "out_of_range": out,
                                  "imputed": imputed, "range_text": "axis range 0 to 1"}}


def _task(p, points, axes, synthetic=False, **extra):
    return {"probability": p, "label": "pos" if p and p > 0.5 else "neg", "cutoff": 0.5,
            "nomogram": {"points": points, "total_points": sum(points.values()), "max_points_per_variable": 100,
                         "total_points_range": [0, 200], "axes": axes, "total_out_of_range": False},
            "model": {"name": "m", "version": "1", "trained_on": "TCGA", "synthetic": synthetic,
                      "metrics": {"auc_cv": 0.8, "auc_cv_95ci": [0.7, 0.9],
                                  "at_cutoff_cv": {"cutoff": 0.5, "sensitivity": 0.81, "specificity": 0.72,
                                                   "ppv": 0.66, "npv": 0.85}},
                      "intended_use": "research"}, "warnings": [], **extra}


def status_doc():
    return {
        "case": {"id": "c1", "synthetic": False, "clinical": {"age": 47.0, "sex": "F"}},
        "tasks": ["IDH", "epilepsy", "ATRX", "grade"],
        "IDH": _task(0.2, {"Age": 40.0, "Imaging score": 30.0}, [_axis("Age", 40.0), _axis("Imaging score", 30.0)]),
        "epilepsy": _task(0.8, {"Age": 10.0, "Imaging score": -229.1},
                          [_axis("Age", 10.0), _axis("Imaging score", -229.1, out=True)]),
        "ATRX": _task(0.3, {"WHO grade": 50.0, "Imaging score": 20.0},
                      [_axis("WHO grade", 50.0, imputed=True), _axis("Imaging score", 20.0)], synthetic=True,
                      out_of_intended_use="meant for IDH-mutant gliomas; the IDH model suggests IDH-wildtype"),
        "grade": {"probability": None, "label": "not available (sequence missing)", "cutoff": 0.5, "nomogram": None,
                  "reason": "needs T1c", "model": {"name": "g", "version": "1", "trained_on": "x", "synthetic": False,
                                                   "metrics": {}}},
        "segmentation": {"volumes_ml": {"WT": 18.5, "TC": 1.0, "ET": 0.5, "NCR": 0.5, "ED": 17.5}},
        "warnings": [], "disclaimer": "Research probabilities, not diagnoses.",
        "preprocessing": {"steps": []}, "features": {"n": 3}, "inputs": {}, "software": {"name": "g", "version": "0"},
        "created": "2026-01-01T10:00:00+00:00",
        "sequences": {"FLAIR": {"spacing_mm": [0.9, 0.9, 5.5], "size": [256, 256, 26], "slice_thickness_mm": 5.5,
                                "n_slices": 26, "reference": True, "file": "flair.nii.gz"}},
        "input_quality": ["FLAIR 5.5 mm slices resampled to 1 mm: detail across the slices is interpolated"],
    }


def test_each_task_gets_its_status_once():
    doc = status_doc()
    rows = {r.task: r for r in task_rows(doc)}
    assert rows["IDH"].statuses == ["valid"] and rows["IDH"].status_text == "valid"
    assert rows["epilepsy"].statuses == ["extrapolated"] and "Imaging score" in rows["epilepsy"].status_detail
    assert rows["ATRX"].statuses == ["out of intended use", "imputed inputs", "synthetic model"]
    assert rows["ATRX"].status_text == "OUT OF INTENDED USE; imputed inputs; SYNTHETIC model"
    assert "WHO grade" in rows["ATRX"].status_detail and "IDH-mutant" in rows["ATRX"].status_detail
    assert rows["grade"].statuses == ["not available"] and "needs T1c" in rows["grade"].status_detail
    assert task_status(doc["IDH"])[0] == ["valid"]
    # an older document: the ATRX warning text still marks the task (no out_of_intended_use key)
    old = copy.deepcopy(doc["ATRX"])
    old.pop("out_of_intended_use")
    old["warnings"] = ["the ATRX model ... so the ATRX probability is out of its intended use"]
    assert "out of intended use" in task_status(old)[0]


def test_points_beyond_the_axis_are_never_shown():
    """-229.1 points: clipped to 0 with a flag, the total too, and the task is EXTRAPOLATED in every renderer."""
    from GliomaRadiogenomicsLib.cli import print_summary
    from GliomaRadiogenomicsLib.report import report_blocks, render_html
    doc = status_doc()
    epi = next(r for r in task_rows(doc) if r.task == "epilepsy")
    assert epi.points_text == "0.0*" and "Imaging score 0.0 (clipped: off axis)" in epi.points_breakdown
    buf = io.StringIO()
    print_summary(doc, "out", stream=buf)
    text = buf.getvalue()
    page = render_html(report_blocks(doc), "t")
    for shown in (text, page):
        assert "-229" not in shown and "-219" not in shown
    # the status sits in the task's own row, beside the probability
    assert re.search(r"^epilepsy\s+0\.800\s+pos\s+0\.0\*\s+EXTRAPOLATED", text, re.M), text
    assert re.search(r"^ATRX\s+0\.300\s+neg\s+\S+\s+OUT OF INTENDED USE; imputed inputs; SYNTHETIC model", text, re.M)
    assert "<td>epilepsy</td><td>0.800</td><td class='status-flag'>EXTRAPOLATED</td>" in page
    assert "<td>IDH</td><td>0.200</td><td class='status-valid'>valid</td>" in page
    # the nomogram figure (report, web card) labels the case's marks the same way: a real bundle's nomogram with an
    # age of 95 years (84.6 points below its Age axis, the total below 0): clipped, flagged, no negative points
    from GliomaRadiogenomicsLib.nomogram import case_nomogram, nomogram_figure
    b = real_bundle()
    values = dict(zip(b.features, b.center), age=95)
    for v in b.variables:  # every other one-feature axis at its fewest points, so the total falls below 0
        ticks = (v.axis or {}).get("ticks") if v.name != "Age (years)" and len(v.features) == 1 else None
        if ticks:
            values[v.features[0]] = min(ticks, key=lambda t: t["points"])["value"]
    block = case_nomogram(b, b.predict_proba_row(values))
    age = next(a for a in block["axes"] if a["name"] == "Age (years)")
    assert age["case"]["points"] < -10 and age["case"]["out_of_range"] and block["total_points"] < 0   # the setup
    fig = nomogram_figure(block)
    labels = {ax.get_gid(): [t.get_text() for t in ax.texts if t.get_gid() == "nomogram-case-label"]
              for ax in fig.axes}
    assert labels["nomogram-row:Age (years)"] == ["95 (beyond the axis: 0.0 pts, extrapolated)"], labels
    assert labels["nomogram-row:total points"] == ["0.0 points (beyond the axis, extrapolated)"], labels
    inside = [a for a in block["axes"] if not a["case"]["out_of_range"]]   # e.g. the imaging score: plain label
    assert inside, block["axes"]
    for a in inside:
        assert labels[f"nomogram-row:{a['name']}"] == [f"{a['case']['label']}: {a['case']['points']:.1f} pts"], labels
    drawn = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert not any(re.search(r"-\d", t) for t in drawn), drawn


def test_slicer_table_shows_the_status_in_the_row(mrml):
    from GliomaMRML.convert import predictions_to_table_node
    node = predictions_to_table_node(status_doc(), mrml.scene)
    t = node.GetTable()
    cols = [t.GetColumnName(j) for j in range(t.GetNumberOfColumns())]
    assert cols[:3] == ["task", "probability", "status"]
    got = {node.GetCellText(i, 0): [node.GetCellText(i, j) for j in range(len(cols))]
           for i in range(t.GetNumberOfRows())}
    assert got["epilepsy"][2] == "EXTRAPOLATED" and got["epilepsy"][cols.index("total points")] == "0.0*"
    assert got["ATRX"][2].startswith("OUT OF INTENDED USE") and got["IDH"][2] == "valid"
    assert "Imaging score" in got["epilepsy"][cols.index("status details")]


# --- the report of a real analysis: HTML = PDF ----------------------------------------------------------------

class _Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("style", "title")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "title")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def html_text(page: str) -> str:
    p = _Text()
    p.feed(page)
    return " ".join(p.parts)


def pdf_text(path) -> str:
    pypdf = pytest.importorskip("pypdf", reason="pypdf is not installed (make test installs the test extra)")
    return " ".join(pg.extract_text() for pg in pypdf.PdfReader(str(path)).pages)


def squeeze(text: str) -> str:
    """Text without whitespace and list bullets: what both documents must say, however lines and cells wrap."""
    return re.sub(r"\s+", "", text.replace("\u2022", ""))


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, bundles_at_spacing):
    from GliomaRadiogenomicsLib.bundle import load_bundle
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.pipeline import PipelineOptions, evaluate_case
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    from GliomaRadiogenomicsLib.report import write_report
    from GliomaRadiogenomicsLib.synthetic import make_demo_case
    folder = tmp_path_factory.mktemp("case")
    make_demo_case(downsample=2).save(folder)
    case = load_case_folder(folder, {"age": 47, "sex": "female"})
    case.case_id, case.synthetic = "TCGA-XX-0001", True
    opt = PipelineOptions(preprocess=PreprocessOptions(spacing=2.0, brain_mask="threshold"), backend="hyperintensity",
                          feature_workers=1)
    analysis, doc = evaluate_case(case, opt, bundles=[load_bundle(p) for p in bundles_at_spacing(2.0)])
    out = tmp_path_factory.mktemp("report")
    write_report(doc, analysis, out / "report.html")
    return analysis, doc, out


def test_html_and_pdf_report_say_the_same(analysed):
    analysis, doc, out = analysed
    page = (out / "report.html").read_text()
    h, p = html_text(page), pdf_text(out / "report.pdf")
    assert squeeze(h) == squeeze(p)
    assert len(squeeze(h)) > 2000
    # the same figures: nomograms and the segmentation in both
    assert page.count("<img") == len([t for t in doc["tasks"] if doc[t].get("nomogram")]) + 1


def test_report_holds_what_a_clinician_files(analysed):
    analysis, doc, out = analysed
    text = html_text((out / "report.html").read_text())
    assert "TCGA-XX-0001" in text and "47 years" in text and "female" in text
    assert "Key result: IDH" in text and "Research probabilities, not diagnoses" in text
    flair = doc["sequences"]["FLAIR"]
    assert f"{flair['slice_thickness_mm']:g} mm" in text and str(flair["n_slices"]) in text
    if flair["slice_thickness_mm"] > 1.5 * 2.0:
        assert f"FLAIR {flair['slice_thickness_mm']:g} mm slices resampled to 2 mm" in text
    # native slice numbers: the reference's own slices (1-based), not the working grid's
    m = re.search(r"FLAIR native slice (\d+) of (\d+)", text)
    assert m and int(m.group(2)) == flair["n_slices"] == analysis.label_native.GetSize()[2]
    import numpy as np
    import SimpleITK as sitk
    lab = sitk.GetArrayFromImage(analysis.label_native)
    assert int(m.group(1)) == int(np.argmax((lab > 0).sum(axis=(1, 2)))) + 1
    # model cards: intended use, training data, metrics at the cutoff, calibration, validation status, SYNTHETIC
    for t in doc["tasks"]:
        at = doc[t]["model"]["metrics"].get("at_cutoff_cv")
        if at:
            assert f"sensitivity {at['sensitivity']:.2f}, specificity {at['specificity']:.2f}" in text
    for word in ("Intended use", "Training data", "Calibration", "Brier score", "Validation status",
                 "SYNTHETIC: trained and validated on simulated data only"):
        assert word in text, word
    # every task's status sits in its row
    for r in task_rows(doc):
        assert f"{r.task} {r.probability_text} {r.status_text}" in text
    # the demo head has a scalp: the threshold brain mask is said to be doubtful under Input quality, beside the
    # results, not only in the warnings at the end
    from GliomaRadiogenomicsLib.brainmask import THRESHOLD_ON_HEAD
    assert THRESHOLD_ON_HEAD in doc["input_quality"]
    assert THRESHOLD_ON_HEAD in text[text.index("Input quality"):text.index("Sequences (as acquired)")]


def test_threshold_brain_mask_is_a_quality_warning_only_on_a_head_not_skull_stripped(tmp_path):
    """The classical threshold mask keeps the scalp of a head that is not skull-stripped (TCGA-FG-6692 as acquired:
    2323 mL, the weight-free segmentation then 220.9 mL mostly on scalp fat and orbits): an input-quality warning
    says so. The same images skull-stripped (the demo's intracranial mask, eroded by one voxel, applied) get none."""
    import SimpleITK as sitk
    from GliomaRadiogenomicsLib.brainmask import THRESHOLD_ON_HEAD, compute_brain_mask
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.predict import input_quality
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions, preprocess
    from GliomaRadiogenomicsLib.synthetic import make_demo_case
    demo = make_demo_case(downsample=4)
    demo.save(tmp_path)
    case = load_case_folder(tmp_path)
    pre = preprocess(case, PreprocessOptions(spacing=4.0, brain_mask="threshold", register=False))
    assert THRESHOLD_ON_HEAD in pre.brain_mask_warnings and THRESHOLD_ON_HEAD in input_quality(case, pre)
    icv = sitk.BinaryErode(sitk.Resample(demo.brain_mask, pre.grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                         sitk.sitkUInt8), [1, 1, 1])
    for seq in list(pre.images):
        pre.images[seq] = sitk.Mask(pre.images[seq], icv)
    mask, method, warnings = compute_brain_mask(pre, "threshold")
    assert method == "threshold" and THRESHOLD_ON_HEAD not in warnings, warnings


REAL_BUNDLE = "tcga_lgg_ATRX_flair.json"   # a shipped bundle trained on real TCGA-LGG cases (train.py)


def real_bundle():
    from importlib import resources
    from GliomaRadiogenomicsLib.bundle import load_bundle
    return load_bundle(Path(str(resources.files("GliomaRadiogenomicsLib") / "resources" / "models" / REAL_BUNDLE)))


def card_texts(metrics: dict, cutoff: float) -> dict:
    """What the model card of a bundle trained by train.py must say, from what it records (its ``metrics`` and
    ``cutoff``): the calibration intercept and slope with their bootstrap CIs (metrics["calibration_cv"]) and the
    metrics at the cutoff said to be measured at the cutoffs chosen in each training fold, beside the final model's
    cutoff. Also used by the real-case report and web card tests."""
    cal, at = metrics["calibration_cv"], metrics["at_cutoff_cv"]
    ci = lambda k: f"{cal[k]:.2f} (95% CI {cal[k + '_95ci_bootstrap'][0]:.2f} to {cal[k + '_95ci_bootstrap'][1]:.2f})"
    return {"Calibration": f"calibration intercept {ci('intercept')}, slope {ci('slope')}",
            "At the cutoff": (f"at cutoffs chosen in each training fold (median {at['fold_cutoffs']['median']:.3f}"
                              f", range {at['fold_cutoffs']['min']:.3f}-{at['fold_cutoffs']['max']:.3f}): "
                              f"sensitivity {at['sensitivity']:.2f}, specificity {at['specificity']:.2f}, PPV "
                              f"{at['ppv']:.2f}, NPV {at['npv']:.2f}; final model's cutoff {cutoff:.3f}")}


def test_model_card_of_a_real_bundle_shows_its_calibration_and_where_its_cutoff_metrics_come_from():
    """A shipped real bundle stores its calibration under metrics["calibration_cv"] and its cross-validated metrics
    at the cutoffs chosen inside each training fold (at_cutoff_cv.fold_cutoffs), not at the final model's cutoff:
    the card says both as recorded. An older bundle (calibration_intercept_slope, at_cutoff_cv at its own cutoff)
    still shows them."""
    from GliomaRadiogenomicsLib.render import model_card_rows
    b = real_bundle()
    assert not b.synthetic
    doc = {"tasks": [b.task], b.task: {"probability": 0.3, "cutoff": b.cutoff, "model": b.model_card()}}
    rows = dict(model_card_rows(doc, b.task))
    for field, want in card_texts(b.metrics, b.cutoff).items():
        assert want in rows[field], (field, rows[field])
    assert rows["Calibration"].startswith(f"Brier score {b.metrics['brier_cv']:.3f}")
    old = copy.deepcopy(doc)
    met = old[b.task]["model"]["metrics"]
    met["calibration_intercept_slope"] = {"intercept": 0.12, "slope": 0.9}
    del met["calibration_cv"]
    met["at_cutoff_cv"] = {"cutoff": 0.42, "sensitivity": 0.7, "specificity": 0.6, "ppv": 0.5, "npv": 0.8}
    rows = dict(model_card_rows(old, b.task))
    assert "calibration intercept 0.12 (no CI recorded), slope 0.90 (no CI recorded)" in rows["Calibration"]
    assert rows["At the cutoff"] == "cutoff 0.420: sensitivity 0.70, specificity 0.60, PPV 0.50, NPV 0.80"


def test_native_display_orientation_letters():
    """A native axial slice stored with i running to the patient's right and j to anterior is flipped both ways
    for radiological display; the letters follow."""
    import numpy as np
    from GliomaRadiogenomicsLib.report import display_slice
    a = np.arange(12.0).reshape(3, 4)
    ras = (-1, 0, 0, 0, -1, 0, 0, 0, 1)
    b, marks, aspect = display_slice(a, ras, (1.0, 2.0, 5.0))
    assert np.array_equal(b, a[::-1, ::-1]) and aspect == 2.0
    assert marks == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    lps = (1, 0, 0, 0, 1, 0, 0, 0, 1)
    b, marks, _ = display_slice(a, lps, (1.0, 1.0, 1.0))
    assert np.array_equal(b, a) and marks["right"] == "L"


# --- CLI polish -----------------------------------------------------------------------------------------------

def _subparsers():
    from GliomaRadiogenomicsLib.cli import build_parser
    ap = build_parser()
    return next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_option_has_help_and_segment_offers_only_what_it_uses():
    missing = [(name, a.option_strings) for name, p in _subparsers().items() for a in p._actions
               if a.option_strings and not a.help]
    assert not missing, missing
    seg = {o for a in _subparsers()["segment"]._actions for o in a.option_strings}
    assert not seg & {"--bundle", "--preset", "--location", "--workers", "--resnet34-weights"}
    assert {"--backend", "--brain-mask", "--n4", "--keep-previous"} <= seg


@pytest.mark.parametrize("given,want", [("female", "F"), ("FEMALE", "F"), ("f", "F"), ("Male", "M"), ("M", "M")])
def test_sex_spellings(given, want):
    args = _subparsers()["run"].parse_args(["--out", "o", "--flair", "f.nii.gz", "--sex", given])
    assert args.sex == want


def test_bad_sex_is_refused_by_name():
    p = subprocess.run(CLI + ["run", "--out", "o", "--flair", "f.nii.gz", "--sex", "x"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "female, male, F or M" in p.stderr


def test_preprocessing_progress_never_goes_back_with_n4_and_atlas(tmp_path):
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions, preprocess
    from GliomaRadiogenomicsLib.progress import Progress
    from GliomaRadiogenomicsLib.synthetic import make_demo_case
    make_demo_case(downsample=4).save(tmp_path)
    seen = []
    preprocess(load_case_folder(tmp_path), PreprocessOptions(spacing=4.0, brain_mask="threshold", n4=True,
                                                             n4_iterations=2, atlas="mni152"),
               Progress(lambda f, m: seen.append((f, m))))
    fractions = [f for f, _ in seen]
    assert any("N4" in m for _, m in seen) and any("atlas" in m for _, m in seen)
    assert fractions == sorted(fractions), seen
    assert fractions[-1] == 1.0


def test_previous_outputs_line(tmp_path):
    from GliomaRadiogenomicsLib.cli import PreviousOutputs
    from GliomaRadiogenomicsLib.io import output_set
    out = tmp_path / "out"
    for i, keep in enumerate((0, 0, 1)):
        prev = PreviousOutputs(out, keep, "predictions.json")
        with output_set(out, keep_previous=keep) as staging:
            (staging / "predictions.json").write_text(json.dumps({"run": i}))
        line = prev.line()
        if i == 0:
            assert line is None
        elif i == 1:
            assert line == f"previous outputs in {out} replaced (keep a dated copy with --keep-previous N)"
        else:
            moved = sorted(tmp_path.glob("out.previous-*"))
            assert moved and line == f"previous outputs moved to {moved[-1]} (--keep-previous 1)"
            assert json.loads((moved[-1] / "predictions.json").read_text()) == {"run": 1}
