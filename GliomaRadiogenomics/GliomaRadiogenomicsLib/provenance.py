"""Feature provenance: what produced a set of features, and whether a model bundle may use them.

Every feature set (one case's ``features.provenance.json``, a cohort table's ``<table>.provenance.json``) carries a
flat JSON object; a bundle's ``feature_schema`` holds the same keys for its training data. ``compare`` splits the
differences into HARD ones (the features are another quantity: the bundle refuses them) and SOFT ones (the same
quantity measured under other conditions: a warning). docs/model-bundle-format.md gives the table and the reasons.

``options_hash`` is the key of the per-case caches (cohort extraction, batch script): a hash of everything in the
options that changes the numbers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Dict, Iterable, List, Optional, Tuple

from .case import SEQUENCE_NAMES

# key -> (what it is, what to do when it differs). HARD: the bundle refuses the features.
HARD_KEYS: Dict[str, Tuple[str, str]] = {
    "preset": ("feature preset", "re-extract the features with --preset {want}"),
    "settings_hash": ("preset settings hash (PyRadiomics filters, bins, normalisation, sequences, regions)",
                      "re-extract the features with the preset the model was trained on ({preset})"),
    "normalization": ("intensity normalisation", "re-extract the features with the preset the model was trained "
                      "on ({preset}), which normalises with '{want}'"),
    "spacing_mm": ("working-grid spacing in mm", "re-run with --spacing {want}"),
    "rcbv_normalization": ("rCBV normalisation (reference region, perfusion.py)", "re-extract the features with the "
                           "version of this software whose rCBV normalisation the model was trained with ('{want}')"),
    "pyradiomics_major": ("PyRadiomics major version", "extract with PyRadiomics {want}.x, as the model was trained, "
                          "or retrain the model"),
}
# roi_subregions of a given ROI that brings its own necrosis / enhancing labels (BraTS labels, an edited export)
GIVEN_SUBREGIONS = "necrosis / enhancing labels of the given segmentation"
# key -> (what it is, why a difference matters). SOFT: a warning in predictions.json and on screen.
SOFT_KEYS: Dict[str, Tuple[str, str]] = {
    "segmentation_source": ("segmentation source", "features depend on the ROI: segmentation differences shift them"),
    "segmentation_backend": ("automatic segmentation backend", "another network or method draws another ROI"),
    "roi_subregions": ("how the necrosis / enhancing labels of a given ROI were made (--roi-subregions, or the ROI's own)",
                       "the core regions (liu2024 tumor / edema, shim2021 CE / NE) are made from them: without them "
                       "those regions are empty or drawn otherwise"),
    "segmentation_backend_version": ("segmentation backend version (weights)", "other weights draw another ROI"),
    "brain_mask_method": ("brain-mask method", "the normalisation percentiles are taken inside the brain mask"),
    "n4": ("N4 bias-field correction", "bias correction changes intensities and textures"),
    "reference": ("reference sequence (working grid)", "the other sequences are resampled onto it"),
    "registration": ("registration", "misregistered sequences put the ROI on other tissue"),
    "atlas": ("atlas (location / VASARI features)", "location percentages depend on the atlas"),
    "pyradiomics_version": ("PyRadiomics version", "minor versions may fix feature definitions"),
    "simpleitk_version": ("SimpleITK version", "resampling and filters may change slightly"),
    "numpy_version": ("numpy version", "numerical details may change slightly"),
    "torch_version": ("torch version", "network outputs may change slightly"),
    "glioma_radiogenomics_version": ("glioma-radiogenomics version", "the pipeline may have changed"),
}
# compared only when both sides record them (they exist only for some runs)
CONDITIONAL = {"atlas", "torch_version", "segmentation_backend", "segmentation_backend_version"}
# missing on one side: reported as "not recorded" (the rest are compared only when both sides record them)
CHECKED = ("preset", "settings_hash", "normalization", "spacing_mm", "pyradiomics_version", "segmentation_source",
           "brain_mask_method", "n4", "reference", "registration")
VERSION_KEYS = ("pyradiomics_version", "simpleitk_version", "numpy_version", "torch_version",
                "glioma_radiogenomics_version")
MIXED = "mixed: "
PER_CASE = ("rcbv_reference",)   # one case's numbers (rCBV reference region volume, mean CBV): not merged for tables


# ------------------------------------------------------------------------------------------------ recording
def _dist_version(name: str) -> Optional[str]:
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def software_versions(torch_used: bool = False) -> dict:
    """Versions of the software that computes features (torch only when a network ran)."""
    import numpy
    import SimpleITK as sitk
    from . import __version__
    out = {"glioma_radiogenomics_version": __version__, "simpleitk_version": sitk.Version_VersionString(),
           "numpy_version": numpy.__version__}
    if torch_used:
        v = _dist_version("torch")
        if v:
            out["torch_version"] = v
    return out


def preprocessing_provenance(pre) -> dict:
    """What the preprocessed case itself says: grid spacing, reference sequence, brain-mask method used."""
    sp = [round(float(s), 6) for s in pre.grid.GetSpacing()]
    return {"spacing_mm": sp[0] if len(set(sp)) == 1 else sp, "reference": SEQUENCE_NAMES.get(pre.reference, pre.reference),
            "brain_mask_method": pre.brain_mask_method or "unknown"}


def feature_provenance(preset, pre) -> dict:
    """The base provenance of a feature set: the preset's, the preprocessed case's and the software versions (the
    pipeline adds segmentation, N4, registration and atlas)."""
    return {**preset.provenance(), **preprocessing_provenance(pre), **software_versions()}


def backend_provenance(backend) -> dict:
    """``segmentation_backend`` and ``segmentation_backend_version`` of an automatic segmentation backend that ran."""
    from . import __version__
    chosen = getattr(backend, "chosen", None)
    backend = getattr(backend, "picked", None) or backend   # auto: the backend it ran
    name = chosen or getattr(backend, "chosen", None) or getattr(backend, "name", str(backend))
    name = str(name).replace("auto: ", "")
    version = f"weight-free (glioma-radiogenomics {__version__})"
    if name == "lgg-unet2d":
        from . import unet2d
        weights = getattr(backend, "weights_dir", None)
        folds = getattr(backend, "folds", None) or getattr(backend, "unet_folds", "")
        try:
            man = unet2d.read_manifest(weights)
            used = unet2d.parse_folds(folds, man)
            shas = [f["sha256"] for f in man["folds"] if int(f["fold"]) in used]
            digest = hashlib.sha256("".join(shas).encode()).hexdigest()[:12]
            version = f"weights {digest} (fold(s) {','.join(map(str, used))})"
        except Exception as exc:  # manifest unreadable: say so rather than guess
            version = f"weights unknown ({exc})"
    elif name == "brats17":
        from . import brats17
        try:
            version = (f"weights {brats17.weights_digest(getattr(backend, 'weights_dir', None))} (digest of "
                       f"SHA256SUMS), views {getattr(backend, 'views_used', None) or getattr(backend, 'views', 'all')}"
                       f"{', FLAIR as T2' if getattr(backend, 'substitute_t2', None) else ''}")
        except OSError as exc:
            version = f"weights unknown ({exc})"
    elif name == "nnunet":
        model = getattr(backend, "model", None)
        version = (f"model {getattr(model, 'name', model)}, fold(s) {getattr(backend, 'folds', '') or 'all'}, "
                   f"{getattr(backend, 'checkpoint', '')}")
    return {"segmentation_backend": name, "segmentation_backend_version": version}


def label_digest(label) -> str:
    """A digest of a label map's voxels and geometry: tells an untouched automatic segmentation from an edited one."""
    import SimpleITK as sitk
    h = hashlib.sha256(sitk.GetArrayFromImage(sitk.Cast(label, sitk.sitkUInt8)).tobytes())  # a copy: not a view
    # geometry rounded to 1e-4 mm: a NIfTI / NRRD round trip must not turn an untouched file into "edited"
    geometry = (label.GetSize(),) + tuple(tuple(round(float(v), 4) + 0.0 for v in t)
                                          for t in (label.GetSpacing(), label.GetOrigin(), label.GetDirection()))
    h.update(repr(geometry).encode())
    return h.hexdigest()[:16]


