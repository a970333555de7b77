"""Batch run over a cohort with the modules' Logic, in Slicer or in plain Python.

    Slicer --no-main-window --python-script GliomaRadiogenomics/Batch/GliomaBatch.py --input COHORT --output OUT
    python GliomaRadiogenomics/Batch/GliomaBatch.py --input COHORT --output OUT      # slicer-core (real MRML, no app)

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
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]  # the module folder (GliomaMRML, GliomaRadiogenomicsLib); this script
if str(HERE) not in sys.path:                # sits in a subfolder so that Slicer does not take it for a module
    sys.path.insert(0, str(HERE))


def _scene():
    from GliomaMRML.headless import create_scene, in_slicer_application
    if in_slicer_application():
        import slicer
        return slicer.mrmlScene
    return create_scene()


def batch_options_hash(preprocess_options=None, preset: str = "wang2025", bundles=None, backend=None) -> str:
    """Hash of what changes a case's results here: preprocessing options, default backend, preset settings and the
    bundle files' contents (GliomaRadiogenomicsLib.provenance.options_hash)."""
    from GliomaRadiogenomicsLib.bundle import default_bundle_paths
    from GliomaRadiogenomicsLib.pipeline import PipelineOptions
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    from GliomaRadiogenomicsLib.provenance import file_digest, options_hash
    from GliomaRadiogenomicsLib.segment import DEFAULT_BACKEND
    paths = [Path(p) for p in bundles] if bundles else default_bundle_paths()
    opt = PipelineOptions(preprocess=preprocess_options or PreprocessOptions(), backend=backend or DEFAULT_BACKEND,
                          preset=preset)
    return options_hash(opt, extra={"bundles": [file_digest(p) if p.is_file() else str(p) for p in paths]})


def run_batch(input_dir, output_dir, preprocess_options=None, preset: str = "wang2025", bundles=None,
              keep_previous: int = 0, backend=None) -> list:
    import pandas as pd
    import SimpleITK as sitk
    from GliomaMRML.convert import segmentation_node_to_label_image
    from GliomaMRML.logic import GliomaRadiogenomicsLogic, load_case_folder_into_scene, reference_node
    from GliomaRadiogenomicsLib.cohort import case_done, case_failure, find_case_folders
    from GliomaRadiogenomicsLib.io import (atomic_write_json, atomic_write_text, check_output_folder, output_set,
                                           write_image)

    inp, out = Path(input_dir), Path(output_dir)
    if not inp.is_dir():
        from GliomaRadiogenomicsLib.io import InputError
        raise InputError(f"--input: cohort folder not found: {inp}")
    check_output_folder(out)  # a file, not writable, disk full: before any case
    out.mkdir(parents=True, exist_ok=True)
    results_csv = out / "batch_results.csv"
    previous = {}
    if results_csv.exists():
        previous = {r["case"]: r for r in pd.read_csv(results_csv, dtype={"options_hash": str}).to_dict("records")}
    key = batch_options_hash(preprocess_options, preset, bundles, backend)  # cases done with other options are redone
    scene = _scene()
    rows = []
    folders = find_case_folders(inp, exclude=[out])  # extract's discovery: hidden, image-less, OUT skipped
    if not folders:
        from GliomaRadiogenomicsLib.io import InputError
        raise InputError(f"--input {inp}: no case folders with images found (one subfolder per case)")
    for folder in folders:
        # extract's resume rule too: ok with the same options; here also a complete output set with predictions.json
        if case_done(previous.get(folder.name), key, out / folder.name, needs=("predictions.json",)):
            rows.append(previous[folder.name])
            continue
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
        rows.append(row)
        atomic_write_text(results_csv, pd.DataFrame(rows).to_csv(index=False), backup=False)
        print(json.dumps({"case": folder.name, "status": row["status"], "error": row["error"][:200]}), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--preset", default="wang2025")
    ap.add_argument("--spacing", type=float, default=1.0)
    ap.add_argument("--brain-mask", default="auto")
    ap.add_argument("--no-register", action="store_true", help="trust the headers: no rigid registration")
    ap.add_argument("--bundle", action="append")
    from GliomaRadiogenomicsLib.segment import BACKENDS, DEFAULT_BACKEND
    ap.add_argument("--backend", choices=sorted(BACKENDS), help=f"segmentation backend (default {DEFAULT_BACKEND})")
    ap.add_argument("--keep-previous", type=int, default=0, metavar="N",
                    help="keep each case's previous outputs as one dated copy OUT/<case>.previous-<timestamp>, at "
                         "most N (default 0: replaced)")
    a = ap.parse_args(argv)
    from GliomaRadiogenomicsLib.io import InputError
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    try:
        popt = PreprocessOptions(spacing=a.spacing, brain_mask=a.brain_mask, register=not a.no_register)
        rows = run_batch(a.input, a.output, popt, a.preset,
                         a.bundle, keep_previous=a.keep_previous, backend=a.backend)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:  # a cohort or output folder we may not read / write
        print(f"error: permission denied: {exc.filename or exc}; check the folder's permissions", file=sys.stderr)
        return 2
    n_ok = sum(r["status"] == "ok" for r in rows)
    print(f"{n_ok} of {len(rows)} case(s) ok; table: {Path(a.output) / 'batch_results.csv'}")
    return 0 if n_ok == len(rows) else 1


if __name__ == "__main__":
    rc = main()
    try:
        from GliomaMRML.headless import in_slicer_application
        if in_slicer_application():
            import slicer
            slicer.util.exit(rc)
    except ImportError:
        pass
    sys.exit(rc)
