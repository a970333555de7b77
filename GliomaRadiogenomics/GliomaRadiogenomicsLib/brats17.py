"""The BraTS 2017 cascade of Wang et al. (WNet -> TNet -> ENet), re-implemented in torch for the published weights.

G. Wang, W. Li, S. Ourselin, T. Vercauteren, "Automatic Brain Tumor Segmentation using Cascaded Anisotropic
Convolutional Neural Networks", BrainLes 2017 (BraTS 2017, 2nd place). Weights: the authors' TensorFlow checkpoints
(taigw/brats17, folder model17/, BSD-3-Clause, University College London) converted to NumPy ``.npz`` files
(variable name -> array); no code of the source is used. Nine networks = 3 tasks (``wt`` whole tumor, ``tc`` tumor
core, ``en`` enhancing tumor) x 3 views (axial, sagittal, coronal); two classes each.

Architecture ("MSNet", rebuilt from the paper and from the names and shapes of the stored variables):

- residual blocks, pre-activation: [BN -> PReLU -> conv 1x3x3] x 2 + identity (a 4-channel input is zero-padded to
  32 channels, centred, before the sum); ``block1_*``, ``block2_*`` undilated; ``block3_1..3`` in-plane dilation
  1, 2, 3 and ``block4_1..3`` 3, 2, 1;
- ``fuse1..4``: inter-slice conv 3x1x1 without padding (each removes one slice at either end) -> BN -> PReLU;
- ``downsample1`` (WNet, TNet only) and ``downsample2``: conv 1x3x3 stride 1x2x2 ("SAME" padding as TensorFlow pads
  it: the extra pixel after, not before) -> BN -> PReLU;
- three prediction branches taken from the central 11 slices (f1 after fuse2, f2 after fuse3, f3 after fuse4),
  brought to full in-plane resolution by 1x3x3 stride-2 deconvolutions (-> BN -> PReLU; 2, 4, 8 channels; ENet,
  which downsamples once, has a plain 1x3x3 conv ``pred1`` for the first branch), concatenated (14 channels) and
  classified by a 1x3x3 conv ``final_pred`` (no bias) -> softmax over 2 classes.
  Input 19 slices -> output the central 11.

Tensor layout: the npz kernels are TensorFlow's [depth, height, width, in, out] (deconvolutions: [d, h, w, out, in]);
``load_network`` maps every stored tensor to a torch parameter ([out, in, d, h, w], resp. [in, out, d, h, w] for
``conv_transpose``) and refuses a file with an unknown, missing or mis-shaped tensor, naming the file. Each npz is
checked against ``SHA256SUMS`` before ``np.load(allow_pickle=False)``.

Batch normalisation at test time: the source builds its test networks in training mode, so every BN layer normalises
with the mean and (biased) variance of the current test batch (5 windows of 19 slices; the last batch is filled up
with N(0, 1) noise windows, as the source did) and the stored moving averages are not used. A re-implementation that
used the moving averages gave nonsense (a 3.3 L "tumor"); this module reproduces the batch-statistics behaviour
(``bn="batch"``, the default; ``bn="moving"`` exists only to show the difference). Consequence: a voxel's output
depends a little on the other windows of its batch; inference is deterministic for a given seed (the noise).

Test-time procedure (as the source's test script): input channels [flair, t1, t1ce, t2] on a 1 mm grid in the
BraTS array orientation (LPS), cropped to the brain's bounding box + 5 voxels; each channel z-scored over the brain
voxels, the voxels outside the brain replaced by N(0, 1) noise; per view, windows of 19 slices at a stride of 11
(the last one aligned to the end), in-plane the published patch size (WNet axial 180 x 160, sagittal 160 x 180,
coronal 160 x 160; TNet / ENet 96 x 96) widened to the crop (rounded up to a multiple of 4) where the crop is larger,
centred, zero padded; the central 11 output slices kept; the views' softmax outputs averaged. Cascade: TNet runs on
the bounding box (+5 voxels) of WNet's whole tumor, ENet inside the box of TNet's core. Post-processing (the
source's): binary closing (3x3x3, 18-connectivity) of the whole tumor, its components above 2000 voxels kept (the
largest is always kept here, the source could return nothing); core = closed TNet+ENet output inside the whole
tumor, components with less than half their volume inside the whole tumor removed, the largest (and the second
when > 1/10 of it) kept; enhancing = ENet inside the core, dropped below 30 voxels. Labels: 1 necrosis /
non-enhancing core (core minus enhancing), 2 edema (whole tumor minus core), 3 enhancing (BraTS' 4).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from .io import InputError

WEIGHTS_DIR = Path(__file__).resolve().parent / "resources" / "weights" / "brats17_cascade"
WEIGHTS_ENV = "GLIOMA_BRATS17_WEIGHTS"
TASKS = ("wt", "tc", "en")
TASK_NAMES = {"wt": "whole tumor (WNet)", "tc": "tumor core (TNet)", "en": "enhancing tumor (ENet)"}
VIEWS = ("axial", "sagittal", "coronal")
VIEW_SUFFIX = {"axial": "", "sagittal": "sg", "coronal": "cr"}
CHANNELS = ("flair", "t1", "t1c", "t2")     # the networks' input order [flair, t1, t1ce, t2]
IN_SLICES, OUT_SLICES = 19, 11
PATCH = {("wt", "axial"): (19, 180, 160), ("wt", "sagittal"): (19, 160, 180), ("wt", "coronal"): (19, 160, 160),
         **{(t, v): (19, 96, 96) for t in ("tc", "en") for v in VIEWS}}
DOWNSAMPLE_TWICE = {"wt": True, "tc": True, "en": False}
BATCH_SIZE = 5
BN_EPS = 1e-5
BASE = 32
NUM_CLASSES = 2
CROP_MARGIN = 5          # brain bounding box margin (voxels)
BOX_MARGIN = 5           # cascade bounding boxes (voxels)
WT_MIN_VOXELS = 2000     # whole-tumor components kept (1 mm voxels)
ET_MIN_VOXELS = 30       # enhancing tumor below this is dropped
DILATION = {"block1_1": 1, "block1_2": 1, "block2_1": 1, "block2_2": 1, "block3_1": 1, "block3_2": 2,
            "block3_3": 3, "block4_1": 3, "block4_2": 2, "block4_3": 1}
LICENCE = "BSD-3-Clause, Copyright (c) 2017-2018, University College London (taigw/brats17)"
CITATION = ("G. Wang, W. Li, S. Ourselin, T. Vercauteren. Automatic Brain Tumor Segmentation using Cascaded "
            "Anisotropic Convolutional Neural Networks. BrainLes 2017, LNCS 10670, pp. 178-190.")


class WeightsError(InputError):
    """A weight file is missing, corrupted or does not hold the expected tensors (the message names the file)."""


# ------------------------------------------------------------------------------------------------------------------
# Weight files
# ------------------------------------------------------------------------------------------------------------------
def network_file(task: str, view: str) -> str:
    return f"msnet_{task}32{VIEW_SUFFIX[view]}.npz"


def network_scope(task: str, view: str) -> str:
    return f"MSNet_{task.upper()}32{VIEW_SUFFIX[view]}"


def weights_dir(path=None) -> Path:
    """The weights folder: ``path``, else $GLIOMA_BRATS17_WEIGHTS, else the package's resources/weights/brats17_cascade."""
    if path:
        return Path(path)
    env = os.environ.get(WEIGHTS_ENV, "").strip()
    return Path(env) if env else WEIGHTS_DIR


