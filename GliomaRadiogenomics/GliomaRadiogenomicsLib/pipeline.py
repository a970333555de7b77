"""The whole pipeline for one case: case -> preprocess -> segment -> regions -> features -> models -> report.

``analyze_case`` runs the image stages and returns plain data (no files). ``run_case`` adds the model bundles and
writes the outputs (predictions.json, features.csv, features.provenance.json, segmentation.nii.gz,
brain_mask.nii.gz, report.html, and what is kept with the segmentation: segmentation.provenance.json,
segmentation.work.nii.gz, segmentation.brain_mask.work.nii.gz, segmentation.preprocessing.json; see kept.py) as one
output set (``io.output_set``): they are written into a staging folder and
put in place together at the end, so the output folder holds the previous complete set or the new one, never a mix.
The previous set is removed, or kept as one dated copy ``<out>.previous-<timestamp>`` with ``keep_previous``; other
files in the output folder are left alone.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pandas as pd
import SimpleITK as sitk

from .case import SEQUENCE_NAMES, Case
from .features import FeatureResult, extract_features, load_preset
from .io import atomic_write_json, atomic_write_text, output_set, write_image
from .kept import Kept, label_on_working_grid
from .preprocess import PreprocessedCase, PreprocessOptions, preprocess
from .progress import Progress, null_progress
from .regions import as_brats_label, region_volumes_ml
from .segment import DEFAULT_BACKEND, get_backend


@dataclass
class PipelineOptions:
    preprocess: PreprocessOptions = field(default_factory=PreprocessOptions)
    backend: str = DEFAULT_BACKEND
    backend_options: dict = field(default_factory=dict)   # e.g. {"model_folder": ..., "device": "cpu"} for nnunet
    preset: str = "wang2025"
    feature_workers: Optional[int] = None
    deep_weights: Optional[str] = None     # ResNet34 weights file: adds Liu 2024 deep features
    location: bool = False                 # atlas lobe percentages (Choi 2021) + T2-FLAIR mismatch score
    bundles: Optional[List[str]] = None    # None = shipped default bundles
    case_roi: bool = False                 # use the case folder's mask file (case.mask_path) as the ROI
    roi_subregions: bool = False           # a given binary whole-tumor ROI gets weight-free necrosis / enhancing inside


@dataclass
class CaseAnalysis:
    case: Case
    pre: PreprocessedCase
    label: sitk.Image                      # working grid
    label_native: sitk.Image               # reference sequence's native grid
    features: FeatureResult
    volumes_ml: Dict[str, float]
    timings: Dict[str, float]
    warnings: List[str]
    segmented: Optional[Segmented] = None
    # other presets' features for bundles trained on them (preset name -> FeatureResult with the run's provenance
    # and that preset's keys): pipeline.add_bundle_presets, used per bundle by predict_case
    preset_features: Dict[str, FeatureResult] = field(default_factory=dict)
    # the atlas registration behind the location / VASARI features (atlas.AtlasRegistration), or None: reused when
    # another preset's bundles need those features on another label (add_bundle_presets)
    atlas_registration: Optional[object] = None

    def features_for(self, preset: Optional[str]) -> FeatureResult:
        """The features made with ``preset`` (the run's own, or another preset's added for a bundle); the run's own
        when that preset was not extracted (the bundle then refuses them, naming the preset)."""
        return self.preset_features.get(preset, self.features) if preset else self.features

    @property
    def kept(self) -> Optional[Kept]:
        """What this run keeps with its segmentation (kept.py)."""
        return self.segmented.kept if self.segmented is not None else None

    @property
    def segmentation_provenance(self) -> dict:
        return self.segmented.provenance if self.segmented is not None else {}

    def feature_row(self, preset: Optional[str] = None) -> Dict[str, object]:
        """Clinical columns, region volumes and the features of ``preset`` (default: the run's preset; another
        preset's row keeps the run's atlas / VASARI / mismatch columns, which depend on no preset)."""
        row = {"case_id": self.case.case_id}
        row.update(clinical_columns(self.case.clinical))
        row.update({f"volume_{k}_ml": v for k, v in self.volumes_ml.items()})
        feats = self.features_for(preset)
        if feats is not self.features:
            row.update({k: v for k, v in self.features.values.items() if k.startswith(ATLAS_FEATURE_PREFIXES)})
        row.update(feats.values)
        return row


def clinical_columns(clinical: dict) -> Dict[str, object]:
    return {"age": clinical.get("age"), "sex": clinical.get("sex"), "who_grade": clinical.get("who_grade"),
            "vasari_score": clinical.get("vasari_score")}


@dataclass
class Segmented:
    """The result of the one "preprocess then segment" path (``segment_case``)."""
    pre: PreprocessedCase
    label: sitk.Image                      # BraTS labels on the working grid
    source: str                            # "automatic: <backend>" or given_segmentation_text(...)
    provenance: dict                       # segmentation_source / backend / version (features' provenance)
    timings: Dict[str, float]
    inputs: Optional[tuple] = None         # (case, PreprocessOptions): what ``kept`` is made from

    @property
    def kept(self) -> Optional[Kept]:
        """The working-grid labels and the preprocessing to keep with the outputs (kept.py); made on first use."""
        if self.inputs is None:
            return None
        if getattr(self, "_kept", None) is None:
            case, popt = self.inputs
            self._kept = Kept.from_run(case, popt, self.pre, self.label)
        return self._kept

    @property
    def native(self) -> sitk.Image:
        """The label map on the reference sequence's native grid."""
        return self.pre.to_native(self.label)

    def as_tuple(self):
        return self.pre, self.label, self.native


