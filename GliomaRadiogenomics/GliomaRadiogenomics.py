"""GliomaRadiogenomics workflow module: four volumes + clinical data -> segmentation -> research probabilities.

Thin adapter: the widget reads the UI (.ui file) and a parameter node; GliomaMRML.logic converts MRML nodes to
core inputs; all science is in GliomaRadiogenomicsLib (pip-installable, no Slicer).
"""
import os

import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleTest,
                                           ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer import vtkMRMLScalarVolumeNode


class GliomaRadiogenomics(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Glioma Radiogenomics"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = []
        self.parent.contributors = ["GliomaRadiogenomics developers"]
        self.parent.helpText = ("Virtual biopsy for glioma: segmentation, radiomics and research probabilities of IDH "
                                "mutation, glioma-associated epilepsy and ATRX mutation with nomogram points. "
                                "Research use only, not a diagnosis. The default models are trained on SYNTHETIC data.")
        self.parent.acknowledgementText = ("Methods from Wang 2025, Choi 2021, Liu 2024, Shim 2021; PyRadiomics; "
                                           "ICBM152 template (nilearn) for the synthetic demo case.")


@parameterNodeWrapper
class GliomaRadiogenomicsParameterNode:
    t1: vtkMRMLScalarVolumeNode
    t1c: vtkMRMLScalarVolumeNode
    t2: vtkMRMLScalarVolumeNode
    flair: vtkMRMLScalarVolumeNode
    age: int = 0
    sex: str = "not given"
    outputFolder: str = ""


class GliomaRadiogenomicsWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from GliomaMRML import widgets
        self.widgets = widgets
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/GliomaRadiogenomics.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        from GliomaMRML.logic import GliomaRadiogenomicsLogic
        self.logic = GliomaRadiogenomicsLogic(slicer.mrmlScene)
        self._parameterNode = GliomaRadiogenomicsParameterNode(self.logic_parameter_node())
        self._parameterNode.connectGui(self.ui)
        widgets.auto_assign_volumes(self.ui, slicer.mrmlScene)
        self.ui.runButton.connect("clicked(bool)", self.onRun)
        self.ui.editButton.connect("clicked(bool)", self.onEdit)
        self.ui.cancelButton.enabled = False
        self.segmentation = None

    def logic_parameter_node(self):
        node = slicer.mrmlScene.GetSingletonNode("GliomaRadiogenomics", "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
            node.SetSingletonTag("GliomaRadiogenomics")
            node.SetName("GliomaRadiogenomics")
        return node

    def onRun(self):
        with slicer.util.tryWithErrorDisplay("Glioma analysis failed.", waitCursor=True):
            nodes = self.widgets.selected_volumes(self.ui)
            self.segmentation, doc, table, charts = self.logic.run(
                nodes, self.widgets.clinical_from_ui(self.ui), self.widgets.qt_progress(self.ui), self.segmentation)
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()
            out = self._parameterNode.outputFolder
            if out:
                self.logic.predict_logic.save_report(os.path.join(out, "report.html"))

    def onEdit(self):
        if self.segmentation is not None:
            self.widgets.open_segment_editor(self.segmentation, self.ui.flairSelector.currentNode())


class GliomaRadiogenomicsTest(ScriptedLoadableModuleTest):
    """Runs in Slicer's CTest: the whole workflow on the built-in SYNTHETIC demo case (downsampled for speed)."""

    def runTest(self):
        slicer.mrmlScene.Clear()
        self.test_workflow_on_demo_case()

    def test_workflow_on_demo_case(self):
        import SimpleITK as sitk
        from GliomaMRML.convert import sitk_to_volume_node
        from GliomaMRML.logic import GliomaRadiogenomicsLogic
        from GliomaRadiogenomicsLib.synthetic import make_demo_case
        case = make_demo_case(downsample=2)
        nodes = {s: sitk_to_volume_node(sitk.Cast(img, sitk.sitkFloat32), slicer.mrmlScene, s)
                 for s, img in case.images.items()}
        seg, doc, table, charts = GliomaRadiogenomicsLogic(slicer.mrmlScene).run(nodes, {"age": 58, "sex": "M"})
        self.assertGreater(doc["segmentation"]["volumes_ml"]["WT"], 0)
        for task in ("IDH", "epilepsy", "ATRX"):
            self.assertTrue(0.0 <= doc[task]["probability"] <= 1.0)
        self.assertEqual(table.GetNumberOfRows(), 3)
        self.delayDisplay("GliomaRadiogenomics workflow test passed")
