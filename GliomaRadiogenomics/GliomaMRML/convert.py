"""Volume / segmentation / table / plot conversions between MRML nodes and SimpleITK / plain data.

Geometry: MRML stores IJK-to-RAS; SimpleITK stores origin / spacing / direction in LPS. RAS = diag(-1,-1,1) LPS.
A linear parent transform of a volume node is applied (the image is placed where the user sees it).
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import SimpleITK as sitk

BRATS_SEGMENTS = {  # BraTS label -> (segment name, RGB colour 0..1)
    1: ("necrosis", (0.85, 0.2, 0.2)),
    2: ("edema", (0.2, 0.75, 0.3)),
    3: ("enhancing", (1.0, 0.85, 0.1)),
}
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _vtk_matrix_to_numpy(m) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _numpy_to_vtk_matrix(a: np.ndarray):
    import vtk
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(a[r, c]))
    return m


def _world_ijk_to_ras(node) -> np.ndarray:
    import vtk
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    ijk_to_ras = _vtk_matrix_to_numpy(m)
    parent = node.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise ValueError(f"volume '{node.GetName()}' is under a non-linear transform: harden it first")
        w = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(w)
        ijk_to_ras = _vtk_matrix_to_numpy(w) @ ijk_to_ras
    return ijk_to_ras


def geometry_from_ijk_to_ras(ijk_to_ras: np.ndarray):
    lps = _LPS @ ijk_to_ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    return tuple(spacing.tolist()), tuple(lps[:3, 3].tolist()), tuple(direction.flatten().tolist())


def ijk_to_ras_from_image(img: sitk.Image) -> np.ndarray:
    D = np.array(img.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = D * np.array(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    return _LPS @ lps


def volume_node_to_sitk(node) -> sitk.Image:
    """Scalar volume node -> SimpleITK image with the same physical placement."""
    from vtk.util.numpy_support import vtk_to_numpy
    image_data = node.GetImageData()
    if image_data is None:
        raise ValueError(f"volume '{node.GetName()}' has no image data")
    dims = image_data.GetDimensions()  # i, j, k
    arr = vtk_to_numpy(image_data.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    spacing, origin, direction = geometry_from_ijk_to_ras(_world_ijk_to_ras(node))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def sitk_to_volume_node(img: sitk.Image, scene, name: str, node=None, class_name: str = "vtkMRMLScalarVolumeNode"):
    """SimpleITK image -> (new or given) volume node in ``scene``."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk
    arr = sitk.GetArrayFromImage(img)
    if node is None:
        node = scene.AddNewNodeByClass(class_name, name)
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(arr.shape[2], arr.shape[1], arr.shape[0])
    vtk_arr = numpy_to_vtk(np.ascontiguousarray(arr).ravel(), deep=True)
    image_data.GetPointData().SetScalars(vtk_arr)
    node.SetAndObserveImageData(image_data)
    node.SetIJKToRASMatrix(_numpy_to_vtk_matrix(ijk_to_ras_from_image(img)))
    return node


def label_image_to_segmentation_node(label: sitk.Image, scene, name: str = "Glioma segmentation",
                                     reference_volume_node=None, node=None):
    """BraTS label map -> segmentation node with named, coloured segments (necrosis, edema, enhancing)."""
    import slicer
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        node.CreateDefaultDisplayNodes()
    labelmap = sitk_to_volume_node(sitk.Cast(label, sitk.sitkUInt8), scene, name + " labelmap",
                                   class_name="vtkMRMLLabelMapVolumeNode")
    if reference_volume_node is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    seg = node.GetSegmentation()
    seg.RemoveAllSegments()
    arr = sitk.GetArrayViewFromImage(label)
    for value, (seg_name, color) in BRATS_SEGMENTS.items():
        sid = seg.AddEmptySegment(seg_name, seg_name, color)
        one = sitk.Cast(label == value, sitk.sitkUInt8)
        if not (arr == value).any():
            continue
        tmp = sitk_to_volume_node(one, scene, f"{name} {seg_name}", class_name="vtkMRMLLabelMapVolumeNode")
        ids = __import__("vtk").vtkStringArray()
        ids.InsertNextValue(sid)
        slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(tmp, node, ids)
        scene.RemoveNode(tmp)
    scene.RemoveNode(labelmap)
    return node


def segmentation_node_to_label_image(node, reference_volume_node) -> sitk.Image:
    """Segmentation node -> BraTS label map on the reference volume's grid (segments matched by name)."""
    import slicer
    import vtk
    seg = node.GetSegmentation()
    labelmap = reference_volume_node.GetScene().AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "tmp-export")
    try:
        out = None
        ref = volume_node_to_sitk(reference_volume_node)
        for value, (seg_name, _) in BRATS_SEGMENTS.items():
            sid = seg.GetSegmentIdBySegmentName(seg_name)
            if not sid:
                continue
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(sid)
            slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(node, ids, labelmap,
                                                                                  reference_volume_node)
            m = sitk.GetArrayFromImage(volume_node_to_sitk(labelmap)) > 0
            if out is None:
                out = np.zeros(m.shape, np.uint8)
            out[m] = value
        if out is None:
            out = np.zeros(sitk.GetArrayViewFromImage(ref).shape, np.uint8)
        img = sitk.GetImageFromArray(out)
        img.CopyInformation(ref)
        return img
    finally:
        reference_volume_node.GetScene().RemoveNode(labelmap)


