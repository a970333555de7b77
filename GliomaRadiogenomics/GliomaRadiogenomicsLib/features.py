"""Radiomic features with PyRadiomics, per preset (YAML in resources/presets or any user YAML).

A preset is a PyRadiomics parameter file plus one extra top-level section ``glioma_radiogenomics`` (sequences,
regions, intensity normalization, crop padding) that is removed before PyRadiomics sees the settings.

Columns are ``<sequence>_<region>_<imagetype>_<class>_<feature>`` (e.g. ``FLAIR_WT_log-sigma-3-0-mm-3D_glcm_Idm``);
shape features depend only on the mask and are computed once per region (``mask_WT_original_shape_Volume``).
Every table carries its provenance (preset name, settings hash, PyRadiomics version) so that a model bundle can
refuse features computed with other settings.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional

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
    """A shipped preset by name (``wang2025``) or a user's PyRadiomics YAML file."""
    path = Path(name_or_path)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"feature preset file not found: {path}")
        text, source = path.read_text(), str(path)
    else:
        res = resources.files(__package__) / "resources" / "presets" / f"{name_or_path}.yaml"
        if not res.is_file():
            raise ValueError(f"unknown feature preset '{name_or_path}'; shipped presets: "
                             f"{', '.join(available_presets())} (or give a YAML file)")
        text, source = res.read_text(), f"preset:{name_or_path}"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a PyRadiomics parameter file must be a mapping")
    options = data.pop(PRESET_SECTION, {}) or {}
    name = options.get("name") or (path.stem if source != f"preset:{name_or_path}" else name_or_path)
    for seq in options.get("sequences", []):
        if seq not in SEQUENCE_NAMES:
            raise ValueError(f"{source}: unknown sequence '{seq}' (known: {', '.join(SEQUENCE_NAMES)})")
    return Preset(name, data, options, source)


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
    eq = equalize_adapthist(box, kernel_size=ks, clip_limit=clip_limit, nbins=nbins).astype(np.float32)
    out = np.zeros_like(a01, dtype=np.float32)
    out[sl] = eq
    out[~brain] = 0.0
    return out


def normalize_images(pre, preset: Preset) -> Dict[str, sitk.Image]:
    method = preset.options.get("normalization", "none")
    brain = sitk.GetArrayFromImage(pre.brain_mask) > 0
    out = {}
    for seq in preset.sequences:
        a = pre.array(seq).astype(np.float32)
        if method in ("unit", "unit_clahe"):
            a = normalize_unit(a, brain, tuple(preset.options.get("percentiles", (0.5, 99.5))))
            if method == "unit_clahe":
                c = preset.options.get("clahe", {}) or {}
                a = clahe(a, brain, int(c.get("kernel_size", 32)), float(c.get("clip_limit", 0.01)),
                          int(c.get("nbins", 256)))
        elif method == "zscore":
            v = a[brain]
            a = ((a - v.mean()) / (v.std() or 1.0)).astype(np.float32)
            a[~brain] = 0
        elif method not in ("none", None):
            raise ValueError(f"preset {preset.name}: unknown normalization '{method}'")
        img = sitk.GetImageFromArray(a)
        img.CopyInformation(pre.grid)
        out[seq] = img
    return out


# ------------------------------------------------------------------------------------------------------------
# Extraction
# ------------------------------------------------------------------------------------------------------------
def crop_to_mask(images: Dict[str, sitk.Image], mask: sitk.Image, pad: int):
    arr = sitk.GetArrayViewFromImage(mask)
    idx = np.argwhere(arr > 0)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + pad + 1, arr.shape)
    start = [int(v) for v in lo[::-1]]
    size = [int(v) for v in (hi - lo)[::-1]]
    crop = lambda im: sitk.RegionOfInterest(im, size, start)  # noqa: E731
    return {k: crop(v) for k, v in images.items()}, crop(mask)


def _extract_one(args):
    params, image, mask, with_shape = args
    from radiomics import featureextractor
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    p = copy.deepcopy(params)
    if not with_shape:
        p.setdefault("featureClass", {})
        p["featureClass"] = {k: v for k, v in (p.get("featureClass") or {}).items() if k != "shape"}
    ex = featureextractor.RadiomicsFeatureExtractor(p)
    result = ex.execute(image, mask, label=int(p.get("setting", {}).get("label", 1)))
    out = {}
    for k, v in result.items():
        if k.startswith("diagnostics_"):
            continue
        out[k] = float(np.asarray(v).item())
    return out


@dataclass
class FeatureResult:
    values: Dict[str, float]
    provenance: dict
    warnings: List[str] = field(default_factory=list)


def extract_features(pre, label: sitk.Image, preset: Preset | str = "wang2025", workers: Optional[int] = None,
                     progress: Progress = null_progress) -> FeatureResult:
    """PyRadiomics features of every (sequence, region) of the preset, computed on the working grid."""
    if isinstance(preset, str):
        preset = load_preset(preset)
    progress.update(0.02, f"features: normalizing intensities ({preset.options.get('normalization', 'none')})")
    images = normalize_images(pre, preset)
    lab = sitk.GetArrayViewFromImage(label)
    pad = int(preset.options.get("crop_pad_voxels", 50))
    jobs, keys = [], []
    warnings = []
    for region in preset.regions:
        m = region_mask(lab, region)
        if m.sum() < 10:
            warnings.append(f"region {region} has {int(m.sum())} voxels: its features are missing (NaN)")
            continue
        mimg = sitk.GetImageFromArray(m.astype(np.uint8))
        mimg.CopyInformation(label)
        cimgs, cmask = crop_to_mask(images, mimg, pad)
        for i, seq in enumerate(preset.sequences):
            jobs.append((preset.params, cimgs[seq], cmask, i == 0))
            keys.append((region, seq, i == 0))
    n_workers = workers if workers is not None else min(len(jobs), os.cpu_count() or 1, 4)
    values: Dict[str, float] = {}
    results = []
    if n_workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            for i, r in enumerate(pool.map(_extract_one, jobs)):
                results.append(r)
                progress.update(0.1 + 0.9 * (i + 1) / len(jobs), f"features: {keys[i][1]} {keys[i][0]} done")
    else:
        for i, job in enumerate(jobs):
            progress.update(0.1 + 0.9 * i / len(jobs), f"features: {keys[i][1]} {keys[i][0]}")
            results.append(_extract_one(job))
    for (region, seq, _), r in zip(keys, results):
        for k, v in r.items():
            if "_shape_" in k:
                values[f"mask_{region}_{k}"] = v
            else:
                values[f"{SEQUENCE_NAMES[seq]}_{region}_{k}"] = v
    progress.update(1.0, f"features: {len(values)} values")
    return FeatureResult(values, preset.provenance(), warnings)


def expected_columns(preset: Preset | str) -> List[str]:
    """Column names a preset produces (from a tiny synthetic extraction; cached per settings)."""
    if isinstance(preset, str):
        preset = load_preset(preset)
    return _expected_columns_cached(json.dumps(preset.params, sort_keys=True), tuple(preset.sequences),
                                    tuple(preset.regions))


@functools.lru_cache(maxsize=8)
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
