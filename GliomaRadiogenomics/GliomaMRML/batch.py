"""Batch run over a cohort with the modules' Logic, in Slicer or in plain Python.

    glioma-radiogenomics-batch --input COHORT --output OUT                      # installed package + slicer-core
    Slicer --no-main-window --python-script GliomaRadiogenomics/Batch/GliomaBatch.py --input COHORT --output OUT
    python GliomaRadiogenomics/Batch/GliomaBatch.py --input COHORT --output OUT      # a checkout + slicer-core

The logic lives here (GliomaMRML.batch) so that an installed wheel runs it (console script
``glioma-radiogenomics-batch``); GliomaRadiogenomics/Batch/GliomaBatch.py is the Slicer ``--python-script`` entry
that calls it from the module folder.

COHORT holds one folder per case (found as `extract` finds them, GliomaRadiogenomicsLib.cohort.find_case_folders:
hidden folders, folders without an image or DICOM file, and OUT when it lies inside COHORT are skipped; sequences
named t1/t1c/t2/flair, BraTS, BIDS, scanner names, or DICOM series; optional case.json with clinical data). Per
case: volumes loaded into the scene, segmentation, features, predictions; OUT/<case>/ gets segmentation.nii.gz,
predictions.json and summary.pdf (or error.txt for a failed case) as one output set
(GliomaRadiogenomicsLib.io.output_set: staged, then swapped into place with its manifest .complete.json, so a killed
batch leaves each case folder with its previous complete set or its new one; the previous set is removed, or kept as
OUT/<case>.previous-<timestamp> with --keep-previous N). OUT/batch_results.csv lists every case with ok / failed,
the error and the probabilities; it is rewritten (atomically) after each case, and cases already ok with the same
options (column options_hash: preprocessing, preset, bundles) and a complete output set are skipped on a re-run
(cohort.case_done, extract's resume rule); cases done with other options are redone. A failing case never stops the
batch. OUT is checked first (a file, not writable, disk full: exit code 2).

--scheduler local:N | tcp://HOST:PORT runs one Dask task per case (GliomaRadiogenomicsLib.scheduler; the 'cohort'
extra): cases needing a deep network go to workers that declare --resources GPU=1 when there are any; a worker
killed mid-case is retried elsewhere (the case's output set is swapped in whole, never half-written); rows also go to
OUT/batch_results.parquet/<case>.parquet; a progress bar (done / failed / running, rate, ETA) and the dashboard
address on stderr. See docs/scaling.md for several machines.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

# the folder that holds GliomaMRML and GliomaRadiogenomicsLib (the Slicer module folder in a checkout or in Slicer,
# site-packages for an installed wheel): process_case travels to Dask workers by value and puts it on their path
HERE = Path(__file__).resolve().parents[1]


def _scene():
    from GliomaMRML.headless import create_scene, in_slicer_application
    if in_slicer_application():
        import slicer
        return slicer.mrmlScene
    return create_scene()


def batch_options_hash(preprocess_options=None, preset: str = "wang2025", bundles=None, backend=None) -> str:
    """Hash of what changes a case's results here: preprocessing options, default backend, preset settings and the
    bundle files' contents (GliomaRadiogenomicsLib.provenance.options_hash)."""
    from GliomaRadiogenomicsLib.bundle import effective_bundle_paths
    from GliomaRadiogenomicsLib.pipeline import PipelineOptions
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    from GliomaRadiogenomicsLib.provenance import file_digest, options_hash
    from GliomaRadiogenomicsLib.segment import DEFAULT_BACKEND
    paths = [Path(p) for p in effective_bundle_paths(bundles)]  # the defaults too when only JSON bundles
    opt = PipelineOptions(preprocess=preprocess_options or PreprocessOptions(), backend=backend or DEFAULT_BACKEND,
                          preset=preset)
    return options_hash(opt, extra={"bundles": [file_digest(p) if p.is_file() else str(p) for p in paths]})


