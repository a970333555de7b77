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


def test_cpu_threads_sets_the_machine_count_unless_asked(monkeypatch):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    from GliomaRadiogenomicsLib.worker import cpu_threads
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert cpu_threads() == (os.cpu_count() or 1) == torch.get_num_threads()
        assert cpu_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
