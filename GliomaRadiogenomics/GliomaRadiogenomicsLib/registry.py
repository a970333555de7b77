"""The segmentation model registry: ``resources/models/segmentation_models.json``, validated against
``segmentation_models.schema.json`` (the schema file is the authority).

Each model (id = the segmentation backend name, ``--backend``) states its title, inputs, labels, licence, citation,
size, the SHA-256 of each weight file and where its weights come from:

- ``bundled``: a folder inside this package (``weights.path``), each file checked by size here and by SHA-256 on
  ``resolve_weights(..., verify=True)`` (the backends check it again at load);
- ``local``: a folder the user gives (``weights.option``, e.g. ``--nnunet-model DIR``); its expected files are
  checked;
- ``url``: downloaded on first use into the cache folder (``cache_dir()``: ``$GLIOMA_MODEL_CACHE``, else
  ``$GLIOMA_CACHE/models``, else ``~/.cache/glioma-radiogenomics/models``), one sub-folder per model. A download
  goes to a temporary file in that folder, is checked against its size and SHA-256, and only then renamed into
  place: a failed or refused download leaves nothing behind. Offline, the error names the URL and where to put the
  file by hand;
- ``none``: weight-free.

Nothing is fetched at import time or when listing models: only ``resolve_weights(..., download=True)`` downloads.
``jsonschema`` validates when it is installed; otherwise a small built-in validator interprets the same schema
file (the keywords it uses: type, required, properties, additionalProperties, items, enum, const, pattern,
minLength, minItems, minimum, minProperties, propertyNames, $ref, allOf, if/then).
"""
from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Union

from .io import InputError

PACKAGE_DIR = Path(__file__).resolve().parent
REGISTRY_FILE = PACKAGE_DIR / "resources" / "models" / "segmentation_models.json"
SCHEMA_FILE = PACKAGE_DIR / "resources" / "models" / "segmentation_models.schema.json"
SEQUENCE_TITLES = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}
INSTALL_HINTS = {"torch": "pip install the 'brain' extra", "nnunetv2": "pip install the 'nnunet' extra"}
CHUNK = 1 << 16

PathLike = Union[str, os.PathLike]


class RegistryError(InputError):
    """The registry file is unreadable or does not follow its schema (the message names the file and the entry)."""


class WeightsUnavailable(InputError):
    """A model's weights are not here and cannot be obtained (missing, offline, bad checksum): says what to do."""


