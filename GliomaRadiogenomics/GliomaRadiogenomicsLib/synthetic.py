"""SYNTHETIC glioma cases and cohorts (for the demo, tests and the default model bundles).

Everything produced here is synthetic: real adult brain anatomy (the ICBM152 2009a template and its grey /
white matter probability maps, shipped inside nilearn's PyPI wheel) with a simulated glioma. Nothing here is
patient data, and nothing trained on it is clinically meaningful.

A case is simulated in three steps:
1. ``TumorSpec`` describes the lesion (centre, radius, necrosis, enhancement, edema, T2-FLAIR mismatch, texture).
2. ``simulate_truth`` renders the four contrasts on the template's 1 mm grid by mixing tissue probabilities with
   per-tissue relative intensities (T1, T1c, T2, FLAIR), and a BraTS label map (1 necrosis, 2 edema incl.
   non-enhancing infiltrative tumor, 3 enhancing), plus a synthetic skull and scalp shell.
3. ``acquire`` simulates each sequence's acquisition: a small rigid head motion between sequences, thick-slice
   blurring and an anisotropic native grid, a smooth multiplicative bias field and Rician noise, int16 storage.

The cohort generator draws IDH / epilepsy / ATRX labels first and lets them shape the phenotype in the directions
the papers report (see docs/synthetic-data.md); every effect is probabilistic so no label is separable alone.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
from scipy.special import expit
import SimpleITK as sitk
from scipy import ndimage as ndi

from .case import SEQUENCES
from .io import atomic_write_text, write_image
from .progress import Progress, null_progress

SYNTHETIC_NOTICE = ("SYNTHETIC: simulated glioma on ICBM152 template anatomy (nilearn). Not patient data; "
                    "models trained on it have no clinical meaning.")

# Relative tissue intensities (white matter of T1 = 1). Ordering follows clinical appearance at 1.5-3 T:
# T1: WM > GM > edema/tumor > necrosis > CSF; T1c: enhancing tumor brightest; T2: CSF > necrosis > edema/tumor >
# GM > WM; FLAIR: edema/tumor > GM > WM > necrosis > CSF (free water suppressed).
TISSUE_INTENSITY = {
    #            t1    t1c   t2    flair
    "wm":       (1.00, 1.00, 0.42, 0.55),
    "gm":       (0.72, 0.74, 0.62, 0.70),
    "csf":      (0.22, 0.24, 1.00, 0.10),
    "edema":    (0.64, 0.66, 0.84, 0.98),
    "tumor":    (0.56, 0.60, 0.90, 0.92),
    "necrosis": (0.34, 0.38, 0.96, 0.42),
    "enhancing": (0.62, 1.55, 0.74, 0.86),
    "skull":    (0.08, 0.08, 0.06, 0.06),
    "scalp":    (0.95, 1.00, 0.58, 0.52),
}
# Scanner-like scaling of each sequence when stored as int16.
INT_SCALE = {"t1": 900.0, "t1c": 800.0, "t2": 1100.0, "flair": 700.0}
# Native acquisition spacing (x, y, z) in mm: 3D T1 / T1c, 2D axial T2 and FLAIR with thick slices.
DEFAULT_SPACING = {"t1": (1.0, 1.0, 1.0), "t1c": (1.0, 1.0, 1.5), "t2": (0.9, 0.9, 4.0), "flair": (1.0, 1.0, 3.0)}


@dataclass
class TumorSpec:
    """One simulated lesion. Distances in mm, ``center_mm`` in template physical (LPS) coordinates."""
    center_mm: Tuple[float, float, float] = (-28.0, -30.0, 12.0)
    radius_mm: float = 22.0
    necrosis_fraction: float = 0.45      # radius fraction of the necrotic core (0 = none)
    enhancing_thickness: float = 0.22    # radius fraction of the enhancing rim (0 = no enhancement)
    enhancing_patchiness: float = 0.0    # 0 = complete rim, 1 = only scattered enhancing foci
    edema_factor: float = 1.8            # edema reaches radius * edema_factor (white matter only)
    mismatch: float = 0.0                # T2-FLAIR mismatch strength 0..1 (FLAIR-suppressed core, bright rim)
    heterogeneity: float = 0.10          # amplitude of the smooth intensity texture inside the lesion
    irregularity: float = 0.18           # shape irregularity of the boundary
    calcification: float = 0.0           # density of small T2-dark foci (oligodendroglioma-like)
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SyntheticCase:
    case_id: str
    images: Dict[str, sitk.Image]        # native acquisitions, int16
    label: sitk.Image                    # BraTS labels on the FLAIR native grid
    brain_mask: sitk.Image               # intracranial mask on the FLAIR native grid
    clinical: dict = field(default_factory=dict)
    spec: Optional[TumorSpec] = None
    downsample: int = 1

    def save(self, folder: os.PathLike) -> Dict[str, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, img in self.images.items():
            paths[name] = write_image(img, folder / f"{name}.nii.gz")
        paths["label"] = write_image(self.label, folder / "label.nii.gz")
        paths["brain_mask"] = write_image(self.brain_mask, folder / "brain_mask.nii.gz")
        meta = {"case_id": self.case_id, "synthetic": True, "notice": SYNTHETIC_NOTICE,
                "clinical": self.clinical, "downsample": self.downsample, "tumor": self.spec.to_dict() if self.spec else None,
                "labels": {"1": "necrosis", "2": "edema (incl. non-enhancing infiltrative tumor)", "3": "enhancing"}}
        atomic_write_text(folder / "case.json", json.dumps(meta, indent=2))
        paths["case.json"] = folder / "case.json"
        return paths


# ----------------------------------------------------------------------------------------------------------------
# Template anatomy
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Anatomy:
    reference: sitk.Image  # 1 mm template grid (geometry only)
    wm: np.ndarray         # probabilities, float32, (z, y, x)
    gm: np.ndarray
    csf: np.ndarray
    icv: np.ndarray        # intracranial (bool)
    skull: np.ndarray      # float 0..1
    scalp: np.ndarray
    cortex_depth: np.ndarray  # mm from the brain surface inside the ICV


def _template_dir() -> Path:
    try:
        import nilearn
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise RuntimeError("The synthetic cases need nilearn (it ships the ICBM152 template): pip install nilearn") from exc
    return Path(nilearn.__file__).parent / "datasets" / "data"


@functools.lru_cache(maxsize=2)
def load_anatomy(downsample: int = 1) -> Anatomy:
    """ICBM152 2009a tissue maps from nilearn's wheel, optionally downsampled by an integer factor (tests)."""
    d = _template_dir()
    files = {k: d / f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("gm", "wm")}
    for k, f in files.items():
        if not f.exists():
            raise RuntimeError(f"nilearn does not ship the ICBM152 {k} map expected at {f}")
    gm_img = sitk.ReadImage(str(files["gm"]), sitk.sitkFloat32)
    wm_img = sitk.ReadImage(str(files["wm"]), sitk.sitkFloat32)
    if downsample > 1:
        gm_img = sitk.BinShrink(gm_img, [downsample] * 3)
        wm_img = sitk.BinShrink(wm_img, [downsample] * 3)
    gm = sitk.GetArrayFromImage(gm_img) / 255.0
    wm = sitk.GetArrayFromImage(wm_img) / 255.0
    sp = gm_img.GetSpacing()[0]
    tissue = gm + wm
    icv = ndi.binary_fill_holes(ndi.binary_closing(tissue > 0.15, iterations=max(1, int(round(3 / sp)))))
    icv = ndi.binary_dilation(icv, iterations=max(1, int(round(2 / sp))))
    icv = ndi.binary_fill_holes(icv)
    csf = np.clip(icv.astype(np.float32) - tissue, 0, 1)
    outside = ndi.distance_transform_edt(~icv, sampling=sp)
    skull = ((outside > 0) & (outside <= 6)).astype(np.float32)
    scalp = ((outside > 6) & (outside <= 11)).astype(np.float32)
    # keep the skull/scalp shell only above the skull base (the template has no neck)
    zz = np.arange(icv.shape[0])[:, None, None]
    zmin = np.where(icv.any(axis=(1, 2)))[0].min()
    shell_ok = zz > zmin + 10 / sp
    skull *= shell_ok
    scalp *= shell_ok
    skull = ndi.gaussian_filter(skull, 0.7)
    scalp = ndi.gaussian_filter(scalp, 0.7)
    depth = ndi.distance_transform_edt(icv, sampling=sp).astype(np.float32)
    ref = sitk.Image(gm_img.GetSize(), sitk.sitkUInt8)
    ref.CopyInformation(gm_img)
    return Anatomy(ref, wm.astype(np.float32), gm.astype(np.float32), csf.astype(np.float32), icv,
                   skull.astype(np.float32), scalp.astype(np.float32), depth)


