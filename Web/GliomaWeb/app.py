"""Web twin of the Slicer modules on trame-slicer: real MRML, slice / 3D views and segment editing rendered
server-side, the same Logic as the desktop modules (GliomaMRML.logic), a Glioma panel for the workflow.

    glioma-radiogenomics web [--case DIR] [--port N]      # serves on 127.0.0.1

Workflow: load a case (server folder, the built-in SYNTHETIC demo case, or files uploaded with trame-slicer's
Open Files / Open Directory buttons: images, case.json, DICOM series (.dcm files or a .zip, converted to NIfTI),
written into a fresh case folder on the server: upload.py, which also removes old uploads; the case id comes
from the folder or its case.json; an optional DSC-perfusion CBV map found in the folder, or given as a file
on the server in the CBV field, for the Shim 2021 bundles of `web --bundle`) -> clinical fields (age, sex, WHO
grade, VASARI; prefilled from the folder's case.json) -> Segment (necrosis / edema / enhancing segments, editable
with trame-slicer's paint, erase, threshold, islands, undo; the views jump to the lesion, the 3D view shows the
tumour's surface, not the head) ->
Predict (on the segmentation as edited, reusing the registration and brain mask kept by Segment) -> the results
card: per task the probability with its status in one row, warnings, the nomogram and the model card; the report
(report.html and report.pdf, written by the CLI run's report.write_report), predictions.json and the edited
segmentation downloadable.

Segment and Predict run in the background: the scene is read and written on the server's loop (MRML / VTK are not
thread-safe) by the Logic's ``prepare`` / ``land`` steps, the core's work (SimpleITK, PyRadiomics, models, report
figures) runs in a worker thread and reports into a progress bar; one job at a time, the buttons disabled meanwhile.
"""
from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # headless server-side rendering

from trame.app import TrameApp, asynchronous  # noqa: E402
from trame.widgets import client, html  # noqa: E402
from trame.widgets.vuetify3 import (VBtn, VCard, VCardText, VCardTitle, VCol, VDivider,  # noqa: E402
                                    VNavigationDrawer, VProgressLinear, VRow, VSelect, VTab, VTabs, VTextField)
from trame_slicer import module as trame_slicer_module  # noqa: E402
from trame_slicer.app.logic import SegmentationAppLogic  # noqa: E402
from trame_slicer.app.ui import SegmentationAppUI  # noqa: E402
from trame_slicer.core import SlicerApp  # noqa: E402

DISCLAIMER = "Research probabilities, not diagnoses."
NOT_GIVEN = "not given"
SEX_ITEMS = [{"title": NOT_GIVEN, "value": ""}, {"title": "female", "value": "F"}, {"title": "male", "value": "M"}]
WHO_ITEMS = [{"title": NOT_GIVEN, "value": ""}] + [{"title": f"grade {g}", "value": str(g)} for g in (2, 3, 4)]
STATUS_COLORS = {"valid": "#66bb6a", "synthetic model": "#ffc107", "imputed inputs": "#ffc107",  # the row's status
                 "extrapolated": "#ff9800", "out of intended use": "#f44336", "not available": "#9e9e9e"}


def model_items(nodes=None) -> list:
    """The web app's segmentation model list: the registry's models (GliomaSegmentLogic.model_choices, as in the
    Slicer module) as selector items (title + availability). Models that cannot run from here are disabled: not
    available (the reason is in the title), or needing a model folder the web panel does not ask for."""
    from GliomaMRML.logic import GliomaSegmentLogic
    items = []
    for c in GliomaSegmentLogic.model_choices(nodes):
        web_ok = c["state"] in ("ready", "download")
        title = c["label"] if web_ok or not c["available"] else f"{c['title']} - needs a model folder (CLI / Slicer)"
        items.append({"title": title, "value": c["id"], "disabled": not web_ok})
    return items