# ------------------------------------------------------------------------------------------------------------------
# Schema validation
# ------------------------------------------------------------------------------------------------------------------
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_type(value, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _where(path: List) -> str:
    return "/" + "/".join(str(p) for p in path) if path else "(top level)"


def schema_errors(instance, schema: dict, root: Optional[dict] = None, path: Optional[List] = None) -> List[str]:
    """The built-in validator: every violation as '<json pointer>: <problem>' (empty list: valid)."""
    root = schema if root is None else root
    path = [] if path is None else path
    errors: List[str] = []
    if schema is True or schema == {}:
        return errors
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise RegistryError(f"schema: only local references are supported, not {ref}")
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        errors += schema_errors(instance, target, root, path)
    here = _where(path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(instance, t) for t in types):
            return errors + [f"{here}: expected {' or '.join(types)}, got {type(instance).__name__}"]
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{here}: must be {schema['const']!r}")
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{here}: {instance!r} is not one of {schema['enum']}")
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            errors.append(f"{here}: empty text")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            errors.append(f"{here}: {instance!r} does not match {schema['pattern']}")
    if _is_type(instance, "number") and "minimum" in schema and instance < schema["minimum"]:
        errors.append(f"{here}: {instance} is below {schema['minimum']}")
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            errors.append(f"{here}: at least {schema['minItems']} item(s) needed")
        if "items" in schema:
            for i, item in enumerate(instance):
                errors += schema_errors(item, schema["items"], root, path + [i])
    if isinstance(instance, dict):
        for key in schema.get("required", []):
            if key not in instance:
                errors.append(f"{here}: '{key}' is required")
        if len(instance) < schema.get("minProperties", 0):
            errors.append(f"{here}: at least {schema['minProperties']} entr(y/ies) needed")
        props = schema.get("properties", {})
        for key, value in instance.items():
            if "propertyNames" in schema:
                errors += [e.replace(": ", f": key {key!r}: ", 1)
                           for e in schema_errors(key, schema["propertyNames"], root, path + [key])]
            if key in props:
                errors += schema_errors(value, props[key], root, path + [key])
            elif schema.get("additionalProperties") is False:
                errors.append(f"{here}: unknown key '{key}'")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(value, schema["additionalProperties"], root, path + [key])
    for sub in schema.get("allOf", []):
        errors += schema_errors(instance, sub, root, path)
    if "if" in schema and not schema_errors(instance, schema["if"], root, path):
        errors += schema_errors(instance, schema.get("then", {}), root, path)
    return errors


def validate(doc: dict, where: PathLike = REGISTRY_FILE, schema_file: PathLike = SCHEMA_FILE) -> None:
    """Raise RegistryError naming ``where`` and each problem; ``jsonschema`` when installed, else built in."""
    schema = json.loads(Path(schema_file).read_text(encoding="utf-8"))
    try:
        import jsonschema  # optional
    except ImportError:
        errors = schema_errors(doc, schema)
    else:
        validator = jsonschema.validators.validator_for(schema)(schema)
        errors = [f"{_where(list(e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    ids = [m.get("id") for m in doc.get("models", []) if isinstance(m, dict)]
    errors += [f"/models: id '{i}' is listed more than once" for i in sorted({i for i in ids if ids.count(i) > 1})]
    for k, m in enumerate(doc.get("models", [])):
        files = (m.get("weights") or {}).get("files") if isinstance(m, dict) else None
        if isinstance(files, list) and isinstance(m.get("size_bytes"), int):
            total = sum(f.get("bytes", 0) for f in files if isinstance(f, dict))
            if total != m["size_bytes"]:
                errors.append(f"/models/{k}/size_bytes: {m['size_bytes']} is not the sum of its files ({total})")
    if errors:
        raise RegistryError(f"{where}: not a valid segmentation model registry ({schema_file}):\n  "
                            + "\n  ".join(errors))


# ------------------------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class Model:
    """One registry entry (``entry`` is the validated JSON object) and the registry file it came from."""
    entry: dict
    registry_file: Path

    def __getattr__(self, name):  # id, title, description, inputs, labels, licence, citation, size_bytes, weights
        try:
            return self.__dict__["entry"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def source(self) -> str:
        return self.entry["weights"]["source"]

    @property
    def files(self) -> List[dict]:
        return list(self.entry["weights"].get("files", []))

    @property
    def requires(self) -> List[str]:
        return list(self.entry.get("requires", []))

    def weights_dir(self) -> Optional[Path]:
        """Bundled: the folder in the package; url: this model's cache folder; else None."""
        if self.source == "bundled":
            return PACKAGE_DIR / self.entry["weights"]["path"]
        if self.source == "url":
            return cache_dir() / self.id
        return None

    def inputs_text(self) -> str:
        i = self.inputs
        t = lambda seqs: ", ".join(SEQUENCE_TITLES[s] for s in seqs)  # noqa: E731
        parts = []
        if i.get("required"):
            parts.append(f"needs {t(i['required'])}")
        if i.get("required_any"):
            parts.append(f"needs one of {t(i['required_any'])}")
        if i.get("optional"):
            parts.append(f"uses {t(i['optional'])} when present")
        return "; ".join(parts) or "no fixed sequences"

    def licence_text(self) -> str:
        lic = self.licence
        parts = [f"code {lic['code']}"]
        parts += [f"{k} {lic[k]}" for k in ("weights", "data") if k in lic]
        return "; ".join(parts)

    def weights_text(self) -> str:
        w = self.entry["weights"]
        if self.source == "bundled":
            return f"bundled ({w['path']}, {len(w['files'])} file(s))"
        if self.source == "local":
            return f"local folder you give ({w['option']} DIR)"
        if self.source == "url":
            return f"downloaded on first use into {cache_dir() / self.id} ({len(w['files'])} file(s))"
        return "none (weight-free)"


def read_manifest_sums(path: PathLike) -> Dict[str, dict]:
    """A bundled model's own manifest -> file name -> {"sha256", "bytes" (None when not stated)}: a JSON manifest
    with ``folds`` (file, sha256, bytes; lgg-unet2d's manifest.json) or a ``SHA256SUMS`` text file
    ('<sha256>  <name>' lines, as sha256sum writes them)."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".json":
        return {f["file"]: {"sha256": f["sha256"], "bytes": f.get("bytes")} for f in json.loads(text)["folds"]}
    out = {}
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            parts = line.split()
            if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
                raise RegistryError(f"{p}: line {i} is not '<sha256>  <file>'")
            out[parts[1].lstrip("*")] = {"sha256": parts[0].lower(), "bytes": None}
    return out


REGISTRY_ENV = "GLIOMA_MODEL_REGISTRY"   # another registry file (e.g. a site's, with url-sourced weights)


def registry_file() -> Path:
    """The registry in use: $GLIOMA_MODEL_REGISTRY when set, else the package's segmentation_models.json."""
    env = os.environ.get(REGISTRY_ENV, "").strip()
    return Path(env).expanduser() if env else REGISTRY_FILE


def load_registry(path: Optional[PathLike] = None, schema_file: PathLike = SCHEMA_FILE) -> Dict[str, Model]:
    """id -> Model, in the file's order (``path`` default: ``registry_file()``); a missing, unreadable or invalid
    file is a RegistryError naming it."""
    p = Path(path) if path is not None else registry_file()
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{p}: segmentation model registry not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{p}: not valid JSON ({exc})") from None
    validate(doc, p, schema_file)
    return {m["id"]: Model(m, p) for m in doc["models"]}


def get_model(model_id: str, registry: Optional[Dict[str, Model]] = None) -> Model:
    reg = load_registry() if registry is None else registry
    if model_id not in reg:
        raise InputError(f"unknown segmentation model '{model_id}'; the registry ({registry_file().name}) lists: "
                         f"{', '.join(reg)}")
    return reg[model_id]


def list_models(registry: Optional[Dict[str, Model]] = None) -> List[Model]:
    return list((load_registry() if registry is None else registry).values())


# ------------------------------------------------------------------------------------------------------------------
# Cache, checksums, download
# ------------------------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """Where ``url`` models are cached (read at each call, so the environment can change it)."""
    if os.environ.get("GLIOMA_MODEL_CACHE"):
        return Path(os.environ["GLIOMA_MODEL_CACHE"]).expanduser()
    if os.environ.get("GLIOMA_CACHE"):
        return Path(os.environ["GLIOMA_CACHE"]).expanduser() / "models"
    return Path.home() / ".cache" / "glioma-radiogenomics" / "models"


def sha256_file(path: PathLike) -> str:
    from .io import sha256_file as _sha
    return _sha(path)


def _mb(n: Optional[int]) -> str:
    if n is None:
        return "size unknown"
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


ProgressCallback = Callable[[int, Optional[int], str], None]


def progress_callback(progress) -> ProgressCallback:
    """A download callback that forwards to a ``progress.Progress`` (fraction of the bytes, message)."""
    def cb(done: int, total: Optional[int], message: str) -> None:
        progress.update(done / total if total else 0.0, message)
    return cb


def download_file(url: str, dest: PathLike, sha256: str, size: Optional[int] = None,
                  progress: Optional[ProgressCallback] = None, timeout_s: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` atomically: into a temporary file beside it, checked against ``size`` and
    ``sha256``, then renamed. ``progress(done_bytes, total_bytes or None, message)`` is called as bytes arrive.
    Failure (offline, HTTP error, wrong size or checksum) raises WeightsUnavailable and leaves no file behind."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    manual = (f"to install it by hand, download {url} on a connected machine and put it at {dest} "
              f"(SHA-256 {sha256})")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=str(dest.parent))
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        done = 0
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else size
                if progress:
                    progress(0, total, f"downloading {url}")
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total, f"downloading {dest.name}: {_mb(done)} of {_mb(total)}")
                out.flush()
                os.fsync(out.fileno())
        except urllib.error.HTTPError as exc:
            raise WeightsUnavailable(f"cannot download {url}: HTTP {exc.code} {exc.reason}; {manual}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise WeightsUnavailable(f"cannot download {url} (offline or server unreachable: {reason}); "
                                     f"{manual}") from None
        if size is not None and done != size:
            raise WeightsUnavailable(f"{url}: got {done} bytes, the registry expects {size}; the file was not "
                                     f"kept; {manual}")
        digest = h.hexdigest()
        if digest != sha256:
            raise WeightsUnavailable(f"{url}: SHA-256 {digest} does not match the registry's {sha256}; the file "
                                     f"was refused and not kept; {manual}")
        os.replace(tmp, dest)
        return dest
    finally:
        if tmp.exists():
            tmp.unlink()


def _check_file(path: Path, f: dict, verify: bool) -> Optional[str]:
    """None when the file is there with its size (and SHA-256 when ``verify``), else the problem."""
    if not path.is_file():
        return f"{path} is missing"
    if path.stat().st_size != f["bytes"]:
        return f"{path} has {path.stat().st_size} bytes, the registry expects {f['bytes']}"
    if verify:
        digest = sha256_file(path)
        if digest != f["sha256"]:
            return f"{path}: SHA-256 {digest[:16]}... does not match the registry's {f['sha256'][:16]}..."
    return None


def _local_problem(model: Model, folder: Optional[PathLike]) -> Optional[str]:
    w = model.entry["weights"]
    if not folder:
        return f"needs a model folder ({w['option']} DIR)"
    d = Path(folder)
    if not d.is_dir():
        return f"{d}: model folder not found"
    missing = [pat for pat in w["expects"] if not list(d.glob(pat))]
    return f"{d}: {', '.join(missing)} not found" if missing else None


def resolve_weights(model: Union[str, Model], local_path: Optional[PathLike] = None, download: bool = False,
                    verify: bool = True, progress: Optional[ProgressCallback] = None,
                    registry: Optional[Dict[str, Model]] = None) -> Optional[Path]:
    """The folder holding ``model``'s weights, or None for a weight-free model.

    bundled: the package folder (files checked by size, and by SHA-256 when ``verify``); local: ``local_path``
    (its expected files checked); url: the cache folder, each file downloaded first when missing and ``download``
    (else WeightsUnavailable saying it will be downloaded, from where, and how to put it in place by hand); a
    cached file with a wrong SHA-256 is refused (and downloaded again when ``download``)."""
    m = get_model(model, registry) if isinstance(model, str) else model
    if m.source == "none":
        return None
    if m.source == "local":
        problem = _local_problem(m, local_path)
        if problem:
            raise WeightsUnavailable(f"{m.id}: {problem}")
        return Path(local_path)
    d = m.weights_dir()
    problems = []
    for f in m.files:
        path = d / f["name"]
        problem = _check_file(path, f, verify)
        if problem is None:
            continue
        if m.source == "url":
            if not download:
                problems.append(f"{f['name']} not downloaded yet: it comes from {f['url']} ({_mb(f['bytes'])}) into "
                                f"{path} (SHA-256 {f['sha256']})")
                continue
            download_file(f["url"], path, f["sha256"], f["bytes"], progress)
            continue
        problems.append(problem)
    if problems:
        raise WeightsUnavailable(f"{m.id}: weights missing or damaged: " + "; ".join(problems))
    return d


def weights_for_backend(model_id: str, progress=None) -> Optional[Path]:
    """The weights folder a backend uses when it is given none: None for a bundled model (the backend's own package
    folder, checked by the backend at load), else ``resolve_weights`` with downloading on: a ``url`` model is
    fetched into the cache on first use (progress to ``progress``, a ``progress.Progress``; SHA-256 checked; a
    clear WeightsUnavailable offline; without ``progress``, a line on stderr every 10 %: the backend is built before a
    run's progress exists), a ``local`` one must be given its folder."""
    m = get_model(model_id)
    if m.source in ("bundled", "none"):
        return None
    return resolve_weights(m, download=True, progress=progress_callback(progress) if progress is not None
                           else _stderr_every_tenth(model_id))


def _stderr_every_tenth(model_id: str) -> ProgressCallback:
    import sys
    last = [-1]

    def cb(done: int, total: Optional[int], message: str) -> None:
        tenth = int(10 * done / total) if total else 0
        if tenth != last[0]:
            last[0] = tenth
            print(f"{model_id} weights: {message}", file=sys.stderr, flush=True)
    return cb


# ------------------------------------------------------------------------------------------------------------------
# Availability
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class Availability:
    """``state``: ready (runs now), download (weights come on first use), needs-folder (give a model folder),
    unavailable (``reason`` says why: backend, Python module, weights or sequences missing)."""
    model: str
    state: str
    reason: str

    @property
    def ok(self) -> bool:
        return self.state != "unavailable"

    def as_dict(self) -> dict:
        return {"id": self.model, "available": self.ok, "state": self.state, "reason": self.reason}


def module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_sequences(model: Model, sequences: Iterable[str]) -> List[str]:
    have = set(sequences)
    need = [s for s in model.inputs.get("required", []) if s not in have]
    anyof = model.inputs.get("required_any", [])
    if anyof and not have & set(anyof):
        need.append(" or ".join(SEQUENCE_TITLES[s] for s in anyof))
    return [SEQUENCE_TITLES.get(s, s) for s in need]


def available(model: Union[str, Model], sequences: Optional[Iterable[str]] = None,
              local_path: Optional[PathLike] = None, registry: Optional[Dict[str, Model]] = None) -> Availability:
    """Whether ``model`` can run here (cheap: file sizes, not checksums; nothing downloaded), with the reason.
    ``sequences``: the case's sequences (None: not checked)."""
    m = get_model(model, registry) if isinstance(model, str) else model
    from .segment import BACKENDS
    if m.id not in BACKENDS:
        return Availability(m.id, "unavailable", f"no '{m.id}' segmentation backend in this version of the package")
    missing = [r for r in m.requires if not module_available(r)]
    if missing:
        hints = "; ".join(INSTALL_HINTS.get(r, f"pip install {r}") for r in missing)
        return Availability(m.id, "unavailable", f"{', '.join(missing)} not installed ({hints})")
    if sequences is not None:
        lacking = missing_sequences(m, sequences)
        if lacking:
            return Availability(m.id, "unavailable", f"sequences missing: needs {', '.join(lacking)}")
    if m.source == "none":
        return Availability(m.id, "ready", "weight-free")
    if m.source == "local":
        problem = _local_problem(m, local_path)
        if problem and not local_path:
            return Availability(m.id, "needs-folder", problem)
        if problem:
            return Availability(m.id, "unavailable", problem)
        return Availability(m.id, "ready", f"model folder {local_path}")
    d = m.weights_dir()
    problems = [p for p in (_check_file(d / f["name"], f, verify=False) for f in m.files) if p]
    if not problems:
        return Availability(m.id, "ready", f"weights {'bundled' if m.source == 'bundled' else 'cached'} in {d}")
    if m.source == "url":
        return Availability(m.id, "download", f"weights downloaded on first use ({_mb(m.size_bytes)}) into {d}")
    names = [f["name"] for f in m.files if not (d / f["name"]).is_file()]
    what = (f"{len(names)} of {len(m.files)} file(s) not installed in {d} ({', '.join(names[:3])}"
            f"{', ...' if len(names) > 3 else ''})") if names else "; ".join(problems)
    return Availability(m.id, "unavailable", f"weights missing: {what}")


# ------------------------------------------------------------------------------------------------------------------
# What the CLI, the Slicer module and the web app show
# ------------------------------------------------------------------------------------------------------------------
AUTO_ID = "auto"


def model_summary(m: Model, a: Availability) -> dict:
    return {"id": m.id, "title": m.title, "description": m.description, "inputs": m.inputs, "labels": m.labels,
            "licence": m.licence, "citation": m.citation, "size_bytes": m.size_bytes,
            "weights": {k: v for k, v in m.weights.items()}, "weights_text": m.weights_text(),
            "available": a.ok, "state": a.state, "reason": a.reason}


def model_choices(sequences: Optional[Iterable[str]] = None, include_auto: bool = True,
                  registry: Optional[Dict[str, Model]] = None) -> List[dict]:
    """The list a model selector shows: ``auto`` first (when asked), then each registry model, as dicts with id,
    title, available, state, reason and ``label`` (title + availability, the text of a combo box item)."""
    reg = load_registry() if registry is None else registry
    out = []
    if include_auto:
        from .segment import AutoBackend
        what = re.sub(r"^Default:\s*", "", AutoBackend.description)
        out.append({"id": AUTO_ID, "title": "Automatic", "available": True, "state": "ready",
                    "reason": AutoBackend.description, "label": f"Automatic: {what}"})
    for m in reg.values():
        a = available(m, sequences)
        tail = {"ready": "", "download": " - downloads on first use",
                "needs-folder": " - give a model folder"}.get(a.state, f" - not available: {a.reason}")
        out.append({"id": m.id, "title": m.title, "available": a.ok, "state": a.state, "reason": a.reason,
                    "label": m.title + tail})
    return out


AVAILABLE_WORDS = {"ready": "yes", "download": "yes, on first use", "needs-folder": "yes, with a model folder",
                   "unavailable": "no"}


def dumps_registry(doc: dict) -> str:
    """The registry's JSON as this project writes it: 2-space indent; short lists and objects holding no
    containers (sequence lists, labels, file entries) on one line."""
    def dump(v, indent: str) -> str:
        if not isinstance(v, (dict, list)):
            return json.dumps(v, ensure_ascii=False)
        flat = json.dumps(v, ensure_ascii=False)
        items = v.values() if isinstance(v, dict) else v
        if not v or (len(flat) + len(indent) <= 140 and not any(isinstance(x, (dict, list)) for x in items)):
            return flat
        inner = indent + "  "
        if isinstance(v, dict):
            body = [f"{inner}{json.dumps(k)}: {dump(x, inner)}" for k, x in v.items()]
            return "{\n" + ",\n".join(body) + f"\n{indent}}}"
        return "[\n" + ",\n".join(inner + dump(x, inner) for x in v) + f"\n{indent}]"
    return dump(doc, "") + "\n"


def format_model_list(rows: List[dict]) -> str:
    """Plain-text listing of ``model_summary`` rows (``segment --list-models``)."""
    lines = []
    for r in rows:
        m = Model(r, REGISTRY_FILE)
        lines.append(f"{r['id']}: {r['title']}")
        lines.append(f"  inputs:    {m.inputs_text()}")
        lines.append(f"  labels:    {', '.join(f'{k} {v}' for k, v in sorted(r['labels'].items()))}")
        lines.append(f"  licence:   {m.licence_text()}")
        lines.append(f"  size:      {'none' if r['size_bytes'] == 0 else _mb(r['size_bytes'])}")
        lines.append(f"  weights:   {r['weights_text']}")
        lines.append(f"  available: {AVAILABLE_WORDS[r['state']]} ({r['reason']})")
        lines.append("")
    return "\n".join(lines)