def segment_case(case: Case, options: Optional[PipelineOptions] = None, progress: Progress = null_progress,
                 label: Optional[sitk.Image] = None, label_source: str = "",
                 label_provenance: Optional[dict] = None, backend=None, kept: Optional[Kept] = None,
                 after_preprocess: Optional[Callable] = None) -> Segmented:
    """The one "preprocess then segment" path, used by ``analyze_case`` (hence ``run`` / ``extract`` / batch), the
    ``segment`` command and the Slicer / web segment logic. ``label`` (native reference grid or working grid; BraTS
    labels or a binary whole-tumor mask) replaces automatic segmentation (an edited or given ROI; checked before the
    image work); otherwise ``options.backend`` (or a ready ``backend`` object) runs on the preprocessed case (without
    N4 unless ``n4_segmentation``).

    ``kept`` (kept.Kept: what a previous run kept with ``label``): its transforms and brain mask are reused when the
    inputs and options are the same, and its working-grid labels replace the native ``label`` when that is the kept
    one (unchanged: exactly the same labels; edited: only the edited voxels change); see kept.label_on_working_grid.
    The provenance's ``segmentation_grid`` says which happened. ``after_preprocess(pre)`` (optional) is called as
    soon as the case is preprocessed, before the segmentation (analyze_case starts the atlas registration there)."""
    from .checks import check_segmentation
    from .provenance import backend_provenance
    opt = options or PipelineOptions()
    label_notes, label_warnings = [], []
    if label is not None:
        ref = next(s for s in (opt.preprocess.reference, "flair", "t2", "t1c", "t1") if s in case.images)
        where = "user-supplied segmentation" + (f" ({label_source})" if label_source else "")
        label, label_notes, label_warnings = check_segmentation(label, case.images[ref], where,
                                                                case.paths.get(ref) or ref)
    elif backend is None:  # an unknown backend / missing weights fail before the image work
        backend = get_backend(opt.backend, **opt.backend_options)
    timings = {}
    t = time.perf_counter()
    reuse, why_not = (kept.reusable_preprocessing(case, opt.preprocess) if kept is not None
                      else (None, "no kept preprocessing"))
    # a backend whose network needs only the case as loaded starts now and runs while the case is preprocessed
    early = label is None and bool(getattr(backend, "start_early", lambda *a: False)(case, opt.preprocess))
    try:
        pre = preprocess(case, opt.preprocess, progress.sub(0.0, 0.8), reuse=reuse)
        if after_preprocess is not None:
            after_preprocess(pre)
    except BaseException:
        if early:
            backend.cancel_early()
        raise
    if kept is not None and reuse is None:
        pre.steps.append(f"kept preprocessing not reused: {why_not}")
    pre.steps.extend(label_notes)
    pre.warnings.extend(label_warnings)
    timings["preprocess_s"] = time.perf_counter() - t
    t = time.perf_counter()
    if label is None:
        progress.update(0.8, f"tumor segmentation ({backend.name})")
        lab = backend.segment(pre.for_segmentation(opt.preprocess.n4_segmentation), progress.sub(0.8, 1.0))
        source = f"automatic: {backend.name}"
        prov = {"segmentation_source": "automatic", **backend_provenance(backend)}
        if opt.preprocess.n4:
            prov["n4_segmentation"] = bool(opt.preprocess.n4_segmentation)
    else:
        label, note = as_brats_label(label, "user-supplied segmentation")
        lab, grid_statement = label_on_working_grid(label, pre, kept, case)
        prov = {"segmentation_source": "given", **(label_provenance or {}), "segmentation_grid": grid_statement}
        source = given_segmentation_text(prov, label_source)
        if note:
            pre.steps.append(note)
        pre.steps.append(f"segmentation on the working grid: {grid_statement}")
        if opt.roi_subregions:
            lab = add_roi_subregions(lab, pre.for_segmentation(opt.preprocess.n4_segmentation), prov)
        from .provenance import GIVEN_SUBREGIONS
        if prov["segmentation_source"] == "given" and prov.get("roi_subregions") in (None, GIVEN_SUBREGIONS):
            prov.pop("roi_subregions", None)  # decided from these labels, never carried (a sidecar may be stale)
            if np.isin(sitk.GetArrayViewFromImage(lab), (1, 3)).any():  # a user's multi-label ROI (BraTS labels)
                prov["roi_subregions"] = GIVEN_SUBREGIONS  # (an automatic / edited one has its backend's: not recorded)
    if pre.reused:
        prov["preprocessing"] = "reused: rigid transforms and brain mask kept with the segmentation"
    pre.steps.append(f"segmentation: {source}")
    timings["segmentation_s"] = time.perf_counter() - t
    return Segmented(pre, lab, source, prov, timings, (case, opt.preprocess))


