"""`glioma-radiogenomics` command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from . import __version__
from .io import InputError, check_output_folder


def _progress(args):
    from .progress import ConsoleProgress, JsonLinesProgress
    return JsonLinesProgress() if getattr(args, "json_progress", False) else ConsoleProgress()


def _backend_options(args) -> dict:
    if args.backend == "nnunet":
        return {"model_folder": args.nnunet_model, "device": args.device, "folds": args.nnunet_folds or ""}
    if args.backend in ("auto", "lgg-unet2d"):
        d = {"unet_folds" if args.backend == "auto" else "folds": getattr(args, "unet_folds", None) or "",
             "device": args.device}
        if args.backend == "auto" and (getattr(args, "brats17_views", None) or "auto") != "auto":
            d["brats17_views"] = args.brats17_views
        return d
    if args.backend == "brats17":
        return {"device": args.device, "views": getattr(args, "brats17_views", None) or "auto",
                "substitute_t2": getattr(args, "substitute_t2", None)}
    return {}


def _preprocess_options(args):
    from .preprocess import PreprocessOptions
    return PreprocessOptions(reference=args.reference, spacing=args.spacing, brain_mask=args.brain_mask,
                             register=not args.no_register, device=args.device, n4=args.n4,
                             n4_segmentation=bool(getattr(args, "n4_segmentation", False)),
                             orientation=args.orientation, atlas=args.atlas)


def _options(args):
    """Pipeline options from the parsed arguments; ``segment`` has no feature / model options (its parser does not
    offer them): their defaults apply and are unused there."""
    from .pipeline import PipelineOptions
    return PipelineOptions(preprocess=_preprocess_options(args), backend=args.backend,
                           backend_options=_backend_options(args), preset=getattr(args, "preset", "wang2025"),
                           feature_workers=getattr(args, "workers", None), bundles=getattr(args, "bundle", None) or None,
                           deep_weights=getattr(args, "resnet34_weights", None),
                           location=bool(getattr(args, "location", False)),
                           roi_subregions=bool(getattr(args, "roi_subregions", False)))


BUNDLE_HELP = ("model bundle JSON, or the name of a shipped optional model (choi-idh: the Choi 2021 hybrid IDH CNN; "
               "`models` lists them); repeatable. Default: the shipped default bundles. A logistic bundle replaces "
               "the defaults; Shim 2021 recurrence / Cox-LASSO survival bundles (applied when the case has a CBV map) "
               "and Choi 2021 hybrid IDH bundles are added to them")


def bundle_argument(value: str) -> str:
    """``--bundle``: a file, or the name of a shipped optional model / bundle file (bundle.resolve_bundle_ref)."""
    from .bundle import resolve_bundle_ref
    return resolve_bundle_ref(value)


def sex_argument(value: str) -> str:
    """``--sex``: female / male / F / M in any case, through the one clinical encoder (case.normalize_clinical)."""
    from .case import normalize_clinical
    try:
        return normalize_clinical({"sex": value}, where="--sex")["sex"]
    except InputError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a sex: use female, male, F or M (any case)") from None


class PreviousOutputs:
    """Says where a run's previous outputs went: ``with PreviousOutputs(out, keep_previous, "predictions.json")``
    notes what is there before the run; afterwards ``line()`` names the dated copy that io.output_set made
    (``<out>.previous-<stamp>``, --keep-previous N), or says they were replaced (N = 0); None for a first run."""

    def __init__(self, out, keep_previous: int, marker: str):
        self.out, self.keep = Path(out), int(keep_previous or 0)
        self.had = (self.out / marker).exists()
        self.before = self._copies()

    def _copies(self) -> set:
        return {p for base in {self.out.parent, self.out} if base.is_dir()
                for p in base.glob(f"{self.out.name}.previous-*")}

    def line(self) -> Optional[str]:
        new = sorted(self._copies() - self.before)
        if new:
            return f"previous outputs moved to {new[-1]} (--keep-previous {self.keep})"
        if self.had:
            return f"previous outputs in {self.out} replaced (keep a dated copy with --keep-previous N)"
        return None


def _load_case_from_args(args):
    from .case import load_case, load_case_folder
    clinical = {"age": getattr(args, "age", None), "sex": getattr(args, "sex", None),
                "who_grade": getattr(args, "who_grade", None), "vasari_score": getattr(args, "vasari_score", None)}
    given = {"t1": args.t1, "t1c": args.t1c, "t2": args.t2, "flair": args.flair, "cbv": getattr(args, "cbv", None)}
    if args.case_dir:
        case = load_case_folder(args.case_dir, clinical, overrides=given)
        if args.case_id:
            case.case_id = args.case_id
        return case
    if not any(given.values()):
        raise InputError("give --case-dir DIR, or the images you have (--flair and/or --t2 for the whole tumor; "
                         "--t1c for enhancing / necrosis; --t1)")
    return load_case(given, args.case_id, clinical)


def _print_messages(case) -> None:
    for m in case.messages:
        print(f"note: {m}", file=sys.stderr)


def print_summary(doc: dict, out: Path, stream=None, previous: Optional[str] = None) -> None:
    """The run's summary: volumes, one row per task with its status beside the number (render.task_rows), the
    key-result line, input-quality warnings, where the outputs are and where the previous ones went."""
    stream = stream or sys.stdout
    w = stream.write
    w("\n" + "=" * 78 + "\n")
    w(f"GliomaRadiogenomics  case {doc['case']['id']}" + ("  [SYNTHETIC CASE]" if doc["case"].get("synthetic") else "") + "\n")
    vol = doc["segmentation"]["volumes_ml"]
    w("tumor volumes (mL): " + ", ".join(f"{k} {v:.1f}" for k, v in vol.items()) + "\n")
    from .render import (any_synthetic_model, input_quality_lines, key_result_line, shim_lines, synthetic_models_note,
                         task_rows)
    rows = task_rows(doc)
    w(f"{'task':<9} {'probability':>11}  {'label (at cutoff)':<28} {'points':>7}  {'status':<34} model\n")
    for row in rows:
        syn = " [SYNTHETIC-trained]" if row.synthetic else ""
        w(f"{row.task:<9} {row.probability_text:>11}  {row.label:<28} {row.points_text:>7}  {row.status_text:<34} "
          f"{row.model}{syn}\n")
        if row.status_notes:
            w(f"          status: {row.status_detail}\n")
        if row.reason and row.reason not in row.status_notes:
            w(f"          {row.reason}\n")
        for pw in (doc.get(row.task) or {}).get("provenance_warnings") or []:
            w(f"          settings: {pw}\n")
        if row.points:
            w(f"          points: {row.points_breakdown}\n")
        w(f"          trained on: {row.trained_on_text}\n")
    for line in shim_lines(doc):  # the JSON-bundle tasks (render.bundle_task_entries), when the run had any
        w(line + "\n")
    w(key_result_line(doc) + "\n")
    for q in input_quality_lines(doc):
        w(f"input quality: {q}\n")
    w(doc["disclaimer"] + "\n")
    if any_synthetic_model(doc):
        w(synthetic_models_note(doc) + "\n")
    if doc.get("warnings"):
        w(f"{len(doc['warnings'])} warning(s) in predictions.json\n")
    w(f"outputs: {out}/predictions.json, features.csv, segmentation.nii.gz, brain_mask.nii.gz, report.html, "
      "report.pdf\n")
    if previous:
        w(previous + "\n")
    w("=" * 78 + "\n")


def cmd_demo(args) -> int:
    from .case import load_case_folder
    from .pipeline import run_case
    from .synthetic import make_demo_case, SYNTHETIC_NOTICE

    out = Path(args.out)
    check_output_folder(out)  # before the demo case is built
    progress = _progress(args)
    case_dir = out / "demo_case"
    progress.update(0.0, "building the SYNTHETIC demo case (ICBM152 anatomy + simulated glioma)")
    meta = json.loads((case_dir / "case.json").read_text()) if (case_dir / "case.json").exists() else {}
    if meta.get("downsample") != args.downsample or meta.get("case_id") != "synthetic-demo-001":
        make_demo_case(downsample=args.downsample).save(case_dir)
    case = load_case_folder(case_dir)
    case.synthetic = True
    print(SYNTHETIC_NOTICE, file=sys.stderr)
    prev = PreviousOutputs(out, args.keep_previous, "predictions.json")
    doc = run_case(case, out, _options(args), progress.sub(0.05, 1.0), keep_previous=args.keep_previous)
    print_summary(doc, out, previous=prev.line())
    return 0


def cmd_run(args) -> int:
    from .io import read_image
    from .kept import Kept
    from .pipeline import case_roi, run_case

    check_output_folder(args.out)  # before the images are read
    _check_roi_subregions(args, bool(args.segmentation), "--segmentation FILE (or case)")
    case = _load_case_from_args(args)
    label, source, origin, kept = None, "", None, None
    if args.segmentation and args.segmentation.lower() == "case":
        label, source = case_roi(case)
    elif args.segmentation:
        label, source = read_image(args.segmentation, "segmentation", label=True), f"file {args.segmentation}"
        origin = segmentation_origin(args.segmentation, label)
        kept = Kept.beside(args.segmentation)  # a run's own output: its working-grid labels and preprocessing
    _print_messages(case)
    out = Path(args.out)
    prev = PreviousOutputs(out, args.keep_previous, "predictions.json")
    doc = run_case(case, out, _options(args), _progress(args), label=label, label_source=source,
                   keep_previous=args.keep_previous, label_provenance=origin, kept=kept)
    print_summary(doc, out, previous=prev.line())
    return 0


def segmentation_origin(path, label) -> Optional[dict]:
    """The origin declared beside a --segmentation file (``<name>.provenance.json``, written by the ``segment``
    command and the Slicer logic): segmentation_source automatic / edited / given and the backend. A record with the
    digest of the automatic labels says ``edited`` once the file's labels differ from it."""
    from .provenance import segmentation_origin as origin_of
    from .io import IMAGE_SUFFIXES
    p = Path(path)
    name = next((p.name[:-len(s)] for s in sorted(IMAGE_SUFFIXES, key=len, reverse=True)
                 if p.name.lower().endswith(s)), p.stem)
    side = p.with_name(name + ".provenance.json")
    if not side.is_file():
        return None
    try:
        d = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{side}: not valid JSON ({exc})") from None
    if not isinstance(d, dict) or d.get("segmentation_source") not in ("automatic", "edited", "given"):
        raise InputError(f"{side}: segmentation_source must be automatic, edited or given")
    d = origin_of(d, label) if "digest" in d else d
    return {k: str(v) for k, v in d.items() if k in ("segmentation_source", "segmentation_backend",
                                                       "segmentation_backend_version", "roi_subregions")}


