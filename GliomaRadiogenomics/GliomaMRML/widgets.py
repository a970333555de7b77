"""Qt helpers shared by the three module widgets (desktop Slicer only; the logic lives in logic.py)."""
from __future__ import annotations

SEQUENCE_KEYS = ("t1", "t1c", "t2", "flair")


def selected_volumes(ui) -> dict:
    return {s: getattr(ui, f"{s}Selector").currentNode() for s in SEQUENCE_KEYS}


def clinical_from_ui(ui) -> dict:
    age = ui.ageSpinBox.value if ui.ageSpinBox.value > 0 else None
    sex = ui.sexComboBox.currentText if ui.sexComboBox.currentText in ("M", "F") else None
    out = {"age": age, "sex": sex}
    if hasattr(ui, "gradeComboBox") and ui.gradeComboBox.currentText in ("2", "3", "4"):
        out["who_grade"] = int(ui.gradeComboBox.currentText)
    if hasattr(ui, "vasariLineEdit") and ui.vasariLineEdit.text.strip():
        out["vasari_score"] = ui.vasariLineEdit.text.strip()
    return out


def auto_assign_volumes(ui, scene) -> None:
    """Fill empty selectors with the volumes whose names the core recognises as T1 / T1c / T2 / FLAIR."""
    from .logic import assign_volumes_by_name
    chosen = assign_volumes_by_name(scene, selected_volumes(ui))
    for seq, node in chosen.items():
        sel = getattr(ui, f"{seq}Selector")
        if sel.currentNode() is None and node is not None:
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
