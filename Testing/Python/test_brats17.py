"""brats17: the torch port of the BraTS 2017 cascade (Wang et al.) against a NumPy reference computation with the real
weights, the SHA-256 / tensor checks of the loader, the backend end to end on BraTS-example, and the fallback when a
sequence is missing. Real torch, real weights (skipped with the reason when the weights are nowhere)."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from GliomaRadiogenomicsLib import brats17

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]
SHARED_WEIGHTS = REPO.parent / "shared" / "weights" / "brats17-cascade"
# measured on BraTS-example through the backend, axial networks only, CPU (docs/segmentation-quality.md:
# WT 0.964, TC 0.852, ET 0.871), minus a margin for platform differences
FLOORS = {"WT": 0.93, "TC": 0.78, "ET": 0.80}


@pytest.fixture(scope="module")
def weights() -> Path:
    for d in (brats17.weights_dir(), SHARED_WEIGHTS):
        if brats17.weights_available(d):
            return d
    pytest.skip(f"brats17 weights found neither in {brats17.weights_dir()} nor in ../shared/weights/brats17-cascade "
                f"({SHARED_WEIGHTS}); set ${brats17.WEIGHTS_ENV}")


# ------------------------------------------------------------------------------------------------------------------
# NumPy reference, written from the TensorFlow definitions (layout [N, D, H, W, C], kernels [d, h, w, in, out])
# ------------------------------------------------------------------------------------------------------------------
def np_conv(x, w, dilation=(1, 1, 1), stride=(1, 1, 1), padding="SAME"):
    kd, kh, kw, _, cout = w.shape
    pads = []
    for k, d, s, n in zip((kd, kh, kw), dilation, stride, x.shape[1:4]):
        eff = (k - 1) * d + 1
        if padding == "VALID":
            pads.append((0, 0))
        else:  # TensorFlow SAME: output ceil(n / s), the odd pixel padded after
            total = max((-(-n // s) - 1) * s + eff - n, 0)
            pads.append((total // 2, total - total // 2))
    xp = np.pad(x, [(0, 0)] + pads + [(0, 0)])
    out_shape = [(xp.shape[i + 1] - ((k - 1) * d + 1)) // s + 1
                 for i, (k, d, s) in enumerate(zip((kd, kh, kw), dilation, stride))]
    out = np.zeros((x.shape[0], *out_shape, cout), np.float64)
    for a in range(kd):
        for b in range(kh):
            for c in range(kw):
                patch = xp[:, a * dilation[0]::stride[0], b * dilation[1]::stride[1], c * dilation[2]::stride[2]]
                patch = patch[:, :out_shape[0], :out_shape[1], :out_shape[2]]
                out += patch @ w[a, b, c].astype(np.float64)
    return out


def np_deconv_same_stride2(x, w):
    """conv3d_transpose, kernel [1, 3, 3, out, in], strides [1, 2, 2], SAME: output [N, D, 2H, 2W, out]."""
    n, d, h, wd, _ = x.shape
    full = np.zeros((n, d, 2 * h + 1, 2 * wd + 1, w.shape[3]), np.float64)
    for a in range(3):
        for b in range(3):
            full[:, :, a:a + 2 * h:2, b:b + 2 * wd:2] += x @ w[0, a, b].T.astype(np.float64)
    return full[:, :, :2 * h, :2 * wd]


def np_bn_batch(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=(0, 1, 2, 3))
    var = x.var(axis=(0, 1, 2, 3))
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def np_prelu(x, alpha):
    return np.where(x >= 0, x, alpha * x)


def np_block(arrays, scope, name, x, dilation):
    y = x
    for i in (0, 1):
        y = np_bn_batch(y, arrays[f"{scope}/{name}/bn_{i}/gamma"], arrays[f"{scope}/{name}/bn_{i}/beta"])
        y = np_prelu(y, arrays[f"{scope}/{name}/prelu_acti_{i}/alpha"])
        y = np_conv(y, arrays[f"{scope}/{name}/conv_{i}/w"], dilation=(1, dilation, dilation))
    if x.shape[-1] < y.shape[-1]:
        lo = (y.shape[-1] - x.shape[-1]) // 2
        x = np.pad(x, [(0, 0)] * 4 + [(lo, y.shape[-1] - x.shape[-1] - lo)])
    return y + x


def np_conv_bn_prelu(arrays, scope, name, x, **conv):
    p = f"{scope}/{name}_bn_prelu"
    y = np_conv(x, arrays[f"{p}/conv_/w"], **conv)
    return np_prelu(np_bn_batch(y, arrays[f"{p}/bn_/gamma"], arrays[f"{p}/bn_/beta"]), arrays[f"{p}/prelu_acti_/alpha"])


def np_up(arrays, scope, name, x):
    p = f"{scope}/{name}_bn_prelu"
    y = np_deconv_same_stride2(x, arrays[f"{p}/deconv_/w"])
    return np_prelu(np_bn_batch(y, arrays[f"{p}/bn_/gamma"], arrays[f"{p}/bn_/beta"]), arrays[f"{p}/prelu_acti_/alpha"])


def _torch_of(x_tf):   # [N, D, H, W, C] -> the port's [N, D, C, H, W]
    return torch.from_numpy(np.ascontiguousarray(np.transpose(x_tf, (0, 1, 4, 2, 3)), np.float32))


def _tf_of(y):
    return np.transpose(y.detach().numpy(), (0, 1, 3, 4, 2)).astype(np.float64)


def _layer_errors(net, arrays, scope):
    """Max abs difference port vs NumPy for: block1_1 (4 -> 32, channel-padded residual), block3_2 (dilation 2),
    fuse1 (inter-slice 3x1x1 valid), downsample1 (stride 2 SAME; ENet, which downsamples once: downsample2),
    pred_up2_1 (deconvolution), final_pred (14 -> 2 classes)."""
    down = "downsample1" if net.twice else "downsample2"
    rng = np.random.default_rng(7)
    x4 = rng.standard_normal((2, 5, 12, 10, 4))
    x32 = rng.standard_normal((2, 5, 12, 10, 32))
    x14 = rng.standard_normal((2, 5, 12, 10, 14))
    cases = {
        "block1_1": (lambda: net.block(_torch_of(x4), "block1_1"), lambda: np_block(arrays, scope, "block1_1", x4, 1)),
        "block3_2": (lambda: net.block(_torch_of(x32), "block3_2"),
                     lambda: np_block(arrays, scope, "block3_2", x32, 2)),
        "fuse1": (lambda: net.conv_bn_prelu(_torch_of(x32), "fuse1"),
                  lambda: np_conv_bn_prelu(arrays, scope, "fuse1", x32, padding="VALID")),
        down: (lambda: net.conv_bn_prelu(_torch_of(x32), down),
               lambda: np_conv_bn_prelu(arrays, scope, down, x32, stride=(1, 2, 2))),
        "pred_up2_1": (lambda: net.up(_torch_of(x32), "pred_up2_1"), lambda: np_up(arrays, scope, "pred_up2_1", x32)),
        "final_pred": (lambda: net._conv_inplane(_torch_of(x14), "final_pred/w"),
                       lambda: np_conv(x14, arrays[f"{scope}/final_pred/w"])),
    }
    errs = {}
    for k, (port, ref) in cases.items():
        b = ref()
        try:
            with torch.inference_mode():
                a = _tf_of(port())
        except RuntimeError:   # a mis-mapped non-square kernel does not even fit
            errs[k] = float("inf")
            continue
        errs[k] = float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12)) if a.shape == b.shape else float("inf")
    return errs


def _arrays(weights, task="wt", view="axial"):
    sums = brats17.read_sha256sums(weights)
    f = brats17.network_file(task, view)
    return brats17.read_npz_checked(weights / f, sums[f], task, view)


@pytest.mark.parametrize("view", brats17.VIEWS)
@pytest.mark.parametrize("task", brats17.TASKS)
def test_port_matches_numpy_reference_layer_by_layer(weights, task, view):
    """Each of the nine shipped networks (WNet / TNet / ENet x axial / sagittal / coronal), its own weights."""
    arrays = _arrays(weights, task, view)
    net = brats17.MSNet(task, view, arrays)
    errs = _layer_errors(net, arrays, brats17.network_scope(task, view))
    assert len(errs) == 6 and max(errs.values()) < 1e-4, errs


@pytest.mark.parametrize("perm", [(4, 3, 0, 2, 1), (3, 4, 0, 1, 2)], ids=["h-w swapped", "in-out swapped"])
def test_reference_catches_a_mis_mapped_kernel(weights, monkeypatch, perm):
    """The same comparison with a wrong TF -> torch permutation in the loader fails (the test can fail)."""
    import torch as _t
    monkeypatch.setattr(brats17, "tf_kernel_to_torch",
                        lambda w: _t.from_numpy(np.ascontiguousarray(np.transpose(w, perm))))
    arrays = _arrays(weights)
    errs = _layer_errors(brats17.MSNet("wt", "axial", arrays), arrays, brats17.network_scope("wt", "axial"))
    assert errs["block1_1"] > 1e-2 and errs["block3_2"] > 1e-2, errs


def test_whole_network_shapes_and_two_class_softmax(weights):
    for task in ("wt", "en"):   # downsampling twice / once
        net = brats17.load_network(task, "axial", weights)
        x = np.random.default_rng(0).standard_normal((2, 19, 4, 48, 40)).astype(np.float32)
        p = net.probabilities(x)
        assert p.shape == (2, 11, 2, 48, 40)
        assert np.allclose(p.sum(axis=2), 1.0, atol=1e-5)


# ------------------------------------------------------------------------------------------------------------------
# Loader refusals
# ------------------------------------------------------------------------------------------------------------------
def _one_network_copy(weights, tmp_path, arrays=None):
    d = tmp_path / "w"
    d.mkdir(exist_ok=True)
    f = brats17.network_file("en", "axial")
    if arrays is None:
        shutil.copy(weights / f, d / f)
    else:
        np.savez(d / f, **arrays)
    from GliomaRadiogenomicsLib.io import sha256_file
    (d / "SHA256SUMS").write_text(f"{sha256_file(d / f)}  {f}\n")
    return d, f


def test_loader_refuses_sha_mismatch_and_unlisted_files(weights, tmp_path):
    d, f = _one_network_copy(weights, tmp_path)
    brats17.load_network("en", "axial", d)   # the intact copy loads
    raw = bytearray((d / f).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / f).write_bytes(bytes(raw))
    with pytest.raises(brats17.WeightsError, match=rf"{f}: SHA-256 mismatch"):
        brats17.load_network("en", "axial", d)
    (d / "SHA256SUMS").write_text("")
    with pytest.raises(brats17.WeightsError, match="not listed in SHA256SUMS"):
        brats17.load_network("en", "axial", d)
    with pytest.raises(brats17.WeightsError, match="msnet_wt32.npz: brats17 weight file missing"):
        brats17.load_network("wt", "axial", d)


def test_loader_refuses_missing_unknown_and_misshaped_tensors(weights, tmp_path):
    good = _arrays(weights, "en", "axial")
    key = "MSNet_EN32/block3_2/conv_1/w"
    bad = dict(good)
    del bad[key]
    d, f = _one_network_copy(weights, tmp_path, bad)
    with pytest.raises(brats17.WeightsError, match=rf"{f}: missing tensor\(s\) \['{key}'\]"):
        brats17.load_network("en", "axial", d)
    bad = dict(good, **{"MSNet_EN32/block9_9/conv_0/w": np.zeros((1, 3, 3, 32, 32), np.float32)})
    d, f = _one_network_copy(weights, tmp_path, bad)
    with pytest.raises(brats17.WeightsError, match=rf"{f}: unknown tensor"):
        brats17.load_network("en", "axial", d)
    bad = dict(good, **{key: np.transpose(good[key], (0, 2, 1, 3, 4))[..., :16]})
    d, f = _one_network_copy(weights, tmp_path, bad)
    with pytest.raises(brats17.WeightsError, match=rf"{f}: tensor {key} has shape"):
        brats17.load_network("en", "axial", d)
    # the wrong task's file under this name: every tensor unknown
    d, f = _one_network_copy(weights, tmp_path, _arrays(weights, "tc", "axial"))
    with pytest.raises(brats17.WeightsError, match="unknown tensor"):
        brats17.load_network("en", "axial", d)


def test_backend_without_weights_is_a_clear_input_error(tmp_path):
    from GliomaRadiogenomicsLib.io import InputError
    from GliomaRadiogenomicsLib.segment import get_backend
    with pytest.raises(InputError, match=f"brats17: weights not found in {tmp_path}"):
        get_backend("brats17", weights_dir=tmp_path)


def test_postprocessing_rules():
    wt = np.zeros((20, 40, 40), bool)
    wt[2:18, 5:25, 5:25] = True          # 6400 voxels
    wt[2:6, 30:35, 30:35] = True         # 100 voxels: below the 2000-voxel floor
    kept = brats17.components_above(wt, brats17.WT_MIN_VOXELS)
    assert kept.sum() == 6400
    small = np.zeros_like(wt)
    small[5:8, 5:10, 5:10] = True        # only a small component: still kept (the largest always is)
    assert brats17.components_above(small, brats17.WT_MIN_VOXELS).sum() == 75
    core = np.zeros_like(wt)
    core[4:8, 20:30, 20:30] = True       # 400 voxels, 100 inside the whole tumor (< 1/2): removed
    core[8:10, 8:12, 8:12] = True        # inside
    out = brats17.remove_external_core(kept, core)
    assert out.sum() == 32
    assert brats17.window_centres(30) == [5, 16, 25] and brats17.window_centres(8) == [4]


# ------------------------------------------------------------------------------------------------------------------
# The backend (worker subprocess) on real and synthetic cases
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_segment_command_brats17_on_brats_example_axial(weights, shared_data, tmp_path):
    """`glioma-radiogenomics segment --backend brats17` through the CLI (worker subprocess, JSON progress lines) on
    BraTS-example, against its reference; the axial networks (3x faster than the 3-view fusion: the fusion itself is
    checked on a small volume by test_three_view_fusion_is_the_mean_of_the_views)."""
    import json
    import os
    import subprocess
    import sys
    c = shared_data / "cases" / "BraTS-example"
    out = tmp_path / "seg"
    env = dict(os.environ, **{brats17.WEIGHTS_ENV: str(weights)})
    p = subprocess.run([sys.executable, "-m", "GliomaRadiogenomicsLib.cli", "segment", "--case-dir", str(c),
                        "--backend", "brats17", "--brats17-views", "axial", "--no-register", "--device", "cpu",
                        "--reference-seg", str(c / "reference_seg_algorithm.nii.gz"), "--json-progress",
                        "--out", str(out)], capture_output=True, encoding="utf-8", errors="replace", timeout=900,
                       env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    info = json.loads((out / "segmentation.json").read_text())
    d = info["dice"]
    assert all(d[k] >= FLOORS[k] for k in FLOORS), d
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "segmentation.nii.gz")))
    assert set(np.unique(arr)) <= {0, 1, 2, 3}
    assert any(s.startswith("brats17: WNet -> TNet -> ENet (axial view only)") for s in info["steps"]), info["steps"]
    assert info["provenance"]["segmentation_backend"] == "brats17"
    assert "views axial" in info["provenance"]["segmentation_backend_version"]
    # JSON progress lines: the brats17 stage reports, and the fraction never goes back
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{") and '"progress"' in x]
    fractions = [x["progress"] for x in lines]
    assert any("brats17" in (x.get("message") or "") for x in lines), lines[-5:]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_missing_sequence_falls_back_to_the_weight_free_backend(weights, small_demo_case):
    from GliomaRadiogenomicsLib.case import Case
    from GliomaRadiogenomicsLib.pipeline import PipelineOptions, segment_case
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    images = {k: v for k, v in small_demo_case.images.items() if k != "t2"}
    case = Case("no-t2", images, required=("flair",))
    opts = PipelineOptions(PreprocessOptions(spacing=2.0, brain_mask="threshold", register=False), "brats17",
                           {"weights_dir": weights, "device": "cpu", "views": "axial"})
    seg = segment_case(case, opts)
    pre, lab, _ = seg.as_tuple()
    fallback = [s for s in pre.steps if s.startswith("segmentation backend: brats17 -> hyperintensity")]
    assert fallback and "lacks T2" in fallback[0], pre.steps
    assert any("lacks T2" in w for w in pre.warnings)
    assert seg.provenance["segmentation_backend"] == "hyperintensity"
    assert "brats17 -> hyperintensity (fallback)" in seg.source
    assert sitk.GetArrayFromImage(lab).any()   # the weight-free backend did segment


@pytest.mark.parametrize("command", ["run", "segment"])
def test_missing_sequence_fallback_is_stated_in_the_output_json(weights, small_demo_dir, bundles_at_spacing, tmp_path,
                                                                command):
    """`run` / `segment --backend brats17` through the CLI on a case given without T2: predictions.json (run) or
    segmentation.json (segment) states that brats17 fell back to the weight-free hyperintensity backend and why
    (the missing sequence named), in the steps, the warnings and the segmentation provenance."""
    import json
    import os
    import subprocess
    import sys
    out = tmp_path / "out"
    seqs = [a for s in ("flair", "t1", "t1c") for a in (f"--{s}", str(small_demo_dir / f"{s}.nii.gz"))]
    extra = ["--workers", "1", *[a for b in bundles_at_spacing(2.0) for a in ("--bundle", b)]] if command == "run" else []
    p = subprocess.run([sys.executable, "-m", "GliomaRadiogenomicsLib.cli", command, *seqs, "--backend", "brats17",
                        "--spacing", "2", "--brain-mask", "threshold", "--no-register", "--out", str(out), *extra],
                       capture_output=True, encoding="utf-8", errors="replace", timeout=600,
                       env=dict(os.environ, **{brats17.WEIGHTS_ENV: str(weights)}))
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads((out / ("predictions.json" if command == "run" else "segmentation.json")).read_text())
    steps = doc["preprocessing"]["steps"] if command == "run" else doc["steps"]
    reason = "brats17 needs FLAIR, T1, T1c and T2; this case lacks T2"
    assert any(s.startswith("segmentation backend: brats17 -> hyperintensity (") and reason in s for s in steps), steps
    assert any(reason in w and "hyperintensity" in w for w in doc["warnings"]), doc["warnings"]
    prov = doc["features"] if command == "run" else doc["provenance"]
    assert prov["segmentation_backend"] == "hyperintensity", prov
    source = prov["segmentation"] if command == "run" else doc["backend"]
    assert "brats17 -> hyperintensity (fallback)" in source, source
    assert json.loads((out / "segmentation.provenance.json").read_text())["segmentation_backend"] == "hyperintensity"


def test_cancel_stops_the_worker(weights, small_demo_case):
    from GliomaRadiogenomicsLib.case import Case
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions, preprocess
    from GliomaRadiogenomicsLib.progress import Cancelled
    from GliomaRadiogenomicsLib.segment import get_backend
    pre = preprocess(Case("demo", dict(small_demo_case.images), required=("flair",)),
                     PreprocessOptions(spacing=2.0, brain_mask="threshold", register=False))
    assert set(pre.images) == {"flair", "t1", "t1c", "t2"}
    b = get_backend("brats17", weights_dir=weights, device="cpu", views="axial", should_cancel=lambda: True)
    with pytest.raises(Cancelled):
        b.segment(pre)


def test_cancel_mid_run_ends_the_worker_tree_and_commits_nothing(weights, small_demo_case, bundles_at_spacing,
                                                                 tmp_path):
    """Cancel while the worker subprocess runs the cascade (after its JSON progress line of the WNet stage, the
    networks loaded), through run_case (the CLI's pipeline entry): Cancelled (not a worker failure) within seconds,
    the worker's whole process tree gone, its label file and temporary folder removed, and no output set committed
    (the output folder never appears)."""
    import time
    import psutil
    from GliomaRadiogenomicsLib.case import Case
    from GliomaRadiogenomicsLib.pipeline import PipelineOptions, run_case
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    from GliomaRadiogenomicsLib.progress import Cancelled, Progress
    messages, asked = [], {}

    def should_cancel():
        if not any(m.startswith("brats17: whole tumor (WNet)") for m in messages):
            return False
        if not asked:   # the first poll after the stage began: what runs now, and where it would write
            procs = psutil.Process().children(recursive=True)
            cmds = [p.cmdline() for p in procs]
            asked.update(t=time.monotonic(), procs=procs, messages=list(messages),
                         outputs=[c[c.index("--output") + 1] for c in cmds if "brats17" in c and "--output" in c])
        return True

    opts = PipelineOptions(PreprocessOptions(spacing=2.0, brain_mask="threshold", register=False), "brats17",
                           {"weights_dir": weights, "device": "cpu", "views": "axial", "should_cancel": should_cancel},
                           bundles=bundles_at_spacing(2.0))
    out = tmp_path / "out"
    with pytest.raises(Cancelled, match="cancelled: worker 'brats17' stopped"):
        run_case(Case("demo", dict(small_demo_case.images), required=("flair",)), out, opts,
                 Progress(lambda f, m: messages.append(m)))
    waited = time.monotonic() - asked["t"]
    assert waited < 10, f"{waited:.1f} s from the cancel to Cancelled"
    assert asked["messages"][-1] == "brats17: whole tumor (WNet), 1 view(s)", asked["messages"]   # mid-run
    assert asked["procs"] and len(asked["outputs"]) == 1, asked
    gone, alive = psutil.wait_procs(asked["procs"], timeout=5)
    assert not alive, alive
    label = Path(asked["outputs"][0])
    assert not label.exists() and not label.parent.exists(), label
    assert not out.exists() and list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())


def test_docs_reproduce_the_weights_licence(weights):
    """BSD-3 requires the notice in the documentation of a binary redistribution."""
    notice = (weights / "LICENSE.txt").read_text().strip()
    assert notice.startswith("Copyright (c) 2017-2018, University College London")
    assert notice in (REPO / "docs" / "segmentation.md").read_text(encoding="utf-8")


def test_three_view_fusion_is_the_mean_of_the_views(weights):
    """The published 3-view fusion on a small volume with the real TNet weights: each view's input is the volume
    transposed into that view and its output transposed back (the two permutations are inverses, with distinct axis
    lengths so a swapped axis cannot pass), and the fused probability is the mean of the three views' (the noise
    windows of the last batch drawn from one generator in the same order)."""
    vol = np.random.default_rng(3).standard_normal((4, 12, 30, 36)).astype(np.float32)
    for v in brats17.VIEWS:
        there = np.transpose(vol, brats17._TO_VIEW[v])
        assert np.array_equal(np.transpose(there, brats17._FROM_VIEW[v]), vol), v
    assert np.transpose(vol, brats17._TO_VIEW["sagittal"]).shape == (4, 36, 12, 30)   # slices along x
    assert np.transpose(vol, brats17._TO_VIEW["coronal"]).shape == (4, 30, 12, 36)    # slices along y
    nets = {("tc", v): brats17.load_network("tc", v, weights, "cpu") for v in brats17.VIEWS}
    fused = brats17.predict_task(nets, "tc", vol, brats17.VIEWS, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    single = [brats17.predict_task(nets, "tc", vol, [v], rng) for v in brats17.VIEWS]
    assert fused.shape == vol.shape[1:]
    np.testing.assert_allclose(fused, np.mean(single, axis=0), rtol=0, atol=1e-6)
    assert not np.allclose(single[0], single[1], atol=1e-3)   # the views do differ: the mean is not trivial


def test_backend_on_cuda_equals_cpu(weights, small_demo_case):
    """The worker on CUDA (where this machine has a GPU; skipped otherwise): the same labels as on the CPU from the
    same preprocessed case, up to a few voxels (test-time batch statistics in float32 on either device)."""
    import torch
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine: the CUDA path of brats17 is not exercised here")
    from GliomaRadiogenomicsLib.case import Case
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions, preprocess
    from GliomaRadiogenomicsLib.segment import get_backend
    pre = preprocess(Case("demo", dict(small_demo_case.images), required=("flair",)),
                     PreprocessOptions(spacing=2.0, brain_mask="threshold", register=False))
    labels = {}
    for device in ("cpu", "cuda"):
        b = get_backend("brats17", weights_dir=weights, device=device, views="axial")
        labels[device] = sitk.GetArrayFromImage(b.segment(pre))
        assert any(f"on {device}" in s for s in pre.steps if s.startswith("brats17: WNet")), pre.steps
    differ = int((labels["cpu"] != labels["cuda"]).sum())
    assert differ <= max(20, 0.001 * int((labels["cpu"] > 0).sum())), differ
