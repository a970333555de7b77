"""Finding the sequences of a case: NIfTI / NRRD files and DICOM series, assigned to T1, T1c, T2 and FLAIR
from file names (BraTS, BIDS-like, common scanner names) or DICOM tags (SeriesDescription, contrast agent,
TR / TE / TI). The user can override any assignment.

Missing sequences are normal (real clinical cases often lack one): a case needs FLAIR or T2 for the whole tumor;
T1c is needed only for the enhancing / necrotic regions. An ambiguous sequence is a clear error.

A DSC-perfusion CBV (or rCBV) map is an optional fifth image (key ``cbv``): files named cbv, rcbv, nrcbv, rCBV_map,
perfusion_cbv, dsc_cbv, rBV ...; DICOM series whose description or ImageType says CBV / rCBV / rBV. The raw DSC time
series (perf, dsc, ep2d_perf without CBV in the name) and other parameter maps (CBF, MTT, Ktrans, ADC) are not taken.

Label maps are never taken for a sequence: files whose names mark a mask / seg / label / abnormality / ROI, and
files whose voxels hold only a few integer values, are set aside as *mask candidates* (offered to the user as the
reference segmentation or as the ROI).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import SimpleITK as sitk

from .sequences import IMAGE_KEYS, SEQUENCE_NAMES, SEQUENCES
from .io import IMAGE_SUFFIXES, InputError

# Patterns on lower-cased names with separators normalised to '_'. Order matters: T1c before T1, FLAIR before T2.
NAME_PATTERNS = {
    "flair": [r"flair", r"t2_?f\b", r"t2f", r"dark_?fluid", r"\bfl\b", r"t2_?tirm", r"tirm"],
    "t1c": [r"t1_?c\b", r"t1ce", r"t1_?gd", r"t1_?gad", r"t1_?post", r"post_?(gd|gad|contrast|con)",
            r"\bce_?t1", r"ce_t1w", r"t1w?_?ce\b", r"mprage_?(gd|post|c\b)", r"t1c", r"contrast", r"\+c\b",
            r"_gd\b", r"gado"],
    "t2": [r"t2w?\b", r"t2_?w", r"t2_?tse", r"t2_?fse", r"\bt2\b", r"t2"],
    "t1": [r"t1w?\b", r"t1_?w", r"mprage", r"spgr", r"t1_?se", r"\bt1\b", r"t1n", r"t1"],
}
# names of label maps (never a sequence; offered as reference / ROI)
MASK_NAME = re.compile(r"(seg|label|mask|abnormal|lesion|annot|truth|reference|(^|_)roi(_|$)|(^|_)gt(_|$)|voi)")
# a CBV / rCBV map (DSC perfusion): checked before OTHER_NAME (which sets the other perfusion images aside)
CBV_NAME = re.compile(r"cbv|(?<![a-z0-9])n?r?bv(?![a-z0-9])|blood_?volume")
# other images that are not one of the four sequences
OTHER_NAME = re.compile(r"(dwi|adc|perf|dsc|cbv|swi|localizer|scout)")
LABEL_MAX_VALUES = 16   # a volume of integer voxels with at most this many distinct values is a label map
# a bias-field-corrected copy of a sequence beside the acquired one (UCSF-PDGM ships <id>_T1c.nii.gz and
# <id>_T1c_bias.nii.gz): the corrected copy is chosen (choose_bias_corrected)
BIAS_CORRECTED_SUFFIX = re.compile(r"_(bias|bias_?corr(ected)?|n4|n4_?corr(ected)?|biasfield_?corr(ected)?)$")
# label maps of the brain (a skull-stripping mask, tissue classes), never offered as the tumor ROI: whole name tokens
BRAIN_MASK_NAME = re.compile(r"(^|_)(brain|brainmask|brain_?extraction(_?mask)?|skull|skullstrip|skullstripped|"
                             r"skull_?strip|parenchyma|head|bet|hdbet|synthstrip|tissue|csf|wm|gm)(_|$)")
# ... unless the name also says tumor or one of its parts (brain_tumor_seg, GTV_brain, edema_tissue_seg)
TUMOR_MASK_NAME = re.compile(r"tumou?r|lesion|abnormal|glioma|o?edema|enhanc|necro|(^|_)(gtv|ctv|core|met|mets|"
                             r"metastas[ie]s|wt|tc|et|roi|voi)(_|$)")
# a mask of one tumor part only: never preferred as the whole-tumor ROI when several masks are named alike
TUMOR_PART_NAME = re.compile(r"o?edema|enhanc|necro|(^|_)(core|et|tc|ncr|ed|cet|nec)(_|$)")


def _norm(name: str) -> str:
    n = name.lower()
    for s in IMAGE_SUFFIXES:
        if n.endswith(s):
            n = n[: -len(s)]
    return re.sub(r"[\s\-\.]+", "_", n)


def classify_name(name: str) -> Optional[str]:
    """Sequence key for a file or series name, or None. 'sub-01_ce-gd_T1w' -> 't1c', 'BraTS_flair' -> 'flair'."""
    n = _norm(name)
    if MASK_NAME.search(n):
        return None
    if CBV_NAME.search(n):
        return "cbv"
    if OTHER_NAME.search(n):
        return None
    if re.search(r"ce_?gd|ce_?gad", n) and "t1" in n:  # BIDS: sub-01_ce-gadolinium_T1w
        return "t1c"
    for seq in ("flair", "t1c", "t2", "t1"):
        if any(re.search(p, n) for p in NAME_PATTERNS[seq]):
            return seq
    return None


@dataclass
class DicomSeries:
    folder: Path
    series_uid: str
    files: List[str]
    description: str = ""
    tags: Dict[str, str] = field(default_factory=dict)

    def read(self) -> sitk.Image:
        from .checks import check_dicom_series
        check_dicom_series(self)  # every slice readable, none missing (ITK reads a series with a gap silently)
        r = sitk.ImageSeriesReader()
        r.SetFileNames(self.files)
        try:
            return r.Execute()
        except RuntimeError as exc:
            raise InputError(f"DICOM series {self.series_uid} in {self.folder}: cannot be read "
                             f"({str(exc).strip().splitlines()[0][:160]})") from None


def find_dicom_series(folder: Path) -> List[DicomSeries]:
    out = []
    for d in sorted({p.parent for p in Path(folder).rglob("*") if p.is_file()} | {Path(folder)}):
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(d)) or []:
            files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(d), uid))
            if not files:
                continue
            tags = None
            for f in files:  # the tags of the first readable slice (a damaged one is reported when read)
                rd = sitk.ImageFileReader()
                rd.SetFileName(f)
                rd.LoadPrivateTagsOff()
                try:
                    rd.ReadImageInformation()
                except RuntimeError:
                    continue
                tags = {k: rd.GetMetaData(k).strip() for k in rd.GetMetaDataKeys()}
                break
            if tags is None:
                continue
            out.append(DicomSeries(d, uid, files, tags.get("0008|103e", ""), tags))
    return out


def classify_dicom(series: DicomSeries) -> Optional[str]:
    """From SeriesDescription / ProtocolName first, then contrast agent and TR / TE / TI."""
    t = series.tags
    if CBV_NAME.search(_norm(t.get("0008|0008", "").replace("\\", "_"))):  # ImageType, e.g. DERIVED\PRIMARY\RCBV
        return "cbv"
    for key in ("0008|103e", "0018|1030"):  # SeriesDescription, ProtocolName
        seq = classify_name(t.get(key, ""))
        if seq:
            if seq == "t1" and t.get("0018|0010", "").strip():  # ContrastBolusAgent present
                return "t1c"
            return seq
    try:
        tr = float(t.get("0018|0080", "nan"))
        te = float(t.get("0018|0081", "nan"))
        ti = float(t.get("0018|0082", "nan")) if t.get("0018|0082") else 0.0
    except ValueError:
        return None
    if ti > 1500 and te > 70:
        return "flair"
    if tr > 2000 and te > 70:
        return "t2"
    if te < 30:
        return "t1c" if t.get("0018|0010", "").strip() else "t1"
    return None


def is_mask_name(name: str) -> bool:
    return bool(MASK_NAME.search(_norm(name)))


def is_bias_corrected_name(name: str) -> bool:
    return bool(BIAS_CORRECTED_SUFFIX.search(_norm(name)))


def no_tumor_mask_text(set_aside: List[str]) -> str:
    """What a "no tumor mask in the folder" error adds when the folder holds label maps none of which was offered."""
    if not set_aside:
        return ""
    return (f"; the label maps there ({', '.join(set_aside)}) are brain masks or several named alike, so none was "
            "taken for the tumor: give it with --segmentation FILE")


def is_brain_mask_name(name: str) -> bool:
    """A label map named as the brain's (brain_mask, brain_segmentation, brain_parenchyma_segmentation, skull
    strip), not as a tumor's ('brain_tumor_seg' is a tumor's)."""
    n = _norm(name)
    return bool(BRAIN_MASK_NAME.search(n)) and not TUMOR_MASK_NAME.search(n)


def choose_bias_corrected(candidates: List[object], images: Dict[str, sitk.Image]) -> Optional[Tuple[Path, Path]]:
    """(chosen, set aside) when the candidates for one sequence are an acquired image and its bias-field-corrected
    copy, named alike but for a suffix (``<id>_T1c`` / ``<id>_T1c_bias``, ``_n4``, ``_biascorrected``); else None.
    The corrected copy is chosen: it is what such a release computes its own features on (UCSF-PDGM's published
    radiomics use the ``_bias`` images). ``images`` (path -> image, already read): the two must also share their
    grid and their voxels must correlate (r >= 0.8), so an estimated bias *field* (FSL FAST writes
    ``<name>_bias``) is never taken for the image."""
    if len(candidates) != 2 or not all(isinstance(c, Path) for c in candidates):
        return None
    stems = [_norm(c.name) for c in candidates]
    corrected = [i for i, n in enumerate(stems) if BIAS_CORRECTED_SUFFIX.search(n)]
    if len(corrected) != 1:
        return None
    i = corrected[0]
    if BIAS_CORRECTED_SUFFIX.sub("", stems[i]) != stems[1 - i]:
        return None
    if not _same_image_content(*(images.get(str(c)) for c in candidates)):
        return None
    return candidates[i], candidates[1 - i]


def _same_image_content(a: Optional[sitk.Image], b: Optional[sitk.Image], min_r: float = 0.8) -> bool:
    """Same grid (size, spacing, origin, direction) and correlated voxels (Pearson r >= ``min_r``)."""
    import numpy as np
    from .checks import same_grid
    if a is None or b is None or not same_grid(a, b, spacing_tol=1e-3, origin_tol=1e-2, direction_tol=1e-3):
        return False
    x = sitk.GetArrayViewFromImage(a).ravel()[::7].astype(np.float64)
    y = sitk.GetArrayViewFromImage(b).ravel()[::7].astype(np.float64)
    if x.std() == 0 or y.std() == 0:
        return False
    return float(np.corrcoef(x, y)[0, 1]) >= min_r


def label_values(img: sitk.Image) -> Optional[List[int]]:
    """The distinct voxel values when ``img`` looks like a label map (integer values, at most LABEL_MAX_VALUES of
    them), else None."""
    import numpy as np
    a = sitk.GetArrayViewFromImage(img)
    sample = a.ravel()[:: max(1, a.size // 200000)]  # a cheap first look: an MRI fails here at once
    if a.dtype.kind == "f" and (not np.all(np.isfinite(sample)) or not np.all(sample == np.round(sample))):
        return None
    if len(np.unique(sample)) > LABEL_MAX_VALUES:
        return None
    values = np.unique(a)
    if len(values) > LABEL_MAX_VALUES or (a.dtype.kind == "f" and not np.all(values == np.round(values))):
        return None
    return [int(v) for v in values]


@dataclass
class CaseFiles:
    """What a case folder holds: one file / series per sequence found, and the label maps set aside."""
    folder: Path
    sequences: Dict[str, object]                       # seq -> Path | DicomSeries
    masks: List[Path] = field(default_factory=list)    # label maps (by name or by content), never sequences
    messages: List[str] = field(default_factory=list)
    images: Dict[str, sitk.Image] = field(default_factory=dict)  # already read while checking content

    def bias_corrected(self) -> List[str]:
        """The sequences whose file is named as bias-field corrected before it reached us (``<id>_T1c_bias``)."""
        return [s for s, p in self.sequences.items() if isinstance(p, Path) and is_bias_corrected_name(p.name)]

    @property
    def mask(self) -> Optional[Path]:
        """The mask to offer as the tumor reference / ROI: the only one that is not a brain mask, else the one named
        like a tumor segmentation (``tumor_segmentation`` beside ``brain_segmentation`` in UCSF-PDGM), else None."""
        tumor = [m for m in self.masks if not is_brain_mask_name(m.name)]
        if len(tumor) == 1:
            return tumor[0]
        named = [m for m in tumor if is_mask_name(m.name)]
        if len(named) > 1:  # the one named as the whole tumor, never a part of it (et_mask, edema_seg)
            named = [m for m in named if TUMOR_MASK_NAME.search(_norm(m.name))
                     and not TUMOR_PART_NAME.search(_norm(m.name))]
        return named[0] if len(named) == 1 else None


def group_dicom_series(series: List[DicomSeries]) -> Tuple[Dict[str, List[DicomSeries]], List[DicomSeries]]:
    """The one assignment of DICOM series to sequences (case folders, the web upload): ({sequence key: its series, in
    the given order}, the series whose tags do not tell the sequence). More than one series for a sequence is the
    caller's error to word (ambiguous in a case folder, one series per sequence in an upload)."""
    by_seq: Dict[str, List[DicomSeries]] = {}
    unrecognised: List[DicomSeries] = []
    for s in series:
        seq = classify_dicom(s)
        if seq:
            by_seq.setdefault(seq, []).append(s)
        else:
            unrecognised.append(s)
    return by_seq, unrecognised


