"""Dependencies on first use (issue 15 item 1): the decision function (dependencies.plan, standard library only),
the Slicer module files loading without the science packages, and the first-use install in a fresh venv holding
only what Slicer ships (numpy, SimpleITK, vtk), with real pip and PyPI, then the core on the demo case."""
import ast
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from GliomaRadiogenomicsLib import dependencies as D

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "GliomaRadiogenomics"


def _pyproject():
    import tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_requirements_are_pyprojects_never_the_constraints_pins():
    deps = _pyproject()["project"]["dependencies"]
    shipped = {D.canonical(n) for n in D.SLICER_SHIPPED}
    ours = [r for r in deps if D.canonical(D.split_requirement(r)[0]) not in shipped]
    assert sorted(ours) == sorted(D.PIP_REQUIREMENTS)
    for name, minimum in D.SLICER_SHIPPED.items():  # the shipped ones: same minimums as pyproject
        if minimum is not None:
            assert f"{name}>={minimum}" in deps
    pins = {D.canonical(line.split("==")[0]): line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    for req in D.PIP_REQUIREMENTS + (D.TORCH_REQUIREMENT,):
        name, specs = D.split_requirement(req)
        if specs[0][0] != "==":  # a minimum stays a minimum (pyradiomics-bhklab is pinned by pyproject itself)
            assert req != pins.get(D.canonical(name))
    brain = _pyproject()["project"]["optional-dependencies"]["brain"]
    assert set(D.AFTER_TORCH) <= set(brain)


def test_versions_and_specifiers():
    assert D.version_tuple("2.4.6") > D.version_tuple("2.4") == D.version_tuple("2.4.0")
    assert D.version_tuple("2.13.0+cpu") == (2, 13) and D.version_tuple("1.26.4rc1") == (1, 26, 4)
    assert D.satisfies("1.26.4", D.split_requirement("numpy>=1.24")[1])
    assert not D.satisfies("1.22.0", D.split_requirement("numpy>=1.24")[1])
    assert D.satisfies("3.1.4", D.split_requirement("x==3.1.4")[1]) and not D.satisfies("3.1.5", [("==", "3.1.4")])
    assert D.satisfies("2.3", [(">=", "2.0"), ("<", "3"), ("!=", "2.1")]) and not D.satisfies("3.0", [("<", "3")])
    with pytest.raises(ValueError):
        D.split_requirement("foo[bar]>=1")


SLICER_LIKE = {"numpy": "1.26.4", "SimpleITK": "2.4.1", "vtk": "9.4.2", "requests": "2.31.0"}


def test_plan_in_slicer_installs_the_rest_and_never_touches_what_slicer_ships():
    p = D.plan(SLICER_LIKE, in_slicer=True)
    assert p.install == list(D.PIP_REQUIREMENTS) and not p.blocking
    assert p.protect == {"numpy": "1.26.4", "SimpleITK": "2.4.1", "vtk": "9.4.2"}
    assert p.constraints_text() == "SimpleITK==2.4.1\nnumpy==1.26.4\nvtk==9.4.2\n"
    assert not any(D.canonical(D.split_requirement(r)[0]) in ("numpy", "simpleitk", "vtk") for r in p.install)
    assert p.torch == D.TORCH_REQUIREMENT and p.after_torch == list(D.AFTER_TORCH)
    args = p.pip_args("/tmp/c.txt")
    assert args[-2:] == ["-c", "/tmp/c.txt"] and "torch" not in " ".join(args)
    assert any("PyTorch extension" in line for line in p.summary_lines())


def test_plan_reports_a_too_old_shipped_package_and_satisfied_ones():
    have = dict(SLICER_LIKE, numpy="1.22.4", torch="2.13.0+cpu", deepbet="1.0.2",
                **{D.split_requirement(r)[0]: "99.0" for r in D.PIP_REQUIREMENTS if "==" not in r},
                **{"pyradiomics-bhklab": "3.1.4"})
    p = D.plan(have, in_slicer=True)
    assert p.blocking == ["numpy 1.22.4 is older than the 1.24 this extension needs: update Slicer (its own numpy / "
                          "SimpleITK / vtk are never replaced)"]
    assert not p.install and p.torch is None and not p.after_torch and p.protect["torch"] == "2.13.0+cpu"
    assert not p.ready
    ok = D.plan(dict(have, numpy="2.1.0"), in_slicer=True)
    assert ok.ready and "numpy 2.1.0" in ok.satisfied
    old = D.plan(dict(have, numpy="2.1.0", pandas="1.5.3", torch="1.13.1"), in_slicer=True)
    assert old.install == ["pandas>=2.0"] and old.reasons["pandas>=2.0"] == "installed 1.5.3, needs >=2.0"
    assert old.torch == D.TORCH_REQUIREMENT and "torch" not in old.protect


def test_plan_outside_slicer_installs_a_missing_numpy_and_blocks_inside():
    assert "numpy>=1.24" in D.plan({}, in_slicer=False, with_torch=False).install
    inside = D.plan({}, in_slicer=True, with_torch=False)
    assert any("numpy is missing from Slicer's Python" in b for b in inside.blocking)


def test_offline_message_only_for_network_failures(monkeypatch):
    assert D.offline_message("WARNING: Retrying ... NewConnectionError('Failed to establish a new connection')")
    none = "ERROR: Could not find a version that satisfies the requirement x (from versions: none)"
    assert D.offline_message(none) is None
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there: no index answers
    assert not D.index_reachable(timeout=2) and D.offline_message(none, check_index=True) == D.OFFLINE_TEXT


# ---------------------------------------------------------------------------------------------------------------
# The Slicer module files load without the science packages
# ---------------------------------------------------------------------------------------------------------------
SLICER_MODULE_FILES = [MODULE_DIR / "GliomaRadiogenomics.py", ROOT / "GliomaSegment" / "GliomaSegment.py",
                       ROOT / "GliomaPredict" / "GliomaPredict.py", MODULE_DIR / "GliomaMRML" / "install.py"]
# what Slicer's Python has before the first-use install: the standard library, Slicer's own modules and packages
SLICER_BEFORE_INSTALL = {"slicer", "vtk", "qt", "ctk", "numpy", "SimpleITK", "sitkUtils", "SampleData",
                         "PyTorchUtils", "GliomaMRML", "GliomaRadiogenomicsLib", "__future__"}


def _top_level_imports(path: Path):
    """(module, level) of the imports that run when the file is imported: module body and class bodies, not
    function bodies."""
    out = []

    def visit(nodes):
        for n in nodes:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(n, ast.Import):
                out.extend((a.name, 0) for a in n.names)
            elif isinstance(n, ast.ImportFrom):  # the module, and each name (it may be a submodule)
                if n.module:
                    out.append((n.module, n.level))
                out.extend(((n.module + "." if n.module else "") + a.name, n.level) for a in n.names)
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit(getattr(n, field, []) or [])
    visit(ast.parse(path.read_text()).body)
    return out


def _our_file(module: str):
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        base = MODULE_DIR.joinpath(*parts[:n])
        for cand in (base.with_suffix(".py"), base / "__init__.py"):
            if cand.is_file():
                return cand
    return None


def _closure(start: Path):
    """Every module imported at load time from ``start``, following our own packages: {module: importing file}."""
    seen, todo, found = set(), [start], {}
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        pkg = ".".join(f.relative_to(MODULE_DIR).with_suffix("").parts[:-1]) if MODULE_DIR in f.parents else ""
        for module, level in _top_level_imports(f):
            if level:
                base = pkg.split(".")[:len(pkg.split(".")) - (level - 1)] if pkg else []
                module = ".".join(base + [module.lstrip(".")]).strip(".")
            found.setdefault(module, f)
            if module.split(".")[0] in ("GliomaMRML", "GliomaRadiogenomicsLib"):
                target = _our_file(module)
                if target is not None:
                    todo.append(target)
                    if target.name != "__init__.py" and (target.parent / "__init__.py").is_file():
                        todo.append(target.parent / "__init__.py")
    return found


@pytest.mark.parametrize("path", SLICER_MODULE_FILES, ids=lambda p: p.name)
def test_slicer_module_files_import_no_science_package_at_load_time(path):
    """What a module file (and, through our own packages, everything it imports at load time) needs before the
    first-use install: the standard library and what Slicer ships. pandas, radiomics, torch, sklearn, scipy, skimage,
    nilearn, matplotlib, yaml, psutil... only inside functions."""
    bad = {m: str(f.relative_to(ROOT)) for m, f in _closure(path).items()
           if m.split(".")[0] not in SLICER_BEFORE_INSTALL | set(sys.stdlib_module_names)}
    assert not bad, f"imported at load time before the dependencies are installed: {bad}"


def test_the_decision_function_needs_the_standard_library_only():
    path = MODULE_DIR / "GliomaRadiogenomicsLib" / "dependencies.py"
    bad = [m for m in _closure(path) if m.split(".")[0] not in set(sys.stdlib_module_names) | {"__future__",
                                                                                               "GliomaRadiogenomicsLib"}]
    assert not bad


def test_the_closure_check_sees_a_science_import(tmp_path):
    f = MODULE_DIR / "GliomaRadiogenomicsLib" / "features.py"  # imports yaml at the top
    assert "yaml" in {m.split(".")[0] for m in _closure(f)}


def test_slicer_modules_declare_their_dependencies():
    for name in ("GliomaSegment", "GliomaPredict"):
        src = (ROOT / name / f"{name}.py").read_text()
        assert 'self.parent.dependencies = ["GliomaRadiogenomics"]' in src
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in cmake


# ---------------------------------------------------------------------------------------------------------------
# First use in a fresh venv holding only what Slicer ships (real pip, real PyPI)
# ---------------------------------------------------------------------------------------------------------------
# Versions as a Slicer 5.x Python has them (numpy 1.x, SimpleITK and VTK 9 builds of Slicer's own); vtk without its
# wheel's dependencies (Slicer's vtk brings no matplotlib)
SLICER_SHIPS = os.environ.get("GLIOMA_TEST_SLICER_SHIPS", "numpy==1.26.4 SimpleITK==2.4.1").split()
SLICER_VTK = os.environ.get("GLIOMA_TEST_SLICER_VTK", "vtk==9.4.2")

# slicer.util as the first-use code uses it: the dialogs are the desktop GUI (mocked: OK is clicked, errors are
# recorded); pip_install is what Slicer's does (this Python -m pip install ARGS, CalledProcessError with the output)
FIRST_USE = textwrap.dedent("""
    import json, subprocess, sys, types, contextlib
    errors = []
    def pip_install(args):
        p = subprocess.run([sys.executable, "-m", "pip", "install"] + list(args), capture_output=True, text=True)
        if p.returncode:
            raise subprocess.CalledProcessError(p.returncode, p.args, output=p.stdout, stderr=p.stderr)
    util = types.SimpleNamespace(pip_install=pip_install, confirmOkCancelDisplay=lambda *a, **k: True,
                                 errorDisplay=lambda text, **k: errors.append(text),
                                 WaitCursor=contextlib.nullcontext)
    sys.modules["slicer"] = types.SimpleNamespace(util=util)  # GUI mocked: no Slicer desktop here
    from GliomaMRML.install import ensure_dependencies
    ok = ensure_dependencies(with_torch=False)
    from GliomaRadiogenomicsLib import dependencies as D
    print(json.dumps({"ok": ok, "errors": errors, "ready": D.plan(in_slicer=True, with_torch=False).ready,
                      "versions": {k: v for k, v in D.installed_versions().items() if k in ("numpy", "simpleitk",
                                                                                            "vtk", "pandas")}}))
""")


def _run(cmd, env=None, timeout=900):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert p.returncode == 0, f"{cmd}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.mark.slow
def test_first_use_in_a_fresh_venv_installs_the_rest_and_runs_the_demo(tmp_path):
    """A fresh venv with only numpy, SimpleITK and vtk at Slicer's versions: offline, the first-use install says so
    and changes nothing; online, it installs the plan (PyPI, pip's cache) without touching those three; then the
    core, started as Slicer starts it (launch.py by path, PYTHONPATH = the module folder: no pip install of the
    package), runs the SYNTHETIC demo case (weight-free path: threshold brain mask, hyperintensity segmentation)."""
    from GliomaRadiogenomicsLib.background import BackgroundJob
    times = {}
    t0 = time.monotonic()
    venv = tmp_path / "slicer-python"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    _run([py, "-m", "pip", "install", "--quiet"] + SLICER_SHIPS)
    _run([py, "-m", "pip", "install", "--quiet", "--no-deps", SLICER_VTK])
    times["venv with Slicer's packages"] = time.monotonic() - t0
    env = dict(os.environ, PYTHONPATH=str(MODULE_DIR))
    env.pop("VIRTUAL_ENV", None)

    t = time.monotonic()
    offline = {k: v for k, v in env.items() if not k.startswith("PIP_")}
    offline.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_RETRIES="1",
                   PIP_TIMEOUT="2", PIP_NO_CACHE_DIR="1")  # nothing listens on port 9 of this machine
    res = json.loads(_run([py, "-c", FIRST_USE], env=offline).stdout.splitlines()[-1])
    assert not res["ok"] and res["errors"] == [D.offline_message("NewConnectionError")], res
    assert "pandas" not in res["versions"]
    times["offline attempt"] = time.monotonic() - t

    t = time.monotonic()
    res = json.loads(_run([py, "-c", FIRST_USE], env=env).stdout.splitlines()[-1])
    times["first-use install"] = time.monotonic() - t
    assert res["ok"] and res["ready"] and not res["errors"], res
    shipped = dict(s.split("==") for s in SLICER_SHIPS + [SLICER_VTK])
    assert res["versions"]["numpy"] == shipped["numpy"] and res["versions"]["simpleitk"] == shipped["SimpleITK"]
    assert res["versions"]["vtk"] == shipped["vtk"]

    t = time.monotonic()
    out = tmp_path / "demo"
    job = BackgroundJob.core("cli", ["demo", "--out", str(out), "--downsample", "2", "--spacing", "2",
                                     "--brain-mask", "threshold", "--backend", "hyperintensity", "--workers", "1"],
                             python=py, env=env, cwd=str(tmp_path))
    st = job.wait(timeout=600)
    times["demo"] = time.monotonic() - t
    assert st.returncode == 0, st.error
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["segmentation"]["volumes_ml"]["WT"] > 0 and set(doc["tasks"]) == {"IDH", "epilepsy", "ATRX"}
    assert (out / "report.html").is_file() and (out / "features.csv").is_file()
    print("fresh-venv first use: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))


@pytest.mark.parametrize("failure, expect", [
    ("Could not fetch URL https://download.pytorch.org/whl/cpu/torch/: There was a problem confirming the ssl "
     "certificate: Max retries exceeded with url (NewConnectionError)", "cannot be reached"),
    ("no matching distribution for torch==2.13.0 on this platform", "could not be installed by the PyTorch extension"),
])
def test_first_use_install_turns_a_pytorch_extension_failure_into_a_message(monkeypatch, failure, expect):
    """GliomaMRML.install.install with torch missing: the PyTorch extension's installTorch raising (as SlicerPyTorch
    does when pip fails) gives the offline message or a one-line reason, never a traceback in the module's setup.
    PyTorchUtils is a stand-in here: it belongs to the PyTorch Slicer extension, which cannot be installed here."""
    import types
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "GliomaRadiogenomics"))
    from GliomaMRML import install as I

    class Logic:
        def installTorch(self, askConfirmation=False, torchVersionRequirement=""):
            raise subprocess.CalledProcessError(1, ["pip", "install", "torch"], output=failure)

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=Logic))
    monkeypatch.setattr(D, "index_reachable", lambda *a, **k: False)
    p = D.plan(SLICER_LIKE, in_slicer=True)
    assert p.torch  # torch is to be installed first
    msg = I.install(p, log=lambda m: None)
    assert msg and expect in msg and "Traceback" not in msg
