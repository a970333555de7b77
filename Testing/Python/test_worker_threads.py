"""Network workers run with a thread count of their own, not the one their environment inherits (issue 16).

A Dask worker's nanny sets OMP_NUM_THREADS=1 and every subprocess it starts inherits it; a sequential run leaves
torch at its default. oneDNN's results depend on the thread count: on the real case TCGA-HT-A616, deepbet's brain
mask differed by one voxel between the two, which moved that case's atlas location percentages (the 64-case
sequential vs local:2 equality). Real deepbet, real torch, real data; nothing mocked.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk

CASE = "TCGA-HT-A616"  # FLAIR only; the one case whose deepbet mask depended on OMP_NUM_THREADS (1 voxel)


@pytest.mark.realdata
@pytest.mark.slow
def test_deepbet_mask_does_not_depend_on_an_inherited_omp_num_threads(shared_data, monkeypatch):
    pytest.importorskip("deepbet", reason="deepbet (the 'brain' extra) is not installed")
    from GliomaRadiogenomicsLib.brainmask import compute_brain_mask
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions, preprocess
    folder = shared_data / "cohorts" / "tcga-lgg" / "cases" / CASE
    if not folder.is_dir():
        pytest.skip(f"{folder} absent: the TCGA-LGG real-data test is skipped")
    # the working-grid FLAIR that the extraction gives deepbet (the brain mask itself is recomputed below)
    pre = preprocess(load_case_folder(folder), PreprocessOptions(brain_mask="nonzero"))
    masks = {}
    for omp in (None, "1"):   # a sequential run, a Dask worker (its nanny sets OMP_NUM_THREADS=1)
        monkeypatch.delenv("GLIOMA_TORCH_THREADS", raising=False)
        if omp is None:
            monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        else:
            monkeypatch.setenv("OMP_NUM_THREADS", omp)
        mask, method, _ = compute_brain_mask(pre, "deepbet", "cpu")
        assert method == "deepbet"
        masks[omp] = sitk.GetArrayFromImage(mask)
    assert masks[None].sum() > 100_000   # a brain, not an empty mask
    diff = int(np.count_nonzero(masks["1"] != masks[None]))
    assert diff == 0, f"OMP_NUM_THREADS=1: {diff} voxel(s) of the brain mask differ from the default run"


def test_cpu_threads_explicit_count_env_or_the_cpus_of_the_process(monkeypatch):
    """A stage's --threads, else GLIOMA_TORCH_THREADS, else the CPUs this process may run on (its affinity);
    OMP_NUM_THREADS (what a Dask nanny sets) is never the source."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    from GliomaRadiogenomicsLib.worker import THREADS_ENV, cpu_threads, machine_cpus
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "7")
        monkeypatch.delenv(THREADS_ENV, raising=False)
        assert cpu_threads() == machine_cpus() == len(os.sched_getaffinity(0)) == torch.get_num_threads()
        monkeypatch.setenv(THREADS_ENV, "3")
        assert cpu_threads() == 3 == torch.get_num_threads()
        assert cpu_threads(1) == 1 == torch.get_num_threads()   # --threads wins
        monkeypatch.setenv(THREADS_ENV, "many")
        with pytest.raises(RuntimeError, match="GLIOMA_TORCH_THREADS='many': not a whole number"):
            cpu_threads()
    finally:
        torch.set_num_threads(before)
