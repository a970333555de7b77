"""A case: the MRI sequences of one patient (any subset of T1, T1c, T2, FLAIR; optionally a DSC-perfusion CBV
map) plus clinical variables.

Missing sequences are a normal case: the whole tumor needs FLAIR (or T2), the enhancing / necrotic regions need
T1c; presets extract features from the sequences present and model bundles that need an absent sequence are not
applied (predict.py says so per task)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import SimpleITK as sitk

from .inputs import DicomSeries, label_values, read_any, scan_case_folder
from .io import InputError, read_image
from .sequences import IMAGE_KEYS, SEQUENCE_NAMES, SEQUENCES  # noqa: F401 (SEQUENCES re-exported)
CLINICAL_KEYS = ("age", "sex", "who_grade", "vasari_score")
SEXES = {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}


@dataclass
class Case:
    case_id: str
    images: Dict[str, sitk.Image]
    paths: Dict[str, str] = field(default_factory=dict)
    clinical: dict = field(default_factory=dict)
    synthetic: bool = False
    ground_truth: Optional[sitk.Image] = None
    required: Optional[tuple] = None     # None: FLAIR or T2 (whole tumor); a tuple: each of these sequences
    mask_path: Optional[str] = None      # a label map found in the case folder (offered as reference / ROI)
    masks_set_aside: List[str] = field(default_factory=list)  # the folder's other label maps (file names)
    bias_corrected_inputs: List[str] = field(default_factory=list)  # sequences read from a '_bias' / '_n4' file
    messages: List[str] = field(default_factory=list)  # discovery notes (missing sequences, masks set aside)

    def __post_init__(self):
        unknown = [s for s in self.images if s not in IMAGE_KEYS]
        if unknown:
            raise InputError(f"case {self.case_id}: unknown sequence key(s) {', '.join(unknown)}")
        if self.required is None:
            if not set(self.images) & {"flair", "t2"}:
                raise InputError(f"case {self.case_id}: no FLAIR or T2 (has {self.sequence_list() or 'none'}); "
                                 "the whole tumor needs FLAIR (or T2)")
        else:
            missing = [s for s in self.required if s not in self.images]
            if missing:
                raise InputError(f"case {self.case_id}: missing sequence(s) "
                                 f"{', '.join(SEQUENCE_NAMES[s] for s in missing)}")
        self.clinical = normalize_clinical(self.clinical, where=f"case {self.case_id}")

    @property
    def sequences(self) -> List[str]:
        """The images present, in canonical order (t1, t1c, t2, flair, cbv)."""
        return [s for s in IMAGE_KEYS if s in self.images]

    def sequence_list(self) -> str:
        return "+".join(SEQUENCE_NAMES[s] for s in self.sequences)


def sex_male(value, where: str = "clinical data") -> Optional[float]:
    """The one sex encoder: M / male -> 1.0, F / female -> 0.0, missing -> None; anything else is refused (never
    silently read as female)."""
    if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
        return None
    key = str(value).strip().upper()
    if key in ("1", "1.0", "0", "0.0"):
        return float(key.startswith("1"))
    if key not in SEXES:
        raise InputError(f"{where}: sex '{value}' must be M or F")
    return 1.0 if SEXES[key] == "M" else 0.0


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
              ground_truth: Optional[os.PathLike] = None, preloaded: Optional[Dict[str, sitk.Image]] = None) -> Case:
    """Read the sequences given (any subset with FLAIR or T2; ``cbv``: an optional CBV / rCBV map) from NIfTI / NRRD
    files or DICOM series. Errors name the file and the problem. ``preloaded`` maps a file path to an image already
    read (case-folder discovery)."""
    images, str_paths = {}, {}
    given = {s: paths[s] for s in IMAGE_KEYS if paths.get(s) is not None}
    if not given.keys() & {"flair", "t2"}:
        raise InputError("no FLAIR or T2 image given: the whole tumor needs FLAIR (or T2); give --flair FILE "
                         "(or --case-dir DIR)")
    from .checks import check_distinct_files, check_sequence_images
    check_distinct_files(given)  # the same file / series for two sequences, before reading anything
    for seq, item in given.items():
        cached = (preloaded or {}).get(str(item)) if not isinstance(item, DicomSeries) else None
        images[seq] = cached if cached is not None else read_any(item, role=SEQUENCE_NAMES[seq])
        if isinstance(item, DicomSeries):
            str_paths[seq] = f"DICOM {item.folder} series '{item.description}' ({item.series_uid})"
            continue
        str_paths[seq] = str(Path(item).resolve())
        if cached is None:
            values = label_values(images[seq])
            if values is not None:
                raise InputError(f"{SEQUENCE_NAMES[seq]}: {item} holds only the values {values[:8]}: it is a label "
                                 "map (mask / segmentation), not an MRI sequence; give it with --segmentation")
    if case_id is None:
        first = given.get("flair") or given.get("t2")
        case_id = (first.folder.name if isinstance(first, DicomSeries) else Path(first).resolve().parent.name) or "case"
    gt = read_image(ground_truth, role="ground truth") if ground_truth else None
    check_sequence_images(images, str_paths)  # large enough for a brain; no image given for two sequences
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
    key = next((s for s in ("flair", "t2", "t1c", "t1") if s in images), None)
    if key is None:
        return
    ref = _bounds(images[key])
    for seq, img in images.items():
        b = _bounds(img)
        overlap = np.minimum(ref[1], b[1]) - np.maximum(ref[0], b[0])
        if (overlap <= 0).any():
            raise InputError(f"{SEQUENCE_NAMES.get(seq, seq)}: {paths.get(seq, seq)} does not overlap the "
                             f"{SEQUENCE_NAMES[key]} field of view in physical space (different patient or broken "
                             "header?)")


def read_case_json(data, where, default_id: str):
    """(clinical, synthetic, case_id) from a case.json document; wrong types and values are refused, naming the
    file (an age "abc", a sex "X", a "clinical" that is not an object, "synthetic": "no")."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: must be a JSON object ({{\"age\": ..., \"sex\": ...}}), not a "
                         f"{type(data).__name__}")
    clinical = data.get("clinical", {}) or {}
    if not isinstance(clinical, dict):
        raise InputError(f"{where}: \"clinical\" must be an object, not a {type(clinical).__name__}")
    meta = dict(clinical)
    for k in CLINICAL_KEYS:  # top-level clinical fields (e.g. {"case_id", "age", "sex"})
        if data.get(k) is not None and meta.get(k) is None:
            meta[k] = data[k]
    for k in ("age", "who_grade", "vasari_score"):
        if isinstance(meta.get(k), (bool, list, dict)):
            raise InputError(f"{where}: {k} {json.dumps(meta[k])} is not a number")
    synthetic = data.get("synthetic", False)
    if not isinstance(synthetic, bool):
        raise InputError(f"{where}: \"synthetic\" must be true or false, not {json.dumps(synthetic)}")
    case_id = data.get("case_id")
    if case_id is not None and not isinstance(case_id, (str, int)):
        raise InputError(f"{where}: \"case_id\" must be a string, not {json.dumps(case_id)}")
    normalize_clinical(meta, where=str(where))  # refused here, naming case.json
    return meta, synthetic, str(case_id or default_id)


