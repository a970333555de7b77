"""`make test`'s xdist workers share the CPUs for torch / OpenMP / BLAS threads (conftest.share_cpus_between_workers):
two workers each spinning every CPU's OpenMP threads made the tiny nnU-Net training ~3.5x slower than one thread each.
"""
from __future__ import annotations

import os

from conftest import THREAD_VARS, share_cpus_between_workers


def test_each_xdist_worker_gets_its_share_of_the_cpus_and_a_set_variable_is_kept():
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    env = {"PYTEST_XDIST_WORKER_COUNT": "2"}
    assert share_cpus_between_workers(env) == max(1, cpus // 2)
    assert all(env[v] == str(max(1, cpus // 2)) for v in THREAD_VARS)
    env = {"PYTEST_XDIST_WORKER_COUNT": str(4 * cpus), "OMP_NUM_THREADS": "3"}
    assert share_cpus_between_workers(env) == 1           # never 0 threads
    assert env["OMP_NUM_THREADS"] == "3" and env["GLIOMA_TORCH_THREADS"] == "1"   # the caller's choice stays


def test_outside_xdist_nothing_is_set():
    env = {}
    assert share_cpus_between_workers(env) == 0 and env == {}


def test_this_worker_runs_with_its_share():
    """Under `make test` (xdist), this process and its subprocesses inherit the share (or the caller's own
    setting, which is kept), and torch in this process follows OMP_NUM_THREADS."""
    if not os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
        return   # PYTEST_WORKERS=0: one process, nothing to share (a skip would fail strict mode)
    share = share_cpus_between_workers({"PYTEST_XDIST_WORKER_COUNT": os.environ["PYTEST_XDIST_WORKER_COUNT"]})
    assert share >= 1 and all(v in os.environ for v in THREAD_VARS)
    import torch   # installed by `make test` (the brain / nnunet extras); strict mode fails a missing extra anyway
    assert torch.get_num_threads() == int(os.environ["OMP_NUM_THREADS"])