ROI_SUBREGIONS = "weight-free necrosis / enhancing labels inside the given whole tumor"


def add_roi_subregions(lab: sitk.Image, pre, prov: dict) -> sitk.Image:
    """``--roi-subregions``: a given ROI that is a whole-tumor mask only (label 2: a binary manual mask) gets the
    weight-free necrosis (1) and enhancing (3) labels inside it (``segment.add_weight_free_core``: the rule of the
    default segmentation inside its network's outline); the outline itself is never changed. Needs a T1c; a ROI that
    already has core labels is kept as given. What happened is said in ``pre.steps`` / ``pre.warnings`` and, when
    labels were added, recorded as ``prov["roi_subregions"]`` (feature provenance, a soft key: bundles trained on
    such features warn on features made without)."""
    from .segment import add_weight_free_core
    arr = sitk.GetArrayFromImage(lab)
    if np.isin(arr, (1, 3)).any():
        pre.steps.append("--roi-subregions: the given ROI already has necrosis / enhancing labels; kept as given")
        return lab
    if "t1c" not in pre.images:
        pre.warnings.append("--roi-subregions: no T1c, so no necrosis / enhancing labels were added inside the given "
                            "whole tumor (regions needing them are empty)")
        return lab
    add_weight_free_core(arr, pre)
    prov["roi_subregions"] = ROI_SUBREGIONS
    pre.steps.append(f"--roi-subregions: {ROI_SUBREGIONS} ({int((arr == 3).sum())} enhancing, "
                     f"{int((arr == 1).sum())} necrosis voxels; the outline is unchanged)")
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(lab)
    return out


def given_segmentation_text(provenance: dict, label_source: str = "") -> str:
    """How a given ROI is named in steps, the report and the panels: an automatic segmentation handed back unedited
    (its digest still matches) or edited stays "automatic" with its backend; anything else is user-supplied."""
    origin = provenance.get("segmentation_source", "given")
    backend = provenance.get("segmentation_backend") or "backend unknown"
    where = f" ({label_source})" if label_source else ""
    if origin == "automatic":
        return f"automatic segmentation ({backend}), reviewed without edits{where}"
    if origin == "edited":
        return f"automatic segmentation ({backend}), edited by the user{where}"
    return f"user-supplied segmentation{where}"