def load_case_folder(folder: os.PathLike, clinical: Optional[dict] = None,
                     overrides: Optional[Dict[str, os.PathLike]] = None) -> Case:
    """A folder with the sequences (NIfTI / NRRD named like t1, t1c / t1gd / post, t2, flair, BraTS or BIDS
    style; or DICOM series, assigned from their tags) and an optional case.json with clinical data (either under
    "clinical" or at the top level: age, sex, who_grade, vasari_score). Label maps in the folder are set aside and
    the one named like a segmentation is offered as ``case.mask_path``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"case folder not found: {folder}")
    meta, synthetic, case_id = {}, False, folder.name
    if (folder / "case.json").exists():  # checked before any image is read
        try:
            data = json.loads((folder / "case.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{folder / 'case.json'}: not valid JSON ({exc})") from None
        meta, synthetic, case_id = read_case_json(data, folder / "case.json", folder.name)
    found = scan_case_folder(folder, {k: str(v) for k, v in (overrides or {}).items() if v})
    paths = found.sequences
    meta.update({k: v for k, v in (clinical or {}).items() if v is not None})
    case = load_case(paths, case_id, meta, preloaded=found.images)
    case.synthetic = synthetic
    case.messages.extend(found.messages)
    mask = found.mask
    case.masks_set_aside = [m.name for m in found.masks if m != mask]
    case.bias_corrected_inputs = found.bias_corrected()
    if mask is not None:
        case.mask_path = str(mask.resolve())
        case.messages.append(f"{mask.name}: a label map (not used as an image); use it as the ROI with "
                             f"--segmentation {mask} (or --segmentation case), or as the reference for Dice "
                             "(segment uses it automatically)")
        if case.masks_set_aside:
            case.messages.append("other label maps set aside (not used as images, not the tumor ROI): "
                                 + ", ".join(case.masks_set_aside))
    elif case.masks_set_aside:
        case.messages.append("label maps set aside (not used as images): " + ", ".join(case.masks_set_aside))
    return case
