"""Radiomic features with PyRadiomics, per preset (YAML in resources/presets or any user YAML).

A preset is a PyRadiomics parameter file plus one extra top-level section ``glioma_radiogenomics`` (sequences,
regions, intensity normalization, crop padding) that is removed before PyRadiomics sees the settings.

Columns are ``<sequence>_<region>_<imagetype>_<class>_<feature>`` (e.g. ``FLAIR_WT_log-sigma-3-0-mm-3D_glcm_Idm``);
shape features depend only on the mask and are computed once per region (``mask_WT_original_shape_Volume``).
Every table carries its provenance (preset name, settings hash, PyRadiomics version, grid spacing, reference,
brain-mask method, software versions; the pipeline adds N4, registration and the segmentation source: see
provenance.py) so that a model bundle can refuse features computed with other settings.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
import yaml

from .case import SEQUENCE_NAMES
from .progress import Progress, null_progress
from .regions import region_mask

logging.getLogger("radiomics").setLevel(logging.ERROR)
PRESET_SECTION = "glioma_radiogenomics"


@dataclass
class Preset:
    name: str
    params: dict                       # PyRadiomics settings (without our section)
    options: dict                      # our section
    source: str = ""

    @property
    def sequences(self) -> List[str]:
        return list(self.options.get("sequences", ["t1", "t1c", "t2", "flair"]))

    @property
    def regions(self) -> List[str]:
        return list(self.options.get("regions", ["WT"]))

    def settings_hash(self) -> str:
        blob = json.dumps({"params": self.params, "options": self.options}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def provenance(self) -> dict:
        import radiomics
        return {"preset": self.name, "settings_hash": self.settings_hash(),
                "pyradiomics_version": str(radiomics.__version__), "normalization": self.options.get("normalization")}


def available_presets() -> List[str]:
    root = resources.files(__package__) / "resources" / "presets"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_preset(name_or_path: str) -> Preset:
    """A shipped preset by name (``wang2025``) or a user's PyRadiomics YAML file. Read with ``yaml.safe_load`` (a
    tag that constructs objects, e.g. ``!!python/object/apply:os.system``, is refused, nothing runs) and validated:
    our section's keys and values, PyRadiomics' own parameter schema. Errors are InputErrors naming the file."""
    from .io import InputError
    path = Path(name_or_path)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise InputError(f"feature preset file not found: {path}")
        if path.is_dir():
            raise InputError(f"feature preset {path} is a folder; give a PyRadiomics YAML file")
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError:
            raise InputError(f"{path}: not a text file (binary data); a preset is a PyRadiomics YAML file") from None
    else:
        res = resources.files(__package__) / "resources" / "presets" / f"{name_or_path}.yaml"
        if not res.is_file():
            raise InputError(f"unknown feature preset '{name_or_path}'; shipped presets: "
                             f"{', '.join(available_presets())} (or give a YAML file)")
        text, source = res.read_text(), f"preset:{name_or_path}"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.constructor.ConstructorError as exc:
        raise InputError(f"{source}: YAML tag refused ({exc.problem}{_mark(exc)}): presets are read with safe "
                         "loading, which never constructs objects or runs code; plain PyRadiomics settings only") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML ({str(exc).splitlines()[0]}{_mark(exc)})") from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: a PyRadiomics parameter file must be a mapping, not a {type(data).__name__}")
    options = data.pop(PRESET_SECTION, {}) or {}
    check_preset(options, data, source)
    name = options.get("name") or (path.stem if source != f"preset:{name_or_path}" else name_or_path)
    return Preset(name, data, options, source)


def _mark(exc) -> str:
    m = getattr(exc, "problem_mark", None)
    return f", line {m.line + 1}" if m is not None else ""


PRESET_OPTIONS = {"name", "sequences", "regions", "normalization", "clahe", "percentiles", "crop_pad_voxels",
                  "deep_features"}
NORMALIZATIONS = ("unit", "unit_clahe", "zscore", "none", None)


def check_preset(options, params: dict, source: str) -> None:
    """Our section (keys and values) and the PyRadiomics settings (PyRadiomics' own schema)."""
    from .io import InputError
    from .regions import REGION_LABELS

    def bad(msg):
        return InputError(f"{source}: {msg}")
    if not isinstance(options, dict):
        raise bad(f"'{PRESET_SECTION}' must be a mapping")
    unknown = sorted(str(k) for k in set(options) - PRESET_OPTIONS)
    if unknown:
        raise bad(f"unknown key(s) {', '.join(unknown)} in '{PRESET_SECTION}' (known: {', '.join(sorted(PRESET_OPTIONS))})")
    if "name" in options and not isinstance(options["name"], str):
        raise bad("'name' must be a string")
    seqs = options.get("sequences", list(SEQUENCE_NAMES))
    if not isinstance(seqs, list) or not seqs:
        raise bad(f"'sequences' must be a non-empty list of {', '.join(SEQUENCE_NAMES)}")
    for seq in seqs:
        if seq not in SEQUENCE_NAMES:
            raise bad(f"unknown sequence '{seq}' (known: {', '.join(SEQUENCE_NAMES)})")
    regions = options.get("regions", ["WT"])
    if not isinstance(regions, list) or not regions or any(r not in REGION_LABELS for r in regions):
        raise bad(f"'regions' must be a non-empty list of {', '.join(REGION_LABELS)} (got {regions!r})")
    if options.get("normalization", "none") not in NORMALIZATIONS:
        raise bad(f"unknown normalization '{options['normalization']}' (known: unit, unit_clahe, zscore, none)")
    pct = options.get("percentiles", [0.5, 99.5])
    if (not isinstance(pct, list) or len(pct) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                               for v in pct) or not 0 <= pct[0] < pct[1] <= 100):
        raise bad(f"'percentiles' must be two numbers 0 <= low < high <= 100 (got {pct!r})")
    pad = options.get("crop_pad_voxels", 50)
    if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
        raise bad(f"'crop_pad_voxels' must be a whole number >= 0 (got {pad!r})")
    if not isinstance(options.get("deep_features", False), bool):
        raise bad(f"'deep_features' must be true or false (got {options['deep_features']!r})")
    c = options.get("clahe", {}) or {}
    if not isinstance(c, dict) or set(c) - {"kernel_size", "clip_limit", "nbins"}:
        raise bad("'clahe' takes kernel_size, clip_limit and nbins only")
    for k, ok in (("kernel_size", lambda v: isinstance(v, int) and v > 0), ("nbins", lambda v: isinstance(v, int) and v > 1),
                  ("clip_limit", lambda v: isinstance(v, (int, float)) and 0 < v <= 1)):
        if k in c and (isinstance(c[k], bool) or not ok(c[k])):
            raise bad(f"clahe '{k}' has an invalid value {c[k]!r}")
    import pykwalify.core
    import radiomics
    schema, funcs = radiomics.getParameterValidationFiles()
    logger = logging.getLogger("pykwalify")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        pykwalify.core.Core(source_data=params, schema_files=[schema], extensions=[funcs]).validate()
    except Exception as exc:  # pykwalify SchemaError, or PyRadiomics' ValueError for an unknown image type / class
        lines = [ln.strip(" -") for ln in str(exc).splitlines() if ln.strip().startswith("- ")]
        why = "; ".join(ln.split(".: Path")[0] for ln in lines[:3]) or str(exc).splitlines()[0]
        raise bad(f"invalid PyRadiomics settings: {why}") from None
    finally:
        logger.setLevel(level)