def case_roi(case: Case):
    """(label image, source) of the case folder's mask file, for ``--case-roi`` / ``--segmentation case``."""
    from .io import InputError, read_image
    if not case.mask_path:
        from .inputs import no_tumor_mask_text
        raise InputError(f"case {case.case_id}: no mask / segmentation file found in the case folder (names with "
                         "mask, seg, label, abnormality or ROI, or a volume holding a few integer values)"
                         + no_tumor_mask_text(case.masks_set_aside))
    return read_image(case.mask_path, "case-folder mask", label=True), f"case-folder mask {Path(case.mask_path).name}"


def analyze_case(case: Case, options: Optional[PipelineOptions] = None, progress: Progress = null_progress,
                 label: Optional[sitk.Image] = None, label_source: str = "",
                 label_provenance: Optional[dict] = None, kept: Optional[Kept] = None) -> CaseAnalysis:
    """Image stages. ``label`` (native reference grid or working grid; BraTS labels or a binary whole-tumor mask)
    skips automatic segmentation (edited ROI); ``label_source`` says where it came from (provenance);
    ``label_provenance`` (optional) its structured origin, e.g. ``{"segmentation_source": "edited",
    "segmentation_backend": ...}`` (default ``{"segmentation_source": "given"}``); ``kept`` what a previous run kept
    with ``label`` (segment_case). ``CaseAnalysis.kept`` is what this run keeps."""
    from .checks import check_preset_sequences
    from .provenance import feature_provenance, software_versions, torch_used
    opt = options or PipelineOptions()
    # checked before the image work: the preset (and the sequences it needs); segment_case checks the user's ROI
    preset = load_preset(opt.preset)
    check_preset_sequences(preset, case)
    auto_vasari = case.clinical.get("vasari_score") == "auto"
    atlas_name = opt.preprocess.atlas or "mni152"
    atlas_job, atlas_done = {}, {}   # the registration job started early; the registration the features used

    def start_atlas(pre):  # the atlas registration needs only the preprocessed case: it runs beside what follows
        if (opt.location or auto_vasari) and pre.atlas_registration is None:
            from .atlas import start_register_case
            atlas_job["registration"] = start_register_case(pre, atlas_name)

    try:
        seg = segment_case(case, opt, progress.sub(0.0, 0.55), label, label_source, label_provenance, kept=kept,
                           after_preprocess=start_atlas)
        pre, lab, seg_source, seg_prov = seg.pre, seg.label, seg.source, seg.provenance
        timings = dict(seg.timings)
        native = pre.to_native(lab)
        volumes = region_volumes_ml(lab)
        warnings = list(case.messages) + list(pre.warnings)
        if volumes["WT"] == 0:
            warnings.append("no tumor found by the segmentation: features and predictions are not meaningful; "
                            "draw or correct the tumor ROI and run again")
        t = time.perf_counter()
        rcbv_record = None
        if "cbv" in pre.images and "rcbv" not in preset.sequences:
            pre.steps.append(f"CBV map registered but not used: preset {preset.name} does not use rCBV (shim2021 does)")
        elif "cbv" in pre.images and volumes["WT"] > 0:  # rCBV (perfusion.py): needs the tumour's side
            from .perfusion import rcbv_image
            pre.images["rcbv"], rcbv_record = rcbv_image(pre, lab)
            pre.steps.append(f"rCBV: CBV / {rcbv_record['mean_cbv']:g} (mean CBV of {rcbv_record['volume_ml']:g} mL "
                             f"contralateral normal-appearing white matter, {rcbv_record['wm_sequence']} WM, tumour on "
                             f"the {rcbv_record['tumour_side']})")
        if volumes["WT"] > 0:
            feats = extract_features(pre, lab, preset, opt.feature_workers, progress.sub(0.55, 0.95))
        else:
            feats = FeatureResult({}, feature_provenance(preset, pre), ["no tumor: no radiomic features"])
        if volumes["WT"] > 0 and (opt.deep_weights or preset.options.get("deep_features")):
            progress.update(0.95, "deep features (ResNet34)")
            add_deep_features(feats, pre, lab, preset, opt.deep_weights)
        if volumes["WT"] > 0 and (opt.location or auto_vasari):
            progress.update(0.96, "location, VASARI (atlas) and T2-FLAIR mismatch features")
            feats.values.update(_atlas_features(pre, lab, atlas_name, feats.warnings, atlas_job.get("registration"),
                                                keep=atlas_done))
        if auto_vasari:
            score = feats.values.get("vasari_auto_score")
            case.clinical["vasari_score"] = score
            feats.provenance["vasari_score"] = "automatic (vasari.py)" if score is not None else "missing"
            if score is None:
                feats.warnings.append("automatic VASARI score missing (no tumor or no atlas)")
        if rcbv_record is not None:
            from .perfusion import REFERENCE_REGION
            feats.provenance["rcbv_normalization"] = REFERENCE_REGION
            feats.provenance["rcbv_reference"] = rcbv_record
        feats.provenance["segmentation"] = seg_source
        feats.provenance.update(seg_prov)
        feats.provenance["n4"] = bool(opt.preprocess.n4)
        if case.bias_corrected_inputs:  # corrected before they reached us (UCSF-PDGM's '_bias' files)
            feats.provenance["n4_input"] = [SEQUENCE_NAMES[s] for s in case.bias_corrected_inputs]
        if opt.preprocess.n4:
            feats.provenance["n4_segmentation"] = bool(opt.preprocess.n4_segmentation)
        feats.provenance["registration"] = "rigid (Mattes MI)" if opt.preprocess.register else "none (headers trusted)"
        if volumes["WT"] > 0 and (opt.location or auto_vasari):
            feats.provenance["atlas"] = opt.preprocess.atlas or "mni152"
        if torch_used(opt, seg_prov.get("segmentation_backend", ""), pre.brain_mask_method):
            feats.provenance.update(software_versions(torch_used=True))
        timings["features_s"] = time.perf_counter() - t
        warnings.extend(feats.warnings)
        return CaseAnalysis(case, pre, lab, native, feats, volumes, timings, warnings, seg,
                            atlas_registration=atlas_done.get("registration"))
    finally:  # a registration started but not used (no tumour, an error after preprocessing) is waited for: it
        # holds SimpleITK's one-thread setting (one_itk_thread) and must not run on into the next case
        wait_quietly(atlas_job.get("registration"))


