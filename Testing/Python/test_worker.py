import os
import time

import pytest

from GliomaRadiogenomicsLib.progress import Cancelled, Progress
from GliomaRadiogenomicsLib.worker import WorkerError, run_worker


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_worker_reports_progress_and_result():
    seen = []
    res = run_worker(["selftest", "--seconds", "0.5"], Progress(lambda f, m: seen.append((f, m))))
    assert res["ticks"] == 5
    assert len(seen) >= 3 and seen[0][1].startswith("grandchild")


def test_cancel_kills_the_whole_process_tree():
    seen = []
    started = time.monotonic()
    with pytest.raises(Cancelled):
        run_worker(["selftest", "--seconds", "60"], Progress(lambda f, m: seen.append(m)),
                   should_cancel=lambda: len(seen) >= 3)
    assert time.monotonic() - started < 20
    grandchild = int(seen[0].split()[1])
    for _ in range(50):
        if not _alive(grandchild):
            break
        time.sleep(0.1)
    assert not _alive(grandchild), "grandchild survived the cancellation"


def test_worker_errors_are_reported(tmp_path):
    with pytest.raises(WorkerError, match="deepbet"):
        run_worker(["deepbet", "--input", str(tmp_path / "missing.nii.gz"), "--output", str(tmp_path / "m.nii.gz"),
                    "--device", "cpu"])


def test_core_child_runs_by_script_path_without_an_installed_package(tmp_path):
    """The child is ``<python> <package>/launch.py worker ...`` with PYTHONPATH set by the parent: it runs under a
    Python that has not installed the package (the base interpreter of this venv, started outside the checkout),
    where ``-m GliomaRadiogenomicsLib.worker`` cannot resolve."""
    import subprocess
    import sys
    from GliomaRadiogenomicsLib.background import LAUNCHER, BackgroundJob
    base = getattr(sys, "_base_executable", None) or sys.executable
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    plain = subprocess.run([base, "-m", "GliomaRadiogenomicsLib.worker", "selftest", "--seconds", "0.1"], cwd=tmp_path,
                           env=clean, capture_output=True, text=True)
    assert plain.returncode != 0 and "No module named" in plain.stderr  # what `-m` did outside an install
    job = BackgroundJob.core("worker", ["selftest", "--seconds", "0.3"], python=base, env=clean, cwd=str(tmp_path))
    assert job.cmd[1] == str(LAUNCHER) and "-m" not in job.cmd
    st = job.wait(timeout=60)
    assert st.returncode == 0 and st.result["ticks"] == 3, st.error


def test_kill_process_tree_ends_a_grandchild_through_psutil():
    """kill_process_tree (psutil: no os.killpg, works on Windows too) on a worker that started a grandchild: both
    end, and the BackgroundJob reports a cancel (its Popen keeps the exit status)."""
    import psutil
    from GliomaRadiogenomicsLib.background import BackgroundJob
    job = BackgroundJob.core("worker", ["selftest", "--seconds", "60"])
    t0 = time.monotonic()
    while not job.poll().message.startswith("grandchild"):
        assert time.monotonic() - t0 < 30 and job.poll().running, job.poll().error
        time.sleep(0.05)
    grandchild = int(job.poll().message.split()[1])
    assert grandchild in [c.pid for c in psutil.Process(job.proc.pid).children(recursive=True)]
    job.cancel()
    st = job.poll()
    assert not st.running and st.cancelled and st.error == "cancelled" and st.returncode != 0
    assert not _alive(grandchild) and not _alive(job.proc.pid)