def cmd_segment(args) -> int:
    """Preprocess + segment only: segmentation.nii.gz and brain_mask.nii.gz on the reference's native grid."""
    import time
    from .io import atomic_write_json, output_set, read_image, write_image
    from .pipeline import segment_case, write_kept
    from .regions import as_brats_label, dice_per_region, region_volumes_ml
    from .segment import get_backend
    import SimpleITK as sitk

    if args.list_models:
        return list_models(args.json)
    if not args.out:
        raise InputError("segment needs --out DIR (or --list-models to see the segmentation models)")
    check_output_folder(args.out)  # before the images are read
    case = _load_case_from_args(args)
    _print_messages(case)
    progress = _progress(args)
    backend = get_backend(args.backend, **_backend_options(args))  # validate the backend before the image work
    prev = PreviousOutputs(args.out, args.keep_previous, "segmentation.json")
    # one output set: segmentation.nii.gz, brain_mask.nii.gz, segmentation.json appear together (io.output_set)
    with output_set(args.out, keep_previous=args.keep_previous) as out:
        t0 = time.perf_counter()
        seg = segment_case(case, _options(args), progress, backend=backend)
        pre, label, native = seg.as_tuple()
        t2 = time.perf_counter()
        write_image(native, out / "segmentation.nii.gz")
        write_image(pre.to_native(pre.brain_mask), out / "brain_mask.nii.gz")
        # travels with the file: `run --segmentation <this file>` records it as automatic (or edited, once changed)
        # and uses the kept working-grid labels and preprocessing (kept.py)
        write_kept(out, seg, native, seg.provenance)
        info = {"case": case.case_id, "backend": backend.name, "sequences": case.sequence_list(),
                "volumes_ml": region_volumes_ml(label), "provenance": seg.provenance,
                "steps": pre.steps, "warnings": pre.warnings,
                "timings_s": {"preprocess_and_segmentation": round(t2 - t0, 2)}}
        reference_seg = args.reference_seg or case.mask_path
        if reference_seg:
            if not args.reference_seg:
                print(f"note: Dice against the case folder's mask {Path(reference_seg).name} (reference)", file=sys.stderr)
            ref, note = as_brats_label(read_image(reference_seg, "reference segmentation"), "reference segmentation")
            ref = sitk.Resample(ref, native, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
            info["reference_segmentation"] = str(reference_seg)
            # a binary reference holds the whole tumor only: its TC / ET Dice would be meaningless
            regions = ("WT",) if note and "binary" in note else ("WT", "TC", "ET")
            info["dice"] = dice_per_region(sitk.GetArrayFromImage(native), sitk.GetArrayFromImage(ref), regions)
        atomic_write_json(out / "segmentation.json", info)
    print(json.dumps({k: info[k] for k in ("case", "backend", "volumes_ml", "timings_s") + (("dice",) if "dice" in info else ())}, indent=1))
    if prev.line():
        print(prev.line())
    return 0


def list_models(as_json: bool = False, stream=None) -> int:
    """``segment --list-models``: each model of the registry (resources/models/segmentation_models.json) with its
    inputs, licence, size, where its weights come from and whether it runs here (and why not). Downloads nothing."""
    from .registry import available, format_model_list, list_models as registry_models, model_summary
    stream = stream or sys.stdout
    rows = [model_summary(m, available(m)) for m in registry_models()]
    if as_json:
        stream.write(json.dumps({"models": rows}, indent=1) + "\n")
    else:
        stream.write(format_model_list(rows))
    return 0


def model_rows() -> list:
    """One row per shipped prediction model: the default families (per task) and the optional models, each with what
    it was trained on, whether it is SYNTHETIC and its cross-validated AUC (what the bundle records)."""
    from .bundle import cv_auc, default_bundle_paths, optional_models, read_bundle_json
    from .choi import weights_path
    rows = []
    entries = [(p, "default", p.name) for p in default_bundle_paths()]
    entries += [(o["path"], "optional", name) for name, o in optional_models().items()]
    for path, role, name in entries:
        b = read_bundle_json(path)
        m = b.get("metrics", {})
        auc = cv_auc(m)
        installed = "cnn" not in b or weights_path(path, b).is_file()  # a CNN bundle needs its weights file
        rows.append({"name": name, "role": role, "task": b.get("task"), "model": b.get("name"),
                     "installed": installed,
                     "sequences": (b.get("sequences") or b.get("training", {}).get("sequences")
                                   or [c for c in b.get("input", {}).get("channels", []) if c != "mask"]),
                     "trained_on": b.get("training", {}).get("trained_on"), "n": b.get("training", {}).get("n"),
                     "synthetic": bool(b.get("synthetic")), "auc_cv": auc, "file": str(path)})
    return rows


def cmd_models(args) -> int:
    """`glioma-radiogenomics models`: the shipped prediction models (research probabilities, not diagnoses)."""
    rows = model_rows()
    if args.json:
        print(json.dumps({"models": rows}, indent=1))
        return 0
    for r in rows:
        seq = r["sequences"]
        seq = "+".join(seq) if isinstance(seq, list) else (seq or "?")
        auc = f"{r['auc_cv']:.3f}" if isinstance(r["auc_cv"], (int, float)) else "n/a"
        print(f"{r['role']:8s} {r['task'] or '?':9s} {r['name']}  [{seq}]  cross-validated AUC {auc}; trained on "
              f"{r['trained_on']}{' (SYNTHETIC data)' if r['synthetic'] else ''}"
              + ("" if r["installed"] else "  [weights not installed: python scripts/build_choi_bundle.py]"))
    print("Defaults are applied by `run`; add an optional one with `run --bundle NAME`. Research probabilities, "
          "not diagnoses.")
    return 0


def cmd_extract(args) -> int:
    from .cohort import extract_cohort
    from .features import load_preset
    load_preset(args.preset)  # fail fast on an unknown preset
    _check_roi_subregions(args, args.case_roi, "--case-roi")
    opt = _options(args)
    opt.case_roi = args.case_roi
    opt.feature_workers = 1 if args.jobs > 1 or args.scheduler else args.workers
    if args.bundle:  # extract applies no model: the bundles switch on the features they need (location / VASARI)
        from .bundle import load_given_bundles
        from .pipeline import options_for_bundles
        logistic, json_bundles = load_given_bundles(args.bundle)
        opt = options_for_bundles(opt, logistic + json_bundles)
    summary = extract_cohort(args.cases, args.out, opt, jobs=args.jobs, progress=_progress(args),
                             keep_previous=args.keep_previous, scheduler=args.scheduler)
    print(json.dumps(summary, indent=1))
    return 0 if summary["n_ok"] > 0 else 1


def cmd_make_demo_case(args) -> int:
    from .synthetic import make_demo_case
    paths = make_demo_case(downsample=args.downsample).save(args.out)
    for k, p in paths.items():
        print(f"{k}: {p}")
    return 0


def cmd_synth_cohort(args) -> int:
    from .synthetic import generate_cohort
    table = generate_cohort(args.n, args.out, seed=args.seed, downsample=args.downsample, progress=_progress(args))
    print(f"{len(table)} SYNTHETIC cases in {args.out} (cohort.csv: labels IDH / epilepsy / ATRX and clinical data)")
    return 0


def cmd_predict(args) -> int:
    import pandas as pd
    from .bundle import load_bundle
    from .io import atomic_write_json, atomic_write_text
    from .predict import predict_table

    from .shim import apply_json_bundle, json_bundle_kind, load_json_bundle
    kind = json_bundle_kind(args.bundle)
    bundle = load_bundle(args.bundle) if kind is None else None
    table = read_table(args.table)
    prov, side, table_warning = read_table_provenance(args.table)
    warnings = [table_warning] if table_warning else []  # printed with the others at the end
    if prov is None:
        if not args.trust_table:
            raise InputError(f"{args.table}: no provenance file {side.name} beside it: the model cannot check that "
                             "these features were extracted with its settings (preset, spacing, normalisation, "
                             "segmentation, ...). Extract the table with `glioma-radiogenomics extract` (which writes "
                             "it), or pass --trust-table to predict anyway (recorded in the output)")
        warnings.append(f"{args.table}: no provenance file ({side.name}); --trust-table: the extraction settings "
                        "were NOT checked against the model's")
    if kind is None:
        res = predict_table(bundle, table, prov, id_column=args.id_column or "case_id")
        name, trained_on, synthetic = bundle.name, bundle.training.get("trained_on"), bundle.synthetic
    elif kind == "choi":  # Choi 2021 hybrid IDH: the CNN on each case folder's images + the table's shape / age
        from .choi import predict_table_cases
        kind, b = load_json_bundle(args.bundle)
        if not args.cases:
            raise InputError(f"{args.bundle} is a Choi 2021 hybrid bundle: its CNN needs each case's images and "
                             "tumour mask: give --cases DIR (one folder per case id of the table)")
        res = predict_table_cases(b, table, Path(args.cases), prov, args.id_column or "case_id")
        name, trained_on, synthetic = b["name"], b["training"].get("trained_on"), b["synthetic"]
    else:  # Shim 2021: recurrence pattern (MLP on rCBV) or Cox-LASSO risk score
        kind, b = load_json_bundle(args.bundle)
        res = apply_json_bundle(kind, b, table, prov, args.id_column or "case_id")
        name, trained_on, synthetic = b["name"], b["training"].get("trained_on"), b["synthetic"]
    warnings += res.attrs.get("warnings", [])
    atomic_write_text(args.out, res.to_csv(index=False))
    out = Path(args.out)
    atomic_write_json(out.with_name(out.stem + ".warnings.json"),
                      {"predictions": out.name, "bundle": str(args.bundle), "table": str(args.table),
                       "table_provenance": str(side) if prov is not None else None,
                       "trusted_without_provenance": prov is None, "warnings": warnings})
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{len(res)} prediction(s) -> {args.out} (model {name}, trained on {trained_on}"
          f"{', SYNTHETIC' if synthetic else ''})" + (f"; {len(warnings)} warning(s) in "
                                                      f"{out.stem}.warnings.json" if warnings else ""))
    return 0


def read_table(path):
    """A feature table (CSV); a missing, empty or unparsable file is an InputError naming it."""
    import pandas as pd
    p = Path(path)
    if not p.is_file():
        raise InputError(f"feature table not found: {p}" + (" (a folder)" if p.is_dir() else ""))
    try:
        table = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not a readable CSV feature table ({str(exc).strip().splitlines()[0][:160]})") from None
    if table.empty:
        raise InputError(f"{p}: the feature table has no rows")
    return table


def read_table_provenance(table):
    """(provenance dict or None, path of ``<table>.provenance.json``, warning or None). The warning says the table's
    bytes differ from those the provenance was written for (``table_sha256``, written by ``extract``)."""
    side = Path(table).with_name(Path(table).stem + ".provenance.json")
    if not side.exists():
        return None, side, None
    try:
        prov = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{side}: not valid JSON ({exc})") from None
    if not isinstance(prov, dict):
        raise InputError(f"{side}: a provenance file must be a JSON object")
    want = prov.pop("table_sha256", None)
    if want:
        import hashlib
        if hashlib.sha256(Path(table).read_bytes()).hexdigest() != want:
            msg = (f"{Path(table).name} changed since `extract` wrote it with {side.name} (edited, joined with "
                   "labels, or the two files come from different runs): the provenance may not describe this table")
            return prov, side, msg
    return prov, side, None


def cmd_train(args) -> int:
    import pandas as pd
    from .train import train_bundles

    if args.method == "cox-lasso":  # Shim 2021 Cox-LASSO risk score (survival.py)
        return _train_cox(args)
    if not args.label:
        raise InputError(f"train --method {args.method} needs --label (a 0/1 column)")
    if args.method == "choi-hybrid":  # Choi 2021 CNN + hybrid logistic (choi.py)
        from .choi import cli_train
        return cli_train(args)
    if args.method == "shim-recurrence":  # Shim 2021 recurrence pattern: SVM-RFE + SMOTE + MLP (recurrence.py)
        return _train_recurrence(args)
    table_path, table, prov, side, warnings = _training_table(args.table)
    for w in warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    if prov is None:  # trained anyway (e.g. a published table), but the bundle says so and every prediction warns
        warnings.append(f"{table_path}: no provenance file {side.name} beside it: the bundle(s) do NOT record the "
                        "extraction settings (preset, spacing, normalisation, segmentation, ...) and cannot refuse "
                        "features computed with other settings; every prediction with them will say so. Extract the "
                        "table with `glioma-radiogenomics extract` to record them")
        print(f"WARNING: {warnings[-1]}", file=sys.stderr)
        prov = {"provenance": "not recorded: trained from a table without a provenance file"}
    from .provenance import HARD_KEYS, MIXED
    mixed = [k for k in HARD_KEYS if str(prov.get(k, "")).startswith(MIXED)]
    if mixed:  # the bundle would refuse every feature set: say so now
        warnings.append(f"{side}: the table mixes cases extracted with different {', '.join(mixed)} "
                        f"({'; '.join(str(prov[k]) for k in mixed)}): the bundle will refuse every feature set; "
                        "re-extract the cohort with one setting")
        print(f"WARNING: {warnings[-1]}", file=sys.stderr)
    labels = [args.label] + ([args.label2] if args.label2 else [])
    out = Path(args.out)
    trained_on = args.trained_on or f"{table_path.name} ({len(table)} rows)"
    clinical = None if args.clinical is None else [c for c in args.clinical.split(",") if c]
    try:
        bundles, ev = train_bundles(table, labels, args.method, prov, trained_on=trained_on, synthetic=args.synthetic,
                                    intended_use=args.intended_use, clinical=clinical, seed=args.seed,
                                    n_bootstrap=args.bootstrap, repeats=args.repeats, outer_folds=args.folds,
                                    sequences=args.sequences, n_jobs=args.jobs,
                                    wang={"loss": args.loss, "alpha": args.alpha},
                                    liu={"ttest": args.ttest, "imaging_models": args.imaging_models},
                                    features=args.features,
                                    id_column=args.id_column, missing_threshold=args.missing_threshold,
                                    report_path=out.with_name(out.stem + ".evaluation"))
    except InputError as exc:  # the table does not fit the request (label column, sequences, no usable feature)
        raise InputError(f"{table_path}: {exc}") from None
    paths = []
    for b in bundles:
        p = out if len(bundles) == 1 else out.with_name(f"{out.stem}_{b.task}{out.suffix or '.json'}")
        paths.append(b.save(p))
    summary = {"bundles": [str(p) for p in paths], "report": str(out.with_name(out.stem + ".evaluation.html")),
               "auc_cv": {b.task: [b.metrics["auc_cv"], b.metrics["auc_cv_95ci"]] for b in bundles},
               "auc_cv_sd": {b.task: b.metrics.get("auc_cv_sd") for b in bundles},
               "baselines_auc_cv": {b.task: {k: v["auc"] for k, v in b.metrics.get("baselines_cv", {}).items()}
                                    for b in bundles},
               "repeats": args.repeats, "sequences": {b.task: b.feature_schema.get("sequences") for b in bundles},
               "features": {b.task: len(b.features) for b in bundles}, "warnings": warnings}
    print(json.dumps(summary, indent=1))
    return 0


def _training_table(path):
    """(path, table, provenance or None, provenance file path, [warning]) of a training table; InputError if absent."""
    table_path = Path(path)
    if not table_path.exists():
        raise InputError(f"feature table not found: {table_path}")
    table = read_table(table_path)
    prov, side, table_warning = read_table_provenance(table_path)
    return table_path, table, prov, side, ([table_warning] if table_warning else [])


def _json_bundle_table(path, note: str = ""):
    """(path, table, provenance, warnings) of the training table of a JSON bundle (cox-lasso, shim-recurrence): a
    table without a provenance file gets a warning and a placeholder provenance; the warnings are printed."""
    table_path, table, prov, side, warnings = _training_table(path)
    if prov is None:
        warnings.append(f"{table_path}: no provenance file {side.name} beside it: the bundle does NOT record the "
                        "extraction settings" + note)
        prov = {"provenance": "not recorded: trained from a table without a provenance file"}
    for w in warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    return table_path, table, prov, warnings


def _save_json_bundle(out: Path, bundle: dict, warnings: List[str], summary: dict) -> int:
    """Write a JSON bundle (its training warnings added) and print the summary of the training."""
    from .io import atomic_write_json
    bundle["training"]["warnings"] = warnings
    atomic_write_json(out, bundle)
    print(json.dumps({"bundle": str(out), "report": str(out.with_name(out.stem + ".evaluation.html")), **summary,
                      "features": len(bundle["features"]), "synthetic": bundle["synthetic"],
                      "warnings": warnings}, indent=1))
    return 0


def _json_bundle_kwargs(args, table_path: Path, table, out: Path, prov: Optional[dict] = None) -> dict:
    """The keyword arguments the JSON-bundle trainers (cox-lasso, shim-recurrence) share. The bundle is SYNTHETIC
    with --synthetic, or when the table's provenance or its ``synthetic`` column says so."""
    synthetic = bool(args.synthetic or (prov or {}).get("synthetic") is True or (
        "synthetic" in table.columns and table["synthetic"].astype(str).str.lower().eq("true").all()))
    return {"trained_on": args.trained_on or f"{table_path.name} ({len(table)} rows)", "synthetic": synthetic,
            "intended_use": args.intended_use, "seed": args.seed, "repeats": args.repeats, "folds": args.folds,
            "features": args.features, "id_column": args.id_column, "missing_threshold": args.missing_threshold,
            "report_path": out.with_name(out.stem + ".evaluation")}


def _train_recurrence(args) -> int:
    """train --method shim-recurrence --label COL: recurrence-pattern bundle (JSON, MLP weights as arrays) + report."""
    from .recurrence import train_recurrence_bundle
    table_path, table, prov, warnings = _json_bundle_table(args.table, " (it still requires rCBV features when "
                                                                       "predicting)")
    try:
        grid = [int(k) for k in str(args.n_features).split(",") if k.strip()]
    except ValueError:
        raise InputError(f"--n-features: integers separated by commas, not '{args.n_features}'") from None
    out = Path(args.out)
    try:
        bundle, ev = train_recurrence_bundle(
            table, args.label, prov, **_json_bundle_kwargs(args, table_path, table, out, prov),
            params={"n_features": grid[0] if len(grid) == 1 else tuple(grid), "inner_folds": args.inner_folds or 3})
    except InputError as exc:
        raise InputError(f"{table_path}: {exc}") from None
    m = bundle["metrics"]
    return _save_json_bundle(out, bundle, warnings, {
        "auc_cv": [m["auc_cv"], m["auc_cv_95ci"]], "auc_cv_sd": m["auc_cv_sd"],
        "classifiers_auc_cv": {k: v["auc"] for k, v in m["classifiers_cv"].items()}})


def _train_cox(args) -> int:
    """train --method cox-lasso --time COL --event COL: survival bundle (JSON) + evaluation report."""
    from .survival import train_cox_bundle
    if not args.time or not args.event:
        raise InputError("train --method cox-lasso needs --time COL (follow-up time) and --event COL (1 = event)")
    table_path, table, prov, warnings = _json_bundle_table(args.table)
    out = Path(args.out)
    clinical = [] if args.clinical is None else [c for c in args.clinical.split(",") if c]
    times = [float(t) for t in args.times.split(",")] if args.times else None
    try:
        bundle, ev = train_cox_bundle(table, args.time, args.event, prov, clinical=clinical,
                                      inner_folds=args.inner_folds or 10, times=times,
                                      **_json_bundle_kwargs(args, table_path, table, out, prov))
    except InputError as exc:
        raise InputError(f"{table_path}: {exc}") from None
    m = bundle["metrics"]
    return _save_json_bundle(out, bundle, warnings, {
        "cindex_cv": [m["cindex_cv"], m["cindex_cv_95ci_bootstrap"]], "cindex_cv_sd": m["cindex_cv_sd"],
        "td_auc_cv": dict(zip(map(str, m["td_auc_times"]), m["td_auc_cv"] or [])),
        "logrank_p_cv_median": m["logrank_p_cv_median"],
        "baselines_cindex_cv": {k: v["cindex"] for k, v in m["baselines_cv"].items()}})


def _import_web_app():
    """GliomaWeb (installed beside the core, or Web/ of a checkout run with the module folder on PYTHONPATH)."""
    import importlib.util
    if importlib.util.find_spec("GliomaWeb") is None:
        checkout = Path(__file__).resolve().parents[2] / "Web"
        if (checkout / "GliomaWeb" / "__init__.py").is_file():
            sys.path.append(str(checkout))
        else:
            raise InputError("the web app (package GliomaWeb) is not installed: pip install -c constraints.txt "
                             "'glioma-radiogenomics[web]'")
    from GliomaWeb.app import serve
    return serve


def cmd_web(args) -> int:
    try:
        serve = _import_web_app()
    except ImportError as exc:
        raise InputError(f"the web app needs trame-slicer ({exc}): pip install -c constraints.txt "
                         "'trame-slicer[standalone]==2.0.0' (or make test)") from None
    from .bundle import load_given_bundles
    load_given_bundles(args.bundle)  # a broken bundle fails now (exit 2), not at the first Predict
    serve(args.case, args.port, spacing=args.spacing, brain_mask=args.brain_mask, bundles=args.bundle,
          backend=args.backend, backend_options=_backend_options(args),
          upload_max_age_s=args.upload_max_age_hours * 3600.0)
    return 0


def _add_case_args(p):
    p.add_argument("--case-dir", help="folder with the four sequences (files named t1/t1c/t2/flair, BraTS, BIDS-like "
                   "or scanner names; or DICOM series, assigned from their tags); --t1 etc. override")
    for s in ("t1", "t1c", "t2", "flair"):
        p.add_argument(f"--{s}", help=f"{s.upper()} image: NIfTI / NRRD file or DICOM series folder")
    p.add_argument("--cbv", help="optional DSC-perfusion CBV (or rCBV) map: NIfTI / NRRD file or DICOM series folder; "
                   "registered to the reference (rigid, mutual information) and normalised to contralateral white "
                   "matter (rCBV) for the shim2021 preset (docs/features.md)")
    p.add_argument("--case-id", help="case identifier for the outputs and the report (default: the case folder's "
                   "name, or the FLAIR / first image's file name)")


def _add_clinical_args(p):
    p.add_argument("--age", type=float, metavar="YEARS", help="age at imaging in years (0-120); models that use age "
                   "replace a missing age by their training mean, and the task's status says 'imputed inputs'")
    p.add_argument("--sex", type=sex_argument, metavar="{female,male,F,M}", help="patient's sex: female, male, F "
                   "or M (any case); missing: the training proportion is used (status 'imputed inputs')")
    p.add_argument("--who-grade", type=int, choices=[2, 3, 4], help="WHO CNS grade from histology (2, 3 or 4), "
                   "used by the ATRX fusion model; missing: imputed (said in the task's status)")


def _add_pipeline_args(p, bundle_help: str = BUNDLE_HELP):
    """Preprocessing + segmentation options, then the feature / model options (``segment`` takes the first only)."""
    _add_segment_args(p)
    _add_feature_args(p, bundle_help)


def _add_backend_option_args(p):
    """The options of the segmentation models (one definition for segment / run / web)."""
    p.add_argument("--nnunet-model", help="nnU-Net v2 trained model folder (with --backend nnunet)")
    p.add_argument("--nnunet-folds", help="comma-separated folds (default: all in the folder)")
    p.add_argument("--unet-folds", help="lgg-unet2d fold models to use, comma-separated (default: all five)")
    p.add_argument("--brats17-views", default="auto", choices=["auto", "all", "axial"], help="brats17 (and auto "
                   "when it runs brats17): all = the published 3-view fusion, axial = the axial networks only (3x "
                   "faster), auto = all when the reference's native slices are <= 2.5 mm thick, else axial "
                   "(default auto)")
    p.add_argument("--substitute-t2", choices=["flair"], help="brats17 on a case without T2: feed the FLAIR as the "
                   "T2 channel (measured on 4 TCGA-LGG patients only, docs/segmentation-quality.md; default: fall "
                   "back to the weight-free backend, stated in predictions.json)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="for the networks (deepbet, HD-BET, lgg-unet2d, brats17, nnU-Net); falls back to CPU without "
                        "CUDA")


def _add_segment_args(p):
    from .brainmask import METHODS
    from .segment import BACKENDS, DEFAULT_BACKEND
    p.add_argument("--reference", default="flair", choices=["flair", "t1c", "t1", "t2"],
                   help="sequence that defines the output grid; others are rigidly registered to it (default flair)")
    p.add_argument("--spacing", type=float, default=1.0, help="working grid spacing in mm (default 1; the shipped models were trained at 1 mm and refuse features "
                        "of another spacing: their tasks then say 'not available' with the reason)")
    p.add_argument("--no-register", action="store_true", help="trust the headers: no rigid registration")
    p.add_argument("--brain-mask", default="auto", choices=METHODS, help="brain extraction: auto (deepbet when "
                   "installed, else threshold; an already skull-stripped image is kept), deepbet, hdbet, threshold, "
                   "or nonzero (the image is already skull-stripped) (default auto)")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=sorted(BACKENDS), help="tumor segmentation model "
                   f"(default {DEFAULT_BACKEND}; `segment --list-models` says what each needs and whether it runs "
                   "here)")
    _add_backend_option_args(p)
    p.add_argument("--n4", action="store_true", help="N4 bias-field correction of the images the features are "
                   "computed on (the segmentation sees the images without it unless --n4-segmentation)")
    p.add_argument("--n4-segmentation", action="store_true", help="with --n4: the segmentation also sees the "
                   "N4-corrected images")
    p.add_argument("--orientation", help="reorient the working grid (e.g. RAS, LPS)")
    p.add_argument("--atlas", choices=["mni152", "sri24"], help="also register affinely to an atlas")
    p.add_argument("--json-progress", action="store_true", help="progress as JSON lines on stdout")
    p.add_argument("--keep-previous", type=int, default=0, metavar="N",
                   help="keep the previous outputs as one dated copy <out>.previous-<timestamp>, at most N copies "
                        "(default 0: a new run replaces the previous outputs; other files in --out are kept); a line "
                        "at the end says where they went")


