"""Cohort feature extraction: a folder of case folders -> one table (one row per case).

Resumable: each finished case is cached as JSON in ``<table>.cases/`` with the hash of the options; a re-run (after
a kill) skips cases cached with the same options and recomputes those cached with other options.
Failures are recorded per case in ``<table>.failures.csv`` and the run goes on. The table, its provenance
(``<table>.provenance.json``) and the failures are written at the end as one output set (``io.output_set`` with
``set_name=<table name>``): all three are staged, then renamed into place with the manifest
``.<table>.complete.json`` last; a run without any successful case removes the previous table, and
``keep_previous=N`` keeps up to N dated copies ``<table>.previous-<timestamp>/`` of the previous three files. The
output folder is checked (a file where the folder should be, not writable, disk full) before any case is processed.

Each ok case is also one Parquet file ``<table stem>.parquet/<case>.parquet`` (written atomically by the process that
ran the case; needs pyarrow, the ``cohort`` extra): the dataset holds exactly the table's rows. ``scheduler``
(``local:N`` or ``tcp://HOST:PORT``) runs one Dask task per case (scheduler.py); the table is the same whatever runs it.
"""
from __future__ import annotations

import json
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import List

import pandas as pd

from .io import IMAGE_SUFFIXES, InputError, atomic_write_json, atomic_write_text, check_output_folder, output_set
from .progress import Progress, null_progress


