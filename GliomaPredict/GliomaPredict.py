"""GliomaPredict: features inside the (edited) tumor segmentation, research probabilities of IDH, epilepsy and
ATRX with nomogram points (table + plot charts), model provenance and an HTML report. The prediction runs in a
background process (progress, Cancel); lifecycle as Slicer's scripted-module template (singleton parameter node,
scene-close observers, enter / exit, cleanup, inputs read from the parameter node). Loads without the science
packages: they are installed on first use (GliomaMRML.install)."""
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleTest,
                                           ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.util import VTKObservationMixin
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode


class GliomaPredict(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Glioma Predict"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = ["GliomaRadiogenomics"]  # its folder holds GliomaMRML and the core package
        self.parent.contributors = ["GliomaRadiogenomics developers"]
        self.parent.helpText = ("Research probabilities (not diagnoses) of IDH mutation, glioma-associated epilepsy "
                                "and ATRX mutation with nomogram points. Each model states what it was trained on "
                                "(real patients or SYNTHETIC data): the module's banner and every result say it.")
        self.parent.acknowledgementText = ""


@parameterNodeWrapper
class GliomaPredictParameterNode:
    t1: vtkMRMLScalarVolumeNode
    t1c: vtkMRMLScalarVolumeNode
    t2: vtkMRMLScalarVolumeNode
    flair: vtkMRMLScalarVolumeNode
    cbv: vtkMRMLScalarVolumeNode      # optional DSC-perfusion CBV map (rCBV: the shim2021 preset)
    segmentation: vtkMRMLSegmentationNode
    preset: str = "wang2025"
    bundles: str = ""
    age: int = 0
    sex: str = "not given"


class GliomaPredictWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._volumeIds = None
        self.runner = None
        self.nomograms = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from GliomaMRML.install import ensure_dependencies
        if not ensure_dependencies():  # first use: the dialog lists what is missing and installs it
            from GliomaMRML.install import add_install_button
            add_install_button(self.layout, self.moduleName)
            return
        from GliomaMRML import widgets
        from GliomaMRML.logic import GliomaPredictLogic
        self.widgets = widgets
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/GliomaPredict.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        self.logic = GliomaPredictLogic(slicer.mrmlScene)
        widgets.show_disclaimer(self.ui)  # what the default models were trained on
        self.runner = widgets.BackgroundRunner(self.ui, self.onJobDone)
        self.nomograms = widgets.NomogramSelector(self.ui.nomogramComboBox)  # every task's nomogram, one shown
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.runButton.connect("clicked(bool)", self.onRun)
        self.ui.saveReportButton.connect("clicked(bool)", self.onSaveReport)
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
        if self.nomograms is not None:
            self.nomograms.clear()  # their charts go with the scene
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.widgets.initialize_parameter_node(self, GliomaPredictParameterNode)

    def setParameterNode(self, inputParameterNode):
        self.widgets.set_parameter_node(self, inputParameterNode)

    def onParameterNodeModified(self, caller=None, event=None):
        p = self._parameterNode
        ids = self.widgets.volume_ids(p)
        if ids != self._volumeIds:
            self._volumeIds = ids
            if self.nomograms is not None:
                self.nomograms.clear()  # the previous patient's nomograms are not offered with the next one's inputs
            # a new input selection: a segmentation made for other volumes (the previous patient) is deselected
            from GliomaMRML.logic import segmentation_for_inputs
            if p.segmentation is not None and segmentation_for_inputs(
                    slicer.mrmlScene, p.segmentation, self.widgets.volumes_from_parameters(p)) is None:
                p.segmentation = None
                self.ui.statusLabel.text = "new input volumes: select or make their segmentation"
        self.ui.runButton.enabled = not self.runner.running and p.segmentation is not None

    # --- actions ---
    def onRun(self):
        import tempfile
        self.nomograms.clear()  # a new run: the last run's nomograms go (shown again only from this run's results)
        with slicer.util.tryWithErrorDisplay("Prediction could not start.", waitCursor=True):
            p = self._parameterNode
            from GliomaMRML.logic import bundle_paths, clinical_from_parameters
            bundles = bundle_paths(p.bundles)
            self.out_dir = tempfile.mkdtemp(prefix="glioma-predict-")
            self.runner.start(self.logic.start(self.widgets.volumes_from_parameters(p), p.segmentation, self.out_dir,
                                               clinical_from_parameters(p.age, p.sex), p.preset, bundles))

    def onJobDone(self, st):
        self.onParameterNodeModified()
        if st.error:
            if not st.cancelled:
                slicer.util.errorDisplay("Prediction failed: " + st.error)
            return
        with slicer.util.tryWithErrorDisplay("Loading the predictions failed."):
            doc, table, charts = self.logic.finish(self.out_dir)
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()
            from GliomaMRML.logic import nomogram_choices
            self.nomograms.set(nomogram_choices(doc, charts))  # the first task's chart shown, the others selectable
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
        from GliomaMRML.logic import nomogram_choices  # the widget's "Nomogram:" selector: every task's chart
        self.assertEqual([c.chart for c in nomogram_choices(doc, charts)],
                         [charts[t] for t in ("IDH", "epilepsy", "ATRX")])
        self.delayDisplay("GliomaPredict test passed")
