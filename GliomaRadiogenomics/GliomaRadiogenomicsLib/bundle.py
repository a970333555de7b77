"""Model bundle format v1: a logistic model as plain JSON (no pickle), with its feature schema, nomogram scales,
training provenance, metrics and intended use.

    lp = intercept + sum_i coefficient_i * (x_i - center_i) / scale_i ;  probability = 1 / (1 + exp(-lp))

Features are grouped into nomogram variables (e.g. "Radiomics score" = all radiomic terms, "Age", "Sex"). A
variable's contribution c_g = sum of its terms; on the nomogram it gets
points_g = 100 * (c_g - c_min_g) / max_g(c_max_g - c_min_g), where [c_min_g, c_max_g] is the contribution range over
the variable's axis (rms conventions, nomogram.py: trimmed training range for continuous variables and scores, all
levels for categorical ones), so total points map exactly to the linear predictor:
lp = lp_at_zero_points + total_points * lp_per_point. The whole geometry (ticks, total-points and probability axes)
is computed once at training and stored; a bundle saved before gets it computed at loading from its min-max ranges
(nomogram.geometry_from_legacy, with a note).

Loading validates the document; ``check_features`` refuses a table that lacks a feature or whose provenance differs
from the training data's in a hard setting (preset, settings hash, normalisation, spacing, ...) and returns warnings
for soft differences (segmentation source, brain mask, N4, ...): provenance.py, docs/model-bundle-format.md.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
from scipy.special import expit

from .case import SEQUENCE_NAMES
from .io import InputError

BUNDLE_FORMAT = "glioma-radiogenomics-model-bundle"
SCHEMA_VERSION = 1
TASKS = ("IDH", "epilepsy", "ATRX")
REQUIRED_KEYS = ("format", "schema_version", "task", "name", "version", "features", "center", "scale",
                 "coefficients", "intercept", "cutoff", "variables", "nomogram", "feature_schema", "training",
                 "metrics", "synthetic", "positive_label", "negative_label", "intended_use")


class BundleError(InputError):
    """A bundle file is malformed or incompatible."""


class FeatureMismatchError(InputError):
    """The offered features do not match those the bundle was trained on."""


@dataclass
class NomogramVariable:
    name: str
    features: List[str]
    c_min: float                   # contribution range over the axis (trimmed training range / all levels)
    c_max: float
    axis: Optional[dict] = None    # the axis geometry (nomogram.py): kind, title, unit, value_range, points_range,
    #                                ticks [{value, label, points}]; single features also feature, x_at_c_min / max


@dataclass
class ModelBundle:
    task: str
    name: str
    version: str
    features: List[str]
    center: List[float]
    scale: List[float]
    coefficients: List[float]
    intercept: float
    cutoff: float
    variables: List[NomogramVariable]
    nomogram: dict
    feature_schema: dict
    training: dict
    metrics: dict
    synthetic: bool
    positive_label: str
    negative_label: str
    intended_use: str
    encodings: Dict[str, Dict[str, float]] = field(default_factory=dict)
    imputation: Dict[str, float] = field(default_factory=dict)
    format: str = BUNDLE_FORMAT
    schema_version: int = SCHEMA_VERSION
    source: str = ""

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source", None)
        return d

    def save(self, path, backup: bool = False) -> Path:
        from .io import atomic_write_json
        return atomic_write_json(path, self.to_dict(), backup=backup)

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "") -> "ModelBundle":
        where = source or "model bundle"
        if not isinstance(d, Mapping):
            raise BundleError(f"{where}: not a JSON object")
        if d.get("format") == "glioma-radiogenomics-recurrence-bundle":  # recurrence.RECURRENCE_FORMAT
            raise BundleError(f"{where}: a recurrence-pattern bundle (MLP on rCBV features, Shim 2021), not a "
                              "logistic model bundle: apply it with recurrence.predict_recurrence")
        if d.get("format") == "glioma-radiogenomics-choi-hybrid-bundle":  # choi.CHOI_FORMAT
            raise BundleError(f"{where}: a Choi 2021 hybrid IDH bundle (CNN + logistic), not a logistic model "
                              "bundle: apply it with `predict --cases` or `run --bundle`")
        if d.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{where}: not a GliomaRadiogenomics model bundle (format '{d.get('format')}')")
        if d.get("schema_version") != SCHEMA_VERSION:
            raise BundleError(f"{where}: bundle schema version {d.get('schema_version')} is not supported "
                              f"(this software reads version {SCHEMA_VERSION})")
        missing = [k for k in REQUIRED_KEYS if k not in d]
        if missing:
            raise BundleError(f"{where}: missing key(s) {', '.join(missing)}")
        check_bundle_schema(d, where)
        n = len(d["features"])
        for k in ("center", "scale", "coefficients"):
            if len(d[k]) != n:
                raise BundleError(f"{where}: '{k}' has {len(d[k])} values for {n} features")
        if any((not isinstance(v, (int, float))) or not math.isfinite(v) for k in ("center", "scale", "coefficients")
               for v in d[k]):
            raise BundleError(f"{where}: non-numeric or non-finite values in center/scale/coefficients")
        if any(v <= 0 for v in d["scale"]):
            raise BundleError(f"{where}: scale values must be > 0")
        if not 0.0 < float(d["cutoff"]) < 1.0:
            raise BundleError(f"{where}: cutoff {d['cutoff']} must be a probability in (0, 1)")
        if not isinstance(d["synthetic"], bool):
            raise BundleError(f"{where}: 'synthetic' must be true or false")
        covered = sorted(f for v in d["variables"] for f in v["features"])
        if covered != sorted(d["features"]):
            raise BundleError(f"{where}: nomogram variables do not cover the features exactly once")
        from .nomogram import check_geometry, geometry_from_legacy, has_geometry
        nomogram, var_dicts = dict(d["nomogram"]), list(d["variables"])
        if has_geometry(nomogram, var_dicts):
            problem = check_geometry(nomogram, var_dicts)
            if problem:
                raise BundleError(f"{where}: {problem}")
        else:  # saved before the rms geometry: computed from what the bundle holds (its min-max ranges), noted
            try:
                var_dicts, geo = geometry_from_legacy(var_dicts, d["features"], d["coefficients"], d["center"],
                                                      d["scale"], float(d["intercept"]), nomogram)
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
                raise BundleError(f"{where}: nomogram variable axes cannot be read ({type(exc).__name__}: "
                                  f"{exc})") from None
            nomogram.update(geo)
        variables = [NomogramVariable(**v) for v in var_dicts]
        try:
            bundle_sequences((d.get("feature_schema") or {}).get("sequences"), d["features"])
        except BundleError as exc:
            raise BundleError(f"{where}: {exc}") from None
        kw = {k: d[k] for k in REQUIRED_KEYS if k not in ("format", "schema_version", "variables", "nomogram")}
        return cls(variables=variables, nomogram=nomogram, encodings=dict(d.get("encodings", {})),
                   imputation=dict(d.get("imputation", {})), source=source, **kw)

    # ------------------------------------------------------------------ checks
    def check_features(self, columns: Sequence[str], provenance: Optional[dict] = None) -> List[str]:
        """Refuse features the bundle was not trained on: missing columns, or a HARD provenance difference (preset,
        settings hash, normalisation, spacing, PyRadiomics major version, sequences; see provenance.py). Returns the
        SOFT differences as warnings (segmentation source, brain mask, N4, registration, versions, keys the bundle
        does not record). ``provenance=None`` checks the columns only (the caller vouches for the settings)."""
        cols = set(columns)
        # a clinical variable may be absent (its training mean, with a warning); an imaging column never: its
        # imputation value (training median) stands in for a missing VALUE of a column the table has
        missing = [f for f in self.features if f not in cols and not (f in self.imputation and f in _CLINICAL_NAMES)
                   and not _indicator_base(f)]
        hard, soft = [], []
        if provenance is not None:
            from .provenance import compare
            hard, soft = compare(self.name, self.feature_schema, provenance, [SEQ_NAMES[q] for q in self.sequences])
        if missing:
            shown = ", ".join(missing[:8]) + (f" ... (+{len(missing) - 8} more)" if len(missing) > 8 else "")
            raise FeatureMismatchError(
                f"model '{self.name}' ({self.task}) needs {len(missing)} feature(s) that were not offered: {shown}. "
                f"It was trained on features from preset '{self.feature_schema.get('preset')}'."
                + (f" Its training settings differ too: {'; '.join(hard)}" if hard else ""))
        if provenance is None:
            return []
        if hard:
            raise FeatureMismatchError(
                f"model '{self.name}' ({self.task}) refuses these features: they were computed with other settings "
                f"than its training data: " + "; ".join(hard))
        return soft

    # ------------------------------------------------------------------ prediction
    def encode(self, row: Mapping[str, object]):
        """Numeric vector of the bundle's features from a row (dict / Series); returns (x, warnings)."""
        x, warnings = [], []
        for f in self.features:
            raw = row.get(f, None)
            base = _indicator_base(f)
            if base and _missing(raw):  # a missing indicator (training): 1 when the variable is not given
                raw = 1.0 if _missing(row.get(base, None)) else 0.0
            if isinstance(raw, str):
                enc = self.encodings.get(f, {})
                key = raw.strip().upper()
                if key not in enc:
                    raise FeatureMismatchError(f"model '{self.name}': value '{raw}' of '{f}' is not one of "
                                               f"{', '.join(enc) or 'the numeric values it was trained on'}")
                raw = enc[key]
            if raw is None or (isinstance(raw, float) and math.isnan(raw)):
                if f in self.imputation:
                    raw = self.imputation[f]
                    kind = "training mean" if f in _CLINICAL_NAMES else "training median"
                    warnings.append(f"{self.task}: '{f}' missing, replaced by the {kind} "
                                    f"{raw:.3g}; the probability is less reliable")
                else:
                    raise FeatureMismatchError(f"model '{self.name}': feature '{f}' is missing (NaN)")
            x.append(float(raw))
        return np.asarray(x, dtype=float), warnings

    def contributions(self, x: np.ndarray) -> np.ndarray:
        z = (x - np.asarray(self.center)) / np.asarray(self.scale)
        return np.asarray(self.coefficients) * z

    def linear_predictor(self, x: np.ndarray) -> float:
        return float(self.intercept + self.contributions(x).sum())

    def predict_proba_row(self, row: Mapping[str, object]) -> dict:
        x, warnings = self.encode(row)
        contrib = self.contributions(x)
        lp = float(self.intercept + contrib.sum())
        prob = float(expit(lp))
        idx = {f: i for i, f in enumerate(self.features)}
        per_point = float(self.nomogram["lp_per_point"])
        points, out_of_range = {}, []
        for v in self.variables:
            c = float(sum(contrib[idx[f]] for f in v.features))
            pts = (c - v.c_min) / per_point
            if c < v.c_min - 1e-9 or c > v.c_max + 1e-9:
                out_of_range.append(v.name)
            points[v.name] = round(pts, 2) + 0.0  # never -0.0
        total = float(sum(points.values()))
        lp_nomo = float(self.nomogram["lp_at_zero_points"]) + total * per_point
        if out_of_range:
            ranges = (self.nomogram.get("ranges") or {}).get("text", "the training range")
            warnings.append(f"{self.task}: {', '.join(out_of_range)} outside the nomogram's axis range ({ranges}): "
                            "marked 'out of range' on the nomogram, points extrapolated")
        imputed = [f for f in self.features if _missing(row.get(f, None)) and f in self.imputation]
        return {"probability": prob, "linear_predictor": lp, "linear_predictor_from_points": lp_nomo,
                "points": points, "total_points": round(total, 2),
                "feature_contributions": {f: round(float(contrib[idx[f]]), 4) for f in self.features},
                "values": {f: float(x[idx[f]]) for f in self.features}, "imputed": imputed,
                "out_of_range": out_of_range, "warnings": warnings}

    def label_for(self, probability: float) -> str:
        return self.positive_label if probability >= self.cutoff else self.negative_label

    @property
    def sequences(self) -> List[str]:
        """The MRI sequences (keys t1 / t1c / t2 / flair) the model needs: declared in feature_schema["sequences"]
        (the sequences of the cases it was trained on); for older bundles, those its features are computed from."""
        return bundle_sequences(self.feature_schema.get("sequences"), self.features)

    def missing_sequences(self, present: Sequence[str]) -> List[str]:
        return [s for s in self.sequences if s not in set(present)]

    def model_card(self) -> dict:
        return {"name": self.name, "version": self.version, "task": self.task,
                "trained_on": self.training.get("trained_on", ""), "synthetic": self.synthetic,
                "metrics": self.metrics, "intended_use": self.intended_use, "n_features": len(self.features),
                "feature_preset": self.feature_schema.get("preset"),
                "sequences": [SEQ_NAMES[q] for q in self.sequences]}


