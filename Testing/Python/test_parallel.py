"""Process pools under every start method (parallel.process_pool): nothing forces ``fork``; spawned workers receive
the shared inputs once each through the initializer. Real processes, real PyRadiomics."""
import multiprocessing

import pytest

from GliomaRadiogenomicsLib import parallel

_TABLE: dict = {}  # the shared dict the workers read (module-level, found by name in spawned workers)


def _lookup(key):
    import os
    return key, _TABLE[key], os.getpid()


def _initialized():
    _TABLE["init"] = "ran"


def test_start_method_is_the_platforms_unless_overridden(monkeypatch):
    monkeypatch.delenv("GLIOMA_MP_START_METHOD", raising=False)
    assert parallel.start_method() == multiprocessing.get_context().get_start_method()
    monkeypatch.setenv("GLIOMA_MP_START_METHOD", "spawn")
    assert parallel.start_method() == "spawn"
    monkeypatch.setenv("GLIOMA_MP_START_METHOD", "no-such-method")
    with pytest.raises(ValueError, match="not available"):
        parallel.start_method()


@pytest.mark.parametrize("method", [m for m in ("spawn", "fork") if m in multiprocessing.get_all_start_methods()])
def test_workers_see_the_shared_inputs_and_the_initializer(monkeypatch, method):
    monkeypatch.setenv("GLIOMA_MP_START_METHOD", method)
    try:
        with parallel.process_pool(2, _initialized, shared=(__name__, "_TABLE", {"a": 1, "b": [2, 3]})) as pool:
            got = list(pool.map(_lookup, ["a", "b", "init"]))
    finally:
        _TABLE.clear()
    import os
    assert [(k, v) for k, v, _ in got] == [("a", 1), ("b", [2, 3]), ("init", "ran")]
    assert all(pid != os.getpid() for *_, pid in got)


def test_features_in_spawned_workers_equal_inline(monkeypatch, small_pre):
    """extract_features with 2 spawned workers (as on macOS / Windows) gives the inline values exactly."""
    import copy
    from GliomaRadiogenomicsLib.features import Preset, extract_features, load_preset
    from GliomaRadiogenomicsLib.segment import get_backend
    full = load_preset("wang2025")
    params = copy.deepcopy(full.params)  # a light variant of a real preset: original images, first order + shape
    params["imageType"] = {"Original": {}}
    params["featureClass"] = {"firstorder": [], "shape": []}
    preset = Preset("wang2025-light", params, dict(full.options), full.source)
    lab = get_backend("hyperintensity").segment(small_pre)
    inline = extract_features(small_pre, lab, preset, workers=1).values
    monkeypatch.setenv("GLIOMA_MP_START_METHOD", "spawn")
    spawned = extract_features(small_pre, lab, preset, workers=2).values
    assert len(inline) > 50 and spawned == inline
