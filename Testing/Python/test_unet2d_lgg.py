"""lgg-unet2d: the shipped FLAIR U-Net weights, its input grid, the auto backend's choice, and a Dice floor on real
TCGA-LGG patients through the default `segment` command (out-of-fold network only). Real torch, real weights."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from GliomaRadiogenomicsLib import unet2d
from GliomaRadiogenomicsLib.segment import DEFAULT_BACKEND, AutoBackend, get_backend

pytest.importorskip("torch")

# measured out-of-fold Dice on these patients (docs/real-segmentation.md) minus a margin
LGG_FLOOR = 0.7
COHORT_CASES = ("TCGA-HT-7877", "TCGA-FG-A60K")  # FLAIR-only patients (no registration: fast)
CLI = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli"]


def test_shipped_weights_load_and_are_small():
    assert unet2d.weights_available(), "the lgg-unet2d weights must ship with the package"
    man = unet2d.read_manifest()
    assert [f["fold"] for f in man["folds"]] == [0, 1, 2, 3, 4]
    for f in man["folds"]:
        assert (unet2d.WEIGHTS_DIR / f["file"]).stat().st_size < 5 * 2 ** 20
        assert not set(f["train_cases"]) & set(f["test_cases"])
    assert "CC BY 3.0" in man["data"]["images"] and "not this project's" in man["data"]["licence_note"]
    models, _ = unet2d.load_models(folds="1")
    assert len(models) == 1
    x = np.zeros((2, unet2d.GRID_SIZE, unet2d.GRID_SIZE), np.float32)
    p = unet2d.predict_slices(models, x)
    assert p.shape == x.shape and float(p.max()) < 0.5  # an empty image is not tumor


def test_sha256_mismatch_is_refused(tmp_path):
    d = tmp_path / "w"
    d.mkdir()
    shutil.copy(unet2d.WEIGHTS_DIR / "manifest.json", d)
    shutil.copy(unet2d.WEIGHTS_DIR / "fold0.pt", d)
    unet2d.load_models(d, "0")  # intact copy loads
    raw = bytearray((d / "fold0.pt").read_bytes())
    raw[-100] ^= 0xFF
    (d / "fold0.pt").write_bytes(bytes(raw))
    with pytest.raises(unet2d.WeightsError, match="SHA-256 mismatch"):
        unet2d.load_models(d, "0")
    with pytest.raises(ValueError, match="not in the weights"):
        unet2d.load_models(d, "7")


def _sphere_image(direction, spacing, size, centre_vox, radius_mm):
    img = sitk.Image(size, sitk.sitkFloat32)
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    img.SetOrigin((-100.0, 20.0, -60.0))
    z, y, x = np.indices(size[::-1]).astype(np.float32)
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip((x, y, z), centre_vox, spacing))
    head = (d2 <= 70.0 ** 2).astype(np.float32) * 100.0
    img_arr = head + (d2 <= radius_mm ** 2) * 100.0
    out = sitk.GetImageFromArray(img_arr.astype(np.float32))
    out.CopyInformation(img)
    mask = sitk.GetImageFromArray((d2 <= radius_mm ** 2).astype(np.uint8))
    mask.CopyInformation(img)
    return out, mask


@pytest.mark.parametrize("direction", [
    (1, 0, 0, 0, 1, 0, 0, 0, 1),                     # axial LPS (the cohort)
    (-1, 0, 0, 0, -1, 0, 0, 0, 1),                   # axial RAS-stored
    (0, 0, -1, 1, 0, 0, 0, -1, 0),                   # sagittal acquisition
])
def test_network_grid_round_trip(direction):
    """Image -> network grid -> back: a sphere comes back where it was (any stored orientation), the network grid
    is LPS-axial with the fixed in-plane size and spacing, intensities are normalised to [0, CLIP]."""
    spacing = (0.9, 0.9, 5.0)
    img, mask = _sphere_image(direction, spacing, (200, 220, 30), (95, 120, 14), 25.0)
    x, grid, facts = unet2d.network_input(img)
    assert x.shape[1:] == (unet2d.GRID_SIZE, unet2d.GRID_SIZE) and 0 <= x.min() and x.max() <= unet2d.CLIP
    assert np.allclose(grid.GetSpacing()[:2], unet2d.GRID_SPACING_MM)
    D = np.array(grid.GetDirection()).reshape(3, 3)
    assert np.allclose(np.abs(np.diag(D)), 1)                    # axial axes
    assert D[2, 2] > 0 and D[0, 0] > 0 and D[1, 1] > 0           # LPS
    on_grid = unet2d.mask_to_network_grid(mask, grid)
    back = sitk.GetArrayFromImage(unet2d.probability_to_grid(on_grid.astype(np.float32), grid, img)) >= 0.5
    ref = sitk.GetArrayFromImage(mask) > 0
    assert 2 * (back & ref).sum() / (back.sum() + ref.sum()) > 0.95
    # the network sees the sphere brighter than the rest of the head
    assert x[on_grid > 0].mean() > 1.5 * x[(x > 0) & (on_grid == 0)].mean()


def test_auto_is_default_and_falls_back(small_pre, tmp_path):
    assert DEFAULT_BACKEND == "auto"
    from GliomaRadiogenomicsLib.preprocess import PreprocessedCase
    no_flair = PreprocessedCase("x", {k: v for k, v in small_pre.images.items() if k != "flair"},
                                small_pre.images["t1c"], "t1c", {}, brain_mask=small_pre.brain_mask)
    b, reason = AutoBackend().choose(no_flair)
    assert b.name == "hyperintensity" and "no FLAIR" in reason
    # all four sequences: the BraTS 2017 cascade, 3-view on thin native slices, axial networks only on thick ones
    import GliomaRadiogenomicsLib.segment as seg_mod
    b, reason = AutoBackend().choose(small_pre)   # this demo's FLAIR has 3 mm slices
    assert b.name == "brats17" and b.views == "axial" and "3.0 mm" in reason, reason
    for z, views in ((1.0, "all"), (seg_mod.AUTO_BRATS17_THICK_MM, "all"), (seg_mod.AUTO_BRATS17_THICK_MM + 0.5, "axial")):
        native = sitk.Image([20, 20, 10], sitk.sitkFloat32)
        native.SetSpacing((0.9, 0.9, z))
        pre = PreprocessedCase("t", dict(small_pre.images), native, "flair", {}, brain_mask=small_pre.brain_mask)
        b, reason = AutoBackend().choose(pre)
        assert b.name == "brats17" and b.views == views, (z, reason)
        assert ("3-view fusion" if views == "all" else "axial networks only") in reason
    # without T2 (or without the cascade's weights): lgg-unet2d, and the reason says why not brats17
    no_t2 = PreprocessedCase("n", {k: v for k, v in small_pre.images.items() if k != "t2"},
                             small_pre.reference_native, "flair", {}, brain_mask=small_pre.brain_mask)
    b, reason = AutoBackend().choose(no_t2)
    assert b.name == "lgg-unet2d" and "brats17 needs FLAIR, T1, T1c and T2" in reason, reason
    b, reason = AutoBackend(brats17_weights=tmp_path).choose(small_pre)
    assert b.name == "lgg-unet2d" and "brats17 not used: its weights are not installed" in reason, reason
    b, reason = AutoBackend(weights_dir=tmp_path, brats17_weights=tmp_path).choose(small_pre)
    assert b.name == "hyperintensity" and "not installed" in reason
    # the no-weights fallback runs and records its choice
    pre = PreprocessedCase("y", dict(small_pre.images), small_pre.reference_native, "flair", {},
                           brain_mask=small_pre.brain_mask)
    auto = AutoBackend(weights_dir=tmp_path, brats17_weights=tmp_path)
    lab = sitk.GetArrayFromImage(auto.segment(pre))
    assert (lab > 0).any() and any("auto -> hyperintensity" in s for s in pre.steps)
    from GliomaRadiogenomicsLib.io import InputError
    with pytest.raises(InputError, match="weights not found"):  # bad input (exit 2), not an internal error
        get_backend("lgg-unet2d", weights_dir=tmp_path)


@pytest.mark.realdata
def test_lgg_dice_floor_default_segment_command(shared_data, tmp_path):
    """Two real TCGA-LGG patients through `glioma-radiogenomics segment --case-dir` with the default backend, each
    with the fold network that was NOT trained on it (out-of-fold), against the manual FLAIR-abnormality mask."""
    cohort = shared_data / "cohorts" / "tcga-lgg" / "cases"
    if not cohort.is_dir():
        pytest.skip(f"{cohort} is absent: TCGA-LGG real-data test skipped")
    man = unet2d.read_manifest()
    for cid in COHORT_CASES:
        fold = next(f["fold"] for f in man["folds"] if cid in f["test_cases"])
        out = tmp_path / cid
        p = subprocess.run(CLI + ["segment", "--case-dir", str(cohort / cid), "--unet-folds", str(fold), "--device",
                                  "cpu", "--out", str(out)], capture_output=True, encoding="utf-8", errors="replace",
                           timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        info = json.loads((out / "segmentation.json").read_text())
        assert "lgg-unet2d" in info["backend"]
        assert any(f"fold(s) {fold}" in s for s in info["steps"])
        seg = sitk.ReadImage(str(out / "segmentation.nii.gz"))
        ref = sitk.ReadImage(str(cohort / cid / "flair_abnormality.nii.gz"))
        a, b = sitk.GetArrayFromImage(seg) > 0, sitk.GetArrayFromImage(ref) > 0
        d = 2 * (a & b).sum() / (a.sum() + b.sum())
        assert d >= LGG_FLOOR, (cid, d)


def test_context_index_matches_explicit_neighbours():
    """2.5D input: each slice with its neighbours, the edge slice repeated at the volume's ends; in a training subset
    a neighbour that was not stored falls back to the nearest stored one towards the slice."""
    idx = unet2d.context_index(np.zeros(5), np.arange(5), 1)
    assert idx.tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4]]
    idx2 = unet2d.context_index(np.zeros(4), np.arange(4), 2)
    assert idx2[0].tolist() == [0, 0, 0, 1, 2] and idx2[3].tolist() == [1, 2, 3, 3, 3]
    # two cases stored back to back (positions restart): neighbours never cross cases; position 2 of case 0 is
    # missing (not stored), so slice 3 of case 0 looks down to its nearest stored slice... itself
    case = np.array([0, 0, 0, 1, 1])
    pos = np.array([0, 1, 3, 0, 1])
    idx3 = unet2d.context_index(case, pos, 1)
    assert idx3.tolist() == [[0, 0, 1], [0, 1, 1], [2, 2, 2], [3, 3, 4], [3, 4, 4]]
    x = np.arange(5 * 2 * 2, dtype=np.float32).reshape(5, 2, 2)
    s = unet2d.stack_context(x, idx[1:3])
    assert s.shape == (2, 3, 2, 2)
    assert np.array_equal(s[0], np.stack([x[0], x[1], x[2]])) and np.array_equal(s[1, 1], x[2])


def test_2d_weights_expanded_to_25d_give_the_same_probabilities(tmp_path):
    """The training script's warm start (2D -> 2.5D: the slice on the centre channel, zero weights on the
    neighbours) must compute exactly the 2D network, through the product's predict_slices with context; a manifest
    whose channels do not match its context is refused."""
    import importlib.util
    import torch
    from pathlib import Path
    root = Path(unet2d.__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("train_lgg", root / "scripts" / "train_lgg_unet2d.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    models, man = unet2d.load_models(folds="2")
    st = {k: v.float() for k, v in models[0].state_dict().items()}
    st25 = train.expand_to_context(dict(st), 1)
    net25 = unet2d.build_unet(man["architecture"]["base"], man["architecture"]["depth"], in_channels=3)
    net25.load_state_dict(st25)
    net25.eval()
    rng = np.random.default_rng(0)
    x = (rng.random((4, unet2d.GRID_SIZE, unet2d.GRID_SIZE)) * 1.5).astype(np.float32)
    p2 = unet2d.predict_slices(models, x, flip=False)
    p25 = unet2d.predict_slices([net25], x, flip=False, context=1)
    assert np.abs(p2 - p25).max() < 1e-5
    # a non-zero neighbour weight changes the output: the context channels do reach the network
    with torch.no_grad():
        net25.down[0][0].weight[:, 0] += 0.05
    assert np.abs(unet2d.predict_slices([net25], x, flip=False, context=1) - p2).max() > 1e-3
    d = tmp_path / "w"
    d.mkdir()
    shutil.copy(unet2d.WEIGHTS_DIR / "fold0.pt", d)
    bad = dict(man)
    bad["architecture"] = dict(man["architecture"], context=1)  # says 2.5D, has 1 input channel
    (d / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(unet2d.WeightsError, match="does not match context"):
        unet2d.load_models(d, "0")


def _demo_without_t2(small_demo_dir):
    from GliomaRadiogenomicsLib.case import load_case_folder
    case = load_case_folder(small_demo_dir)
    case.images.pop("t2")
    case.paths.pop("t2", None)
    return case


def _fast_options():
    from GliomaRadiogenomicsLib.pipeline import PipelineOptions
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    return PipelineOptions(preprocess=PreprocessOptions(spacing=2.0, brain_mask="threshold"),
                           backend_options={"unet_folds": "0", "device": "cpu"})


def test_network_runs_while_the_case_is_preprocessed_with_the_same_labels(small_demo_dir, monkeypatch):
    """Default backend on a case without T2 (-> lgg-unet2d): its worker starts before registration and brain
    extraction (it needs only the FLAIR as acquired and the working grid) and is running while the case is
    preprocessed; the labels equal those of the sequential path (early start switched off), voxel for voxel."""
    from GliomaRadiogenomicsLib import pipeline, worker
    from GliomaRadiogenomicsLib.segment import LggUnet2dBackend
    events = []
    real_worker, real_pre = worker.run_worker, pipeline.preprocess

    def logged_worker(*a, **k):
        return real_worker(*a, on_start=lambda p: events.append("worker started"), **k)

    def logged_pre(*a, **k):
        events.append("preprocess started")
        out = real_pre(*a, **k)
        events.append("preprocess done")
        return out
    monkeypatch.setattr(worker, "run_worker", logged_worker)
    monkeypatch.setattr(pipeline, "preprocess", logged_pre)
    case = _demo_without_t2(small_demo_dir)
    early = pipeline.segment_case(case, _fast_options())
    assert events.index("worker started") < events.index("preprocess done"), events
    assert any("while the case was preprocessed" in s for s in early.pre.steps)
    monkeypatch.setattr(LggUnet2dBackend, "start_early", lambda self, *a: False)
    events.clear()
    plain = pipeline.segment_case(case, _fast_options())
    assert events == ["preprocess started", "preprocess done", "worker started"]
    assert not any("while the case was preprocessed" in s for s in plain.pre.steps)
    a, b = sitk.GetArrayFromImage(early.label), sitk.GetArrayFromImage(plain.label)
    assert (a > 0).sum() > 100 and np.array_equal(a, b)


def test_early_network_is_stopped_when_preprocessing_fails(small_demo_dir, monkeypatch):
    """Preprocessing that fails (here an injected error, raised once the early worker is running: a controlled
    failure point, the worker and its process are real) leaves no worker process and no thread behind."""
    import threading
    import time
    from GliomaRadiogenomicsLib import pipeline, worker
    from GliomaRadiogenomicsLib.io import InputError
    procs = []
    real_worker = worker.run_worker
    monkeypatch.setattr(worker, "run_worker", lambda *a, **k: real_worker(*a, on_start=procs.append, **k))

    def failing(*a, **k):
        t0 = time.monotonic()
        while not procs and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        raise InputError("T1: injected preprocessing failure")
    monkeypatch.setattr(pipeline, "preprocess", failing)
    with pytest.raises(InputError, match="injected"):
        pipeline.segment_case(_demo_without_t2(small_demo_dir), _fast_options())
    assert len(procs) == 1
    assert procs[0].poll() is not None  # the worker's process is gone, not left computing
    assert not [t for t in threading.enumerate() if t.name == "gr-early-segmentation"]
