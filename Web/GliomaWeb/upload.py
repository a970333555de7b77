"""Files uploaded through the browser (trame-slicer's Open Files / Open Directory buttons) -> a case folder on the
server, loaded like any other case folder (GliomaMRML.logic.load_case_folder_into_scene: sequences by name, label
maps never taken for a sequence, case.json for the clinical data and the case id).

The upload is written into a hidden staging folder under ``<work>/uploads``, checked there with the same case-folder
discovery (``case.load_case_folder``: every image read with io.read_image's checks, FLAIR or T2 present, no
ambiguous sequence, case.json valid), and only then renamed, in one step, to a fresh folder
``<work>/uploads/upload-<YYYYmmdd-HHMMSS>[-n]``: a case folder is either complete and checked, or absent. A refused
upload leaves nothing behind, and the message names the uploaded file and the problem (without the server's path).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

from GliomaRadiogenomicsLib.io import IMAGE_SUFFIXES, InputError

CASE_JSON = "case.json"
_BAD_NAME = re.compile(r"[\x00-\x1f/\\]")


@dataclass
class UploadedCase:
    folder: Path                                        # the fresh case folder (already renamed into place)
    files: List[str]                                    # the uploaded file names, as written
    unused: List[str] = field(default_factory=list)     # images not taken as a sequence or a mask (name unknown)
    messages: List[str] = field(default_factory=list)   # case-folder discovery's notes (label maps set aside, ...)


def _is_case_file(name: str) -> bool:
    low = name.lower()
    return low == CASE_JSON or any(low.endswith(s) for s in IMAGE_SUFFIXES)


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
    target, n = root / f"upload-{stamp}", 1
    while target.exists():
        n += 1
        target = root / f"upload-{stamp}-{n}"
    return target


def write_uploaded_case(files: List[dict], root: os.PathLike) -> UploadedCase:
    """Write an upload (trame file dicts) into a fresh case folder under ``root`` and check it as a case folder.
    Raises InputError (the message names the file) for: no files, a file that is not an image (NIfTI / NRRD /
    MetaImage) or case.json, two files of the same name, an incomplete or empty upload, an unreadable image, an
    invalid case.json, no FLAIR / T2, an ambiguous sequence; nothing is left under ``root`` then."""
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.inputs import classify_name, is_mask_name
    from GliomaRadiogenomicsLib.io import _fsync_dir
    if not files:
        raise InputError("no file was uploaded")
    items, seen = [], set()
    for f in files:
        name, data = _client_file(f)
        if not _is_case_file(name):
            raise InputError(f"{name}: not a case file (upload the images as NIfTI .nii / .nii.gz, NRRD or "
                             f"MetaImage, named by sequence, and optionally {CASE_JSON}; a DICOM folder or a "
                             "scene is loaded as a case folder on the server)")
        if name.lower() in seen:
            raise InputError(f"{name}: uploaded twice")
        seen.add(name.lower())
        items.append((name, data))
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=root))
    try:
        for name, data in items:
            with open(staging / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        _fsync_dir(staging)
        try:  # the same discovery and checks as the Load that follows (a refused upload never becomes a folder)
            case = load_case_folder(staging)
        except InputError as exc:
            raise InputError(_strip(exc, staging)) from None
        messages = [_strip(m, staging) for m in case.messages]
        target = _fresh_name(root)
        os.rename(staging, target)  # the case folder appears complete, in one step
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    used = {Path(p).name for p in case.paths.values() if isinstance(p, (str, Path))}
    unused = [n for n, _ in items if n.lower() != CASE_JSON and n not in used and not is_mask_name(n)
              and not classify_name(n)]
    return UploadedCase(target, [n for n, _ in items], unused, messages)
