"""Input integrity checks, run before any heavy work. Each problem is an ``InputError`` whose message names the file
and the problem (the command line prints it and exits 2; Slicer shows it in an error dialog; the web app in its
status line). docs/bad-inputs.md lists the cases of the bad-input corpus and the message each one gets.

- image headers (read before any voxel is allocated): vector / complex voxels, non-3D, zero / negative / NaN voxel
  spacing (also in the raw NIfTI header, where ITK silently replaces a zero spacing by 1), declared size against
  the memory available;
- voxel data against the header: an uncompressed .nii cut short, a .nii.gz whose decompressed data is shorter than
  its dimensions say (ITK reads both without complaint and fills the missing slices with zeros);
- cases: volumes too small to hold a brain, the same file / the same image given for two sequences, sequences that
  cover little of the reference after registration, a brain mask too small to be a brain;
- DICOM series: a missing slice (a gap in the slice positions) or a slice that cannot be read;
- user segmentations: non-integer or unknown labels, empty, a few voxels, another grid (resampled with a note when
  it lies inside the reference's field of view, refused when it does not overlap it).
"""
from __future__ import annotations

import gzip
import math
import os
import struct
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from .io import InputError

MIN_HEAD_EXTENT_MM = 60.0   # a head is larger than this along at least two axes
MIN_COVERAGE = 0.5          # fraction of the reference's head a registered sequence must cover
MIN_BRAIN_ML = 100.0        # a brain mask below this is not a brain (adults: 600-2300 mL)
MIN_ROI_ML = 0.1            # a user segmentation smaller than this is not a tumor ROI
MIN_ROI_VOXELS = 8

_BYTES = {sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2, sitk.sitkUInt32: 4,
          sitk.sitkInt32: 4, sitk.sitkUInt64: 8, sitk.sitkInt64: 8, sitk.sitkFloat32: 4, sitk.sitkFloat64: 8}
_COMPLEX = (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64)


def _fmt(values, digits: int = 3) -> str:
    return " x ".join(f"{v:.{digits}g}" if isinstance(v, float) else str(v) for v in values)