def scan_case_folder(folder: Path, overrides: Optional[Dict[str, str]] = None) -> CaseFiles:
    """Assign T1, T1c, T2, FLAIR to image files or DICOM series inside ``folder``; set label maps aside.

    ``overrides`` maps a sequence key to a path (file or DICOM folder) and wins over automatic assignment.
    Sequences that are not found are simply absent. Raises InputError for an ambiguous sequence, or when neither
    FLAIR nor T2 (whole tumor) nor T1c is there.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"case folder not found: {folder}")
    overrides = {k: v for k, v in (overrides or {}).items() if v}
    found: Dict[str, List[object]] = {s: [] for s in IMAGE_KEYS}
    masks: List[Path] = []
    messages: List[str] = []
    images: Dict[str, sitk.Image] = {}
    unused: List[str] = []   # images that are none of the sequences (DWI, ADC, SWI, ASL, DTI maps, ...)
    given = {str(Path(v).resolve()) for v in overrides.values()}
    files = [p for p in sorted(folder.iterdir())
             if p.is_file() and any(p.name.lower().endswith(s) for s in IMAGE_SUFFIXES)]
    for p in files:
        if str(p.resolve()) in given:
            continue
        if is_mask_name(p.name):
            masks.append(p)
            continue
        seq = classify_name(p.name)
        if not seq:
            unused.append(p.name)
            continue
        # content check: a label map named like a sequence (e.g. 'flair_seg' caught above, 't2.nii.gz' holding 0/1)
        from .io import read_image
        try:
            img = read_image(p, role=SEQUENCE_NAMES[seq])
        except InputError:
            raise
        values = label_values(img)
        if values is not None:
            masks.append(p)
            messages.append(f"{p.name}: holds only the values {values[:8]} (a label map), not taken for "
                            f"{SEQUENCE_NAMES[seq]}")
            continue
        images[str(p)] = img
        found[seq].append(p)
    if not any(found[s] for s in SEQUENCES):  # no image named like a sequence: DICOM series (a mask file may sit beside)
        for seq, cands in group_dicom_series(find_dicom_series(folder))[0].items():
            found[seq].extend(cands)
    chosen: Dict[str, object] = {}
    for seq in IMAGE_KEYS:
        if overrides.get(seq):
            chosen[seq] = Path(overrides[seq])
            continue
        cands = found[seq]
        if not cands:
            continue
        pair = choose_bias_corrected(cands, images)
        if pair is not None:
            messages.append(f"{SEQUENCE_NAMES[seq]}: {pair[0].name} (bias-field corrected) chosen over {pair[1].name}; "
                            f"give --{seq} {pair[1]} for the other")
            chosen[seq] = pair[0]
            continue
        if len(cands) > 1:
            names = ", ".join(c.name if isinstance(c, Path) else f"series '{c.description}'" for c in cands)
            raise InputError(f"{folder}: {SEQUENCE_NAMES[seq]} is ambiguous ({names}); choose one with --{seq} PATH")
        chosen[seq] = cands[0]
    if not chosen.keys() & {"flair", "t2"}:
        seen = ", ".join(p.name for p in files[:8]) or "no NIfTI / NRRD files and no DICOM series"
        raise InputError(f"{folder}: no FLAIR or T2 found (looked at file names and DICOM series descriptions "
                         f"/ TR / TE / TI; saw {seen}); the whole tumor needs FLAIR (or T2): give it with --flair PATH")
    if unused:
        messages.append(f"images not used (none of {', '.join(SEQUENCE_NAMES[s] for s in SEQUENCES)} by name): "
                        + ", ".join(unused[:12]) + (f" and {len(unused) - 12} more" if len(unused) > 12 else ""))
    missing = [SEQUENCE_NAMES[s] for s in SEQUENCES if s not in chosen]
    if missing:
        messages.append(f"{folder.name}: sequence(s) not found: {', '.join(missing)} (the case runs with "
                        f"{', '.join(SEQUENCE_NAMES[s] for s in SEQUENCES if s in chosen)}; models that need a "
                        "missing sequence are not applied)")
    return CaseFiles(folder, chosen, masks, messages, images)


def find_case_files(folder: Path, overrides: Optional[Dict[str, str]] = None) -> Dict[str, object]:
    """{seq: Path | DicomSeries} of the sequences found in ``folder`` (see ``scan_case_folder``)."""
    return scan_case_folder(folder, overrides).sequences


def read_any(item, role: str) -> sitk.Image:
    """A file, a DICOM folder or a DicomSeries -> image (with the checks of io.read_image)."""
    from .io import read_image
    if isinstance(item, DicomSeries):
        img = item.read()
        return img
    p = Path(item)
    if p.is_dir():
        series = find_dicom_series(p)
        if not series:
            raise InputError(f"{role}: {p} is a folder without a readable DICOM series")
        if len(series) > 1:
            raise InputError(f"{role}: {p} holds {len(series)} DICOM series; point to one series folder")
        return series[0].read()
    return read_image(p, role)
