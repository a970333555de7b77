"""The segmentation model registry (registry.py, resources/models/segmentation_models.json + its schema): the file
against its schema and against the real backends and weight files; downloads against a real HTTP server on
127.0.0.1 (http.server in a thread: nothing mocked); availability; the lists of the CLI, the Slicer Logic and the
web app."""
from __future__ import annotations

import copy
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from GliomaRadiogenomicsLib import registry
from GliomaRadiogenomicsLib.io import InputError

REPO = Path(__file__).resolve().parents[2]
SHARED_WEIGHTS = REPO.parent / "shared" / "weights" / "brats17-cascade"
CLI = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli"]


def _doc():
    return json.loads(registry.REGISTRY_FILE.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------------------------
# The shipped registry
# ------------------------------------------------------------------------------------------------------------------
def test_shipped_registry_follows_its_schema_and_is_written_canonically():
    doc = _doc()
    schema = json.loads(registry.SCHEMA_FILE.read_text())
    assert schema["$schema"].endswith("2020-12/schema")
    assert registry.schema_errors(doc, schema) == []  # the built-in validator
    try:
        import jsonschema
    except ImportError:
        pass
    else:  # where jsonschema is installed it must agree
        assert not list(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    registry.load_registry()
    assert registry.REGISTRY_FILE.read_text(encoding="utf-8") == registry.dumps_registry(doc)


def test_every_backend_has_an_entry_and_the_entries_match_the_backends():
    from GliomaRadiogenomicsLib.segment import BACKENDS, LABELS
    reg = registry.load_registry()
    assert set(BACKENDS) - {"auto"} <= set(reg), "a backend without a registry entry"
    assert {"hyperintensity", "lgg-unet2d", "brats17", "nnunet"} <= set(reg)
    for m in reg.values():
        assert {int(k): v for k, v in m.labels.items()}.items() <= LABELS.items(), m.id  # BraTS convention
        if m.id in BACKENDS:
            assert bool(BACKENDS[m.id].needs_weights) == (m.source != "none"), m.id
        if m.source in ("bundled", "url"):
            assert m.size_bytes == sum(f["bytes"] for f in m.files)
    assert reg["hyperintensity"].source == "none" and reg["nnunet"].source == "local"
    assert reg["lgg-unet2d"].source == "bundled" and reg["brats17"].source == "bundled"


def test_bundled_lgg_unet2d_files_match_its_manifest_and_their_bytes():
    from GliomaRadiogenomicsLib import unet2d
    m = registry.get_model("lgg-unet2d")
    assert m.weights_dir() == unet2d.WEIGHTS_DIR
    manifest = json.loads((m.weights_dir() / m.weights["manifest"]).read_text())
    assert [(f["name"], f["bytes"], f["sha256"]) for f in m.files] == \
        [(f["file"], f["bytes"], f["sha256"]) for f in manifest["folds"]], \
        "registry and manifest disagree: run scripts/update_model_registry.py after retraining"
    for f in m.files:
        path = m.weights_dir() / f["name"]
        assert path.stat().st_size == f["bytes"] and registry.sha256_file(path) == f["sha256"], path
    assert registry.resolve_weights(m, verify=True) == unet2d.WEIGHTS_DIR


def test_brats17_entry_matches_the_published_checksums():
    """The 9 cascade files: the registry's sums are those of SHA256SUMS beside the converted weights; once copied
    into the package, the files themselves must match too."""
    m = registry.get_model("brats17")
    assert sorted(f["name"] for f in m.files) == sorted(f"msnet_{t}32{v}.npz" for t in ("wt", "tc", "en")
                                                        for v in ("", "sg", "cr"))
    bundled = m.weights_dir()
    if (bundled / m.weights["manifest"]).is_file():  # once copied into the package: its SHA256SUMS and files agree
        sums = registry.read_manifest_sums(bundled / m.weights["manifest"])
        assert {f["name"]: f["sha256"] for f in m.files} == {n: s["sha256"] for n, s in sums.items()}
        for f in m.files:
            assert registry.sha256_file(bundled / f["name"]) == f["sha256"], bundled / f["name"]
        assert registry.resolve_weights(m, verify=True) == bundled
    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"{SHARED_WEIGHTS} not here (../shared weights absent)")
    sums = dict(reversed(line.split()) for line in (SHARED_WEIGHTS / "SHA256SUMS").read_text().splitlines())
    assert {f["name"]: f["sha256"] for f in m.files} == sums
    assert {f["name"]: f["bytes"] for f in m.files} == {n: (SHARED_WEIGHTS / n).stat().st_size for n in sums}


def test_registry_is_up_to_date_with_the_bundled_folders_and_ships_with_the_package():
    """scripts/update_model_registry.py --check (what to run after retraining / copying weights), and each bundled
    file (and manifest) matches a package-data pattern of pyproject.toml, so a wheel carries it."""
    import fnmatch
    import re
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "update_model_registry.py"), "--check"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    block = re.search(r"GliomaRadiogenomicsLib = \[(.*?)\]", (REPO / "pyproject.toml").read_text(), re.S).group(1)
    patterns = re.findall(r'"([^"]+)"', block)
    for m in registry.list_models():
        if m.source == "bundled":
            names = [f["name"] for f in m.files] + ([m.weights["manifest"]] if "manifest" in m.weights else [])
            names += [m.licence["notice"]] if "notice" in m.licence else []
            for n in names:
                rel = f"{m.weights['path'][len('resources/'):]}/{n}"
                assert any(fnmatch.fnmatch("resources/" + rel, pat) for pat in patterns), (m.id, rel)
    assert any(fnmatch.fnmatch("resources/models/segmentation_models.schema.json", pat) for pat in patterns)