# ------------------------------------------------------------------------------------------------------------
# memory
# ------------------------------------------------------------------------------------------------------------
def available_memory_bytes() -> Optional[int]:
    """Memory this process may still use: MemAvailable, bounded by a cgroup limit when there is one."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            lim = Path(limit).read_text().strip()
            if lim != "max" and int(lim) < 1 << 60:
                found.append(int(lim) - int(Path(usage).read_text().strip()))
        except (OSError, ValueError):
            pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return max(0, min(found))


# ------------------------------------------------------------------------------------------------------------
# NIfTI header (ITK hides what it repaired: a zero pixdim becomes 1, a negative one its absolute value)
# ------------------------------------------------------------------------------------------------------------
def nifti_header(p: Path) -> Optional[dict]:
    """dims, bitpix, pixdim, vox_offset, sform of a NIfTI-1 / NIfTI-2 file (.nii / .nii.gz), else None."""
    name = p.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        return None
    try:
        with open(p, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        with (gzip.open(p, "rb") if gz else open(p, "rb")) as fh:
            h = fh.read(540)
    except (OSError, EOFError):
        return None
    if len(h) < 348:
        return None
    for end in "<>":
        n = struct.unpack_from(end + "i", h, 0)[0]
        if n == 348:
            dim = struct.unpack_from(end + "8h", h, 40)
            return {"dim": dim, "bitpix": struct.unpack_from(end + "h", h, 72)[0], "endian": end,
                    "datatype": struct.unpack_from(end + "h", h, 70)[0],
                    "pixdim": struct.unpack_from(end + "8f", h, 76), "vox_offset": struct.unpack_from(end + "f", h, 108)[0],
                    "sform_code": struct.unpack_from(end + "h", h, 254)[0],
                    "srow": [struct.unpack_from(end + "4f", h, o) for o in (280, 296, 312)]}
        if n == 540 and len(h) >= 540:
            return {"dim": struct.unpack_from(end + "8q", h, 16), "bitpix": struct.unpack_from(end + "h", h, 14)[0],
                    "endian": end, "datatype": struct.unpack_from(end + "h", h, 12)[0],
                    "pixdim": struct.unpack_from(end + "8d", h, 104), "vox_offset": struct.unpack_from(end + "q", h, 168)[0],
                    "sform_code": struct.unpack_from(end + "i", h, 348)[0],
                    "srow": [struct.unpack_from(end + "4d", h, o) for o in (400, 432, 464)]}
    return None


def _nifti_voxels(hdr: dict) -> int:
    ndim = max(1, min(7, int(hdr["dim"][0])))
    return int(np.prod([max(1, int(d)) for d in hdr["dim"][1:ndim + 1]], dtype=np.float64))


def check_header(p: Path, role: str) -> sitk.ImageFileReader:
    """Header checks before any voxel is read. Returns the reader with the image information."""
    from .io import check_compressed
    r = sitk.ImageFileReader()
    r.SetFileName(str(p))
    try:
        r.ReadImageInformation()
    except RuntimeError as exc:
        check_compressed(p, role)  # a damaged gzip says so
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        first = next((ln for ln in lines if "ERROR" in ln.upper() and ":" in ln), lines[0] if lines else "unreadable")
        raise InputError(f"{role}: cannot read {p} as an image ({first.strip()[:200]})") from None
    size, spacing, dim = r.GetSize(), r.GetSpacing(), r.GetDimension()
    if r.GetPixelID() in _COMPLEX:
        raise InputError(f"{role}: {p} has complex-valued voxels (real and imaginary parts, e.g. raw or phase "
                         "data); a real-valued magnitude volume is needed")
    if r.GetNumberOfComponents() != 1:
        raise InputError(f"{role}: {p} has {r.GetNumberOfComponents()} components per voxel (a vector or colour "
                         "image); a scalar (grey-level) volume is needed")
    if dim == 4 and size[3] != 1:
        raise InputError(f"{role}: {p} is 4D ({size[3]} volumes); give a single 3D volume")
    if dim not in (3, 4):
        raise InputError(f"{role}: {p} is {dim}D (size {_fmt(size)}); a 3D volume is needed")
    hdr = nifti_header(p)
    spatial = list(spacing[:3])
    if hdr is not None:
        nd = max(1, min(3, int(hdr["dim"][0])))
        spatial = [float(v) for v in hdr["pixdim"][1:nd + 1]]
        if hdr["sform_code"] > 0:
            srow = np.array(hdr["srow"], dtype=float)[:, :3]
            norms = np.linalg.norm(srow, axis=0) if np.all(np.isfinite(srow)) else [float("nan")] * 3
            if not all(math.isfinite(v) and v > 0 for v in norms):
                spatial = [float(v) for v in norms]
    if not all(math.isfinite(v) and v > 0 for v in spatial):
        raise InputError(f"{role}: {p} has voxel spacing {_fmt(spatial)} mm in its header: zero, negative or not a "
                         "number (a broken header); every voxel spacing must be a positive number of mm")
    if not all(math.isfinite(v) and v > 0 for v in spacing[:3]):
        raise InputError(f"{role}: {p} has voxel spacing {_fmt(spacing[:3])} mm: zero, negative or not a number "
                         "(a broken header)")
    nvox = int(np.prod([int(s) for s in size], dtype=np.float64))
    nbytes = nvox * _BYTES.get(r.GetPixelID(), 8)
    need = nbytes + nvox * 4  # the voxels as stored + one float32 working copy
    avail = available_memory_bytes()
    if avail is not None and need > avail:
        kind = sitk.GetPixelIDValueAsString(r.GetPixelID())
        raise InputError(f"{role}: {p} declares {_fmt(size)} voxels of {kind} "
                         f"({nbytes / 1e9:.3g} GB; about {need / 1e9:.3g} GB needed to process it), more than the "
                         f"memory available ({avail / 1e9:.3g} GB): a damaged header, or not a single MRI volume")
    return r


_NIFTI_FLOATS = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 / float64


def check_nifti_finite(p: Path, role: str, hdr: dict) -> None:
    """NaN / infinite voxels of a float NIfTI, read from the file itself: ITK's NIfTI reader silently turns them
    into 0 (a silent wrong image)."""
    code = _NIFTI_FLOATS.get(int(hdr["datatype"]))
    if code is None:
        return
    dtype = np.dtype(hdr["endian"] + code)
    with open(p, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    n_bad, left = 0, _nifti_voxels(hdr)
    with (gzip.open(p, "rb") if gz else open(p, "rb")) as fh:
        fh.read(int(hdr["vox_offset"]))
        while left > 0:
            block = fh.read(min(left, 1 << 20) * dtype.itemsize)
            if not block:
                break
            a = np.frombuffer(block[: len(block) // dtype.itemsize * dtype.itemsize], dtype)
            n_bad += int(a.size - np.count_nonzero(np.isfinite(a)))
            left -= a.size
    if n_bad:
        raise InputError(f"{role}: {p} contains NaN or infinite voxel values ({n_bad} voxel(s); ITK would read them "
                         "as 0)")


def check_data_length(p: Path, role: str, decompressed: Optional[int]) -> None:
    """An uncompressed .nii cut short, or a .nii.gz whose data is shorter than its header's dimensions say; then
    NaN / infinite voxels of a float NIfTI (``check_nifti_finite``)."""
    hdr = nifti_header(p)
    if hdr is None or hdr["bitpix"] <= 0:
        return
    offset = int(hdr["vox_offset"])
    needed = _nifti_voxels(hdr) * int(hdr["bitpix"]) // 8
    total = decompressed if decompressed is not None else p.stat().st_size
    have = max(0, total - offset)
    if have < needed:
        ndim = max(1, min(7, int(hdr["dim"][0])))
        raise InputError(f"{role}: {p} holds {have} bytes of voxel data, but its header ({_fmt(hdr['dim'][1:ndim + 1])} "
                         f"voxels of {hdr['bitpix']} bits) needs {needed} ({100.0 * have / needed:.0f} % present): the "
                         "file is cut short (an interrupted copy?); copy it again")
    check_nifti_finite(p, role, hdr)


# ------------------------------------------------------------------------------------------------------------
# cases
# ------------------------------------------------------------------------------------------------------------
def _label(seq: str) -> str:
    from .case import SEQUENCE_NAMES
    return SEQUENCE_NAMES.get(seq, seq)


def check_head_extent(img: sitk.Image, role: str, where: str) -> None:
    """A volume smaller than 60 mm along two axes cannot hold a brain (wrong file, thumbnail, broken spacing)."""
    ext = [n * s for n, s in zip(img.GetSize(), img.GetSpacing())]
    if sum(e < MIN_HEAD_EXTENT_MM for e in ext) >= 2:
        raise InputError(f"{role}: {where} covers only {_fmt([round(e, 1) for e in ext])} mm ({_fmt(img.GetSize())} "
                         f"voxels of {_fmt([round(s, 3) for s in img.GetSpacing()])} mm): too small to hold a brain "
                         f"(a head spans at least {MIN_HEAD_EXTENT_MM:.0f} mm along two axes); wrong file, or a wrong "
                         "voxel spacing in its header?")


def _sha256(p: Path) -> str:
    from .io import sha256_file
    return sha256_file(p)


def check_distinct_files(given: Dict[str, object]) -> None:
    """The same file (same path, same inode or same contents) or DICOM series given for two sequences."""
    from .inputs import DicomSeries
    seen: Dict[tuple, Tuple[str, str]] = {}
    by_size: Dict[int, List[Tuple[str, Path]]] = {}
    for seq, item in given.items():
        if isinstance(item, DicomSeries):
            keys = [(("series", item.series_uid), f"DICOM series '{item.description}' in {item.folder}")]
        else:
            p = Path(item)
            if not p.is_file():
                continue
            st = p.stat()
            keys = [(("path", str(p.resolve())), str(p)), (("inode", st.st_dev, st.st_ino), str(p))]
            by_size.setdefault(st.st_size, []).append((seq, p))
        for key, shown in keys:
            if key in seen:
                other, other_shown = seen[key]
                what = {"path": "the same file", "inode": "the same file (a link)", "series": "the same series"}[key[0]]
                if other_shown == shown:
                    raise InputError(f"{_label(other)} and {_label(seq)} are {what}: {shown}; each sequence needs its "
                                     "own image")
                raise InputError(f"{_label(other)} ({other_shown}) and {_label(seq)} ({shown}) are {what}; each "
                                 "sequence needs its own image")
            seen[key] = (seq, shown)
    for group in by_size.values():
        hashes: Dict[str, Tuple[str, Path]] = {}
        for seq, p in group if len(group) > 1 else []:
            h = _sha256(p)
            if h in hashes:
                other, q = hashes[h]
                raise InputError(f"{_label(other)} ({q}) and {_label(seq)} ({p}) have identical contents: the same "
                                 "image given twice; each sequence needs its own image")
            hashes[h] = (seq, p)


def _signature(img: sitk.Image) -> tuple:
    return (img.GetSize(), tuple(round(v, 4) for v in img.GetSpacing()), tuple(round(v, 3) for v in img.GetOrigin()))


def check_sequence_images(images: Dict[str, sitk.Image], paths: Dict[str, str]) -> None:
    """Per image: large enough to hold a brain. Across images: no two hold the same voxels (one image given for
    two sequences, e.g. converted to another format)."""
    for seq, img in images.items():
        check_head_extent(img, _label(seq), paths.get(seq) or f"the {_label(seq)} image")
    seqs = list(images)
    for i, a in enumerate(seqs):
        for b in seqs[i + 1:]:
            ia, ib = images[a], images[b]
            if _signature(ia) != _signature(ib):
                continue
            if np.array_equal(sitk.GetArrayViewFromImage(ia), sitk.GetArrayViewFromImage(ib)):
                raise InputError(f"{_label(a)} ({paths.get(a, a)}) and {_label(b)} ({paths.get(b, b)}) hold the "
                                 "same voxels: one image given for two sequences; each sequence needs its own image")


def head_mask(grid_image: sitk.Image) -> np.ndarray:
    """Voxels of the head (above a tenth of the bright intensities) on the working grid."""
    a = sitk.GetArrayViewFromImage(grid_image)
    pos = a[a > 0]
    if pos.size == 0:
        return np.zeros(a.shape, bool)
    return a > 0.1 * float(np.percentile(pos, 99))


def coverage(moving: sitk.Image, grid: sitk.Image, transform: sitk.Transform, head: np.ndarray) -> float:
    """Fraction of the reference's head that ``moving`` (registered by ``transform``) covers on ``grid``."""
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    # the resampled image is kept in a name: a view of a temporary image dangles once it is freed (a segfault in
    # Dask worker threads, where the memory is reused at once)
    resampled = sitk.Resample(ones, grid, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    cov = sitk.GetArrayViewFromImage(resampled)
    n = int(head.sum())
    return 1.0 if n == 0 else float((cov[head] > 0).sum()) / n


def check_coverage(seq: str, reference: str, where: str, frac: float, registered: bool) -> None:
    if frac < MIN_COVERAGE:
        how = "after rigid registration" if registered else "with the header alignment (no registration)"
        raise InputError(f"{_label(seq)}: {where} covers only {100 * frac:.0f} % of the {_label(reference)} head "
                         f"{how} (at least {100 * MIN_COVERAGE:.0f} % needed): a partial acquisition, another "
                         "patient's image or a broken header")


def check_working_grid(reference: sitk.Image, spacing: float, n_images: int) -> None:
    """The working-grid spacing (--spacing): a positive number of mm, and a grid that fits in memory (each sequence
    is resampled onto it as float32, with a few working copies)."""
    if not (isinstance(spacing, (int, float)) and math.isfinite(spacing) and spacing > 0):
        raise InputError(f"working grid spacing {spacing!r} mm: must be a positive number of mm (e.g. --spacing 1)")
    ext = [n * s for n, s in zip(reference.GetSize(), reference.GetSpacing())]
    nvox = float(np.prod([max(1, math.ceil(e / spacing)) for e in ext]))
    need = nvox * 4 * (n_images + 4)
    avail = available_memory_bytes()
    if avail is not None and need > avail:
        raise InputError(f"working grid spacing {spacing:g} mm: the {_fmt([round(e) for e in ext])} mm field of view "
                         f"becomes {nvox:.3g} voxels (about {need / 1e9:.3g} GB for {n_images} sequence(s)), more than "
                         f"the memory available ({avail / 1e9:.3g} GB); use a larger --spacing (1 mm is the default)")


def check_brain_mask(volume_ml: float, method: str, reference: str, where: str) -> None:
    if volume_ml < MIN_BRAIN_ML:
        raise InputError(f"{_label(reference)}: {where}: the brain mask ({method}) holds only {volume_ml:.0f} mL "
                         f"(a brain has 600-2300 mL; at least {MIN_BRAIN_ML:.0f} mL needed): the image does not show "
                         "a brain (wrong file, or a wrong voxel spacing in its header?)")


# ------------------------------------------------------------------------------------------------------------
# DICOM
# ------------------------------------------------------------------------------------------------------------
def check_dicom_series(series) -> None:
    """Every slice readable and no slice missing (a gap in the slice positions along the slice normal)."""
    where = f"DICOM series '{series.description}' in {series.folder}"
    positions, normal, placed = [], None, True
    for f in series.files:
        r = sitk.ImageFileReader()
        r.SetFileName(str(f))
        r.LoadPrivateTagsOff()
        try:
            r.Execute()
        except RuntimeError as exc:
            first = next((ln for ln in str(exc).strip().splitlines() if "ERROR" in ln.upper()), "unreadable")
            raise InputError(f"{where}: slice {Path(f).name} cannot be read ({first.strip()[:160]}); the file is "
                             "damaged: copy the series again") from None
        try:
            ipp = [float(v) for v in r.GetMetaData("0020|0032").split("\\")]
            iop = [float(v) for v in r.GetMetaData("0020|0037").split("\\")]
        except (RuntimeError, ValueError):
            placed = False  # no positions: ITK orders the slices by their file names; no gap to look for
            continue
        if normal is None:
            normal = np.cross(iop[:3], iop[3:6])
        positions.append(float(np.dot(ipp, normal)))
    damaged = _damaged_dicom_files(series)
    gap = ""
    if placed and len(positions) >= 3:
        z = np.sort(positions)
        steps = np.diff(z)
        if (steps < 1e-3).any():
            i = int(np.argmin(steps))
            raise InputError(f"{where}: two slices at the same position ({z[i]:.1f} mm): a duplicated slice or two "
                             "series mixed in one folder")
        step = float(np.median(steps))
        gaps = np.flatnonzero(steps > 1.5 * step)
        if len(gaps):
            i = int(gaps[0])
            n_missing = int(round(float(steps[gaps].sum()) / step)) - len(gaps)
            gap = (f"{n_missing} slice(s) missing: a gap of {steps[i]:.1f} mm between the slices at {z[i]:.1f} and "
                   f"{z[i + 1]:.1f} mm where slices are {step:.1f} mm apart ({len(z)} slices present)")
    if damaged:
        raise InputError(f"{where}: damaged DICOM file(s) in the folder: {', '.join(damaged[:5])} cannot be read"
                         + (f"; {gap}" if gap else "") + "; copy the complete series")
    if gap:
        raise InputError(f"{where}: {gap}; copy the complete series")


def _damaged_dicom_files(series) -> List[str]:
    """Files of the series folder that look like DICOM (DICM magic, or .dcm / .ima) but cannot be read: GDCM leaves
    a damaged slice out of the series, which then reads without it (silently, when it was the first or last)."""
    listed = {str(Path(f).resolve()) for f in series.files}
    out = []
    for q in sorted(Path(series.folder).iterdir()):
        if not q.is_file() or str(q.resolve()) in listed:
            continue
        try:
            with open(q, "rb") as fh:
                magic = fh.read(132)[128:132] == b"DICM"
        except OSError:
            magic = False
        if not (magic or q.suffix.lower() in (".dcm", ".ima")):
            continue
        rd = sitk.ImageFileReader()
        rd.SetFileName(str(q))
        try:
            rd.ReadImageInformation()
            rd.Execute()
        except RuntimeError:
            out.append(q.name)
    return out


# ------------------------------------------------------------------------------------------------------------
# user segmentations
# ------------------------------------------------------------------------------------------------------------
def same_grid(a: sitk.Image, b: sitk.Image, spacing_tol: float = 1e-4, origin_tol: float = 1e-3,
              direction_tol: float = 1e-4) -> bool:
    """Same voxel grid (size, spacing, origin, direction) within the tolerances (mm; direction cosines)."""
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=spacing_tol)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=origin_tol)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=direction_tol))


