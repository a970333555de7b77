"""The extension's layout: CMake files list every file, the core imports nothing from Slicer, no pickle."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "GliomaRadiogenomics" / "GliomaRadiogenomicsLib"


def test_top_level_cmake_declares_the_extension():
    text = (REPO / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf"set\({key} ", text), key
    assert "project(GliomaRadiogenomics)" in text and "find_package(Slicer REQUIRED)" in text
    for m in ("GliomaRadiogenomics", "GliomaSegment", "GliomaPredict"):
        assert f"add_subdirectory({m})" in text
    assert "Slicer_EXTENSION_GENERATE_CONFIG" in text and "Slicer_EXTENSION_CPACK" in text
    cat = re.search(r'set\(EXTENSION_CATEGORY "([^"]+)"', text).group(1)
    assert cat in {"Quantification", "Segmentation", "Informatics", "Radiotherapy", "Registration", "Filtering"}


@pytest.mark.parametrize("module", ["GliomaRadiogenomics", "GliomaSegment", "GliomaPredict"])
def test_module_cmake_lists_every_file(module):
    folder = REPO / module
    text = (folder / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule" in text
    for p in folder.rglob("*"):
        if p.is_file() and p.suffix in (".py", ".ui", ".png", ".json", ".yaml") and "__pycache__" not in p.parts:
            rel = p.relative_to(folder).as_posix()
            listed = rel in text or rel.replace(module, "${MODULE_NAME}") in text
            assert listed, f"{module}/CMakeLists.txt does not list {rel}"


def test_generated_cmake_is_up_to_date():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "update_cmake_lists.py"), "--check"],
                       capture_output=True, encoding="utf-8", errors="replace")
    assert r.returncode == 0, r.stdout


def test_core_package_imports_nothing_from_slicer_and_no_pickle():
    for p in CORE.rglob("*.py"):
        src = p.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import|from)\s+(slicer|qt|ctk|vtk)\b", src, re.M), p
        assert not re.search(r"\b(pickle|joblib)\.(load|dump)", src), p
    r = subprocess.run([sys.executable, "-c", "import sys, GliomaRadiogenomicsLib.pipeline, "
                        "GliomaRadiogenomicsLib.cli; assert 'slicer' not in sys.modules"], capture_output=True)
    assert r.returncode == 0, r.stderr


def test_shipped_default_bundles_are_labelled_and_valid():
    """The defaults registry: per task either real TCGA-LGG bundles (synthetic: false, lower CI bound > 0.5, a data
    card) or the SYNTHETIC demonstration bundle (said in its card and intended use)."""
    from GliomaRadiogenomicsLib.bundle import default_bundle_paths, load_default_bundles
    from GliomaRadiogenomicsLib.features import load_preset
    bundles = load_default_bundles()
    assert {b.task for b in bundles} == {"IDH", "epilepsy", "ATRX"}
    for b, p in zip(bundles, default_bundle_paths()):
        h = load_preset(b.feature_schema["preset"]).settings_hash()  # its own preset's (wang2025, liu2024)
        d = json.loads(p.read_text())
        if d["synthetic"]:
            assert "SYNTHETIC" in d["training"]["trained_on"].upper() and "SYNTHETIC" in d["intended_use"].upper()
        else:
            assert d["synthetic"] is False and "TCGA-LGG" in d["training"]["trained_on"]
            assert d["metrics"]["auc_cv_95ci"][0] > 0.5, f"{p.name}: does not validate better than a coin"
            assert d["feature_schema"]["sequences"] and "not a diagnosis" in d["intended_use"]
        assert b.feature_schema["settings_hash"] == h, "bundle trained with other feature settings: rebuild"
        assert b.feature_schema["spacing_mm"] == 1.0, f"{p.name}: the 1 mm working grid of its training (a hard key)"
        assert d["metrics"]["auc_cv_95ci"][0] <= d["metrics"]["auc_cv"] <= d["metrics"]["auc_cv_95ci"][1]
    # no separated fit ships: coefficients of standardised features stay moderate (tcga_lgg_ATRX_flair once held
    # 1.5e6 per feature, an intercept of -2.4e13 and a nomogram whose axes could not be drawn)
    for p in sorted(default_bundle_paths()[0].parent.glob("*.json")):
        d = json.loads(p.read_text())
        if "coefficients" in d:
            big = max(abs(float(c)) for c in d["coefficients"])
            assert big < 50 and abs(float(d["intercept"])) < 50, f"{p.name}: |coefficient| {big:.3g}: a separated fit"
    # no task keeps a synthetic bundle once a real one qualifies
    for t in ("IDH", "epilepsy", "ATRX"):
        fam = [b for b in bundles if b.task == t]
        assert all(b.synthetic for b in fam) or not any(b.synthetic for b in fam)


def test_readme_gives_the_two_commands_and_says_synthetic():
    text = (REPO / "README.md").read_text()
    assert "make demo" in text and "make test" in text and "synthetic" in text.lower()
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_constraints_pin_torch_and_pyradiomics():
    c = (REPO / "constraints.txt").read_text()
    assert "torch==2.13.0" in c and "pyradiomics-bhklab==3.1.4" in c
    mk = (REPO / "Makefile").read_text()
    assert "-c constraints.txt" in mk
    assert "shap" not in (REPO / "pyproject.toml").read_text()


def test_catalog_entry_matches_the_extension():
    """ExtensionsIndex/GliomaRadiogenomics.json: the catalog entry (schema v1.0.1 allows no other keys)."""
    import json
    import re
    entry = json.loads((REPO / "ExtensionsIndex" / "GliomaRadiogenomics.json").read_text())
    allowed = {"$schema", "build_dependencies", "build_subdirectory", "category", "scm_revision", "scm_type",
               "scm_url", "tier"}
    assert set(entry) <= allowed and {"$schema", "category", "scm_url"} <= set(entry)
    assert "catalog-entry-schema-v1.0.1" in entry["$schema"]
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert entry["category"] == re.search(r'EXTENSION_CATEGORY "([^"]+)"', cmake).group(1)
    assert entry["scm_url"].startswith(re.search(r'EXTENSION_HOMEPAGE "([^"]+)"', cmake).group(1))


@pytest.mark.parametrize("module,ui", [("GliomaRadiogenomics/GliomaRadiogenomics.py",
                                        "GliomaRadiogenomics/Resources/UI/GliomaRadiogenomics.ui"),
                                       ("GliomaSegment/GliomaSegment.py", "GliomaSegment/Resources/UI/GliomaSegment.ui"),
                                       ("GliomaPredict/GliomaPredict.py", "GliomaPredict/Resources/UI/GliomaPredict.ui")])
def test_every_ui_parameter_is_a_parameter_node_field(module, ui):
    """connectGui binds widgets by SlicerParameterName: each must be a field of the module's parameterNodeWrapper."""
    import ast
    import re
    import xml.dom.minidom
    tree = ast.parse((REPO / module).read_text())
    fields = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(getattr(d, "id", "") == "parameterNodeWrapper" for d in node.decorator_list):
            fields |= {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}
    xml.dom.minidom.parse(str(REPO / ui))  # well-formed
    names = set(re.findall(r'SlicerParameterName" stdset="0"><string>([A-Za-z]+)<', (REPO / ui).read_text()))
    assert names and names <= fields, names - fields


