"""GliomaRadiogenomics workflow module: four volumes + clinical data -> segmentation -> research probabilities.

Thin adapter: the widget reads the UI (.ui file) and a parameter node; GliomaMRML.logic converts MRML nodes to
core inputs; all science is in GliomaRadiogenomicsLib (pip-installable, no Slicer).
"""
import os

import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleTest,
                                           ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.util import VTKObservationMixin
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
                                "Research use only, not a diagnosis. The module's banner says what each default model was trained "
                                "on (real patients or SYNTHETIC data).")
        self.parent.acknowledgementText = ("Methods from Wang 2025, Choi 2021, Liu 2024, Shim 2021; PyRadiomics; "
                                           "ICBM152 template (nilearn) for the synthetic demo case.")
        slicer.app.connect("startupCompleted()", registerSampleData)


def _demo_case_folder() -> str:
    """The built-in SYNTHETIC demo case, written once into the user's cache (generated locally: no download)."""
    from pathlib import Path
    folder = Path.home() / ".cache" / "glioma-radiogenomics" / "demo_case"
    if not (folder / "flair.nii.gz").exists():
        from GliomaRadiogenomicsLib.synthetic import make_demo_case
        make_demo_case().save(folder)
    return str(folder)


def _load_demo_case(*_args, **_kwargs):
    """SampleData custom downloader: generate (first time) and load the four SYNTHETIC demo volumes."""
    from GliomaMRML.install import ensure_dependencies
    if not ensure_dependencies(with_torch=False):  # the demo case needs the core, not torch
        return []
    folder = _demo_case_folder()
    return [slicer.util.loadVolume(os.path.join(folder, f"{s}.nii.gz"), {"name": f"GliomaDemo {s}"})
            for s in ("t1", "t1c", "t2", "flair")]


def registerSampleData():
    """The SYNTHETIC demo case in the Sample Data module (category "Glioma Radiogenomics")."""
    try:
        import SampleData
    except ImportError:
        return
    icons = os.path.join(os.path.dirname(__file__), "Resources", "Icons")
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="Glioma Radiogenomics", sampleName="GliomaDemoCase (SYNTHETIC)",
        uris=["glioma-radiogenomics://demo-case"], fileNames=["GliomaDemoCase"], nodeNames=["GliomaDemo"],
        thumbnailFileName=os.path.join(icons, "GliomaRadiogenomics.png"), loadFileType="VolumeFile",
        customDownloader=_load_demo_case)


@parameterNodeWrapper
class GliomaRadiogenomicsParameterNode:
    t1: vtkMRMLScalarVolumeNode
    t1c: vtkMRMLScalarVolumeNode
    t2: vtkMRMLScalarVolumeNode
    flair: vtkMRMLScalarVolumeNode
    cbv: vtkMRMLScalarVolumeNode      # optional DSC-perfusion CBV map (rCBV: the shim2021 preset)
    age: int = 0
    sex: str = "not given"
    whoGrade: str = "not given"
    vasari: str = ""
    bundles: str = ""                 # model bundle files separated by ; (empty: the shipped default bundles)
    outputFolder: str = ""


class GliomaRadiogenomicsWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._volumeIds = None
        self.segmentation = None
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
        self.widgets = widgets
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/GliomaRadiogenomics.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)
        from GliomaMRML.logic import GliomaRadiogenomicsLogic
        self.logic = GliomaRadiogenomicsLogic(slicer.mrmlScene)
        widgets.show_disclaimer(self.ui)  # what the default models were trained on
        self.runner = widgets.BackgroundRunner(self.ui, self.onJobDone)
        self.nomograms = widgets.NomogramSelector(self.ui.nomogramComboBox)  # every task's nomogram, one shown
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.runButton.connect("clicked(bool)", self.onRun)
        self.ui.editButton.connect("clicked(bool)", self.onEdit)
        self.ui.loadFolderButton.connect("clicked(bool)", self.onLoadFolder)
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
        self.segmentation = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.widgets.initialize_parameter_node(self, GliomaRadiogenomicsParameterNode)

    def setParameterNode(self, inputParameterNode):
        self.widgets.set_parameter_node(self, inputParameterNode)

    def onParameterNodeModified(self, caller=None, event=None):
        p = self._parameterNode
        ids = self.widgets.volume_ids(p)
        if ids != self._volumeIds:
            self._volumeIds = ids
            # a new input selection: the previous patient's segmentation is not this run's (hidden, kept in the scene)
            from GliomaMRML.logic import segmentation_for_inputs
            self.segmentation = segmentation_for_inputs(slicer.mrmlScene, self.segmentation,
                                                        self.widgets.volumes_from_parameters(p))
            if self.nomograms is not None:
                self.nomograms.clear()  # the previous patient's nomograms are not offered with the next one's inputs
        self.ui.runButton.enabled = not self.runner.running and (p.flair is not None or p.t2 is not None)
        self.ui.editButton.enabled = self.segmentation is not None

    def onLoadFolder(self):
        import qt
        folder = qt.QFileDialog.getExistingDirectory(None, "Case folder (FLAIR and/or T2, T1, T1c; or DICOM series)")
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay("Could not load the case folder.", waitCursor=True):
            from GliomaMRML.logic import load_case_folder_into_scene
            nodes, clinical, _ = load_case_folder_into_scene(slicer.mrmlScene, folder)
            p = self._parameterNode
            for seq, node in nodes.items():
                setattr(p, seq, node)
            if clinical.get("age"):
                p.age = int(clinical["age"])
            if clinical.get("sex") in ("M", "F"):
                p.sex = clinical["sex"]

    def onRun(self):
        """Starts the pipeline in a background process; a timer polls it so the GUI stays responsive."""
        import tempfile
        self.nomograms.clear()  # a new run: the last run's nomograms go (shown again only from this run's results)
        with slicer.util.tryWithErrorDisplay("Could not start the glioma analysis.", waitCursor=True):
            from GliomaMRML.logic import bundle_paths, clinical_from_parameters
            p = self._parameterNode
            self.nodes = self.widgets.volumes_from_parameters(p)
            self.out_dir = p.outputFolder or tempfile.mkdtemp(prefix="glioma-")
            # the Logic decides whether the last segmentation belongs to these volumes (segmentation_for_run): the
            # previous patient's segmentation is never sent with the next patient (it stays in the scene)
            job = self.logic.start(self.nodes, self.out_dir, clinical_from_parameters(p.age, p.sex, p.whoGrade,
                                                                                      p.vasari),
                                   segmentation_node=self.segmentation, bundles=bundle_paths(p.bundles))
            self.runner.start(job)
            if self.segmentation is not None and self.logic.run_segmentation is None:
                self.ui.statusLabel.text = "new input volumes: segmenting again (the previous segmentation is kept)"

    def onJobDone(self, st):
        self.onParameterNodeModified()
        if st.error:
            if not st.cancelled:
                slicer.util.errorDisplay("Glioma analysis failed: " + st.error)
            return
        from GliomaMRML.logic import nomogram_choices, reference_node
        from GliomaRadiogenomicsLib.render import shim_lines
        with slicer.util.tryWithErrorDisplay("Loading the analysis results failed.", waitCursor=True):
            self.segmentation, doc, table, charts = self.logic.finish(self.out_dir, reference_node(self.nodes),
                                                                      self.logic.run_segmentation, nodes=self.nodes)
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()
            self.nomograms.set(nomogram_choices(doc, charts))  # the first task's chart shown, the others selectable
            self.ui.statusLabel.text = "\n".join(["done: research probabilities in the table; report.html in "
                                                  + self.out_dir] + shim_lines(doc))
        self.onParameterNodeModified()

    def onEdit(self):
        if self.segmentation is not None:
            from GliomaMRML.logic import reference_node
            self.widgets.open_segment_editor(self.segmentation, reference_node(
                self.widgets.volumes_from_parameters(self._parameterNode)))


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