SEQ_NAMES = SEQUENCE_NAMES  # the one definition (case.py)
_SEQ_KEYS = {v.lower(): k for k, v in SEQ_NAMES.items()}


def bundle_sequences(declared, features: Sequence[str]) -> List[str]:
    if declared:
        keys = [_SEQ_KEYS.get(str(d).lower(), str(d).lower()) for d in declared]
        bad = [k for k in keys if k not in SEQ_NAMES]
        if bad:
            raise BundleError(f"feature_schema.sequences: unknown sequence(s) {', '.join(bad)}")
        return [k for k in SEQ_NAMES if k in keys]
    used = {f.split("_", 1)[0].lower() for f in features}
    return [k for k, name in SEQ_NAMES.items() if name.lower() in used]


def select_bundles(bundles: Sequence[ModelBundle], present: Sequence[str]):
    """One bundle per task for a case with the sequences ``present``.

    Among a task's bundles (a family trained on different sequence subsets), those whose sequences are all present
    are applicable; the one trained on exactly the case's sequences wins, else the one using the most sequences
    (ties: the first listed). Returns (chosen bundles, {task: (reason, first bundle of the family)} for tasks with
    no applicable bundle)."""
    present = set(present)
    by_task: Dict[str, List[ModelBundle]] = {}
    for b in bundles:
        by_task.setdefault(b.task, []).append(b)
    chosen, unavailable = [], {}
    for task, family in by_task.items():
        ok = [b for b in family if not b.missing_sequences(present)]
        if not ok:
            needs = "; ".join(f"{b.name}: {'+'.join(SEQ_NAMES[q] for q in b.sequences)}" for b in family)
            have = "+".join(SEQ_NAMES[q] for q in SEQ_NAMES if q in present) or "none"
            unavailable[task] = (f"not applied: the {task} model(s) need sequences this case lacks ({needs}); the "
                                 f"case has {have}. No value is imputed for a missing sequence.", family[0])
            continue
        exact = [b for b in ok if set(b.sequences) == present]
        chosen.append(exact[0] if exact else max(ok, key=lambda b: len(b.sequences)))
    return chosen, unavailable