def add_deep_features(feats: FeatureResult, pre, label: sitk.Image, preset, weights) -> None:
    """Liu 2024's ResNet34 deep features of the preset's sequences and regions into ``feats`` (values, warnings when
    the weights are absent, ``deep_features`` in its provenance)."""
    from .deep import try_deep_features
    deep, deep_warnings = try_deep_features(pre, label, [q for q in preset.sequences if q in pre.images],
                                            preset.regions, weights)
    feats.values.update(deep)
    feats.warnings.extend(deep_warnings)
    feats.provenance["deep_features"] = "resnet34" if deep else "missing"


def wait_quietly(job) -> None:
    """Wait for a background job (background.InThread; None: nothing), ignoring its result or error."""
    if job is not None:
        try:
            job.wait()
        except BaseException:  # noqa: BLE001 - only its end matters here; its error was or will be reported
            pass


def _atlas_features(pre, lab, atlas: str, warnings: List[str], registration=None,
                    keep: Optional[dict] = None) -> Dict[str, float]:
    """Location (Choi), VASARI and T2-FLAIR mismatch features; one atlas registration for all (``registration``: a
    job started earlier, atlas.start_register_case, or a finished atlas.AtlasRegistration); ``keep`` receives the
    registration used (key ``registration``)."""
    from .atlas import register_case
    from .location import location_features, mismatch_features
    from .vasari import vasari_features
    out: Dict[str, float] = {}
    try:
        reg = pre.atlas_registration or (registration.wait() if hasattr(registration, "wait") else registration) \
            or register_case(pre, atlas)
        if keep is not None:
            keep["registration"] = reg
        masks = reg.region_masks(pre.grid)  # resampled once for both
        out.update(location_features(pre, lab, registration=reg, masks=masks))
        out.update(vasari_features(pre, lab, registration=reg, masks=masks))
    except RuntimeError as exc:  # atlas files missing
        warnings.append(f"location and VASARI features missing: {exc}")
    out.update(mismatch_features(pre, lab))
    return out


