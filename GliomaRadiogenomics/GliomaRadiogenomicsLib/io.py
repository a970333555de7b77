"""File input/output: clear errors for bad inputs, atomic writes of single files, output sets (all the outputs of
a run put in place together: ``output_set``), clear errors for unusable output folders (``check_output_folder``)."""
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
    """If ``path`` exists, move it aside to ``<name>.bak-<timestamp>`` and return the backup path. Opt-in only
    (``backup=True``); nothing in the package asks for it: runs write output sets (``output_set``), whose previous
    set is kept, on request, as one dated copy."""
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


# ----------------------------------------------------------------------------------------------------------------
# Output sets: all the outputs of one run appear together, or not at all
# ----------------------------------------------------------------------------------------------------------------
SET_MANIFEST = ".complete.json"
SET_FORMAT = "glioma-radiogenomics output set"
#: names this package writes into an output folder (run, demo, segment, batch). In a folder without a manifest
#: (written before output sets existed) files with these names count as earlier outputs of ours.
OUTPUT_NAMES = frozenset({"predictions.json", "features.csv", "features.provenance.json", "segmentation.nii.gz",
                          "brain_mask.nii.gz", "report.html", "segmentation.json", "summary.pdf", "error.txt",
                          "segmentation.provenance.json", "segmentation.work.nii.gz",
                          "segmentation.brain_mask.work.nii.gz", "segmentation.preprocessing.json"})
#: the traceback of a failed run (cli.main): part of whatever the folder held before, never of a user's own files
RUN_LOGS = frozenset({"error.log"})
MIN_FREE_MB = 8.0   # the outputs of one case take 1-5 MB (report.html with its figures is the largest)
_TEMP_KINDS = ("staging", "old", "prev", "trash", "lock")
PROBE_PREFIX = ".glioma-write-test-"  # check_output_folder's probe where unnamed files are not available


def _output_problem(path: Path, exc: OSError, what: str = "output folder", where: Path | None = None) -> InputError:
    """InputError naming the output path and what the system said (disk full, read-only, ...)."""
    import errno
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        why = "no space left on the device (disk full or quota exceeded); free some space or choose another folder"
    elif code == errno.EROFS:
        why = "read-only file system"
    elif code in (errno.EACCES, errno.EPERM):
        why = "permission denied (not writable)"
    elif code == errno.ENOTDIR:
        why = "a part of the path is a file, not a folder"
    else:
        why = exc.strerror or str(exc)
    if where is not None:
        where = f" (in {where})" if str(where) != str(path) else ""
    else:
        where = getattr(exc, "filename", None)
        where = f" ({where})" if where and str(where) != str(path) else ""
    return InputError(f"{what} {path}: cannot write: {why}{where}")


def _disk_full(path: Path, what: str = "output folder") -> InputError:
    import errno
    return _output_problem(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), what)


def check_output_folder(path: PathLike, min_free_mb: float = MIN_FREE_MB, what: str = "output folder") -> Path:
    """Before any heavy work: ``path`` is a folder, or can be created as one, that we can write with at least
    ``min_free_mb`` MB free. Raises InputError naming the path and the problem (an existing file, a file in the
    path, read-only or unwritable, disk full). Leaves nothing behind (the write probe is removed; missing folders
    are not created)."""
    import errno
    p = Path(os.path.abspath(path))
    if p.exists() and not p.is_dir():
        raise InputError(f"{what} {p} is an existing file, not a folder; give a folder path (created if missing)")
    anc = p
    while not os.path.lexists(anc) and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise InputError(f"{what} {p} cannot be created: {anc} is a file (or a broken link), not a folder")
    probe = None
    try:
        try:  # an unnamed file (Linux): nothing is left behind even if we are killed right now
            fd = os.open(str(anc), os.O_TMPFILE | os.O_WRONLY, 0o600)
        except (AttributeError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=str(anc))
    except OSError as exc:
        raise _output_problem(p, exc, what, anc) from None
    try:
        os.write(fd, b"\0" * 65536)
        os.fsync(fd)
    except OSError as exc:
        raise _output_problem(p, exc, what, anc) from None
    finally:
        os.close(fd)
        if probe:
            with contextlib.suppress(OSError):
                os.unlink(probe)
    free_mb = shutil.disk_usage(str(anc)).free / 2 ** 20
    if free_mb < min_free_mb:
        raise InputError(f"{what} {p}: not enough free disk space (no space left, disk full?): {free_mb:.1f} MB "
                         f"free on its file system, at least {min_free_mb:.0f} MB needed; free some space or choose "
                         "another folder")
    return p


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # Windows: folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path, fsync: bool = False) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (the one file-hash helper: weights, bundles, inputs, output sets);
    ``fsync``: also flush the file to disk (output sets)."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb+" if fsync else "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
        if fsync:
            os.fsync(fh.fileno())
    return h.hexdigest()