def _add_roi_subregions_arg(p, roi_option: str):
    p.add_argument("--roi-subregions", action="store_true", help=f"with {roi_option}: a given ROI that is a binary "
                   "whole-tumor mask gets the weight-free necrosis / enhancing labels inside it (needs T1c; the "
                   "outline is unchanged), as the default segmentation does inside its own outline; for presets "
                   "with core regions (liu2024 'tumor' / 'edema', shim2021 'CE' / 'NE'); docs/features.md")


def _check_roi_subregions(args, given: bool, roi_option: str) -> None:
    if getattr(args, "roi_subregions", False) and not given:
        raise InputError(f"--roi-subregions adds labels inside a given ROI: give one with {roi_option} (the automatic "
                         "segmentation has them already)")


def _add_feature_args(p, bundle_help: str = BUNDLE_HELP):
    p.add_argument("--preset", default="wang2025", help="feature preset name or PyRadiomics YAML file")
    p.add_argument("--bundle", action="append", type=bundle_argument, help=bundle_help)
    p.add_argument("--workers", type=int, default=None, help="feature extraction processes (default: CPUs, max 4)")
    p.add_argument("--location", action="store_true",
                   help="add atlas location percentages (Choi 2021), automatic VASARI features and the T2-FLAIR "
                        "mismatch score")
    p.add_argument("--resnet34-weights", help="ResNet34 ImageNet weights (resnet34-<sha>.pth) for Liu 2024 deep "
                   "features; checked by SHA-256, never downloaded")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="glioma-radiogenomics",
                                 description="Virtual biopsy for glioma: research probabilities, not diagnoses.")
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the whole pipeline on the built-in SYNTHETIC demo case")
    p.add_argument("--out", required=True, help="output folder: predictions.json, report.html / .pdf, features.csv, "
                   "segmentation.nii.gz, brain_mask.nii.gz (the demo case is written to <out>/demo_case)")
    p.add_argument("--downsample", type=int, default=1, help=argparse.SUPPRESS)
    _add_pipeline_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run the whole pipeline on one case (NIfTI, NRRD or DICOM)")
    _add_case_args(p)
    _add_clinical_args(p)
    p.add_argument("--vasari-score", help="radiologist's VASARI score, or 'auto' for the automatic score "
                   "(vasari_auto_score; a different scale, see docs/features.md)")
    p.add_argument("--segmentation", help="use this label map (BraTS labels, or a binary whole-tumor mask) instead "
                   "of automatic segmentation; 'case' = the mask file found in --case-dir")
    _add_roi_subregions_arg(p, "--segmentation")
    p.add_argument("--out", required=True, help="output folder: predictions.json, report.html / .pdf, features.csv, "
                   "segmentation.nii.gz (reference sequence's native grid), brain_mask.nii.gz; written as one set")
    _add_pipeline_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("models", help="list the shipped prediction models (defaults and optional ones)")
    p.add_argument("--json", action="store_true", help="one JSON document (models: file, role, task, trained_on, "
                   "synthetic, cross-validated AUC)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("train", help="train model bundle(s) from a feature table (Wang st/mt/cmt, Liu atrx-fusion)")
    p.add_argument("--table", required=True, help="feature table (CSV; <table>.provenance.json beside it is copied "
                   "into the bundle; without it the bundle cannot check settings: a warning)")
    p.add_argument("--label", help="0/1 label column (every method but cox-lasso)")
    p.add_argument("--label2", help="second label (mt, cmt; st trains both separately)")
    p.add_argument("--method", default="cmt", choices=["st", "mt", "cmt", "atrx-fusion", "choi-hybrid", "cox-lasso",
                                                       "shim-recurrence"],
                   help="Wang 2025 single-task / multi-task / collaborative multi-task LASSO, Liu 2024 ATRX fusion, "
                   "Choi 2021 hybrid IDH, Shim 2021 Cox-LASSO risk score, Shim 2021 recurrence pattern (MLP on rCBV "
                   "features, --label 1 = distant / 0 = local) (default cmt; docs/models.md)")
    p.add_argument("--time", help="cox-lasso: follow-up time column (days to death or last follow-up)")
    p.add_argument("--event", help="cox-lasso: event column (1 = death / event, 0 = censored)")
    p.add_argument("--inner-folds", type=int, default=None, help="cox-lasso: inner CV folds choosing the penalty "
                   "(default 10 as cv.glmnet in Shim 2021); shim-recurrence: inner CV folds choosing the number of "
                   "SVM-RFE features (default 3)")
    p.add_argument("--n-features", default="8,16,32", help="shim-recurrence: features kept by SVM-RFE, one number "
                   "(the paper: 32) or a comma-separated grid chosen by the inner CV (default 8,16,32)")
    p.add_argument("--times", help="cox-lasso: comma-separated times of the time-dependent AUC and the bundle's "
                   "baseline survival (default: quartiles of the event times)")
    p.add_argument("--choi-cnn", help="choi-hybrid: out-of-fold CNN probabilities (scripts/train_choi_cnn.py JSON)")
    p.add_argument("--choi-data", help="choi-hybrid: choi_slices.npz (scripts/prepare_choi_data.py); runs the CNN CV")
    p.add_argument("--choi-variant", default="t1c+mask", help="choi-hybrid: CNN input variant (default t1c+mask)")
    p.add_argument("--choi-epochs", type=int, default=30, help="choi-hybrid: maximum CNN epochs (inner CV picks)")
    p.add_argument("--choi-device", help="choi-hybrid: torch device of the CNN (default: cuda when present)")
    p.add_argument("--choi-max-cases", type=int, default=0, help=argparse.SUPPRESS)  # smoke runs
    p.add_argument("--choi-final", help="choi-hybrid: the final CNN of an earlier `train_choi_cnn.py --final` run "
                   "(its choi_cnn_final.json; e.g. trained on a GPU): the bundle is built from it (weights checked by "
                   "SHA-256, cases by id) instead of training it again; needs --choi-cnn")
    p.add_argument("--choi-float16", action="store_true", help="choi-hybrid: store the bundle's CNN weights in "
                   "float16 (half the size; loaded into float32)")
    p.add_argument("--resnet34-weights", help="choi-hybrid: local ResNet34 state dict (never downloaded)")
    p.add_argument("--resnet34-sha256", help="choi-hybrid: SHA-256 of --resnet34-weights")
    p.add_argument("--out", required=True, help="bundle JSON; with two labels <out>_<label>.json; the "
                   "evaluation report goes to <out>.evaluation.html / .json")
    p.add_argument("--clinical", help="comma-separated clinical columns offered to the model (default: age,sex_male "
                   "for st/mt/cmt as in Wang 2025, age,sex_male,vasari_score for atrx-fusion as Liu 2024's "
                   "pre-operative variables; WHO grade is post-operative and only used when named, e.g. "
                   "age,sex_male,vasari_score,who_grade; those absent from the table are skipped; '' offers none)")
    p.add_argument("--features", help="regular expression (re.search) selecting the imaging feature columns, for "
                   "names other than ours (T1c_WT_..., mask_...) and standard PyRadiomics ones (original_..., "
                   "log-sigma-..., wavelet-..., square..., ...; diagnostics_* are never features)")
    p.add_argument("--id-column", help="case identifier column (default: case_id when present), e.g. ID")
    p.add_argument("--loss", choices=["squared", "logistic"], default="squared", help="st/mt/cmt: squared-error LASSO "
                   "on the 0/1 labels as the authors' code (default), or our L1-logistic variant")
    p.add_argument("--alpha", type=float, default=0.001, help="st/mt/cmt: the fixed LASSO penalty of every selection "
                   "round (default 0.001 as the paper; the authors' script also runs 0.01 and 0.1)")
    p.add_argument("--ttest", choices=["student", "welch"], default="student", help="atrx-fusion: the t-test "
                   "filter before the LASSO, Student's (pooled variance, Liu 2024; default) or Welch's (unequal "
                   "variances); recorded in the bundle's method_details")
    p.add_argument("--imaging-models", choices=["best-of-9", "all"], default="best-of-9", help="atrx-fusion: Liu "
                   "2024's choice among 9 imaging models (radiomics / ResNet34 deep / hybrid x edema / tumor / "
                   "overall columns) by mean 5-fold CV AUC inside each training set (default; one model on all "
                   "imaging columns when the table has no such columns), or one model on all imaging columns")
    p.add_argument("--missing-threshold", type=float, default=0.2, metavar="FRACTION",
                   help="an imaging column is dropped when more than this fraction of the training cases miss it "
                   "(decided inside each training fold); below it, missing values get the training median "
                   "(default 0.2)")
    p.add_argument("--bootstrap", type=int, default=100, help="bootstrap rounds of the selection (default 100)")
    p.add_argument("--repeats", type=int, default=10, help="repetitions of the outer cross-validation, each with a "
                   "different shuffle (default 10)")
    p.add_argument("--folds", type=int, default=5, help="outer cross-validation folds (default 5)")
    p.add_argument("--sequences", help="comma-separated sequences (flair,t1,t1c,t2): train on their features plus "
                   "sequence-independent ones (mask_, loc_, vasari_F) and on the cases that have them all; recorded "
                   "in the bundle")
    p.add_argument("--jobs", type=int, default=None, help="processes for the outer folds and the final bootstrap "
                   "(default: CPUs, at most 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the folds and the bootstrap (default 0)")
    p.add_argument("--trained-on", help="description of the training data for the model card")
    p.add_argument("--synthetic", action="store_true", help="the table is synthetic (said on every output)")
    p.add_argument("--intended-use", default="Research use only; not a diagnosis. Validate on your own data.",
                   help="intended use stated on the model card (report, Slicer, web)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("web", help="serve the web app (trame-slicer: views, segment editing, predictions)")
    p.add_argument("--case", help="case folder to load at start")
    p.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")
    p.add_argument("--spacing", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--brain-mask", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--bundle", action="append", type=bundle_argument, help=BUNDLE_HELP)
    from .segment import BACKENDS
    p.add_argument("--backend", default="auto", choices=sorted(BACKENDS), help="the segmentation model selected at "
                   "start (the page's selector changes it; default auto)")
    p.add_argument("--upload-max-age-hours", type=float, default=168.0, metavar="HOURS",
                   help="uploaded case folders untouched for longer are removed at start and before each new upload, "
                        "never the loaded case's (default 168 = one week; 0 keeps them all)")
    _add_backend_option_args(p)  # options of the --backend model, used while it is the one selected on the page
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("segment", help="preprocess and segment one case (any backend)")
    _add_case_args(p)
    p.add_argument("--reference-seg", help="reference label map (BraTS labels) for Dice")
    p.add_argument("--out", help="output folder (required unless --list-models)")
    p.add_argument("--list-models", action="store_true", help="list the segmentation models (registry): inputs, "
                   "licence, size, where the weights come from, whether each runs here; downloads nothing")
    p.add_argument("--json", action="store_true", help="with --list-models: as JSON")
    _add_segment_args(p)  # no feature / model options: segment computes neither
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("extract", help="features of every case folder of a cohort into one table (resumable)")
    p.add_argument("--cases", required=True, help="folder of case folders")
    p.add_argument("--out", required=True, help="output table (CSV); <out>.cases/ caches finished cases")
    p.add_argument("--jobs", type=int, default=1, help="cases processed in parallel")
    p.add_argument("--scheduler", help="run on Dask distributed, one task per case: local:N (N worker processes "
                   "here) or tcp://HOST:PORT (a `dask scheduler` whose workers share the folders; docs/scaling.md); "
                   "needs the 'cohort' extra")
    p.add_argument("--case-roi", action="store_true", help="use each case folder's mask file (e.g. a manual "
                   "flair_abnormality / seg / label file) as the ROI instead of automatic segmentation")
    _add_roi_subregions_arg(p, "--case-roi")
    _add_pipeline_args(p, bundle_help="model bundle JSON or a shipped model's name (repeatable): extract applies no "
                       "model, but computes the features those bundles need (atlas location / VASARI)")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("make-demo-case", help="write the SYNTHETIC demo case (4 sequences + truth) to a folder")
    p.add_argument("--out", required=True, help="folder for t1 / t1c / t2 / flair / label .nii.gz and case.json")
    p.add_argument("--downsample", type=int, default=1, help="integer factor coarser than the template's 1 mm "
                   "(default 1)")
    p.set_defaults(func=cmd_make_demo_case)

    p = sub.add_parser("synth-cohort", help="generate a SYNTHETIC cohort with IDH / epilepsy / ATRX labels")
    p.add_argument("--n", type=int, required=True, help="number of SYNTHETIC cases")
    p.add_argument("--out", required=True, help="cohort folder: one case folder each and cohort.csv (labels, "
                   "clinical data)")
    p.add_argument("--seed", type=int, default=2025, help="random seed (default 2025)")
    p.add_argument("--downsample", type=int, default=1, help="integer factor coarser than 1 mm (default 1)")
    p.add_argument("--json-progress", action="store_true", help="progress as JSON lines on stdout")
    p.set_defaults(func=cmd_synth_cohort)

    p = sub.add_parser("predict", help="apply a model bundle to a feature table")
    p.add_argument("--bundle", required=True, type=bundle_argument, help="model bundle JSON (e.g. one written by "
                   "`train`), or the name of a shipped one (a file name under resources/models, or an optional model "
                   "such as choi-idh)")
    p.add_argument("--table", required=True, help="feature table (CSV) with <table>.provenance.json beside it")
    p.add_argument("--out", required=True, help="predictions CSV: case id, task, probability, label, total points, "
                   "status, model, synthetic flag, warnings; all warnings also go to <out>.warnings.json")
    p.add_argument("--id-column", help="case identifier column copied to the output (default: case_id)")
    p.add_argument("--trust-table", action="store_true", help="predict from a table without a provenance file "
                   "(the extraction settings are then not checked; said in the output)")
    p.add_argument("--cases", help="Choi 2021 hybrid bundle: folder of case folders (one per case id of the table) "
                   "with the images and the tumour mask its CNN reads (docs/choi.md)")
    p.set_defaults(func=cmd_predict)
    return ap


ERROR_LOG = "error.log"
# --out names a file for these commands (the log goes beside it); a folder for the others
OUT_IS_FILE = ("train", "predict", "extract")


def write_error_log(args, text: str) -> Path:
    """The traceback of an internal error: ``<out>/error.log`` (beside the output file for train / predict /
    extract) when that folder exists or can be made and is writable, else a file in the temporary folder."""
    import tempfile
    out = getattr(args, "out", None)
    if out:
        folder = Path(out).parent if getattr(args, "command", None) in OUT_IS_FILE else Path(out)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / ERROR_LOG
            path.write_text(text)
            return path
        except OSError:
            pass
    fd, name = tempfile.mkstemp(prefix="glioma-radiogenomics-error-", suffix=".log")
    with open(fd, "w") as fh:
        fh.write(text)
    return Path(name)


def main(argv: Optional[List[str]] = None) -> int:
    """Exit 0 on success; 2 for a problem with the user's input (``error: <message>``: InputError and its
    subclasses BundleError / FeatureMismatchError, a file not found; argparse also exits 2); 1 for an internal
    error (a bug): a one-line summary on stderr, the traceback in ``<out>/error.log`` (or a temporary file)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (InputError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:  # a file or folder of the user's that we may not read / write
        print(f"error: permission denied: {exc.filename or exc} ({exc.strerror or 'not allowed'}); check the "
              "file's permissions", file=sys.stderr)
        return 2
    except Exception as exc:  # not the user's input: our bug
        import time
        import traceback
        text = (f"glioma-radiogenomics {__version__}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                f"command line: {' '.join(sys.argv[:1] + list(argv if argv is not None else sys.argv[1:]))}\n\n"
                + traceback.format_exc())
        log = write_error_log(args, text)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"internal error (a bug, not a problem with your input): {type(exc).__name__}: {first}; the traceback "
              f"is in {log} (please report it with that file)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
