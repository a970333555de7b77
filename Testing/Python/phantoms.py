"""Co-registered phantoms with their true labels, for tests of features computed from a segmentation."""
import numpy as np
import SimpleITK as sitk

from GliomaRadiogenomicsLib import synthetic as S
from GliomaRadiogenomicsLib.preprocess import PreprocessedCase


def phantom(spec, spacing_mm: int = 2):
    """A preprocessed case on the template grid (ICBM152, i.e. already in atlas space) and its true label map."""
    an = S.load_anatomy(spacing_mm)
    truth, label = S.simulate_truth(spec, an)
    pre = PreprocessedCase("p", {}, None, "flair", {})
    rng = np.random.default_rng(1)
    for s in S.SEQUENCES:
        img = sitk.GetImageFromArray((truth[s] * 1000 + rng.normal(0, 15, truth[s].shape)).astype(np.float32))
        img.CopyInformation(an.reference)
        pre.images[s] = img
    m = sitk.GetImageFromArray(an.icv.astype(np.uint8))
    m.CopyInformation(an.reference)
    pre.brain_mask = m
    lab = sitk.GetImageFromArray(label)
    lab.CopyInformation(an.reference)
    return pre, lab