def segmentation_origin_record(segmentation_provenance: dict, label) -> dict:
    """What travels with an automatic segmentation (an MRML attribute, ``segmentation.provenance.json`` beside the
    ``segment`` command's output): its backend keys plus the digest of its labels."""
    keep = {k: v for k, v in segmentation_provenance.items() if k.startswith("segmentation_backend")}
    return {"segmentation_source": "automatic", **keep, "digest": label_digest(label)}


def segmentation_origin(record: Optional[dict], label) -> dict:
    """``automatic`` (the label map is unchanged since ``record`` was made), ``edited`` (changed since: the backend is
    kept) or ``given`` (no record: the user's own ROI, a case-folder mask)."""
    if not record:
        return {"segmentation_source": "given"}
    d = {k: v for k, v in record.items() if k != "digest"}
    if "digest" in record:
        d["segmentation_source"] = "automatic" if record["digest"] == label_digest(label) else "edited"
    return d


def torch_used(options, backend_name: str = "", brain_mask_method: str = "") -> bool:
    return (backend_name in ("lgg-unet2d", "nnunet", "brats17") or brain_mask_method in ("deepbet", "hdbet")
            or bool(getattr(options, "deep_weights", None)))


# ------------------------------------------------------------------------------------------------ tables
def merge(provenances: Iterable[Optional[dict]]) -> Optional[dict]:
    """One provenance for a table of cases: a key's common value, ``sequences`` = every sequence present in some
    case, and ``"mixed: a | b"`` where cases differ (a hard key that is mixed can never match a bundle)."""
    provs = [p for p in provenances if p]
    if not provs:
        return None
    keys: List[str] = []
    for p in provs:
        keys += [k for k in p if k not in keys and k not in PER_CASE]
    out = {}
    for k in keys:
        if k == "sequences":
            have = {str(s) for p in provs for s in (p.get(k) or [])}
            out[k] = [n for n in SEQUENCE_NAMES.values() if n in have] + sorted(have - set(SEQUENCE_NAMES.values()))
            continue
        if k == "n4_input":  # corrected upstream in every case: the sequences common to all (none recorded: none)
            common = set.intersection(*({str(s) for s in (p.get(k) or [])} for p in provs))
            if common:
                out[k] = [n for n in SEQUENCE_NAMES.values() if n in common]
            continue
        values = []
        for p in provs:
            v = json.dumps(p.get(k), sort_keys=True) if k in p else "(not recorded)"
            if v not in values:
                values.append(v)
        if len(values) == 1 and k in provs[0]:
            out[k] = provs[0][k]
        else:
            shown = [v if v == "(not recorded)" else str(json.loads(v)) for v in values]
            out[k] = MIXED + " | ".join(shown)
    return out