def test_pyproject_packages_every_package_folder_and_the_web_app_sits_outside_the_modules():
    """The wheel (pyproject.toml) maps each package to its folder: the core and GliomaMRML in the Slicer module folder
    (the modules import them from there), GliomaWeb (trame-slicer, not part of the extension) in Web/. test_wheel.py
    builds and installs it."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        from pip._vendor import tomli as tomllib
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    st = cfg["tool"]["setuptools"]
    dirs = st["package-dir"]
    assert set(st["packages"]) == set(dirs) == {"GliomaRadiogenomicsLib", "GliomaMRML", "GliomaWeb"}
    for pkg, d in dirs.items():
        assert (REPO / d / "__init__.py").is_file(), d
        subs = [p.parent for p in (REPO / d).rglob("__init__.py") if p.parent != REPO / d]
        assert not subs, f"{subs}: subpackages must be listed in pyproject.toml's packages / package-dir"
    top = {p.parent for f in ("GliomaRadiogenomics", "Web") for p in (REPO / f).glob("*/__init__.py")}
    assert top == {REPO / d for d in dirs.values()}, "a package folder the wheel does not ship"
    assert dirs["GliomaWeb"] == "Web/GliomaWeb"
    for module in ("GliomaRadiogenomics", "GliomaSegment", "GliomaPredict"):
        assert not list((REPO / module).rglob("GliomaWeb")), f"the web app is back inside the {module} module folder"
    scripts = cfg["project"]["scripts"]
    assert scripts["glioma-radiogenomics"] == "GliomaRadiogenomicsLib.cli:main"
    assert scripts["glioma-radiogenomics-batch"] == "GliomaMRML.batch:cli"
    # the Slicer --python-script entry stays a thin caller of the packaged batch module
    entry = (REPO / "GliomaRadiogenomics" / "Batch" / "GliomaBatch.py").read_text()
    assert "from GliomaMRML.batch import" in entry and "def run_batch" not in entry


def test_every_referenced_screenshot_and_icon_exists():
    """The catalog's icon and screenshots (EXTENSION_ICONURL, EXTENSION_SCREENSHOTURLS: raw.githubusercontent addresses
    of this repository's main branch; and any Resources/ path the catalog entry names) are files of the repository:
    PNGs of a plausible size (scripts/make_screenshots.py makes the screenshots from a real case's rendering)."""
    import struct
    cmake = (REPO / "CMakeLists.txt").read_text()
    home = re.search(r'set\(EXTENSION_HOMEPAGE "https://github.com/([^"]+)"\)', cmake).group(1)
    raw = f"https://raw.githubusercontent.com/{home}/main/"
    urls = re.search(r'set\(EXTENSION_SCREENSHOTURLS "([^"]+)"\)', cmake).group(1).split()
    shots = [u[len(raw):] for u in urls]
    assert urls and all(u.startswith(raw) for u in urls), urls
    assert all(s.startswith("Resources/Screenshots/") for s in shots), shots
    icon = re.search(r'set\(EXTENSION_ICONURL "([^"]+)"\)', cmake).group(1)
    assert icon.startswith(raw)
    entry = (REPO / "ExtensionsIndex" / "GliomaRadiogenomics.json").read_text()
    named = re.findall(r"Resources/[\w/.-]+", entry)
    for rel, (lo_px, lo_bytes, hi_bytes) in ([(s, (600, 20_000, 500_000)) for s in shots]
                                             + [(icon[len(raw):], (64, 100, 200_000))]
                                             + [(n, (64, 100, 500_000)) for n in named]):
        p = REPO / rel
        assert p.is_file(), f"{rel} is referenced but not in the repository"
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{rel}: not a PNG"
        width, height = struct.unpack(">II", data[16:24])
        assert lo_px <= width <= 4000 and lo_px / 2 <= height <= 4000, f"{rel}: {width} x {height} pixels"
        assert lo_bytes < len(data) <= hi_bytes, f"{rel}: {len(data)} bytes"
    from PIL import Image  # decodes the whole image: not a truncated or corrupt file
    for rel in shots:
        with Image.open(REPO / rel) as im:
            im.load()
            assert len(set(im.convert("RGB").getdata())) > 64, f"{rel}: nearly blank"