def result_card(doc: dict) -> dict:
    """The results card's state from a predictions document, through the one renderer (render.py: rows, statuses,
    model cards, and render.nomogram_results: which nomograms the document has, the report's list; each drawn by
    report.nomogram_figure, the report's figure). A logistic task's figure goes to its row, a JSON-bundle task's
    (the Choi 2021 hybrid's) to its row of the bundle tasks. Pure: runs in the worker thread."""
    from GliomaRadiogenomicsLib.render import (any_synthetic_model, input_quality_lines, key_result_line,
                                               model_card_rows, nomogram_results, shim_rows, shim_title,
                                               SYNTHETIC_CASE_NOTE, synthetic_models_note, task_rows)
    from GliomaRadiogenomicsLib.report import nomogram_figure
    figures, failed = {}, {}
    for title, res in nomogram_results(doc):
        try:
            figures[title] = "data:image/png;base64," + nomogram_figure(title, res)
        except Exception as exc:  # a figure must not lose the numbers
            failed[title] = f"nomogram figure failed: {exc}"
    rows = []
    for r in task_rows(doc):
        rows.append({"task": r.task, "probability": r.probability_text, "status": r.status_text,
                     "status_color": STATUS_COLORS.get(r.status, "#9e9e9e"), "status_detail": r.status_detail,
                     "label": r.label + (f" ({r.reason})" if r.reason else ""), "points": r.points_text,
                     "cutoff": r.cutoff_text, "model": r.model, "trained_on": r.trained_on,
                     "nomogram": r.points_breakdown, "nomogram_png": figures.get(r.task, ""),
                     "warnings": r.warnings + ([failed[r.task]] if r.task in failed else []),
                     "model_card": [[k, v] for k, v in model_card_rows(doc, r.task)]})
    case = doc.get("case") or {}
    synthetic = []
    if case.get("synthetic"):
        synthetic.append(SYNTHETIC_CASE_NOTE)
    if any_synthetic_model(doc):
        synthetic.append(synthetic_models_note(doc))
    shim = [{"task": r.task, "result": r.result_text, "status": r.status_text,
             "status_color": STATUS_COLORS.get(r.status, "#9e9e9e"),  # not computed: grey
             "status_detail": r.status_detail, "model": r.model, "trained_on": r.trained_on_text,
             "paper": r.paper, "title": r.title, "nomogram_png": figures.get(r.title, ""),
             "nomogram_failed": failed.get(r.title, ""), "model_card": [[k, v] for k, v in r.card]}
            for r in shim_rows(doc)]  # the Shim 2021 / Choi 2021 tasks, when the run had their bundles
    return {"rows": rows, "shim": shim, "shim_title": shim_title(doc), "key_result": key_result_line(doc),
            "synthetic": " ".join(synthetic),
            "warnings": input_quality_lines(doc) + [str(w) for w in doc.get("warnings") or []]}


def sequences_line(nodes) -> str:
    """The loaded case's images in one line, the CBV map with its file: "Sequences: T1, T1c, T2, FLAIR; CBV map:
    cbv.nii.gz" or "...; no CBV map (the Shim 2021 tasks need one)"."""
    from GliomaMRML.logic import SOURCE_PATH_ATTRIBUTE
    from GliomaRadiogenomicsLib.sequences import SEQUENCE_NAMES
    seqs = [SEQUENCE_NAMES[k] for k, n in (nodes or {}).items() if n is not None and k != "cbv"]
    cbv = (nodes or {}).get("cbv")
    where = (cbv.GetAttribute(SOURCE_PATH_ATTRIBUTE) or cbv.GetName()) if cbv is not None else ""
    where = where if where.startswith("DICOM") else Path(where).name
    return "Sequences: " + ", ".join(seqs) + (f"; CBV map: {where}" if cbv is not None else
                                               "; no CBV map (the Shim 2021 tasks need one)")


def _model_card_table(rows: str) -> None:
    """A model card's (field, value) rows (the state expression ``rows``) as a two-column table."""
    with html.Table(classes="glioma-model-card", style="width: 100%"):
        with html.Tr(v_for=f"kv in {rows}", key="kv[0]"):
            html.Td("{{ kv[0] }}", style="vertical-align: top; padding-right: 6px; white-space: nowrap; "
                                         "font-weight: 500")
            html.Td("{{ kv[1] }}")


def lesion_center_ras(label) -> Optional[tuple]:
    """The centroid of the whole tumour (labels > 0) of a SimpleITK label map, in RAS (MRML), or None when empty."""
    import SimpleITK as sitk
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(label > 0, sitk.sitkUInt8))
    if not stats.HasLabel(1):
        return None
    x, y, z = stats.GetCentroid(1)  # LPS
    return -x, -y, z


