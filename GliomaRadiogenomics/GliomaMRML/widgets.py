"""Qt helpers shared by the three module widgets (desktop Slicer only; the logic lives in logic.py)."""
from __future__ import annotations

from GliomaRadiogenomicsLib.sequences import IMAGE_KEYS as SEQUENCE_KEYS  # t1, t1c, t2, flair, cbv


def selected_volumes(ui) -> dict:
    """The selectors' volumes (a module without a CBV selector has no "cbv" key)."""
    return {s: getattr(ui, f"{s}Selector").currentNode() for s in SEQUENCE_KEYS if hasattr(ui, f"{s}Selector")}


def clinical_from_ui(ui) -> dict:
    age = ui.ageSpinBox.value if ui.ageSpinBox.value > 0 else None
    sex = ui.sexComboBox.currentText if ui.sexComboBox.currentText in ("M", "F") else None
    out = {"age": age, "sex": sex}
    if hasattr(ui, "gradeComboBox") and ui.gradeComboBox.currentText in ("2", "3", "4"):
        out["who_grade"] = int(ui.gradeComboBox.currentText)
    if hasattr(ui, "vasariLineEdit") and ui.vasariLineEdit.text.strip():
        out["vasari_score"] = ui.vasariLineEdit.text.strip()
    return out


def show_disclaimer(ui) -> None:
    """The module's banner: research probabilities, not diagnoses, and what each task's default model was trained on
    (bundle.default_models_line, read from the shipped registry: SYNTHETIC is said only of the models that are)."""
    from GliomaRadiogenomicsLib.bundle import default_models_line
    try:
        line = default_models_line()
    except Exception as e:  # a damaged registry or bundle must not stop the module from opening: runs name it
        line = f"Default models: could not be read ({e})."
    ui.disclaimerLabel.text = "Research probabilities, not diagnoses. " + line


def auto_assign_volumes(ui, scene) -> None:
    """Fill empty selectors with the volumes whose names the core recognises as T1 / T1c / T2 / FLAIR."""
    from .logic import assign_volumes_by_name
    chosen = assign_volumes_by_name(scene, selected_volumes(ui))
    for seq, node in chosen.items():
        sel = getattr(ui, f"{seq}Selector", None)
        if sel is not None and sel.currentNode() is None and node is not None:
            sel.setCurrentNode(node)


def qt_progress(ui):
    """A core Progress that drives the module's progress bar and status label."""
    import slicer
    from GliomaRadiogenomicsLib.progress import Progress

    def cb(fraction, message):
        ui.progressBar.value = int(100 * fraction)
        ui.statusLabel.text = message
        slicer.app.processEvents()
    return Progress(cb)


def open_segment_editor(segmentation_node, source_volume_node) -> None:
    import slicer
    slicer.util.selectModule("SegmentEditor")
    widget = slicer.modules.segmenteditor.widgetRepresentation().self().editor
    widget.setSegmentationNode(segmentation_node)
    widget.setSourceVolumeNode(source_volume_node)


def volumes_from_parameters(p) -> dict:
    """The inputs as the GUI has bound them to the parameter node (never read back from the Qt widgets); the CBV map
    only where the module has a CBV slot."""
    return {s: getattr(p, s) for s in SEQUENCE_KEYS if s != "cbv" or hasattr(p, s)}


def volume_ids(p) -> tuple:
    return tuple(n.GetID() if n is not None else None for n in volumes_from_parameters(p).values())


