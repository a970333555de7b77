"""MRML <-> core conversions shared by the three Slicer modules.

Uses only MRML / VTK / numpy (no slicer.app, slicer.modules or Qt), so it runs in Slicer, in Slicer batch mode,
under slicer-core (tests) and under trame-slicer. The science stays in GliomaRadiogenomicsLib.
"""
from .convert import (  # noqa: F401
    BRATS_SEGMENTS,
    label_image_to_segmentation_node,
    segmentation_node_to_label_image,
    sitk_to_volume_node,
    volume_node_to_sitk,
    predictions_to_table_node,
    nomogram_charts,
    nomogram_to_plot_nodes,
)