# ------------------------------------------------------------------------------------------------ checking
def _major(v) -> Optional[str]:
    m = re.match(r"\s*v?(\d+)", str(v))
    return m.group(1) if m else None


def _minor(v) -> str:
    m = re.match(r"\s*v?(\d+)(?:\.(\d+))?", str(v))
    return ".".join(g for g in m.groups() if g) if m else str(v)


def _same(key: str, a, b) -> bool:
    if key == "spacing_mm":
        try:
            xa = [float(v) for v in (a if isinstance(a, list) else [a] * 3)]
            xb = [float(v) for v in (b if isinstance(b, list) else [b] * 3)]
            return all(abs(p - q) <= 1e-3 * max(1.0, abs(p)) for p, q in zip(xa, xb))
        except (TypeError, ValueError):
            return False
    if key in VERSION_KEYS:  # patch releases do not count
        return _minor(a) == _minor(b)
    return a == b


def _n4_state(d: dict, read: List[str]):
    """(state, text) of bias correction for the sequences a model reads: True when N4 ran here or every one of them
    was read from a file corrected upstream (``n4_input``: UCSF-PDGM's '_bias'), "partial" when only some were,
    else the recorded ``n4``."""
    up = [str(s) for s in d["n4_input"]] if isinstance(d.get("n4_input"), list) else []
    if d.get("n4") is True:
        return True, "True"
    if up and read and all(s in up for s in read):
        return True, f"input files bias-corrected already: {', '.join(up)}"
    if up:
        return "partial", f"no N4 here; input files bias-corrected already: {', '.join(up)}"
    return d.get("n4"), str(d.get("n4"))


