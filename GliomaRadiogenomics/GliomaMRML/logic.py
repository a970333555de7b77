"""Logic of the three Slicer modules: MRML nodes in, core package calls, MRML nodes out.

Every logic takes the scene as an argument and avoids slicer.app / slicer.modules / Qt, so it runs in the desktop
app, in batch mode (`Slicer --no-main-window --python-script`), under slicer-core and under trame-slicer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

from GliomaRadiogenomicsLib.case import IMAGE_KEYS, Case
from GliomaRadiogenomicsLib.progress import Progress, null_progress

from .convert import (contributions_to_table_node, label_image_to_segmentation_node, nomogram_charts,
                      predictions_to_table_node, segmentation_node_to_label_image, volume_node_to_sitk)


def case_from_nodes(nodes: Dict[str, object], clinical: Optional[dict] = None, case_id: str = "slicer-case") -> Case:
    """The selected volumes (any subset with FLAIR or T2, optionally a CBV map; None = not selected) as a core Case."""
    present = [s for s in IMAGE_KEYS if nodes.get(s) is not None]
    if not {"flair", "t2"} & set(present):
        raise ValueError("select a FLAIR (or T2) volume: the whole tumor needs it (T1, T1c are optional)")
    images = {s: volume_node_to_sitk(nodes[s]) for s in present}
    paths = {s: f"scene node '{nodes[s].GetName()}'" for s in present}
    case = Case(case_id, images, paths, clinical or {})
    case.bias_corrected_inputs = [s for s in present if bias_corrected_node(nodes[s])]
    return case


BIAS_CORRECTED_ATTRIBUTE = "GliomaRadiogenomics.BiasCorrectedInput"  # "1": read from a '_bias' / '_n4' file


def bias_corrected_node(node) -> bool:
    """A volume read from a file named as bias-field corrected (UCSF-PDGM's ``_bias``): marked so by the case-folder
    loader, or named so (a file loaded by hand keeps its name)."""
    from GliomaRadiogenomicsLib.inputs import is_bias_corrected_name
    return node.GetAttribute(BIAS_CORRECTED_ATTRIBUTE) == "1" or is_bias_corrected_name(node.GetName() or "")


def reference_node(nodes: Dict[str, object], reference: str = "flair"):
    """The volume that defines the output grid: ``reference`` when selected, else FLAIR, T2, T1c, T1 (as
    preprocess falls back)."""
    for s in (reference, "flair", "t2", "t1c", "t1"):
        if nodes.get(s) is not None:
            return nodes[s]
    raise ValueError("no volume selected")


INPUTS_ATTRIBUTE = "GliomaRadiogenomics.InputVolumes"  # on a segmentation node: the volumes it was made from


def input_volumes_signature(nodes: Dict[str, object]) -> str:
    """What the pipeline would read from the selected volumes: per sequence, a digest of the voxels and the world
    geometry (parent transforms included). Another patient, another volume in a selector, a volume re-loaded or
    changed in place, or a sequence added or removed all give another signature."""
    import hashlib
    import SimpleITK as sitk
    h = hashlib.sha256()
    for s in IMAGE_KEYS:
        if nodes.get(s) is None:
            continue
        img = volume_node_to_sitk(nodes[s])
        h.update(repr((s, img.GetSize(), img.GetPixelIDTypeAsString(), [round(v, 6) for v in img.GetSpacing()],
                       [round(v, 4) for v in img.GetOrigin()], [round(v, 6) for v in img.GetDirection()])).encode())
        h.update(sitk.GetArrayViewFromImage(img).tobytes())
    return h.hexdigest()[:32]


SOURCE_ATTRIBUTE = "GliomaRadiogenomics.SegmentationProvenance"  # on a segmentation node made by the segment logic


def remember_automatic_segmentation(segmentation_node, backend, reference_volume_node) -> None:
    """Record on the node the backend that drew it and a digest of its labels: a later prediction tells an untouched
    automatic segmentation from an edited one (feature provenance: segmentation_source)."""
    import json
    from GliomaRadiogenomicsLib.provenance import backend_provenance, segmentation_origin_record
    label = segmentation_node_to_label_image(segmentation_node, reference_volume_node)
    segmentation_node.SetAttribute(SOURCE_ATTRIBUTE, json.dumps(segmentation_origin_record(backend_provenance(backend),
                                                                                          label)))


def segmentation_provenance(segmentation_node, label) -> dict:
    """``automatic`` (made by the segment logic, unchanged), ``edited`` (made by it, changed since: the backend is
    kept) or ``given`` (any other segmentation: the user's own, a case-folder mask)."""
    import json
    from GliomaRadiogenomicsLib.provenance import segmentation_origin
    raw = segmentation_node.GetAttribute(SOURCE_ATTRIBUTE) if segmentation_node is not None else None
    return segmentation_origin(json.loads(raw) if raw else None, label)


KEPT_ATTRIBUTE = "GliomaRadiogenomics.KeptPreprocessing"      # JSON: transforms, input digests, options (kept.py)
KEPT_LABEL_ROLE = "GliomaRadiogenomics.WorkingGridLabel"       # hidden label map: the labels on the working grid
KEPT_MASK_ROLE = "GliomaRadiogenomics.WorkingGridBrainMask"    # hidden label map: the brain mask on the working grid


def keep_with_node(segmentation_node, kept) -> None:
    """Keep a run's working-grid labels, brain mask and preprocessing record (kept.Kept) with the segmentation
    node: two hidden label map volumes referenced from it and an attribute (all saved with the scene). A later
    prediction on the node, unchanged, uses exactly these labels and skips registration and brain extraction
    (kept_from_node); edited, only the edited voxels change."""
    import json
    from .convert import sitk_to_volume_node
    if segmentation_node is None or kept is None or kept.work_label is None:
        return
    scene = segmentation_node.GetScene()
    for role, img, what in ((KEPT_LABEL_ROLE, kept.work_label, "working-grid labels"),
                            (KEPT_MASK_ROLE, kept.brain_mask, "working-grid brain mask")):
        old = segmentation_node.GetNodeReference(role)
        if img is None:
            segmentation_node.RemoveNodeReferenceIDs(role)
        else:  # a new node: a copy of this segmentation node (a backup, an edited copy) keeps the old one
            node = sitk_to_volume_node(img, scene, f"{segmentation_node.GetName()} {what}",
                                       class_name="vtkMRMLLabelMapVolumeNode")
            node.SetHideFromEditors(True)
            node.SetAttribute("GliomaRadiogenomics.KeptFor", segmentation_node.GetID())
            segmentation_node.SetNodeReferenceID(role, node.GetID())
        if old is not None and not _referenced(scene, old, role):
            scene.RemoveNode(old)
    segmentation_node.SetAttribute(KEPT_ATTRIBUTE, json.dumps(kept.preprocessing))


def _referenced(scene, node, role) -> bool:
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
        ref = scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode").GetNodeReference(role)
        if ref is not None and ref.GetID() == node.GetID():
            return True
    return False


def kept_from_node(segmentation_node):
    """The working-grid labels, brain mask and preprocessing kept with a segmentation node (kept.Kept), or None."""
    import json
    from GliomaRadiogenomicsLib.kept import FORMAT, Kept
    if segmentation_node is None:
        return None
    label_node = segmentation_node.GetNodeReference(KEPT_LABEL_ROLE)
    if label_node is None or label_node.GetImageData() is None:
        return None
    mask_node = segmentation_node.GetNodeReference(KEPT_MASK_ROLE)
    raw = segmentation_node.GetAttribute(KEPT_ATTRIBUTE)
    try:
        record = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        record = None
    mask = volume_node_to_sitk(mask_node) if mask_node is not None and mask_node.GetImageData() is not None else None
    return Kept(volume_node_to_sitk(label_node), mask, record, f"segmentation node '{segmentation_node.GetName()}'")


def remember_inputs(segmentation_node, nodes: Dict[str, object]) -> None:
    """Record on the segmentation node which input volumes it belongs to (an MRML attribute: saved with the scene)."""
    if segmentation_node is not None:
        segmentation_node.SetAttribute(INPUTS_ATTRIBUTE, input_volumes_signature(nodes))


def segmentation_for_inputs(scene, segmentation_node, nodes: Dict[str, object]):
    """A new input selection in a module: ``segmentation_node`` when it was made for ``nodes`` (``segmentation_for_run``),
    else None, and then the previous patient's segmentation is hidden from the views: kept in the scene, never
    deleted (it is the user's data; showing it again is one click in the Data module)."""
    if segmentation_node is None:
        return None
    keep = segmentation_for_run(scene, segmentation_node, nodes)
    if keep is None:
        segmentation_node.SetDisplayVisibility(False)
    return keep


def segmentation_for_run(scene, segmentation_node, nodes: Dict[str, object]):
    """The segmentation a new run of ``nodes`` may use, or None (the run segments again).

    A segmentation made for other input volumes (the previous patient, or volumes changed since) is not passed on;
    the node itself stays in the scene untouched (it may hold the user's edits). A node no longer in the scene is
    not used either. A segmentation without a record (the user's own, e.g. a case-folder mask) is used as given."""
    if segmentation_node is None or scene is None or not scene.IsNodePresent(segmentation_node):
        return None
    recorded = segmentation_node.GetAttribute(INPUTS_ATTRIBUTE)
    if recorded and recorded != input_volumes_signature(nodes):
        return None
    return segmentation_node


def assign_volumes_by_name(scene, current: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """T1 / T1c / T2 / FLAIR (and CBV) volume nodes of the scene recognised by name (the core's file-name rules: plain,
    BraTS, BIDS, scanner names); volumes already chosen in ``current`` are kept."""
    from GliomaRadiogenomicsLib.inputs import classify_name
    out = {s: (current or {}).get(s) for s in IMAGE_KEYS}
    taken = {n.GetID() for n in out.values() if n is not None}
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
        if node.IsA("vtkMRMLLabelMapVolumeNode") or node.GetID() in taken:
            continue
        seq = classify_name(node.GetName())
        if seq in out and out[seq] is None:
            out[seq] = node
            taken.add(node.GetID())
    return out


SOURCE_PATH_ATTRIBUTE = "GliomaRadiogenomics.SourcePath"  # on a volume node loaded from a case folder: its file


def load_case_folder_into_scene(scene, folder, overrides: Optional[Dict[str, str]] = None) -> tuple:
    """A case folder (NIfTI / NRRD named by sequence, BraTS, BIDS, scanner names, or DICOM series) -> volume nodes
    named t1 / t1c / t2 / flair / cbv (None for an image the folder lacks; each records its file in
    SOURCE_PATH_ATTRIBUTE), plus the clinical data of its case.json. ``overrides`` (sequence key -> file) replace the
    folder's, as `run --case-dir DIR --cbv FILE` does (the same checks). A mask file of the folder becomes a
    segmentation node "<case> case-folder mask (...)" (reference or ROI)."""
    from GliomaRadiogenomicsLib.case import load_case_folder
    from .convert import sitk_to_volume_node
    case = load_case_folder(folder, overrides=overrides)
    nodes = {s: (sitk_to_volume_node(case.images[s], scene, f"{case.case_id} {s}") if s in case.images else None)
             for s in IMAGE_KEYS}
    for s, node in nodes.items():
        if node is not None:
            node.SetAttribute(SOURCE_PATH_ATTRIBUTE, str(case.paths.get(s, "")))
            if s in case.bias_corrected_inputs:
                node.SetAttribute(BIAS_CORRECTED_ATTRIBUTE, "1")
    if case.mask_path:  # offered as the reference (Dice) or as the ROI: a segmentation node, never a volume
        from GliomaRadiogenomicsLib.io import read_image
        from GliomaRadiogenomicsLib.regions import as_brats_label
        mask, _ = as_brats_label(read_image(case.mask_path, "case-folder mask", label=True), "case-folder mask")
        label_image_to_segmentation_node(mask, scene, f"{case.case_id} case-folder mask ({Path(case.mask_path).name})",
                                         reference_node(nodes))
    return nodes, dict(case.clinical), case.case_id


class GliomaSegmentLogic:
    def __init__(self, scene):
        self.scene = scene

    def getParameterNode(self):
        """This module's singleton parameter node in the scene (parameter_node)."""
        return parameter_node(self.scene, "GliomaSegment")

    def segment(self, nodes: Dict[str, object], backend: Optional[str] = None, brain_mask: str = "auto",
                reference: str = "flair", progress: Progress = null_progress, segmentation_node=None,
                preprocess_options=None, backend_options: Optional[dict] = None):
        """Preprocess + segment; the result lands on the reference volume's grid as a segmentation node."""
        compute = self.prepare(nodes, backend, brain_mask, reference, preprocess_options, backend_options)
        return self.land(nodes, compute(progress), segmentation_node)

    def prepare(self, nodes: Dict[str, object], backend: Optional[str] = None, brain_mask: str = "auto",
                reference: str = "flair", preprocess_options=None, backend_options: Optional[dict] = None):
        """``segment`` in three steps for a caller that keeps MRML on one thread (the web app): this step reads the
        scene and returns ``compute(progress)``, which touches no MRML / VTK object (a worker thread may run it);
        ``land(nodes, compute(progress))`` puts its result into the scene."""
        from GliomaRadiogenomicsLib.pipeline import PipelineOptions, segment_case
        from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
        from GliomaRadiogenomicsLib.segment import DEFAULT_BACKEND, get_backend
        case = case_from_nodes(nodes)
        opts = preprocess_options or PreprocessOptions(reference=reference, brain_mask=brain_mask)
        seg_backend = get_backend(backend or DEFAULT_BACKEND, **(backend_options or {}))

        def compute(progress: Progress = null_progress):
            seg = segment_case(case, PipelineOptions(preprocess=opts), progress, backend=seg_backend)  # the one path
            seg.kept  # made here (digests of the images), not in land
            return seg_backend, seg, seg.native
        return compute

    def land(self, nodes: Dict[str, object], computed, segmentation_node=None):
        """The result of ``prepare``'s ``compute`` as a segmentation node (see ``segment``)."""
        seg_backend, seg, native = computed
        pre = seg.pre
        if segmentation_node is not None:
            # never lose a user's edits: keep a copy of the existing segmentation node
            copy = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", segmentation_node.GetName() + " (backup)")
            copy.Copy(segmentation_node)
        node = label_image_to_segmentation_node(native, self.scene, "Glioma segmentation", nodes[pre.reference],
                                                segmentation_node)
        remember_automatic_segmentation(node, seg_backend, nodes[pre.reference])
        keep_with_node(node, seg.kept)  # "Run again" / Predict reuse the working-grid labels and preprocessing
        return node

    def start(self, nodes: Dict[str, object], out_dir, backend: Optional[str] = None, brain_mask: str = "auto",
              device: str = "auto", nnunet_model: str = "", extra_args=(), python: Optional[str] = None):
        """``glioma-radiogenomics segment`` on the selected volumes in a child process (BackgroundJob: poll, cancel);
        ``finish`` loads the result. One job at a time (JobSlot)."""
        from GliomaRadiogenomicsLib.background import BackgroundJob
        from GliomaRadiogenomicsLib.segment import DEFAULT_BACKEND
        out = Path(out_dir)
        _, args = _write_inputs(nodes, out)
        args = ["segment", "--out", str(out), "--backend", backend or DEFAULT_BACKEND, "--brain-mask", brain_mask,
                "--device", device] + args + (["--nnunet-model", nnunet_model] if nnunet_model else [])
        return JobSlot.start("segmentation", lambda: BackgroundJob.core("cli", args + list(extra_args),
                                                                        python=python or python_executable()))

    def finish(self, out_dir, nodes: Dict[str, object], segmentation_node=None):
        """The finished ``segment`` run as a segmentation node (``segmentation_node`` is overwritten after a backup
        copy, as ``segment`` does), recording its backend (automatic) and its input volumes."""
        from GliomaRadiogenomicsLib.io import read_image
        out = Path(out_dir)
        label = read_image(out / "segmentation.nii.gz", "segmentation", label=True)
        if segmentation_node is not None:
            copy = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", segmentation_node.GetName() + " (backup)")
            copy.Copy(segmentation_node)
        node = label_image_to_segmentation_node(label, self.scene, "Glioma segmentation", reference_node(nodes),
                                                segmentation_node)
        record = out / "segmentation.provenance.json"
        if record.is_file():
            node.SetAttribute(SOURCE_ATTRIBUTE, record.read_text())
        from GliomaRadiogenomicsLib.kept import Kept
        keep_with_node(node, Kept.beside(out / "segmentation.nii.gz"))
        remember_inputs(node, nodes)
        return node

    @staticmethod
    def model_choices(nodes: Optional[Dict[str, object]] = None) -> List[dict]:
        """The segmentation models a selector lists, from the model registry (registry.model_choices): ``auto``
        first, then each model with id, title, ``label`` (title + availability), available, state and reason.
        With ``nodes`` (sequence key -> volume node or None) a model lacking a needed sequence is not available."""
        from GliomaRadiogenomicsLib.registry import model_choices
        sequences = None if nodes is None else [k for k, v in nodes.items() if v is not None]
        return model_choices(sequences)

    @staticmethod
    def dice(segmentation_node, reference_segmentation_node, reference_volume_node) -> Dict[str, float]:
        import SimpleITK as sitk
        from GliomaRadiogenomicsLib.regions import dice_per_region
        a = sitk.GetArrayFromImage(segmentation_node_to_label_image(segmentation_node, reference_volume_node))
        b = sitk.GetArrayFromImage(segmentation_node_to_label_image(reference_segmentation_node, reference_volume_node))
        return dice_per_region(a, b)


class GliomaPredictLogic:
    def __init__(self, scene):
        self.scene = scene
        self.last_document = None
        self.last_analysis = None

    def getParameterNode(self):
        """This module's singleton parameter node in the scene (parameter_node)."""
        return parameter_node(self.scene, "GliomaPredict")

    def predict(self, nodes: Dict[str, object], segmentation_node, clinical: Optional[dict] = None,
                preset: str = "wang2025", reference: str = "flair", bundles=None, progress: Progress = null_progress,
                preprocess_options=None, synthetic_case: bool = False, backend: Optional[str] = None,
                case_id: Optional[str] = None):
        """Features inside the (possibly edited) segmentation -> predictions table and nomogram charts.
        ``segmentation_node`` None: automatic segmentation inside the same pass (``backend``; one preprocessing),
        the result available as ``self.last_analysis.label_native``."""
        compute = self.prepare(nodes, segmentation_node, clinical, preset, reference, bundles, preprocess_options,
                               synthetic_case, backend, case_id)
        return self.land(compute(progress.sub(0, 0.95)), progress)

    def prepare(self, nodes: Dict[str, object], segmentation_node, clinical: Optional[dict] = None,
                preset: str = "wang2025", reference: str = "flair", bundles=None, preprocess_options=None,
                synthetic_case: bool = False, backend: Optional[str] = None, case_id: Optional[str] = None):
        """``predict`` in three steps for a caller that keeps MRML on one thread (the web app): this step reads the
        scene (volumes, the segmentation's labels and what is kept with it) and returns ``compute(progress)`` ->
        (analysis, document), which touches no MRML / VTK object (a worker thread may run it); ``land(computed)``
        makes the table and chart nodes."""
        from GliomaRadiogenomicsLib.pipeline import PipelineOptions, evaluate_case
        from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
        from GliomaRadiogenomicsLib.segment import DEFAULT_BACKEND
        case = case_from_nodes(nodes, clinical, **({"case_id": case_id} if case_id else {}))
        case.synthetic = synthetic_case
        popt = preprocess_options or PreprocessOptions(reference=reference)
        opt = PipelineOptions(preprocess=popt, preset=preset, feature_workers=1, bundles=list(bundles or []) or None,
                              backend=backend or DEFAULT_BACKEND)
        if segmentation_node is None:
            return lambda progress=null_progress: evaluate_case(case, opt, progress)
        label = segmentation_node_to_label_image(segmentation_node, reference_node(nodes, popt.reference))
        # the working-grid labels and preprocessing kept with the node: unchanged, the same answer as the run
        # that made it (no registration, no brain extraction); edited, only the edited voxels change
        given = dict(label=label, label_source=f"segmentation node '{segmentation_node.GetName()}'",
                     label_provenance=segmentation_provenance(segmentation_node, label),
                     kept=kept_from_node(segmentation_node))
        return lambda progress=null_progress: evaluate_case(case, opt, progress, **given)  # the one run path

    def land(self, computed, progress: Progress = null_progress):
        """The result of ``prepare``'s ``compute`` -> (document, predictions table, nomogram charts)."""
        analysis, doc = computed
        self.last_document, self.last_analysis = doc, analysis
        table = predictions_to_table_node(doc, self.scene)
        charts = nomogram_charts(doc, self.scene)
        self.contributions = contributions_to_table_node(doc, self.scene)
        progress.update(1.0, "predictions ready")
        return doc, table, charts

    def start(self, nodes: Dict[str, object], segmentation_node, out_dir, clinical: Optional[dict] = None,
              preset: str = "wang2025", bundles=None, extra_args=(), python: Optional[str] = None):
        """Prediction inside ``segmentation_node`` in a child process (``run --segmentation``); ``finish`` loads the
        table and charts. Refused when the segmentation was made for other volumes (another patient)."""
        if segmentation_node is None:
            raise ValueError("select the tumor segmentation to predict from (segment it with GliomaSegment, or the "
                             "workflow module runs both)")
        if segmentation_for_run(self.scene, segmentation_node, nodes) is None:
            raise ValueError(f"segmentation '{segmentation_node.GetName()}' was made for other input volumes (another "
                             "patient, or volumes changed since): segment these volumes first")
        args = ["--preset", preset] + bundle_args(bundles) + list(extra_args)
        return start_run(self.scene, nodes, out_dir, clinical, segmentation_node, args, python, "prediction")

    def finish(self, out_dir):
        """A finished run's predictions.json -> predictions table, nomogram charts, contributions table."""
        import json
        out = Path(out_dir)
        doc = json.loads((out / "predictions.json").read_text())
        table = predictions_to_table_node(doc, self.scene)
        charts = nomogram_charts(doc, self.scene)
        self.contributions = contributions_to_table_node(doc, self.scene)
        self.last_document, self.last_analysis, self.last_report = doc, None, out / "report.html"
        return doc, table, charts

    def save_report(self, path) -> Path:
        from GliomaRadiogenomicsLib.report import write_report
        if self.last_document is None:
            raise RuntimeError("run a prediction first")
        if str(path).lower().endswith(".pdf"):
            if self.last_analysis is None and getattr(self, "last_report", None) and \
                    Path(self.last_report).with_suffix(".pdf").is_file():  # a background run wrote it
                from GliomaRadiogenomicsLib.io import atomic_write_bytes
                return atomic_write_bytes(path, Path(self.last_report).with_suffix(".pdf").read_bytes())
            from GliomaRadiogenomicsLib.report import write_pdf_report  # the same content as the HTML report
            return write_pdf_report(self.last_document, path, self.last_analysis)
        if self.last_analysis is None and getattr(self, "last_report", None):  # a background run wrote it
            from GliomaRadiogenomicsLib.io import atomic_write_bytes
            return atomic_write_bytes(path, Path(self.last_report).read_bytes())
        return write_report(self.last_document, self.last_analysis, path, pdf=False)


class NomogramChoice(NamedTuple):
    """One item of the "Nomogram:" selector of the GliomaPredict and workflow widgets (nomogram_choices)."""
    title: str      # the nomogram's title (render.nomogram_results): the task, or "IDH (Choi 2021)"
    label: str      # what the selector shows: the title, marked SYNTHETIC when its model is
    chart: object   # its vtkMRMLPlotChartNode (convert.nomogram_charts), shown with ShowChartInLayout


def nomogram_choices(doc: dict, charts: Dict[str, Optional[object]]) -> List[NomogramChoice]:
    """The "Nomogram:" selector's items for a prediction: one per nomogram of the document that has a chart
    (``charts``: the Logic's ``finish`` / ``predict`` / ``land`` charts, by title), in the order every screen draws them
    (render.nomogram_results: each logistic task's, then each JSON-bundle entry's, the Choi 2021 hybrid's as
    "IDH (Choi 2021)"); a task without a nomogram (not available) has none. The label is the title, with
    " - SYNTHETIC model" (render.STATUS_WORDS) when render.nomogram_synthetic says its model was trained on SYNTHETIC
    data. The widget selects the first by default; [] leaves the selector empty and disabled."""
    from GliomaRadiogenomicsLib.render import STATUS_WORDS, nomogram_results, nomogram_synthetic
    out = []
    for title, res in nomogram_results(doc):
        chart = charts.get(title)
        if chart is None:
            continue
        label = title + (f" - {STATUS_WORDS['synthetic model']}" if nomogram_synthetic(res) else "")
        out.append(NomogramChoice(title, label, chart))
    return out


def python_executable() -> str:
    """The Python that runs background jobs: PythonSlicer inside the Slicer application, else this one."""
    import shutil
    import sys
    from .headless import in_slicer_application
    if in_slicer_application():
        return shutil.which("PythonSlicer") or sys.executable
    return sys.executable


# ----------------------------------------------------------------------------------------------------------------
# Module lifecycle: singleton parameter nodes, one background job at a time, inputs written for a child process
# ----------------------------------------------------------------------------------------------------------------
def parameter_node(scene, module_name: str):
    """The module's parameter node: one singleton ``vtkMRMLScriptedModuleNode`` per scene (tag = module name), as
    ScriptedLoadableModuleLogic.getParameterNode makes it; created on first use and after a scene close."""
    node = scene.GetSingletonNode(module_name, "vtkMRMLScriptedModuleNode")
    if node is None:
        node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)  # the scene holds the only reference
        node.SetSingletonTag(module_name)
        node.SetName(module_name)
        node.SetAttribute("ModuleName", module_name)
        node = scene.AddNode(node)
    return node


class JobSlot:
    """One background job at a time for the three modules (they share the CPU / GPU): a second start while one runs
    is refused with the name of the running one."""
    job = None
    owner = ""

    @classmethod
    def busy(cls) -> bool:
        return cls.job is not None and cls.job.poll().running

    @classmethod
    def start(cls, owner: str, launch):
        if cls.busy():
            raise RuntimeError(f"a {cls.owner} job is still running: wait for it to finish or cancel it first")
        cls.job, cls.owner = launch(), owner
        return cls.job


def clinical_from_parameters(age: int = 0, sex: str = "", who_grade: str = "", vasari: str = "") -> dict:
    """Parameter-node or web-form values (0 / '' / 'not given' = not given) -> the core's clinical dict (checked by
    case.normalize_clinical when a Case is made). An age typed as text is read as a number."""
    if isinstance(age, str):
        try:
            age = float(age) if age.strip() else 0
        except ValueError:
            raise ValueError(f"age '{age}' is not a number of years") from None
    out = {"age": age if age and age > 0 else None, "sex": sex if sex in ("M", "F") else None}
    if str(who_grade) in ("2", "3", "4"):
        out["who_grade"] = int(who_grade)
    if vasari and str(vasari).strip():
        out["vasari_score"] = str(vasari).strip()
    return out


def bundle_paths(text: str) -> Optional[List[str]]:
    """A module's "Model bundles" field ("a.json; choi-idh": logistic bundles, Shim 2021 recurrence / Cox-LASSO and
    Choi 2021 hybrid bundles, or the name of a shipped optional model: bundle.resolve_bundle_ref) -> the paths, or
    None (empty: the shipped default bundles)."""
    from GliomaRadiogenomicsLib.bundle import resolve_bundle_ref
    return [resolve_bundle_ref(b.strip()) for b in str(text or "").split(";") if b.strip()] or None


def bundle_args(bundles) -> List[str]:
    """The bundles as `run` arguments (--bundle FILE, repeated): the child process applies them as `run --bundle`."""
    return [a for b in (bundles or []) for a in ("--bundle", str(b))]


def _write_inputs(nodes: Dict[str, object], out: Path, clinical: Optional[dict] = None):
    """The selected volumes as NRRD files under ``out/inputs`` -> (case, command-line arguments)."""
    import SimpleITK as sitk
    case = case_from_nodes(nodes, clinical)
    inputs = out / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    args = ["--json-progress", "--case-id", case.case_id]
    for seq in case.sequences:
        path = inputs / f"{seq}.nrrd"
        sitk.WriteImage(case.images[seq], str(path), True)
        args += [f"--{seq}", str(path)]
    return case, args


def start_run(scene, nodes: Dict[str, object], out_dir, clinical: Optional[dict] = None, segmentation_node=None,
              extra_args=(), python: Optional[str] = None, owner: str = "workflow"):
    """``glioma-radiogenomics run`` on the scene's volumes (and ``segmentation_node``, if any) in a child process."""
    import json
    import SimpleITK as sitk
    from GliomaRadiogenomicsLib.background import BackgroundJob
    out = Path(out_dir)
    case, args = _write_inputs(nodes, out, clinical)
    args = ["run", "--out", str(out)] + args
    if segmentation_node is not None:
        label = segmentation_node_to_label_image(segmentation_node, reference_node(nodes))
        path = out / "inputs" / "segmentation.nrrd"
        sitk.WriteImage(label, str(path), True)
        # automatic / edited / given travels with the file (cli.segmentation_origin)
        (out / "inputs" / "segmentation.provenance.json").write_text(json.dumps(segmentation_provenance(
            segmentation_node, label)))
        kept = kept_from_node(segmentation_node)  # the working-grid labels and preprocessing travel with it
        if kept is not None and kept.preprocessing is not None:
            kept.write(out / "inputs", "segmentation")
        args += ["--segmentation", str(path)]
    for key, flag in (("age", "--age"), ("sex", "--sex"), ("who_grade", "--who-grade"),
                      ("vasari_score", "--vasari-score")):
        if case.clinical.get(key) is not None:
            value = case.clinical[key]
            args += [flag, str(int(value) if key == "who_grade" else value)]
    return JobSlot.start(owner, lambda: BackgroundJob.core("cli", args + list(extra_args),
                                                           python=python or python_executable()))


class GliomaRadiogenomicsLogic:
    """The whole workflow (one button): segment, then predict on the (editable) segmentation.

    ``run`` works synchronously (batch mode, tests); ``start`` / ``finish`` run the same pipeline in a background
    process (``glioma-radiogenomics run --json-progress``) so a GUI stays responsive: poll the returned
    BackgroundJob from a timer, ``cancel()`` it, then ``finish`` loads its outputs into the scene."""

    def __init__(self, scene):
        self.scene = scene
        self.segment_logic = GliomaSegmentLogic(scene)
        self.predict_logic = GliomaPredictLogic(scene)
        self.run_segmentation = None  # the segmentation the last start() passed on (None: the run segments)

    def getParameterNode(self):
        """This module's singleton parameter node in the scene (parameter_node)."""
        return parameter_node(self.scene, "GliomaRadiogenomics")

    def start(self, nodes: Dict[str, object], out_dir, clinical: Optional[dict] = None, segmentation_node=None,
              extra_args=(), python: Optional[str] = None, bundles=None):
        """Write the scene's volumes (and the edited segmentation, if any) and start the pipeline in a child process;
        ``bundles`` (model bundle files; None: the shipped default bundles) go to it as `run --bundle`, Shim 2021 and
        Choi 2021 bundles included (their tasks land in predictions.json ``bundle_tasks``; the CBV map, when
        selected, is written with the other volumes).

        ``segmentation_node`` is passed on only when it belongs to these volumes (segmentation_for_run): the previous
        patient's segmentation never reaches the next patient's run. The one passed on is ``self.run_segmentation``:
        give it to ``finish``."""
        segmentation_node = self.run_segmentation = segmentation_for_run(self.scene, segmentation_node, nodes)
        return start_run(self.scene, nodes, out_dir, clinical, segmentation_node,
                         bundle_args(bundles) + list(extra_args), python, "workflow")

    def finish(self, out_dir, reference_node, segmentation_node=None, nodes: Optional[Dict[str, object]] = None):
        """Load a finished run's outputs: segmentation (a new node unless the user's own was used), the predictions
        table and the nomogram charts. With ``nodes`` (the run's input volumes), the segmentation records them."""
        from GliomaRadiogenomicsLib.io import read_image
        out = Path(out_dir)
        if segmentation_node is None:
            from GliomaRadiogenomicsLib.kept import Kept
            segmentation_node = label_image_to_segmentation_node(read_image(out / "segmentation.nii.gz", "segmentation"),
                                                                 self.scene, "Glioma segmentation", reference_node)
            record = out / "segmentation.provenance.json"
            if record.is_file():
                segmentation_node.SetAttribute(SOURCE_ATTRIBUTE, record.read_text())
            keep_with_node(segmentation_node, Kept.beside(out / "segmentation.nii.gz"))
        if nodes is not None:
            remember_inputs(segmentation_node, nodes)
        doc, table, charts = self.predict_logic.finish(out)
        return segmentation_node, doc, table, charts


    def run(self, nodes: Dict[str, object], clinical: Optional[dict] = None, progress: Progress = null_progress,
            segmentation_node=None, preprocess_options=None, preset: str = "wang2025", bundles=None,
            backend: Optional[str] = None):
        """Synchronous run; ``segmentation_node`` is used only when it belongs to ``nodes`` (segmentation_for_run),
        else a new segmentation node is made (the given one stays in the scene) with ``backend`` (default: the
        default backend)."""
        import json
        from GliomaRadiogenomicsLib.provenance import segmentation_origin_record
        segmentation_node = segmentation_for_run(self.scene, segmentation_node, nodes)
        automatic = segmentation_node is None
        # one pass (one preprocessing): automatic segmentation, features and models, as `run` does
        doc, table, charts = self.predict_logic.predict(nodes, segmentation_node, clinical, preset=preset,
                                                        bundles=bundles, progress=progress,
                                                        preprocess_options=preprocess_options, backend=backend)
        if automatic:
            analysis = self.predict_logic.last_analysis
            ref = nodes[analysis.pre.reference]
            segmentation_node = label_image_to_segmentation_node(analysis.label_native, self.scene,
                                                                 "Glioma segmentation", ref)
            label = segmentation_node_to_label_image(segmentation_node, ref)
            segmentation_node.SetAttribute(SOURCE_ATTRIBUTE, json.dumps(segmentation_origin_record(
                analysis.features.provenance, label)))
            keep_with_node(segmentation_node, analysis.kept)
        remember_inputs(segmentation_node, nodes)
        return segmentation_node, doc, table, charts
