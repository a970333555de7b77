"""Files uploaded through the browser (trame-slicer's Open Files / Open Directory buttons) -> a case folder on the
server, loaded like any other case folder (GliomaMRML.logic.load_case_folder_into_scene: sequences by name, label
maps never taken for a sequence, case.json for the clinical data and the case id).

The upload is written into a hidden staging folder under ``<work>/uploads``, checked there with the same case-folder
discovery (``case.load_case_folder``: every image read with io.read_image's checks, FLAIR or T2 present, no
ambiguous sequence, case.json valid), and only then renamed, in one step, to a fresh folder
``<work>/uploads/upload-<YYYYmmdd-HHMMSS>[-n]``: a case folder is either complete and checked, or absent. A refused
upload leaves nothing behind, and the message names the uploaded file and the problem (without the server's path).

DICOM: .dcm files (or files with the DICOM preamble) of one or more series, uploaded as files or in a .zip archive
(the archive may also hold NIfTI / NRRD images and case.json), are converted in the staging folder by the project's
DICOM reading (inputs.find_dicom_series: the series by SeriesInstanceUID; inputs.classify_dicom: the sequence from
the tags; DicomSeries.read: every slice readable, none missing, then SimpleITK's ImageSeriesReader) into
``<sequence>.nii.gz`` (io.write_image, atomic); the raw DICOM files are not kept. A series whose sequence the tags do
not tell is left out and named in the status line.

Old uploads: ``remove_old_uploads`` removes the upload folders (and staging folders left by a killed server) under
``<work>/uploads`` whose newest file is older than a configurable age (GliomaWebApp(upload_max_age_s=),
`web --upload-max-age-hours`); the app calls it at start and before each new upload, never removing a folder in use
(the loaded case's).
"""
from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, List, Optional, Tuple

from GliomaRadiogenomicsLib.io import IMAGE_SUFFIXES, InputError

CASE_JSON = "case.json"
_BAD_NAME = re.compile(r"[\x00-\x1f/\\]")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
ZIP_SUFFIX = ".zip"
MAX_ZIP_BYTES = 8 * 1024 ** 3            # an archive unpacking to more than this is refused (before unpacking)
UPLOAD_PREFIX = "upload-"                # the case folders (``_fresh_name``)
STAGING_PREFIX = ".incoming-"            # the staging folders
DICOM_STAGING = ".dicom"                 # the raw DICOM files inside a staging folder, until converted
DEFAULT_UPLOAD_MAX_AGE_S = 7 * 24 * 3600.0  # uploads untouched for a week are removed (GliomaWebApp's default)


@dataclass
class UploadedCase:
    folder: Path                                        # the fresh case folder (already renamed into place)
    files: List[str]                                    # the uploaded file names, as written
    unused: List[str] = field(default_factory=list)     # images not taken as a sequence or a mask (name unknown)
    messages: List[str] = field(default_factory=list)   # case-folder discovery's notes (label maps set aside, ...)


def _is_case_file(name: str) -> bool:
    low = name.lower()
    return low == CASE_JSON or any(low.endswith(s) for s in IMAGE_SUFFIXES)


def _is_dicom(name: str, data: bytes) -> bool:
    """A DICOM file by its name (.dcm, .dicom, .ima) or its preamble ('DICM' at byte 128; scanners' exports often
    have no suffix)."""
    return name.lower().endswith(DICOM_SUFFIXES) or data[128:132] == b"DICM"


