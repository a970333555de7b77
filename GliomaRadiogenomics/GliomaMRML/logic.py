"""Logic of the three Slicer modules: MRML nodes in, core package calls, MRML nodes out.

Every logic takes the scene as an argument and avoids slicer.app / slicer.modules / Qt, so it runs in the desktop
app, in batch mode (`Slicer --no-main-window --python-script`), under slicer-core and under trame-slicer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from GliomaRadiogenomicsLib.case import SEQUENCES, Case
from GliomaRadiogenomicsLib.progress import Progress, null_progress

from .convert import (label_image_to_segmentation_node, nomogram_to_plot_nodes, predictions_to_table_node,
                      segmentation_node_to_label_image, volume_node_to_sitk)


def case_from_nodes(nodes: Dict[str, object], clinical: Optional[dict] = None, case_id: str = "slicer-case") -> Case:
    missing = [s for s in SEQUENCES if nodes.get(s) is None]
    if missing:
        raise ValueError("select a volume for: " + ", ".join(missing))
    images = {s: volume_node_to_sitk(nodes[s]) for s in SEQUENCES}
    paths = {s: f"scene node '{nodes[s].GetName()}'" for s in SEQUENCES}
    return Case(case_id, images, paths, clinical or {})


class GliomaSegmentLogic:
    def __init__(self, scene):
        self.scene = scene

    def segment(self, nodes: Dict[str, object], backend: str = "hyperintensity", brain_mask: str = "auto",
                reference: str = "flair", progress: Progress = null_progress, segmentation_node=None):
        """Preprocess + segment; the result lands on the reference volume's grid as a segmentation node."""
        from GliomaRadiogenomicsLib.preprocess import PreprocessOptions, preprocess
        from GliomaRadiogenomicsLib.segment import get_backend
        case = case_from_nodes(nodes)
        pre = preprocess(case, PreprocessOptions(reference=reference, brain_mask=brain_mask), progress.sub(0, 0.8))
        label = get_backend(backend).segment(pre, progress.sub(0.8, 1.0))
        native = pre.to_native(label)
        if segmentation_node is not None:
            # never lose a user's edits: keep a copy of the existing segmentation node
            copy = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", segmentation_node.GetName() + " (backup)")
            copy.Copy(segmentation_node)
        return label_image_to_segmentation_node(native, self.scene, "Glioma segmentation", nodes[reference],
                                                segmentation_node)

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

    def predict(self, nodes: Dict[str, object], segmentation_node, clinical: Optional[dict] = None,
                preset: str = "wang2025", reference: str = "flair", bundles=None, progress: Progress = null_progress):
        """Features inside the (possibly edited) segmentation -> predictions table and nomogram charts."""
        from GliomaRadiogenomicsLib.bundle import load_bundle, load_default_bundles
        from GliomaRadiogenomicsLib.pipeline import PipelineOptions, analyze_case
        from GliomaRadiogenomicsLib.predict import predict_case
        from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
        case = case_from_nodes(nodes, clinical)
        label = segmentation_node_to_label_image(segmentation_node, nodes[reference])
        opt = PipelineOptions(preprocess=PreprocessOptions(reference=reference), preset=preset, feature_workers=1)
        analysis = analyze_case(case, opt, progress.sub(0, 0.95), label=label)
        loaded = [load_bundle(b) for b in bundles] if bundles else load_default_bundles()
        doc = predict_case(analysis, loaded)
        self.last_document, self.last_analysis = doc, analysis
        table = predictions_to_table_node(doc, self.scene)
        charts = {t: nomogram_to_plot_nodes(doc, t, self.scene) for t in doc["tasks"]}
        progress.update(1.0, "predictions ready")
        return doc, table, charts

    def save_report(self, path) -> Path:
        from GliomaRadiogenomicsLib.report import write_report
        if self.last_document is None:
            raise RuntimeError("run a prediction first")
        return write_report(self.last_document, self.last_analysis, path)


class GliomaRadiogenomicsLogic:
    """The whole workflow (one button): segment, then predict on the (editable) segmentation."""

    def __init__(self, scene):
        self.scene = scene
        self.segment_logic = GliomaSegmentLogic(scene)
        self.predict_logic = GliomaPredictLogic(scene)

    def run(self, nodes: Dict[str, object], clinical: Optional[dict] = None, progress: Progress = null_progress,
            segmentation_node=None):
        if segmentation_node is None:
            segmentation_node = self.segment_logic.segment(nodes, progress=progress.sub(0, 0.4))
        doc, table, charts = self.predict_logic.predict(nodes, segmentation_node, clinical,
                                                        progress=progress.sub(0.4, 1.0))
        return segmentation_node, doc, table, charts
