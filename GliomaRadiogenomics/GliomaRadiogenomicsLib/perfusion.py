"""rCBV: a DSC-perfusion CBV map normalised to contralateral normal-appearing white matter (Shim 2021).

Shim et al. 2021 compute their radiomics on CBV maps shown as rCBV (CBV relative to normal white matter); the
methods do not say how the reference region was drawn. Here it is defined concretely (``REFERENCE_REGION``):

1. white matter: 3-class Otsu thresholds (skimage ``threshold_multiotsu``) of one structural sequence inside the
   brain mask, away from the tumour: T1 (else T1c) -> the brightest class, T2 -> the darkest, FLAIR -> the middle
   class (CSF dark, WM below GM);
2. normal-appearing: outside the whole tumour (labels 1-3) dilated by ``MARGIN_MM`` (10 mm);
3. contralateral: the hemisphere opposite the tumour's centroid, the midline being the brain mask's centroid along
   the patient's left-right axis (the working grid's physical x axis; the head is assumed roughly aligned with it:
   no symmetry plane is fitted), with a ``MIDLINE_MM`` (5 mm) band around the midline left out;
4. eroded by ``ERODE_MM`` (2 mm) against partial volume with grey matter / CSF, and inside the CBV map's field of
   view (CBV > 0).

rCBV = CBV / mean CBV of that region, on the whole working grid (so a map given already as rCBV is rescaled by a
factor close to 1: the result is the same up to the reference region). The region's volume, its mean CBV, the
white-matter sequence and the tumour side are returned for the provenance; ``REFERENCE_REGION`` (the definition,
with a version) is a HARD provenance key: a model trained on rCBV features made another way refuses them.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

MARGIN_MM = 10.0
MIDLINE_MM = 5.0
ERODE_MM = 2.0
MIN_REFERENCE_ML = 1.0
WM_CLASS = {"t1": 2, "t1c": 2, "t2": 0, "flair": 1}   # index of the white-matter class among 3 Otsu classes
REFERENCE_REGION = (f"rcbv-v1: CBV / mean CBV of contralateral normal-appearing white matter (3-class Otsu WM of "
                    f"T1 > T1c > T2 > FLAIR in the brain mask; hemisphere opposite the tumour centroid, midline band "
                    f"{MIDLINE_MM:g} mm; outside the tumour + {MARGIN_MM:g} mm; eroded {ERODE_MM:g} mm)")


def _physical_x(grid: sitk.Image) -> np.ndarray:
    """Physical x (LPS: right -> left) of every voxel, array order (z, y, x)."""
    size = grid.GetSize()
    D = np.array(grid.GetDirection()).reshape(3, 3)
    sp = np.array(grid.GetSpacing())
    i, j, k = (np.arange(n, dtype=np.float64) for n in size)
    x = (grid.GetOrigin()[0] + D[0, 0] * sp[0] * i[None, None, :] + D[0, 1] * sp[1] * j[None, :, None]
         + D[0, 2] * sp[2] * k[:, None, None])
    return np.broadcast_to(x, size[::-1])


def white_matter(pre, region: np.ndarray) -> Tuple[np.ndarray, str]:
    """(white-matter mask, sequence used): 3-class Otsu of the first of T1, T1c, T2, FLAIR present, thresholds
    computed inside ``region`` (the brain away from the tumour)."""
    from skimage.filters import threshold_multiotsu
    seq = next(s for s in WM_CLASS if s in pre.images)
    a = pre.array(seq)
    thresholds = threshold_multiotsu(a[region], classes=3)
    classes = np.digitize(a, thresholds)
    return (classes == WM_CLASS[seq]) & region, seq


def reference_region(pre, label: sitk.Image) -> Tuple[np.ndarray, dict]:
    """The contralateral normal-appearing white matter (boolean array on the working grid) and its description."""
    from .io import InputError
    lab = sitk.GetArrayViewFromImage(label) > 0
    brain = sitk.GetArrayViewFromImage(pre.brain_mask) > 0
    if not lab.any():
        raise InputError("rCBV normalisation needs the tumour (its side): the segmentation is empty")
    sp = np.array(pre.grid.GetSpacing())[::-1]
    near_tumour = ndi.distance_transform_edt(~lab, sampling=sp) <= MARGIN_MM
    x = _physical_x(pre.grid)
    midline = float(x[brain].mean())
    side = 1.0 if float(x[lab].mean()) >= midline else -1.0     # +x is the patient's left (LPS)
    contralateral = (x - midline) * side < -MIDLINE_MM
    wm, seq = white_matter(pre, brain & ~near_tumour)
    wm = ndi.binary_erosion(wm, iterations=max(1, int(round(ERODE_MM / float(sp.min())))))
    cbv = pre.array("cbv")
    ref = wm & contralateral & (cbv > 0)
    vox_ml = float(np.prod(sp)) / 1000.0
    volume = float(ref.sum()) * vox_ml
    if volume < MIN_REFERENCE_ML:
        raise InputError(f"rCBV normalisation: the contralateral normal-appearing white matter covered by the CBV map "
                         f"holds {volume:.2f} mL (at least {MIN_REFERENCE_ML:g} mL needed): does the CBV map cover "
                         "both hemispheres, and is it registered to the other images?")
    return ref, {"volume_ml": round(volume, 3), "wm_sequence": seq,
                 "tumour_side": "left" if side > 0 else "right", "midline_x_mm": round(midline, 2)}


def rcbv_image(pre, label: sitk.Image) -> Tuple[sitk.Image, dict]:
    """(rCBV image on the working grid, provenance record) from ``pre.images['cbv']`` and the tumour ``label``."""
    from .io import InputError
    ref, info = reference_region(pre, label)
    cbv = pre.array("cbv").astype(np.float64)
    mean = float(cbv[ref].mean())
    if not np.isfinite(mean) or mean <= 0:
        raise InputError(f"rCBV normalisation: mean CBV {mean:g} in the white-matter reference region is not positive")
    out = sitk.GetImageFromArray((cbv / mean).astype(np.float32))
    out.CopyInformation(pre.grid)
    return out, {**info, "mean_cbv": round(mean, 6)}
