"""What a run keeps with its segmentation, so that the same segmentation gives the same answer everywhere.

A segmentation is drawn (or predicted) on the working grid (1 mm by default) and shown on the reference sequence's
native grid (e.g. 5.5 mm slices). Going native -> working grid again is not the inverse of working -> native: fed
back, the native file would be re-interpolated and nearly every feature would move. So every run keeps, beside the
native ``segmentation.nii.gz`` (``<name>`` below is the segmentation file's name without its suffix):

* ``<name>.work.nii.gz``: the labels on the working grid, exactly as the features saw them;
* ``<name>.brain_mask.work.nii.gz``: the brain mask on the working grid;
* ``<name>.preprocessing.json``: the per-sequence rigid transforms (parameters as JSON numbers: exact), a SHA-256
  of each input image (voxels and geometry), the preprocessing options they depend on and the working grid.

``label_on_working_grid`` turns a given segmentation into working-grid labels: the kept labels when the native
segmentation is the kept one unchanged; when it was edited on the native grid, the kept labels with only the
working-grid voxels under the changed native voxels replaced; anything else is resampled once (nearest neighbour),
with the grid stated. ``Kept.reusable_preprocessing`` gives the transforms and brain mask to ``preprocess`` when the
inputs and the options are the same (no registration, no brain extraction: the same images, faster).
The Slicer / web logic keeps the same three things with the segmentation node (GliomaMRML.logic).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

FORMAT = "glioma-radiogenomics kept preprocessing 1"
#: the preprocessing options the transforms and the brain mask depend on (not N4, the atlas, the device)
REUSE_OPTIONS = ("reference", "spacing", "register", "orientation", "registration_samples", "brain_mask", "seed")
WORK_SUFFIX = ".work.nii.gz"
MASK_SUFFIX = ".brain_mask.work.nii.gz"
PRE_SUFFIX = ".preprocessing.json"


def sidecar_names(name: str = "segmentation") -> Dict[str, str]:
    """File names kept beside ``<name>.nii.gz``."""
    return {"work": name + WORK_SUFFIX, "brain_mask": name + MASK_SUFFIX, "preprocessing": name + PRE_SUFFIX}


def image_digest(img: sitk.Image) -> str:
    """SHA-256 of an input image's voxels, voxel type and geometry (rounded to 1e-4 mm: a NIfTI / NRRD / MRML round
    trip of the same image gives the same digest)."""
    h = hashlib.sha256()
    geometry = (img.GetSize(), img.GetPixelIDTypeAsString()) + tuple(
        tuple(round(float(v), 4) + 0.0 for v in t) for t in (img.GetSpacing(), img.GetOrigin(), img.GetDirection()))
    h.update(repr(geometry).encode())
    h.update(np.ascontiguousarray(sitk.GetArrayViewFromImage(img)).tobytes())
    return h.hexdigest()


def grid_description(img: sitk.Image) -> str:
    return ("{} voxels of {} mm".format("x".join(map(str, img.GetSize())),
                                        " x ".join(f"{s:.4g}" for s in img.GetSpacing())))


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    """Exactly the kept grid (tighter than checks.same_grid's user-input tolerance)."""
    from .checks import same_grid as within
    return within(a, b, spacing_tol=1e-4, origin_tol=1e-4, direction_tol=1e-6)


# ---- transforms as JSON (exact: Python floats round-trip through JSON) ------------------------------------------
def transform_to_json(tx: sitk.Transform) -> List[dict]:
    """A transform as a list of its parts (a composite is flattened; the identity is an empty list)."""
    if tx.GetName() == "CompositeTransform":
        comp = sitk.CompositeTransform(tx)
        return [p for i in range(comp.GetNumberOfTransforms()) for p in transform_to_json(comp.GetNthTransform(i))]
    if tx.GetName() in ("IdentityTransform", "Transform") or not tx.GetParameters() and not tx.GetFixedParameters():
        return []
    return [{"type": tx.GetName(), "parameters": list(tx.GetParameters()),
             "fixed_parameters": list(tx.GetFixedParameters())}]


def transform_from_json(parts: List[dict]) -> sitk.Transform:
    if not parts:
        return sitk.Transform()
    comp = sitk.CompositeTransform(3)
    for p in parts:
        if p.get("type") not in ("Euler3DTransform", "VersorRigid3DTransform", "TranslationTransform",
                                 "AffineTransform", "Similarity3DTransform"):
            raise ValueError(f"kept transform of type {p.get('type')!r} is not supported")
        t = getattr(sitk, p["type"])() if p["type"] != "TranslationTransform" else sitk.TranslationTransform(3)
        t.SetFixedParameters([float(v) for v in p["fixed_parameters"]])
        t.SetParameters([float(v) for v in p["parameters"]])
        comp.AddTransform(t)
    return comp


def _grid_json(img: sitk.Image) -> dict:
    return {"size": list(img.GetSize()), "spacing": list(img.GetSpacing()), "origin": list(img.GetOrigin()),
            "direction": list(img.GetDirection())}


@dataclass
class ReusedPreprocessing:
    """What ``preprocess`` takes instead of registering and extracting the brain again."""
    transforms: Dict[str, sitk.Transform]
    registration_metric: Dict[str, float]
    brain_mask: sitk.Image
    brain_mask_method: str
    brain_mask_warnings: List[str] = field(default_factory=list)


@dataclass
class Kept:
    """A segmentation's kept working-grid labels and preprocessing (any of them may be missing)."""
    work_label: Optional[sitk.Image] = None
    brain_mask: Optional[sitk.Image] = None
    preprocessing: Optional[dict] = None
    where: str = ""

    # -- making ---------------------------------------------------------------------------------------------
    @classmethod
    def from_run(cls, case, options, pre, label: sitk.Image) -> "Kept":
        """What a run keeps: ``label`` (working grid), ``pre`` (PreprocessedCase) and its ``options``
        (PreprocessOptions) for the inputs of ``case``."""
        opt = {k: getattr(options, k) for k in REUSE_OPTIONS}
        opt["reference"] = pre.reference  # the one used (a fallback when the asked one is absent)
        record = {"format": FORMAT,
                  "inputs_sha256": {s: image_digest(img) for s, img in case.images.items()},
                  "options": opt, "reference": pre.reference, "grid": _grid_json(pre.grid),
                  "transforms": {s: transform_to_json(t) for s, t in pre.transforms.items()},
                  "registration_metric": {s: float(v) for s, v in pre.registration_metric.items()},
                  "brain_mask_method": pre.brain_mask_method,
                  "brain_mask_warnings": list(getattr(pre, "brain_mask_warnings", []) or []),
                  "work_label_sha256": image_digest(sitk.Cast(label, sitk.sitkUInt8))}
        return cls(sitk.Cast(label, sitk.sitkUInt8), sitk.Cast(pre.brain_mask, sitk.sitkUInt8), record, "this run")

    # -- files ----------------------------------------------------------------------------------------------
    def write(self, folder, name: str = "segmentation") -> None:
        """The three files into ``folder`` (each written atomically; inside an output set's staging folder)."""
        from .io import atomic_write_json, write_image
        n = sidecar_names(name)
        folder = Path(folder)
        write_image(self.work_label, folder / n["work"])
        write_image(self.brain_mask, folder / n["brain_mask"])
        atomic_write_json(folder / n["preprocessing"], self.preprocessing)

    @classmethod
    def beside(cls, segmentation_path) -> Optional["Kept"]:
        """The kept files beside a segmentation file (None when there are none). A damaged file is not used (the
        segmentation is then resampled once, as any other)."""
        from .io import IMAGE_SUFFIXES
        p = Path(segmentation_path)
        name = next((p.name[:-len(s)] for s in sorted(IMAGE_SUFFIXES, key=len, reverse=True)
                     if p.name.lower().endswith(s)), p.stem)
        n = sidecar_names(name)
        files = {k: p.with_name(v) for k, v in n.items()}
        if not files["work"].is_file():
            return None
        try:
            work = sitk.ReadImage(str(files["work"]))
            mask = sitk.ReadImage(str(files["brain_mask"])) if files["brain_mask"].is_file() else None
            record = json.loads(files["preprocessing"].read_text()) if files["preprocessing"].is_file() else None
        except (RuntimeError, OSError, ValueError):
            return None
        if record is not None and (not isinstance(record, dict) or record.get("format") != FORMAT):
            record = None
        return cls(work, mask, record, str(files["work"]))

    # -- using ----------------------------------------------------------------------------------------------
    def inputs_match(self, case) -> bool:
        r = self.preprocessing
        if not r:
            return False
        return r.get("inputs_sha256") == {s: image_digest(img) for s, img in case.images.items()}

    def reusable_preprocessing(self, case, options) -> Tuple[Optional[ReusedPreprocessing], str]:
        """(transforms + brain mask, "") when the inputs (SHA-256 of each image) and the options are those the
        kept preprocessing was made with; else (None, why not)."""
        r = self.preprocessing
        if not r or self.brain_mask is None:
            return None, "no kept preprocessing"
        if not self.inputs_match(case):
            return None, "the input images differ from those of the kept preprocessing"
        want = {k: getattr(options, k) for k in REUSE_OPTIONS}
        have = dict(r.get("options") or {})
        if options.reference not in case.images:  # the fallback reference: compared as used
            want["reference"] = have.get("reference")
        if json.loads(json.dumps(want)) != have:
            diff = sorted(k for k in REUSE_OPTIONS if json.loads(json.dumps(want.get(k))) != have.get(k))
            return None, "preprocessing options differ from the kept ones (" + ", ".join(diff) + ")"
        try:
            transforms = {s: transform_from_json(t) for s, t in r["transforms"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            return None, f"kept transforms unreadable ({exc})"
        if set(transforms) != set(case.images):
            return None, "kept transforms do not cover the input sequences"
        return ReusedPreprocessing(transforms, dict(r.get("registration_metric") or {}),
                                   sitk.Cast(self.brain_mask, sitk.sitkUInt8), r.get("brain_mask_method", ""),
                                   list(r.get("brain_mask_warnings") or [])), ""

    def label_for(self, case, pre) -> Optional[sitk.Image]:
        """The kept working-grid labels when they belong to these inputs and this working grid, else None."""
        if self.work_label is None or not self.inputs_match(case) or not same_grid(self.work_label, pre.grid):
            return None
        digest = (self.preprocessing or {}).get("work_label_sha256")
        lab = sitk.Cast(self.work_label, sitk.sitkUInt8)
        lab.CopyInformation(pre.grid)
        if digest and digest != image_digest(lab):
            return None
        return lab


def label_on_working_grid(label: sitk.Image, pre, kept: Optional[Kept] = None, case=None):
    """A given BraTS label map -> (working-grid labels, statement for the provenance's ``segmentation_grid``).

    * on the working grid already: used as it is ("working grid given");
    * the kept segmentation of these inputs, unchanged on the native grid: the kept working-grid labels
      ("working grid kept");
    * the kept one edited on the native grid: the kept working-grid labels, with only the working-grid voxels whose
      nearest native voxel changed taken from the edited map ("edited on native grid: N native voxels changed");
      a label removed from the native map altogether (a deleted segment) is removed from the working grid too;
    * anything else: resampled once, nearest neighbour ("resampled once from <grid>").
    """
    label = sitk.Cast(label, sitk.sitkUInt8)
    if same_grid(label, pre.grid):
        out = sitk.Image(label)
        out.CopyInformation(pre.grid)
        return out, "working grid given"
    work = kept.label_for(case, pre) if (kept is not None and case is not None) else None
    if work is not None and same_grid(label, pre.reference_native):
        native = sitk.Image(label)
        native.CopyInformation(pre.reference_native)
        back = sitk.GetArrayFromImage(pre.to_native(work))  # a copy: a view of a temporary image would dangle
        given = sitk.GetArrayViewFromImage(native)
        changed = given != back
        n = int(np.count_nonzero(changed))
        if n == 0:
            return work, "working grid kept"
        diff = sitk.GetImageFromArray(changed.astype(np.uint8))
        diff.CopyInformation(pre.reference_native)
        under = sitk.GetArrayFromImage(sitk.Resample(diff, pre.grid, sitk.Transform(), sitk.sitkNearestNeighbor,
                                                         0, sitk.sitkUInt8)) > 0
        new_values = sitk.GetArrayFromImage(sitk.Resample(native, pre.grid, sitk.Transform(),
                                                              sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))
        arr = sitk.GetArrayFromImage(work)
        # a label the edit removed from the native map altogether (a deleted segment) goes everywhere, also where
        # the native grid did not show it (working-grid slices between thick native slices)
        removed = sorted(set(np.unique(back).tolist()) - set(np.unique(given).tolist()) - {0})
        if removed:
            under |= np.isin(arr, removed)
        arr[under] = new_values[under]
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(pre.grid)
        gone = f"; label(s) {', '.join(map(str, removed))} removed everywhere" if removed else ""
        return out, (f"edited on native grid: {n} native voxels changed ({int(np.count_nonzero(under))} working-grid "
                     f"voxels under them updated, the rest kept{gone})")
    out = sitk.Resample(label, pre.grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return out, (f"resampled once from {grid_description(label)} to the working grid {grid_description(pre.grid)} "
                 "(nearest neighbour)")