def process_case(folder, out, key, preprocess_options=None, preset: str = "wang2025", bundles=None,
                 keep_previous: int = 0, backend=None, scene=None) -> dict:
    """One case: its output set OUT/<case>/ and its row of batch_results.csv (also OUT/batch_results.parquet/<case>
    .parquet when pyarrow is installed). Runs here or as a Dask task in a worker process (``--scheduler``): the
    worker gets the module folder on its path and its own scene."""
    if str(HERE) not in sys.path:  # a Dask worker: GliomaMRML and GliomaRadiogenomicsLib next to this script
        sys.path.insert(0, str(HERE))
    import SimpleITK as sitk
    from GliomaMRML.convert import segmentation_node_to_label_image
    from GliomaMRML.logic import GliomaRadiogenomicsLogic, load_case_folder_into_scene, reference_node
    from GliomaRadiogenomicsLib.cohort import case_failure
    from GliomaRadiogenomicsLib.io import atomic_write_json, atomic_write_text, output_set, write_image
    folder, out = Path(folder), Path(out)
    scene = scene if scene is not None else _scene()
    t0 = time.perf_counter()
    row = {"case": folder.name, "status": "failed", "error": "", "seconds": 0.0, "options_hash": key}
    try:
        with output_set(out / folder.name, keep_previous=keep_previous) as case_out:
            try:
                scene.Clear(0)
                nodes, clinical, case_id = load_case_folder_into_scene(scene, folder)
                seg, doc, _, _ = GliomaRadiogenomicsLogic(scene).run(nodes, clinical,
                                                                     preprocess_options=preprocess_options,
                                                                     preset=preset, bundles=bundles,
                                                                     backend=backend)
                label = segmentation_node_to_label_image(seg, reference_node(nodes))
                write_image(sitk.Cast(label, sitk.sitkUInt8), case_out / "segmentation.nii.gz")
                atomic_write_json(case_out / "predictions.json", doc)
                from GliomaRadiogenomicsLib.report import write_pdf_summary
                write_pdf_summary(doc, case_out / "summary.pdf")
                row.update(status="ok", case_id=case_id, volume_WT_ml=doc["segmentation"]["volumes_ml"]["WT"],
                           **{f"p_{t}": doc[t]["probability"] for t in doc["tasks"]},
                           warnings=" | ".join(doc["warnings"])[:500])
            except Exception as exc:  # a failing case is recorded, the batch goes on: its set is error.txt
                row["error"] = case_failure(folder.name, exc)["error"]
                for f in case_out.iterdir():
                    f.unlink()
                atomic_write_text(case_out / "error.txt", traceback.format_exc())
    except Exception as exc:  # the case's output folder itself (not writable, disk full)
        row.update(status="failed", error=case_failure(folder.name, exc)["error"])
    row["seconds"] = round(time.perf_counter() - t0, 1)
    from GliomaRadiogenomicsLib.scheduler import parquet_available, write_case_parquet
    if parquet_available():
        try:
            write_case_parquet(row, out / "batch_results.parquet" / f"{folder.name}.parquet")
        except Exception as exc:  # noqa: BLE001 - the CSV row is still written by the caller
            row["warnings"] = (row.get("warnings") or "") + f" | Parquet not written: {exc}"
    return row