class GliomaWebApp(TrameApp):
    def __init__(self, server=None, case_dir: Optional[str] = None, work_dir: Optional[str] = None,
                 spacing: float = 1.0, brain_mask: str = "auto", bundles=None, backend: str = "auto",
                 backend_options: Optional[dict] = None, upload_max_age_s: Optional[float] = None):
        super().__init__(server)
        from .upload import DEFAULT_UPLOAD_MAX_AGE_S
        # uploads untouched for longer are removed at start and before each new upload (upload.remove_old_uploads);
        # 0: never
        self.upload_max_age_s = DEFAULT_UPLOAD_MAX_AGE_S if upload_max_age_s is None else float(upload_max_age_s)
        self.default_backend = backend or "auto"  # the model selected at start (the user can change it)
        # options of that model (as the CLI's, e.g. {"unet_folds": "0"} = `--unet-folds 0`), used while it is selected
        self.backend_options = dict(backend_options or {})
        self.bundles = list(bundles or []) or None  # model bundle files (None: the shipped default bundles)
        self.server.enable_module(trame_slicer_module)
        self.slicer_app = SlicerApp()
        self.scene = self.slicer_app.scene
        self.work = Path(work_dir or tempfile.mkdtemp(prefix="glioma-web-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.server.enable_module({"serve": {"glioma_files": str(self.work)}})
        self._logic = SegmentationAppLogic(self.server, self.slicer_app)
        self._ui = SegmentationAppUI(self.server, self._logic.layout_manager)
        self._logic.set_ui(self._ui)
        # trame-slicer's Open Files / Open Directory buttons: the files become a case folder (upload.py) loaded like
        # the others, instead of trame-slicer's loader (bare volumes in a temporary folder, not a case)
        uploads = self._ui.load_volume_items_buttons.on_load_volume
        uploads.disconnect(self._logic._load_files_logic._load_volume_files)
        uploads.connect(self.load_upload)
        from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
        self.preprocess_options = PreprocessOptions(spacing=spacing, brain_mask=brain_mask)
        self.nodes = None
        self.clinical = {}
        self.case_id = ""
        self.segmentation = None
        self.n_predictions = 0
        self.last_document = None
        self.last_analysis = None  # the last Predict's analysis (features, preprocessing, provenance)
        self._progress = (0.0, "")
        s = self.state
        s.trame__title = "Glioma Radiogenomics (web)"
        s.glioma_case_dir = case_dir or ""
        s.glioma_case_id = ""
        s.glioma_status = "Load a case to start. " + DISCLAIMER
        s.glioma_busy = False
        s.glioma_job = ""
        s.glioma_progress = 0
        s.glioma_progress_text = ""
        s.glioma_age = ""
        s.glioma_sex = ""
        s.glioma_who_grade = ""
        s.glioma_vasari = ""
        s.glioma_results = []
        s.glioma_shim = []
        s.glioma_shim_title = ""
        s.glioma_cbv_path = ""  # optional CBV map file for the next Load (else the case folder's, if any)
        s.glioma_sequences = ""
        s.glioma_key_result = ""
        s.glioma_synthetic = ""
        s.glioma_warnings = []
        s.glioma_reuse = ""
        s.glioma_task = 0
        s.glioma_case_synthetic = False
        s.glioma_report_url = ""
        s.glioma_json_url = ""
        s.glioma_seg_url = ""
        s.glioma_volume_loaded = False
        s.glioma_models = model_items()
        s.glioma_backend = self.default_backend
        self._build_panel()
        self.remove_old_uploads(in_use=[case_dir])
        if case_dir:
            self.load_case(case_dir)

    def remove_old_uploads(self, in_use=()) -> list:
        """The upload folders under ``<work>/uploads`` untouched for longer than ``upload_max_age_s`` removed
        (upload.remove_old_uploads), never the loaded case's folder nor one in ``in_use``; said in the server log."""
        from .upload import remove_old_uploads
        keep = [self.state.glioma_case_dir, *in_use]
        removed = remove_old_uploads(self.work / "uploads", self.upload_max_age_s, in_use=keep)
        if removed:
            print(f"glioma web: removed {len(removed)} upload folder(s) older than "
                  f"{self.upload_max_age_s / 3600:g} h: {', '.join(p.name for p in removed)}", flush=True)
        return removed

    # ------------------------------------------------------------------ UI
    @property
    def ui(self):
        return self._ui.layout

    def _build_panel(self):
        layout = self._ui.layout
        layout.title.set_text("Glioma Radiogenomics")
        idle = "glioma_busy"  # one job at a time: every action button is disabled while one runs
        with layout.appbar:
            html.Span("{{ glioma_case_id ? 'case ' + glioma_case_id : '' }}", id="glioma-case-id",
                      classes="text-subtitle-2 mx-3")
            VBtn("Demo case", click=self.load_demo, classes="mx-1", id="glioma-demo", size="small",
                 disabled=(idle,))
            VBtn("Segment", click=self.segment, classes="mx-1", id="glioma-segment", size="small",
                 disabled=(f"{idle} || !glioma_volume_loaded",))
            VBtn("Predict", click=self.predict, classes="mx-1", id="glioma-predict", size="small",
                 disabled=(f"{idle} || !glioma_volume_loaded",))
            VProgressLinear(model_value=("glioma_progress",), v_show=("glioma_busy",), absolute=True,
                            location="bottom", color="light-green", height=5, id="glioma-progress")
        with layout.footer:
            html.Span("{{ glioma_status }}", id="glioma-status", classes="text-caption mx-2")
        with layout:
            client.Style(".glioma-table td, .glioma-table th { padding: 2px 8px 2px 0; vertical-align: top; "
                         "text-align: left } .glioma-model-card td { padding: 1px 0 }")
            with VNavigationDrawer(location="right", permanent=True, width=470, id="glioma-drawer",
                                   disable_resize_watcher=True, disable_route_watcher=True):
                self._inputs_card()
                self._results_card()
        layout.flush_content()  # the layout was sent when built: send it again with the panel

    def _inputs_card(self):
        with VCard(classes="ma-2", id="glioma-panel", density="compact"):
            VCardTitle("{{ glioma_case_id ? 'Case ' + glioma_case_id : 'No case loaded' }}",
                       classes="text-subtitle-1")
            with VCardText(classes="pb-1"):
                with html.Div(v_show=("glioma_busy",), id="glioma-job", classes="mb-2"):
                    html.Div("{{ glioma_job }}: {{ glioma_progress }} % {{ glioma_progress_text }}",
                             id="glioma-progress-text", classes="text-caption")
                    VProgressLinear(model_value=("glioma_progress",), color="light-green", height=8, rounded=True)
                with VRow(dense=True):
                    with VCol(cols=9):
                        VTextField(v_model=("glioma_case_dir",), label="Case folder on the server", density="compact",
                                   id="glioma-case-dir", hide_details=True)
                    with VCol(cols=3):
                        VBtn("Load", click=lambda: self.load_case(self.state.glioma_case_dir), size="small",
                             id="glioma-load", disabled=("glioma_busy",), classes="mt-1")
                VTextField(v_model=("glioma_cbv_path",), label="CBV map on the server (optional, DSC perfusion)",
                           placeholder="empty: the case folder's CBV map, if any", density="compact",
                           id="glioma-cbv", hide_details=True, classes="mt-1", persistent_placeholder=True)
                html.Div("{{ glioma_sequences }}", v_if="glioma_sequences", id="glioma-sequences",
                         classes="text-caption mt-1")
                with VRow(dense=True, classes="mt-1"):
                    with VCol(cols=6):
                        VTextField(v_model=("glioma_age",), label="Age (years)", type="number", density="compact",
                                   id="glioma-age", hide_details=True)
                    with VCol(cols=6):
                        VSelect(v_model=("glioma_sex",), items=("glioma_sex_items", SEX_ITEMS), label="Sex",
                                density="compact", id="glioma-sex", hide_details=True)
                    with VCol(cols=6):
                        VSelect(v_model=("glioma_who_grade",), items=("glioma_who_items", WHO_ITEMS),
                                label="WHO grade", density="compact", id="glioma-who-grade", hide_details=True)
                    with VCol(cols=6):
                        VTextField(v_model=("glioma_vasari",), label="VASARI", placeholder="score or auto",
                                   density="compact", id="glioma-vasari", hide_details=True)
                VSelect(v_model=("glioma_backend",), items=("glioma_models",), item_props=True,
                        label="Segmentation model", density="compact", id="glioma-backend", hide_details=True,
                        classes="mt-2")

    def _results_card(self):
        with VCard(classes="ma-2", id="glioma-results-card", v_show=("glioma_results.length || glioma_shim.length",),
                   density="compact"):
            VCardTitle("Results", classes="text-subtitle-1")
            with VCardText():
                html.Div("{{ glioma_synthetic }}", v_if="glioma_synthetic", id="glioma-synthetic",
                         classes="text-caption font-weight-bold text-amber mb-1")
                html.Div("{{ glioma_key_result }}", classes="text-caption mb-1", id="glioma-key-result")
                with html.Table(id="glioma-results", classes="glioma-table",
                                style="font-size: 12px; width: 100%; border-collapse: collapse"):
                    with html.Tr():
                        for h in ("task", "probability", "status", "label (cutoff)", "points"):
                            html.Th(h)
                    with html.Tr(v_for="r in glioma_results", key="r.task", classes="glioma-row"):
                        html.Td("{{ r.task }}", classes="glioma-task")
                        html.Td("{{ r.probability }}", classes="glioma-probability font-weight-bold")
                        html.Td("{{ r.status }}", classes="glioma-row-status", title=("r.status_detail",),
                                style=("{color: r.status_color}",))
                        html.Td("{{ r.label }} ({{ r.cutoff }})")
                        html.Td("{{ r.points }}")
                with html.Div(v_if="glioma_shim.length", id="glioma-shim", classes="mt-2"):
                    html.Div("{{ glioma_shim_title }}", classes="text-caption font-weight-bold",
                             id="glioma-shim-title")
                    with html.Table(classes="glioma-table", style="font-size: 12px; width: 100%"):
                        with html.Tr():
                            for h in ("task", "result", "status", "model (trained on)"):
                                html.Th(h)
                        with html.Tr(v_for="r in glioma_shim", key="r.task + r.model", classes="glioma-shim-row"):
                            html.Td("{{ r.task }}")
                            html.Td("{{ r.result }}", classes="font-weight-bold")
                            html.Td("{{ r.status }}", title=("r.status_detail",), style=("{color: r.status_color}",))
                            html.Td("{{ r.model }} ({{ r.trained_on }})")
                    with html.Details(v_for="r in glioma_shim", key="'card-' + r.task + r.model",
                                      classes="glioma-shim-card", style="font-size: 11px"):
                        html.Summary("Model card: {{ r.title }}")
                        _model_card_table("r.model_card")
                    with html.Div(v_for="r in glioma_shim", key="'nomogram-' + r.task + r.model"):
                        # the Choi 2021 hybrid's nomogram (render.nomogram_results), drawn like the tasks' below
                        html.Img(v_if="r.nomogram_png", src=("r.nomogram_png",),
                                 classes="glioma-nomogram glioma-shim-nomogram my-1", alt=("'nomogram ' + r.title",),
                                 style="width: 100%; background: white")
                        html.Div("{{ r.nomogram_failed }}", v_if="r.nomogram_failed", classes="text-orange",
                                 style="font-size: 11px")
                with html.Div(v_if="glioma_warnings.length", id="glioma-warnings", classes="mt-2"):
                    html.Div("Warnings", classes="text-caption font-weight-bold text-orange")
                    with html.Ul(style="font-size: 11px; padding-left: 16px"):
                        html.Li("{{ w }}", v_for="w in glioma_warnings", key="w")
                html.Div("{{ glioma_reuse }}", v_if="glioma_reuse", id="glioma-reuse", classes="text-caption mt-1")
                with html.Div(classes="mt-1"):
                    html.A("report.html", href=("glioma_report_url",), target="_blank", v_if="glioma_report_url",
                           id="glioma-report", classes="mr-3")
                    html.A("report.pdf", href=("glioma_report_url.replace('report.html', 'report.pdf')",),
                           target="_blank", v_if="glioma_report_url", id="glioma-report-pdf", classes="mr-3")
                    html.A("predictions.json", href=("glioma_json_url",), target="_blank", v_if="glioma_json_url",
                           id="glioma-json", classes="mr-3")
                    html.A("segmentation.nii.gz", href=("glioma_seg_url",), v_if="glioma_seg_url",
                           id="glioma-seg-download")
                VDivider(classes="my-2")
                with VTabs(v_model=("glioma_task",), density="compact", id="glioma-task-tabs"):
                    VTab("{{ r.task }}", v_for="(r, i) in glioma_results", key="r.task", value=("i",))
                with html.Div(v_for="(r, i) in glioma_results", key="'detail-' + r.task", v_show=("glioma_task === i",),
                              classes="glioma-task-detail", style="font-size: 11px"):
                    html.Div("{{ r.task }}: {{ r.probability }} - {{ r.status_detail }}", classes="mt-1")
                    html.Div("{{ w }}", v_for="w in r.warnings", key="w", classes="text-orange")
                    html.Img(src=("r.nomogram_png",), v_if="r.nomogram_png", classes="glioma-nomogram my-1",
                             alt=("'nomogram ' + r.task",), style="width: 100%; background: white")
                    html.Div("Points per variable (0-100 each): {{ r.nomogram }}", v_if="!r.nomogram_png")
                    html.Div("Model card", classes="font-weight-bold mt-1")
                    _model_card_table("r.model_card")
                html.Div(DISCLAIMER, classes="text-caption mt-2")

    # ------------------------------------------------------------------ background jobs
    def _refuse_if_busy(self) -> bool:
        if self.state.glioma_busy:
            self.state.glioma_status = f"{self.state.glioma_job} is still running: wait for it to finish"
            return True
        return False

    def _start_job(self, name: str, compute: Callable, land: Callable) -> None:
        """Run ``compute(progress)`` (no MRML / VTK inside) in a worker thread, then ``land(result)`` on the loop;
        the progress bar follows ``progress``; every action button is disabled until it ends."""
        self._progress = (0.0, "starting")
        self.state.glioma_busy = True
        self.state.glioma_job = name
        self.state.glioma_progress = 0
        self.state.glioma_progress_text = "starting"
        self.state.glioma_status = f"{name}: running in the background..."
        asynchronous.create_task(self._run_job(name, compute, land))

    async def _run_job(self, name: str, compute: Callable, land: Callable):
        from GliomaRadiogenomicsLib.progress import Progress

        def report(fraction, message):
            self._progress = (max(fraction, self._progress[0]), message or self._progress[1])
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, compute, Progress(report))
        try:
            while not future.done():
                await asyncio.wait([future], timeout=0.25)
                fraction, message = self._progress
                with self.state:
                    self.state.glioma_progress = round(100 * fraction, 1)
                    self.state.glioma_progress_text = f"{message} ({time.perf_counter() - t0:.0f} s)"
            result = future.result()
            with self.state:
                self.state.glioma_progress = 100
                self.state.glioma_progress_text = "showing the result"
            with self.state:
                land(result, time.perf_counter() - t0)
        except Exception as exc:  # shown to the user, the server keeps running
            with self.state:
                self.state.glioma_status = f"{name} failed: {exc}"
        finally:
            with self.state:
                self.state.glioma_busy = False
                self.state.glioma_job = ""

    # ------------------------------------------------------------------ actions (the modules' Logic)
    def _show(self, nodes):
        """The reference volume in the slice views; no volume rendering (the 3D view is for the tumour's surface,
        not the patient's face)."""
        from GliomaMRML.logic import reference_node
        ref = reference_node(nodes)
        dm = self.slicer_app.display_manager
        dm.show_volume_in_slice_background(ref)
        dm.show_volume_in_slice_foreground(None)
        dm.set_node_visible_in_group(ref)
        dm.reset_views()
        self._logic._segment_editor_logic.on_volume_changed(ref)
        self._logic.data.is_volume_loaded = True
        self.state.glioma_volume_loaded = True

    def _clinical_to_fields(self, clinical: dict) -> None:
        s = self.state
        age = clinical.get("age")
        s.glioma_age = "" if age is None else f"{float(age):g}"
        s.glioma_sex = clinical.get("sex") if clinical.get("sex") in ("M", "F") else ""
        s.glioma_who_grade = str(clinical["who_grade"]) if clinical.get("who_grade") in (2, 3, 4) else ""
        v = clinical.get("vasari_score")
        s.glioma_vasari = "" if v is None else (v if isinstance(v, str) else f"{float(v):g}")

    def clinical_from_fields(self) -> dict:
        """The panel's clinical fields through the one form encoder (clinical_from_parameters); the Case checks
        them (normalize_clinical: an age outside 0-120, a VASARI score that is not a number or 'auto')."""
        from GliomaMRML.logic import clinical_from_parameters
        s = self.state
        return clinical_from_parameters(s.glioma_age or 0, s.glioma_sex or "", s.glioma_who_grade or "",
                                        s.glioma_vasari or "")

    def load_case(self, folder: str, cbv: Optional[str] = None):
        """Load a case folder (its sequences, CBV map, mask and case.json; case-folder discovery as `run --case-dir`).
        ``cbv`` (default: the panel's CBV field) gives the CBV map as a file, as `run --case-dir DIR --cbv FILE`: it
        replaces the folder's; the field is emptied once the case is loaded (it belongs to this case only)."""
        from GliomaMRML.logic import load_case_folder_into_scene
        if self._refuse_if_busy():
            return
        cbv = (self.state.glioma_cbv_path if cbv is None else cbv) or ""
        try:
            self.scene.Clear()  # before preloading: the Paint effect needs a clean scene
            self.nodes, self.clinical, self.case_id = load_case_folder_into_scene(
                self.scene, folder, overrides={"cbv": cbv.strip()} if cbv.strip() else None)
            self.segmentation = None
            self.last_document = self.last_analysis = None
            s = self.state
            s.glioma_case_id = self.case_id
            s.glioma_case_dir = str(folder)
            s.glioma_case_synthetic = False
            s.glioma_cbv_path = ""
            self._clear_results()
            self._clinical_to_fields(self.clinical)
            self._show(self.nodes)
            s.glioma_sequences = sequences_line(self.nodes)
            s.glioma_models = model_items(self.nodes)  # availability for this case's sequences
            if any(i["value"] == s.glioma_backend and i["disabled"] for i in s.glioma_models):
                s.glioma_backend = "auto"
            elif s.glioma_backend == "auto" and self.default_backend != "auto":
                s.glioma_backend = self.default_backend
            s.glioma_status = f"case {self.case_id} loaded (FLAIR shown). {DISCLAIMER}"
        except Exception as exc:  # shown to the user, the server keeps running
            self.state.glioma_status = f"could not load {folder}" + (f" with the CBV map {cbv}" if cbv else "") + \
                f": {exc}"

    def load_upload(self, files: list) -> None:
        """Files uploaded through the browser (trame file dicts) -> a fresh case folder under ``<work>/uploads``
        (written atomically and checked by upload.write_uploaded_case), then loaded as a case folder (load_case).
        A refused upload names the file and keeps the case already loaded."""
        import shutil
        from .upload import write_uploaded_case
        if self._refuse_if_busy():
            return
        self.remove_old_uploads()  # never the loaded case's folder
        try:
            up = write_uploaded_case(files, self.work / "uploads")
        except Exception as exc:  # shown to the user, the server keeps running
            self.state.glioma_status = f"upload refused: {exc}"
            return
        self.load_case(str(up.folder), cbv="")  # the upload's own CBV map, if it holds one
        if self.state.glioma_case_dir != str(up.folder):  # load_case said why in the status line
            shutil.rmtree(up.folder, ignore_errors=True)
            return
        notes = up.messages + ([f"not recognised as a sequence (ignored): {', '.join(up.unused)}"] if up.unused
                               else [])
        self.state.glioma_status = (f"uploaded case {self.case_id} loaded ({len(up.files)} files: "
                                    f"{', '.join(up.files)})" + "".join(f"; {n}" for n in notes) + f". {DISCLAIMER}")

    def _clear_results(self):
        s = self.state
        s.glioma_results, s.glioma_warnings, s.glioma_key_result, s.glioma_synthetic = [], [], "", ""
        s.glioma_shim, s.glioma_shim_title = [], ""
        s.glioma_reuse, s.glioma_report_url, s.glioma_json_url, s.glioma_seg_url = "", "", "", ""

    def load_demo(self):
        if self._refuse_if_busy():
            return
        folder = self.work / "demo_case"
        if not (folder / "flair.nii.gz").exists():
            from GliomaRadiogenomicsLib.synthetic import make_demo_case
            make_demo_case(downsample=2).save(folder)
        self.load_case(str(folder), cbv="")  # the demo case has no CBV map
        self.state.glioma_case_synthetic = True
        self.state.glioma_status = f"SYNTHETIC demo case {self.case_id} loaded. " + DISCLAIMER

    def segment(self):
        from GliomaMRML.logic import GliomaSegmentLogic
        if self._refuse_if_busy():
            return
        try:
            logic = GliomaSegmentLogic(self.scene)
            backend = self.state.glioma_backend
            compute = logic.prepare(self.nodes, backend=backend, preprocess_options=self.preprocess_options,
                                    backend_options=self.backend_options if backend == self.default_backend else None)
        except Exception as exc:
            self.state.glioma_status = f"segmentation failed: {exc}"
            return

        def land(computed, seconds):
            self._remove_segmentations()
            self.segmentation = logic.land(self.nodes, computed)
            where = self._focus_on_lesion(computed[2])
            self._clear_results()
            self.state.glioma_status = (f"segmentation ready in {seconds:.0f} s ({computed[0].name}){where}: edit it "
                                        "with the brush panel, then Predict")
        self._start_job("Segment", compute, land)

    def _remove_segmentations(self):
        """The previous segmentation nodes (and the working-grid label maps kept with them) leave the scene."""
        from GliomaMRML.logic import KEPT_LABEL_ROLE, KEPT_MASK_ROLE
        for i in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") - 1, -1, -1):
            node = self.scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
            kept = [node.GetNodeReference(role) for role in (KEPT_LABEL_ROLE, KEPT_MASK_ROLE)]
            self.scene.RemoveNode(node)
            for k in kept:
                if k is not None:
                    self.scene.RemoveNode(k)

    def _focus_on_lesion(self, native_label) -> str:
        """Slice views centred on the tumour's centroid, the segmentation's surface in the 3D view (camera on it)."""
        from GliomaMRML.logic import reference_node
        import slicer
        editor = self._logic._segment_editor_logic
        editor.on_volume_changed(reference_node(self.nodes))
        editor.segmentation_editor.set_surface_representation_enabled(True)  # the tumour in 3D, not the head
        editor.data.segment_display.show_3d = True
        center = lesion_center_ras(native_label)
        if center is None:
            return ", no tumour found"
        slicer.vtkMRMLSliceNode.JumpAllSlices(self.scene, *center, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
        for view in self.slicer_app.view_manager.get_threed_views():
            view.reset_camera()
            view.schedule_render()
        return ", views centred on the tumour (RAS {:.0f}, {:.0f}, {:.0f})".format(*center)

    def predict(self):
        import SimpleITK as sitk
        from GliomaMRML.convert import segmentation_node_to_label_image
        from GliomaMRML.logic import GliomaPredictLogic, reference_node
        from GliomaRadiogenomicsLib.io import atomic_write_json, write_image
        from GliomaRadiogenomicsLib.report import write_report
        if self._refuse_if_busy():
            return
        seg = self.segmentation if self.segmentation is not None and self.scene.IsNodePresent(self.segmentation) \
            else next(iter(self.scene.GetNodesByClass("vtkMRMLSegmentationNode")), None)
        if seg is None:
            self.state.glioma_status = "segment first (or draw the tumor with the brush)"
            return
        try:
            clinical = self.clinical_from_fields()
            logic = GliomaPredictLogic(self.scene)
            compute = logic.prepare(self.nodes, seg, clinical, preprocess_options=self.preprocess_options,
                                    synthetic_case=bool(self.state.glioma_case_synthetic), bundles=self.bundles,
                                    case_id=self.case_id or None)
            label = segmentation_node_to_label_image(seg, reference_node(self.nodes))
        except Exception as exc:
            self.state.glioma_status = f"prediction failed: {exc}"
            return
        work = self.work

        def compute_all(progress):  # worker thread: the core only (features, models, report, figures)
            analysis, doc = compute(progress.sub(0.0, 0.85))
            progress.update(0.86, "report (HTML and PDF)")
            write_report(doc, analysis, work / "report.html")  # the CLI run's report.html + report.pdf
            atomic_write_json(work / "predictions.json", doc)
            write_image(sitk.Cast(label, sitk.sitkUInt8), work / "segmentation.nii.gz")
            progress.update(0.95, "nomograms and model cards")
            return analysis, doc, result_card(doc)

        def land(computed, seconds):
            analysis, doc, card = computed
            logic.land((analysis, doc))
            self.n_predictions += 1
            s = self.state
            s.glioma_results, s.glioma_warnings, s.glioma_shim = card["rows"], card["warnings"], card["shim"]
            s.glioma_shim_title = card["shim_title"]
            s.glioma_key_result, s.glioma_synthetic = card["key_result"], card["synthetic"]
            s.glioma_task = 0
            stamp = f"?run={self.n_predictions}"  # a new address per run: no stale browser cache
            s.glioma_report_url = "/glioma_files/report.html" + stamp
            s.glioma_json_url = "/glioma_files/predictions.json" + stamp
            s.glioma_seg_url = "/glioma_files/segmentation.nii.gz" + stamp
            prov = analysis.segmentation_provenance or {}
            reuse = ("preprocessing reused from Segment (no registration or brain extraction)"
                     if prov.get("preprocessing", "").startswith("reused") else
                     "preprocessing done again: " + next((st for st in analysis.pre.steps
                                                          if st.startswith("kept preprocessing not reused")),
                                                         "no kept preprocessing"))
            s.glioma_reuse = (f"Segmentation {prov.get('segmentation_source', 'given')}"
                              + (f" ({prov['segmentation_backend']})" if prov.get("segmentation_backend") else "")
                              + f"; {reuse}; working grid: {prov.get('segmentation_grid', 'n/a')}; {seconds:.0f} s.")
            summary = "; ".join([f"{r['task']} {r['probability']} [{r['status']}]" for r in card["rows"]]
                                + [f"{r['task']} {r['result']} [{r['status']}]" for r in card["shim"]])
            wt = (doc.get("segmentation") or {}).get("volumes_ml", {}).get("WT", float("nan"))
            s.glioma_status = (f"predictions ready (run {self.n_predictions}, case {self.case_id}, WT {wt:.1f} mL, "
                               f"{reuse.split(':')[0]}): {summary}. {DISCLAIMER}")
            self.last_document, self.last_analysis = doc, analysis
        self._start_job("Predict", compute_all, land)


def serve(case_dir: Optional[str] = None, port: int = 8080, open_browser: bool = False, **kw) -> None:
    app = GliomaWebApp(case_dir=case_dir, **kw)
    app.server.start(port=port, host="127.0.0.1", open_browser=open_browser)