_CLINICAL_NAMES = ("age", "sex_male", "who_grade", "vasari_score")
INDICATOR_SUFFIX = "_missing"


def _indicator_base(f: str) -> Optional[str]:
    """'age_missing' -> 'age': the clinical variable a missing indicator feature stands for (train.apply_missing)."""
    if f.endswith(INDICATOR_SUFFIX) and f[:-len(INDICATOR_SUFFIX)] in _CLINICAL_NAMES:
        return f[:-len(INDICATOR_SUFFIX)]
    return None


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_bundle_schema(d: Mapping, where: str) -> None:
    """Types and values of a bundle document, so that a wrong schema is refused at loading (not as a crash in the
    middle of a prediction): strings, lists of finite numbers, nomogram variables and scales, encodings."""
    for k in ("task", "name", "version", "positive_label", "negative_label", "intended_use"):
        if not isinstance(d[k], str):
            raise BundleError(f"{where}: '{k}' must be a string, not {json.dumps(d[k])[:60]}")
    for k in ("feature_schema", "training", "metrics", "nomogram"):
        if not isinstance(d[k], Mapping):
            raise BundleError(f"{where}: '{k}' must be an object, not {type(d[k]).__name__}")
    feats = d["features"]
    if not isinstance(feats, list) or not feats or not all(isinstance(f, str) and f for f in feats):
        raise BundleError(f"{where}: 'features' must be a non-empty list of feature names")
    if len(set(feats)) != len(feats):
        raise BundleError(f"{where}: 'features' lists a feature twice")
    for k in ("center", "scale", "coefficients"):
        if not isinstance(d[k], list):
            raise BundleError(f"{where}: '{k}' must be a list of numbers, not {type(d[k]).__name__}")
        bad = [(i, v) for i, v in enumerate(d[k]) if not _is_number(v)]
        if bad:
            i, v = bad[0]
            raise BundleError(f"{where}: non-numeric or non-finite values in center/scale/coefficients ('{k}'[{i}] "
                              f"= {json.dumps(v)})")
    for k in ("intercept", "cutoff"):
        if not _is_number(d[k]):
            raise BundleError(f"{where}: '{k}' must be a finite number, not {json.dumps(d[k])}")
    for k in ("lp_per_point", "lp_at_zero_points"):
        if not _is_number(d["nomogram"].get(k)):
            raise BundleError(f"{where}: nomogram '{k}' must be a finite number, not {json.dumps(d['nomogram'].get(k))}")
    if d["nomogram"]["lp_per_point"] <= 0:
        raise BundleError(f"{where}: nomogram 'lp_per_point' must be > 0")
    if not isinstance(d["variables"], list):
        raise BundleError(f"{where}: 'variables' must be a list of nomogram variables")
    for i, v in enumerate(d["variables"]):
        if not isinstance(v, Mapping) or set(v) - {"name", "features", "c_min", "c_max", "axis"} or \
                not {"name", "features", "c_min", "c_max"} <= set(v):
            raise BundleError(f"{where}: nomogram variable {i} must be an object with name, features, c_min, c_max "
                              "(and optionally axis)")
        if not isinstance(v["name"], str) or not isinstance(v["features"], list) or \
                not _is_number(v["c_min"]) or not _is_number(v["c_max"]):
            raise BundleError(f"{where}: nomogram variable {i} ('{v.get('name')}'): name must be a string, features a "
                              "list, c_min and c_max finite numbers")
    for k in ("encodings", "imputation"):
        if not isinstance(d.get(k, {}), Mapping):
            raise BundleError(f"{where}: '{k}' must be an object")
    for f, enc in d.get("encodings", {}).items():
        if not isinstance(enc, Mapping) or not all(_is_number(x) for x in enc.values()):
            raise BundleError(f"{where}: encodings of '{f}' must map values to finite numbers")
    bad = [f for f, x in d.get("imputation", {}).items() if not _is_number(x)]
    if bad:
        raise BundleError(f"{where}: imputation value of '{bad[0]}' must be a finite number")