def _may_be_image(f: Path) -> bool:
    """An image file by suffix, or a file that may be DICOM: .dcm / .ima, no suffix, a numeric suffix (UID names such
    as 1.3.12.2...35162), or the DICOM magic 'DICM' at byte 128."""
    name, suffix = f.name.lower(), f.suffix.lower()
    if name.endswith(IMAGE_SUFFIXES) or suffix in ("", ".dcm", ".ima") or suffix[1:].isdigit():
        return True
    try:
        with open(f, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def find_case_folders(cases_dir: Path, exclude=()) -> List[Path]:
    """The one discovery rule of the cohort runners (``extract_cohort`` and the batch script): the non-hidden
    subfolders of ``cases_dir`` that hold an image file (``IMAGE_SUFFIXES``) or a file that may be DICOM
    (``_may_be_image``: .dcm / .ima, no suffix, a numeric UID suffix, or the DICM magic),
    sorted by name. A subfolder that is, or holds, a path in ``exclude`` (the output folder when it lies inside the
    cohort folder) is skipped."""
    cases_dir = Path(cases_dir)
    if not cases_dir.is_dir():
        raise FileNotFoundError(f"cohort folder not found: {cases_dir}")
    skip = [Path(e).resolve() for e in exclude if e is not None]
    out = []
    for d in sorted(p for p in cases_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        r = d.resolve()
        if any(e == r or r in e.parents for e in skip):
            continue
        if any(f.is_file() and not f.name.startswith(".") and _may_be_image(f) for f in d.rglob("*")):
            out.append(d)
    return out


def case_done(record, key: str, output_folder=None, needs=()) -> bool:
    """The one resume rule of the cohort runners: a case is done (reused, not run again) when its record exists with
    the same options hash ``key`` and status ok; with ``output_folder``, its output set there must also be complete
    (``io.read_output_set``) and hold the files ``needs``. The record is the batch's row of batch_results.csv
    (``status``, ``options_hash``) or extract's cached JSON row (bookkeeping prefixed: ``_status``,
    ``_options_hash``); a record without them (an older version) is not done."""
    if not isinstance(record, dict):
        return False
    status = record.get("status", record.get("_status"))
    if status != "ok" or record.get("options_hash", record.get("_options_hash")) != key:
        return False
    if output_folder is None:
        return True
    from .io import read_output_set
    m = read_output_set(output_folder)
    return m is not None and set(needs) <= set(m.get("files", {}))


def case_failure(case_id: str, exc: BaseException) -> dict:
    """The one per-case failure record of the cohort runners: ``case_id`` and ``error`` ("Type: message")."""
    return {"case_id": str(case_id), "error": f"{type(exc).__name__}: {exc}"}


def _one_case(args) -> dict:
    return analyze_folder_cached(*args)


def cached_row(cache, key: str):
    """The cached row of a finished case (``case_done`` with options hash ``key``), or None."""
    cache = Path(cache)
    if not cache.exists():
        return None
    try:
        row = json.loads(cache.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    if case_done(row, key):
        row["_cached"] = True
        return row
    return None


def _with_parquet(row: dict, parquet) -> dict:
    """Write (ok) or remove (failed) the case's one-row Parquet file."""
    if parquet is not None:
        from .scheduler import write_case_parquet
        if "_error" in row:
            Path(parquet).unlink(missing_ok=True)
        else:
            try:
                write_case_parquet(row, Path(parquet))
            except Exception as exc:  # noqa: BLE001 - e.g. disk full: the case is not in the results, recorded
                failure = case_failure(row.get("case_id", Path(parquet).stem), exc)
                return {"case_id": failure["case_id"], "_error": f"writing {parquet}: {failure['error']}"}
    return row


def absolute_path(value):
    """``value`` made absolute when it is a relative path to an existing file or folder, else unchanged (a preset or
    atlas name such as ``wang2025``, a missing path that the stage reports itself). Cohort runs send paths to Dask
    workers, whose working folder is theirs, not the client's (a ``dask worker`` started elsewhere)."""
    if isinstance(value, (str, Path)) and str(value) and not Path(value).is_absolute() and Path(value).exists():
        return str(Path(value).absolute())
    return value


#: the backend options that name files or folders (segment.py: nnU-Net, brats17, lgg-unet2d, auto); the others
#: (device, folds, views, checkpoint: a file name inside model_folder) are names and stay as given
BACKEND_PATH_OPTIONS = ("model_folder", "weights_dir", "brats17_weights")


def absolute_options(options):
    """A copy of PipelineOptions whose file and folder options (preset YAML, deep weights, the backend's weights /
    model folders, bundles) are absolute (``absolute_path``), so that a worker anywhere reads the same files. Only
    options that are paths are touched (the atlas is a name: mni152 / sri24). Made before the options hash, so every
    worker computes the client's hash; a cache made with a relative weights path (hashed as given) is recomputed
    once."""
    from dataclasses import replace
    backend_options = {k: absolute_path(v) if k in BACKEND_PATH_OPTIONS else v
                       for k, v in (options.backend_options or {}).items()}
    return replace(options, preset=absolute_path(options.preset), deep_weights=absolute_path(options.deep_weights),
                   backend_options=backend_options,
                   bundles=[absolute_path(b) for b in options.bundles] if options.bundles else options.bundles)


def analyze_folder_cached(folder, cache, options, before=None, parquet=None) -> dict:
    """Feature row of one case folder, cached as JSON in ``cache``; errors come back as a row with ``_error``.
    ``before`` (optional callable) runs first inside the error handling, e.g. to render a synthetic case.
    The cache is keyed on the options (``case_done``: the batch's resume rule too): a row cached with other options
    (``_options_hash``, provenance.options_hash) or without a recorded hash and status (older version) is recomputed
    and replaced. ``parquet``: the case's one-row Parquet file, written (ok) or removed (failed) after the row."""
    from .provenance import options_hash
    key = options_hash(options)
    row = cached_row(cache, key)
    if row is not None:
        return _with_parquet(row, parquet)
    return _with_parquet(_analyze_folder(folder, Path(cache), options, key, before), parquet)


def _analyze_folder(folder, cache: Path, options, key: str, before=None) -> dict:
    from .case import load_case_folder
    from .pipeline import analyze_case, case_roi
    t = time.perf_counter()
    try:
        if before is not None:
            before()
        case = load_case_folder(folder)
        label, source = case_roi(case) if getattr(options, "case_roi", False) else (None, "")
        analysis = analyze_case(case, options, label=label, label_source=source)
        row = analysis.feature_row()
        row["_provenance"] = analysis.features.provenance
        row["_seconds"] = round(time.perf_counter() - t, 1)
        row["_warnings"] = " | ".join(analysis.warnings)
        row["_options_hash"] = key
        row["_status"] = "ok"
        atomic_write_json(cache, row)
        return row
    except Exception as exc:  # recorded per case; the cohort goes on
        failure = case_failure(Path(folder).name, exc)
        return {"case_id": failure["case_id"], "_error": failure["error"], "_traceback": traceback.format_exc(limit=5)}


def extract_cohort(cases_dir, out_table, options=None, jobs: int = 1, progress: Progress = null_progress,
                   keep_previous: int = 0, scheduler=None) -> dict:
    """Run the image pipeline on every case folder; returns a summary dict (n_ok, n_failed, n_cached, paths).
    ``scheduler``: ``local:N`` / ``tcp://HOST:PORT`` (a Dask run, one task per case; ``jobs`` is then unused) or a
    ``distributed.Client`` already connected."""
    from .pipeline import PipelineOptions
    if isinstance(scheduler, str):  # a bad --scheduler or Dask missing: before any work
        from .scheduler import parse_scheduler, require_distributed
        parse_scheduler(scheduler)
        require_distributed()
    opt = absolute_options(options or PipelineOptions(feature_workers=1))
    out_table = Path(out_table).absolute()  # a worker's working folder is not the client's (tcp:// workers)
    cases_dir = Path(cases_dir).absolute()
    if out_table.is_dir():
        raise InputError(f"output table {out_table} is a folder; give a file name such as {out_table / 'cohort.csv'}")
    check_output_folder(out_table.parent, what="output folder of the table")
    cache_dir = out_table.with_name(out_table.name + ".cases")
    cache_dir.mkdir(parents=True, exist_ok=True)
    folders = find_case_folders(cases_dir, exclude=[out_table.parent, cache_dir])
    if not folders:
        raise FileNotFoundError(f"{cases_dir}: no case folders with images found")
    from .scheduler import parquet_available
    parquet_dir = out_table.with_name(out_table.stem + ".parquet") if parquet_available() else None
    args = [(f, cache_dir / f"{f.name}.json", opt, None,
             parquet_dir / f"{f.name}.parquet" if parquet_dir is not None else None) for f in folders]
    rows = []
    if scheduler is not None:
        rows = _extract_on_dask(scheduler, args, opt, progress)
    elif jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for i, r in enumerate(pool.map(_one_case, args)):
                rows.append(r)
                progress.update((i + 1) / len(args), f"{r['case_id']}: {'failed' if '_error' in r else 'ok'}")
    else:
        for i, a in enumerate(args):
            progress.update(i / len(args), f"case {i + 1}/{len(args)}: {a[0].name}")
            rows.append(_one_case(a))
    ok = [r for r in rows if "_error" not in r]
    failed = [r for r in rows if "_error" in r]
    ok_names = [Path(a[0]).name for a, r in zip(args, rows) if "_error" not in r]
    table = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in ok]) if ok else None
    if parquet_dir is not None:  # the dataset holds exactly this run's ok cases, each file in the table's schema
        from .scheduler import finish_parquet_dataset
        why = finish_parquet_dataset(parquet_dir, table, ok_names)
        if why:
            progress.update(1.0, f"Parquet dataset {parquet_dir} not aligned to the table's columns: {why}")
    from .provenance import merge
    provenance = merge(r.get("_provenance") for r in ok)  # common values; sequences of any case; "mixed: ..."
    failures_path = out_table.with_name(out_table.stem + ".failures.csv")
    with output_set(out_table.parent, keep_previous, set_name=out_table.name,
                    what="output folder of the table") as staging:
        if ok:
            text = table.to_csv(index=False)
            atomic_write_text(staging / out_table.name, text)
            import hashlib  # ties the provenance to this table's bytes (cli.read_table_provenance checks it)
            provenance = {**(provenance or {}), "table_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
            atomic_write_json(staging / (out_table.stem + ".provenance.json"), provenance)
        atomic_write_text(staging / failures_path.name, pd.DataFrame(
            [{"case_id": r["case_id"], "error": r["_error"]} for r in failed],
            columns=["case_id", "error"]).to_csv(index=False))
    progress.update(1.0, f"{len(ok)} case(s) extracted, {len(failed)} failed")
    return {"n_ok": len(ok), "n_failed": len(failed), "n_cached": sum(1 for r in ok if r.get("_cached")),
            "table": str(out_table) if ok else None, "failures": str(failures_path), "cache": str(cache_dir),
            "parquet": str(parquet_dir) if parquet_dir is not None and ok else None}


def _extract_on_dask(scheduler, args, opt, progress: Progress) -> list:
    """One Dask task per case not already done (cohort.cached_row); rows back in the folders' order."""
    from .provenance import options_hash
    from .scheduler import dask_client, gpu_workers, needs_gpu, run_cases
    key = options_hash(opt)
    rows = {}
    todo = []
    for a in args:
        row = cached_row(a[1], key)  # done with the same options: skipped, never sent to a worker
        if row is not None:
            rows[a[1]] = _with_parquet(row, a[4]) if a[4] is not None and not Path(a[4]).exists() else row
        else:
            todo.append((Path(a[0]).name, (a,)))

    def on_result(name, row):
        rows[dict(todo)[name][0][1]] = row
        return "_error" not in row

    def on_lost(name, exc):
        a = dict(todo)[name][0]
        failure = case_failure(name, exc)
        rows[a[1]] = {"case_id": name, "_error": failure["error"] + " (the case's worker process died or could not"
                      " run it; out of memory?)"}
        if a[4] is not None:
            Path(a[4]).unlink(missing_ok=True)

    def run(client):
        resources = {"GPU": 1} if needs_gpu(opt.backend, opt.case_roi) and gpu_workers(client) else None
        run_cases(client, _one_case, todo, on_result, on_lost, progress, resources=resources,
                  skipped=len(args) - len(todo))

    if todo:
        if isinstance(scheduler, str):
            with dask_client(scheduler) as client:
                run(client)
        else:
            run(scheduler)
    return [rows[a[1]] for a in args]
