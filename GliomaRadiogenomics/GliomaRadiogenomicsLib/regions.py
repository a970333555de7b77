"""Region algebra on BraTS label maps (1 necrosis NCR, 2 edema ED, 3 enhancing ET).

Regions used by the papers:
- BraTS: WT (1|2|3), TC (1|3), ET (3), NCR (1), ED (2)
- Shim 2021: CE = enhancing without necrosis (3), NE = non-enhancing T2/FLAIR hyperintensity = WT - ET - NCR (2)
- Liu 2024: edema (2), tumor = enhancing tumor (3; Liu's 'tumor' ROI is the enhancing tumor drawn on T1c; we
  include the necrotic core it encloses: TC), overall = edema + tumor (WT)
"""
from __future__ import annotations

from typing import Dict, Iterable

import numpy as np
import SimpleITK as sitk

REGION_LABELS: Dict[str, tuple] = {
    "WT": (1, 2, 3),
    "TC": (1, 3),
    "ET": (3,),
    "NCR": (1,),
    "ED": (2,),
    "CE": (3,),
    "NE": (2,),
    "edema": (2,),
    "tumor": (1, 3),
    "overall": (1, 2, 3),
}
REGION_DESCRIPTIONS = {
    "WT": "whole tumor (necrosis + edema + enhancing)",
    "TC": "tumor core (necrosis + enhancing)",
    "ET": "enhancing tumor",
    "NCR": "necrosis / non-enhancing core",
    "ED": "edema / non-enhancing T2-FLAIR hyperintensity",
    "CE": "contrast-enhancing (Shim 2021)",
    "NE": "non-enhancing T2/FLAIR hyperintense (Shim 2021)",
    "edema": "edema habitat (Liu 2024)",
    "tumor": "tumor = enhancing + enclosed necrosis (Liu 2024)",
    "overall": "overall lesion (Liu 2024)",
}
VOLUME_REGIONS = ("WT", "TC", "ET", "NCR", "ED")


def region_mask(label: np.ndarray, region: str) -> np.ndarray:
    if region not in REGION_LABELS:
        raise ValueError(f"unknown region '{region}'; known: {', '.join(REGION_LABELS)}")
    return np.isin(label, REGION_LABELS[region])


def region_image(label: sitk.Image, region: str) -> sitk.Image:
    arr = region_mask(sitk.GetArrayViewFromImage(label), region).astype(np.uint8)
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(label)
    return img


def region_volumes_ml(label: sitk.Image, regions: Iterable[str] = VOLUME_REGIONS) -> Dict[str, float]:
    arr = sitk.GetArrayViewFromImage(label)
    vox_ml = float(np.prod(label.GetSpacing())) / 1000.0
    return {r: round(float(region_mask(arr, r).sum()) * vox_ml, 3) for r in regions}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2.0 * (a & b).sum() / s)


def dice_per_region(label: np.ndarray, reference: np.ndarray, regions: Iterable[str] = ("WT", "TC", "ET")):
    return {r: round(dice(region_mask(label, r), region_mask(reference, r)), 4) for r in regions}


def as_brats_label(label: sitk.Image, where: str = "segmentation"):
    """A user's label map as BraTS labels. Returns (uint8 label image, note or None).

    - values within {0, 1, 2, 3}: BraTS labels of this project, kept;
    - BraTS 2017-2020 files (values within {0, 1, 2, 4}, 4 present): 4 (enhancing) -> 3;
    - a binary mask (one non-zero value other than 2 or 3, e.g. 0/1 or 0/255; manual tumor / FLAIR-abnormality
      masks): the whole tumor, stored as 2 (edema / non-enhancing abnormality: no core regions are claimed);
    - anything else (several values beyond 0-4): refused, naming the values.
    """
    from .io import InputError
    arr = sitk.GetArrayFromImage(label)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            frac = arr[np.isfinite(arr) & (arr != np.round(arr))]
            shown = f" such as {float(frac[0]):g}" if frac.size else ""
            raise InputError(f"{where}: not a label map (non-integer voxel values{shown}); labels are the integers "
                             "0-3 (1 necrosis, 2 edema, 3 enhancing) or a binary mask")
    arr = arr.astype(np.int64)
    values = [int(v) for v in np.unique(arr) if v != 0]
    note = None
    if len(values) == 1 and values[0] not in (2, 3):
        out = (arr != 0).astype(np.uint8) * 2
        note = (f"{where}: binary mask (value {values[0]}) read as the whole tumor (label 2); enhancing / necrotic "
                "regions are not available from it")
    elif set(values) <= {1, 2, 3}:
        out = arr.astype(np.uint8)
    elif set(values) <= {1, 2, 4}:
        out = np.where(arr == 4, 3, arr).astype(np.uint8)
        note = f"{where}: BraTS 2017-2020 labels (4 = enhancing) mapped to this project's labels (3 = enhancing)"
    else:
        raise InputError(f"{where}: label values {values[:10]} are neither a binary mask nor BraTS labels "
                         "(1 necrosis, 2 edema, 3 or 4 enhancing)")
    img = sitk.GetImageFromArray(out)
    img.CopyInformation(label)
    return img, note