def predictions_to_table_node(doc: dict, scene, node=None):
    """predictions.json -> table node: task, probability, status (render.task_rows: valid / extrapolated / out of
    intended use / imputed inputs / SYNTHETIC model / not available, the same words as the report and the CLI),
    label, total points (clipped to the axis, * when the case is off it), model, trained on, synthetic, and the
    status' reasons; then the Shim 2021 tasks of the document (render.shim_rows), one row each."""
    import vtk
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", "Glioma predictions")
    table = node.GetTable()
    table.Initialize()
    cols = ["task", "probability", "status", "label", "total points", "model", "trained on", "synthetic",
            "status details"]
    for c in cols:
        a = vtk.vtkStringArray()
        a.SetName(c)
        table.AddColumn(a)
    from GliomaRadiogenomicsLib.render import shim_rows, task_rows

    def tail(r):  # model, trained on, synthetic, status details: the same for both kinds of row
        return [r.model, r.trained_on, "YES (demonstration only)" if r.synthetic else "no", "; ".join(r.status_notes)]
    rows = [[r.task, r.probability_text, r.status_text, r.label + (f" ({r.reason})" if r.reason else ""),
             r.points_text] + tail(r) for r in task_rows(doc)]
    # the Shim 2021 tasks (CBV map): the probability / risk score in the same column, no nomogram points
    rows += [[r.title, r.value_text, r.status_text,
              f"{r.label} ({r.cutoff_text})" if r.available else f"not computed ({r.reason})", "n/a"] + tail(r)
             for r in shim_rows(doc)]
    for row in rows:
        i = table.InsertNextBlankRow()
        for j, v in enumerate(row):
            table.GetColumn(j).SetValue(i, str(v))
    node.Modified()
    return node


def nomogram_charts(doc: dict, scene) -> Dict[str, Optional[object]]:
    """The nomogram plots of a predictions document, by title: every nomogram the report draws
    (render.nomogram_results: each logistic task's, then each JSON-bundle task entry's, the Choi 2021 hybrid's as
    "IDH (Choi 2021)"), drawn by ``nomogram_to_plot_nodes``; a task of the document without a nomogram (not
    available) maps to None."""
    from GliomaRadiogenomicsLib.render import nomogram_results
    charts = {t: None for t in doc.get("tasks", [])}
    charts.update({title: nomogram_to_plot_nodes(doc, title, scene) for title, _ in nomogram_results(doc)})
    return charts