# ------------------------------------------------------------------------------------------------------------
# Intensity normalization
# ------------------------------------------------------------------------------------------------------------
def normalize_unit(a: np.ndarray, brain: np.ndarray, percentiles=(0.5, 99.5)) -> np.ndarray:
    lo, hi = np.percentile(a[brain], percentiles)
    if hi <= lo:
        hi = lo + 1.0
    out = np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    out[~brain] = 0.0
    return out


def clahe(a01: np.ndarray, brain: np.ndarray, kernel_size: int = 32, clip_limit: float = 0.01,
          nbins: int = 256) -> np.ndarray:
    """3D CLAHE on the brain's bounding box (deterministic for a given case, independent of the tumor)."""
    from skimage.exposure import equalize_adapthist

    idx = np.argwhere(brain)
    lo, hi = idx.min(0), idx.max(0) + 1
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    box = a01[sl]
    ks = tuple(min(kernel_size, max(2, s)) for s in box.shape)
    if box.shape[-1] in (3, 4):  # skimage would take the last axis for colour channels: its own code, as it is
        eq = equalize_adapthist(box, kernel_size=ks, clip_limit=clip_limit, nbins=nbins)
    else:
        eq = equalize_adapthist_exact(box, ks, clip_limit, nbins)
    eq = eq.astype(np.float32)
    out = np.zeros_like(a01, dtype=np.float32)
    out[sl] = eq
    out[~brain] = 0.0
    return out