def _zip_members(name: str, data: bytes) -> List[Tuple[str, str, bytes]]:
    """(path inside the archive, label for messages "<archive>: <path>", bytes) of each file of an uploaded .zip;
    folders, macOS resource forks (__MACOSX/) and hidden files skipped. Refused, naming the archive (and the member),
    when it is not a readable zip, a member's path leaves the archive (absolute or '..'), a member is damaged
    (CRC) or encrypted, it nests another archive, or it unpacks to more than MAX_ZIP_BYTES."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
        raise InputError(f"{name}: not a readable zip archive ({exc})") from None
    total = sum(i.file_size for i in infos)
    if total > MAX_ZIP_BYTES:
        raise InputError(f"{name}: unpacks to {total / 1024 ** 3:.1f} GiB, more than the "
                         f"{MAX_ZIP_BYTES / 1024 ** 3:.0f} GiB an upload may hold")
    out = []
    for info in infos:
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if info.is_dir():
            continue
        if path.is_absolute() or ".." in path.parts or _BAD_NAME.search(path.name) or not path.name:
            raise InputError(f"{name}: member {info.filename!r} has a path outside the archive")
        if path.parts[0] == "__MACOSX" or any(part.startswith(".") for part in path.parts):
            continue
        label = f"{name}: {info.filename}"
        if info.flag_bits & 0x1:
            raise InputError(f"{label}: encrypted (upload an archive without a password)")
        if path.name.lower().endswith(ZIP_SUFFIX):
            raise InputError(f"{label}: an archive inside the archive (unpack it, or upload it on its own)")
        try:
            content = zf.read(info)
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
            raise InputError(f"{label}: cannot be unpacked ({exc})") from None
        if not content:
            raise InputError(f"{label}: file is empty")
        out.append((str(path), label, content))
    if not out:
        raise InputError(f"{name}: the archive holds no file")
    return out


def _client_file(f: dict) -> tuple:
    """(name, bytes) of one file of trame's upload (a dict: name, size, type, lastModified, content as bytes or a
    list of byte chunks); refused, naming it, when the name is not a plain file name or the content is missing /
    incomplete / empty."""
    from trame.app.file_upload import ClientFile
    cf = ClientFile(f)
    name = cf.name or ""
    if not name or name in (".", "..") or _BAD_NAME.search(name) or name != Path(name).name:
        raise InputError(f"uploaded file name {name!r} is not a plain file name")
    if cf.content is None:
        raise InputError(f"{name}: the upload carried no content")
    data = bytes(cf.content)
    if cf.size is not None and int(cf.size) != len(data):
        raise InputError(f"{name}: upload incomplete ({len(data)} of {int(cf.size)} bytes received)")
    if not data:
        raise InputError(f"{name}: file is empty")
    return name, data


def _strip(text: str, folder: Path) -> str:
    """A message about the staging folder, without the server's paths (the user knows the files by name)."""
    text = str(text).replace(str(folder) + os.sep, "")
    return text.replace(str(folder), "the upload").replace(folder.name, "the upload")


