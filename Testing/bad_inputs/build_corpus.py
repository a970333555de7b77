"""The bad-input corpus: broken copies of one real case, each with the command line that must refuse it and the
exact message (a regular expression naming the file and the problem) and exit code it must give.

    python Testing/bad_inputs/build_corpus.py OUT                 # build the cases into OUT (cases.json lists them)
    python Testing/bad_inputs/build_corpus.py OUT --run           # ... and run each through the CLI, checking it
    python Testing/bad_inputs/build_corpus.py OUT --markdown docs/bad-inputs.md   # run and write the docs table

The source is the first case of the real TCGA-LGG cohort (``../shared/data/cohorts/tcga-lgg/cases``, or
``$GLIOMA_SHARED_DATA/cohorts/tcga-lgg/cases``); without ../shared, the SYNTHETIC demo case at half resolution, so
the corpus always runs. Nothing here is committed as an image: every case is written from the source at build time.
Testing/Python/test_bad_input_corpus.py runs every case through ``cli.main``.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import struct
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("GLIOMA_SHARED_DATA", REPO.parent / "shared" / "data"))
COHORT = SHARED_DATA / "cohorts" / "tcga-lgg" / "cases"


# The case ids, in build order (the test parametrizes over them before the corpus is built; ``build`` checks them).
CASE_IDS = (
    "gz_truncated", "gz_crc", "gz_short_data", "nii_truncated", "not_gzip", "empty_file", "missing_file",
    "folder_not_image", "wrong_extension", "garbage_nifti", "huge_header", "vector_image", "complex_image",
    "image_2d", "image_4d", "spacing_zero", "spacing_negative", "spacing_nan", "spacing_zero_nrrd", "nan_voxels",
    "nan_voxels_nrrd", "inf_voxels", "constant_image", "label_as_flair", "tiny_8x8x8", "tiny_crop",
    "spacing_wrong_scale", "no_brain", "same_path", "same_content", "hard_link", "same_voxels",
    "folder_duplicate", "no_overlap", "partial_coverage_noreg", "partial_coverage", "ambiguous",
    "missing_flair_t2", "only_t1", "case_dir_missing", "json_invalid", "json_not_object", "json_age_text",
    "json_age_range", "json_sex_x", "json_grade", "json_clinical_list", "json_synthetic_text", "json_age_bool",
    "dicom_missing_slice", "dicom_garbage_slice", "dicom_truncated_slice", "dicom_truncated_last",
    "dicom_duplicate_slice", "dicom_flair_folder", "seg_labels_outside", "seg_non_integer", "seg_empty",
    "seg_single_voxel", "seg_no_overlap", "seg_outside_fov", "seg_nan", "seg_vector", "seg_case_mask_empty",
    "bundle_pickle", "bundle_pickle_v0", "bundle_not_json", "bundle_binary", "bundle_nan_coefficient",
    "bundle_inf_intercept", "bundle_missing_keys", "bundle_features_string", "bundle_wrong_format",
    "bundle_variables", "bundle_missing", "preset_os_system", "preset_object_new", "preset_not_yaml",
    "preset_unknown_key", "preset_normalization", "preset_sequence", "preset_pad", "preset_pyradiomics_type",
    "preset_pyradiomics_key", "preset_image_type", "preset_absent_sequences", "preset_missing",
    "preset_unknown_name", "spacing_option_zero", "spacing_option_tiny", "table_binary", "table_empty",
    "train_label_text", "train_label_one_class", "out_is_file", "out_under_file",
)


@dataclass
class BadCase:
    id: str
    category: str
    problem: str                 # what is wrong, in words
    args: List[str]              # glioma-radiogenomics arguments
    expect: str                  # regular expression the stderr message must match (names the file and the problem)
    exit_code: int = 2
    must_not_exist: List[str] = field(default_factory=list)  # e.g. the file a hostile payload would create
    folder: str = ""


def _e(path) -> str:
    return re.escape(str(path))


class Source:
    """The good case the corpus breaks: flair, t1, t1c (and the manual FLAIR-abnormality mask)."""

    def __init__(self, root: Path):
        cases = sorted(p for p in COHORT.iterdir() if p.is_dir()) if COHORT.is_dir() else []
        if cases:
            d = cases[0]
            self.name = f"TCGA-LGG {d.name} (real, ../shared)"
            self.files = {s: d / f"{s}.nii.gz" for s in ("flair", "t1", "t1c")}
            self.mask = d / "flair_abnormality.nii.gz"
        else:
            from GliomaRadiogenomicsLib.synthetic import make_demo_case
            d = root / "_synthetic_source"
            make_demo_case(downsample=2).save(d)
            self.name = "SYNTHETIC demo case, half resolution (../shared absent)"
            self.files = {s: d / f"{s}.nii.gz" for s in ("flair", "t1", "t1c")}
            self.mask = d / "label.nii.gz"
        self.images = {s: sitk.ReadImage(str(p)) for s, p in self.files.items()}
        self.mask_image = sitk.ReadImage(str(self.mask))


def _write(img: sitk.Image, path: Path, compress: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), compress)
    return path


def _patch_nifti(src: sitk.Image, path: Path, patches: Dict[int, tuple], gz: bool = True) -> Path:
    """Write ``src`` as NIfTI-1 and overwrite header fields: {byte offset: (struct format, value)}."""
    raw = path.with_name(path.name.replace(".nii.gz", ".tmp.nii"))
    _write(src, raw, False)
    data = bytearray(raw.read_bytes())
    raw.unlink()
    for offset, (fmt, value) in patches.items():
        struct.pack_into("<" + fmt, data, offset, *(value if isinstance(value, tuple) else (value,)))
    path.write_bytes(gzip.compress(bytes(data)) if gz else bytes(data))
    return path


def _write_dicom(img: sitk.Image, folder: Path, description: str) -> List[Path]:
    """One DICOM file per slice (int16), with positions and orientation: a series as a scanner exports it."""
    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.Cast(img, sitk.sitkInt16)
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125.77." + str(abs(hash(str(folder))) % 10 ** 8)
    d = img.GetDirection()
    out = []
    for k in range(img.GetSize()[2]):
        sl = img[:, :, k]
        pos = img.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {"0008|0060": "MR", "0008|103e": description, "0020|000e": uid, "0020|000d": uid + ".1",
                "0020|0013": str(k + 1), "0020|0032": "\\".join(f"{v:.4f}" for v in pos),
                "0020|0037": "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
                "0018|0050": f"{img.GetSpacing()[2]:.4f}", "0008|0018": f"{uid}.{k + 1}"}
        for key, v in tags.items():
            sl.SetMetaData(key, v)
        p = folder / f"IM{k + 1:04d}.dcm"
        w.SetFileName(str(p))
        w.Execute(sl)
        out.append(p)
    return out


def _hostile_pickle_bytes(marker: Path, protocol: int) -> bytes:
    """The bytes of a pickle that calls os.system("touch MARKER") when unpickled: what a hostile 'model file' holds.
    Written opcode by opcode (GLOBAL os.system, the argument, TUPLE, REDUCE, STOP), so that nothing here imports
    or runs the pickle machinery; the bundle loader must refuse these bytes unread."""
    cmd = f"touch {marker}".encode()
    if protocol == 0:   # text protocol: c<module>\n<name>\n ( S'<arg>' \n t R .
        return b"cos\nsystem\n(S'" + cmd + b"'\ntR."
    # binary protocols: PROTO n, GLOBAL, SHORT_BINUNICODE / BINUNICODE <arg>, TUPLE1, REDUCE, STOP
    arg = (b"\x8c" + bytes([len(cmd)]) + cmd) if len(cmd) < 256 else (b"X" + len(cmd).to_bytes(4, "little") + cmd)
    return b"\x80" + bytes([protocol]) + b"cos\nsystem\n" + arg + b"\x85R."


def build(root, source: Optional[Source] = None) -> List[BadCase]:
    """Write every bad case under ``root`` and return their definitions (concrete paths)."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    src = source or Source(root)
    flair, t1, t1c = (src.images[s] for s in ("flair", "t1", "t1c"))
    cases: List[BadCase] = []

    # the good case every other case breaks a part of
    good = root / "good"
    good.mkdir(exist_ok=True)
    for s, p in src.files.items():
        shutil.copyfile(p, good / f"{s}.nii.gz")
    shutil.copyfile(src.mask, good / "flair_abnormality.nii.gz")
    (good / "case.json").write_text(json.dumps({"case_id": "good", "age": 44, "sex": "F"}))
    G = {s: good / f"{s}.nii.gz" for s in ("flair", "t1", "t1c")}

    def case(id_, category, problem, args, expect, out=True, **kw):
        d = root / id_
        d.mkdir(exist_ok=True)
        full = list(args) + (["--out", str(d / "out")] if out else [])
        cases.append(BadCase(id_, category, problem, full, expect, folder=str(d), **kw))
        return d

    def run_flair(id_, category, problem, bad: Path, expect, extra=()):
        """``run --flair BAD --t1 good --t1c good``."""
        case(id_, category, problem, ["run", "--flair", str(bad), "--t1", str(G["t1"]), "--t1c", str(G["t1c"]),
                                      *extra], expect)

    def folder_case(id_, category, problem, files: Dict[str, object], expect, extra=(), with_json=True):
        """A case folder: the good files, some replaced (a Path: copied; an Image: written; None: left out)."""
        d = root / id_
        d.mkdir(exist_ok=True)
        base = {"flair.nii.gz": G["flair"], "t1.nii.gz": G["t1"], "t1c.nii.gz": G["t1c"]}
        if with_json:
            base["case.json"] = good / "case.json"
        base.update(files)
        for name, what in base.items():
            if what is None:
                continue
            if isinstance(what, sitk.Image):
                _write(what, d / name)
            elif isinstance(what, bytes):
                (d / name).write_bytes(what)
            elif isinstance(what, str):
                (d / name).write_text(what)
            else:
                shutil.copyfile(what, d / name)
        case(id_, category, problem, ["run", "--case-dir", str(d), *extra], expect)
        return d

    # ---------------------------------------------------------------- image files: integrity of the bytes
    cat = "image file"
    d = root / "gz_truncated"
    d.mkdir(exist_ok=True)
    data = G["flair"].read_bytes()
    (d / "flair.nii.gz").write_bytes(data[: len(data) // 3])
    run_flair("gz_truncated", cat, "a .nii.gz cut to a third of its bytes (an interrupted copy)", d / "flair.nii.gz",
              f"FLAIR: {_e(d / 'flair.nii.gz')} is damaged or incomplete \\(gzip: ")

    d = root / "gz_crc"
    d.mkdir(exist_ok=True)
    damaged = bytearray(data)
    damaged[-6] ^= 0xFF
    (d / "flair.nii.gz").write_bytes(bytes(damaged))
    run_flair("gz_crc", cat, "a .nii.gz whose CRC-32 trailer is damaged", d / "flair.nii.gz",
              f"FLAIR: {_e(d / 'flair.nii.gz')} is damaged or incomplete \\(gzip: CRC check failed")

    d = root / "gz_short_data"
    d.mkdir(exist_ok=True)
    _write(flair, d / "full.nii", False)
    nii = (d / "full.nii").read_bytes()
    (d / "full.nii").unlink()
    (d / "flair.nii.gz").write_bytes(gzip.compress(nii[: len(nii) * 3 // 5]))  # a valid gzip of a cut file
    run_flair("gz_short_data", cat, "a valid .nii.gz whose decompressed voxel data is shorter than its header's "
              "dimensions say", d / "flair.nii.gz",
              f"FLAIR: {_e(d / 'flair.nii.gz')} holds \\d+ bytes of voxel data, but its header \\(.*\\) needs \\d+ "
              "\\(\\d+ % present\\): the file is cut short")

    d = root / "nii_truncated"
    d.mkdir(exist_ok=True)
    (d / "flair.nii").write_bytes(nii[: len(nii) // 2])
    run_flair("nii_truncated", cat, "an uncompressed .nii cut short (ITK reads it silently, zero-filled)",
              d / "flair.nii", f"FLAIR: {_e(d / 'flair.nii')} holds \\d+ bytes of voxel data, but its header \\(.*\\) needs \\d+ "
              "\\(\\d+ % present\\): the file is cut short")

    d = root / "not_gzip"
    d.mkdir(exist_ok=True)
    (d / "flair.nii.gz").write_bytes(nii)
    run_flair("not_gzip", cat, "an uncompressed NIfTI named .nii.gz", d / "flair.nii.gz",
              f"FLAIR: {_e(d / 'flair.nii.gz')} is named .gz but is not gzip-compressed")

    d = root / "empty_file"
    d.mkdir(exist_ok=True)
    (d / "flair.nii.gz").write_bytes(b"")
    run_flair("empty_file", cat, "an empty file (0 bytes)", d / "flair.nii.gz",
              f"FLAIR: file is empty: {_e(d / 'flair.nii.gz')}")

    d = root / "missing_file"
    d.mkdir(exist_ok=True)
    run_flair("missing_file", cat, "a file that does not exist", d / "flair.nii.gz",
              f"FLAIR: file not found: {_e(d / 'flair.nii.gz')}")

    d = root / "folder_not_image"
    (d / "flair").mkdir(parents=True, exist_ok=True)
    (d / "flair" / "notes.txt").write_text("not an image")
    run_flair("folder_not_image", cat, "a folder without a DICOM series given as an image", d / "flair",
              f"FLAIR: {_e(d / 'flair')} is a folder without a readable DICOM series")

    d = root / "wrong_extension"
    d.mkdir(exist_ok=True)
    shutil.copyfile(G["flair"], d / "flair.jpg")
    run_flair("wrong_extension", cat, "an image with an unsupported extension", d / "flair.jpg",
              f"FLAIR: {_e(d / 'flair.jpg')} has an unsupported extension '.jpg'")

    d = root / "garbage_nifti"
    d.mkdir(exist_ok=True)
    (d / "flair.nii.gz").write_bytes(gzip.compress(np.random.default_rng(0).bytes(4000)))
    run_flair("garbage_nifti", cat, "random bytes in a valid gzip named .nii.gz", d / "flair.nii.gz",
              f"FLAIR: cannot read {_e(d / 'flair.nii.gz')} as an image \\(")

    # ---------------------------------------------------------------- image headers (before any allocation)
    cat = "image header"
    d = root / "huge_header"
    d.mkdir(exist_ok=True)
    _patch_nifti(flair, d / "flair.nii.gz", {42: ("3h", (30000, 30000, 30000))})
    run_flair("huge_header", cat, "a header declaring 30000 x 30000 x 30000 voxels (54 TB) in a 2 MB file",
              d / "flair.nii.gz", f"FLAIR: {_e(d / 'flair.nii.gz')} declares 30000 x 30000 x 30000 voxels of .* "
              "more than the memory available \\(.* GB\\): a damaged header")

    d = root / "vector_image"
    v = sitk.Compose(flair, flair, flair)
    _write(v, d / "flair.nii.gz")
    run_flair("vector_image", cat, "an RGB / vector image (3 components per voxel)", d / "flair.nii.gz",
              f"FLAIR: {_e(d / 'flair.nii.gz')} has 3 components per voxel \\(a vector or colour image\\); a scalar")

    d = root / "complex_image"
    a = sitk.GetArrayFromImage(flair).astype(np.float32)
    c = sitk.GetImageFromArray((a + 1j * a[::-1]).astype(np.complex64))
    c.CopyInformation(flair)
    _write(c, d / "flair.nii.gz")
    run_flair("complex_image", cat, "a complex-valued image (real + imaginary)", d / "flair.nii.gz",
              f"FLAIR: {_e(d / 'flair.nii.gz')} has complex-valued voxels \\(real and imaginary parts")

    d = root / "image_2d"
    _write(flair[:, :, flair.GetSize()[2] // 2], d / "flair.nii.gz")
    run_flair("image_2d", cat, "a single 2D slice", d / "flair.nii.gz",
              f"FLAIR: {_e(d / 'flair.nii.gz')} is 2D \\(size \\d+ x \\d+\\); a 3D volume is needed")

    d = root / "image_4d"
    _write(sitk.JoinSeries([sitk.Cast(flair, sitk.sitkFloat32)] * 3), d / "flair.nii.gz")
    run_flair("image_4d", cat, "a 4D series of 3 volumes", d / "flair.nii.gz",
              f"FLAIR: {_e(d / 'flair.nii.gz')} is 4D \\(3 volumes\\); give a single 3D volume")

    # NIfTI pixdim[3] (byte 76 + 4 * 3); sform_code (254) 0 so that ITK uses pixdim and would silently read 0 as 1
    for id_, value, shown in (("spacing_zero", 0.0, "0"), ("spacing_negative", -6.5, "-6.5"),
                              ("spacing_nan", float("nan"), "nan")):
        d = root / id_
        d.mkdir(exist_ok=True)
        _patch_nifti(flair, d / "flair.nii.gz", {88: ("f", value), 254: ("h", 0)})
        run_flair(id_, cat, f"a NIfTI header with slice spacing {shown} (ITK would read {'1' if value == 0 else 'it'} "
                  "without complaint)", d / "flair.nii.gz",
                  f"FLAIR: {_e(d / 'flair.nii.gz')} has voxel spacing [\\d.]+ x [\\d.]+ x {re.escape(shown)} mm in its "
                  "header: zero, negative or not a number")

    d = root / "spacing_zero_nrrd"
    _write(flair, d / "flair.nrrd", False)
    text = (d / "flair.nrrd").read_bytes()
    head, sep, body = text.partition(b"\n\n")
    head = re.sub(rb"space directions: \(([^)]*)\) \(([^)]*)\) \(([^)]*)\)",
                  lambda m: b"space directions: (" + m.group(1) + b") (" + m.group(2) + b") (0,0,0)", head)
    (d / "flair.nrrd").write_bytes(head + sep + body)
    run_flair("spacing_zero_nrrd", cat, "an NRRD header with a zero slice direction (spacing 0)", d / "flair.nrrd",
              f"FLAIR: {_e(d / 'flair.nrrd')} has voxel spacing [\\d.]+ x [\\d.]+ x 0 mm in its header")

    # ---------------------------------------------------------------- voxel values
    cat = "voxel values"
    d = root / "nan_voxels"
    a = sitk.GetArrayFromImage(flair).astype(np.float32)
    z, y, x = (n // 2 for n in a.shape)
    a[z, y:y + 10, x:x + 10] = np.nan  # 100 voxels
    img = sitk.GetImageFromArray(a)
    img.CopyInformation(flair)
    _write(img, d / "flair.nii.gz")
    run_flair("nan_voxels", cat, "100 NaN voxels in a float NIfTI (ITK reads them as 0)", d / "flair.nii.gz",
              f"FLAIR: {_e(d / 'flair.nii.gz')} contains NaN or infinite voxel values \\(100 voxel\\(s\\); ITK would "
              "read them as 0\\)")
    _write(img, d / "flair.nrrd")
    case("nan_voxels_nrrd", cat, "the same NaN voxels in an NRRD file", ["run", "--flair", str(d / "flair.nrrd")],
         f"FLAIR: {_e(d / 'flair.nrrd')} contains NaN or infinite voxel values$")

    d = root / "inf_voxels"
    a = sitk.GetArrayFromImage(flair).astype(np.float32)
    a[0, 0, 0] = np.inf
    img = sitk.GetImageFromArray(a)
    img.CopyInformation(flair)
    _write(img, d / "flair.nii.gz")
    run_flair("inf_voxels", cat, "an infinite voxel in a float NIfTI", d / "flair.nii.gz",
              f"FLAIR: {_e(d / 'flair.nii.gz')} contains NaN or infinite voxel values \\(1 voxel\\(s\\)")

    d = root / "constant_image"
    img = sitk.Image(flair.GetSize(), sitk.sitkInt16) + 7
    img.CopyInformation(flair)
    _write(img, d / "flair.nii.gz")
    run_flair("constant_image", cat, "a constant image (every voxel 7)", d / "flair.nii.gz",
              f"FLAIR: {_e(d / 'flair.nii.gz')} is constant \\(every voxel = 7.0\\)")

    d = root / "label_as_flair"
    d.mkdir(exist_ok=True)
    shutil.copyfile(src.mask, d / "flair.nii.gz")
    run_flair("label_as_flair", cat, "a mask (label map) given as the FLAIR", d / "flair.nii.gz",
              f"FLAIR: {_e(d / 'flair.nii.gz')} holds only the values \\[0, [\\d, ]+\\]: it is a label map")

    # ---------------------------------------------------------------- volumes too small to hold a brain
    cat = "volume size"
    d = root / "tiny_8x8x8"
    a = (np.random.default_rng(0).random((8, 8, 8)) * 100).astype(np.float32)
    _write(sitk.GetImageFromArray(a), d / "flair.nii.gz")
    case("tiny_8x8x8", cat, "an 8 x 8 x 8 volume (1 mm): was a RuntimeError traceback after the brain mask",
         ["run", "--flair", str(d / "flair.nii.gz")],
         f"FLAIR: {_e(d / 'flair.nii.gz')} covers only 8 x 8 x 8 mm \\(8 x 8 x 8 voxels of 1 x 1 x 1 mm\\): too "
         "small to hold a brain")

    d = root / "tiny_crop"
    cx, cy = flair.GetSize()[0] // 2, flair.GetSize()[1] // 2
    _write(flair[cx - 4:cx + 4, cy - 4:cy + 4, :], d / "flair.nii.gz")
    case("tiny_crop", cat, "an 8 x 8 voxel crop of the real FLAIR (all its slices)",
         ["run", "--flair", str(d / "flair.nii.gz")],
         f"FLAIR: {_e(d / 'flair.nii.gz')} covers only [\\d.]+ x [\\d.]+ x [\\d.]+ mm .*: too small to hold a brain")

    d = root / "spacing_wrong_scale"
    img = sitk.Image(flair)
    img.SetSpacing([s / 10 for s in flair.GetSpacing()])
    _write(img, d / "flair.nii.gz")
    run_flair("spacing_wrong_scale", cat, "a header with the voxel spacing in cm instead of mm (10x too small)",
              d / "flair.nii.gz", f"FLAIR: {_e(d / 'flair.nii.gz')} covers only [\\d.]+ x [\\d.]+ x [\\d.]+ mm .*too "
              "small to hold a brain \\(a head spans at least 60 mm along two axes\\); wrong file, or a wrong voxel "
              "spacing in its header\\?")

    d = root / "no_brain"
    a = np.zeros(sitk.GetArrayViewFromImage(flair).shape, np.float32)
    z, y, x = (n // 2 for n in a.shape)
    a[z - 1:z + 1, y - 5:y + 5, x - 5:x + 5] = 200 + np.random.default_rng(1).random((2, 10, 10))
    img = sitk.GetImageFromArray(a)
    img.CopyInformation(flair)
    _write(img, d / "flair.nii.gz")
    case("no_brain", cat, "a head-sized volume holding no brain (a 10 x 10 x 2 voxel bright block)",
         ["run", "--flair", str(d / "flair.nii.gz"), "--brain-mask", "threshold"],
         f"FLAIR: {_e(d / 'flair.nii.gz')}: the brain mask \\(threshold\\) holds only \\d+ mL .*the image does not "
         "show a brain")

    # ---------------------------------------------------------------- sequences
    cat = "sequences"
    d = root / "same_path"
    d.mkdir(exist_ok=True)
    case("same_path", cat, "the same file given for FLAIR and T1",
         ["run", "--flair", str(G["flair"]), "--t1", str(G["flair"])],
         f"T1 and FLAIR are the same file: {_e(G['flair'])}; each sequence needs its own image")

    d = root / "same_content"
    d.mkdir(exist_ok=True)
    shutil.copyfile(G["flair"], d / "t1.nii.gz")
    case("same_content", cat, "a copy of the FLAIR file given as T1",
         ["run", "--flair", str(G["flair"]), "--t1", str(d / "t1.nii.gz")],
         f"T1 \\({_e(d / 't1.nii.gz')}\\) and FLAIR \\({_e(G['flair'])}\\) have identical contents: the same image "
         "given twice")

    d = root / "hard_link"
    d.mkdir(exist_ok=True)
    if (d / "t1c.nii.gz").exists():
        (d / "t1c.nii.gz").unlink()
    os.link(G["flair"], d / "t1c.nii.gz")
    case("hard_link", cat, "a hard link to the FLAIR file given as T1c",
         ["run", "--flair", str(G["flair"]), "--t1c", str(d / "t1c.nii.gz")],
         f"T1c \\({_e(d / 't1c.nii.gz')}\\) and FLAIR \\({_e(G['flair'])}\\) are the same file \\(a link\\)")

    d = root / "same_voxels"
    _write(flair, d / "t1.nrrd")
    case("same_voxels", cat, "the FLAIR converted to NRRD given as T1 (other bytes, same voxels)",
         ["run", "--flair", str(G["flair"]), "--t1", str(d / "t1.nrrd")],
         f"T1 \\({_e(d / 't1.nrrd')}\\) and FLAIR \\({_e(G['flair'])}\\) hold the same voxels: one image given for two "
         "sequences")

    d = folder_case("folder_duplicate", cat, "a case folder whose t1c.nii.gz is a copy of its flair.nii.gz",
                    {"t1c.nii.gz": G["flair"]}, "")
    cases[-1].expect = (f"T1c \\({_e(d / 't1c.nii.gz')}\\) and FLAIR \\({_e(d / 'flair.nii.gz')}\\) have identical "
                        "contents")

    d = root / "no_overlap"
    img = sitk.Image(t1)
    img.SetOrigin([o + 5000.0 for o in t1.GetOrigin()])
    _write(img, d / "t1.nii.gz")
    case("no_overlap", cat, "a T1 whose header places it 5 m away from the FLAIR",
         ["run", "--flair", str(G["flair"]), "--t1", str(d / "t1.nii.gz")],
         f"T1: {_e(d / 't1.nii.gz')} does not overlap the FLAIR field of view in physical space")

    strip = int(np.ceil(60.0 / t1.GetSpacing()[0]))  # 60 mm wide: passes the size check, covers < half a head
    for id_, extra, how in (("partial_coverage_noreg", ["--no-register"], "with the header alignment"),
                            ("partial_coverage", [], "after rigid registration")):
        d = root / id_
        _write(t1[:strip, :, :], d / "t1.nii.gz")
        case(id_, cat, f"a T1 strip 60 mm wide that covers little of the FLAIR head ({how})",
             ["run", "--flair", str(G["flair"]), "--t1", str(d / "t1.nii.gz"), "--brain-mask", "threshold", *extra],
             f"T1: {_e(d / 't1.nii.gz')} covers only \\d+ % of the FLAIR head {how}")

    d = folder_case("ambiguous", cat, "two FLAIR files in one case folder", {"FLAIR_2.nii.gz": G["flair"]}, "")
    cases[-1].expect = f"{_e(d)}: FLAIR is ambiguous \\(FLAIR_2.nii.gz, flair.nii.gz\\); choose one with --flair PATH"

    d = folder_case("missing_flair_t2", cat, "a case folder with T1 and T1c only", {"flair.nii.gz": None}, "")
    cases[-1].expect = f"{_e(d)}: no FLAIR or T2 found \\(looked at file names"

    d = root / "only_t1"
    d.mkdir(exist_ok=True)
    case("only_t1", cat, "a T1 alone on the command line", ["run", "--t1", str(G["t1"])],
         "no FLAIR or T2 image given: the whole tumor needs FLAIR \\(or T2\\)")

    d = root / "case_dir_missing"
    d.mkdir(exist_ok=True)
    case("case_dir_missing", cat, "a case folder that does not exist", ["run", "--case-dir", str(d / "nope")],
         f"case folder not found: {_e(d / 'nope')}")

    # ---------------------------------------------------------------- case.json
    cat = "case.json"
    for id_, content, expect in (
            ("json_invalid", '{"age": 44, "sex": "F"', "not valid JSON"),
            ("json_not_object", '[44, "F"]', "must be a JSON object .* not a list"),
            ("json_age_text", '{"age": "abc", "sex": "F"}', "age 'abc' is not a number"),
            ("json_age_range", '{"age": 250, "sex": "F"}', "age 250.0 is outside 0-120 years"),
            ("json_sex_x", '{"age": 44, "sex": "X"}', "sex 'X' must be M or F"),
            ("json_grade", '{"clinical": {"age": 44, "who_grade": 7}}', "WHO grade 7 is not 1-4"),
            ("json_clinical_list", '{"clinical": [44, "F"]}', '"clinical" must be an object, not a list'),
            ("json_synthetic_text", '{"age": 44, "synthetic": "no"}', '"synthetic" must be true or false, not "no"'),
            ("json_age_bool", '{"age": true}', "age true is not a number")):
        d = folder_case(id_, cat, f"case.json: {content}", {"case.json": content}, "")
        cases[-1].expect = f"{_e(d / 'case.json')}: {expect}"

    # ---------------------------------------------------------------- DICOM series
    cat = "DICOM"
    for id_, problem in (("dicom_missing_slice", "a DICOM series with a slice deleted"),
                         ("dicom_garbage_slice", "a DICOM series with a slice overwritten by random bytes"),
                         ("dicom_truncated_slice", "a DICOM series with a slice cut short"),
                         ("dicom_truncated_last", "a DICOM series whose last slice is cut short (no gap left: GDCM "
                                                  "silently drops it)"),
                         ("dicom_duplicate_slice", "a DICOM series with a slice copied twice (same position)")):
        d = root / id_
        if d.exists():
            shutil.rmtree(d)
        files = _write_dicom(flair, d / "case" / "AX_FLAIR", "AX T2 FLAIR")
        victim = files[-1] if id_ == "dicom_truncated_last" else files[len(files) // 2]
        where = f"DICOM series 'AX T2 FLAIR' in {_e(d / 'case' / 'AX_FLAIR')}"
        gap = "1 slice\\(s\\) missing: a gap of [\\d.]+ mm between the slices at [\\d.-]+ and [\\d.-]+ mm"
        if id_ == "dicom_missing_slice":
            victim.unlink()
            expect = f"{where}: {gap} where slices are [\\d.]+ mm apart \\(\\d+ slices present\\); copy the complete series"
        elif id_ == "dicom_garbage_slice":
            victim.write_bytes(np.random.default_rng(3).bytes(victim.stat().st_size))
            expect = f"{where}: damaged DICOM file\\(s\\) in the folder: {victim.name} cannot be read; {gap}"
        elif id_ in ("dicom_truncated_slice", "dicom_truncated_last"):
            victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
            expect = f"{where}: damaged DICOM file\\(s\\) in the folder: {victim.name} cannot be read" + (
                f"; {gap}" if id_ == "dicom_truncated_slice" else "; copy the complete series")
        else:
            dup = victim.with_name("IM9999.dcm")
            r = sitk.ImageFileReader()
            r.SetFileName(str(victim))
            sl = r.Execute()
            for key in r.GetMetaDataKeys():
                sl.SetMetaData(key, r.GetMetaData(key))
            sl.SetMetaData("0008|0018", r.GetMetaData("0008|0018") + ".9")
            sl.SetMetaData("0020|0013", "9999")
            w = sitk.ImageFileWriter()
            w.KeepOriginalImageUIDOn()
            w.SetFileName(str(dup))
            w.Execute(sl)
            expect = f"{where}: two slices at the same position"
        case(id_, cat, problem, ["run", "--case-dir", str(d / "case")], expect)

    d = root / "dicom_flair_folder"
    if d.exists():
        shutil.rmtree(d)
    files = _write_dicom(flair, d / "FLAIR", "AX T2 FLAIR")
    files[3].unlink()
    case("dicom_flair_folder", cat, "--flair pointing to a DICOM folder with a slice missing",
         ["run", "--flair", str(d / "FLAIR")],
         f"DICOM series 'AX T2 FLAIR' in {_e(d / 'FLAIR')}: 1 slice\\(s\\) missing")

    # ---------------------------------------------------------------- segmentations given by the user
    cat = "segmentation"
    m = src.mask_image
    ma = sitk.GetArrayFromImage(m)

    def seg_case(id_, problem, arr_or_img, expect, dtype=np.uint8):
        d = root / id_
        if isinstance(arr_or_img, sitk.Image):
            img = arr_or_img
        else:
            img = sitk.GetImageFromArray(np.asarray(arr_or_img).astype(dtype))
            img.CopyInformation(m)
        p = _write(img, d / "seg.nii.gz")
        case(id_, cat, problem, ["run", "--case-dir", str(good), "--segmentation", str(p)],
             f"user-supplied segmentation \\(file {_e(p)}\\): {expect}" if not expect.startswith("^") else expect[1:])
        return p

    roi = ma > 0
    outside = np.where(roi, 1, 0).astype(np.uint8)
    idx = np.argwhere(roi)
    outside[tuple(idx[:20].T)] = 2
    outside[tuple(idx[20:40].T)] = 7
    seg_case("seg_labels_outside", "labels 1, 2 and 7 (7 is no BraTS label)", outside,
             "label values \\[1, 2, 7\\] are neither a binary mask nor BraTS labels")
    seg_case("seg_non_integer", "fractional label values (a probability map)", roi * 0.5 + (roi & np.roll(roi, 1, 2)) * 0.25,
             "not a label map \\(non-integer voxel values such as 0.5", dtype=np.float32)
    seg_case("seg_empty", "an empty segmentation (all zero)", np.zeros_like(ma), "the segmentation is empty "
             "\\(no labelled voxel\\)")
    one = np.zeros_like(ma)
    one[tuple(n // 2 for n in one.shape)] = 1
    seg_case("seg_single_voxel", "a single labelled voxel", one, "the segmentation holds only 1 labelled voxel\\(s\\)")
    far = sitk.GetImageFromArray(ma)
    far.CopyInformation(m)
    far.SetOrigin([o + 3000.0 for o in m.GetOrigin()])
    seg_case("seg_no_overlap", "a segmentation on a grid 3 m away from the FLAIR", far,
             f"its grid \\(.*\\) does not overlap the {_e(G['flair'])} field of view in physical space")
    half = sitk.GetImageFromArray(ma[:, :, : ma.shape[2] // 2])
    half.SetSpacing(m.GetSpacing())
    half.SetDirection(m.GetDirection())
    half.SetOrigin(m.TransformIndexToPhysicalPoint((m.GetSize()[0] + 40, 0, 0)))
    half_roi = np.zeros_like(ma[:, :, : ma.shape[2] // 2])
    half_roi[ma.shape[0] // 2, 20:40, 20:40] = 1
    hi = sitk.GetImageFromArray(half_roi)
    hi.CopyInformation(half)
    seg_case("seg_outside_fov", "another grid beside the FLAIR's field of view (overlapping bounding box corner only)",
             hi, "its grid \\(.*\\) does not overlap")
    nanseg = ma.astype(np.float32)
    nanseg[0, 0, 0] = np.nan
    seg_case("seg_nan", "a segmentation with a NaN voxel", nanseg, "", dtype=np.float32)
    cases[-1].expect = (f"segmentation: {_e(root / 'seg_nan' / 'seg.nii.gz')} contains NaN or infinite voxel values "
                        "\\(1 voxel\\(s\\); ITK would read them as 0\\)")
    v = sitk.Compose(m, m)
    seg_case("seg_vector", "a 2-component segmentation", v, "")
    cases[-1].expect = f"segmentation: {_e(root / 'seg_vector' / 'seg.nii.gz')} has 2 components per voxel"

    empty_mask = sitk.Image(m.GetSize(), sitk.sitkUInt8)
    empty_mask.CopyInformation(m)
    folder_case("seg_case_mask_empty", cat, "--segmentation case with an empty flair_abnormality.nii.gz",
                {"flair_abnormality.nii.gz": empty_mask}, "", extra=["--segmentation", "case"])
    cases[-1].expect = ("user-supplied segmentation \\(case-folder mask flair_abnormality.nii.gz\\): the segmentation "
                        "is empty")

    # ---------------------------------------------------------------- model bundles
    cat = "model bundle"
    from GliomaRadiogenomicsLib.bundle import default_bundle_paths
    shipped = json.loads(default_bundle_paths()[0].read_text())
    marker = root / "PWNED_by_bundle"

    def bundle_case(id_, problem, content, expect, **kw):
        d = root / id_
        d.mkdir(exist_ok=True)
        p = d / "model.json"
        if isinstance(content, bytes):
            p.write_bytes(content)
        elif isinstance(content, str):
            p.write_text(content)
        elif content is not None:
            p.write_text(json.dumps(content))
        case(id_, cat, problem, ["run", "--case-dir", str(good), "--bundle", str(p)], f"{_e(p)}: {expect}"
             if not expect.startswith("^") else expect[1:], **kw)

    # hostile test inputs: pickled files that the bundle loader must REFUSE (nothing here or there unpickles them;
    # the marker file proves no code ran). The product never reads pickle / joblib.
    bundle_case("bundle_pickle", "a pickled model (protocol 4) calling os.system", _hostile_pickle_bytes(marker, 4),
                "a Python pickle \\(or a zipped pickle\\), not a JSON model bundle: pickles are never loaded",
                must_not_exist=[str(marker)])
    bundle_case("bundle_pickle_v0", "a protocol-0 (text) pickle calling os.system", _hostile_pickle_bytes(marker, 0),
                "a Python pickle", must_not_exist=[str(marker)])
    bundle_case("bundle_not_json", "a bundle that is not JSON", '{"format": "glioma-radiogenomics-model-bundle", ',
                "not valid JSON \\(Expecting property name enclosed in double quotes at line 1\\)")
    bundle_case("bundle_binary", "random bytes named .json", b"\xff\xfe" + np.random.default_rng(5).bytes(600),
                "not a text file \\(binary data\\)")
    nan_coef = dict(shipped, coefficients=[float("nan")] + shipped["coefficients"][1:])
    bundle_case("bundle_nan_coefficient", "a NaN coefficient", json.dumps(nan_coef),
                "non-numeric or non-finite values in center/scale/coefficients \\('coefficients'\\[0\\] = NaN\\)")
    bundle_case("bundle_inf_intercept", "an infinite intercept", json.dumps(dict(shipped, intercept=float("inf"))),
                "'intercept' must be a finite number, not Infinity")
    bundle_case("bundle_missing_keys", "coefficients and cutoff removed",
                {k: v for k, v in shipped.items() if k not in ("coefficients", "cutoff")},
                "missing key\\(s\\) coefficients, cutoff")
    bundle_case("bundle_features_string", "features given as one string (wrong schema)",
                dict(shipped, features="FLAIR_WT_original_firstorder_Mean"),
                "'features' must be a non-empty list of feature names")
    bundle_case("bundle_wrong_format", "another program's JSON", {"model": "logistic", "weights": [1, 2]},
                "not a GliomaRadiogenomics model bundle \\(format 'None'\\)")
    bundle_case("bundle_variables", "nomogram variables without their ranges",
                dict(shipped, variables=[{"name": v["name"], "features": v["features"]} for v in shipped["variables"]]),
                "nomogram variable 0 must be an object with name, features, c_min, c_max")
    bundle_case("bundle_missing", "a bundle file that does not exist", None,
                f"^model bundle not found: {_e(root / 'bundle_missing' / 'model.json')}")

    # ---------------------------------------------------------------- feature presets
    cat = "preset"
    pmarker = root / "PWNED_by_preset"

    def preset_case(id_, problem, text, expect, **kw):
        d = root / id_
        d.mkdir(exist_ok=True)
        p = d / "preset.yaml"
        if text is not None:
            p.write_text(text)
        case(id_, cat, problem, ["run", "--case-dir", str(good), "--preset", str(p)],
             f"{_e(p)}: {expect}" if not expect.startswith("^") else expect[1:], **kw)

    base = "glioma_radiogenomics:\n  name: mine\n  sequences: [flair]\n  normalization: zscore\n" \
           "imageType:\n  Original: {}\nfeatureClass:\n  firstorder:\nsetting:\n  binWidth: 0.25\n"
    preset_case("preset_os_system", "a YAML tag that would run os.system",
                base + f"payload: !!python/object/apply:os.system ['touch {pmarker}']\n",
                "YAML tag refused \\(could not determine a constructor for the tag "
                "'tag:yaml.org,2002:python/object/apply:os.system', line \\d+\\): presets are read with safe loading",
                must_not_exist=[str(pmarker)])
    preset_case("preset_object_new", "a YAML tag that would construct a Python object",
                base + "obj: !!python/object/new:subprocess.Popen [['true']]\n",
                "YAML tag refused \\(could not determine a constructor for the tag "
                "'tag:yaml.org,2002:python/object/new:subprocess.Popen'")
    preset_case("preset_not_yaml", "a preset that is not YAML", "glioma_radiogenomics: [unclosed\n",
                "not valid YAML")
    preset_case("preset_unknown_key", "an unknown key in our section", base.replace("  name: mine\n",
                "  name: mine\n  normalisation_typo: unit\n"), "unknown key\\(s\\) normalisation_typo in "
                "'glioma_radiogenomics'")
    preset_case("preset_normalization", "an unknown normalisation", base.replace("zscore", "magic"),
                "unknown normalization 'magic' \\(known: unit, unit_clahe, zscore, none\\)")
    preset_case("preset_sequence", "an unknown sequence", base.replace("[flair]", "[flair, dwi]"),
                "unknown sequence 'dwi'")
    preset_case("preset_pad", "a negative crop padding", base.replace("  normalization: zscore\n", "  normalization: zscore\n  crop_pad_voxels: -3\n"),
                "'crop_pad_voxels' must be a whole number >= 0 \\(got -3\\)")
    preset_case("preset_pyradiomics_type", "a PyRadiomics setting of the wrong type (binWidth: abc)",
                base.replace("binWidth: 0.25", "binWidth: abc"),
                "invalid PyRadiomics settings: Value 'abc' is not of type 'float'. Path: '/setting/binWidth'")
    preset_case("preset_pyradiomics_key", "an unknown top-level PyRadiomics section", base + "extras: {a: 1}\n",
                "invalid PyRadiomics settings: Key 'extras' was not defined")
    preset_case("preset_image_type", "an unknown PyRadiomics image type", base.replace("Original: {}", "Bogus: {}"),
                "invalid PyRadiomics settings: Image Type Bogus is not recognized")
    preset_case("preset_absent_sequences", "a preset of T2 only for a case without T2",
                base.replace("[flair]", "[t2]"), "^preset mine \\(" + _e(root / "preset_absent_sequences" / "preset.yaml")
                + "\\) needs one of T2; the case has T1, T1c, FLAIR")
    preset_case("preset_missing", "a preset file that does not exist", None,
                "^feature preset file not found: " + _e(root / "preset_missing" / "preset.yaml"))
    preset_case("preset_unknown_name", "an unknown shipped preset name", None, "")
    cases[-1].args[cases[-1].args.index("--preset") + 1] = "wang2052"
    cases[-1].expect = "unknown feature preset 'wang2052'; shipped presets: "

    # ---------------------------------------------------------------- options
    cat = "options"
    d = root / "spacing_option_zero"
    d.mkdir(exist_ok=True)
    case("spacing_option_zero", cat, "--spacing 0 (was a ZeroDivisionError traceback)",
         ["run", "--case-dir", str(good), "--spacing", "0"],
         "working grid spacing 0.0 mm: must be a positive number of mm")
    d = root / "spacing_option_tiny"
    d.mkdir(exist_ok=True)
    case("spacing_option_tiny", cat, "--spacing 0.001 (a working grid of 10^13 voxels)",
         ["run", "--case-dir", str(good), "--spacing", "0.001"],
         "working grid spacing 0.001 mm: the .* mm field of view becomes .* voxels \\(about .* GB for 3 sequence\\(s\\)\\), "
         "more than the memory available")

    # ---------------------------------------------------------------- feature tables (predict)
    cat = "feature table"
    d = root / "table_binary"
    d.mkdir(exist_ok=True)
    (d / "features.csv").write_bytes(b"\xff\xfe" + np.random.default_rng(9).bytes(500))
    case("table_binary", cat, "predict with a binary file as the feature table",
         ["predict", "--bundle", str(default_bundle_paths()[0]), "--table", str(d / "features.csv"), "--out",
          str(d / "predictions.csv")], f"{_e(d / 'features.csv')}: not a readable CSV feature table", out=False)
    d = root / "table_empty"
    d.mkdir(exist_ok=True)
    (d / "features.csv").write_text("")
    case("table_empty", cat, "predict with an empty feature table",
         ["predict", "--bundle", str(default_bundle_paths()[0]), "--table", str(d / "features.csv"), "--out",
          str(d / "predictions.csv")], f"{_e(d / 'features.csv')}: not a readable CSV feature table "
         "\\(No columns to parse from file\\)", out=False)

    # ---------------------------------------------------------------- training labels
    cat = "training labels"
    for id_, values, expect in (("train_label_text", ["yes", "no", "1", "0"], "found no, yes"),
                                ("train_label_one_class", [1, 1, 1, None], "holds one class only")):
        d = root / id_
        d.mkdir(exist_ok=True)
        pd.DataFrame({"case_id": list("abcd"), "IDH": values, "FLAIR_original_firstorder_Mean": [1.0, 2.0, 3.0, 4.0]}
                     ).to_csv(d / "features.csv", index=False)
        case(id_, cat, f"train with a label column that {'holds text' if 'text' in id_ else 'has one class'}",
             ["train", "--table", str(d / "features.csv"), "--label", "IDH", "--method", "st", "--out",
              str(d / "bundle.json")], f"{_e(d / 'features.csv')}: label column 'IDH' .*{expect}", out=False)

    # ---------------------------------------------------------------- output folders
    cat = "outputs"
    d = root / "out_is_file"
    d.mkdir(exist_ok=True)
    (d / "out").write_text("a file where the output folder should be\n")
    case("out_is_file", cat, "--out names an existing file", ["run", "--flair", str(G["flair"])],
         f"output folder {_e(d / 'out')} is an existing file, not a folder")
    d = root / "out_under_file"
    d.mkdir(exist_ok=True)
    (d / "notes.txt").write_text("a file\n")
    case("out_under_file", cat, "--out lies under a file", ["run", "--flair", str(G["flair"]), "--out",
                                                            str(d / "notes.txt" / "out")],
         f"output folder {_e(d / 'notes.txt' / 'out')} cannot be created: {_e(d / 'notes.txt')} is a file", out=False)

    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert tuple(ids) == CASE_IDS, f"CASE_IDS is out of date: {sorted(set(ids) ^ set(CASE_IDS))}"
    (root / "cases.json").write_text(json.dumps({"source": src.name, "cases": [asdict(c) for c in cases]}, indent=1))
    return cases


# ------------------------------------------------------------------------------------------------------------
# running and documenting
# ------------------------------------------------------------------------------------------------------------
def run_case(c: BadCase):
    """Run one case through cli.main in this process. Returns (exit code, stderr text)."""
    import contextlib
    import io
    from GliomaRadiogenomicsLib import cli
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = cli.main(c.args)
        except SystemExit as exc:  # argparse
            rc = exc.code
    return rc, err.getvalue()


def check(c: BadCase, rc, stderr: str) -> Optional[str]:
    """None when the case gave its exit code and message, else what went wrong."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    if rc != c.exit_code:
        return f"exit {rc}, expected {c.exit_code}; stderr: {stderr.strip()[-600:]}"
    if len(lines) != 1 or not re.search(c.expect, lines[0][len("error: "):]):
        return f"message {lines or stderr.strip()[-600:]!r} does not match {c.expect!r}"
    for p in c.must_not_exist:
        if Path(p).exists():
            return f"{p} exists: the hostile payload ran"
    return None


def markdown(cases: List[BadCase], results: Dict[str, str], root: Path, source: str) -> str:
    root_s = str(Path(root).resolve())

    def clean(s: str) -> str:
        return s.replace(root_s, "<corpus>").replace(str(REPO), "<repo>").replace("|", "\\|")
    out = ["# Bad-input corpus", "",
           "Generated by `python Testing/bad_inputs/build_corpus.py OUT --markdown docs/bad-inputs.md` (do not edit by "
           "hand). Each case is a broken copy of one real case (first case of the TCGA-LGG cohort in ../shared; the "
           "SYNTHETIC demo case when ../shared is absent), refused with exit code 2 and the message shown, before any "
           "segmentation or feature extraction. `Testing/Python/test_bad_input_corpus.py` runs every case and checks "
           "its message (a regular expression naming the file and the problem, in `build_corpus.py`).", "",
           f"Source of this table: {source}. `<corpus>` is the folder the corpus was built in.", "",
           "Internal errors (bugs) are different: `internal error (a bug, not a problem with your input): ...; the "
           "traceback is in <out>/error.log`, exit code 1.", ""]
    cats: Dict[str, List[BadCase]] = {}
    for c in cases:
        cats.setdefault(c.category, []).append(c)
    out.append(f"{len(cases)} cases in {len(cats)} categories: " + ", ".join(f"{k} ({len(v)})" for k, v in cats.items())
               + ".")
    for cat, cs in cats.items():
        out += ["", f"## {cat}", "", "| case | what is wrong | command | message (stderr, exit 2) |", "|---|---|---|---|"]
        for c in cs:
            cmd = "glioma-radiogenomics " + " ".join(a if " " not in a else f"'{a}'" for a in c.args)
            out.append(f"| `{c.id}` | {clean(c.problem)} | `{clean(cmd)}` | {clean(results.get(c.id, ''))} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="folder to build the corpus in")
    ap.add_argument("--run", action="store_true", help="run every case through the CLI and check it")
    ap.add_argument("--markdown", help="run every case and write the table of cases and messages to this file")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO / "GliomaRadiogenomics"))
    src = Source(Path(args.out).resolve())
    cases = build(args.out, src)
    print(f"{len(cases)} cases in {args.out} (source: {src.name})")
    if not (args.run or args.markdown):
        return 0
    results, failed = {}, 0
    for c in cases:
        rc, err = run_case(c)
        msg = next((ln for ln in err.splitlines() if ln.startswith("error: ")), err.strip()[-300:])
        results[c.id] = msg
        problem = check(c, rc, err)
        failed += problem is not None
        print(f"{'ok  ' if problem is None else 'FAIL'} {c.id}: {problem or msg}")
    if args.markdown:
        Path(args.markdown).write_text(markdown(cases, results, Path(args.out), src.name))
        print(f"wrote {args.markdown}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