# ------------------------------------------------------------------------------------------------------------------
# Invalid registries: errors name the file and the entry
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("break_it,expected", [
    (lambda d: d["models"][0].pop("title"), "/models/0: 'title' is required"),
    (lambda d: d["models"][1]["weights"]["files"][0].update(sha256="abc"), "/models/1/weights/files/0/sha256"),
    (lambda d: d["models"][1]["labels"].update({"4": "tumor"}), "/models/1/labels/4"),
    (lambda d: d["models"][1]["inputs"]["required"].append("dwi"), "/models/1/inputs/required/1"),
    (lambda d: d["models"][3]["weights"].update(source="url"), "/models/3/weights: 'files' is required"),
    (lambda d: d["models"][0]["weights"].update(source="ftp"), "/models/0/weights/source"),
    (lambda d: d["models"][1].update(size_bytes=5), "/models/1/size_bytes: 5 is not the sum"),
    (lambda d: d["models"].append(copy.deepcopy(d["models"][0])), "id 'hyperintensity' is listed more than once"),
    (lambda d: d["models"][2].update(licence={}), "/models/2/licence: 'code' is required"),
])
def test_invalid_registry_is_refused_naming_file_and_entry(tmp_path, break_it, expected):
    doc = _doc()
    break_it(doc)
    f = tmp_path / "segmentation_models.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(registry.RegistryError) as e:
        registry.load_registry(f)
    assert str(f) in str(e.value) and expected in str(e.value)
    assert isinstance(e.value, InputError)


def test_unreadable_registry_names_the_file(tmp_path):
    f = tmp_path / "models.json"
    f.write_text("{not json")
    with pytest.raises(registry.RegistryError, match="not valid JSON") as e:
        registry.load_registry(f)
    assert str(f) in str(e.value)
    with pytest.raises(registry.RegistryError, match="not found"):
        registry.load_registry(tmp_path / "absent.json")


# ------------------------------------------------------------------------------------------------------------------
# Downloads from a real HTTP server on 127.0.0.1
# ------------------------------------------------------------------------------------------------------------------
class _Server:
    """http.server in a thread serving a folder; counts the GET requests per path."""

    def __init__(self, folder: Path):
        counts = self.counts = {}

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(folder), **kw)

            def do_GET(self):
                counts[self.path] = counts.get(self.path, 0) + 1
                super().do_GET()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def served(tmp_path):
    """A small 'model file' (300 kB of seeded bytes: several progress chunks) served over HTTP."""
    import numpy as np
    folder = tmp_path / "www"
    folder.mkdir()
    data = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    (folder / "tiny_model.npz").write_bytes(data)
    server = _Server(folder)
    yield server, data
    server.close()


