"""Intensity helpers shared by segmentation, location / T2-FLAIR mismatch and VASARI features."""
from __future__ import annotations

import numpy as np


def robust_z(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(a - median) / (1.4826 MAD) over ``mask``: robust to the tumor occupying part of the brain."""
    v = a[mask]
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med))) * 1.4826
    if mad <= 0:
        mad = float(v.std()) or 1.0
    return ((a - med) / mad).astype(np.float32)
