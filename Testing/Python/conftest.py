"""Shared fixtures. Real data lives in ../shared/data beside the repository (never copied into it): tests that
need it skip with a reason when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("GLIOMA_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set GLIOMA_SHARED_DATA); real-data tests skipped")
    return SHARED_DATA


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