class BackgroundRunner:
    """A module's Run / Cancel / progress for one BackgroundJob (desktop Slicer: a QTimer polls it every 250 ms, so
    the GUI never blocks). ``on_done(status)`` runs once the job ends (also when cancelled or failed)."""

    def __init__(self, ui, on_done):
        import qt
        self.ui, self.on_done, self.job = ui, on_done, None
        self.timer = qt.QTimer()
        self.timer.setInterval(250)
        self.timer.connect("timeout()", self.poll)
        ui.cancelButton.connect("clicked(bool)", self.cancel)
        ui.cancelButton.enabled = False

    @property
    def running(self) -> bool:
        return self.job is not None and self.timer.isActive()

    def start(self, job) -> None:
        self.job = job
        self.ui.runButton.enabled, self.ui.cancelButton.enabled = False, True
        self.ui.progressBar.value = 0
        self.timer.start()

    def poll(self) -> None:
        st = self.job.poll()
        self.ui.progressBar.value = int(100 * st.progress)
        self.ui.statusLabel.text = st.message
        if st.running:
            return
        self.timer.stop()
        self.ui.cancelButton.enabled = False
        if st.error:
            self.ui.statusLabel.text = "cancelled" if st.cancelled else "failed"
        self.on_done(st)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def cleanup(self) -> None:
        self.timer.stop()
        self.cancel()


def wrap(parameter_node_class, node):
    """The module's parameterNodeWrapper class around its singleton node (logic.getParameterNode)."""
    return parameter_node_class(node)


def auto_assigned(scene, current: dict) -> dict:
    """T1 / T1c / T2 / FLAIR of the scene recognised by name; the volumes already chosen are kept."""
    from .logic import assign_volumes_by_name
    return assign_volumes_by_name(scene, current)


def set_parameter_node(widget, node) -> None:
    """The scripted-module template's setParameterNode, shared by the three module widgets: disconnect the GUI and
    the observer of the previous parameter node, connect them to ``node`` (None: none) and refresh."""
    import vtk
    if widget._parameterNode is not None:
        widget._parameterNode.disconnectGui(widget._parameterNodeGuiTag)
        widget.removeObserver(widget._parameterNode, vtk.vtkCommand.ModifiedEvent, widget.onParameterNodeModified)
    widget._parameterNode = node
    if node is not None:
        widget._parameterNodeGuiTag = node.connectGui(widget.ui)
        widget.addObserver(node, vtk.vtkCommand.ModifiedEvent, widget.onParameterNodeModified)
        widget.onParameterNodeModified()


def initialize_parameter_node(widget, node_class) -> None:
    """The module's singleton parameter node wrapped in ``node_class``; empty volume slots filled with the scene's
    volumes whose names the core recognises."""
    import slicer
    widget.setParameterNode(wrap(node_class, widget.logic.getParameterNode()))
    p = widget._parameterNode
    for seq, node in auto_assigned(slicer.mrmlScene, volumes_from_parameters(p)).items():
        if hasattr(p, seq) and getattr(p, seq) is None and node is not None:
            setattr(p, seq, node)


class NomogramSelector:
    """The "Nomogram:" combo box of the GliomaPredict and workflow widgets (desktop Slicer): one item per chart of
    logic.nomogram_choices (which nomograms, their order and labels are decided there); selecting one shows its chart
    in the layout's plot view (plots logic ShowChartInLayout). Empty and disabled before a run and after a scene
    close; a run's choices select the first."""

    def __init__(self, combo):
        self.combo, self.ids = combo, []
        combo.connect("currentIndexChanged(int)", self.show)
        self.clear()

    def clear(self) -> None:
        self.ids = []
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.blockSignals(False)
        self.combo.enabled = False

    def set(self, choices) -> None:
        """Fill with ``choices`` (logic.nomogram_choices) and show the first."""
        self.clear()
        self.ids = [c.chart.GetID() for c in choices]
        self.combo.blockSignals(True)
        for c in choices:
            self.combo.addItem(c.label)
        self.combo.blockSignals(False)
        self.combo.enabled = bool(choices)
        if choices:
            self.combo.setCurrentIndex(0)
            self.show(0)

    def show(self, index: int) -> None:
        import slicer
        if not 0 <= index < len(self.ids):
            return
        chart = slicer.mrmlScene.GetNodeByID(self.ids[index])
        if chart is not None:  # removed by the user since: nothing to show
            slicer.modules.plots.logic().ShowChartInLayout(chart)
