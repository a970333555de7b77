"""The images the product knows: keys and display names (one definition; case.py and inputs.py import it,
so neither imports the other at module level).

- SEQUENCES: the four structural MRI sequences (segmentation, brain mask, the MRI presets);
- PERFUSION: the optional DSC-perfusion map (a CBV or rCBV map; registered to the reference like a sequence, never
  used for the brain mask, the segmentation or N4);
- DERIVED: images computed in the pipeline from an input (rCBV from CBV, perfusion.py), usable by presets.
"""
SEQUENCES = ("t1", "t1c", "t2", "flair")
PERFUSION = ("cbv",)
IMAGE_KEYS = SEQUENCES + PERFUSION            # what a case may hold
DERIVED = {"rcbv": "cbv"}                     # derived image -> the input it is computed from
SEQUENCE_NAMES = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR", "cbv": "CBV", "rcbv": "rCBV"}