def _sig(v):
    return 1.0 / (1.0 + np.exp(np.clip(v, -60, 60)))


def _smooth_noise(shape, sigma_vox, rng) -> np.ndarray:
    n = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    s = n.std()
    return n / s if s > 0 else n


def _physical_grid(ref: sitk.Image):
    """Physical LPS coordinates (x, y, z) of every voxel, arrays in (z, y, x) order."""
    size = ref.GetSize()
    sp, org = np.array(ref.GetSpacing()), np.array(ref.GetOrigin())
    D = np.array(ref.GetDirection()).reshape(3, 3)
    k, j, i = np.meshgrid(np.arange(size[2]), np.arange(size[1]), np.arange(size[0]), indexing="ij")
    idx = np.stack([i, j, k], axis=-1).astype(np.float32) * sp.astype(np.float32)
    phys = idx @ D.T.astype(np.float32) + org.astype(np.float32)
    return phys[..., 0], phys[..., 1], phys[..., 2]


# ----------------------------------------------------------------------------------------------------------------
# Ground truth rendering
# ----------------------------------------------------------------------------------------------------------------
def simulate_truth(spec: TumorSpec, anatomy: Optional[Anatomy] = None):
    """Render the four contrasts (float, template grid) and the BraTS label map for one lesion."""
    an = anatomy or load_anatomy()
    rng = np.random.default_rng(spec.seed)
    sp = an.reference.GetSpacing()[0]
    x, y, z = _physical_grid(an.reference)
    c = np.array(spec.center_mm, dtype=np.float32)
    dist = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)
    shape = an.wm.shape
    boundary_noise = _smooth_noise(shape, 6.0 / sp, rng)
    rho = dist / spec.radius_mm + spec.irregularity * boundary_noise
    # tumor confined to the intracranial space; soft edge of ~1 mm
    edge = 1.0 / spec.radius_mm
    p_lesion = _sig((rho - 1.0) / edge) * an.icv
    nec_r = spec.necrosis_fraction
    rim_r = nec_r + spec.enhancing_thickness
    p_nec = _sig((rho - nec_r) / edge) * (nec_r > 0) * p_lesion
    p_rim = np.clip(_sig((rho - rim_r) / edge) * p_lesion - p_nec, 0, 1)
    if spec.enhancing_thickness <= 0:
        p_rim[:] = 0
    elif spec.enhancing_patchiness > 0:
        patch = _smooth_noise(shape, 3.0 / sp, rng)
        keep = _sig(-(patch - (2.4 * spec.enhancing_patchiness - 0.6)) * 4)
        p_rim *= keep
    p_tumor = np.clip(p_lesion - p_nec - p_rim, 0, 1)
    # vasogenic edema: white matter around the lesion
    edema_noise = _smooth_noise(shape, 8.0 / sp, rng)
    rho_e = dist / (spec.radius_mm * spec.edema_factor) + 0.22 * edema_noise
    p_edema = _sig((rho_e - 1.0) / (2.0 / spec.radius_mm)) * np.clip(an.wm * 1.6, 0, 1)
    p_edema = np.clip(p_edema * an.icv - p_lesion, 0, 1) if spec.edema_factor > 1 else np.zeros_like(p_lesion)

    # normal tissues are displaced by the lesion
    normal = np.clip(1.0 - p_lesion - p_edema, 0, 1)
    parts = {"wm": an.wm * normal, "gm": an.gm * normal, "csf": an.csf * normal, "edema": p_edema,
             "tumor": p_tumor, "necrosis": p_nec, "enhancing": p_rim, "skull": an.skull, "scalp": an.scalp}
    texture = _smooth_noise(shape, 1.5 / sp, rng)
    coarse = _smooth_noise(shape, 4.0 / sp, rng)
    calc = None
    if spec.calcification > 0:
        calc = (_smooth_noise(shape, 0.8 / sp, rng) > 3.0 - 1.2 * spec.calcification) & (p_lesion > 0.5)
    images = {}
    for si, seq in enumerate(SEQUENCES):
        img = np.zeros(shape, np.float32)
        for tissue, p in parts.items():
            img += p * TISSUE_INTENSITY[tissue][si]
        if spec.mismatch > 0 and seq == "flair":
            # T2-FLAIR mismatch: FLAIR suppression of the non-enhancing tumor core with a hyperintense rim
            core = _sig((rho - 0.8) / edge)
            img -= p_tumor * core * spec.mismatch * 0.45
        lesion_w = p_lesion + 0.5 * p_edema
        img *= 1.0 + spec.heterogeneity * lesion_w * (0.6 * coarse + 0.4 * texture)
        img *= 1.0 + 0.03 * (an.wm + an.gm) * texture  # mild normal-tissue texture
        if calc is not None and seq in ("t2", "flair", "t1c"):
            img[calc] *= 0.45
        images[seq] = np.clip(img, 0, None)
    # BraTS labels (1 necrosis, 2 edema + non-enhancing infiltrative tumor, 3 enhancing)
    label = np.zeros(shape, np.uint8)
    label[(p_edema + p_tumor) > 0.5] = 2
    label[(p_lesion > 0.5) & (p_tumor >= np.maximum(p_nec, p_rim)) & (label == 0)] = 2
    label[(p_rim > 0.5) | ((p_rim > p_nec) & (p_rim > p_tumor) & (p_lesion > 0.5))] = 3
    label[(p_nec > 0.5) & (label != 3)] = 1
    label[~an.icv] = 0
    return images, label