def _url_registry(tmp_path, url, data, sha256=None, requires=()):
    doc = _doc()
    entry = copy.deepcopy(next(m for m in doc["models"] if m["id"] == "hyperintensity"))
    entry.update(id="hyperintensity", title="Tiny test model (downloaded)", size_bytes=len(data),
                 requires=list(requires),
                 weights={"source": "url", "files": [{"name": "tiny_model.npz", "bytes": len(data), "url": url,
                                                      "sha256": sha256 or hashlib.sha256(data).hexdigest()}]})
    doc["models"] = [entry]
    f = tmp_path / "registry.json"
    f.write_text(json.dumps(doc))
    return registry.load_registry(f)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "model-cache"
    monkeypatch.setenv("GLIOMA_MODEL_CACHE", str(d))  # the environment variable users set, not a patched function
    return d


def test_download_is_verified_cached_and_reused_without_a_second_request(tmp_path, served, cache):
    server, data = served
    reg = _url_registry(tmp_path, server.url + "/tiny_model.npz", data)
    m = reg["hyperintensity"]
    a = registry.available(m)
    assert a.ok and a.state == "download" and str(cache / m.id) in a.reason
    with pytest.raises(registry.WeightsUnavailable, match="not downloaded yet") as e:  # never fetched unasked
        registry.resolve_weights(m, download=False)
    assert server.url in str(e.value) and server.counts == {}
    calls = []
    folder = registry.resolve_weights(m, download=True, progress=lambda done, total, msg: calls.append((done, total)))
    assert folder == cache / m.id and (folder / "tiny_model.npz").read_bytes() == data
    assert server.counts == {"/tiny_model.npz": 1}
    # progress: called from 0 up to every byte, monotonically, with the total known
    assert calls[0] == (0, len(data)) and calls[-1] == (len(data), len(data)) and len(calls) > 3
    assert all(b[0] >= a[0] for a, b in zip(calls, calls[1:]))
    assert registry.available(m).state == "ready"
    assert registry.resolve_weights(m, download=True) == folder
    assert server.counts == {"/tiny_model.npz": 1}, "a cached, verified file is reused without a request"
    assert sorted(p.name for p in folder.iterdir()) == ["tiny_model.npz"]  # no temporary file left


def test_download_with_a_bad_checksum_is_refused_and_leaves_nothing(tmp_path, served, cache):
    server, data = served
    url = server.url + "/tiny_model.npz"
    m = _url_registry(tmp_path, url, data, sha256="0" * 64)["hyperintensity"]
    with pytest.raises(registry.WeightsUnavailable) as e:
        registry.resolve_weights(m, download=True)
    msg = str(e.value)
    assert url in msg and "does not match" in msg and "0" * 64 in msg and "not kept" in msg
    assert server.counts == {"/tiny_model.npz": 1}
    assert not any(p.is_file() for p in cache.rglob("*")), list(cache.rglob("*"))


def test_a_damaged_cached_file_is_refused_and_downloaded_again(tmp_path, served, cache):
    server, data = served
    m = _url_registry(tmp_path, server.url + "/tiny_model.npz", data)["hyperintensity"]
    target = cache / m.id / "tiny_model.npz"
    target.parent.mkdir(parents=True)
    target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, one bit changed
    with pytest.raises(registry.WeightsUnavailable):
        registry.resolve_weights(m, download=False)
    registry.resolve_weights(m, download=True)
    assert target.read_bytes() == data and server.counts == {"/tiny_model.npz": 1}


