"""Missing sequences are a normal case: features of the sequences present, bundles that need an absent sequence
not applied (probability null + reason, never an imputed value), bundle families chosen by the case's subset.
Runs on the SYNTHETIC demo case at half resolution with sequences removed (real SimpleITK, PyRadiomics)."""
import copy

import numpy as np
import pytest
import SimpleITK as sitk

from GliomaRadiogenomicsLib.bundle import ModelBundle, select_bundles
from GliomaRadiogenomicsLib.case import Case
from GliomaRadiogenomicsLib.io import InputError
from GliomaRadiogenomicsLib.pipeline import PipelineOptions, analyze_case
from GliomaRadiogenomicsLib.predict import predict_case, validate_predictions
from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
from GliomaRadiogenomicsLib.regions import as_brats_label


def _subset_case(demo, keep):
    return Case(demo.case_id, {s: demo.images[s] for s in keep}, {s: f"demo {s}" for s in keep},
                dict(demo.clinical or {}, age=50, sex="F"))


def _options():
    return PipelineOptions(preprocess=PreprocessOptions(spacing=2.0, brain_mask="threshold"), feature_workers=1,
                           backend="hyperintensity")


def _family_member(bundle: ModelBundle, sequences, name):
    """A TEST copy of a shipped bundle declaring other sequences (the selection logic reads only the declaration),
    and the 2 mm grid of _options(): the shipped bundle records the 1 mm of its training and would refuse these
    features (its coefficients were fitted at 1 mm: the numbers mean nothing, the selection is what is tested)."""
    b = copy.deepcopy(bundle)
    b.feature_schema = dict(b.feature_schema, sequences=list(sequences),
                            spacing_mm=_options().preprocess.spacing)
    b.name = name
    b.synthetic = True
    return b


def test_a_case_needs_flair_or_t2():
    img = sitk.Image(8, 8, 8, sitk.sitkFloat32)
    with pytest.raises(InputError, match="FLAIR or T2"):
        Case("x", {"t1": img, "t1c": img})
    assert Case("x", {"t2": img}).sequences == ["t2"]
    assert Case("x", {"flair": img, "t1": img}).sequence_list() == "T1+FLAIR"


def test_binary_masks_become_the_whole_tumor_and_brats_labels_are_kept():
    def img(a):
        return sitk.GetImageFromArray(np.asarray(a, np.uint8))
    lab, note = as_brats_label(img([[[0, 255], [255, 0]]] * 2))
    assert set(np.unique(sitk.GetArrayFromImage(lab))) == {0, 2} and "binary" in note
    lab, note = as_brats_label(img([[[0, 1], [2, 3]]] * 2))
    assert set(np.unique(sitk.GetArrayFromImage(lab))) == {0, 1, 2, 3} and note is None
    lab, note = as_brats_label(img([[[0, 1], [2, 4]]] * 2))       # BraTS 2017-2020: 4 = enhancing
    assert set(np.unique(sitk.GetArrayFromImage(lab))) == {0, 1, 2, 3} and "4" in note
    with pytest.raises(ValueError, match="neither"):
        as_brats_label(img([[[0, 5], [6, 7]]] * 2))


def _synthetic(task):
    """The shipped SYNTHETIC bundle of a task (by path: the defaults registry may list real bundles instead)."""
    import GliomaRadiogenomicsLib
    from pathlib import Path
    from GliomaRadiogenomicsLib.bundle import load_bundle
    return load_bundle(Path(GliomaRadiogenomicsLib.__file__).parent / "resources" / "models" / f"default_{task}.json")


def test_family_selection_prefers_the_exact_subset_then_the_largest():
    idh = copy.deepcopy(_synthetic("IDH"))
    idh.feature_schema.pop("sequences", None)                    # an older bundle (none declared): read off its features
    assert idh.sequences == sorted({f.split("_")[0].lower() for f in idh.features if f.split("_")[0] in
                                    ("T1", "T1c", "T2", "FLAIR")}, key=["t1", "t1c", "t2", "flair"].index)
    full = _family_member(idh, ["T1", "T1c", "T2", "FLAIR"], "full")
    three = _family_member(idh, ["FLAIR", "T1", "T1c"], "three")
    flair = _family_member(idh, ["FLAIR"], "flair")
    family = [flair, full, three]
    pick = lambda present: select_bundles(family, present)[0][0].name  # noqa: E731
    assert pick(["t1", "t1c", "flair"]) == "three"                  # exactly the case's subset
    assert pick(["t1", "t1c", "t2", "flair"]) == "full"
    assert pick(["flair"]) == "flair"
    assert pick(["t1", "flair"]) == "flair"                          # largest applicable subset
    assert pick(["t2", "flair", "t1c"]) == "flair"
    chosen, unavailable = select_bundles([full, three], ["flair", "t2"])
    assert chosen == [] and "IDH" in unavailable and "T1c" in unavailable["IDH"][0]


@pytest.fixture(scope="module")
def no_t2_analysis(small_demo_case):
    return analyze_case(_subset_case(small_demo_case, ["t1", "t1c", "flair"]), _options())


def test_features_come_from_the_sequences_present(no_t2_analysis):
    cols = list(no_t2_analysis.features.values)
    assert any(c.startswith("FLAIR_WT_") for c in cols) and any(c.startswith("T1c_WT_") for c in cols)
    assert not any(c.startswith("T2_") for c in cols)
    assert no_t2_analysis.features.provenance["sequences"] == ["T1", "T1c", "FLAIR"]
    assert any("no T2" in w for w in no_t2_analysis.warnings)


def test_a_bundle_whose_sequences_are_absent_is_not_applied(no_t2_analysis):
    synthetic_full = [_family_member(_synthetic(t), ["T1", "T1c", "T2", "FLAIR"], f"full-{t}")
                      for t in ("IDH", "epilepsy")]   # declared: trained on cases with all four sequences
    doc = predict_case(no_t2_analysis, synthetic_full)
    validate_predictions(doc)
    for b in synthetic_full:
        r = doc[b.task]
        assert r["probability"] is None and r["nomogram"] is None
        assert "T2" in r["reason"] and "imputed" in r["reason"]
        assert r["model"]["applied"] is False
    # a family member trained without T2 is applied to the same case
    idh = next(b for b in synthetic_full if b.task == "IDH")
    no_t2 = _family_member(_synthetic("IDH"), ["T1", "T1c", "FLAIR"], "no-t2")
    no_t2.features = [f for f in idh.features if not f.startswith("T2_")]
    keep = [i for i, f in enumerate(idh.features) if not f.startswith("T2_")]
    for k in ("center", "scale", "coefficients"):
        setattr(no_t2, k, [getattr(idh, k)[i] for i in keep])
    for v in no_t2.variables:
        v.features = [f for f in v.features if not f.startswith("T2_")]
    no_t2.variables = [v for v in no_t2.variables if v.features]
    doc = predict_case(no_t2_analysis, synthetic_full + [no_t2])
    assert doc["IDH"]["probability"] is not None and doc["IDH"]["model"]["name"] == "no-t2"
    assert doc["epilepsy"]["probability"] is None
