"""The web twin (trame-slicer) in a real browser: Debian chromium over the DevTools protocol.

One server for this module (trame state is shared by all sessions of a server). Steps: load the SYNTHETIC demo case,
segment, predict, paint a stroke with trame-slicer's Paint effect, predict again: the shown probabilities and the
tumor volume must change with the ROI. Screenshots of every step go to $GLIOMA_TEST_OUTPUT/web (default
build/test-output/web)."""
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (make test installs it)")
from cdp_browser import Browser, chromium_path, free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("GLIOMA_TEST_OUTPUT", REPO / "build" / "test-output")) / "web"
pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="chromium not found (make test installs Debian's chromium when run as root)")


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundles_at_spacing):
    """The app at 2 mm with test copies of the shipped bundles declared at 2 mm (the shipped ones record 1 mm and
    would refuse every task: no probability to see change). The weight-free segmentation model is selected at start
    (`web --backend`): this test is about the page, not the network (the default auto would run the BraTS 2017
    cascade on the 4-sequence demo, minutes on a CPU; brats17 has its own tests)."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("web") / "server.log", "w")
    env = dict(os.environ, VTK_DEFAULT_OPENGL_WINDOW="vtkEGLRenderWindow")
    proc = subprocess.Popen([sys.executable, "-m", "GliomaRadiogenomicsLib.cli", "web", "--port", str(port),
                             "--spacing", "2", "--brain-mask", "threshold", "--backend", "hyperintensity"] +
                            [a for b in bundles_at_spacing(2.0) for a in ("--bundle", b)], stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except Exception:
            assert proc.poll() is None, open(log.name).read()[-3000:]
            time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()


def _status(b):
    return b.js("(document.querySelector('#glioma-status') || {}).innerText || ''")


def _wait_status(b, text, timeout=400):
    return b.wait_for(f"document.querySelector('#glioma-status') && "
                      f"document.querySelector('#glioma-status').innerText.includes({json.dumps(text)}) && "
                      f"document.querySelector('#glioma-status').innerText", timeout)


def _results(b):
    return b.js("Array.from(document.querySelectorAll('.glioma-probability')).map(e => e.innerText)")


def _views_ready(b):
    return b.wait_for("Array.from(document.querySelectorAll('img')).filter(i => i.src.startsWith('blob:') && "
                      "i.width > 0).length >= 3", 60)


def test_workflow_paint_changes_the_prediction(server, browser):
    b = browser
    SHOTS.mkdir(parents=True, exist_ok=True)
    b.goto(server)
    b.wait_for("document.querySelector('#glioma-demo') !== null", 120)
    b.screenshot(SHOTS / "0-start.png")
    assert b.click("#glioma-demo")
    _wait_status(b, "demo case loaded")
    _views_ready(b)
    time.sleep(2)
    b.screenshot(SHOTS / "1-demo-loaded.png")
    assert b.click("#glioma-segment")
    _wait_status(b, "segmentation ready")
    time.sleep(2)
    b.screenshot(SHOTS / "2-segmented.png")
    assert b.click("#glioma-predict")
    first = _wait_status(b, "predictions ready")
    probs1 = _results(b)
    assert len(probs1) == 3 and all(0.0 <= float(p) <= 1.0 for p in probs1)
    assert "Research probabilities, not diagnoses" in first
    panel = b.js("document.querySelector('#glioma-results').innerText")
    assert "SYNTHETIC" in panel and "IDH" in panel and "ATRX" in panel
    b.screenshot(SHOTS / "3-predicted.png")
    # downloads: the report and the segmentation as edited
    base = server.rstrip("/")
    report = urllib.request.urlopen(base + "/glioma_files/report.html", timeout=30).read().decode()
    assert "SYNTHETIC" in report
    assert len(urllib.request.urlopen(base + "/glioma_files/segmentation.nii.gz", timeout=30).read()) > 100
    # paint a stroke with trame-slicer's Paint effect in the axial (red) view
    assert b.js("(() => { const bs = Array.from(document.querySelectorAll('button')).filter(e => "
                "e.innerHTML.includes('mdi-brush')); if (bs.length < 2) return false; bs[bs.length - 1].click(); "
                "return true; })()")
    time.sleep(1.5)
    r = b.js("JSON.stringify(document.querySelectorAll('img')[0].getBoundingClientRect())")
    box = json.loads(r)
    x0, y = box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.62
    b.mouse("mouseMoved", x0, y)
    time.sleep(1.2)  # hover first, or the first stroke is lost
    b.mouse("mousePressed", x0, y, buttons=1)
    for i in range(1, 30):
        b.mouse("mouseMoved", x0 + 4 * i, y + 2 * i, buttons=1)
        time.sleep(0.03)
    b.mouse("mouseReleased", x0 + 116, y + 58)
    time.sleep(2)
    b.screenshot(SHOTS / "4-painted.png")
    assert b.click("#glioma-predict")
    second = _wait_status(b, "predictions ready (run 2")
    probs2 = _results(b)
    b.screenshot(SHOTS / "5-predicted-after-paint.png")
    assert second != first, "the tumor volume did not change after painting"
    assert probs2 != probs1, "the shown probabilities did not change with the ROI"
