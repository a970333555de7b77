"""nnU-Net v2 backend, for real: a tiny model trained by scripts/train_tiny_nnunet.py on SYNTHETIC phantoms (CPU),
run through the same backend interface and command line as any trained nnU-Net model folder.

The trained model is cached in build/tiny-nnunet (delete it to retrain); CI trains it once per run."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("nnunetv2")

from GliomaRadiogenomicsLib.regions import dice_per_region  # noqa: E402
from GliomaRadiogenomicsLib.segment import NnUNetBackend, get_backend  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / "build" / "tiny-nnunet"
MODEL = WORK / "results" / "Dataset501_GliomaSyntheticTiny" / "nnUNetTrainer__nnUNetPlans__3d_fullres"


@pytest.fixture(scope="module")
def tiny_model():
    if not (MODEL / "fold_0" / "checkpoint_final.pth").exists():
        p = subprocess.run([sys.executable, str(REPO / "scripts" / "train_tiny_nnunet.py"), "--work", str(WORK),
                            "--cases", "16", "--epochs", "30", "--iterations", "20"],
                           capture_output=True, encoding="utf-8", errors="replace", timeout=3000)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return MODEL


def _script():
    import importlib.util
    spec = importlib.util.spec_from_file_location("train_tiny_nnunet", REPO / "scripts" / "train_tiny_nnunet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def phantom_pre(tiny_model):
    """A held-out phantom (not in the training seed) at 3 mm, cropped around the lesion like the training data."""
    from GliomaRadiogenomicsLib import synthetic as S
    from GliomaRadiogenomicsLib.preprocess import PreprocessedCase
    script = _script()
    an = S.load_anatomy(3)
    rng = np.random.default_rng(0)
    subj, spec = S.draw_cohort(40, seed=99, downsample=3)[5]
    chans, label = script.phantom_arrays(spec, an, rng)
    box = script.lesion_crop(label.shape, label, 40, rng)
    pre = PreprocessedCase("heldout", {}, None, "flair", {})
    for s, a in zip(S.SEQUENCES, chans):
        img = sitk.GetImageFromArray(np.ascontiguousarray(a[box]))
        img.SetSpacing(an.reference.GetSpacing())
        pre.images[s] = img
    m = sitk.GetImageFromArray(np.ones(label[box].shape, np.uint8))
    m.CopyInformation(pre.images["flair"])
    pre.brain_mask = m
    return pre, np.ascontiguousarray(label[box])


def test_model_folder_is_read_like_any_nnunet_model(tiny_model):
    b = get_backend("nnunet", model_folder=tiny_model, device="cpu")
    assert b.channel_order == ["t1", "t1c", "t2", "flair"]
    assert b.label_map == {1: 1, 2: 2, 3: 3}
    with pytest.raises(ValueError, match="not an nnU-Net v2 model folder"):
        NnUNetBackend(tiny_model.parent)
    with pytest.raises(ValueError, match="needs a trained model folder"):
        NnUNetBackend(None)


def test_tiny_model_segments_a_heldout_phantom(tiny_model, phantom_pre):
    pre, truth = phantom_pre
    seen = []
    from GliomaRadiogenomicsLib.progress import Progress
    lab = get_backend("nnunet", model_folder=tiny_model, device="cpu").segment(pre, Progress(lambda f, m: seen.append(m)))
    arr = sitk.GetArrayFromImage(lab)
    assert set(np.unique(arr)) <= {0, 1, 2, 3}
    d = dice_per_region(arr, truth)
    assert d["WT"] > 0.5, d  # a trained model, not random weights (random weights give ~0)
    assert any("nnU-Net" in m for m in seen)


def test_cancel_stops_nnunet_inference(tiny_model, phantom_pre):
    from GliomaRadiogenomicsLib.progress import Cancelled
    pre, _ = phantom_pre
    calls = []
    b = get_backend("nnunet", model_folder=tiny_model, device="cpu", should_cancel=lambda: calls.append(1) or len(calls) > 20)
    with pytest.raises(Cancelled):
        b.segment(pre)


def test_cuda_request_falls_back_to_cpu(tiny_model, phantom_pre):
    """No GPU here: asking for CUDA must fall back to the CPU with a message (the GPU path itself is not mocked)."""
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the fallback path is not exercised")
    pre, _ = phantom_pre
    seen = []
    from GliomaRadiogenomicsLib.progress import Progress
    get_backend("nnunet", model_folder=tiny_model, device="cuda").segment(pre, Progress(lambda f, m: seen.append(m)))
    assert any("falling back to CPU" in m for m in seen)


def test_segment_command_with_nnunet_backend(tiny_model, small_demo_dir, tmp_path):
    out = tmp_path / "seg"
    p = subprocess.run([sys.executable, "-m", "GliomaRadiogenomicsLib.cli", "segment", "--case-dir", str(small_demo_dir),
                        "--backend", "nnunet", "--nnunet-model", str(tiny_model), "--device", "cpu",
                        "--spacing", "3", "--brain-mask", "threshold", "--reference-seg",
                        str(small_demo_dir / "label.nii.gz"), "--out", str(out)],
                       capture_output=True, encoding="utf-8", errors="replace", timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    info = json.loads((out / "segmentation.json").read_text())
    assert info["backend"] == "nnunet" and "dice" in info
    seg = sitk.ReadImage(str(out / "segmentation.nii.gz"))
    assert seg.GetSize() == sitk.ReadImage(str(small_demo_dir / "flair.nii.gz")).GetSize()
