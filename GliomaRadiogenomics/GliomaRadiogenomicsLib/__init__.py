"""GliomaRadiogenomicsLib: the science of the GliomaRadiogenomics 3D Slicer extension, usable without Slicer.

case -> preprocess -> segment -> regions -> features -> model bundle -> prediction + nomogram -> report.
Outputs are research probabilities, not diagnoses.
"""
__version__ = "0.1.0"
