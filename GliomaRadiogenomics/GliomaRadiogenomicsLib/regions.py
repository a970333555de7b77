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