def equalize_adapthist_exact(image: np.ndarray, kernel_size, clip_limit: float = 0.01, nbins: int = 256) -> np.ndarray:
    """scikit-image's ``equalize_adapthist`` (grey-level image, ``kernel_size`` one int per axis), bit-identical
    (tested), ~3.5x less CPU on a brain box.

    Same steps and same helpers (``img_as_uint``, ``rescale_intensity``, skimage's ``clip_histogram`` and
    ``map_histogram``); only the final interpolation gathers differently: skimage gathers each of the 2^ndim
    neighbouring tile mappings for the whole image at once from int64 maps (``take_along_axis``), then multiplies
    with the float64 coefficients, rounds to float32 and adds in float32. We gather from the same mappings stored as
    uint16 (they lie in [0, 2^14 - 1]) a few blocks at a time (cache-sized), and do the same float64 product, float32
    rounding and float32 sum in the same edge order: every voxel goes through the same float operations."""
    import math
    from skimage.exposure import rescale_intensity
    from skimage.exposure._adapthist import NR_OF_GRAY, clip_histogram, map_histogram
    from skimage.util import img_as_uint
    from skimage._shared.utils import _supported_float_type

    float_dtype = _supported_float_type(image.dtype)
    image = img_as_uint(image)
    image = np.round(rescale_intensity(image, out_range=(0, NR_OF_GRAY - 1))).astype(np.min_scalar_type(NR_OF_GRAY))
    kernel_size = [int(k) for k in kernel_size]
    ndim, dtype = image.ndim, image.dtype
    pad_start = [k // 2 for k in kernel_size]
    pad_end = [(k - s % k) % k + int(np.ceil(k / 2.0)) for k, s in zip(kernel_size, image.shape)]
    image = np.pad(image, [[a, b] for a, b in zip(pad_start, pad_end)], mode="reflect")
    lut = np.arange(NR_OF_GRAY, dtype=np.min_scalar_type(NR_OF_GRAY))
    lut //= 1 + NR_OF_GRAY // nbins
    image = lut[image]
    # tile mappings (contextual regions of kernel_size, clipped histograms, cumulated)
    ns_hist = [int(s / k) - 1 for s, k in zip(image.shape, kernel_size)]
    order = np.array([np.arange(0, ndim * 2, 2), np.arange(1, ndim * 2, 2)]).flatten()
    hist_slices = tuple(slice(k // 2, k // 2 + n * k) for k, n in zip(kernel_size, ns_hist))
    hb = np.transpose(image[hist_slices].reshape(np.array([ns_hist, kernel_size]).T.flatten()), axes=order)
    assembled = hb.shape
    hb = hb.reshape((math.prod(ns_hist), -1))
    kernel_elements = math.prod(kernel_size)
    clim = int(np.clip(clip_limit * kernel_elements, 1, None)) if clip_limit > 0.0 else kernel_elements
    hist = np.apply_along_axis(np.bincount, -1, hb, minlength=nbins)
    hist = np.apply_along_axis(clip_histogram, -1, hist, clip_limit=clim)
    hist = map_histogram(hist, 0, NR_OF_GRAY - 1, kernel_elements)
    hist = hist.reshape(assembled[:ndim] + (-1,))
    map_array = np.pad(hist, [[1, 1] for _ in range(ndim)] + [[0, 0]], mode="edge")
    # multilinear interpolation between the mappings of the 2^ndim neighbouring tiles
    ns_proc = [int(s / k) for s, k in zip(image.shape, kernel_size)]
    blocks = np.transpose(image.reshape(np.array([ns_proc, kernel_size]).T.flatten()), axes=order)
    blocks_shape = blocks.shape
    blocks = blocks.reshape((math.prod(ns_proc), math.prod(blocks.shape[ndim:])))
    coeffs = np.meshgrid(*tuple([np.arange(k) / k for k in kernel_size[::-1]]), indexing="ij")
    coeffs = [np.transpose(c).flatten() for c in coeffs]
    inv_coeffs = [1 - c for c in coeffs]
    nb, nv = blocks.shape
    nlev = map_array.shape[-1]
    maps, edge_coeffs = [], []
    for edge in np.ndindex(*([2] * ndim)):
        em = map_array[tuple(slice(e, e + n) for e, n in zip(edge, ns_proc))].reshape((nb, -1))
        maps.append(em.astype(np.uint16).ravel())
        edge_coeffs.append(np.prod([[inv_coeffs, coeffs][e][d] for d, e in enumerate(edge[::-1])], 0))
    result = np.empty((nb, nv), np.float32)
    step = 4
    prod = np.empty((step, nv), np.float64)
    for b0 in range(0, nb, step):
        b1 = min(nb, b0 + step)
        idx = blocks[b0:b1].astype(np.intp) + (np.arange(b0, b1) * nlev)[:, None]
        acc = np.zeros((b1 - b0, nv), np.float32)
        t = prod[:b1 - b0]
        for m, c in zip(maps, edge_coeffs):
            np.multiply(m[idx], c, out=t)
            acc += t.astype(np.float32)
        result[b0:b1] = acc
    result = result.astype(dtype)
    rebuild = np.array([np.arange(0, ndim), np.arange(ndim, ndim * 2)]).T.flatten()
    result = np.transpose(result.reshape(blocks_shape), axes=rebuild).reshape(image.shape)
    result = result[tuple(slice(a, s - b) for a, b, s in zip(pad_start, pad_end, image.shape))]
    return rescale_intensity(result.astype(float_dtype, copy=False))


def normalize_array(a: np.ndarray, brain: np.ndarray, options: dict) -> np.ndarray:
    """One sequence's intensities as the preset wants them (float32; 0 outside the brain unless 'none')."""
    method = options.get("normalization", "none")
    a = a.astype(np.float32)
    if method in ("unit", "unit_clahe"):
        a = normalize_unit(a, brain, tuple(options.get("percentiles", (0.5, 99.5))))
        if method == "unit_clahe":
            c = options.get("clahe", {}) or {}
            a = clahe(a, brain, int(c.get("kernel_size", 32)), float(c.get("clip_limit", 0.01)), int(c.get("nbins", 256)))
    elif method == "zscore":
        v = a[brain]
        a = ((a - v.mean()) / (v.std() or 1.0)).astype(np.float32)
        a[~brain] = 0
    elif method not in ("none", None):
        raise ValueError(f"unknown normalization '{method}'")
    return a


def normalize_images(pre, preset: Preset) -> Dict[str, sitk.Image]:
    brain = sitk.GetArrayFromImage(pre.brain_mask) > 0
    out = {}
    for seq in preset.sequences:
        try:
            a = normalize_array(pre.array(seq), brain, preset.options)
        except ValueError as exc:
            raise ValueError(f"preset {preset.name}: {exc}") from None
        img = sitk.GetImageFromArray(a)
        img.CopyInformation(pre.grid)
        out[seq] = img
    return out


# ------------------------------------------------------------------------------------------------------------
# Extraction
#
# PyRadiomics filters the WHOLE image for every sequence and recomputes the mask's shape for every sequence; only
# then does it crop to the mask. We compute the same values with less work:
# - shape once per region, on the mask cropped to its box (shape depends on the mask and spacing only), its mesh
#   (surface, volume, diameters) by shape_fast (numpy, bit-identical to PyRadiomics' C code, tested);
# - grey levels binned once per image for all classes (_BinOnce); the GLCM, GLSZM, GLRLM, NGTDM and GLDM matrices by
#   texture_fast (numpy, the same float64 matrices as PyRadiomics' C code, tested);
# - the original image cropped to the mask box (PyRadiomics crops there itself before computing features);
# - LoG on a crop = (mask box + pad) intersected with the box of the image's non-zero voxels. On a side where the
#   crop stops one voxel outside the non-zero box, every voxel beyond is 0 in the whole image, and ITK's recursive
#   Gaussian, whose initial state assumes the border value continues, starts from the 0 border in the same (zero)
#   state as when it runs through those zeros: bit-identical (a crop AT the box is not: the border is not 0). On a side
#   cut by the pad, the pad (>= 50 voxels for sigma 5 mm at 1 mm) keeps differences below float32 rounding.
# - wavelets (periodic extension in PyWavelets) on the mask box + pad, as before;
# - jobs per (region, sequence, filter) spread over processes, normalization included.
# tests/test_features.py checks every preset against plain PyRadiomics on whole images (1e-6 relative).
# ------------------------------------------------------------------------------------------------------------
def _box(arr: np.ndarray):
    """Bounding box [lo, hi) of the non-zero voxels (None when there are none)."""
    lo, hi = [], []
    for axis in range(arr.ndim):
        hit = np.flatnonzero(np.any(arr, axis=tuple(a for a in range(arr.ndim) if a != axis)))
        if not hit.size:
            return None
        lo.append(hit[0])
        hi.append(hit[-1] + 1)
    return np.array(lo), np.array(hi)


def _crop(img: sitk.Image, lo, hi) -> sitk.Image:
    return sitk.RegionOfInterest(img, [int(v) for v in (np.asarray(hi) - lo)[::-1]], [int(v) for v in np.asarray(lo)[::-1]])


def _filter_units(params: dict) -> List[tuple]:
    """The preset's image types split into independent units: (type, custom settings)."""
    units = []
    for name, kw in (params.get("imageType") or {"Original": {}}).items():
        kw = dict(kw or {})
        if name == "LoG":
            for s in kw.pop("sigma", []):
                units.append(("LoG", dict(kw, sigma=[s])))
        else:
            units.append((name, kw))
    return units


def _settings_without_shape(params: dict, unit=None) -> dict:
    p = copy.deepcopy(params)
    p["featureClass"] = {k: v for k, v in (p.get("featureClass") or {}).items() if k != "shape"}
    if unit is not None:
        p["imageType"] = {unit[0]: unit[1]}
    return p


@functools.lru_cache(maxsize=64)
def _extractor(params_json: str):
    """One extractor per settings and process: building one validates the settings (~70 ms each time)."""
    from radiomics import featureextractor
    return featureextractor.RadiomicsFeatureExtractor(json.loads(params_json))


_EXECUTE_ONLY = ("resegmentRange", "resampledPixelSpacing", "normalize", "correctMask", "voxelBased")


@functools.lru_cache(maxsize=64)
def _shape_extractor(params_json: str):
    """The extractor of the shape jobs: PyRadiomics' with the shape class's mesh (SurfaceArea, MeshVolume, the four
    diameters) from shape_fast (numpy; bit-identical to cShape.calculate_coefficients, ~20x less CPU: bench_shape.py)."""
    from .shape_fast import pyradiomics_classes
    return pyradiomics_classes()[1](json.loads(params_json))


def _extract_one(args):
    """PyRadiomics on one (image, mask) with the given settings (shape optional): see ``_extract``."""
    return _extract(args, _extractor)


def _extract(args, extractor):
    """PyRadiomics on one (image, mask) with the given settings (shape optional), extractor from ``extractor(json)``.

    Without shape, and when no setting needs PyRadiomics' loading step (resampling, normalization, resegmentation,
    mask correction), this runs execute()'s own steps minus checkMask: image-type generator -> cropToTumorMask with
    the mask's box -> computeFeatures. checkMask's LabelStatistics pass over the whole (filtered) image only
    validates and finds that box, which we take from numpy. Same functions, same values (tested against execute).
    """
    params, image, mask, with_shape = args
    from radiomics import imageoperations
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    p = copy.deepcopy(params) if with_shape else _settings_without_shape(params)
    ex = extractor(json.dumps(p, sort_keys=True))
    label = int(p.get("setting", {}).get("label", 1))
    fast = not with_shape and not any(ex.settings.get(k) for k in _EXECUTE_ONLY)
    if fast:
        m = sitk.GetArrayViewFromImage(mask) == label
        box = _box(m)
        fast = box is not None and int(m.sum()) > 1
    if fast:
        lo, hi = box
        bbox = np.ravel(np.column_stack([lo[::-1], hi[::-1] - 1]))  # PyRadiomics order: x0, x1, y0, y1, z0, z1
        settings = dict(ex.settings, label=label)
        result = {}
        for type_name, custom in ex.enabledImagetypes.items():
            kw = dict(settings, **custom)
            if type_name == "LoG" and image.GetPixelID() == sitk.sitkFloat32 and image.GetDimension() == 3:
                cmask = None
                for cimg, name, fkw in log_images_on_box(image, lo, hi, **kw):
                    if cmask is None:
                        cmask = imageoperations.cropToTumorMask(mask, mask, bbox, padDistance=0)[1]
                    result.update(compute_features_binned_once(ex, cimg, cmask, name, **fkw))
                continue
            for filtered, name, fkw in getattr(imageoperations, f"get{type_name}Image")(image, mask, **kw):
                cimg, cmask = imageoperations.cropToTumorMask(filtered, mask, bbox, padDistance=0)
                result.update(compute_features_binned_once(ex, cimg, cmask, name, **fkw))
    else:
        result = ex.execute(image, mask, label=label)
    out = {}
    for k, v in result.items():
        if k.startswith("diagnostics_"):
            continue
        out[k] = float(np.asarray(v).item())
    return out


_BINNED: dict = {}  # the current (image, mask)'s grey-level binning, shared by its feature classes


class _BinOnce:
    """Mixin for PyRadiomics' feature classes: ``_applyBinning`` computed once per (image, mask) and reused.

    Every texture class and firstorder call ``self._applyBinning(self.imageArray)`` in ``_initSegmentBasedCalculation``
    on the same image array, mask and settings (``imageoperations.binImage`` + the grey levels present and Ng): the
    first class bins, the others get a copy of the same matrix and coefficients (identical values, tested)."""

    def _applyBinning(self, matrix):
        if "matrix" not in _BINNED:
            _BINNED["matrix"] = super()._applyBinning(matrix)
            _BINNED["coefficients"] = {k: self.coefficients[k] for k in ("grayLevels", "Ng")}
        else:
            self.coefficients.update({k: np.copy(v) for k, v in _BINNED["coefficients"].items()})
        return _BINNED["matrix"].copy()


@functools.lru_cache(maxsize=None)
def _bin_once_class(cls):
    """The feature class with binning once (_BinOnce); a texture class also with its matrix computed in numpy
    (texture_fast: the same matrix as PyRadiomics' C code, less CPU)."""
    from .texture_fast import texture_classes
    return type(cls.__name__, (_BinOnce, texture_classes().get(cls, cls)),
                {"__module__": cls.__module__, "__doc__": cls.__doc__})


def compute_features_binned_once(ex, image: sitk.Image, mask: sitk.Image, image_type_name: str, **kwargs) -> dict:
    """``ex.computeFeatures(image, mask, image_type_name, **kwargs)`` (same classes, order, names and values) with
    the grey-level binning done once for all classes instead of once per class (segment-based only)."""
    import collections
    from radiomics import getFeatureClasses
    if kwargs.get("voxelBased"):
        return ex.computeFeatures(image, mask, image_type_name, **kwargs)
    classes = getFeatureClasses()
    out = collections.OrderedDict()
    _BINNED.clear()
    try:
        for class_name, feature_names in ex.enabledFeatures.items():
            if class_name.startswith("shape") or class_name not in classes:
                continue
            fc = _bin_once_class(classes[class_name])(image, mask, **kwargs)
            for feature in feature_names or ():
                fc.enableFeatureByName(feature)
            for feature, value in fc.execute().items():
                out[f"{image_type_name}_{class_name}_{feature}"] = value
    finally:
        _BINNED.clear()
    return out


def log_images_on_box(image: sitk.Image, lo, hi, **kwargs):
    """PyRadiomics' ``getLoGImage`` (same checks, names and settings), but each LoG image is returned only on the box
    [lo, hi) (numpy z, y, x order), the region whose voxels the features use, and computed with about half the work.

    ITK's LaplacianRecursiveGaussianImageFilter sums three terms, each a chain of 1D recursive Gaussian passes over the
    whole image: second derivative along direction d, then zero-order smoothing along the other directions in
    increasing order (float32 between passes, NormalizeAcrossScale). A 1D pass along one direction only mixes voxels
    of the same line, so after the pass along direction j, every later pass needs the lines of the box along j only:
    we run the same passes in the same order and crop along j right after each pass. Every voxel of the box goes
    through the same float operations as in the whole-image filter, and the terms are summed as ITK does (term /
    spacing[d]^2 added in double to a float32 image): bit-identical (tested against getLoGImage)."""
    from radiomics import imageoperations
    size = np.array(image.GetSize())
    spacing = np.array(image.GetSpacing())
    if np.min(size) < 4:  # PyRadiomics warns and yields nothing
        yield from imageoperations.getLoGImage(image, None, **kwargs)
        return
    lo_xyz, hi_xyz = np.asarray(lo)[::-1], np.asarray(hi)[::-1]

    def crop_along(img, d):
        sz, idx = list(img.GetSize()), [0, 0, 0]
        idx[d], sz[d] = int(lo_xyz[d]), int(hi_xyz[d] - lo_xyz[d])
        return sitk.RegionOfInterest(img, sz, idx)

    for sigma in kwargs.get("sigma", []):
        if not sigma > 0.0 or not np.all(size >= np.ceil(sigma / spacing) + 1):
            # PyRadiomics warns and skips this sigma; its own generator says why
            yield from imageoperations.getLoGImage(image, None, **dict(kwargs, sigma=[sigma]))
            continue
        total, ref = np.zeros(tuple(int(v) for v in np.asarray(hi) - lo), np.float32), None
        for d in range(3):
            g = sitk.RecursiveGaussianImageFilter()
            g.SetSigma(float(sigma))
            g.SetNormalizeAcrossScale(True)
            g.SetDirection(d)
            g.SetOrder(sitk.RecursiveGaussianImageFilter.SecondOrder)
            term = crop_along(g.Execute(image), d)
            g.SetOrder(sitk.RecursiveGaussianImageFilter.ZeroOrder)
            for j in (k for k in range(3) if k != d):
                g.SetDirection(j)
                term = crop_along(g.Execute(term), j)
            # ITK accumulates term / spacing[d]^2 in double into a float32 image (bit-identical this way only)
            total = (total.astype(np.float64) + sitk.GetArrayViewFromImage(term).astype(np.float64)
                     / (spacing[d] * spacing[d])).astype(np.float32)
            ref = term
        out = sitk.GetImageFromArray(total)
        out.CopyInformation(ref)
        yield out, "log-sigma-%s-mm-3D" % (str(sigma).replace(".", "-")), kwargs


def _shape_job(args):
    params, mask = args
    p = copy.deepcopy(params)
    p["featureClass"] = {"shape": (p.get("featureClass") or {}).get("shape")}
    p["imageType"] = {"Original": {}}
    return _extract((p, sitk.Cast(mask, sitk.sitkFloat32), mask, True), _shape_extractor)


_SHARED: dict = {}  # inputs each worker holds once instead of receiving them pickled per job (36 MB per sequence)


def _normalize_job(args):
    seq, inputs = args
    array, brain, options = inputs if inputs is not None else (_SHARED["arrays"][seq], _SHARED["brain"], _SHARED["options"])
    return seq, normalize_array(array, brain, options)


def _worker_init():
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # one process per core; no oversubscription
    logging.getLogger("radiomics").setLevel(logging.ERROR)


class _Inline:
    """Same interface as the process pool, for workers=1 (no process start-up, easier debugging)."""

    def submit(self, fn, *args):
        from concurrent.futures import Future
        f = Future()
        f.set_result(fn(*args))
        return f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@dataclass
class FeatureResult:
    values: Dict[str, float]
    provenance: dict
    warnings: List[str] = field(default_factory=list)


def extract_features(pre, label: sitk.Image, preset: Preset | str = "wang2025", workers: Optional[int] = None,
                     progress: Progress = null_progress, columns: Optional[Iterable[str]] = None) -> FeatureResult:
    """PyRadiomics features of every (sequence, region) of the preset, computed on the working grid.

    ``columns``: only the jobs (sequence x region x filter unit, feature classes) that give these columns run (e.g.
    the 5 columns the shipped ATRX bundle reads of liu2024's 6 738); the values are those of the full extraction (each job is
    independent: same image, mask, settings and binning). None: every column."""
    if isinstance(preset, str):
        preset = load_preset(preset)
    if preset.options.get("normalization", "none") not in ("unit", "unit_clahe", "zscore", "none", None):
        raise ValueError(f"preset {preset.name}: unknown normalization '{preset.options['normalization']}'")
    from .provenance import feature_provenance
    provenance = feature_provenance(preset, pre)
    present = [s for s in preset.sequences if s in pre.images]
    if not present:
        from .checks import preset_inputs_missing
        from .io import InputError
        raise InputError(preset_inputs_missing(preset, pre.images, derive=False))
    absent = [s for s in preset.sequences if s not in pre.images]
    provenance["sequences"] = [SEQUENCE_NAMES[s] for s in present]
    if absent:  # features of the sequences present; same settings (hash) as the full preset
        preset = Preset(preset.name, preset.params, {**preset.options, "sequences": present}, preset.source)
    lab = sitk.GetArrayViewFromImage(label)
    pad = int(preset.options.get("crop_pad_voxels", 50))
    warnings: List[str] = ([f"preset {preset.name}: no {', '.join(SEQUENCE_NAMES[s] for s in absent)} in this case: "
                             "features of the sequences present only"] if absent else [])
    masks = {}
    for region in preset.regions:
        m = region_mask(lab, region)
        if m.sum() < 10:
            warnings.append(f"region {region} has {int(m.sum())} voxels: its features are missing (NaN)")
            continue
        masks[region] = m.astype(np.uint8)
    units = _filter_units(preset.params)
    with_shape = "shape" in (preset.params.get("featureClass") or {})
    plan = None
    if columns is not None:
        plan = column_plan(preset, units, columns)
        provenance["columns_subset"] = (f"{len(plan.columns)} of {len(expected_columns(preset))} columns (those asked "
                                        "for; values as in the full extraction)")
        masks = {r: m for r, m in masks.items() if r in plan.regions}
        warnings = [w for w in warnings if not w.startswith("region ") or w.split()[1] in plan.regions]
        preset = Preset(preset.name, preset.params, {**preset.options, "sequences": [
            s for s in preset.sequences if s in plan.sequences]}, preset.source)
    n_extract = (len(preset.sequences) * len(masks) * len(units) if plan is None else
                 sum(1 for (s, r, _) in plan.jobs if r in masks and s in preset.sequences))
    if plan is None:
        n_shape = len(masks) if with_shape else 0
    else:
        n_shape = len(plan.shape & set(masks))
    n_jobs = len(preset.sequences) + n_extract + n_shape
    if not masks or not n_jobs:
        return FeatureResult({}, provenance, warnings)
    n_workers = workers if workers is not None else min(n_jobs, os.cpu_count() or 1, 4)
    brain = sitk.GetArrayFromImage(pre.brain_mask) > 0
    values: Dict[str, float] = {}
    progress.update(0.02, f"features: {preset.name}, {n_jobs} jobs on {n_workers} process(es)")
    # the arrays reach each worker once: inherited under fork, sent through the pool initializer under spawn /
    # forkserver (parallel.process_pool; no start method is forced), never pickled once per job
    from .parallel import process_pool
    share = True
    shared = {"arrays": {seq: pre.array(seq) for seq in preset.sequences}, "brain": brain, "options": preset.options}
    if n_workers > 1:
        pool_cm = process_pool(n_workers, _worker_init, shared=(__name__, "_SHARED", shared))
    else:
        _SHARED.update(shared)
        pool_cm = _Inline()
    try:
        with pool_cm as pool:
            _run_jobs(pool, pre, label, preset, masks, units, pad, brain, share, n_jobs, values, progress, plan)
    finally:
        _SHARED.clear()
    order = expected_columns(preset) if plan is None else plan.columns  # a plan's jobs make more: only those asked
    values = {**{k: values[k] for k in order if k in values},
              **({k: v for k, v in values.items() if k not in order} if plan is None else {})}
    progress.update(1.0, f"features: {len(values)} values")
    return FeatureResult(values, provenance, warnings)


def _unit_box(unit, mbox, shape, nonzero_box, pad: int, spacing: float):
    """Crop box for one filter unit (see the comment above the extraction code)."""
    mlo, mhi = mbox
    if unit[0] == "Original":
        return mlo, mhi
    if unit[0] == "LoG":  # 10 sigma (+2) is below float32 rounding; never more than the preset's pad
        pad = min(pad, int(np.ceil(10 * unit[1]["sigma"][0] / spacing)) + 2)
    lo, hi = np.maximum(mlo - pad, 0), np.minimum(mhi + pad, shape)
    if unit[0] == "LoG" and nonzero_box is not None:
        lo = np.maximum(lo, np.minimum(nonzero_box[0] - 1, mlo))  # keep one 0 voxel: the border value seeds
        hi = np.minimum(hi, np.maximum(nonzero_box[1] + 1, mhi))  # the recursive filter
    return lo, hi


@dataclass
class ColumnPlan:
    """The extraction jobs that give some columns: ``jobs`` {(sequence, region, unit index): feature classes},
    ``shape``: regions whose shape columns are asked for; ``columns``: the asked columns this preset makes."""
    jobs: Dict[tuple, List[str]]
    shape: set
    columns: List[str]

    @property
    def regions(self) -> set:
        return {r for (_, r, _) in self.jobs} | self.shape

    @property
    def sequences(self) -> set:
        return {s for (s, _, _) in self.jobs}


def column_plan(preset: Preset, units: List[tuple], columns: Iterable[str]) -> ColumnPlan:
    """Which jobs of ``extract_features`` give ``columns`` (names the preset does not make are ignored): each filter
    unit's own column names come from the same tiny synthetic extraction as ``expected_columns``."""
    made = set(expected_columns(preset))
    wanted = [c for c in dict.fromkeys(columns) if c in made]
    jobs: Dict[tuple, List[str]] = {}
    shape = {r for r in preset.regions if any(c.startswith(f"mask_{r}_") for c in wanted)}
    for region in preset.regions:
        for seq in preset.sequences:
            prefix = f"{SEQUENCE_NAMES[seq]}_{region}_"
            keys = {c[len(prefix):] for c in wanted if c.startswith(prefix)}
            for i, unit in enumerate(units):
                hit = keys & set(_unit_keys(json.dumps(_settings_without_shape(preset.params, unit), sort_keys=True)))
                if hit:
                    jobs[(seq, region, i)] = sorted({k.split("_")[1] for k in hit})
    return ColumnPlan(jobs, shape, wanted)


@functools.lru_cache(maxsize=64)
def _unit_keys(params_json: str) -> Tuple[str, ...]:
    """PyRadiomics' feature names of one filter unit's settings (no shape), e.g. 'wavelet-LLH_glcm_Correlation'."""
    return tuple(c[len("FLAIR_r_"):] for c in _expected_columns_cached(params_json, ("flair",), ("r",)))


def _run_jobs(pool, pre, label, preset, masks, units, pad, brain, share, n_jobs, values, progress, plan=None):
    from concurrent.futures import FIRST_COMPLETED, wait
    mimgs = {}
    for region, m in masks.items():
        mimgs[region] = sitk.GetImageFromArray(m)
        mimgs[region].CopyInformation(label)
    boxes = {region: _box(m) for region, m in masks.items()}
    pending = {}
    if "shape" in (preset.params.get("featureClass") or {}):
        for region, m in masks.items():
            if plan is not None and region not in plan.shape:
                continue
            lo, hi = boxes[region]
            job = (preset.params, _crop(mimgs[region], np.maximum(lo - 1, 0), np.minimum(hi + 1, m.shape)))
            pending[pool.submit(_shape_job, job)] = ("shape", region)
    for seq in preset.sequences:
        inputs = None if share else (pre.array(seq), brain, preset.options)
        pending[pool.submit(_normalize_job, (seq, inputs))] = ("normalize", seq)
    if plan is None:
        expected_columns(preset)  # cached; computed here while the workers run
    spacing = min(pre.grid.GetSpacing())
    done = 0
    while pending:
        finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for fut in finished:
            key = pending.pop(fut)
            result = fut.result()
            done += 1
            progress.update(0.05 + 0.95 * done / n_jobs, "features: " + " ".join(map(str, key)))
            if key[0] == "shape":
                values.update({f"mask_{key[1]}_{k}": v for k, v in result.items()})
            elif key[0] == "normalize":
                seq, arr = result
                img = sitk.GetImageFromArray(arr)
                img.CopyInformation(pre.grid)
                nz = _box(arr)
                for region, m in masks.items():
                    for i, unit in enumerate(units):
                        settings = _settings_without_shape(preset.params, unit)
                        if plan is not None:
                            if (seq, region, i) not in plan.jobs:
                                continue
                            settings["featureClass"] = {k: v for k, v in settings["featureClass"].items()
                                                        if k in plan.jobs[(seq, region, i)]}
                        lo, hi = _unit_box(unit, boxes[region], m.shape, nz, pad, spacing)
                        job = (settings, _crop(img, lo, hi), _crop(mimgs[region], lo, hi), False)
                        pending[pool.submit(_extract_one, job)] = ("extract", seq, region, unit[0])
            else:
                prefix = f"{SEQUENCE_NAMES[key[1]]}_{key[2]}_"
                values.update({prefix + k: v for k, v in result.items()})


def expected_columns(preset: Preset | str) -> List[str]:
    """Column names a preset produces (from a tiny synthetic extraction; cached per settings)."""
    if isinstance(preset, str):
        preset = load_preset(preset)
    return _expected_columns_cached(json.dumps(preset.params, sort_keys=True), tuple(preset.sequences),
                                    tuple(preset.regions))


@functools.lru_cache(maxsize=64)
def _expected_columns_cached(params_json, sequences, regions):
    params = json.loads(params_json)
    rng = np.random.default_rng(0)
    a = rng.random((24, 24, 24)).astype(np.float32)
    img = sitk.GetImageFromArray(a)
    m = np.zeros_like(a, dtype=np.uint8)
    m[6:18, 6:18, 6:18] = 1
    mimg = sitk.GetImageFromArray(m)
    cols = []
    r = _extract_one((params, img, mimg, True))
    for region in regions:
        for seq in sequences:
            for k in r:
                if "_shape_" in k:
                    if seq == sequences[0]:
                        cols.append(f"mask_{region}_{k}")
                else:
                    cols.append(f"{SEQUENCE_NAMES[seq]}_{region}_{k}")
    return cols