def run_batch(input_dir, output_dir, preprocess_options=None, preset: str = "wang2025", bundles=None,
              keep_previous: int = 0, backend=None, scheduler=None) -> list:
    """Every case of ``input_dir``; ``scheduler`` (``local:N`` / ``tcp://HOST:PORT`` or a ``distributed.Client``)
    runs one Dask task per case not already done (GliomaRadiogenomicsLib.scheduler), else one after the other."""
    import pandas as pd
    from GliomaRadiogenomicsLib.cohort import absolute_path, case_done, case_failure, find_case_folders
    from GliomaRadiogenomicsLib.io import atomic_write_text, check_output_folder

    # absolute: a Dask worker's working folder is not ours (tcp:// workers started elsewhere)
    inp, out = Path(input_dir).absolute(), Path(output_dir).absolute()
    preset = absolute_path(preset)
    bundles = [absolute_path(b) for b in bundles] if bundles else bundles
    if not inp.is_dir():
        from GliomaRadiogenomicsLib.io import InputError
        raise InputError(f"--input: cohort folder not found: {inp}")
    if isinstance(scheduler, str):  # a bad --scheduler or Dask missing: before any work
        from GliomaRadiogenomicsLib.scheduler import parse_scheduler, require_distributed
        parse_scheduler(scheduler)
        require_distributed()
    check_output_folder(out)  # a file, not writable, disk full: before any case
    out.mkdir(parents=True, exist_ok=True)
    results_csv = out / "batch_results.csv"
    previous = {}
    if results_csv.exists():
        previous = {r["case"]: r for r in pd.read_csv(results_csv, dtype={"options_hash": str}).to_dict("records")}
    key = batch_options_hash(preprocess_options, preset, bundles, backend)  # cases done with other options are redone
    folders = find_case_folders(inp, exclude=[out])  # extract's discovery: hidden, image-less, OUT skipped
    if not folders:
        from GliomaRadiogenomicsLib.io import InputError
        raise InputError(f"--input {inp}: no case folders with images found (one subfolder per case)")
    rows = {}
    todo = []
    for folder in folders:
        # extract's resume rule too: ok with the same options; here also a complete output set with predictions.json
        if case_done(previous.get(folder.name), key, out / folder.name, needs=("predictions.json",)):
            rows[folder.name] = previous[folder.name]
        else:
            todo.append(folder)

    def record(row):  # rewritten after each case, in the cohort's order; a JSON line per case
        rows[row["case"]] = row
        atomic_write_text(results_csv, pd.DataFrame([rows[f.name] for f in folders if f.name in rows])
                          .to_csv(index=False), backup=False)
        print(json.dumps({"case": row["case"], "status": row["status"], "error": row["error"][:200]}), flush=True)
        return row["status"] == "ok"

    args = (preprocess_options, preset, bundles, keep_previous, backend)
    if scheduler is None:
        scene = _scene()
        for folder in todo:
            record(process_case(folder, out, key, *args, scene=scene))
    elif todo:
        from GliomaRadiogenomicsLib.progress import ConsoleProgress
        from GliomaRadiogenomicsLib.scheduler import dask_client, gpu_workers, needs_gpu, run_cases
        import cloudpickle  # workers need not import this module: the task travels by value
        cloudpickle.register_pickle_by_value(sys.modules[__name__])

        def lost(name, exc):
            record({"case": name, "status": "failed", "options_hash": key, "seconds": 0.0,
                    "error": case_failure(name, exc)["error"] + " (the case's worker process died or could not "
                                                                "run it; out of memory?)"})

        def go(client):
            resources = {"GPU": 1} if needs_gpu(backend) and gpu_workers(client) else None
            run_cases(client, process_case, [(f.name, (f, out, key) + args) for f in todo],
                      lambda name, row: record(row), lost, ConsoleProgress(), resources=resources,
                      skipped=len(folders) - len(todo))
        if isinstance(scheduler, str):
            with dask_client(scheduler) as client:
                go(client)
        else:
            go(scheduler)
    results = [rows[f.name] for f in folders]
    from GliomaRadiogenomicsLib.scheduler import finish_parquet_dataset, parquet_available
    if parquet_available():  # the dataset = batch_results.csv: every case (a lost worker's too), one schema
        why = finish_parquet_dataset(out / "batch_results.parquet", pd.DataFrame(results), [f.name for f in folders])
        if why:
            print(f"batch_results.parquet not aligned to batch_results.csv: {why}", file=sys.stderr)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--preset", default="wang2025")
    ap.add_argument("--spacing", type=float, default=1.0)
    ap.add_argument("--brain-mask", default="auto")
    ap.add_argument("--no-register", action="store_true", help="trust the headers: no rigid registration")
    from GliomaRadiogenomicsLib.cli import BUNDLE_HELP, bundle_argument
    ap.add_argument("--bundle", action="append", type=bundle_argument, help=BUNDLE_HELP)
    from GliomaRadiogenomicsLib.segment import BACKENDS, DEFAULT_BACKEND
    ap.add_argument("--backend", choices=sorted(BACKENDS), help=f"segmentation backend (default {DEFAULT_BACKEND})")
    ap.add_argument("--scheduler", help="run on Dask distributed, one task per case: local:N (N worker processes "
                    "here) or tcp://HOST:PORT (a `dask scheduler` whose workers share the folders; docs/scaling.md)")
    ap.add_argument("--keep-previous", type=int, default=0, metavar="N",
                    help="keep each case's previous outputs as one dated copy OUT/<case>.previous-<timestamp>, at "
                         "most N (default 0: replaced)")
    a = ap.parse_args(argv)
    from GliomaRadiogenomicsLib.io import InputError
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    try:
        popt = PreprocessOptions(spacing=a.spacing, brain_mask=a.brain_mask, register=not a.no_register)
        rows = run_batch(a.input, a.output, popt, a.preset,
                         a.bundle, keep_previous=a.keep_previous, backend=a.backend, scheduler=a.scheduler)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:  # a cohort or output folder we may not read / write
        print(f"error: permission denied: {exc.filename or exc}; check the folder's permissions", file=sys.stderr)
        return 2
    n_ok = sum(r["status"] == "ok" for r in rows)
    print(f"{n_ok} of {len(rows)} case(s) ok; table: {Path(a.output) / 'batch_results.csv'}")
    return 0 if n_ok == len(rows) else 1


def cli(argv=None) -> int:
    """Console script ``glioma-radiogenomics-batch`` (also what the Slicer entry script runs): main, then, inside
    the Slicer application, Slicer's exit with the same code."""
    rc = main(argv)
    try:
        from GliomaMRML.headless import in_slicer_application
        if in_slicer_application():
            import slicer
            slicer.util.exit(rc)
    except ImportError:
        pass
    return rc


if __name__ == "__main__":
    sys.exit(cli())