def test_server_down_gives_a_clear_offline_message(tmp_path, cache):
    with socket.socket() as s:  # a port nobody listens on: bound, then closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/tiny_model.npz"
    m = _url_registry(tmp_path, url, b"x" * 1000)["hyperintensity"]
    with pytest.raises(registry.WeightsUnavailable) as e:
        registry.resolve_weights(m, download=True)
    msg = str(e.value)
    target = cache / m.id / "tiny_model.npz"
    assert "offline or server unreachable" in msg and url in msg
    assert "by hand" in msg and str(target) in msg and hashlib.sha256(b"x" * 1000).hexdigest() in msg
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_http_error_and_wrong_size_leave_nothing(tmp_path, served, cache):
    server, data = served
    m = _url_registry(tmp_path, server.url + "/absent.npz", data)["hyperintensity"]
    with pytest.raises(registry.WeightsUnavailable, match="HTTP 404"):
        registry.resolve_weights(m, download=True)
    with pytest.raises(registry.WeightsUnavailable, match="got 300000 bytes, the registry expects 299999"):
        registry.download_file(server.url + "/tiny_model.npz", cache / "x" / "f.npz",
                               hashlib.sha256(data).hexdigest(), len(data) - 1)
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_download_progress_reaches_a_progress_object(tmp_path, served, cache):
    from GliomaRadiogenomicsLib.progress import Progress
    server, data = served
    seen = []
    registry.download_file(server.url + "/tiny_model.npz", cache / "f.npz", hashlib.sha256(data).hexdigest(),
                           len(data), registry.progress_callback(Progress(lambda f, msg: seen.append((f, msg)))))
    assert seen[-1][0] == 1.0 and "f.npz" in seen[-1][1] and seen[0][0] == 0.0


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("GLIOMA_MODEL_CACHE", raising=False)
    monkeypatch.setenv("GLIOMA_CACHE", str(tmp_path / "c"))
    assert registry.cache_dir() == tmp_path / "c" / "models"
    monkeypatch.delenv("GLIOMA_CACHE")
    assert registry.cache_dir() == Path.home() / ".cache" / "glioma-radiogenomics" / "models"
    monkeypatch.setenv("GLIOMA_MODEL_CACHE", str(tmp_path / "m"))
    assert registry.cache_dir() == tmp_path / "m"


def test_importing_and_listing_fetch_nothing(tmp_path):
    """Import the package and list the models in a fresh interpreter with the cache in an empty folder: no file
    appears (the url source downloads only on resolve_weights(download=True))."""
    env = dict(os.environ, GLIOMA_MODEL_CACHE=str(tmp_path / "cache"))
    code = ("import GliomaRadiogenomicsLib.registry as r, GliomaRadiogenomicsLib.segment;"
            "[r.available(m) for m in r.list_models()]; r.model_choices()")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert not (tmp_path / "cache").exists()


# ------------------------------------------------------------------------------------------------------------------
# Availability
# ------------------------------------------------------------------------------------------------------------------
def test_availability_reasons(tmp_path):
    reg = registry.load_registry()
    assert registry.available("hyperintensity").state == "ready"
    a = registry.available("lgg-unet2d", sequences=["t1", "t2"])
    assert not a.ok and a.reason == "sequences missing: needs FLAIR"
    a = registry.available("hyperintensity", sequences=["t1"])
    assert not a.ok and "FLAIR or T2 or T1c" in a.reason
    assert registry.available("hyperintensity", sequences=["t1c"]).ok
    from GliomaRadiogenomicsLib.segment import BACKENDS
    if "brats17" not in BACKENDS:
        assert "no 'brats17' segmentation backend" in registry.available("brats17").reason
    elif not any(reg["brats17"].weights_dir().glob("*.npz")):
        a = registry.available("brats17")
        assert not a.ok and a.reason.startswith("weights missing: 9 of 9 file(s) not installed")
    a = registry.available("brats17", sequences=["flair", "t1", "t1c"])
    assert not a.ok
    # a Python module that is not installed (a real import lookup on a name that does not exist)
    doc = _doc()
    doc["models"][0]["requires"] = ["glioma_no_such_module"]
    f = tmp_path / "r.json"
    f.write_text(json.dumps(doc))
    a = registry.available("hyperintensity", registry=registry.load_registry(f))
    assert not a.ok and "glioma_no_such_module not installed" in a.reason


