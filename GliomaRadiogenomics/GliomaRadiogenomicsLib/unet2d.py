"""A small 2D U-Net on FLAIR for the whole tumor (FLAIR abnormality), with the input grid shared by training and use.

Everything the network sees is built by ``network_input`` (one function for training data and inference, so both see
identical inputs):

1. the FLAIR is reoriented to LPS (``sitk.DICOMOrient``: a permutation/flip of axes only, so an axial acquisition keeps
   its acquired slices, and any acquisition gives axial slices);
2. a head mask (Otsu threshold, largest component) gives the in-plane head centre and the intensity scale;
3. every axial slice is resampled (linear) to a fixed in-plane grid: ``GRID_SIZE`` x ``GRID_SIZE`` pixels of
   ``GRID_SPACING_MM`` mm, centred on the head; the slice positions are the acquired ones;
4. intensities are divided by the 99th percentile of head voxels, clipped to [0, ``CLIP``] and quantised to
   1/``QUANT`` steps (the training arrays are stored as uint8, inference sees the same quantised values).

``probability_to_grid`` maps the network's per-slice probabilities back onto any target grid (linear).

Import rules: this module imports numpy only at the top; SimpleITK and torch are imported inside the functions that
need them, so ``scripts/train_lgg_unet2d.py`` can load it by path on a machine with torch and no SimpleITK.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GRID_SPACING_MM = 1.0
GRID_SIZE = 240            # 240 mm field of view: any adult head; 240 = 15 * 2^4
ORIENTATION = "LPS"
PERCENTILE = 99.0
CLIP = 2.0
QUANT = 127.5              # uint8 storage: value = round(x * QUANT), x in [0, CLIP]

WEIGHTS_DIR = Path(__file__).resolve().parent / "resources" / "weights" / "lgg_unet2d"


def grid_facts() -> dict:
    return {"orientation": ORIENTATION, "in_plane_spacing_mm": GRID_SPACING_MM, "size": GRID_SIZE,
            "slices": "acquired slices after reorientation to LPS (axial for any acquisition)",
            "centre": "centroid of the head mask (Otsu threshold, largest component), in plane",
            "normalisation": f"divide by the {PERCENTILE:g}th percentile of head voxels, clip to [0, {CLIP:g}], "
                             f"quantise to 1/{QUANT:g}",
            "interpolation": "linear (image in, probabilities out)"}


# ------------------------------------------------------------------------------------------------------------------
# Input grid (SimpleITK + numpy)
# ------------------------------------------------------------------------------------------------------------------
def head_mask(arr: np.ndarray) -> np.ndarray:
    """Head (not brain) mask of a [z, y, x] volume: Otsu threshold, largest 3D component, holes filled per slice."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    a = np.asarray(arr, np.float32)
    v = a[a > 0]
    if v.size < 100:
        return np.ones(a.shape, bool)
    if v.size > 2_000_000:
        v = v[:: v.size // 2_000_000 + 1]
    thr = float(threshold_otsu(v))
    m = a > thr
    lab, n = ndi.label(m)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        m = lab == int(np.argmax(sizes))
    for k in range(m.shape[0]):
        if m[k].any():
            m[k] = ndi.binary_fill_holes(m[k])
    return m if m.sum() >= 100 else (a > 0)


def network_grid(oriented, mask: np.ndarray):
    """The network's grid for an LPS-oriented image: its slices, ``GRID_SIZE``^2 pixels of ``GRID_SPACING_MM`` mm,
    centred in plane on the centroid of ``mask`` (array [z, y, x] of ``oriented``)."""
    import SimpleITK as sitk

    size = oriented.GetSize()
    if mask.any():
        _, cy, cx = [float(c) for c in np.argwhere(mask).mean(axis=0)]
    else:
        cy, cx = (size[1] - 1) / 2.0, (size[0] - 1) / 2.0
    centre = np.array(oriented.TransformContinuousIndexToPhysicalPoint((cx, cy, 0.0)))
    D = np.array(oriented.GetDirection()).reshape(3, 3)
    sp = np.array([GRID_SPACING_MM, GRID_SPACING_MM, oriented.GetSpacing()[2]])
    half = (GRID_SIZE - 1) / 2.0
    origin = centre - D @ (np.array([half, half, 0.0]) * sp)
    grid = sitk.Image([GRID_SIZE, GRID_SIZE, size[2]], sitk.sitkFloat32)
    grid.SetSpacing([float(s) for s in sp])
    grid.SetDirection(oriented.GetDirection())
    grid.SetOrigin([float(o) for o in origin])
    return grid


def normalise(arr: np.ndarray, scale: float) -> np.ndarray:
    x = np.clip(np.asarray(arr, np.float32) / max(scale, 1e-6), 0.0, CLIP)
    return np.round(x * QUANT) / QUANT


def network_input(flair):
    """FLAIR image -> (x [slices, GRID_SIZE, GRID_SIZE] float32 in [0, CLIP], network grid image, facts dict)."""
    import SimpleITK as sitk

    img = sitk.Cast(flair, sitk.sitkFloat32)
    if img.GetDimension() != 3:
        raise ValueError(f"FLAIR must be a 3D image (got {img.GetDimension()}D)")
    oriented = sitk.DICOMOrient(img, ORIENTATION)
    arr = sitk.GetArrayFromImage(oriented)
    mask = head_mask(arr)
    vals = arr[mask]
    scale = float(np.percentile(vals, PERCENTILE)) if vals.size else float(arr.max() or 1.0)
    grid = network_grid(oriented, mask)
    res = sitk.Resample(oriented, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    x = normalise(sitk.GetArrayFromImage(res), scale)
    facts = {"scale": scale, "slices": int(grid.GetSize()[2]), "head_voxels": int(mask.sum()),
             "acquired_direction": [round(float(d), 4) for d in flair.GetDirection()]}
    return x.astype(np.float32), grid, facts


def mask_to_network_grid(mask, grid) -> np.ndarray:
    """A binary mask (any grid) -> uint8 [slices, GRID_SIZE, GRID_SIZE] on the network grid (linear, >= 0.5)."""
    import SimpleITK as sitk

    m = sitk.Cast(mask > 0, sitk.sitkFloat32)
    res = sitk.Resample(m, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return (sitk.GetArrayFromImage(res) >= 0.5).astype(np.uint8)


def probability_to_grid(prob: np.ndarray, net_grid, target):
    """Per-slice probabilities [slices, GRID_SIZE, GRID_SIZE] on ``net_grid`` -> float32 image on ``target``'s grid
    (linear interpolation; 0 outside the network's field of view)."""
    import SimpleITK as sitk

    p = sitk.GetImageFromArray(np.asarray(prob, np.float32))
    p.CopyInformation(net_grid)
    return sitk.Resample(p, target, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


# ------------------------------------------------------------------------------------------------------------------
# The network (torch)
# ------------------------------------------------------------------------------------------------------------------
def build_unet(base: int = 16, depth: int = 4, in_channels: int = 1, out_channels: int = 1):
    """Plain 2D U-Net: ``depth`` poolings, channels base * 2^level, (conv3x3 - InstanceNorm - LeakyReLU) x 2 per block,
    transposed-conv upsampling, skip connections by concatenation; one logit per pixel."""
    import torch
    from torch import nn

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout, affine=True),
                             nn.LeakyReLU(0.01, inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout, affine=True),
                             nn.LeakyReLU(0.01, inplace=True))

    class UNet2D(nn.Module):
        def __init__(self):
            super().__init__()
            ch = [base * 2 ** i for i in range(depth + 1)]
            self.down = nn.ModuleList([block(in_channels, ch[0])] + [block(ch[i - 1], ch[i]) for i in range(1, depth + 1)])
            self.pool = nn.MaxPool2d(2)
            self.up = nn.ModuleList([nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in reversed(range(depth))])
            self.dec = nn.ModuleList([block(2 * ch[i], ch[i]) for i in reversed(range(depth))])
            self.head = nn.Conv2d(ch[0], out_channels, 1)

        def forward(self, x):
            skips = []
            for i, d in enumerate(self.down):
                x = d(x)
                if i < depth:
                    skips.append(x)
                    x = self.pool(x)
            for up, dec in zip(self.up, self.dec):
                x = up(x)
                x = dec(torch.cat([x, skips.pop()], dim=1))
            return self.head(x)

    return UNet2D()


def sha256(path) -> str:
    from .io import sha256_file
    return sha256_file(path)


class WeightsError(RuntimeError):
    pass


def read_manifest(weights_dir=None) -> dict:
    d = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    f = d / "manifest.json"
    if not f.is_file():
        raise WeightsError(f"{f}: no manifest (the lgg-unet2d weights are not installed)")
    return json.loads(f.read_text())


def weights_available(weights_dir=None) -> bool:
    """Manifest and every fold file present (content is checked at load time)."""
    d = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    try:
        man = read_manifest(d)
    except (WeightsError, ValueError):
        return False
    return bool(man.get("folds")) and all((d / f["file"]).is_file() for f in man["folds"])


def parse_folds(folds, manifest: dict):
    """'' / None -> all folds of the manifest; '0,2' -> [0, 2] (unknown fold numbers are an error)."""
    known = [int(f["fold"]) for f in manifest["folds"]]
    if folds in (None, "", "all"):
        return known
    want = [int(v) for v in str(folds).split(",") if v.strip() != ""]
    bad = [v for v in want if v not in known]
    if bad or not want:
        from .io import InputError  # here, not at the top: the training script loads this module by path
        raise InputError(f"lgg-unet2d: fold(s) {bad or folds} not in the weights (available: {known})")
    return want


def context_of(manifest: dict) -> int:
    """Through-plane context of the manifest's networks: 0 = 2D (one slice), k = 2.5D (2k + 1 slices as channels)."""
    return int(manifest["architecture"].get("context", 0))


def load_models(weights_dir=None, folds=None, device: str = "cpu"):
    """Fold networks from the manifest, each file checked against its SHA-256 before ``torch.load(weights_only=True)``."""
    import torch

    d = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    man = read_manifest(d)
    arch = man["architecture"]
    models = []
    for fold in parse_folds(folds, man):
        entry = next(f for f in man["folds"] if int(f["fold"]) == fold)
        path = d / entry["file"]
        if not path.is_file():
            raise WeightsError(f"{path}: weight file missing (fold {fold})")
        digest = sha256(path)
        if digest != entry["sha256"]:
            raise WeightsError(f"{path}: SHA-256 mismatch (expected {entry['sha256'][:12]}..., got {digest[:12]}...): "
                               "corrupted or replaced weight file; reinstall the package")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if int(arch["in_channels"]) != 2 * context_of(man) + 1:
            raise WeightsError(f"{d / 'manifest.json'}: in_channels {arch['in_channels']} does not match context "
                               f"{context_of(man)} (2 * context + 1 channels)")
        net = build_unet(arch["base"], arch["depth"], arch["in_channels"], arch["out_channels"])
        net.load_state_dict({k: v.float() for k, v in state.items()})
        models.append(net.to(device).eval())
    return models, man


def context_index(case, pos, context: int) -> np.ndarray:
    """Indices of each slice's through-plane neighbours: row i of the result lists, for d = -context..context, the
    index of the slice of the same ``case`` at position ``pos[i] + d``. A neighbour that is not there (beyond the
    volume's first / last slice, or not stored in a training subset) is replaced by the nearest one towards slice i
    (at the volume's edges: the edge slice repeated). One definition for training (``case`` / ``pos`` of the stored
    slices) and inference (one volume: ``case`` all 0, ``pos`` 0..n-1). Returns int64 [n, 2 * context + 1]."""
    case = np.asarray(case, np.int64)
    pos = np.asarray(pos, np.int64)
    n = len(pos)
    lookup = {(int(c), int(q)): i for i, (c, q) in enumerate(zip(case, pos))}
    out = np.empty((n, 2 * context + 1), np.int64)
    for i in range(n):
        c, q = int(case[i]), int(pos[i])
        for j, d in enumerate(range(-context, context + 1)):
            step = 1 if d > 0 else -1
            k = d
            while k != 0 and (c, q + k) not in lookup:
                k -= step
            out[i, j] = lookup[(c, q + k)] if k != 0 else i
    return out


def stack_context(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Slices x [n, H, W] and ``context_index`` rows [b, C] -> network input [b, C, H, W] (channel C // 2 = the slice
    itself, channel 0 the one below it in LPS order)."""
    return np.ascontiguousarray(x[index])


def predict_slices(models, x: np.ndarray, device: str = "cpu", batch: int = 16, flip: bool = True,
                   progress=None, context: int = 0) -> np.ndarray:
    """Mean sigmoid over models (and a left-right flip when ``flip``) for the slices x [n, H, W] of one volume ->
    [n, H, W] float32. ``context`` > 0: each slice is seen with its ``context`` neighbours on either side as extra
    input channels (2.5D, ``context_index``)."""
    import torch

    out = np.zeros(x.shape, np.float32)
    index = context_index(np.zeros(len(x)), np.arange(len(x)), context)
    n_steps = max(1, len(models) * ((len(x) + batch - 1) // batch))
    step = 0
    with torch.inference_mode():
        for m in models:
            for i in range(0, len(x), batch):
                t = torch.from_numpy(stack_context(x, index[i:i + batch])).to(device)
                p = torch.sigmoid(m(t).float())
                if flip:
                    p = 0.5 * (p + torch.flip(torch.sigmoid(m(torch.flip(t, dims=[3])).float()), dims=[3]))
                out[i:i + batch] += p[:, 0].cpu().numpy()
                step += 1
                if progress is not None:
                    progress(step / n_steps)
    return out / max(1, len(models))
