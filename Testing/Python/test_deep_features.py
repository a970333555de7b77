"""ResNet34 deep features (Liu 2024). Tests use a deterministic RANDOM network written to a temporary file (ImageNet
weights are not available offline); what is checked is the network definition, weight loading and verification,
the slice / crop / resize pipeline and the graceful absence of weights."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from GliomaRadiogenomicsLib import deep


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    net = deep.build_resnet34()
    d = tmp_path_factory.mktemp("w")
    tmp = d / "tmp.pth"
    torch.save(net.state_dict(), tmp)
    sha = deep.sha256_of(tmp)
    final = d / f"resnet34-{sha[:8]}.pth"
    tmp.rename(final)
    return final


def test_parameter_names_are_torchvision_compatible():
    keys = list(deep.build_resnet34().state_dict())
    assert keys[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert "layer2.0.downsample.0.weight" in keys and "layer4.2.bn2.running_var" in keys
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    assert sum(v.numel() for v in deep.build_resnet34().parameters()) == 21797672  # torchvision resnet34


def test_weights_are_verified(weights, tmp_path):
    net = deep.load_resnet34(weights)
    assert not net.training
    bad = tmp_path / "resnet34-deadbeef.pth"
    bad.write_bytes(weights.read_bytes())
    with pytest.raises(deep.WeightsError, match="does not match"):
        deep.load_resnet34(bad)
    unnamed = tmp_path / "weights.pth"
    unnamed.write_bytes(weights.read_bytes())
    with pytest.raises(deep.WeightsError, match="cannot verify"):
        deep.load_resnet34(unnamed)
    assert deep.load_resnet34(unnamed, sha256=deep.sha256_of(weights)) is not None


def test_deep_features_on_the_demo(small_pre, weights):
    from GliomaRadiogenomicsLib.segment import get_backend
    lab = get_backend("hyperintensity").segment(small_pre)
    feats, warns = deep.try_deep_features(small_pre, lab, ["t1c", "flair"], ["WT", "ET"], weights)
    assert not warns
    assert len(feats) == 2 * 2 * 1000
    assert all(np.isfinite(v) for v in feats.values())
    again, _ = deep.try_deep_features(small_pre, lab, ["t1c"], ["WT"], weights)
    assert all(again[k] == feats[k] for k in again)  # deterministic
    a = np.array([feats[f"T1c_WT_resnet34_fc_{i}"] for i in range(1000)])
    b = np.array([feats[f"FLAIR_WT_resnet34_fc_{i}"] for i in range(1000)])
    assert not np.allclose(a, b)  # different inputs give different features


def test_no_weights_means_missing_features_not_a_failure(small_pre, monkeypatch, tmp_path):
    monkeypatch.setattr(deep, "CACHE_DIR", tmp_path / "empty")
    monkeypatch.delenv("GLIOMA_RESNET34_WEIGHTS", raising=False)
    lab = sitk.Cast(small_pre.brain_mask, sitk.sitkUInt8)
    feats, warns = deep.try_deep_features(small_pre, lab, ["t1c"], ["WT"])
    assert feats == {} and "deep features missing" in warns[0] and "nothing is downloaded" in warns[0]