def test_local_model_folder_is_checked(tmp_path):
    a = registry.available("nnunet")
    if not a.ok:
        pytest.skip(f"nnunet extra not installed here: {a.reason}")
    assert a.state == "needs-folder" and "--nnunet-model" in a.reason
    d = tmp_path / "Dataset001"
    d.mkdir()
    (d / "dataset.json").write_text("{}")
    a = registry.available("nnunet", local_path=d)
    assert not a.ok and "plans.json" in a.reason and "fold_*/checkpoint_final.pth" in a.reason
    with pytest.raises(registry.WeightsUnavailable, match="plans.json"):
        registry.resolve_weights("nnunet", local_path=d)
    (d / "plans.json").write_text("{}")
    (d / "fold_0").mkdir()
    (d / "fold_0" / "checkpoint_final.pth").write_bytes(b"0")
    assert registry.available("nnunet", local_path=d).state == "ready"
    assert registry.resolve_weights("nnunet", local_path=d) == d
    assert registry.resolve_weights("hyperintensity") is None


def test_missing_bundled_file_is_named(tmp_path):
    """A bundled entry whose folder lacks a file (a copy of the registry pointing at a real package folder)."""
    doc = _doc()
    lgg = next(m for m in doc["models"] if m["id"] == "lgg-unet2d")
    lgg["weights"]["files"].append({"name": "fold9.pt", "bytes": 10, "sha256": "1" * 64})
    lgg["size_bytes"] += 10
    f = tmp_path / "r.json"
    f.write_text(json.dumps(doc))
    m = registry.load_registry(f)["lgg-unet2d"]
    a = registry.available(m)
    if registry.module_available("torch"):
        assert not a.ok and "fold9.pt" in a.reason and "1 of 6 file(s) not installed" in a.reason
    with pytest.raises(registry.WeightsUnavailable, match="fold9.pt is missing"):
        registry.resolve_weights(m)


