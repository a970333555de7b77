"""A case: the four MRI sequences of one patient plus clinical variables."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import SimpleITK as sitk

from .io import InputError, read_image

SEQUENCES = ("t1", "t1c", "t2", "flair")
SEQUENCE_NAMES = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}
SEXES = {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}


@dataclass
class Case:
    case_id: str
    images: Dict[str, sitk.Image]
    paths: Dict[str, str] = field(default_factory=dict)
    clinical: dict = field(default_factory=dict)
    synthetic: bool = False
    ground_truth: Optional[sitk.Image] = None
    required: tuple = SEQUENCES          # segmentation alone can run on fewer sequences (e.g. FLAIR only)

    def __post_init__(self):
        missing = [s for s in self.required if s not in self.images]
        if missing:
            raise InputError(f"case {self.case_id}: missing sequence(s) {', '.join(missing)}; "
                             f"the pipeline needs {', '.join(SEQUENCE_NAMES[s] for s in SEQUENCES)}")
        self.clinical = normalize_clinical(self.clinical, where=f"case {self.case_id}")


def normalize_clinical(clinical: dict, where: str = "clinical data") -> dict:
    out = dict(clinical or {})
    if out.get("age") is not None:
        try:
            age = float(out["age"])
        except (TypeError, ValueError):
            raise InputError(f"{where}: age '{out['age']}' is not a number") from None
        if not 0 <= age <= 120:
            raise InputError(f"{where}: age {age} is outside 0-120 years")
        out["age"] = age
    if out.get("sex") is not None:
        key = str(out["sex"]).strip().upper()
        if key not in SEXES:
            raise InputError(f"{where}: sex '{out['sex']}' must be M or F")
        out["sex"] = SEXES[key]
    if out.get("who_grade") is not None:
        try:
            grade = int(float(out["who_grade"]))
        except (TypeError, ValueError):
            raise InputError(f"{where}: WHO grade '{out['who_grade']}' is not 2, 3 or 4") from None
        if grade not in (1, 2, 3, 4):
            raise InputError(f"{where}: WHO grade {grade} is not 1-4")
        out["who_grade"] = grade
    if out.get("vasari_score") is not None and str(out["vasari_score"]).strip().lower() != "auto":
        try:
            out["vasari_score"] = float(out["vasari_score"])
        except (TypeError, ValueError):
            raise InputError(f"{where}: VASARI score '{out['vasari_score']}' is neither a number nor 'auto'") from None
    elif out.get("vasari_score") is not None:
        out["vasari_score"] = "auto"
    return out


def load_case(paths: Dict[str, os.PathLike], case_id: Optional[str] = None, clinical: Optional[dict] = None,
              ground_truth: Optional[os.PathLike] = None) -> Case:
    """Read the four sequences from NIfTI / NRRD files or DICOM series. Errors name the file and the problem."""
    from .inputs import DicomSeries, read_any
    images, str_paths = {}, {}
    for seq in SEQUENCES:
        if seq not in paths or paths[seq] is None:
            raise InputError(f"missing {SEQUENCE_NAMES[seq]} image: give --{seq} FILE")
        item = paths[seq]
        images[seq] = read_any(item, role=SEQUENCE_NAMES[seq])
        if isinstance(item, DicomSeries):
            str_paths[seq] = f"DICOM {item.folder} series '{item.description}' ({item.series_uid})"
            continue
        str_paths[seq] = str(Path(item).resolve())
    if case_id is None:
        flair = paths["flair"]
        case_id = (flair.folder.name if isinstance(flair, DicomSeries) else Path(flair).resolve().parent.name) or "case"
    gt = read_image(ground_truth, role="ground truth") if ground_truth else None
    check_overlap(images, str_paths)
    return Case(case_id, images, str_paths, clinical or {}, False, gt)


def _bounds(img: sitk.Image) -> np.ndarray:
    size = img.GetSize()
    corners = [img.TransformContinuousIndexToPhysicalPoint([c[i] * (size[i] - 1) for i in range(3)])
               for c in np.ndindex(2, 2, 2)]
    c = np.array(corners)
    return np.stack([c.min(0), c.max(0)])


def check_overlap(images: Dict[str, sitk.Image], paths: Dict[str, str]) -> None:
    """Refuse sequences whose fields of view do not overlap at all (wrong patient / broken header)."""
    ref = _bounds(images["flair"]) if "flair" in images else None
    if ref is None:
        return
    for seq, img in images.items():
        b = _bounds(img)
        overlap = np.minimum(ref[1], b[1]) - np.maximum(ref[0], b[0])
        if (overlap <= 0).any():
            raise InputError(f"{SEQUENCE_NAMES.get(seq, seq)}: {paths.get(seq, seq)} does not overlap the FLAIR "
                             "field of view in physical space (different patient or broken header?)")


def load_case_folder(folder: os.PathLike, clinical: Optional[dict] = None,
                     overrides: Optional[Dict[str, os.PathLike]] = None) -> Case:
    """A folder with the four sequences (NIfTI / NRRD named like t1, t1c / t1gd / post, t2, flair, BraTS or BIDS
    style; or DICOM series, assigned from their tags) and an optional case.json with clinical data."""
    from .inputs import find_case_files
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"case folder not found: {folder}")
    paths = find_case_files(folder, {k: str(v) for k, v in (overrides or {}).items() if v})
    meta, synthetic, case_id = {}, False, folder.name
    if (folder / "case.json").exists():
        try:
            data = json.loads((folder / "case.json").read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{folder / 'case.json'}: not valid JSON ({exc})") from None
        meta = data.get("clinical", {}) or {}
        synthetic = bool(data.get("synthetic", False))
        case_id = str(data.get("case_id") or folder.name)
    meta.update({k: v for k, v in (clinical or {}).items() if v is not None})
    case = load_case(paths, case_id, meta)
    case.synthetic = synthetic
    return case