# ----------------------------------------------------------------------------------------------------------------
# Acquisition
# ----------------------------------------------------------------------------------------------------------------
def _native_grid(ref: sitk.Image, spacing, rng, crop_box=None) -> sitk.Image:
    """An axial native grid covering the template field of view, with the given spacing."""
    size_mm = np.array(ref.GetSize()) * np.array(ref.GetSpacing())
    org = np.array(ref.GetOrigin(), dtype=float)
    D = np.array(ref.GetDirection()).reshape(3, 3)
    if crop_box is not None:
        lo, hi = crop_box  # physical extent along the template axes, in index-mm
        org = org + D @ lo
        size_mm = hi - lo
    size = [max(2, int(math.ceil(s / sp))) for s, sp in zip(size_mm, spacing)]
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing(tuple(float(s) for s in spacing))
    grid.SetOrigin(tuple(org))
    grid.SetDirection(ref.GetDirection())
    return grid


def _rigid(rng, max_rot_deg: float, max_shift_mm: float, center) -> sitk.Euler3DTransform:
    t = sitk.Euler3DTransform()
    t.SetCenter(tuple(float(c) for c in center))
    ang = np.deg2rad(rng.uniform(-max_rot_deg, max_rot_deg, 3))
    t.SetRotation(*[float(a) for a in ang])
    t.SetTranslation(tuple(float(v) for v in rng.uniform(-max_shift_mm, max_shift_mm, 3)))
    return t