def nomogram_to_plot_nodes(doc: dict, task: str, scene) -> Optional[object]:
    """The nomogram titled ``task`` among the document's nomograms (render.nomogram_results: a logistic task's name,
    or a JSON-bundle task's title such as "IDH (Choi 2021)") as a Slicer plot (vtkMRMLPlotChartNode), drawn from
    predictions.json's nomogram block
    exactly as the report figure (GliomaRadiogenomicsLib.nomogram.rows): one line series per axis (Points, each
    variable, Total points, Probability; top to bottom) through its ticks, labelled with the tick values, and a
    "This case" series marking the case on every axis (value, points; total; probability). The Total points and
    Probability rows share one scale, drawn over the same width as the points (x = total points * 100 / maximum
    total). A variable the case falls off is named "OUT OF RANGE" in its series (legend) and in the case's label.
    Each series' table holds x (chart position), position (points or total points), value (the tick's value in the
    axis' own units: points, years, level, total points, probability), label and tick (1 = tick, 0 = axis end).
    A document without nomogram axes (written before them): the points per variable as bars."""
    import vtk
    from GliomaRadiogenomicsLib.nomogram import format_probability, rows
    from GliomaRadiogenomicsLib.render import nomogram_results, nomogram_synthetic
    r = dict(nomogram_results(doc)).get(task)
    if not r:
        return None
    block = r["nomogram"]
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{task} nomogram")
    synthetic = nomogram_synthetic(r)
    chart.SetTitle(f"{task}: probability {format_probability(r.get('probability'))} (research use)"
                   + (" - SYNTHETIC model" if synthetic else ""))
    if "axes" not in block:
        return _points_bars(block, task, scene, chart)
    total_max = max(float(block["total_points_range"][1]), 1e-9)
    rs = rows(block)
    case_rows = []

    def table(name, columns):
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
        arrays = []
        for col, kind in columns:
            a = vtk.vtkStringArray() if kind == "s" else vtk.vtkDoubleArray()
            a.SetName(col)
            node.GetTable().AddColumn(a)
            arrays.append(a)
        return node, arrays

    for i, row in enumerate(rs):
        y = float(len(rs) - 1 - i)
        to_x = (lambda v: v) if row["scale"] == "points" else (lambda v: v * 100.0 / total_max)
        node, (xs, ys, pos, val, lab, tick) = table(
            f"{task} nomogram: {row['title']}",
            [("x", "d"), ("y", "d"), ("position", "d"), ("value", "d"), ("label", "s"), ("tick", "d")])
        lo, hi = row["range"]
        pts = [(lo, float("nan"), "", 0.0)] + [(p, v, l, 1.0) for p, l, v in row["ticks"]] + \
              [(hi, float("nan"), "", 0.0)]
        for p, v, l, t in sorted(pts, key=lambda q: (q[0], -q[3])):
            xs.InsertNextValue(to_x(p)); ys.InsertNextValue(y); pos.InsertNextValue(p); val.InsertNextValue(v)
            lab.InsertNextValue(l); tick.InsertNextValue(t)
        case = row["case"]
        name = row["title"]
        if case and case.get("out_of_range"):
            name += " - OUT OF RANGE" + (f" ({case['range_text']})" if case.get("range_text") else "")
        _scatter_series(scene, chart, node, name, "Plus", "Solid", (0.1, 0.1, 0.1))
        if case:
            x = min(max(case["points"], lo), hi)
            if row["key"] == "total points":
                text = f"total {case['label']} points"
            elif row["key"] == "probability":
                text = f"probability {case['label']}"
            else:
                text = f"{row['title']}: {case['label']}, {case['points']:.1f} points"
            if case.get("out_of_range"):
                text += " (OUT OF RANGE: marked at the axis end)"
            case_rows.append((to_x(x), y, case["points"], text, 1.0 if case.get("out_of_range") else 0.0))
    if case_rows:
        node, (xs, ys, pos, lab, out) = table(f"{task} nomogram: this case",
                                              [("x", "d"), ("y", "d"), ("points", "d"), ("label", "s"),
                                               ("out_of_range", "d")])
        for x, y, p, t, o in case_rows:
            xs.InsertNextValue(x); ys.InsertNextValue(y); pos.InsertNextValue(p); lab.InsertNextValue(t)
            out.InsertNextValue(o)
        _scatter_series(scene, chart, node, "This case", "Diamond", "None", (0.75, 0.22, 0.17)).SetMarkerSize(12)
    chart.SetXAxisTitle(f"points (Total points / Probability rows: total points x 100 / {total_max:.1f})")
    chart.SetYAxisTitle("")
    chart.SetLegendVisibility(True)
    chart.SetXAxisRangeAuto(False)
    chart.SetXAxisRange(-5.0, 105.0)
    chart.SetYAxisRangeAuto(False)
    chart.SetYAxisRange(-0.7, len(rs) - 0.3)
    return chart


def _scatter_series(scene, chart, table_node, name: str, marker: str, line: str, color):
    """A scatter plot series of ``table_node``'s x / y columns (labels from its 'label' column) added to ``chart``."""
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", name)
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetXColumnName("x")
    series.SetYColumnName("y")
    series.SetLabelColumnName("label")
    series.SetPlotType(series.PlotTypeScatter)
    series.SetMarkerStyle(getattr(series, f"MarkerStyle{marker}"))
    series.SetLineStyle(getattr(series, f"LineStyle{line}"))
    series.SetColor(*color)
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return series


def _points_bars(block: dict, task: str, scene, chart):
    import vtk
    table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{task} nomogram points")
    t = table_node.GetTable()
    idx = vtk.vtkDoubleArray(); idx.SetName("index")
    pts = vtk.vtkDoubleArray(); pts.SetName("points")
    names = vtk.vtkStringArray(); names.SetName("variable")
    items = list(block["points"].items()) + [("Total points", block["total_points"])]
    for i, (k, v) in enumerate(items):
        idx.InsertNextValue(i); pts.InsertNextValue(float(v)); names.InsertNextValue(k)
    for a in (idx, pts, names):
        t.AddColumn(a)
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{task} points")
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetXColumnName("index")
    series.SetYColumnName("points")
    series.SetLabelColumnName("variable")
    series.SetPlotType(series.PlotTypeBar)
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetXAxisTitle("variable (this predictions document has no nomogram axes: points only)")
    chart.SetYAxisTitle("points")
    return chart


def contributions_to_table_node(doc: dict, scene, node=None, top: int = 15):
    """Each task's largest feature contributions to the linear predictor (signed), plus the case's warnings."""
    import vtk
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", "Glioma feature contributions")
    table = node.GetTable()
    table.Initialize()
    for c in ("task", "feature", "contribution"):
        a = vtk.vtkStringArray()
        a.SetName(c)
        table.AddColumn(a)
    for t in doc.get("tasks", []):
        contrib = (doc[t] or {}).get("feature_contributions") or {}
        for f, v in sorted(contrib.items(), key=lambda kv: -abs(kv[1]))[:top]:
            i = table.InsertNextBlankRow()
            for j, val in enumerate((t, f, f"{v:+.3f}")):
                table.GetColumn(j).SetValue(i, val)
    node.Modified()
    return node