# ------------------------------------------------------------------------------------------------------------------
# The lists: CLI (subprocess), Slicer Logic (real MRML), web app
# ------------------------------------------------------------------------------------------------------------------
def test_cli_list_models_text_and_json(tmp_path):
    env = dict(os.environ, GLIOMA_MODEL_CACHE=str(tmp_path / "cache"))
    p = subprocess.run(CLI + ["segment", "--list-models"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    reg = registry.load_registry()
    for m in reg.values():
        block = p.stdout.split(f"{m.id}: {m.title}\n", 1)[1].split("\n\n", 1)[0]
        a = registry.available(m)
        assert f"available: {registry.AVAILABLE_WORDS[a.state]} ({a.reason})" in block
        for key in ("inputs:", "labels:", "licence:", "size:", "weights:"):
            assert key in block, (m.id, key)
    assert "code Apache-2.0" in p.stdout and "BSD-3-Clause" in p.stdout and "19.5 MB" in p.stdout
    assert "bundled (resources/weights/lgg_unet2d, 5 file(s))" in p.stdout
    assert "local folder you give (--nnunet-model DIR)" in p.stdout and "none (weight-free)" in p.stdout
    p = subprocess.run(CLI + ["segment", "--list-models", "--json"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)["models"]
    assert [r["id"] for r in rows] == list(reg)
    by_id = {r["id"]: r for r in rows}
    assert by_id["lgg-unet2d"]["weights"]["files"][0]["sha256"] == reg["lgg-unet2d"].files[0]["sha256"]
    assert by_id["hyperintensity"]["available"] is True and by_id["hyperintensity"]["size_bytes"] == 0
    assert by_id["brats17"]["licence"]["weights"].startswith("BSD-3-Clause")
    assert not (tmp_path / "cache").exists()
    p = subprocess.run(CLI + ["segment", "--case-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "--out" in p.stderr and "--list-models" in p.stderr


def test_slicer_logic_lists_the_registry_with_availability(mrml, small_demo_case):
    """GliomaSegmentLogic.model_choices (the GliomaSegment combo box) on a real MRML scene with volume nodes."""
    import SimpleITK as sitk
    from GliomaMRML.convert import sitk_to_volume_node
    from GliomaMRML.logic import GliomaSegmentLogic
    logic = GliomaSegmentLogic(mrml.scene)
    reg = registry.load_registry()
    choices = logic.model_choices()
    assert [c["id"] for c in choices] == ["auto"] + list(reg)
    for c in choices[1:]:
        assert c["label"].startswith(reg[c["id"]].title) and c["available"] == registry.available(c["id"]).ok
    img = sitk.Cast(small_demo_case.images["t2"], sitk.sitkFloat32)
    nodes = {"t1": None, "t1c": None, "t2": sitk_to_volume_node(img, mrml.scene, "t2"), "flair": None}
    by_id = {c["id"]: c for c in logic.model_choices(nodes)}
    assert by_id["hyperintensity"]["available"]
    assert not by_id["lgg-unet2d"]["available"] and "needs FLAIR" in by_id["lgg-unet2d"]["label"]
    assert not by_id["brats17"]["available"]


def test_web_app_model_items_come_from_the_registry():
    pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (make test installs it)")
    from GliomaWeb.app import model_items
    items = model_items()
    reg = registry.load_registry()
    assert [i["value"] for i in items] == ["auto"] + list(reg)
    by_id = {i["value"]: i for i in items}
    assert by_id["auto"]["disabled"] is False and by_id["hyperintensity"]["disabled"] is False
    assert by_id["nnunet"]["disabled"] and "model folder" in by_id["nnunet"]["title"]
    for mid in reg:
        assert by_id[mid]["title"].startswith(reg[mid].title)
        assert by_id[mid]["disabled"] == (registry.available(mid).state not in ("ready", "download"))


def test_a_url_sourced_brats17_is_downloaded_on_first_use_by_the_backend(tmp_path, cache, monkeypatch):
    """A site registry ($GLIOMA_MODEL_REGISTRY) that sources the BraTS 2017 cascade from a URL (here a local HTTP
    server on 127.0.0.1 serving the real weights): building the backend downloads the files into the cache once
    (SHA-256 checked), the networks then load from there; a second backend reuses the cache; with the server gone
    and an empty cache the backend refuses with a message naming the URL."""
    from GliomaRadiogenomicsLib import brats17
    from GliomaRadiogenomicsLib.segment import get_backend
    src = brats17.WEIGHTS_DIR
    server = _Server(src)
    try:
        doc = _doc()
        entry = next(m for m in doc["models"] if m["id"] == "brats17")
        files = [dict(f, url=f"{server.url}/{f['name']}") for f in entry["weights"]["files"]]
        sums = (src / "SHA256SUMS").read_bytes()
        files.append({"name": "SHA256SUMS", "bytes": len(sums), "sha256": hashlib.sha256(sums).hexdigest(),
                      "url": f"{server.url}/SHA256SUMS"})
        entry["weights"] = {"source": "url", "files": files}
        entry["size_bytes"] = sum(x["bytes"] for x in files)
        f = tmp_path / "site-registry.json"
        f.write_text(json.dumps(doc))
        monkeypatch.setenv(registry.REGISTRY_ENV, str(f))
        monkeypatch.delenv(brats17.WEIGHTS_ENV, raising=False)
        b = get_backend("brats17", device="cpu", views="axial")
        assert Path(b.weights_dir).is_relative_to(cache), b.weights_dir
        assert brats17.weights_available(b.weights_dir)
        assert all(server.counts.get(f"/{x['name']}") == 1 for x in files), server.counts
        net = brats17.load_network("tc", "axial", b.weights_dir, "cpu")   # SHA-256 checked against SHA256SUMS
        assert net is not None
        get_backend("brats17", device="cpu", views="axial")               # cached: nothing downloaded again
        assert all(server.counts.get(f"/{x['name']}") == 1 for x in files), server.counts
    finally:
        server.close()
    monkeypatch.setenv("GLIOMA_MODEL_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(registry.WeightsUnavailable, match="127.0.0.1"):
        get_backend("brats17", device="cpu", views="axial")
