"""Preprocessing: rigid co-registration of every sequence to a reference sequence, resampling to a working grid.

The working grid has the reference sequence's orientation and field of view with isotropic spacing (1 mm by
default), so that thick-slice clinical inputs (e.g. TCGA's 5.5 mm slices) are analysed on the same grid as 3D
acquisitions. Results go back to the reference sequence's native grid at the end (``to_native``).

A DSC-perfusion CBV map (``cbv``, optional) is brought onto the working grid like a sequence, from its own source
geometry: when it shares its voxel grid with a structural sequence of the case (a map exported on that series' grid,
same session), that sequence's transform is used (a low-resolution, low-contrast map registers less reliably than
the anatomy it was resampled to); otherwise it is registered rigidly (6 DOF, Mattes mutual information, the
same-session scanner header as the starting point). It is kept out of the brain mask, the segmentation and N4 (a
quantitative map); rCBV normalisation comes later, once the tumour is known (perfusion.py).
"""
from __future__ import annotations

import dataclasses
import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import SimpleITK as sitk

from .case import Case, SEQUENCES
from .sequences import IMAGE_KEYS, PERFUSION
from .progress import Progress, null_progress


@dataclass
class PreprocessOptions:
    reference: str = "flair"        # Wang 2025 registers T1, T2 and T1c to T2-FLAIR
    spacing: float = 1.0            # working grid spacing in mm (isotropic)
    register: bool = True
    orientation: Optional[str] = None  # e.g. "LPS" or "RAS": reorient the working grid (sitk.DICOMOrient codes)
    n4: bool = False                # N4 bias-field correction of the feature images (on a shrunken copy)
    n4_segmentation: bool = False   # also segment the N4-corrected images (default: segmentation sees them without)
    n4_shrink: int = 4
    n4_iterations: int = 30
    atlas: Optional[str] = None     # "mni152" | "sri24": affine registration to the atlas (inverse kept)
    registration_samples: int = 60000
    brain_mask: str = "auto"        # auto | nonzero | deepbet | threshold
    device: str = "auto"            # auto | cpu | cuda (networks run in a subprocess)
    seed: int = 1


@dataclass
class PreprocessedCase:
    case_id: str
    images: Dict[str, sitk.Image]                 # float32, working grid
    reference_native: sitk.Image                  # the reference sequence as acquired (output grid)
    reference: str
    transforms: Dict[str, sitk.Transform]         # moving -> reference (physical), from registration
    registration_metric: Dict[str, float] = field(default_factory=dict)
    brain_mask: Optional[sitk.Image] = None       # uint8, working grid
    brain_mask_method: str = ""
    atlas_registration: Optional[object] = None   # atlas.AtlasRegistration when PreprocessOptions.atlas is set
    brain_mask_warnings: List[str] = field(default_factory=list)
    uncorrected: Optional[Dict[str, sitk.Image]] = None  # the images before N4 (segmentation input unless asked)
    reused: bool = False                          # transforms and brain mask kept from a previous run
    steps: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    @property
    def grid(self) -> sitk.Image:
        return self.images[self.reference]

    def t1_weighted(self) -> str:
        """The sequence used for brain extraction and atlas registration: T1, else T1c, else the reference."""
        return next(s for s in ("t1", "t1c", self.reference) if s in self.images)

    def array(self, seq: str) -> np.ndarray:
        return sitk.GetArrayFromImage(self.images[seq])

    def for_segmentation(self, n4_segmentation: bool = False) -> "PreprocessedCase":
        """The case the segmentation backend sees: without N4 (``uncorrected``) unless ``n4_segmentation``."""
        if self.uncorrected is None or n4_segmentation:
            return self
        return dataclasses.replace(self, images=dict(self.uncorrected))

    def to_native(self, label: sitk.Image) -> sitk.Image:
        """Bring a working-grid label map back onto the reference sequence's native grid (nearest neighbour)."""
        return sitk.Resample(label, self.reference_native, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                             label.GetPixelID())


def working_grid(reference: sitk.Image, spacing: float) -> sitk.Image:
    """Isotropic grid with the reference's origin, direction and physical extent."""
    in_sp = np.array(reference.GetSpacing())
    in_size = np.array(reference.GetSize())
    extent = in_sp * in_size
    size = [max(1, int(math.ceil(e / spacing))) for e in extent]
    # keep the first voxel's outer corner aligned with the reference's outer corner
    D = np.array(reference.GetDirection()).reshape(3, 3)
    corner = np.array(reference.GetOrigin()) - D @ (in_sp / 2)
    origin = corner + D @ (np.full(3, spacing) / 2)
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing([float(spacing)] * 3)
    grid.SetDirection(reference.GetDirection())
    grid.SetOrigin(tuple(float(v) for v in origin))
    return grid