def _bias_field(shape, rng, amplitude: float) -> np.ndarray:
    zz, yy, xx = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    Z, Y, X = np.meshgrid(zz, yy, xx, indexing="ij")
    coef = rng.uniform(-1, 1, 9)
    poly = (coef[0] * X + coef[1] * Y + coef[2] * Z + coef[3] * X * Y + coef[4] * Y * Z + coef[5] * X * Z
            + coef[6] * X ** 2 + coef[7] * Y ** 2 + coef[8] * Z ** 2)
    poly /= max(1e-6, np.abs(poly).max())
    return np.exp(amplitude * poly).astype(np.float32)


def acquire(truth: Dict[str, np.ndarray], label: np.ndarray, anatomy: Anatomy, rng: np.random.Generator,
            spacing: Optional[Dict[str, Tuple[float, float, float]]] = None, motion: bool = True,
            noise: float = 0.03, bias: float = 0.15):
    """Simulate the native acquisition of each sequence: motion, slice blur, native grid, bias, Rician noise."""
    spacing = spacing or DEFAULT_SPACING
    ref = sitk.Image(anatomy.reference)
    icv_idx = np.argwhere(anatomy.icv)
    lo_idx = np.maximum(icv_idx.min(0)[::-1] - 14, 0)  # x, y, z
    hi_idx = np.minimum(icv_idx.max(0)[::-1] + 14, np.array(ref.GetSize()) - 1)
    sp_ref = np.array(ref.GetSpacing())
    crop = (lo_idx * sp_ref, hi_idx * sp_ref)
    center = ref.TransformContinuousIndexToPhysicalPoint([float(v) for v in (lo_idx + hi_idx) / 2])
    out, transforms = {}, {}
    for seq in SEQUENCES:
        img = sitk.GetImageFromArray(truth[seq].astype(np.float32))
        img.CopyInformation(ref)
        sp = spacing[seq]
        # thick-slice / partial-volume blur along each axis (FWHM = spacing)
        sig = [max(0.0, (s ** 2 - sp_ref[i] ** 2)) ** 0.5 / 2.355 for i, s in enumerate(sp)]
        if max(sig) > 0.05:
            img = sitk.SmoothingRecursiveGaussian(img, [max(s, 1e-3) for s in sig])
        grid = _native_grid(ref, sp, rng, crop)
        tr = _rigid(rng, 2.0, 2.5, center) if (motion and seq != "flair") else sitk.Euler3DTransform()
        transforms[seq] = tr
        nat = sitk.Resample(img, grid, tr, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        a = sitk.GetArrayFromImage(nat)
        a *= _bias_field(a.shape, rng, bias)
        sigma = noise * 1.0
        a = np.sqrt((a + rng.normal(0, sigma, a.shape)) ** 2 + rng.normal(0, sigma, a.shape) ** 2)
        a = np.clip(a * INT_SCALE[seq], 0, 32000).astype(np.int16)
        o = sitk.GetImageFromArray(a)
        o.CopyInformation(nat)
        out[seq] = o
    flair_grid = out["flair"]
    lab = sitk.GetImageFromArray(label)
    lab.CopyInformation(ref)
    lab_nat = sitk.Resample(lab, flair_grid, transforms["flair"], sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    icv = sitk.GetImageFromArray(anatomy.icv.astype(np.uint8))
    icv.CopyInformation(ref)
    icv_nat = sitk.Resample(icv, flair_grid, transforms["flair"], sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return out, lab_nat, icv_nat


# ----------------------------------------------------------------------------------------------------------------
# Demo case and cohort
# ----------------------------------------------------------------------------------------------------------------
DEMO_SPEC = TumorSpec(center_mm=(-30.0, -28.0, 14.0), radius_mm=22.0, necrosis_fraction=0.55,
                      enhancing_thickness=0.25, enhancing_patchiness=0.15, edema_factor=1.9, mismatch=0.0,
                      heterogeneity=0.12, irregularity=0.18, seed=20251)
DEMO_CLINICAL = {"age": 58, "sex": "M", "who_grade": None}


def make_case(spec: TumorSpec, case_id: str, clinical: Optional[dict] = None, downsample: int = 1,
              spacing=None, progress: Progress = null_progress) -> SyntheticCase:
    anatomy = load_anatomy(downsample)
    progress.update(0.1, "rendering synthetic contrasts")
    truth, label = simulate_truth(spec, anatomy)
    progress.update(0.6, "simulating acquisition (motion, slice blur, bias, noise)")
    if spacing is None and downsample > 1:
        spacing = {k: tuple(max(s, downsample * 1.0) for s in v) for k, v in DEFAULT_SPACING.items()}
    rng = np.random.default_rng(spec.seed + 7)
    images, lab, icv = acquire(truth, label, anatomy, rng, spacing)
    progress.update(1.0, "synthetic case ready")
    return SyntheticCase(case_id, images, lab, icv, dict(clinical or {}), spec, downsample)


def make_demo_case(downsample: int = 1, progress: Progress = null_progress) -> SyntheticCase:
    """The built-in demo case: a deterministic SYNTHETIC right frontal glioma with necrosis, enhancing rim and edema."""
    return make_case(DEMO_SPEC, "synthetic-demo-001", DEMO_CLINICAL, downsample=downsample, progress=progress)


# Approximate lobe regions in MNI space (mm, RAS sign convention), used only to place synthetic tumors.
LOBES = {
    "frontal": lambda x, y, z: (y > 5) & (z > -15),
    "temporal": lambda x, y, z: (np.abs(x) > 32) & (y < 10) & (y > -55) & (z < 8) & (z > -40),
    "parietal": lambda x, y, z: (y < -15) & (y > -70) & (z > 22),
    "occipital": lambda x, y, z: (y < -70),
    "insula": lambda x, y, z: (np.abs(x) > 28) & (np.abs(x) < 42) & (y > -20) & (y < 18) & (z > -8) & (z < 18),
    "deep": lambda x, y, z: (np.abs(x) < 24) & (y > -35) & (y < 10) & (z > -5) & (z < 20),
}


def sample_center(anatomy: Anatomy, lobe: str, cortical: bool, radius_mm: float, rng) -> Tuple[float, float, float]:
    """A white-matter tumor centre in ``lobe``; ``cortical`` puts it close enough to the surface to reach cortex."""
    x, y, z = _physical_grid(anatomy.reference)
    ras_x, ras_y = -x, -y  # LPS -> RAS
    region = LOBES[lobe](ras_x, ras_y, z) & (anatomy.wm > 0.5)
    depth = anatomy.cortex_depth
    if cortical:
        region &= (depth > 0.5 * radius_mm) & (depth < radius_mm + 4)
    else:
        region &= depth > radius_mm + 6
    cand = np.argwhere(region)
    if len(cand) == 0:
        cand = np.argwhere(LOBES[lobe](ras_x, ras_y, z) & (anatomy.wm > 0.5) & (depth > 0.5 * radius_mm))
    if len(cand) == 0:
        cand = np.argwhere((anatomy.wm > 0.5) & (depth > 0.5 * radius_mm))
    k, j, i = cand[rng.integers(len(cand))]
    return tuple(float(v) for v in anatomy.reference.TransformIndexToPhysicalPoint((int(i), int(j), int(k))))


def _sigmoid(v):
    return float(expit(v))


def draw_cohort_subject(index: int, rng: np.random.Generator, anatomy: Anatomy) -> Tuple[dict, TumorSpec]:
    """Labels first, then a phenotype shaped by them (directions from the papers, all effects probabilistic).

    IDH-mutant: younger, frontal, little enhancement or necrosis, T2-FLAIR mismatch more often (Wang, Choi, Gutman).
    Epilepsy: more often IDH-mutant, cortical, temporal or frontal, smaller (Wang; TCGA seizure history).
    ATRX (documented choice): within IDH-mutant, ATRX-mutant ~ astrocytoma (mismatch sign, sharper margins,
    younger), ATRX-wildtype ~ oligodendroglioma (frontal, cortical, calcification, heterogeneous); rare in IDH-wt.
    """
    idh = int(rng.random() < 0.5)
    epilepsy = int(rng.random() < (0.68 if idh else 0.42))
    atrx = int(rng.random() < (0.55 if idh else 0.08))
    age = rng.normal(42 if idh else 56, 12 if idh else 13) - (4 if epilepsy else 0) - (4 if (idh and atrx) else 0)
    age = float(np.clip(round(age), 18, 86))
    sex = "M" if rng.random() < 0.57 else "F"
    if idh:
        grade = int(rng.choice([2, 3, 4], p=[0.55, 0.33, 0.12]))
    else:
        grade = int(rng.choice([2, 3, 4], p=[0.08, 0.14, 0.78]))
    # location
    w = {"frontal": 1.0, "temporal": 1.0, "parietal": 0.8, "occipital": 0.3, "insula": 0.5, "deep": 0.6}
    if idh:
        w["frontal"] += 1.2
        w["insula"] += 0.4
    if epilepsy:
        w["temporal"] += 1.0
        w["frontal"] += 0.6
        w["deep"] *= 0.3
        w["occipital"] *= 0.6
    if idh and not atrx:
        w["frontal"] += 0.8
    lobes = list(w)
    p = np.array([w[k] for k in lobes])
    lobe = lobes[int(rng.choice(len(lobes), p=p / p.sum()))]
    cortical = bool(rng.random() < _sigmoid(-0.4 + 1.3 * epilepsy + 0.5 * idh + (0.6 if (idh and not atrx) else 0)))
    radius = float(np.clip(rng.normal(21 - 3.0 * epilepsy + (1.5 if not idh else 0), 4.0), 10, 32))
    enhancing = rng.random() < (0.28 if idh else 0.85) + (0.1 if grade == 4 else 0)
    necrotic = enhancing and rng.random() < (0.3 if idh else 0.8)
    spec = TumorSpec(
        center_mm=sample_center(anatomy, lobe, cortical, radius, rng),
        radius_mm=radius,
        necrosis_fraction=float(rng.uniform(0.25, 0.55)) if necrotic else 0.0,
        enhancing_thickness=float(rng.uniform(0.12, 0.3)) if enhancing else 0.0,
        enhancing_patchiness=float(rng.uniform(0.3, 0.9)) if (enhancing and not necrotic) else float(rng.uniform(0, 0.3)),
        edema_factor=float(rng.uniform(1.2, 1.7) if idh else rng.uniform(1.5, 2.2)),
        mismatch=float(rng.uniform(0.5, 1.0)) if (idh and rng.random() < (0.7 if atrx else 0.12)) else
        (float(rng.uniform(0.2, 0.6)) if rng.random() < 0.05 else 0.0),
        heterogeneity=float(rng.uniform(0.04, 0.12) if idh else rng.uniform(0.08, 0.2)) + (0.05 if (idh and not atrx) else 0),
        irregularity=float(rng.uniform(0.08, 0.2) if (idh and atrx) else rng.uniform(0.12, 0.3)),
        calcification=float(rng.uniform(0.3, 1.0)) if (idh and not atrx and rng.random() < 0.5) else 0.0,
        seed=int(rng.integers(0, 2 ** 31 - 1)),
    )
    subject = {"case_id": f"synth-{index:04d}", "age": age, "sex": sex, "who_grade": grade, "IDH": idh,
               "epilepsy": epilepsy, "ATRX": atrx, "lobe": lobe, "cortical": int(cortical), "synthetic": True}
    return subject, spec


def draw_cohort(n: int, seed: int = 2025, downsample: int = 1):
    """Labels, clinical data and tumor specs of ``n`` SYNTHETIC subjects (no rendering). Deterministic."""
    anatomy = load_anatomy(downsample)
    rng = np.random.default_rng(seed)
    return [draw_cohort_subject(i, rng, anatomy) for i in range(n)]


def render_subject(subject: dict, spec: TumorSpec, folder: os.PathLike, downsample: int = 1) -> Path:
    folder = Path(folder)
    if not (folder / "case.json").exists():
        case = make_case(spec, subject["case_id"], {k: subject[k] for k in ("age", "sex", "who_grade")},
                         downsample=downsample)
        case.save(folder)
    return folder


def cohort_table(subjects):
    import pandas as pd
    return pd.DataFrame([dict(subj, **{f"tumor_{k}": v for k, v in spec.to_dict().items() if k != "center_mm"})
                         for subj, spec in subjects])


def generate_cohort(n: int, out_dir: os.PathLike, seed: int = 2025, downsample: int = 1,
                    progress: Progress = null_progress, render: bool = True):
    """Write ``n`` SYNTHETIC cases (case folders + cohort.csv). Deterministic for a given seed.

    With ``render=False`` only cohort.csv is written (cases can be rendered later, e.g. in parallel workers,
    with ``render_subject``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    subjects = draw_cohort(n, seed, downsample)
    if render:
        for i, (subject, spec) in enumerate(subjects):
            render_subject(subject, spec, out_dir / subject["case_id"], downsample)
            progress.update((i + 1) / n, f"synthetic case {i + 1}/{n}")
    table = cohort_table(subjects)
    atomic_write_text(out_dir / "cohort.csv", table.to_csv(index=False))
    atomic_write_text(out_dir / "README.txt", SYNTHETIC_NOTICE + "\n")
    return table