ATLAS_FEATURE_PREFIXES = ("loc_", "vasari_", "t2flair_")


def bundle_features(bundle) -> List[str]:
    """The feature names a model bundle reads: a logistic bundle's (``bundle.ModelBundle.features``) or a JSON
    bundle's (Shim 2021 recurrence / survival, Choi 2021 hybrid: a ``(kind, dict)`` of ``shim.load_json_bundle``, its
    ``features`` list)."""
    if isinstance(bundle, tuple):
        bundle = bundle[1]
    return list(bundle["features"] if isinstance(bundle, dict) else bundle.features)


def add_bundle_presets(analysis: CaseAnalysis, bundles, options: PipelineOptions,
                       progress: Progress = null_progress) -> None:
    """Features of the presets the bundles were trained on, other than the run's (e.g. an ATRX bundle trained on
    liu2024 beside wang2025 IDH / epilepsy bundles): extracted once per preset from the run's preprocessed case and
    segmentation (one segmentation, one registration), with the run's provenance plus that preset's keys
    (preset, settings hash, normalisation, ...), into ``analysis.preset_features``; each bundle then reads the
    features of its own preset (predict_case). A preset that cannot be loaded here (a YAML file the bundle names but
    this machine lacks) is skipped: that bundle then refuses the run's features, naming the preset."""
    from .bundle import bundle_preset, select_bundles
    from .checks import preset_inputs_missing
    from .io import InputError
    from .provenance import compare, feature_provenance
    own = analysis.features.provenance.get("preset", options.preset)
    bundles = select_bundles([b for b in bundles if bundle_preset(b)], list(analysis.pre.images))[0]
    wanted = [p for p in dict.fromkeys(bundle_preset(b) for b in bundles) if p not in (own, options.preset)]
    if not wanted or analysis.volumes_ml.get("WT", 0) <= 0:
        return
    t = time.perf_counter()
    # the run's keys (segmentation, registration, N4, atlas, brain mask, versions), not those of its preset's images
    run_keys = {k: v for k, v in analysis.features.provenance.items() if k not in RUN_PRESET_KEYS}
    for i, name in enumerate(wanted):
        try:
            preset = load_preset(name)
        except (InputError, OSError, ValueError) as exc:
            analysis.pre.steps.append(f"features of preset {name} (a bundle's) not computed: {exc}")
            continue
        missing = preset_inputs_missing(preset, analysis.pre.images, derive=False)
        if missing:  # e.g. a liu2024 bundle on a case without T1c and FLAIR: that bundle says why it is not applied
            analysis.pre.steps.append(f"features of preset {name} (a bundle's) not computed: {missing}")
            continue
        of_preset = [b for b in bundles if bundle_preset(b) == name]   # the bundles trained on this preset
        wants_sub = _bundles_want_subregions(of_preset, run_keys) and "t1c" in analysis.pre.images
        # what these features' provenance would be: when every bundle of this preset would refuse it anyway (another
        # spacing, settings hash, ...), nothing is extracted; they then refuse the run's features
        would_be = {**run_keys, **({"roi_subregions": ROI_SUBREGIONS} if wants_sub else {}),
                    **feature_provenance(preset, analysis.pre)}
        refusals = [compare(b.name, b.feature_schema, would_be)[0] for b in of_preset]
        if all(refusals):
            analysis.pre.steps.append(f"features of preset {name} (a bundle's) not computed: its bundle(s) would "
                                      f"refuse them anyway ({refusals[0][0]})")
            continue
        check = [s for s in preset.sequences if s not in analysis.pre.images]
        label, sub = analysis.label, {}
        if wants_sub:  # the given binary ROI with the weight-free core labels, as these bundles were trained
            label = add_roi_subregions(label, analysis.pre.for_segmentation(options.preprocess.n4_segmentation), sub)
            if sub:
                analysis.pre.steps.append(
                    f"features of preset {name}: the given whole-tumor ROI got the weight-free necrosis / enhancing "
                    "labels the bundle(s) trained on this preset were trained with (--roi-subregions), for these "
                    "features only; the run's own features and segmentation are unchanged")
        progress.update(i / len(wanted), f"features of preset {preset.name} (for the bundles trained on it)")
        # only the columns these bundles read (e.g. 5 of liu2024's 6 738): seconds instead of a full extraction
        columns = [f for b in of_preset for f in bundle_features(b)]
        feats = extract_features(analysis.pre, label, preset, options.feature_workers,
                                 progress.sub(i / len(wanted), (i + 1) / len(wanted)), columns=columns)
        # deep features only for bundles that read them (a liu2024 bundle without them would only warn each run)
        if options.deep_weights or (preset.options.get("deep_features") and any("_resnet34_fc_" in f for f in columns)):
            add_deep_features(feats, analysis.pre, label, preset, options.deep_weights)
        if sub and any(f.startswith(ATLAS_FEATURE_PREFIXES) for f in columns):  # VASARI reads the core labels too
            atlas = run_keys.get("atlas") or options.preprocess.atlas or "mni152"
            redone = _atlas_features(analysis.pre, label, atlas, feats.warnings, analysis.atlas_registration)
            feats.values.update({k: v for k, v in redone.items() if k in columns})
        feats.provenance = {**run_keys, **sub, **feats.provenance}
        analysis.preset_features[name] = feats
        analysis.pre.steps.append(f"features of preset {preset.name} too ({feats.provenance.get('columns_subset')}), "
                                  "for the bundles trained on it" + (f"; {', '.join(check)} missing" if check else ""))
        analysis.warnings.extend(f"preset {preset.name} (for its bundles): {w}" for w in feats.warnings)
    analysis.timings["features_other_presets_s"] = time.perf_counter() - t


