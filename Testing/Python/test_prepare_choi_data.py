"""scripts/prepare_choi_data.py's channel set (issue 17 leftovers): T2 (the paper's second sequence) is stored when a
case folder has it; a case without it gets zeros and available False for that channel (the training script then
drops the channel from a variant, the paper's ablation), on a tiny SYNTHETIC case folder."""
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script

sitk = pytest.importorskip("SimpleITK")

REPO = Path(__file__).resolve().parents[2]
# voxel values inside the tumour / in the rest of the head, per sequence (distinct, so channels cannot be swapped)
VALUES = {"t1c": (120.0, 30.0), "t2": (200.0, 50.0), "flair": (180.0, 40.0)}


@pytest.fixture(scope="module")
def prep():
    return load_script("prepare_choi_data")


def write_case(folder: Path, sequences) -> Path:
    """A 32 x 32 x 20 volume (1 x 1 x 2 mm) per sequence: a 'head' box with an ellipsoid 'tumour'
    (flair_abnormality)."""
    folder.mkdir(parents=True)
    head = np.zeros((20, 32, 32), bool)
    head[2:18, 3:29, 3:29] = True
    z, y, x = np.mgrid[:20, :32, :32]
    tumour = ((z - 10) / 5.5) ** 2 + ((y - 14) / 7) ** 2 + ((x - 16) / 7) ** 2 <= 1  # widest at its middle slice
    for seq in sequences:
        inside, outside = VALUES[seq]
        img = sitk.GetImageFromArray(np.where(tumour, inside, np.where(head, outside, 0.0)).astype(np.float32))
        img.SetSpacing((1.0, 1.0, 2.0))
        sitk.WriteImage(img, str(folder / f"{seq}.nii.gz"))
    m = sitk.GetImageFromArray(tumour.astype(np.uint8))
    m.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(m, str(folder / "flair_abnormality.nii.gz"))
    return folder


def test_t2_channel_is_stored_when_the_case_has_it(prep, tmp_path):
    assert prep.CHANNELS == ("t1c", "t2", "flair", "mask")  # the default set includes T2
    case = write_case(tmp_path / "with_t2", ("t1c", "t2", "flair"))
    x, avail, norm, facts = prep.case_slices(case)
    assert x.shape == (5, 4, 128, 128) and x.dtype == np.uint8 and avail.tolist() == [True] * 4
    mask = x[:, 3] > 0
    assert mask[2].any() and (~mask[2]).any()
    cy, cx = np.round(np.argwhere(mask[2]).mean(0)).astype(int)  # the tumour's centre on the middle slice
    for j, seq in enumerate(("t1c", "t2", "flair")):  # each channel holds its own sequence's values
        inside, outside = VALUES[seq]
        assert x[2, j, cy, cx] == inside, seq
        assert x[2, j, 22, 22] == outside and x[2, j, 0, 0] == 0, seq   # the head beside the tumour, the air
        assert outside < norm[j, 0] < inside and norm[j, 1] > 0  # the 3-D foreground (> 0) mean and SD
    # the network input of the paper's channels (T1c + T2 + mask): T2 z-scored with its own foreground statistics
    from GliomaRadiogenomicsLib import choi
    inp = choi.network_input(x, prep.CHANNELS, norm, ("t1c", "t2", "mask"))
    assert inp.shape == (5, 3, 128, 128)
    assert np.allclose(inp[:, 1], (x[:, 1].astype(np.float32) - norm[1, 0]) / norm[1, 1])


def test_a_case_without_t2_gets_zeros_and_the_flag(prep, tmp_path):
    case = write_case(tmp_path / "no_t2", ("t1c", "flair"))
    x, avail, norm, _ = prep.case_slices(case)
    assert avail.tolist() == [True, False, True, True]
    assert not x[:, 1].any() and norm[1].tolist() == [0.0, 0.0]
    assert x[:, 0].any() and x[:, 2].any()
    # the same case with a channel set without T2: the other channels are identical
    y, avail2, norm2, _ = prep.case_slices(case, ("t1c", "flair", "mask"))
    assert avail2.all() and np.array_equal(y, x[:, [0, 2, 3]]) and np.array_equal(norm2, norm[[0, 2, 3]])


def test_channels_option_is_checked(prep):
    assert prep.parse_channels("T1c, t2,mask") == ("t1c", "t2", "mask")
    for bad, said in (("t1c,dwi,mask", "dwi"), ("t2,t2,mask", "repeated"), ("mask", "image channel")):
        with pytest.raises(SystemExit, match=said):
            prep.parse_channels(bad)