def _mi(fixed: sitk.Image, moving: sitk.Image, tx: sitk.Transform) -> float:
    """Mattes MI (lower is better) on all voxels of half-resolution images, for comparing candidate transforms."""
    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    r.SetMetricSamplingStrategy(r.NONE)
    r.SetInterpolator(sitk.sitkLinear)
    r.SetInitialTransform(tx)
    with one_itk_thread():  # reproducible to the last bit (register_rigid)
        return float(r.MetricEvaluate(fixed, moving))


_THREADS_LOCK = threading.Lock()


@contextmanager
def one_itk_thread():
    """SimpleITK's global default number of threads set to 1 for the block (restored after; one block at a time)."""
    with _THREADS_LOCK:
        before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        try:
            yield
        finally:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def n4_correct(img: sitk.Image, mask: Optional[sitk.Image] = None, shrink: int = 4, iterations: int = 30) -> sitk.Image:
    """N4 bias-field correction estimated on a shrunken image and applied at full resolution."""
    img = sitk.Cast(img, sitk.sitkFloat32)
    if mask is None:
        mask = sitk.OtsuThreshold(img, 0, 1, 200)
    small = sitk.Shrink(img, [shrink] * img.GetDimension())
    small_mask = sitk.Shrink(mask, [shrink] * img.GetDimension())
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([iterations] * 4)
    n4.Execute(small, small_mask)
    log_field = n4.GetLogBiasFieldAsImage(img)
    return sitk.Cast(img / sitk.Exp(log_field), sitk.sitkFloat32)


