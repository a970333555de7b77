"""Batch run over a cohort with the modules' Logic: the Slicer ``--python-script`` entry.

    Slicer --no-main-window --python-script GliomaRadiogenomics/Batch/GliomaBatch.py --input COHORT --output OUT
    python GliomaRadiogenomics/Batch/GliomaBatch.py --input COHORT --output OUT      # slicer-core (real MRML, no app)
    glioma-radiogenomics-batch --input COHORT --output OUT                          # the same, from an installed wheel

The logic and the options are GliomaMRML.batch's (its docstring; ``--help``): this script puts the module folder
(GliomaMRML, GliomaRadiogenomicsLib) on the path and runs it. It sits in a subfolder so that Slicer does not take it
for a module.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]  # the module folder (GliomaMRML, GliomaRadiogenomicsLib)
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from GliomaMRML.batch import batch_options_hash, cli, main, process_case, run_batch  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(cli())