def load_bundle(path) -> ModelBundle:
    """A bundle JSON file. Never unpickles: a pickle (or any binary file) is refused before parsing."""
    return ModelBundle.from_dict(read_bundle_json(path), str(path))


def read_bundle_json(path):
    """The parsed JSON of a bundle file (any bundle kind); a folder, a pickle or any binary file is refused before
    parsing (BundleError)."""
    p = Path(path)
    if not p.exists():
        raise BundleError(f"model bundle not found: {p}")
    if p.is_dir():
        raise BundleError(f"{p}: is a folder; give a model bundle JSON file")
    raw = p.read_bytes()
    # pickle protocol 2+ starts with PROTO (0x80), protocols 0-1 with GLOBAL 'c' or MARK '(' (never JSON); joblib: zip
    if raw[:1] in (b"\x80", b"c", b"(") or raw[:4] == b"PK\x03\x04":
        raise BundleError(f"{p}: a Python pickle (or a zipped pickle), not a JSON model bundle: pickles are never "
                          "loaded, since unpickling can run any code; export the model as a bundle JSON "
                          "(glioma-radiogenomics train)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError(f"{p}: not a text file (binary data); a model bundle is a JSON file") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return d


def read_format_json(path, fmt: str, version: int, keys, what: str) -> dict:
    """A JSON bundle of its own format (recurrence, Choi hybrid): parsed by ``read_bundle_json`` (a pickle or binary
    file refused before parsing), then its format, schema version and required keys checked; BundleError naming the
    file. ``what`` names the kind in the messages."""
    d = read_bundle_json(path)
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise BundleError(f"{path}: not a GliomaRadiogenomics {what} bundle (format "
                          f"'{d.get('format') if isinstance(d, dict) else None}')")
    if d.get("schema_version") != version:
        raise BundleError(f"{path}: {what} bundle schema version {d.get('schema_version')} is not supported")
    for k in keys:
        if k not in d:
            raise BundleError(f"{path}: missing key '{k}'")
    return d


def shipped_models_dir() -> Path:
    """The folder of the shipped model bundles and their registry (``defaults.json``)."""
    return Path(str(resources.files(__package__) / "resources" / "models"))


def _registry() -> Optional[dict]:
    registry = shipped_models_dir() / "defaults.json"
    if not registry.exists():
        return None
    try:
        return json.loads(registry.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{registry}: not valid JSON ({exc.msg})") from None


def default_bundle_paths() -> List[Path]:
    """The shipped default bundles: ``resources/models/defaults.json`` lists, per task, a family of bundle files
    (one per sequence subset; ``select_bundles`` picks per case). Without it: default_<task>.json."""
    root, reg = shipped_models_dir(), _registry()
    if reg is not None:
        return [root / f for t in TASKS for f in reg.get("tasks", {}).get(t, [])]
    return [root / f"default_{t}.json" for t in TASKS]


def default_models_line(paths: Optional[Sequence] = None) -> str:
    """What the default models were trained on, per task, in one line: the Slicer modules' banner (so it cannot go
    stale when `make real-bundles` changes the defaults), e.g. "Default models: IDH - TCGA-LGG, 62 real patients;
    epilepsy - SYNTHETIC data (demonstration only); ATRX - TCGA-LGG, 45-49 real patients." A task whose family
    mixes real and SYNTHETIC bundles names both; a bundle without ``synthetic: false`` counts as SYNTHETIC. The
    source is the first clause of each real bundle's ``training.trained_on``."""
    by_task: Dict[str, List[dict]] = {}
    for p in (default_bundle_paths() if paths is None else paths):
        b = read_bundle_json(p)
        by_task.setdefault(str(b.get("task")), []).append(b)
    parts = []
    import re
    for task, bundles in by_task.items():
        real = [b for b in bundles if b.get("synthetic") is False]   # a bundle that does not say so is not real
        what = []
        if real:
            sources = sorted({re.split(r"[:;,(]", str((b.get("training") or {}).get("trained_on") or "?"))[0].strip()
                              for b in real})
            ns = sorted({int(n) for n in ((b.get("training") or {}).get("n") for b in real) if n is not None})
            count = (f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}") if ns else "?"
            what.append(f"{' / '.join(sources)}, {count} real patients")
        if len(real) < len(bundles):
            what.append("SYNTHETIC data (demonstration only)")
        parts.append(f"{task} - {' and '.join(what)}")
    return "Default models: " + "; ".join(parts) + "." if parts else "No default models installed."


def optional_models() -> Dict[str, dict]:
    """The shipped OPTIONAL models (``defaults.json`` key ``optional``: name -> {file, task, title, note}): validated
    real models that are not applied by default (e.g. the Choi 2021 hybrid IDH CNN); ``--bundle NAME`` adds one."""
    reg = _registry() or {}
    root = shipped_models_dir()
    return {name: {**entry, "path": root / entry["file"]} for name, entry in reg.get("optional", {}).items()}


def resolve_bundle_ref(ref) -> str:
    """A ``--bundle`` argument -> a bundle path: an existing file as given; else the name of a shipped optional model
    (``optional_models``) or of a shipped bundle file (``resources/models/<ref>``); else ``ref`` unchanged (its
    loader then names the missing file)."""
    ref = str(ref)
    if Path(ref).exists():
        return ref
    opt = optional_models()
    if ref in opt:
        return str(opt[ref]["path"])
    shipped = shipped_models_dir() / ref
    return str(shipped) if Path(ref).name == ref and shipped.is_file() else ref


def load_given_bundles(paths) -> tuple:
    """The given bundle files loaded by kind, in order: (logistic ``ModelBundle``s, Shim 2021 / Choi 2021 JSON bundles
    as ``(kind, dict)``); a broken file fails here with its message (load_bundle / shim.load_json_bundle)."""
    from .shim import json_bundle_kind, load_json_bundle
    logistic, json_bundles = [], []
    for p in paths or []:
        if json_bundle_kind(p):
            json_bundles.append(load_json_bundle(p))
        else:
            logistic.append(load_bundle(p))
    return logistic, json_bundles


def cv_auc(metrics: Mapping) -> Optional[float]:
    """A bundle's repeated-CV AUC: ``auc_cv``; a Choi 2021 bundle without it, its hybrid's mean."""
    if metrics.get("auc_cv") is not None:
        return metrics["auc_cv"]
    return (metrics.get("auc_cv_hybrid") or {}).get("mean")


def effective_bundle_paths(given=None) -> List[str]:
    """The bundle files a run applies. ``given`` (paths, already resolved by ``resolve_bundle_ref``): a logistic model
    bundle among them replaces the shipped defaults; Shim 2021 / Choi 2021 JSON bundles ADD their tasks to the
    defaults (they model other targets or are optional extras, never a replacement). None / empty: the defaults."""
    from .shim import json_bundle_kind
    given = [str(p) for p in (given or [])]
    if any(json_bundle_kind(p) is None for p in given):
        return given
    return [str(p) for p in default_bundle_paths()] + given


def load_default_bundles() -> List[ModelBundle]:
    paths = default_bundle_paths()
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise BundleError("default model bundles are missing (" + ", ".join(missing) +
                          "); rebuild them with `make bundles`")
    return [load_bundle(p) for p in paths]


def build_nomogram(features: List[str], coefficients: np.ndarray, center: np.ndarray, scale: np.ndarray,
                   intercept: float, X_train: np.ndarray, groups: Dict[str, List[str]],
                   units: Optional[Dict[str, str]] = None):
    """Nomogram geometry from the training data (rms conventions: nomogram.geometry_from_training). Returns
    (variables, nomogram dict)."""
    from .nomogram import geometry_from_training
    var_dicts, nomogram = geometry_from_training(features, coefficients, center, scale, intercept, X_train, groups,
                                                 units)
    return [NomogramVariable(**v) for v in var_dicts], nomogram


def nomogram_probability(bundle: ModelBundle, total_points: float) -> float:
    lp = bundle.nomogram["lp_at_zero_points"] + total_points * bundle.nomogram["lp_per_point"]
    return float(expit(lp))


def bundle_preset(bundle) -> Optional[str]:
    """The feature preset a logistic model bundle was trained on (its feature schema), None for JSON bundles."""
    schema = getattr(bundle, "feature_schema", None)
    return schema.get("preset") if isinstance(schema, dict) else None