def check_segmentation(label: sitk.Image, reference: sitk.Image, where: str, reference_name: str):
    """A user's segmentation (file, case-folder mask, edited segment) against the reference sequence's grid.

    Returns (BraTS label image on its own grid, notes, warnings). Refused: non-integer or unknown labels, an empty ROI, a ROI
    of a few voxels, a grid that does not overlap the reference. Another grid that overlaps is resampled onto the
    reference (nearest neighbour) later, with a note."""
    from .case import _bounds
    from .regions import as_brats_label
    notes: List[str] = []
    if label.GetNumberOfComponentsPerPixel() != 1 or label.GetDimension() != 3:
        raise InputError(f"{where}: not a 3D label map ({label.GetDimension()}D, "
                         f"{label.GetNumberOfComponentsPerPixel()} component(s) per voxel)")
    brats, note = as_brats_label(label, where)
    if note:
        notes.append(note)
    arr = sitk.GetArrayViewFromImage(brats)
    n = int(np.count_nonzero(arr))
    if n == 0:
        raise InputError(f"{where}: the segmentation is empty (no labelled voxel): draw the tumor, or leave the "
                         "segmentation out for automatic segmentation")
    ml = n * float(np.prod(label.GetSpacing())) / 1000.0
    if n < MIN_ROI_VOXELS or ml < MIN_ROI_ML:
        raise InputError(f"{where}: the segmentation holds only {n} labelled voxel(s) ({ml:.3g} mL): too small for a "
                         f"tumor ROI (at least {MIN_ROI_VOXELS} voxels and {MIN_ROI_ML:g} mL needed for radiomic "
                         "features)")
    if same_grid(label, reference):
        return brats, notes, []
    rb, lb = _bounds(reference), _bounds(label)
    overlap = np.minimum(rb[1], lb[1]) - np.maximum(rb[0], lb[0])
    on_ref = sitk.Resample(brats, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    n_ref = int(np.count_nonzero(sitk.GetArrayViewFromImage(on_ref)))
    ml_ref = n_ref * float(np.prod(reference.GetSpacing())) / 1000.0
    if (overlap <= 0).any() or n_ref == 0:
        raise InputError(f"{where}: its grid ({_fmt(label.GetSize())} voxels of "
                         f"{_fmt([round(s, 3) for s in label.GetSpacing()])} mm) does not overlap the {reference_name} "
                         "field of view in physical space: no labelled voxel falls inside it (a segmentation of "
                         "another image or patient?)")
    if ml_ref < 0.5 * ml:
        raise InputError(f"{where}: only {100 * ml_ref / ml:.0f} % of its {ml:.1f} mL lies inside the "
                         f"{reference_name} field of view: a segmentation of another image or patient?")
    warning = (f"{where}: on another grid than {reference_name} ({_fmt(label.GetSize())} voxels of "
                 f"{_fmt([round(s, 3) for s in label.GetSpacing()])} mm against {_fmt(reference.GetSize())} of "
                 f"{_fmt([round(s, 3) for s in reference.GetSpacing()])} mm): resampled onto it (nearest neighbour, "
                 "physical coordinates)")
    return brats, notes + [warning], [warning]


def check_preset_sequences(preset, case) -> None:
    """A preset that extracts features from none of the case's sequences: refused before the image work."""
    why = preset_inputs_missing(preset, case.images)
    if why:
        raise InputError(why)


def preset_inputs_missing(preset, images, derive: bool = True) -> Optional[str]:
    """Why a preset cannot run on these images (keys of a case's or a preprocessed case's images), or None. A preset
    on a derived image (rCBV) needs its input (a CBV map): the message names it; no other sequence replaces it.
    ``derive``: a derived image counts as present when its input is (before the pipeline computes it)."""
    from .case import SEQUENCE_NAMES
    from .sequences import DERIVED, IMAGE_KEYS
    if [s for s in preset.sequences if s in images or (derive and DERIVED.get(s) in images)]:
        return None
    have = ", ".join(SEQUENCE_NAMES[s] for s in IMAGE_KEYS if s in images) or "none"
    if set(preset.sequences) <= {"rcbv", "cbv"}:
        return (f"preset {preset.name} ({preset.source}) needs a DSC-perfusion CBV map (its features are computed on "
                f"rCBV, CBV normalised to contralateral white matter); the case has {have} and no CBV: give --cbv FILE "
                "(or a cbv / rcbv file in the case folder). No other sequence is used instead.")
    return (f"preset {preset.name} ({preset.source}) needs one of "
            f"{', '.join(SEQUENCE_NAMES[s] for s in preset.sequences)}; the case has {have}")