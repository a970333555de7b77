"""GliomaSegment: tumor segmentation with the models of the segmentation model registry (title and availability
in the backend list), skull stripping and device choices, as a segmentation node with named, coloured segments, an
"Edit in Segment Editor" button and Dice against a reference segmentation. Thin adapter over
GliomaMRML.logic.GliomaSegmentLogic."""
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleTest,
                                           ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode


class GliomaSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Glioma Segment"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["GliomaRadiogenomics developers"]
        self.parent.helpText = ("Glioma segmentation from T1, T1c, T2 and FLAIR: necrosis, edema and enhancing "
                                "tumor (BraTS labels). Review and correct the result in Segment Editor.")
        self.parent.acknowledgementText = ""


@parameterNodeWrapper
class GliomaSegmentParameterNode:
    t1: vtkMRMLScalarVolumeNode
    t1c: vtkMRMLScalarVolumeNode
    t2: vtkMRMLScalarVolumeNode
    flair: vtkMRMLScalarVolumeNode
    referenceSegmentation: vtkMRMLSegmentationNode
    backend: str = "auto"
    brainMask: str = "auto"
    nnunetModel: str = ""
    device: str = "auto"


class GliomaSegmentWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from GliomaMRML import widgets
        from GliomaMRML.logic import GliomaSegmentLogic
        self.widgets = widgets
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/GliomaSegment.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        self.logic = GliomaSegmentLogic(slicer.mrmlScene)
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "GliomaSegment")
        self._parameterNode = GliomaSegmentParameterNode(node)
        self._parameterNode.connectGui(self.ui)
        widgets.auto_assign_volumes(self.ui, slicer.mrmlScene)
        # the model list comes from the registry (title + availability, refreshed when the volumes change); the
        # item data is the backend id stored in the parameter node
        self.ui.backendComboBox.connect("currentIndexChanged(int)", self.onBackendChanged)
        for s in ("t1", "t1c", "t2", "flair"):
            getattr(self.ui, f"{s}Selector").connect("currentNodeChanged(vtkMRMLNode*)", self.refreshModels)
        self.refreshModels()
        self.ui.runButton.connect("clicked(bool)", self.onRun)
        self.ui.editButton.connect("clicked(bool)", self.onEdit)
        self.segmentation = None

    def refreshModels(self, *_):
        import qt
        combo = self.ui.backendComboBox
        current = self._parameterNode.backend
        combo.blockSignals(True)
        combo.clear()
        for c in self.logic.model_choices(self.widgets.selected_volumes(self.ui)):
            combo.addItem(c["label"], c["id"])
            combo.setItemData(combo.count - 1, c["reason"], qt.Qt.ToolTipRole)
            if not c["available"]:
                combo.model().item(combo.count - 1).setEnabled(False)
        ids = [combo.itemData(i) for i in range(combo.count)]
        combo.currentIndex = ids.index(current) if current in ids else 0
        combo.blockSignals(False)
        self.onBackendChanged(combo.currentIndex)

    def onBackendChanged(self, index):
        backend = self.ui.backendComboBox.itemData(index)
        if backend and self._parameterNode.backend != backend:
            self._parameterNode.backend = backend

    def onRun(self):
        with slicer.util.tryWithErrorDisplay("Segmentation failed.", waitCursor=True):
            p = self._parameterNode
            from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
            backend_options = ({"model_folder": p.nnunetModel, "device": p.device} if p.backend == "nnunet" else
                               {"device": p.device} if p.backend in ("auto", "lgg-unet2d") else {})
            self.segmentation = self.logic.segment(
                self.widgets.selected_volumes(self.ui), p.backend, progress=self.widgets.qt_progress(self.ui),
                preprocess_options=PreprocessOptions(brain_mask=p.brainMask, device=p.device),
                backend_options=backend_options)
            if p.referenceSegmentation is not None:
                from GliomaMRML.logic import reference_node
                d = self.logic.dice(self.segmentation, p.referenceSegmentation,
                                    reference_node(self.widgets.selected_volumes(self.ui)))
                self.ui.statusLabel.text = "Dice: " + ", ".join(f"{k} {v:.3f}" for k, v in d.items())

    def onEdit(self):
        if self.segmentation is not None:
            from GliomaMRML.logic import reference_node
            self.widgets.open_segment_editor(self.segmentation, reference_node(self.widgets.selected_volumes(self.ui)))


class GliomaSegmentTest(ScriptedLoadableModuleTest):
    def runTest(self):
        slicer.mrmlScene.Clear()
        import SimpleITK as sitk
        from GliomaMRML.convert import sitk_to_volume_node, segmentation_node_to_label_image
        from GliomaMRML.logic import GliomaSegmentLogic
        from GliomaRadiogenomicsLib.synthetic import make_demo_case
        case = make_demo_case(downsample=2)
        nodes = {s: sitk_to_volume_node(sitk.Cast(img, sitk.sitkFloat32), slicer.mrmlScene, s)
                 for s, img in case.images.items()}
        seg = GliomaSegmentLogic(slicer.mrmlScene).segment(nodes)
        lab = sitk.GetArrayFromImage(segmentation_node_to_label_image(seg, nodes["flair"]))
        self.assertGreater(int((lab > 0).sum()), 0)
        self.assertEqual(seg.GetSegmentation().GetNumberOfSegments(), 3)
        self.delayDisplay("GliomaSegment test passed")