def _sha256_fsync(path: Path) -> str:
    return sha256_file(path, fsync=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one system call (Linux renameat2 RENAME_EXCHANGE, macOS renamex_np RENAME_SWAP).
    False when this system or file system cannot; then the caller renames twice."""
    import ctypes
    import errno
    import sys
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if sys.platform.startswith("linux"):
            fn = libc.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            rc = fn(-100, os.fsencode(str(a)), -100, os.fsencode(str(b)), 2)   # AT_FDCWD, RENAME_EXCHANGE
        elif sys.platform == "darwin":
            fn = libc.renamex_np
            fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
            rc = fn(os.fsencode(str(a)), os.fsencode(str(b)), 2)               # RENAME_SWAP
        else:
            return False
    except (OSError, AttributeError, TypeError):
        return False
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EINVAL), errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


class _Lock:
    """An exclusive lock file held while a run writes its set: a run killed with kill -9 loses it, so the next run
    knows the leftovers are abandoned. Without flock (Windows, some network file systems) nothing is locked and
    leftovers of other runs are left alone."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = os.open(str(path), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            import fcntl
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (ImportError, OSError):
            pass

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(self.fd)
            self.fd = None


def _abandoned(lock: Path) -> bool:
    """True when no live process holds this lock (its run was killed, or it is gone)."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(str(lock), os.O_RDWR)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _load_manifest(path: Path) -> dict | None:
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict) or m.get("format") != SET_FORMAT or not isinstance(m.get("files"), dict):
        return None
    return m


def read_output_set(folder: PathLike, set_name: str | None = None, verify: bool = False) -> dict | None:
    """The manifest of the complete output set in ``folder`` (``set_name``: a named set such as an extract table),
    or None when there is none or it is incomplete: every listed file must be there with its listed size (and
    SHA-256 with ``verify``)."""
    import hashlib
    folder = Path(folder)
    m = _load_manifest(folder / (SET_MANIFEST if set_name is None else f".{set_name}{SET_MANIFEST}"))
    if m is None:
        return None
    for name, info in m["files"].items():
        f = folder / name
        if not f.is_file() or f.stat().st_size != info.get("bytes"):
            return None
        if verify and hashlib.sha256(f.read_bytes()).hexdigest() != info.get("sha256"):
            return None
    return m


class OutputSet:
    """All the outputs of one run, written into a staging folder and put in place together at the end.

    Use ``with output_set(out_dir, keep_previous=N) as staging:`` and write every output into ``staging`` by its
    plain name. Entering checks the output folder first (an existing file, not writable, disk full: InputError
    naming the path, before any heavy work). Leaving without an exception commits the set; an exception discards
    it and the output folder stays as it was (disk full while writing: InputError).

    The rule for what is replaced:

    * The set's own files are those listed in the manifest ``.complete.json`` that every set holds, written last
      (a reader can tell a complete set: ``read_output_set``). A folder written before output sets existed has no
      manifest; there, files with our output names (``OUTPUT_NAMES``) count as the previous set.
    * ``error.log`` (the traceback of a failed run) goes with the previous set. Anything else in the output
      folder (your own files, input images, a ``demo_case`` folder, old ``*.bak-*`` copies) is never moved,
      replaced or deleted.
    * When the output folder is new, empty or holds nothing but the previous set, the new set replaces the folder
      as a whole: staging folder ``.<name>.staging-<id>`` beside it, then one atomic swap of the two folders
      (renameat2 RENAME_EXCHANGE; two renames where the system lacks it). A reader sees the previous set or the new
      one, never a mix.
    * When it also holds other files (or it is a mount point, the current folder, or its parent is not writable),
      the set's files are replaced inside it: the manifest is removed, each file is renamed into place (atomic per
      file), files of the previous set that the new one lacks are removed, and the new manifest comes last. A run
      killed inside these few renames leaves the folder without a manifest; the next run into it finishes the
      commit first.
    * ``keep_previous=0`` (default): the previous set is removed. ``keep_previous=N``: the previous set is kept as
      one dated folder ``<name>.previous-<YYYYmmdd-HHMMSS>`` beside the output folder (inside it when the parent is
      not writable), at most N of them (the oldest removed). Nothing is ever backed up file by file.
    * Leftovers of a run killed with kill -9 (staging folders, their lock files) are found by their lock, which
      died with the run, and cleaned up (or rolled forward, see above) by the next run into the same folder.

    ``set_name``: a named set of files inside a folder shared with other files (``extract``: ``cohort.csv``, its
    provenance and failures), with manifest ``.<set_name>.complete.json`` and copies ``<set_name>.previous-*`` in
    that folder; always replaced file by file as above.
    """

    def __init__(self, out_dir: PathLike, keep_previous: int = 0, set_name: str | None = None,
                 min_free_mb: float = MIN_FREE_MB, what: str = "output folder"):
        import uuid
        if int(keep_previous) < 0:
            raise InputError(f"keep-previous must be 0 or more (got {keep_previous})")
        self.given = Path(out_dir)
        self.folder = Path(os.path.realpath(out_dir))
        self.keep_previous = int(keep_previous)
        self.named = set_name is not None
        self.name = set_name if self.named else self.folder.name
        self.manifest_name = f".{set_name}{SET_MANIFEST}" if self.named else SET_MANIFEST
        self.min_free_mb = min_free_mb
        self.what = what
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tmp_base = self.folder if self.named else self.folder.parent
        self.mode = "files" if self.named else "folder"
        self.path: Path | None = None
        self._lock: _Lock | None = None
        self._committing = False

    # names ---------------------------------------------------------------------------------------------------
    def _temp(self, kind: str, token: str | None = None, base: Path | None = None) -> Path:
        return (base or self.tmp_base) / f".{self.name}.{kind}-{token or self.token}"

    def _temp_token(self, entry: str) -> tuple | None:
        prefix = f".{self.name}."
        if not entry.startswith(prefix):
            return None
        kind, sep, token = entry[len(prefix):].partition("-")
        return (kind, token) if sep and kind in _TEMP_KINDS and token else None

    def _is_previous_copy(self, entry: str) -> bool:
        return entry.startswith(f"{self.name}.previous-")

    def _ours(self, entry: str, manifest: dict | None) -> bool:
        if entry == self.manifest_name or self._temp_token(entry) or self._is_previous_copy(entry) or \
                entry.startswith(PROBE_PREFIX):
            return True
        if not self.named and entry in RUN_LOGS:
            return True
        if manifest is not None:
            return entry in manifest["files"]
        return not self.named and entry in OUTPUT_NAMES

    def _foreign(self, folder: Path) -> list:
        if not folder.is_dir():
            return []
        m = _load_manifest(folder / self.manifest_name)
        return sorted(e for e in os.listdir(folder) if not self._ours(e, m))

    # enter / exit ----------------------------------------------------------------------------------------------
    def __enter__(self) -> Path:
        check_output_folder(self.given, self.min_free_mb, self.what)
        try:
            self._recover()
        except OSError:   # leftovers we cannot clean must not stop a run
            pass
        if not self.named:
            cwd = os.path.realpath(os.getcwd())
            if (self.folder.is_dir() and (os.path.ismount(self.folder) or self._foreign(self.folder))) or \
                    cwd == str(self.folder) or cwd.startswith(str(self.folder) + os.sep):
                self.mode = "files"
                if os.path.ismount(self.folder):
                    self.tmp_base = self.folder
        try:
            self.tmp_base.mkdir(parents=True, exist_ok=True)
            self._start()
        except OSError as exc:
            if self.named or not self.folder.is_dir() or self.tmp_base == self.folder:
                raise _output_problem(self.given, exc, self.what) from None
            self.mode, self.tmp_base = "files", self.folder  # the parent is not writable: stage inside the folder
            try:
                self._start()
            except OSError as exc2:
                raise _output_problem(self.given, exc2, self.what) from None
        return self.path

    def _start(self) -> None:
        self._lock = _Lock(self._temp("lock"))
        try:
            self.path = self._temp("staging")
            self.path.mkdir()
        except OSError:
            self._lock.release()
            self._lock = None
            raise

    def __exit__(self, exc_type, exc, tb) -> bool:
        import errno
        try:
            if exc_type is None:
                try:
                    self._commit()
                    return False
                except OSError as err:
                    if not self._committing:   # once the output folder is touched, the next run finishes it
                        self._discard()
                    raise _output_problem(self.given, err, self.what) from None
            full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
            if not full and isinstance(exc, Exception) and not isinstance(exc, InputError):
                # image writers report a full disk in their own words: ask the file system
                with contextlib.suppress(OSError):
                    full = shutil.disk_usage(str(self.path)).free < 2 ** 20
            self._discard()
            if full:
                raise _disk_full(self.given, self.what) from exc
            return False
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _discard(self) -> None:
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)

    # commit ----------------------------------------------------------------------------------------------------
    def _commit(self) -> None:
        entries = {}
        for name in sorted(os.listdir(self.path)):
            f = self.path / name
            if f.is_symlink() or not f.is_file():
                raise RuntimeError(f"output set {self.given}: {name} is not a plain file (sets are flat)")
            entries[name] = {"bytes": f.stat().st_size, "sha256": _sha256_fsync(f)}
        old = _load_manifest(self.folder / self.manifest_name)
        manifest = {"format": SET_FORMAT, "version": 1, "id": self.token,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": entries,
                    "replaces": sorted(set(old["files"]) - set(entries)) if old else []}
        atomic_write_json(self.path / self.manifest_name, manifest)
        _fsync_dir(self.path)
        self._committing = True
        if self.mode == "folder" and not self._foreign(self.folder) and self._swap_folders():
            return
        self._commit_files(self.path, manifest, old)
        shutil.rmtree(self.path, ignore_errors=True)

    def _swap_folders(self) -> bool:
        """The staging folder takes the output folder's place in one step; the previous set is retired."""
        if not self.folder.exists():
            try:
                os.rename(self.path, self.folder)
                _fsync_dir(self.folder.parent)
                return True
            except OSError:
                if not self.folder.exists():
                    raise
        with contextlib.suppress(OSError):
            shutil.copymode(self.folder, self.path)  # the folder keeps its permissions
        if _exchange(self.path, self.folder):
            old = self.path                             # now holds the previous set
        else:
            old = self._temp("old")
            try:
                os.rename(self.folder, old)
            except OSError:                             # busy folder (Windows): replace file by file instead
                return False
            os.rename(self.path, self.folder)
        _fsync_dir(self.folder.parent)
        self._retire(old)
        return True

    def _retire(self, old: Path) -> None:
        """The previous set's folder after a swap: kept as a dated copy, or removed. Anything in it that is not
        part of that set (a file created while we swapped) moves to the new folder, or the copy is kept."""
        m = _load_manifest(old / self.manifest_name)
        keep = self.keep_previous > 0
        for e in os.listdir(old):
            if not self._ours(e, m):
                try:
                    if os.path.lexists(self.folder / e):
                        raise FileExistsError(e)
                    os.rename(old / e, self.folder / e)
                except OSError:
                    keep = True
        has_set = [e for e in os.listdir(old) if not self._temp_token(e)]
        if keep and has_set:
            if m is None:  # a folder from before output sets: the copy gets a manifest of what it holds
                atomic_write_json(old / self.manifest_name, {
                    "format": SET_FORMAT, "version": 1, "id": "legacy", "created": "", "legacy": True,
                    "files": {n: {"bytes": (old / n).stat().st_size} for n in has_set if (old / n).is_file()}})
            self._keep_copy(old)
        else:
            self._remove(old)

    def _previous_name(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest, n = self.tmp_base / f"{self.name}.previous-{stamp}", 1
        while os.path.lexists(dest):
            dest, n = self.tmp_base / f"{self.name}.previous-{stamp}-{n}", n + 1
        return dest

    def _keep_copy(self, folder: Path) -> None:
        self._prune(room=1)  # first: a kill between the two steps never leaves more than N copies
        os.rename(folder, self._previous_name())

    def _prune(self, room: int = 0) -> None:
        """Keep the newest ``keep_previous - room`` dated copies (only folders with our manifest are counted)."""
        keep = self.keep_previous - room
        if self.keep_previous <= 0:
            return
        copies = sorted((p for p in self.tmp_base.glob(f"{self.name}.previous-*")
                         if p.is_dir() and (p / self.manifest_name).exists()),
                        key=lambda p: (p.stat().st_mtime, p.name))
        for p in copies[:len(copies) - max(keep, 0)]:
            self._remove(p)

    def _remove(self, folder: Path) -> None:
        """Remove a folder of ours: renamed to a hidden name first, so a kill never leaves half a set in view."""
        trash = self._temp("trash", base=folder.parent)
        try:
            os.rename(folder, trash)
        except OSError:
            trash = folder
        shutil.rmtree(trash, ignore_errors=True)

    def _previous_files(self, old: dict | None, new: dict) -> list:
        if old is not None:
            return [n for n in old["files"] if (self.folder / n).is_file()]
        legacy = set(new["files"]) if self.named else OUTPUT_NAMES  # a folder from before output sets
        return sorted(n for n in legacy if (self.folder / n).is_file())

    def _commit_files(self, staging: Path, manifest: dict, old: dict | None) -> None:
        """Replace the set's files inside a folder that holds other files too (see the class docstring)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        previous = self._previous_files(old, manifest)
        if self.keep_previous > 0 and previous:
            tmp = self._temp("prev")
            tmp.mkdir()
            for n in previous:
                try:
                    os.link(self.folder / n, tmp / n)   # the old file's data stays when the new one replaces it
                except OSError:
                    shutil.copy2(self.folder / n, tmp / n)
            atomic_write_json(tmp / self.manifest_name, old or {
                "format": SET_FORMAT, "version": 1, "id": "legacy", "created": "", "legacy": True,
                "files": {n: {"bytes": (tmp / n).stat().st_size} for n in previous}})
            self._keep_copy(tmp)
        _roll_files_in(staging, self.folder, manifest, self.manifest_name)

    # leftovers of killed runs ----------------------------------------------------------------------------------
    def _recover(self) -> None:
        bases = {self.tmp_base, self.folder}
        for base in bases:
            if not base.is_dir():
                continue
            tokens = {}
            for e in os.listdir(base):
                t = self._temp_token(e)
                if t:
                    tokens.setdefault(t[1], set()).add(t[0])
            for token, kinds in tokens.items():
                if not _abandoned(self._temp("lock", token, base)):
                    continue
                staging, old = self._temp("staging", token, base), self._temp("old", token, base)
                done = _load_manifest(staging / self.manifest_name) if "staging" in kinds else None
                if done is not None and _load_manifest(self.folder / self.manifest_name) is None:
                    # killed while committing: finish the commit
                    if not self.folder.exists() and not self.named and base == self.folder.parent:
                        os.rename(staging, self.folder)
                    else:
                        _roll_files_in(staging, self.folder, done, self.manifest_name)
                if "old" in kinds and old.exists():
                    if not self.folder.exists() and not self.named:
                        os.rename(old, self.folder)           # killed between the two renames: put it back
                    else:
                        self._retire(old)
                for kind in ("staging", "prev", "trash"):
                    shutil.rmtree(self._temp(kind, token, base), ignore_errors=True)
                with contextlib.suppress(OSError):
                    os.unlink(self._temp("lock", token, base))


def _roll_files_in(staging: Path, folder: Path, manifest: dict, manifest_name: str) -> None:
    """Files-mode commit (also the roll-forward of an interrupted one): manifest out, files in, manifest last."""
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(folder / manifest_name)
    _fsync_dir(folder)
    for n in manifest["files"]:
        if (staging / n).exists():
            os.replace(staging / n, folder / n)
    for n in manifest.get("replaces", []):
        if n not in manifest["files"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / n)
    _fsync_dir(folder)
    os.replace(staging / manifest_name, folder / manifest_name)
    _fsync_dir(folder)


def output_set(out_dir: PathLike, keep_previous: int = 0, set_name: str | None = None,
               min_free_mb: float = MIN_FREE_MB, what: str = "output folder") -> OutputSet:
    """``with output_set(out, keep_previous=0) as staging:`` write every output into ``staging``; see OutputSet."""
    return OutputSet(out_dir, keep_previous, set_name, min_free_mb, what)
