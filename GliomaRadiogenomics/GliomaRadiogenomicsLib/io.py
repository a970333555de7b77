"""File input/output: clear errors for bad inputs, atomic writes, never overwrite without a backup copy."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Union

import numpy as np
import SimpleITK as sitk

PathLike = Union[str, os.PathLike]
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


class InputError(ValueError):
    """A user-supplied input is missing or unusable. The message names the file and the problem."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in IMAGE_SUFFIXES:
        if name.endswith(s):
            return s
    return path.suffix.lower()


def check_compressed(p: Path, role: str = "image") -> int | None:
    """A gzip file (.nii.gz) is decompressed to its end once, which checks its CRC-32 and length: ITK reads a
    truncated file (an interrupted copy) without complaint and returns a volume with missing slices. Returns the
    decompressed length (None for a file that is not gzip-compressed)."""
    import gzip
    import zlib
    with open(p, "rb") as fh:
        if fh.read(2) != b"\x1f\x8b":
            if p.name.lower().endswith(".gz"):
                raise InputError(f"{role}: {p} is named .gz but is not gzip-compressed (damaged or renamed file)")
            return None
    total = 0
    try:
        with gzip.open(p, "rb") as fh:
            while True:
                block = fh.read(1 << 22)
                if not block:
                    break
                total += len(block)
    except (EOFError, OSError, zlib.error) as exc:
        raise InputError(f"{role}: {p} is damaged or incomplete (gzip: {exc}); copy the file again") from None
    return total


def read_image(path: PathLike, role: str = "image", label: bool = False) -> sitk.Image:
    """Read a 3D medical image (NIfTI / NRRD / MetaImage). Raises InputError naming the file and the problem.

    The header is checked before any voxel is read (checks.check_header: vector / complex, non-3D, voxel spacing,
    declared size against the memory available), then the data against the header (gzip CRC and length, voxel
    count). ``label``: a label map (segmentation / mask), which may be constant (empty; checks.check_segmentation
    says so)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{role}: file not found: {p}")
    if p.is_dir():
        raise InputError(f"{role}: {p} is a folder; give a NIfTI (.nii/.nii.gz) or NRRD (.nrrd) file")
    if p.stat().st_size == 0:
        raise InputError(f"{role}: file is empty: {p}")
    if _suffix(p) not in IMAGE_SUFFIXES:
        raise InputError(f"{role}: {p} has an unsupported extension '{_suffix(p)}'; "
                         f"supported: {', '.join(IMAGE_SUFFIXES)}")
    from .checks import check_data_length, check_header
    check_header(p, role)
    check_data_length(p, role, check_compressed(p, role))
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        first = next((ln for ln in lines if "ERROR" in ln.upper() and ":" in ln), lines[0] if lines else "unreadable")
        raise InputError(f"{role}: cannot read {p} as an image ({first[:200]})") from None
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{role}: {p} has {img.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "a scalar (grey-level) volume is needed")
    if img.GetDimension() == 4:
        size = img.GetSize()
        if size[3] != 1:
            raise InputError(f"{role}: {p} is 4D ({size[3]} volumes); give a single 3D volume")
        img = img[:, :, :, 0]
    if img.GetDimension() != 3:
        raise InputError(f"{role}: {p} is {img.GetDimension()}D; a 3D volume is needed")
    if min(img.GetSize()) < 2:
        raise InputError(f"{role}: {p} has size {img.GetSize()}; a 3D volume with several slices is needed")
    arr = sitk.GetArrayViewFromImage(img)
    if not np.isfinite(arr).all():
        raise InputError(f"{role}: {p} contains NaN or infinite voxel values")
    if not label and float(arr.max()) == float(arr.min()):
        raise InputError(f"{role}: {p} is constant (every voxel = {float(arr.max())}); is it the right file?")
    return img


def backup_existing(path: PathLike) -> Path | None:
    """If ``path`` exists, move it aside to ``<name>.bak-<timestamp>`` and return the backup path."""
    p = Path(path)
    if not p.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = p.with_name(f"{p.name}.bak-{stamp}")
    n = 1
    while dest.exists():
        dest = p.with_name(f"{p.name}.bak-{stamp}-{n}")
        n += 1
    shutil.move(str(p), str(dest))
    return dest


def _atomic_target(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name
    suffix = ".nii.gz" if name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".tmp{suffix}", dir=str(path.parent))
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
    return Path(tmp)


@contextlib.contextmanager
def _atomic(path: Path, backup: bool):
    """Yield a temporary path in the target's folder; on success back up the old file (optional) and rename."""
    tmp = _atomic_target(path)
    try:
        yield tmp
        if backup:
            backup_existing(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: PathLike, data: bytes, backup: bool = False) -> Path:
    p = Path(path)
    with _atomic(p, backup) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return p


def atomic_write_text(path: PathLike, text: str, backup: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), backup=backup)


def atomic_write_json(path: PathLike, obj, backup: bool = False) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n", backup=backup)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_image(img: sitk.Image, path: PathLike, backup: bool = False, compress: bool = True) -> Path:
    """Write an image atomically (temporary file in the same folder, then rename)."""
    p = Path(path)
    with _atomic(p, backup) as tmp:
        sitk.WriteImage(img, str(tmp), compress)
    return p
