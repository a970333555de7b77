"""GliomaPredict: features inside the (edited) tumor segmentation, research probabilities of IDH, epilepsy and
ATRX with nomogram points (table + plot charts), model provenance and an HTML report."""
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleTest,
                                           ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode


class GliomaPredict(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Glioma Predict"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = []
        self.parent.contributors = ["GliomaRadiogenomics developers"]
        self.parent.helpText = ("Research probabilities (not diagnoses) of IDH mutation, glioma-associated epilepsy "
                                "and ATRX mutation with nomogram points. Each model states what it was trained on; "
                                "the default models are trained on SYNTHETIC data.")
        self.parent.acknowledgementText = ""


@parameterNodeWrapper
class GliomaPredictParameterNode:
    t1: vtkMRMLScalarVolumeNode
    t1c: vtkMRMLScalarVolumeNode
    t2: vtkMRMLScalarVolumeNode
    flair: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    preset: str = "wang2025"
    bundles: str = ""
    age: int = 0
    sex: str = "not given"


class GliomaPredictWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from GliomaMRML import widgets
        from GliomaMRML.logic import GliomaPredictLogic
        self.widgets = widgets
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/GliomaPredict.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        self.logic = GliomaPredictLogic(slicer.mrmlScene)
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "GliomaPredict")
        self._parameterNode = GliomaPredictParameterNode(node)
        self._parameterNode.connectGui(self.ui)
        widgets.auto_assign_volumes(self.ui, slicer.mrmlScene)
        self.ui.runButton.connect("clicked(bool)", self.onRun)
        self.ui.saveReportButton.connect("clicked(bool)", self.onSaveReport)

    def onRun(self):
        with slicer.util.tryWithErrorDisplay("Prediction failed.", waitCursor=True):
            p = self._parameterNode
            if p.segmentation is None:  # this module predicts inside the user's (reviewed) segmentation only
                raise ValueError("select the tumor segmentation to predict from (segment it with GliomaSegment, or "
                                 "the workflow module runs both)")
            bundles = [b.strip() for b in p.bundles.split(";") if b.strip()] or None
            doc, table, charts = self.logic.predict(self.widgets.selected_volumes(self.ui), p.segmentation,
                                                    self.widgets.clinical_from_ui(self.ui), p.preset,
                                                    bundles=bundles, progress=self.widgets.qt_progress(self.ui))
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()
            first = next((c for c in charts.values() if c is not None), None)
            if first is not None:
                slicer.modules.plots.logic().ShowChartInLayout(first)
            from GliomaRadiogenomicsLib.render import summary_lines
            self.ui.statusLabel.text = "\n".join(summary_lines(doc))

    def onSaveReport(self):
        import qt
        path = qt.QFileDialog.getSaveFileName(None, "Save report", "report.html", "HTML (*.html);;PDF (*.pdf)")
        if path:
            with slicer.util.tryWithErrorDisplay("Saving the report failed."):
                self.logic.save_report(path)


class GliomaPredictTest(ScriptedLoadableModuleTest):
    def runTest(self):
        slicer.mrmlScene.Clear()
        import SimpleITK as sitk
        from GliomaMRML.convert import label_image_to_segmentation_node, sitk_to_volume_node
        from GliomaMRML.logic import GliomaPredictLogic
        from GliomaRadiogenomicsLib.synthetic import make_demo_case
        case = make_demo_case(downsample=2)
        nodes = {s: sitk_to_volume_node(sitk.Cast(img, sitk.sitkFloat32), slicer.mrmlScene, s)
                 for s, img in case.images.items()}
        seg = label_image_to_segmentation_node(case.label, slicer.mrmlScene, "truth", nodes["flair"])
        doc, table, charts = GliomaPredictLogic(slicer.mrmlScene).predict(nodes, seg, {"age": 58, "sex": "M"})
        for task in ("IDH", "epilepsy", "ATRX"):
            self.assertTrue(0.0 <= doc[task]["probability"] <= 1.0)
            self.assertIsNotNone(charts[task])
        self.delayDisplay("GliomaPredict test passed")
