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
