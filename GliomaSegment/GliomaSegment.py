"""GliomaSegment: tumor segmentation with the models of the segmentation model registry (title and availability
in the backend list), skull stripping and device choices, as a segmentation node with named, coloured segments, an
"Edit in Segment Editor" button and Dice against a reference segmentation. Thin adapter over
GliomaMRML.logic.GliomaSegmentLogic; the segmentation runs in a background process (progress, Cancel).

Lifecycle as Slicer's scripted-module template: singleton parameter node, scene-close observers, enter / exit,
cleanup, GUI bound to the parameter node (the inputs are read from it). Loads without the science packages: they
are installed on first use (GliomaMRML.install)."""
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleTest,
                                           ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.util import VTKObservationMixin
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode


class GliomaSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Glioma Segment"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["GliomaRadiogenomics"]  # its folder holds GliomaMRML and the core package
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


class GliomaSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._volumeIds = None
        self.segmentation = None
        self.runner = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from GliomaMRML.install import ensure_dependencies
        if not ensure_dependencies():  # first use: the dialog lists what is missing and installs it
            from GliomaMRML.install import add_install_button
            add_install_button(self.layout, self.moduleName)
            return
        from GliomaMRML import widgets
        from GliomaMRML.logic import GliomaSegmentLogic
        self.widgets = widgets
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/GliomaSegment.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        self.logic = GliomaSegmentLogic(slicer.mrmlScene)
        self.runner = widgets.BackgroundRunner(self.ui, self.onJobDone)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        # the model list comes from the registry (title + availability, refreshed when the volumes change); the
        # item data is the backend id stored in the parameter node
        self.ui.backendComboBox.connect("currentIndexChanged(int)", self.onBackendChanged)
        self.ui.runButton.connect("clicked(bool)", self.onRun)
        self.ui.editButton.connect("clicked(bool)", self.onEdit)
        self.initializeParameterNode()

    # --- lifecycle (Slicer's scripted-module template) ---
    def cleanup(self):
        if self.runner is not None:
            self.runner.cleanup()
        self.removeObservers()

    def enter(self):
        if self.logic is not None:
            self.initializeParameterNode()

    def exit(self):
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        if self.runner is not None and self.runner.running:
            self.runner.cancel()
        self.segmentation = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.widgets.initialize_parameter_node(self, GliomaSegmentParameterNode)

    def setParameterNode(self, inputParameterNode):
        self.widgets.set_parameter_node(self, inputParameterNode)

    def onParameterNodeModified(self, caller=None, event=None):
        p = self._parameterNode
        ids = self.widgets.volume_ids(p)
        if ids != self._volumeIds:  # a new input selection: models for these sequences; the old result is not theirs
            self._volumeIds = ids
            self.refreshModels()
            if self.segmentation is not None and self.logic_segmentation_for(p) is None:
                self.segmentation.SetDisplayVisibility(False)  # the previous patient's: hidden, kept in the scene
                self.segmentation = None
        self.ui.runButton.enabled = (not self.runner.running and
                                     (p.flair is not None or p.t2 is not None))
        self.ui.editButton.enabled = self.segmentation is not None

    def logic_segmentation_for(self, p):
        from GliomaMRML.logic import segmentation_for_run
        return segmentation_for_run(slicer.mrmlScene, self.segmentation, self.widgets.volumes_from_parameters(p))

    def refreshModels(self, *_):
        import qt
        combo = self.ui.backendComboBox
        current = self._parameterNode.backend
        combo.blockSignals(True)
        combo.clear()
        for c in self.logic.model_choices(self.widgets.volumes_from_parameters(self._parameterNode)):
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
        if backend and self._parameterNode is not None and self._parameterNode.backend != backend:
            self._parameterNode.backend = backend

    # --- actions ---
    def onRun(self):
        import tempfile
        with slicer.util.tryWithErrorDisplay("Segmentation could not start.", waitCursor=True):
            p = self._parameterNode
            self.nodes = self.widgets.volumes_from_parameters(p)
            self.out_dir = tempfile.mkdtemp(prefix="glioma-segment-")
            self.runner.start(self.logic.start(self.nodes, self.out_dir, p.backend, p.brainMask, p.device,
                                               p.nnunetModel if p.backend == "nnunet" else ""))

    def onJobDone(self, st):
        self.onParameterNodeModified()
        if st.error:
            if not st.cancelled:
                slicer.util.errorDisplay("Segmentation failed: " + st.error)
            return
        with slicer.util.tryWithErrorDisplay("Loading the segmentation failed."):
            self.segmentation = self.logic.finish(self.out_dir, self.nodes, self.logic_segmentation_for(
                self._parameterNode))
            p = self._parameterNode
            if p.referenceSegmentation is not None:
                from GliomaMRML.logic import reference_node
                d = self.logic.dice(self.segmentation, p.referenceSegmentation, reference_node(self.nodes))
                self.ui.statusLabel.text = "Dice: " + ", ".join(f"{k} {v:.3f}" for k, v in d.items())
            else:
                self.ui.statusLabel.text = "done: review and correct it in Segment Editor"
        self.onParameterNodeModified()

    def onEdit(self):
        if self.segmentation is not None:
            from GliomaMRML.logic import reference_node
            self.widgets.open_segment_editor(self.segmentation, reference_node(
                self.widgets.volumes_from_parameters(self._parameterNode)))


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