def _fresh_name(root: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = root / f"{UPLOAD_PREFIX}{stamp}", 1
    while target.exists():
        n += 1
        target = root / f"{UPLOAD_PREFIX}{stamp}-{n}"
    return target


def write_uploaded_case(files: List[dict], root: os.PathLike) -> UploadedCase:
    """Write an upload (trame file dicts) into a fresh case folder under ``root`` and check it as a case folder.
    Images (NIfTI / NRRD / MetaImage) and case.json are written as uploaded; DICOM files (given as files or in a
    .zip, which may hold images and case.json too) are converted to ``<sequence>.nii.gz`` (``_convert_dicom``).
    Raises InputError (the message names the file) for: no files, a file that is none of these, two files of the
    same name, an incomplete or empty upload, a bad archive, a DICOM file that is no readable series' slice, a
    damaged or incomplete series, two series of one sequence, an unreadable image, an invalid case.json, no FLAIR /
    T2, an ambiguous sequence; nothing is left under ``root`` then."""
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.inputs import classify_name, is_mask_name
    from GliomaRadiogenomicsLib.io import _fsync_dir
    if not files:
        raise InputError("no file was uploaded")
    uploaded = [_client_file(f) for f in files]
    items, dicoms, seen = [], [], set()  # (name, data); (path under the DICOM staging folder, label, data)

    def add(name: str, rel: str, label: str, data: bytes):
        if _is_case_file(name):
            if name.lower() in seen:
                raise InputError(f"{label}: uploaded twice")
            seen.add(name.lower())
            items.append((name, data))
        elif _is_dicom(name, data):
            if rel.lower() in seen:
                raise InputError(f"{label}: uploaded twice")
            seen.add(rel.lower())
            dicoms.append((rel, label, data))
        else:
            raise InputError(f"{label}: not a case file (upload the images as NIfTI .nii / .nii.gz, NRRD or "
                             f"MetaImage, named by sequence, or DICOM files (.dcm) of the series, or a .zip of "
                             f"these; optionally {CASE_JSON}; a scene is loaded as a case folder on the server)")
    for name, data in uploaded:
        if name.lower().endswith(ZIP_SUFFIX):
            for rel, label, content in _zip_members(name, data):
                add(PurePosixPath(rel).name, f"{name}/{rel}", label, content)
        else:
            add(name, name, name, data)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
    try:
        for name, data in items:
            _write_synced(staging / name, data)
        notes, unrecognised = _convert_dicom(staging, dicoms) if dicoms else ([], [])
        _fsync_dir(staging)
        try:  # the same discovery and checks as the Load that follows (a refused upload never becomes a folder)
            case = load_case_folder(staging)
        except InputError as exc:
            raise InputError(_strip(exc, staging) + (f"; DICOM series whose sequence their tags do not tell: "
                                                     f"{', '.join(unrecognised)}" if unrecognised else "")) from None
        messages = notes + [_strip(m, staging) for m in case.messages]
        target = _fresh_name(root)
        os.rename(staging, target)  # the case folder appears complete, in one step
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    used = {Path(p).name for p in case.paths.values() if isinstance(p, (str, Path))}
    unused = [n for n, _ in items if n.lower() != CASE_JSON and n not in used and not is_mask_name(n)
              and not classify_name(n)] + unrecognised
    return UploadedCase(target, [n for n, _ in uploaded], unused, messages)


def _write_synced(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _convert_dicom(staging: Path, dicoms: List[Tuple[str, str, bytes]]) -> Tuple[List[str], List[str]]:
    """The uploaded DICOM files -> one ``<sequence>.nii.gz`` per series in ``staging`` (the project's DICOM reading:
    inputs.find_dicom_series, classify_dicom, DicomSeries.read with its checks; io.write_image). Returns (notes for
    the status line, the series left out because their tags do not tell the sequence). InputError, naming the file
    or the series: a file that is no readable series' slice, a damaged or incomplete series, two series of one
    sequence, a series converted to the name of an uploaded image. The raw files are removed."""
    from GliomaRadiogenomicsLib.inputs import find_dicom_series, group_dicom_series
    from GliomaRadiogenomicsLib.io import write_image
    from GliomaRadiogenomicsLib.sequences import SEQUENCE_NAMES
    src = staging / DICOM_STAGING
    labels = {}
    for rel, label, data in dicoms:
        _write_synced(src / rel, data)
        labels[str((src / rel).resolve())] = label
    series = find_dicom_series(src)
    in_series = {str(Path(f).resolve()) for s in series for f in s.files}
    stray = [label for path, label in labels.items() if path not in in_series]
    if stray:
        raise InputError(f"{stray[0]}: not a readable DICOM image (no DICOM series could be read from it)"
                         + (f"; also {', '.join(stray[1:4])}" + (" ..." if len(stray) > 4 else "")
                            if len(stray) > 1 else ""))

    def named(s) -> str:
        return f"DICOM series '{s.description or s.series_uid}' ({len(s.files)} files)"
    groups, left_out = group_dicom_series(series)
    for seq, cands in groups.items():
        if len(cands) > 1:
            raise InputError(f"{named(cands[0])} and {named(cands[1])} are both {SEQUENCE_NAMES[seq]}: upload one "
                             f"series per sequence")
    unrecognised = [named(s) for s in left_out]
    notes = []
    for seq, (s,) in groups.items():
        out = staging / f"{seq}.nii.gz"
        if out.exists() or any(p.name.lower() == out.name for p in staging.iterdir()):
            raise InputError(f"{out.name}: uploaded, and {named(s)} is {SEQUENCE_NAMES[seq]} too: upload one of them")
        try:
            img = s.read()
        except InputError as exc:
            raise InputError(_strip(exc, src)) from None
        write_image(img, out)
        notes.append(f"{SEQUENCE_NAMES[seq]} converted from {named(s)}")
    shutil.rmtree(src)
    return notes, unrecognised


def _last_modified(folder: Path) -> float:
    """The newest modification time of ``folder`` and everything under it (links not followed)."""
    newest = folder.lstat().st_mtime
    for base, dirs, names in os.walk(folder):
        for n in dirs + names:
            try:
                newest = max(newest, os.lstat(os.path.join(base, n)).st_mtime)
            except OSError:  # removed meanwhile
                continue
    return newest


def remove_old_uploads(root: os.PathLike, max_age_s: Optional[float], in_use: Iterable = (),
                       now: Optional[float] = None) -> List[Path]:
    """Remove the upload folders (``upload-*``) and staging folders (``.incoming-*``) directly under ``root`` whose
    newest file (``_last_modified``) is older than ``max_age_s`` seconds; never one in ``in_use`` (folders, e.g. the
    loaded case's, or a folder inside one), nor anything else under ``root``, nor what a link points to. ``max_age_s``
    None or <= 0: nothing is removed. Returns the folders removed."""
    root = Path(root)
    if not max_age_s or max_age_s <= 0 or not root.is_dir():
        return []
    keep = [Path(p).resolve() for p in in_use if p]
    now = time.time() if now is None else float(now)
    removed = []
    for d in sorted(root.iterdir()):
        if d.is_symlink() or not d.is_dir() or not d.name.startswith((UPLOAD_PREFIX, STAGING_PREFIX)):
            continue
        real = d.resolve()
        if any(k == real or real in k.parents for k in keep):
            continue
        if now - _last_modified(d) <= max_age_s:
            continue
        shutil.rmtree(d, ignore_errors=True)
        if not d.exists():
            removed.append(d)
    return removed