def register_rigid(fixed: sitk.Image, moving: sitk.Image, samples: int = 60000, seed: int = 1,
                   initial: str = "geometry"):
    """Rigid (6 DOF) registration by Mattes mutual information, multi-resolution.

    ``initial``: "geometry" (the two fields of view centred on each other) or "header" (the scanner coordinates as
    they are: a same-session map whose field of view need not be centred on the reference's, e.g. a DSC slab).

    Returns (transform fixed->moving physical, metric). The result is checked against the scanner-header
    alignment (identity): if registration did not improve mutual information, the header alignment is kept
    (already co-registered inputs such as BraTS must not be moved by optimizer noise).
    """
    fixed_f = sitk.Cast(fixed, sitk.sitkFloat32)
    moving_f = sitk.Cast(moving, sitk.sitkFloat32)
    if initial == "header":
        init = sitk.Euler3DTransform()
        init.SetCenter(moving_f.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in moving_f.GetSize()]))
    else:
        init = sitk.CenteredTransformInitializer(fixed_f, moving_f, sitk.Euler3DTransform(),
                                                 sitk.CenteredTransformInitializerFilter.GEOMETRY)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    # about ``samples`` random voxels per level, whatever the image size (the cost is per sample)
    n_vox = float(np.prod(fixed_f.GetSize()))
    reg.SetMetricSamplingPercentagePerLevel(
        [min(1.0, samples * (f ** 3) / n_vox) for f in (4, 2, 1)], seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3, numberOfIterations=80,
                                                 relaxationFactor=0.5, gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(init, inPlace=False)
    # one thread: the metric's per-thread partial sums are added in a scheduling-dependent order, so with several
    # threads two runs on the same images differ at 1e-12 in the transform and at 1e-6 in a probability (a fresh
    # CLI run and the web app's Segment then disagreed); one thread gives the same transform every time.
    # ImageRegistrationMethod.SetNumberOfThreads does not reach the metric's threader: the global default does
    with one_itk_thread():
        tx = reg.Execute(fixed_f, moving_f)
    fixed_half = sitk.BinShrink(fixed_f, [2, 2, 1 if fixed_f.GetSpacing()[2] > 2.5 else 2])
    found = _mi(fixed_half, moving_f, tx)
    header = _mi(fixed_half, moving_f, sitk.Euler3DTransform())
    if header <= found:
        return sitk.Euler3DTransform(), header
    return tx, found


def shared_grid(case: Case, seq: str) -> Optional[str]:
    """The structural sequence whose voxel grid ``seq`` (a perfusion map) shares, if any (same session)."""
    from .checks import same_grid
    return next((s for s in SEQUENCES if s in case.images and same_grid(case.images[s], case.images[seq])), None)


def preprocess(case: Case, options: Optional[PreprocessOptions] = None,
               progress: Progress = null_progress, reuse=None) -> PreprocessedCase:
    """Co-register all sequences to the reference, resample to the working grid, compute the brain mask.

    ``reuse`` (kept.ReusedPreprocessing, from a previous run on the same inputs with the same options): its rigid
    transforms and brain mask are used instead of registering and extracting the brain again (stated in steps)."""
    from .brainmask import compute_brain_mask
    from .checks import (check_brain_mask, check_coverage, check_sequence_images, check_working_grid, coverage,
                         head_mask)

    opt = options or PreprocessOptions()
    check_sequence_images(case.images, case.paths)  # before any work (load_case did it for files; Slicer / web here)
    fallback_note = None
    if opt.reference not in case.images:  # e.g. a T2-only case with the default FLAIR reference
        if not case.images:
            raise ValueError(f"case {case.case_id} has no images")
        used = next(s for s in ("flair", "t2", "t1c", "t1") if s in case.images)
        fallback_note = (f"reference sequence {opt.reference} is absent: {used} defines the working and output "
                         "grid instead")
        opt = dataclasses.replace(opt, reference=used)
    ref_native = case.images[opt.reference]
    grid_source = ref_native
    if opt.orientation:
        grid_source = sitk.DICOMOrient(ref_native, opt.orientation)
    check_working_grid(grid_source, opt.spacing, len(case.images))
    grid = working_grid(grid_source, opt.spacing)
    pre = PreprocessedCase(case.case_id, {}, ref_native, opt.reference, {})
    if fallback_note:
        pre.steps.append(fallback_note)
        pre.warnings.append(fallback_note)
    pre.steps.append(f"working grid: {opt.reference} field of view at {opt.spacing:g} mm isotropic "
                     f"({'x'.join(map(str, grid.GetSize()))})")
    others = [s for s in IMAGE_KEYS if s in case.images and s != opt.reference]  # CBV last
    n = len(others) + 2
    if reuse is not None and (reuse.brain_mask.GetSize() != grid.GetSize() or set(reuse.transforms) != set(case.images)):
        pre.steps.append("kept preprocessing not used: its brain mask or transforms do not fit this working grid")
        reuse = None
    if reuse is not None:
        pre.reused = True
        pre.steps.append("preprocessing reused: the rigid transforms and the brain mask kept with the segmentation "
                         "(same input images by SHA-256, same options): no registration, no brain extraction")
    perfusion: Dict[str, sitk.Image] = {}   # added to pre.images after the brain mask and N4
    for i, seq in enumerate([opt.reference] + others):
        img = case.images[seq]
        if reuse is not None:
            tx = reuse.transforms[seq]
            if seq in reuse.registration_metric:
                pre.registration_metric[seq] = float(reuse.registration_metric[seq])
                pre.steps.append(f"{seq}: rigid registration to {opt.reference} (kept), Mattes MI "
                                 f"{pre.registration_metric[seq]:.3f}")
            elif seq != opt.reference:
                pre.steps.append(f"{seq}: no registration (kept)")
        elif seq == opt.reference or not opt.register:
            tx = sitk.Transform()
            if seq != opt.reference:
                pre.steps.append(f"{seq}: no registration (physical headers trusted)")
        elif seq in PERFUSION and shared_grid(case, seq):
            src = shared_grid(case, seq)
            tx = pre.transforms[src]
            pre.steps.append(f"{seq}: shares the {src} voxel grid (same session): the {src} transform to "
                             f"{opt.reference} is used, no registration of its own")
        else:
            progress.update(i / n * (1.0 - (0.15 if opt.n4 else 0.0) - (0.05 if opt.atlas else 0.0)),
                            f"registering {seq} to {opt.reference} (rigid, mutual information)")
            try:
                tx, metric = register_rigid(ref_native, img, opt.registration_samples, opt.seed,
                                            "header" if seq in PERFUSION else "geometry")
            except RuntimeError as exc:  # e.g. too few voxels of the moving image inside the reference
                from .case import SEQUENCE_NAMES as N
                from .io import InputError
                why = next((ln.strip() for ln in str(exc).splitlines() if "ERROR" in ln.upper()), str(exc)[:160])
                raise InputError(f"{N[seq]}: {case.paths.get(seq, seq)}: rigid registration to {N[opt.reference]} failed "
                                 f"({why[:200]}): the two images do not show the same head (or --no-register if "
                                 "their headers are right)") from None
            pre.registration_metric[seq] = metric
            pre.steps.append(f"{seq}: rigid registration to {opt.reference}, Mattes MI {metric:.3f}")
        pre.transforms[seq] = tx
        res = sitk.Resample(sitk.Cast(img, sitk.sitkFloat32), grid, tx, sitk.sitkLinear,
                            0.0, sitk.sitkFloat32)
        arr = sitk.GetArrayViewFromImage(res)
        if float(arr.min()) < 0:
            res = sitk.Maximum(res, 0.0)
        if seq in PERFUSION:  # a DSC slab may cover part of the head: checked on the tumour and WM (perfusion.py)
            perfusion[seq] = res
            frac = coverage(img, grid, tx, head)
            if frac < 0.5:
                pre.warnings.append(f"{seq}: the map covers {100 * frac:.0f} % of the {opt.reference} head")
            continue
        pre.images[seq] = res
        if seq == opt.reference:
            head = head_mask(res)
        else:  # a sequence that covers little of the reference's head after registration: refused
            check_coverage(seq, opt.reference, case.paths.get(seq) or f"the {seq} image",
                           coverage(img, grid, tx, head), opt.register)
    if opt.orientation:
        pre.steps.append(f"working grid reoriented to {opt.orientation}")
    # progress never goes back: the brain mask gets the span up to the share kept for N4 / the atlas after it
    n4_share, atlas_share = (0.15 if opt.n4 else 0.0), (0.05 if opt.atlas else 0.0)
    mask_start = (n - 1) / n * (1.0 - n4_share - atlas_share)
    mask_end = 1.0 - n4_share - atlas_share
    progress.update(mask_start, "brain mask")
    if reuse is not None:
        mask = sitk.Cast(reuse.brain_mask, sitk.sitkUInt8)
        mask.CopyInformation(grid)
        method, warns = reuse.brain_mask_method, list(reuse.brain_mask_warnings)
    else:
        mask, method, warns = compute_brain_mask(pre, opt.brain_mask, opt.device, progress.sub(mask_start, mask_end))
    progress.update(mask_end, f"brain mask done ({method})")
    pre.brain_mask = mask
    pre.brain_mask_method = method
    pre.brain_mask_warnings = list(warns)
    check_brain_mask(float(sitk.GetArrayViewFromImage(mask).sum()) * opt.spacing ** 3 / 1000.0, method, opt.reference,
                     case.paths.get(opt.reference) or f"the {opt.reference} image")
    if opt.n4:
        pre.uncorrected = None if opt.n4_segmentation else dict(pre.images)
        for i, seq in enumerate(list(pre.images)):
            progress.update(mask_end + n4_share * i / len(pre.images), f"N4 bias correction: {seq}")
            pre.images[seq] = n4_correct(pre.images[seq], mask, opt.n4_shrink, opt.n4_iterations)
        pre.steps.append(f"N4 bias-field correction (shrink {opt.n4_shrink}, {opt.n4_iterations} iterations/level, "
                         "inside the brain mask) of the feature images; " + (
                             "the segmentation sees the corrected images too (n4_segmentation)" if opt.n4_segmentation
                             else "the segmentation sees the images without it"))
    pre.images.update(perfusion)
    pre.warnings.extend(warns)
    vol = float(sitk.GetArrayViewFromImage(mask).sum()) * opt.spacing ** 3 / 1000.0
    pre.steps.append(f"brain mask: {method} ({vol:.0f} mL)")
    if vol < 600 or vol > 2300:
        pre.warnings.append(f"brain mask volume {vol:.0f} mL is outside the usual adult range (600-2300 mL); "
                            "check the brain mask")
    if opt.atlas:
        from .atlas import register_case
        progress.update(1.0 - atlas_share, f"affine registration to the {opt.atlas} atlas")
        pre.atlas_registration = register_case(pre, opt.atlas)
        pre.steps.append(f"affine registration to the {opt.atlas} atlas (Mattes MI "
                         f"{pre.atlas_registration.metric:.3f}); inverse transform kept for native-space results")
    progress.update(1.0, "preprocessing done")
    return pre