def _bundles_want_subregions(bundles, run_keys: dict) -> bool:
    """Bundles trained with ``--roi-subregions`` (Liu's ATRX model: weight-free necrosis / enhancing labels inside
    manual whole-tumor masks) on a run whose ROI is given and has none: their preset's features are made inside the
    ROI with those labels added (add_bundle_presets), as in their training."""
    return (any(b.feature_schema.get("roi_subregions") == ROI_SUBREGIONS for b in bundles)
            and run_keys.get("segmentation_source") == "given" and "roi_subregions" not in run_keys)


# provenance keys that describe the run's own preset's images (rCBV, deep features), not the run: not carried over
# to another preset's features
RUN_PRESET_KEYS = ("deep_features", "rcbv_normalization", "rcbv_reference", "sequences")


def options_for_bundles(options: PipelineOptions, bundles) -> PipelineOptions:
    """The options the bundles need: atlas location / VASARI / mismatch features are computed when a bundle uses
    them (they are off by default: one more registration). ``bundles``: logistic and JSON bundles alike (one rule,
    ``bundle_features``), so `run --bundle choi.json` gets its ``loc_WT_*`` features without --location."""
    import dataclasses
    if not options.location and any(f.startswith(ATLAS_FEATURE_PREFIXES) for b in bundles
                                    for f in bundle_features(b)):
        return dataclasses.replace(options, location=True)
    return options


def evaluate_case(case: Case, options: Optional[PipelineOptions] = None, progress: Progress = null_progress,
                  label: Optional[sitk.Image] = None, label_source: str = "", label_provenance: Optional[dict] = None,
                  bundles=None, kept: Optional[Kept] = None):
    """The one run path without files: model bundles (``bundles`` objects, else ``options.bundles`` paths, else the
    shipped defaults; loaded and validated first, so a broken bundle fails before minutes of image work), the
    options they need, ``analyze_case`` and ``predict_case``. Returns (CaseAnalysis, predictions document).
    ``run_case`` (CLI, batch) writes its result; the Slicer / web predict logic puts it into the scene."""
    from .bundle import load_default_bundles, load_given_bundles
    from .predict import predict_case
    opt = options or PipelineOptions()
    t0 = time.perf_counter()
    # the rule of bundle.effective_bundle_paths: a logistic bundle given replaces the defaults, Shim 2021 / Choi 2021
    # JSON bundles add their tasks to them
    given, shim_bundles = load_given_bundles(opt.bundles)
    if bundles is None:
        bundles = given or load_default_bundles()
    opt = options_for_bundles(opt, list(bundles) + shim_bundles)  # the JSON bundles' features too
    analysis = analyze_case(case, opt, progress.sub(0.0, 0.9), label, label_source, label_provenance, kept)
    add_bundle_presets(analysis, bundles, opt, progress.sub(0.9, 0.95))
    progress.update(0.95, "models: " + ", ".join([b.task for b in bundles]
                                                  + [b.get("task", k) for k, b in shim_bundles]))
    doc = predict_case(analysis, bundles)
    if shim_bundles:
        from .render import BUNDLE_TASKS_KEY
        from .shim import case_predictions
        doc[BUNDLE_TASKS_KEY], shim_warnings = case_predictions(analysis, shim_bundles)
        doc["warnings"] = list(dict.fromkeys(doc.get("warnings", []) + shim_warnings))
    doc["timings_s"] = {k: round(v, 2) for k, v in analysis.timings.items()}
    doc["timings_s"]["total_s"] = round(time.perf_counter() - t0, 2)
    return analysis, doc