def read_sha256sums(folder) -> Dict[str, str]:
    f = Path(folder) / "SHA256SUMS"
    if not f.is_file():
        raise WeightsError(f"{f}: missing (the brats17 weights folder needs its SHA256SUMS)")
    sums = {}
    for i, line in enumerate(f.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            raise WeightsError(f"{f}: line {i} is not '<sha256>  <file>'")
        sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def weights_available(path=None, views: Sequence[str] = VIEWS) -> bool:
    d = weights_dir(path)
    return (d / "SHA256SUMS").is_file() and all((d / network_file(t, v)).is_file() for t in TASKS for v in views)


def weights_digest(path=None) -> str:
    """Short digest of SHA256SUMS (what the provenance records)."""
    import hashlib
    return hashlib.sha256((weights_dir(path) / "SHA256SUMS").read_bytes()).hexdigest()[:12]


def expected_tensors(task: str, view: str) -> Dict[str, tuple]:
    """Every variable the npz of one network holds: name -> shape (TensorFlow layout)."""
    s = network_scope(task, view)
    spec: Dict[str, tuple] = {"beta1_power": (), "beta2_power": ()}   # Adam's step powers (unused)

    def bn(prefix, c):
        for v in ("beta", "gamma", "moving_mean", "moving_variance"):
            spec[f"{prefix}/{v}"] = (c,)
        for v in ("moving_mean", "moving_variance"):  # zero-debias state of the moving averages (unused)
            spec[f"{prefix}/{prefix}/{v}/biased"] = (c,)
            spec[f"{prefix}/{prefix}/{v}/local_step"] = ()

    for block in DILATION:
        for i in (0, 1):
            cin = 4 if (block == "block1_1" and i == 0) else BASE
            bn(f"{s}/{block}/bn_{i}", cin)
            spec[f"{s}/{block}/prelu_acti_{i}/alpha"] = (cin,)
            spec[f"{s}/{block}/conv_{i}/w"] = (1, 3, 3, cin, BASE)
    convs = ["fuse1", "fuse2", "fuse3", "fuse4", "downsample2"] + (["downsample1"] if DOWNSAMPLE_TWICE[task] else [])
    for name in convs:
        p = f"{s}/{name}_bn_prelu"
        spec[f"{p}/conv_/w"] = (3, 1, 1, BASE, BASE) if name.startswith("fuse") else (1, 3, 3, BASE, BASE)
        bn(f"{p}/bn_", BASE)
        spec[f"{p}/prelu_acti_/alpha"] = (BASE,)
    ups = {"pred_up2_1": (4, BASE), "pred_up3_1": (8, BASE)}
    if DOWNSAMPLE_TWICE[task]:
        ups.update({"pred_up1": (2, BASE), "pred_up2_2": (4, 4), "pred_up3_2": (8, 8)})
    else:
        spec[f"{s}/pred1/w"] = (1, 3, 3, BASE, NUM_CLASSES)
    for name, (cout, cin) in ups.items():
        p = f"{s}/{name}_bn_prelu"
        spec[f"{p}/deconv_/w"] = (1, 3, 3, cout, cin)    # conv3d_transpose filter: [d, h, w, out, in]
        bn(f"{p}/bn_", cout)
        spec[f"{p}/prelu_acti_/alpha"] = (cout,)
    spec[f"{s}/final_pred/w"] = (1, 3, 3, 14, NUM_CLASSES)
    return spec


def read_npz_checked(path, expected_sha256: Optional[str], task: str, view: str) -> Dict[str, np.ndarray]:
    """The arrays of one network file after the SHA-256 check; refuses unknown / missing / mis-shaped tensors."""
    from .io import sha256_file
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: brats17 weight file missing")
    if expected_sha256 is None:
        raise WeightsError(f"{path}: not listed in SHA256SUMS (refused unchecked)")
    got = sha256_file(path)
    if got != expected_sha256:
        raise WeightsError(f"{path}: SHA-256 mismatch (expected {expected_sha256[:12]}..., got {got[:12]}...): "
                           "corrupted or substituted file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable npz without pickles ({exc})") from exc
    spec = expected_tensors(task, view)
    unknown = sorted(set(arrays) - set(spec))
    missing = sorted(set(spec) - set(arrays))
    if unknown:
        raise WeightsError(f"{path}: unknown tensor(s) {unknown[:3]}{' ...' if len(unknown) > 3 else ''} "
                           f"({len(unknown)}) for network {network_scope(task, view)}")
    if missing:
        raise WeightsError(f"{path}: missing tensor(s) {missing[:3]}{' ...' if len(missing) > 3 else ''} "
                           f"({len(missing)}) for network {network_scope(task, view)}")
    for k, shape in spec.items():
        if tuple(arrays[k].shape) != tuple(shape):
            raise WeightsError(f"{path}: tensor {k} has shape {tuple(arrays[k].shape)}, expected {tuple(shape)}")
        if arrays[k].dtype != np.float32:
            raise WeightsError(f"{path}: tensor {k} is {arrays[k].dtype}, expected float32")
        if not np.all(np.isfinite(arrays[k])):
            raise WeightsError(f"{path}: tensor {k} holds non-finite values")
    return arrays


# ------------------------------------------------------------------------------------------------------------------
# The network (torch, functional on a [N, D, C, H, W] layout: in-plane ops run as 2D ops on N*D slices)
# ------------------------------------------------------------------------------------------------------------------
def tf_kernel_to_torch(w: np.ndarray):
    """TensorFlow conv kernel [d, h, w, in, out] -> torch [out, in, d, h, w] (deconvolutions: the stored
    [d, h, w, out, in] -> torch conv_transpose [in, out, d, h, w]: the same permutation)."""
    import torch
    return torch.from_numpy(np.ascontiguousarray(np.transpose(w, (4, 3, 0, 1, 2))))


class MSNet:
    """One of the nine networks, with torch tensors mapped from its npz (see the module docstring)."""

    def __init__(self, task: str, view: str, arrays: Dict[str, np.ndarray], device: str = "cpu", bn: str = "batch",
                 source: str = ""):
        import torch
        if bn not in ("batch", "moving"):
            raise ValueError("bn must be 'batch' (the source's test-time behaviour) or 'moving'")
        self.task, self.view, self.bn, self.source = task, view, bn, source
        self.scope = network_scope(task, view)
        self.twice = DOWNSAMPLE_TWICE[task]
        self.device = torch.device(device)
        self.p = {}
        for k, a in arrays.items():
            if not k.startswith(self.scope + "/") or "/biased" in k or "local_step" in k:
                continue
            name = k[len(self.scope) + 1:]
            t = tf_kernel_to_torch(a) if a.ndim == 5 else torch.from_numpy(np.ascontiguousarray(a))
            self.p[name] = t.to(self.device)

    # -- layers --------------------------------------------------------------------------------------------
    def _bn(self, x, prefix):
        import torch.nn.functional as F
        n, d, c, h, w = x.shape
        y = x.reshape(n * d, c, h, w)
        if self.bn == "batch":   # statistics of this batch over N, D, H, W (biased variance), as TF in training mode
            y = F.batch_norm(y, None, None, self.p[f"{prefix}/gamma"], self.p[f"{prefix}/beta"], True, 0.0, BN_EPS)
        else:
            y = F.batch_norm(y, self.p[f"{prefix}/moving_mean"], self.p[f"{prefix}/moving_variance"],
                             self.p[f"{prefix}/gamma"], self.p[f"{prefix}/beta"], False, 0.0, BN_EPS)
        return y.reshape(n, d, c, h, w)

    def _prelu(self, x, name):
        import torch.nn.functional as F
        n, d, c, h, w = x.shape
        return F.prelu(x.reshape(n * d, c, h, w), self.p[name]).reshape(n, d, c, h, w)

    def _conv_inplane(self, x, wname, dilation: int = 1, stride: int = 1):
        """1x3x3 convolution, TensorFlow 'SAME' padding (stride 2: the odd pixel is padded after)."""
        import torch.nn.functional as F
        w = self.p[wname][:, :, 0]                      # [out, in, 3, 3]
        n, d, c, h, wd = x.shape
        y = x.reshape(n * d, c, h, wd)
        if stride == 1:
            y = F.conv2d(y, w, padding=dilation, dilation=dilation)
        else:
            ph = max((-(-h // stride) - 1) * stride + 3 - h, 0)
            pw = max((-(-wd // stride) - 1) * stride + 3 - wd, 0)
            y = F.pad(y, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
            y = F.conv2d(y, w, stride=stride)
        return y.reshape(n, d, y.shape[1], y.shape[2], y.shape[3])

    def _conv_interslice(self, x, wname):
        """3x1x1 convolution without padding (VALID): D -> D - 2."""
        import torch
        w = self.p[wname][:, :, :, 0, 0]                # [out, in, 3]
        d = x.shape[1]
        return sum(torch.einsum("oi,ndihw->ndohw", w[:, :, k], x[:, k:d - 2 + k]) for k in range(3))

    def _deconv(self, x, wname):
        """1x3x3 transposed convolution, stride 2, TensorFlow 'SAME' (output 2H x 2W = the full output's first
        2H x 2W pixels)."""
        import torch.nn.functional as F
        w = self.p[wname][:, :, 0]                      # [in, out, 3, 3]
        n, d, c, h, wd = x.shape
        y = F.conv_transpose2d(x.reshape(n * d, c, h, wd), w, stride=2)[:, :, :2 * h, :2 * wd]
        return y.reshape(n, d, y.shape[1], 2 * h, 2 * wd)

    def block(self, x, name):
        """Residual block: [BN -> PReLU -> conv 1x3x3 (dilated)] x 2 + the input (channels zero-padded, centred)."""
        import torch.nn.functional as F
        y = x
        for i in (0, 1):
            y = self._bn(y, f"{name}/bn_{i}")
            y = self._prelu(y, f"{name}/prelu_acti_{i}/alpha")
            y = self._conv_inplane(y, f"{name}/conv_{i}/w", dilation=DILATION[name])
        cin, cout = x.shape[2], y.shape[2]
        if cin < cout:
            lo = (cout - cin) // 2
            x = F.pad(x, (0, 0, 0, 0, lo, cout - cin - lo))
        return y + x

    def conv_bn_prelu(self, x, name):
        p = f"{name}_bn_prelu"
        if name.startswith("fuse"):
            y = self._conv_interslice(x, f"{p}/conv_/w")
        else:
            y = self._conv_inplane(x, f"{p}/conv_/w", stride=2)
        return self._prelu(self._bn(y, f"{p}/bn_"), f"{p}/prelu_acti_/alpha")

    def up(self, x, name):
        p = f"{name}_bn_prelu"
        return self._prelu(self._bn(self._deconv(x, f"{p}/deconv_/w"), f"{p}/bn_"), f"{p}/prelu_acti_/alpha")

    def logits(self, x):
        """x: [N, D=19, 4, H, W] (H, W multiples of 4) -> logits [N, 11, 2, H, W]."""
        import torch
        f = self.block(x, "block1_1")
        f = self.block(f, "block1_2")
        f = self.conv_bn_prelu(f, "fuse1")
        if self.twice:
            f = self.conv_bn_prelu(f, "downsample1")
        f = self.block(f, "block2_1")
        f = self.block(f, "block2_2")
        f1 = self.conv_bn_prelu(f, "fuse2")
        f = self.conv_bn_prelu(f1, "downsample2")
        for b in ("block3_1", "block3_2", "block3_3"):
            f = self.block(f, b)
        f2 = self.conv_bn_prelu(f, "fuse3")
        f = f2
        for b in ("block4_1", "block4_2", "block4_3"):
            f = self.block(f, b)
        f3 = self.conv_bn_prelu(f, "fuse4")
        m1 = (f1.shape[1] - f3.shape[1]) // 2
        m2 = (f2.shape[1] - f3.shape[1]) // 2
        p1 = f1[:, m1:f1.shape[1] - m1]
        p1 = self.up(p1, "pred_up1") if self.twice else self._conv_inplane(p1, "pred1/w")
        p2 = self.up(f2[:, m2:f2.shape[1] - m2], "pred_up2_1")
        if self.twice:
            p2 = self.up(p2, "pred_up2_2")
        p3 = self.up(f3, "pred_up3_1")
        if self.twice:
            p3 = self.up(p3, "pred_up3_2")
        return self._conv_inplane(torch.cat([p1, p2, p3], dim=2), "final_pred/w")

    def probabilities(self, x_np: np.ndarray) -> np.ndarray:
        """x: [N, 19, 4, H, W] float32 -> softmax [N, 11, 2, H, W]."""
        import torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(x_np, np.float32)).to(self.device)
            return torch.softmax(self.logits(x), dim=2).cpu().numpy()


def load_network(task: str, view: str, path=None, device: str = "cpu", bn: str = "batch") -> MSNet:
    d = weights_dir(path)
    sums = read_sha256sums(d)
    f = network_file(task, view)
    return MSNet(task, view, read_npz_checked(d / f, sums.get(f), task, view), device=device, bn=bn, source=str(d / f))


def load_networks(path=None, views: Sequence[str] = VIEWS, device: str = "cpu", bn: str = "batch"):
    """{(task, view): MSNet} for the three tasks and the given views (each file SHA-256 checked)."""
    for v in views:
        if v not in VIEWS:
            raise ValueError(f"unknown view '{v}' (axial, sagittal, coronal)")
    return {(t, v): load_network(t, v, path, device, bn) for t in TASKS for v in views}


# ------------------------------------------------------------------------------------------------------------------
# Inference
# ------------------------------------------------------------------------------------------------------------------
_TO_VIEW = {"axial": (0, 1, 2, 3), "sagittal": (0, 3, 1, 2), "coronal": (0, 2, 1, 3)}  # on [C, z, y, x]
_FROM_VIEW = {"axial": (0, 1, 2, 3), "sagittal": (0, 2, 3, 1), "coronal": (0, 2, 1, 3)}


def _ceil4(n: int) -> int:
    return (n + 3) // 4 * 4


def window_centres(depth: int) -> list:
    """Centre slices of the 11-slice output windows (stride 11, the last aligned to the end), as the source."""
    half = OUT_SLICES // 2
    if depth <= OUT_SLICES:
        return [depth // 2]
    return [min(c, depth - half) for c in range(half, depth + half, OUT_SLICES)]


def predict_view(net: MSNet, vol: np.ndarray, patch, rng: np.random.Generator,
                 batch_size: int = BATCH_SIZE, on_batch: Optional[Callable[[], None]] = None) -> np.ndarray:
    """Softmax [2, D, H, W] of one network over a volume [C, D, H, W] already in the network's view."""
    c, depth, h, w = vol.shape
    hx, wx = max(_ceil4(h), patch[1]), max(_ceil4(w), patch[2])
    oh, ow = hx // 2 - h // 2, wx // 2 - w // 2
    prob = np.zeros((NUM_CLASSES, depth, h, w), np.float32)
    centres = window_centres(depth)
    half_in, half_out = IN_SLICES // 2, OUT_SLICES // 2
    for b0 in range(0, len(centres), batch_size):
        cs = centres[b0:b0 + batch_size]
        batch = np.zeros((batch_size, IN_SLICES, c, hx, wx), np.float32)
        for i, ctr in enumerate(cs):
            z0, z1 = max(ctr - half_in, 0), min(ctr + half_in + 1, depth)
            batch[i, z0 - (ctr - half_in):z1 - (ctr - half_in), :, oh:oh + h, ow:ow + w] = \
                np.transpose(vol[:, z0:z1], (1, 0, 2, 3))
        for i in range(len(cs), batch_size):   # the source fills the last batch with N(0, 1) windows
            batch[i] = rng.standard_normal((IN_SLICES, c, hx, wx), dtype=np.float32)
        out = net.probabilities(batch)          # [N, 11, 2, hx, wx]
        for i, ctr in enumerate(cs):
            z0, z1 = max(ctr - half_out, 0), min(ctr + half_out + 1, depth)
            sub = out[i, z0 - (ctr - half_out):z1 - (ctr - half_out), :, oh:oh + h, ow:ow + w]
            prob[:, z0:z1] = np.transpose(sub, (1, 0, 2, 3))
        if on_batch:
            on_batch()
    return prob


def n_batches(shape, views: Sequence[str]) -> int:
    d = {"axial": shape[0], "sagittal": shape[2], "coronal": shape[1]}
    return sum(-(-len(window_centres(d[v])) // BATCH_SIZE) for v in views)


def predict_task(nets, task: str, vol: np.ndarray, views: Sequence[str], rng, on_batch=None) -> np.ndarray:
    """Mean softmax foreground probability of the task's views over vol [C, z, y, x] -> [z, y, x]."""
    acc = np.zeros(vol.shape[1:], np.float32)
    for v in views:
        pv = predict_view(nets[(task, v)], np.ascontiguousarray(np.transpose(vol, _TO_VIEW[v])), PATCH[(task, v)],
                          rng, on_batch=on_batch)
        acc += np.transpose(pv, _FROM_VIEW[v])[1]
    return acc / len(views)


# ------------------------------------------------------------------------------------------------------------------
# Pre- and post-processing (numpy / scipy)
# ------------------------------------------------------------------------------------------------------------------
def bounding_box(mask: np.ndarray, margin: int = 0):
    idx = np.nonzero(mask)
    lo = [max(int(i.min()) - margin, 0) for i in idx]
    hi = [min(int(i.max()) + margin + 1, s) for i, s in zip(idx, mask.shape)]
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def normalise(channels: np.ndarray, brain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each channel z-scored over the brain voxels; outside the brain N(0, 1) noise (the source's loader)."""
    out = np.empty(channels.shape, np.float32)
    for i, ch in enumerate(channels):
        v = ch[brain].astype(np.float64)
        sd = float(v.std()) or 1.0
        out[i] = (ch - float(v.mean())) / sd
        out[i][~brain] = rng.standard_normal(int((~brain).sum()), dtype=np.float32)
    return out


def _struct():
    from scipy import ndimage as ndi
    return ndi.generate_binary_structure(3, 2)


def _labelled(mask):
    from scipy import ndimage as ndi
    lab, n = ndi.label(mask, _struct())
    return lab, np.bincount(lab.ravel())[1:] if n else np.zeros(0, np.int64)


def components_above(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Components larger than ``min_voxels``; the largest is always kept (the source could return nothing)."""
    lab, sizes = _labelled(mask)
    if sizes.size <= 1:
        return mask.astype(bool)
    keep = sizes > min_voxels
    keep[int(np.argmax(sizes))] = True
    return np.concatenate([[False], keep])[lab]


def largest_two(mask: np.ndarray) -> np.ndarray:
    """The largest component, and the second largest when it is more than 1/10 of the largest."""
    lab, sizes = _labelled(mask)
    if sizes.size <= 1:
        return mask.astype(bool)
    order = np.argsort(sizes)[::-1]
    keep = np.zeros(sizes.size + 1, bool)
    keep[order[0] + 1] = True
    if sizes[order[1]] * 10 > sizes[order[0]]:
        keep[order[1] + 1] = True
    return keep[lab]


def remove_external_core(wt: np.ndarray, core: np.ndarray) -> np.ndarray:
    """Core components with less than half of their volume inside the whole tumor are removed."""
    lab, sizes = _labelled(core)
    if sizes.size == 0:
        return core.astype(bool)
    inside = np.bincount(lab[wt.astype(bool)].ravel(), minlength=sizes.size + 1)[1:]
    keep = np.concatenate([[False], inside >= 0.5 * sizes])
    return keep[lab]


def _closing(mask):
    from scipy import ndimage as ndi
    return ndi.binary_closing(mask, structure=_struct())


def cascade(vol: np.ndarray, brain: np.ndarray, nets, views: Sequence[str], rng: np.random.Generator,
            progress: Optional[Callable[[float, str], None]] = None) -> Dict[str, object]:
    """WNet -> TNet -> ENet on a normalised crop vol [4, z, y, x] with its brain mask; returns the label map
    (1 necrosis / non-enhancing core, 2 edema, 3 enhancing) and the boxes used."""
    report = progress or (lambda f, m: None)
    counter = {"done": 0, "total": max(1, n_batches(vol.shape[1:], views))}
    span = {"lo": 0.0, "hi": 0.6, "msg": ""}

    def on_batch():
        counter["done"] += 1
        f = min(1.0, counter["done"] / counter["total"])
        report(span["lo"] + (span["hi"] - span["lo"]) * f, span["msg"])

    def stage(lo, hi, msg, shape):
        span.update(lo=lo, hi=hi, msg=msg)
        counter.update(done=0, total=max(1, n_batches(shape, views)))
        report(lo, msg)

    stage(0.0, 0.6, f"brats17: {TASK_NAMES['wt']}, {len(views)} view(s)", vol.shape[1:])
    p1 = predict_task(nets, "wt", vol, views, rng, on_batch)
    pred1 = (p1 > 0.5) & brain
    if pred1.any():
        box1 = bounding_box(components_above(_closing(pred1), WT_MIN_VOXELS), BOX_MARGIN)
    else:
        box1 = bounding_box(brain, BOX_MARGIN)
    sub, sub_brain = vol[(slice(None),) + box1], brain[box1]
    stage(0.6, 0.8, f"brats17: {TASK_NAMES['tc']} in a {'x'.join(str(s.stop - s.start) for s in box1)} box",
          sub.shape[1:])
    p2 = predict_task(nets, "tc", sub, views, rng, on_batch)
    pred2 = (p2 > 0.5) & sub_brain
    box2 = bounding_box(largest_two(_closing(pred2)), BOX_MARGIN) if pred2.any() else \
        tuple(slice(0, s) for s in pred2.shape)
    subsub, subsub_brain = sub[(slice(None),) + box2], sub_brain[box2]
    stage(0.8, 0.97, f"brats17: {TASK_NAMES['en']} in a {'x'.join(str(s.stop - s.start) for s in box2)} box",
          subsub.shape[1:])
    p3 = predict_task(nets, "en", subsub, views, rng, on_batch)
    pred3 = (p3 > 0.5) & subsub_brain
    report(0.97, "brats17: post-processing")
    # fuse the three levels on the crop (the source's step 5.4)
    label2 = np.zeros_like(pred1)
    label2[box1] = pred2
    label3 = np.zeros_like(pred1)
    label3[tuple(slice(a.start + b.start, a.start + b.stop) for a, b in zip(box1, box2))] = pred3
    wt_mask = components_above(_closing(pred1 | label2 | label3), WT_MIN_VOXELS) if (pred1 | label2 | label3).any() \
        else np.zeros_like(pred1)
    wt = pred1 & wt_mask
    core = _closing((label2 | label3) & wt_mask)
    core = remove_external_core(wt, core)
    if core.any():
        core = largest_two(core)
    wt = wt | core
    et = core & label3
    if 0 < et.sum() < ET_MIN_VOXELS:
        et = np.zeros_like(et)
    label = np.zeros(pred1.shape, np.uint8)
    label[wt] = 2
    label[core] = 1
    label[et] = 3
    return {"label": label, "wt_box": [[s.start, s.stop] for s in box1],
            "core_box": [[a.start + b.start, a.start + b.stop] for a, b in zip(box1, box2)],
            "raw_voxels": {"wt": int(pred1.sum()), "tc": int(pred2.sum()), "en": int(pred3.sum())}}


def segment_arrays(channels: np.ndarray, brain: np.ndarray, nets, views: Sequence[str] = VIEWS, seed: int = 0,
                   progress=None) -> Dict[str, object]:
    """channels [4, z, y, x] in the order flair, t1, t1c, t2 (1 mm, LPS array order), brain mask [z, y, x] ->
    label map on the same array (0 outside the brain crop)."""
    brain = np.asarray(brain, bool)
    if channels.shape[0] != 4 or channels.shape[1:] != brain.shape:
        raise ValueError(f"brats17 needs 4 channels and a brain mask of one shape, got {channels.shape} / {brain.shape}")
    if brain.sum() < 1000:
        raise InputError("brats17: brain mask too small (fewer than 1000 voxels)")
    rng = np.random.default_rng(seed)
    crop = bounding_box(brain, CROP_MARGIN)
    vol = normalise(channels[(slice(None),) + crop].astype(np.float32), brain[crop], rng)
    out = cascade(vol, brain[crop], nets, views, rng, progress)
    label = np.zeros(brain.shape, np.uint8)
    label[crop] = out["label"]
    out["label"] = label
    out["crop"] = [[s.start, s.stop] for s in crop]
    return out


def network_images(images: dict, brain_mask):
    """SimpleITK images on the networks' grid: the working grid reoriented to LPS (a permutation / flip of axes, the
    BraTS array order), resampled to 1 mm when the working grid is not 1 mm. Returns (dict seq -> float32 image
    for CHANNELS, uint8 brain mask)."""
    import SimpleITK as sitk
    ref = sitk.DICOMOrient(brain_mask, "LPS")
    if not np.allclose(ref.GetSpacing(), 1.0, atol=1e-3):
        size = [max(1, int(round(n * s))) for n, s in zip(ref.GetSize(), ref.GetSpacing())]
        d = np.array(ref.GetDirection()).reshape(3, 3)
        corner = np.array(ref.GetOrigin()) - d @ (np.array(ref.GetSpacing()) / 2)
        grid = sitk.Image(size, sitk.sitkUInt8)
        grid.SetSpacing([1.0] * 3)
        grid.SetDirection(ref.GetDirection())
        grid.SetOrigin(tuple(float(v) for v in corner + d @ np.full(3, 0.5)))
    else:
        grid = ref
    out = {}
    for seq in CHANNELS:
        out[seq] = sitk.Resample(sitk.Cast(images[seq], sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkLinear,
                                 0.0, sitk.sitkFloat32)
    mask = sitk.Resample(brain_mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return out, mask
