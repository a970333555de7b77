"""The bad-input corpus (Testing/bad_inputs/build_corpus.py): every case through the real entry point, each with its
exact message (naming the file and the problem) and exit code 2, before any segmentation or feature extraction.

The corpus is built once per session from the first real TCGA-LGG case in ../shared (the SYNTHETIC demo case when
../shared is absent). Most cases run in-process through ``cli.main`` (fast); a handful through a real subprocess
to check the exit code and that no traceback reaches the user."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Testing" / "bad_inputs"))
import build_corpus  # noqa: E402

from GliomaRadiogenomicsLib import cli  # noqa: E402

FAIL_FAST_S = 30.0   # a case that reaches segmentation / feature extraction takes over a minute


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    return {c.id: c for c in build_corpus.build(root)}


def _error_lines(stderr: str):
    return [ln[len("error: "):] for ln in stderr.splitlines() if ln.startswith("error: ")]


@pytest.mark.parametrize("case_id", build_corpus.CASE_IDS)
def test_bad_input_is_refused_with_its_message(corpus, case_id, capsys):
    c = corpus[case_id]
    t0 = time.perf_counter()
    try:
        rc = cli.main(c.args)
    except SystemExit as exc:  # argparse
        rc = exc.code
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == c.exit_code, f"{case_id}: exit {rc}, expected {c.exit_code}\n{err[-2000:]}"
    lines = _error_lines(err)
    assert len(lines) == 1, f"{case_id}: expected one 'error:' line\n{err[-2000:]}"
    assert re.search(c.expect, lines[0]), f"{case_id}: message\n  {lines[0]}\ndoes not match\n  {c.expect}"
    assert "Traceback" not in err and "internal error" not in err
    for p in c.must_not_exist:
        assert not Path(p).exists(), f"{case_id}: the hostile payload ran ({p} was created)"
    out = Path(c.folder) / "out"
    assert not (out / "predictions.json").exists() and not (out / "segmentation.nii.gz").exists()
    assert elapsed < FAIL_FAST_S, f"{case_id}: took {elapsed:.0f} s: refused only after heavy work"


SUBPROCESS_CASES = ("tiny_8x8x8", "gz_truncated", "same_content", "bundle_pickle", "preset_os_system", "json_sex_x",
                    "dicom_missing_slice", "seg_empty")


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_exit_code_and_message_of_the_real_command(corpus, case_id):
    c = corpus[case_id]
    r = subprocess.run([sys.executable, "-m", "GliomaRadiogenomicsLib.cli", *c.args], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO / "GliomaRadiogenomics")))
    assert r.returncode == 2, r.stderr[-2000:]
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and re.search(c.expect, lines[0]), r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    for p in c.must_not_exist:
        assert not Path(p).exists()


def test_corpus_covers_the_issue_list(corpus):
    cats = {c.category for c in corpus.values()}
    assert {"image file", "image header", "voxel values", "volume size", "sequences", "case.json", "DICOM",
            "segmentation", "model bundle", "preset", "options", "feature table", "training labels", "outputs"} <= cats
    assert len(corpus) >= 40
    assert all(c.exit_code == 2 for c in corpus.values())


# ---------------------------------------------------------------------------------------------------- internal errors
def test_internal_error_exit_1_one_line_and_traceback_log(corpus, tmp_path, monkeypatch, capsys):
    """A bug (here a fault injected into run_case after the inputs were read) is not the user's input: one line that
    says so and where the traceback is, the traceback in <out>/error.log, exit 1. A bare ValueError of our code is
    an internal error too (it used to be reported as bad input, exit 2)."""
    from GliomaRadiogenomicsLib import pipeline
    good = Path(corpus["same_path"].args[2]).parent
    for exc_type in (RuntimeError, ValueError):
        def broken(*a, **k):
            raise exc_type("injected internal fault")
        monkeypatch.setattr(pipeline, "run_case", broken)
        out = tmp_path / exc_type.__name__
        rc = cli.main(["run", "--case-dir", str(good), "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1
        log = out / "error.log"
        assert err[-1] == (f"internal error (a bug, not a problem with your input): {exc_type.__name__}: injected "
                           f"internal fault; the traceback is in {log} (please report it with that file)")
        assert not any(ln.startswith("error: ") for ln in err)
        text = log.read_text()
        assert "Traceback (most recent call last)" in text and "injected internal fault" in text
        assert "cli.py" in text and f"--out {out}" in text


def test_error_log_falls_back_to_a_temporary_file(tmp_path):
    import argparse
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    args = argparse.Namespace(out=str(blocker / "out"), command="run")  # cannot be a folder
    log = cli.write_error_log(args, "trace")
    try:
        assert log.parent != blocker and log.read_text() == "trace"
    finally:
        log.unlink()
    args = argparse.Namespace(out=str(tmp_path / "predictions.csv"), command="predict")  # --out names a file
    assert cli.write_error_log(args, "t") == tmp_path / "error.log"


# ---------------------------------------------------------------------------------------------------- accepted inputs
def test_the_source_case_passes_every_check(corpus):
    """No false alarm on the real case the corpus breaks (and on its mask as a segmentation)."""
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.checks import check_segmentation
    from GliomaRadiogenomicsLib.io import read_image
    good = Path(corpus["same_path"].args[2]).parent
    case = load_case_folder(good)
    assert case.sequences == ["t1", "t1c", "flair"] and case.clinical["sex"] == "F"
    label = read_image(good / "flair_abnormality.nii.gz", "segmentation", label=True)
    brats, notes, warnings = check_segmentation(label, case.images["flair"], "mask", "FLAIR")
    assert warnings == [] and sitk.GetArrayViewFromImage(brats).max() > 0


def test_a_segmentation_on_another_grid_inside_the_field_of_view_is_resampled_with_a_warning(corpus):
    from GliomaRadiogenomicsLib.checks import check_segmentation
    good = Path(corpus["same_path"].args[2]).parent
    ref = sitk.ReadImage(str(good / "flair.nii.gz"))
    mask = sitk.ReadImage(str(good / "flair_abnormality.nii.gz"))
    coarse = sitk.Resample(mask, [max(2, s // 2) for s in mask.GetSize()], sitk.Transform(), sitk.sitkNearestNeighbor,
                           mask.GetOrigin(), [s * 2 for s in mask.GetSpacing()], mask.GetDirection(), 0,
                           mask.GetPixelID())
    assert np.count_nonzero(sitk.GetArrayViewFromImage(coarse)) > 0
    brats, notes, warnings = check_segmentation(coarse, ref, "user-supplied segmentation (coarse)", "FLAIR")
    assert len(warnings) == 1 and "on another grid than FLAIR" in warnings[0] and "resampled onto it" in warnings[0]


def test_unreadable_input_file_is_bad_input_not_a_bug(corpus, tmp_path_factory):
    """A FLAIR the user may not read (mode 000, run as an unprivileged user: root reads anything) is named with
    'permission denied', exit 2 (it used to be an internal error, exit 1)."""
    import os
    import shutil
    import stat
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run the CLI as an unprivileged user"
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="glioma-perm-", dir="/tmp"))  # pytest's tmp folders are 0700 (root only)
    d.chmod(0o777)
    flair = d / "flair.nii.gz"
    shutil.copyfile(corpus["same_path"].args[2], flair)  # the good FLAIR the corpus was built from
    flair.chmod(0)
    out = d / "out"
    out.mkdir()
    out.chmod(0o777)
    cli = Path(sys.executable).with_name("glioma-radiogenomics")
    r = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", str(cli), "run", "--flair",
                        str(flair), "--out", str(out)], capture_output=True, text=True, timeout=300, cwd="/",
                       env={**os.environ, "HOME": str(d)})
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"error: permission denied: {flair}" in r.stderr and "Traceback" not in r.stderr
    assert stat.S_IMODE(flair.stat().st_mode) == 0
    shutil.rmtree(d)