def run_case(case: Case, out_dir, options: Optional[PipelineOptions] = None, progress: Progress = null_progress,
             label: Optional[sitk.Image] = None, label_source: str = "", keep_previous: int = 0,
             label_provenance: Optional[dict] = None, kept: Optional[Kept] = None) -> dict:
    """Run everything and write the outputs as one set (see the module docstring; ``keep_previous``: keep at most
    this many dated copies of previous sets; ``kept``: what a previous run kept with ``label``, kept.py). The output folder is checked first (InputError: an existing file,
    not writable, disk full). Returns the predictions document (also in predictions.json)."""
    with output_set(out_dir, keep_previous=keep_previous) as staging:
        return _run_case_into(staging, case, options, progress, label, label_source, label_provenance, kept)


def segmentation_record(segmentation_provenance: dict, native: sitk.Image) -> dict:
    """What travels with a written segmentation (``<name>.provenance.json``, an MRML attribute): an automatic one
    with the digest of its labels (fed back unchanged it stays automatic, changed it becomes edited); an edited or
    given one as it is."""
    from .provenance import segmentation_origin_record
    if segmentation_provenance.get("segmentation_source") == "automatic":
        return segmentation_origin_record(segmentation_provenance, native)
    return {k: v for k, v in segmentation_provenance.items()
            if k.startswith("segmentation_backend") or k == "roi_subregions"} | {
        "segmentation_source": segmentation_provenance.get("segmentation_source", "given")}


def write_kept(out: Path, analysis_or_segmented, native: sitk.Image, provenance: dict) -> None:
    """segmentation.provenance.json and the kept working-grid labels and preprocessing (kept.py) into ``out``."""
    atomic_write_json(out / "segmentation.provenance.json", segmentation_record(provenance, native))
    if analysis_or_segmented.kept is not None:
        analysis_or_segmented.kept.write(out, "segmentation")


def _run_case_into(out: Path, case: Case, options: Optional[PipelineOptions], progress: Progress,
                   label: Optional[sitk.Image], label_source: str, label_provenance: Optional[dict] = None,
                   kept: Optional[Kept] = None) -> dict:
    from .report import write_report

    t0 = time.perf_counter()
    analysis, doc = evaluate_case(case, options, progress.sub(0.0, 0.96), label, label_source, label_provenance,
                                  kept=kept)
    progress.update(0.96, "writing outputs")
    write_image(analysis.label_native, out / "segmentation.nii.gz")
    write_kept(out, analysis, analysis.label_native, analysis.segmentation_provenance)
    write_image(analysis.pre.to_native(analysis.pre.brain_mask), out / "brain_mask.nii.gz")
    row = analysis.feature_row()
    table = pd.DataFrame([row])
    atomic_write_text(out / "features.csv", table.to_csv(index=False))
    atomic_write_json(out / "features.provenance.json", analysis.features.provenance)
    for name, feats in analysis.preset_features.items():  # what the bundles of another preset read, and its origin
        stem = f"features.{feats.provenance.get('preset', name)}"
        atomic_write_text(out / f"{stem}.csv", pd.DataFrame([analysis.feature_row(name)]).to_csv(index=False))
        atomic_write_json(out / f"{stem}.provenance.json", feats.provenance)
    atomic_write_json(out / "predictions.json", doc)
    write_report(doc, analysis, out / "report.html")
    progress.update(1.0, f"done in {time.perf_counter() - t0:.0f} s")
    return doc
