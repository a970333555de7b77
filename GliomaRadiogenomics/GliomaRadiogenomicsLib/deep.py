"""Deep features as in Liu 2024: ResNet34 (ImageNet weights) on the largest-area axial slice of each region in each
sequence, cropped to the region's box, bilinear 224x224, 3 channels, ImageNet normalisation, the 1000-d output.

The network is defined here in plain torch with torchvision's parameter names, so a user's ``resnet34-*.pth`` file
(torchvision's ImageNet weights) loads directly; torchvision itself does not import beside the pinned torch.
Weights come from a local path (``--resnet34-weights``, env ``GLIOMA_RESNET34_WEIGHTS``) or the cache folder
(``~/.cache/glioma-radiogenomics/``) and are checked by SHA-256 (torchvision file names carry the first 8 hex
digits; a full digest can be given). Nothing is downloaded; without weights the rest of the pipeline runs and the
outputs say the deep features are missing.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from .case import SEQUENCE_NAMES
from .regions import region_mask

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CACHE_DIR = Path(os.environ.get("GLIOMA_CACHE", Path.home() / ".cache" / "glioma-radiogenomics"))


class WeightsError(RuntimeError):
    pass


def build_resnet34(num_classes: int = 1000, in_channels: int = 3):
    """ResNet34 with torchvision's module names (conv1, bn1, layer1..4, fc; BasicBlock with downsample.0/1): the
    one ResNet34 of the package (``choi.ResNet34``, which also serves Choi 2021's classifier), so that a torchvision
    state dict loads into it."""
    from .choi import ResNet34
    return ResNet34(in_channels=in_channels, num_classes=num_classes)


def sha256_of(path: Path) -> str:
    from .io import sha256_file
    return sha256_file(path)


def find_weights(path: Optional[os.PathLike] = None) -> Optional[Path]:
    candidates = [Path(p) for p in (path, os.environ.get("GLIOMA_RESNET34_WEIGHTS")) if p]
    candidates += sorted(CACHE_DIR.glob("resnet34-*.pth")) if CACHE_DIR.is_dir() else []
    for c in candidates:
        if c.is_file():
            return c
    if path:
        raise WeightsError(f"ResNet34 weights not found at {path}")
    return None


def load_resnet34(path: os.PathLike, sha256: Optional[str] = None):
    """The network with verified weights. ``sha256`` (full digest) or the 8-hex prefix in a torchvision file name."""
    import torch
    p = Path(path)
    digest = sha256_of(p)
    m = re.match(r"resnet34-([0-9a-f]{8,64})\.pth$", p.name)
    expected = sha256 or (m.group(1) if m else None)
    if expected is None:
        raise WeightsError(f"{p}: cannot verify the weights (name them resnet34-<sha256 prefix>.pth as torchvision "
                           "does, or give the SHA-256)")
    if not digest.startswith(expected.lower()):
        raise WeightsError(f"{p}: SHA-256 {digest[:16]}... does not match the expected {expected[:16]}...")
    net = build_resnet34()
    state = torch.load(p, map_location="cpu", weights_only=True)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"{p}: not ResNet34 weights (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    net.eval()
    return net


def largest_slice_crop(image: np.ndarray, mask: np.ndarray) -> Optional[np.ndarray]:
    """The axial slice with the largest region area, cropped to the region's bounding box in that slice."""
    areas = mask.reshape(mask.shape[0], -1).sum(1)
    if areas.max() == 0:
        return None
    z = int(np.argmax(areas))
    ys, xs = np.where(mask[z])
    return image[z, ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)


def to_network_input(crop: np.ndarray):
    import torch
    import torch.nn.functional as F
    lo, hi = float(crop.min()), float(crop.max())
    a = (crop - lo) / (hi - lo) if hi > lo else np.zeros_like(crop)
    t = torch.from_numpy(np.ascontiguousarray(a))[None, None]
    t = F.interpolate(t, size=(224, 224), mode="bilinear", align_corners=False)[0].repeat(3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return ((t - mean) / std)[None]


def deep_features(pre, label: sitk.Image, sequences: List[str], regions: List[str], net) -> Dict[str, float]:
    """``<SEQ>_<region>_resnet34_fc_<i>`` for i in 0..999, per sequence and region."""
    import torch
    lab = sitk.GetArrayViewFromImage(label)
    out: Dict[str, float] = {}
    with torch.no_grad():
        for region in regions:
            m = region_mask(lab, region)
            for seq in sequences:
                crop = largest_slice_crop(pre.array(seq), m)
                if crop is None:
                    continue
                v = net(to_network_input(crop))[0].numpy()
                out.update({f"{SEQUENCE_NAMES[seq]}_{region}_resnet34_fc_{i}": float(x) for i, x in enumerate(v)})
    return out


def try_deep_features(pre, label, sequences, regions, weights: Optional[os.PathLike] = None,
                      sha256: Optional[str] = None) -> Tuple[Dict[str, float], List[str]]:
    """Deep features, or ({}, [warning]) when no weights are available (offline, nothing downloaded)."""
    try:
        path = find_weights(weights)
    except WeightsError as exc:
        return {}, [f"deep features missing: {exc}"]
    if path is None:
        return {}, ["deep features missing: no ResNet34 weights (give --resnet34-weights FILE or put "
                    f"resnet34-<sha>.pth in {CACHE_DIR}); nothing is downloaded"]
    try:
        net = load_resnet34(path, sha256)
    except WeightsError as exc:
        return {}, [f"deep features missing: {exc}"]
    return deep_features(pre, label, sequences, regions, net), []
