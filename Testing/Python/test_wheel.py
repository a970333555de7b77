"""Packaging outside a checkout: a wheel built from the repository and installed in a fresh venv runs `demo`, `run`,
`web` and the batch entry from a folder outside the checkout.

The fresh venv gets only the wheel (``pip install --no-deps``); the heavy dependencies (numpy, SimpleITK,
PyRadiomics, slicer-core, trame-slicer, ...) come from this test's own environment through a ``.pth`` file whose
single line is that environment's site-packages. A plain path line adds the folder to ``sys.path`` but does not run
the ``.pth`` files inside it, so the editable install's finder (which points at the checkout) stays inactive: before
the wheel is installed, ``import GliomaRadiogenomicsLib`` fails in the fresh venv (checked), and afterwards every
package imports from the fresh venv's site-packages (checked), never from the checkout.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from cdp_browser import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"GliomaRadiogenomicsLib": "GliomaRadiogenomics/GliomaRadiogenomicsLib",
            "GliomaMRML": "GliomaRadiogenomics/GliomaMRML",
            "GliomaWeb": "Web/GliomaWeb"}
FAST = ["--spacing", "2", "--brain-mask", "threshold", "--backend", "hyperintensity"]
# copied to build the wheel (the checkout itself is left untouched: no build/ or egg-info written into it)
SKIP_TOP = {".git", ".venv", "build", "dist", "demo_output", "out", "tmp", ".pytest_cache", "Testing"}


def _run(cmd, env, cwd, timeout=300):
    r = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, encoding="utf-8",
                       errors="replace", timeout=timeout)
    assert r.returncode == 0, f"{cmd[:3]} exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """(venv folder, environment for its binaries, a working folder outside the checkout, the wheel)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=lambda d, names: [n for n in names if n == "__pycache__" or n.endswith(
        ".egg-info") or (Path(d) == REPO and n in SKIP_TOP)])
    dist = root / "dist"
    pip = [sys.executable, "-m", "pip"]
    _run(pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-c", REPO / "constraints.txt",
                "-w", dist, src], os.environ, root)
    wheel = next(dist.glob("glioma_radiogenomics-*.whl"))

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], os.environ, root)
    py = venv / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], os.environ, root)
                .stdout.strip())
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}  # this environment's site-packages
    (site / "glioma_test_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               VTK_DEFAULT_OPENGL_WINDOW="vtkEGLRenderWindow", PYTHONDONTWRITEBYTECODE="1")
    work = root / "work"
    work.mkdir()
    # the dependencies are visible, the checkout is not (the editable finder's .pth is not processed)
    r = subprocess.run([py, "-c", "import numpy, SimpleITK, radiomics; import GliomaRadiogenomicsLib"], env=env,
                       cwd=work, capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'GliomaRadiogenomicsLib'" in r.stderr, (r.returncode, r.stderr)
    # --ignore-installed: this environment's editable install is visible through the .pth; pip must neither count it
    # as installed nor try to uninstall it
    _run(pip + ["--python", py, "install", "--no-deps", "--no-index", "--ignore-installed", "-q",
                "-c", REPO / "constraints.txt", wheel], env, work)
    return venv, env, work, wheel


def test_wheel_holds_every_file_of_the_three_packages(fresh):
    _, _, _, wheel = fresh
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg, folder in PACKAGES.items():
        for p in (REPO / folder).rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts:
                rel = f"{pkg}/{p.relative_to(REPO / folder).as_posix()}"
                assert rel in names, f"the wheel lacks {rel}"
    assert any(n.startswith("GliomaRadiogenomicsLib/resources/models/") and n.endswith(".json") for n in names)
    assert any(n.startswith("GliomaRadiogenomicsLib/resources/weights/lgg_unet2d/") for n in names)
    assert any(n.startswith("GliomaRadiogenomicsLib/resources/weights/brats17_cascade/") for n in names)
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    assert "glioma-radiogenomics = GliomaRadiogenomicsLib.cli:main" in text
    assert "glioma-radiogenomics-batch = GliomaMRML.batch:cli" in text


def test_packages_import_from_the_fresh_venv(fresh):
    venv, env, work, _ = fresh
    code = ("import importlib.util, json, sys, GliomaRadiogenomicsLib, GliomaMRML, GliomaMRML.batch, GliomaWeb\n"
            "from GliomaRadiogenomicsLib.bundle import default_bundle_paths\n"
            "print(json.dumps({'files': [m.__file__ for m in (GliomaRadiogenomicsLib, GliomaMRML, GliomaMRML.batch, "
            "GliomaWeb)] + [importlib.util.find_spec('GliomaWeb.app').origin], "
            "'bundles': [str(p) for p in default_bundle_paths()], 'path': sys.path}))")
    got = json.loads(_run([venv / "bin" / "python", "-c", code], env, work).stdout.strip().splitlines()[-1])
    for f in got["files"] + got["bundles"]:
        assert Path(f).resolve().is_relative_to(venv.resolve()), f"{f} is not inside the fresh venv"
        assert Path(f).exists(), f
    outside = [p for p in got["path"] if p and Path(p).resolve().is_relative_to(REPO)
               and not Path(p).resolve().is_relative_to(REPO / ".venv")]
    assert not outside, f"the checkout is on the fresh venv's sys.path: {outside}"
    # the optional Choi 2021 model resolves by name to its bundle inside the installed package (its weights are
    # built locally: over the repository's 5 MB file limit)
    code = ("import json\nfrom GliomaRadiogenomicsLib.bundle import resolve_bundle_ref, read_bundle_json\n"
            "p = resolve_bundle_ref('choi-idh')\n"
            "print(json.dumps({'bundle': p, 'synthetic': read_bundle_json(p)['synthetic']}))")
    got = json.loads(_run([venv / "bin" / "python", "-c", code], env, work).stdout.strip().splitlines()[-1])
    assert Path(got["bundle"]).resolve().is_relative_to(venv.resolve()) and got["synthetic"] is False


def test_demo_and_run_from_the_wheel(fresh, bundles_at_spacing):
    from GliomaRadiogenomicsLib.predict import validate_predictions
    venv, env, work, _ = fresh
    cli = venv / "bin" / "glioma-radiogenomics"
    bundles = [a for b in bundles_at_spacing(2.0) for a in ("--bundle", b)]  # the shipped (1 mm) ones refuse 2 mm
    demo = work / "demo"
    r = _run([cli, "demo", "--out", demo, "--downsample", "2", "--workers", "1"] + FAST + bundles, env, work)
    assert "not diagnoses" in r.stdout
    doc = json.loads((demo / "predictions.json").read_text())
    validate_predictions(doc)
    assert doc["tasks"] and all(0 <= doc[t]["probability"] <= 1 for t in doc["tasks"])

    out = work / "run"
    _run([cli, "run", "--case-dir", demo / "demo_case", "--out", out, "--workers", "1"] + FAST + bundles, env, work)
    doc2 = json.loads((out / "predictions.json").read_text())
    validate_predictions(doc2)
    assert all(0 <= doc2[t]["probability"] <= 1 for t in doc2["tasks"])
    assert (out / "segmentation.nii.gz").exists() and (out / "report.html").exists()


def test_web_from_the_wheel_serves_its_page(fresh):
    pytest.importorskip("trame_slicer")
    venv, env, work, _ = fresh
    port = free_port()
    log = open(work / "web.log", "w")
    proc = subprocess.Popen([str(venv / "bin" / "glioma-radiogenomics"), "web", "--port", str(port)] + FAST,
                            env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        status = None
        for _ in range(240):
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status
                break
            except Exception:
                assert proc.poll() is None, (work / "web.log").read_text()[-3000:]
                time.sleep(0.5)
        assert status == 200, (work / "web.log").read_text()[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_batch_entry_from_the_wheel(fresh, bundles_at_spacing):
    pytest.importorskip("slicer")
    import pandas as pd
    from GliomaRadiogenomicsLib import synthetic as S
    venv, env, work, _ = fresh
    cohort = work / "cohort"
    S.generate_cohort(1, cohort, seed=11, downsample=3)
    out = work / "batch"
    bundles = [a for b in bundles_at_spacing(3.0) for a in ("--bundle", b)]
    _run([venv / "bin" / "glioma-radiogenomics-batch", "--input", cohort, "--output", out, "--spacing", "3",
          "--brain-mask", "threshold", "--backend", "hyperintensity", "--no-register"] + bundles, env, work)
    res = pd.read_csv(out / "batch_results.csv")
    assert list(res["status"]) == ["ok"] and res["p_IDH"].between(0, 1).all()
    case = out / res.loc[0, "case"]
    assert (case / "predictions.json").exists() and (case / "segmentation.nii.gz").exists()