def compare(name: str, schema: dict, offered: dict, needed_sequences: Optional[List[str]] = None):
    """(hard differences, soft warnings) between a bundle's ``feature_schema`` and the offered features' provenance.
    ``needed_sequences``: display names of the sequences the bundle needs."""
    hard: List[str] = []
    soft: List[str] = []
    want = dict(schema or {})
    have = dict(offered or {})
    for d in (want, have):
        if d.get("pyradiomics_version") is not None:
            d["pyradiomics_major"] = _major(d["pyradiomics_version"])
    for key, (what, todo) in HARD_KEYS.items():
        if key == "pyradiomics_major" and "pyradiomics_version" not in want:
            continue
        if want.get(key) is None:
            continue
        if have.get(key) is None:
            hard.append(f"{what} ({key}): the model was trained with '{want[key]}', the offered features do not "
                        "record it (extracted by an older version?): re-extract them with this version")
        elif str(have[key]).startswith(MIXED) or not _same(key, want[key], have[key]):
            hint = todo.format(want=want[key], preset=want.get("preset", "?"))
            hard.append(f"{what} ({key}): the model was trained with '{want[key]}', the offered features have "
                        f"'{have[key]}': {hint}")
    if needed_sequences and have.get("sequences") is not None:
        offered_seq = set(str(s) for s in have["sequences"])
        lacking = [s for s in needed_sequences if s not in offered_seq]
        if lacking:
            hard.append(f"sequences (sequences): the model needs {', '.join(needed_sequences)}, the offered features "
                        f"come from {', '.join(have['sequences']) or 'none'}: {', '.join(lacking)} missing; use a "
                        "model trained on the sequences present")
    # soft keys
    for key, (what, why) in SOFT_KEYS.items():
        a, b = want.get(key), have.get(key)
        if key == "roi_subregions":  # recorded only when made: absent = none (when either side made them)
            if (a is None and b is None) or (b is None and have.get("segmentation_source") in ("automatic", "edited")):
                continue  # an automatic (or edited automatic) segmentation has its backend's own core labels
            if a is None and b == GIVEN_SUBREGIONS:
                continue  # a model that never recorded how its core labels were made: nothing to compare
            a, b = a or "none", b or "none"
        if a is None or b is None:
            continue
        if key == "n4":  # N4 here, or inputs bias-corrected before they reached us (n4_input), on either side
            read = [str(s) for s in (needed_sequences or want.get("sequences") or [])]
            (va, a), (vb, b) = _n4_state(want, read), _n4_state(have, read)
            if va == vb and va != "partial":
                continue
            soft.append(f"model '{name}': {what} differs: trained with '{a}', these features '{b}'; {why}")
            continue
        if key in ("segmentation_backend", "segmentation_backend_version") and not (
                want.get("segmentation_source") == have.get("segmentation_source") == "automatic"):
            continue  # a backend matters only when both ROIs are automatic
        if key == "segmentation_backend_version" and want.get("segmentation_backend") != have.get("segmentation_backend"):
            continue  # the backend difference is reported already
        if key == "pyradiomics_version" and _major(a) != _major(b):
            continue  # hard
        if not _same(key, a, b):
            extra = ""
            if key == "segmentation_source":
                extra = (f" (trained: {want.get('segmentation', a)}; here: {have.get('segmentation', b)})")
            soft.append(f"model '{name}': {what} differs: trained with '{a}', these features '{b}'{extra}; {why}")
    not_in_bundle = [k for k in CHECKED if want.get(k) is None]
    if not_in_bundle:
        soft.append(f"model '{name}' does not record {', '.join(not_in_bundle)} (an older bundle): these settings "
                    "cannot be checked")
    not_offered = [k for k in CHECKED if want.get(k) is not None and have.get(k) is None and k not in HARD_KEYS
                   and k != "pyradiomics_version"]
    if not_offered:
        soft.append(f"model '{name}': the offered features do not record {', '.join(not_offered)}: these settings "
                    "cannot be checked")
    return hard, soft


# ------------------------------------------------------------------------------------------------ cache keys
def _jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items() if not callable(v)}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def options_hash(options, extra: Optional[dict] = None) -> str:
    """A stable hash of everything in ``PipelineOptions`` that changes the numbers: preprocessing options, backend
    and its options, the preset's settings hash (a YAML file's content, not its path), ROI source, deep weights,
    location features, software versions; not the number of worker processes nor the bundles (``extra`` adds
    what a caller needs, e.g. the batch script's bundles)."""
    from .features import load_preset
    from .pipeline import PipelineOptions
    opt = options or PipelineOptions()
    d = _jsonable(opt)
    for k in ("feature_workers", "bundles"):
        d.pop(k, None)
    for k in ("should_cancel", "timeout_s"):
        (d.get("backend_options") or {}).pop(k, None)
    if not d.get("roi_subregions"):  # an option added later: off, it leaves the hashes of earlier caches unchanged
        d.pop("roi_subregions", None)
    if d.get("case_roi"):  # rows cached before a given ROI's own core labels were recorded (GIVEN_SUBREGIONS) would
        d["given_roi_provenance"] = 2  # mix with new ones in one table: recomputed
    preset = load_preset(opt.preset)
    d["preset"] = {"name": preset.name, "settings_hash": preset.settings_hash()}
    import radiomics
    d["software"] = {k: v for k, v in software_versions().items() if k == "glioma_radiogenomics_version"}
    d["software"]["pyradiomics_version"] = str(radiomics.__version__)
    if opt.backend == "auto":  # auto picks brats17 / lgg-unet2d once their weights and torch are installed
        from . import brats17, unet2d
        from .segment import torch_available
        bo = opt.backend_options or {}
        weights = bo.get("weights_dir")
        d["auto_lgg_unet2d"] = bool(unet2d.weights_available(weights) and torch_available())
        if d["auto_lgg_unet2d"]:
            d["auto_weights"] = backend_provenance(type("B", (), {"name": "lgg-unet2d", "weights_dir": weights,
                                                                  "folds": bo.get("unet_folds", "")})())
        b17 = bo.get("brats17_weights")
        if brats17.weights_available(b17) and torch_available():
            d["auto_brats17"] = brats17.weights_digest(b17)
    if extra:
        d["extra"] = _jsonable(extra)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def file_digest(path) -> str:
    from pathlib import Path
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
