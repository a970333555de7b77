"""Qt helpers shared by the three module widgets (desktop Slicer only; the logic lives in logic.py)."""
from __future__ import annotations

SEQUENCE_KEYS = ("t1", "t1c", "t2", "flair")


def selected_volumes(ui) -> dict:
    return {s: getattr(ui, f"{s}Selector").currentNode() for s in SEQUENCE_KEYS}


def clinical_from_ui(ui) -> dict:
    age = ui.ageSpinBox.value if ui.ageSpinBox.value > 0 else None
    sex = ui.sexComboBox.currentText if ui.sexComboBox.currentText in ("M", "F") else None
    return {"age": age, "sex": sex}


def auto_assign_volumes(ui, scene) -> None:
    """Pick volumes whose names look like T1 / T1c / T2 / FLAIR when the selectors are empty."""
    patterns = {"t1c": ("t1c", "t1ce", "t1gd", "t1_gd", "post", "gad", "contrast"), "flair": ("flair",),
                "t2": ("t2",), "t1": ("t1",)}
    taken = set()
    nodes = [scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
             for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
    for seq in ("t1c", "flair", "t2", "t1"):
        sel = getattr(ui, f"{seq}Selector")
        if sel.currentNode() is not None:
            continue
        for n in nodes:
            name = n.GetName().lower()
            if n.GetID() in taken or not any(p in name for p in patterns[seq]):
                continue
            if seq == "t2" and "flair" in name:
                continue
            if seq == "t1" and any(p in name for p in patterns["t1c"]):
                continue
            sel.setCurrentNode(n)
            taken.add(n.GetID())
            break


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
