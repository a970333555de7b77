"""A real MRML scene without the Slicer application (slicer-core, trame-slicer, plain Python batch runs).

slicer-core has MRML and the module logics but no ``slicer.app`` / ``slicer.mrmlScene`` / ``slicer.modules``. This
creates a scene, registers the segmentation converter rules and the Colors, Volumes and Segmentations logics that
``slicer.util`` helpers and display nodes look up. Inside the Slicer application, use ``slicer.mrmlScene`` instead.
"""
from __future__ import annotations

import types


def in_slicer_application() -> bool:
    try:
        import slicer
        return getattr(slicer, "app", None) is not None
    except ImportError:
        return False


def create_scene():
    """A ready-to-use scene (also set as ``slicer.mrmlScene``). Raises ImportError with the fix when slicer-core is
    missing, RuntimeError when the unrelated PyPI package ``slicer`` (pulled by shap) shadows it."""
    try:
        import slicer
    except ImportError:
        raise ImportError("real MRML needs slicer-core: pip install -c constraints.txt slicer-core==5.11.0.6") from None
    if not hasattr(slicer, "vtkMRMLScene"):
        raise RuntimeError("`import slicer` is not slicer-core: the PyPI package 'slicer' (a dependency of shap) "
                           "overwrote it; uninstall shap and slicer, then reinstall slicer-core")
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLApplicationLogic(app)
    colors.SetMRMLScene(scene)
    app.SetModuleLogic("Colors", colors)
    volumes = slicer.vtkSlicerVolumesLogic()
    volumes.SetMRMLApplicationLogic(app)
    volumes.SetMRMLScene(scene)
    segs = slicer.vtkSlicerSegmentationsModuleLogic()
    segs.SetMRMLApplicationLogic(app)
    segs.SetMRMLScene(scene)
    app.SetModuleLogic("Segmentations", segs)
    slicer.modules = types.SimpleNamespace(volumes=types.SimpleNamespace(logic=lambda: volumes),
                                           segmentations=types.SimpleNamespace(logic=lambda: segs))
    scene._glioma_keep = (app, colors, volumes, segs)  # keep the logics alive as long as the scene
    return scene


def load_volume(scene, path, name=None):
    """Read a volume file with Slicer's own reader (storage node); the node is named after the file stem."""
    from pathlib import Path
    p = Path(path)
    stem = p.name.split(".")[0] if name is None else name
    vol = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", stem)
    sn = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    sn.SetFileName(str(p))
    if not sn.ReadData(vol):
        scene.RemoveNode(vol)
        scene.RemoveNode(sn)
        raise ValueError(f"{p}: Slicer could not read this volume")
    vol.SetAndObserveStorageNodeID(sn.GetID())
    return vol
