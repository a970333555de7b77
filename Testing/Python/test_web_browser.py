"""The web twin (trame-slicer) in a real browser: Debian chromium over the DevTools protocol.

One server for this module (trame state is shared by all sessions of a server). Steps: load the SYNTHETIC demo case
(its case id from the folder), segment in the background (progress bar moving, buttons disabled), fill the clinical
fields (age, sex, WHO grade), predict on the unedited segmentation: the probabilities equal those of the CLI's `run`
on the same case folder with the same options and clinical values, the preprocessing kept by Segment is reused, the
results card shows each task's probability with its status, the warnings, the nomogram and the model card; the
report is written as the CLI writes it, report.html and report.pdf with the same text. Then
paint a stroke with trame-slicer's Paint effect and predict again: the probabilities and the tumor volume change
with the ROI; change the age and predict again: the models using age change, the one without age does not.
Screenshots of every step (the panel, its nomogram and model card, the report) go to $GLIOMA_TEST_OUTPUT/web
(default build/test-output/web)."""
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
OPTIONS = ["--spacing", "2", "--brain-mask", "threshold", "--backend", "hyperintensity"]  # the server's and the CLI's


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundles_at_spacing):
    """The app at 2 mm with test copies of the shipped bundles declared at 2 mm (the shipped ones record 1 mm and
    would refuse every task: no probability to see change). The weight-free segmentation model is selected at start
    (`web --backend`): this test is about the page, not the network (the default auto would run the BraTS 2017
    cascade on the 4-sequence demo, minutes on a CPU; brats17 has its own tests)."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("web") / "server.log", "w")
    env = dict(os.environ, VTK_DEFAULT_OPENGL_WINDOW="vtkEGLRenderWindow")
    proc = subprocess.Popen([sys.executable, "-m", "GliomaRadiogenomicsLib.cli", "web", "--port", str(port)] + OPTIONS
                            + [a for b in bundles_at_spacing(2.0) for a in ("--bundle", b)], stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
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


SAMPLER = """(() => {
  window.__gs = [];
  if (window.__gsTimer) clearInterval(window.__gsTimer);
  const q = s => document.querySelector(s);
  window.__gsTimer = setInterval(() => {
    const p = q('#glioma-progress');
    window.__gs.push({shown: !!(p && p.offsetParent !== null && getComputedStyle(p).display !== 'none'),
                      value: p ? parseFloat(p.getAttribute('aria-valuenow')) : null,
                      text: (q('#glioma-progress-text') || {}).innerText || '',
                      disabled: ['#glioma-demo', '#glioma-segment', '#glioma-predict', '#glioma-load']
                                  .map(s => !!(q(s) && q(s).disabled))});
  }, 100);
  return true; })()"""


def _run_watched(b, button, done_text, timeout=400):
    """Click ``button`` with a 10 Hz sampler of the progress bar and the buttons running in the page; returns the
    status text once ``done_text`` shows and the samples taken while the job ran."""
    assert b.js(SAMPLER)
    assert b.click(button)
    text = _wait_status(b, done_text, timeout)
    b.wait_for("!document.querySelector('#glioma-segment').disabled", 30)  # the job's end re-enables the buttons
    samples = b.js("window.__gs")
    b.js("clearInterval(window.__gsTimer)")
    shown = [s for s in samples if s["shown"]]
    assert len(shown) >= 3, f"{button}: the progress bar did not show during the job ({len(samples)} samples)"
    moving = {s["value"] for s in shown if s["value"] is not None and 0 < s["value"] < 100}
    assert len(moving) >= 2, f"{button}: the progress bar did not move: {sorted(moving)}"
    assert all(all(s["disabled"]) for s in shown), f"{button}: a button stayed enabled during the job"
    assert any("%" in s["text"] for s in shown)
    assert not b.js("document.querySelector('#glioma-predict').disabled")
    return text, shown


def _choose(b, field, title):
    """Pick ``title`` in a Vuetify select by mouse: open its menu, click the item. The previous select's menu may
    still be fading out (its items still count as an active overlay), so wait for it to go, then wait for this
    select's own item, and press again if the first press fell on the closing overlay."""
    items = "Array.from(document.querySelectorAll('.v-overlay--active .v-list-item'))"
    b.wait_for(f"{items}.length === 0", 10)
    x, y, w, h = b.rect(f"#{field}")
    for attempt in range(3):
        b.press(x + w / 2, y + h / 2)
        try:
            b.wait_for(f"{items}.some(e => e.innerText.trim() === {json.dumps(title)})", 5)
            break
        except TimeoutError:
            if attempt == 2:
                raise
    assert b.js(f"""(() => {{ const it = {items}.find(e => e.innerText.trim() === {json.dumps(title)});
                     if (!it) return false; it.click(); return true; }})()""")
    b.wait_for(f"{items}.length === 0", 10)


def _document(base, b):
    url = b.js("document.querySelector('#glioma-json').getAttribute('href')")
    return json.loads(urllib.request.urlopen(base + url, timeout=30).read().decode())


def _cli_run(case_dir, out, bundles, clinical):
    return subprocess.Popen([sys.executable, "-m", "GliomaRadiogenomicsLib.cli", "run", "--case-dir", case_dir,
                             "--out", str(out)] + OPTIONS + [a for b in bundles for a in ("--bundle", b)] + clinical,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_workflow_paint_changes_the_prediction(server, browser, bundles_at_spacing, tmp_path):
    b = browser
    base = server.rstrip("/")
    SHOTS.mkdir(parents=True, exist_ok=True)
    b.goto(server)
    b.wait_for("document.querySelector('#glioma-demo') !== null", 120)
    b.screenshot(SHOTS / "0-start.png")
    assert b.click("#glioma-demo")
    _wait_status(b, "demo case")
    _views_ready(b)
    case_dir = b.js("document.querySelector('#glioma-case-dir').value")
    case_id = json.loads((Path(case_dir) / "case.json").read_text())["case_id"]
    assert case_id in b.js("document.querySelector('#glioma-case-id').innerText"), "the case id is not the folder's"
    assert b.js("document.querySelector('#glioma-cbv') !== null && document.querySelector('#glioma-sequences')"
                ".innerText") == "Sequences: T1, T1c, T2, FLAIR; no CBV map (the Shim 2021 tasks need one)"
    # the CLI on the same folder, options and clinical values, beside the web app (compared after Predict)
    clinical = ["--age", "47", "--sex", "F", "--who-grade", "2"]
    cli = _cli_run(case_dir, tmp_path / "cli", bundles_at_spacing(2.0), clinical)
    time.sleep(2)
    b.screenshot(SHOTS / "1-demo-loaded.png")

    segmented, _ = _run_watched(b, "#glioma-segment", "segmentation ready")
    assert "views centred on the tumour" in segmented, segmented
    time.sleep(2)
    b.screenshot(SHOTS / "2-segmented.png")

    # clinical fields by keyboard and mouse, as a user fills them
    assert b.type_text("#glioma-age", "47")
    _choose(b, "glioma-sex", "female")
    _choose(b, "glioma-who-grade", "grade 2")
    time.sleep(0.5)  # the menu fades out
    b.screenshot(SHOTS / "2b-clinical-filled.png")
    first, _ = _run_watched(b, "#glioma-predict", "predictions ready")
    probs1 = _results(b)
    assert len(probs1) == 3 and all(0.0 <= float(p) <= 1.0 for p in probs1)
    assert "Research probabilities, not diagnoses" in first
    assert "preprocessing reused" in first, first  # Segment's registration / brain mask, not done again
    doc1 = _document(base, b)
    assert doc1["case"]["id"] == case_id
    assert doc1["case"]["clinical"]["age"] == 47 and doc1["case"]["clinical"]["sex"] == "F"
    assert doc1["case"]["clinical"]["who_grade"] == 2
    # the results card: one row per task with the probability and its status, warnings, SYNTHETIC stated once,
    # nomogram figure and model card
    panel = b.js("document.querySelector('#glioma-results-card').innerText")
    assert "IDH" in panel and "ATRX" in panel and "epilepsy" in panel
    assert b.js("document.querySelectorAll('#glioma-synthetic').length") == 1
    rows = b.js("Array.from(document.querySelectorAll('.glioma-row')).map(r => Array.from(r.cells).map(c => "
                "c.innerText))")
    table = b.js("document.querySelector('#glioma-results').innerText")
    assert table.count("SYNTHETIC") <= len(rows), "SYNTHETIC repeated within a row"  # the status says it once
    from GliomaRadiogenomicsLib.render import task_rows
    want = {r.task: (r.probability_text, r.status_text) for r in task_rows(doc1)}
    assert {r[0]: (r[1], r[2]) for r in rows} == want, "the rows are not the renderer's probability + status"
    assert b.js("document.querySelectorAll('#glioma-warnings li').length") >= 1
    assert b.wait_for("Array.from(document.querySelectorAll('img.glioma-nomogram')).some(i => i.naturalWidth > 300)",
                      20)
    card = b.js("Array.from(document.querySelectorAll('.glioma-model-card')).map(e => e.innerText).join('\\n')")
    assert "Intended use" in card and "Training data" in card and "Validation status" in card
    b.screenshot(SHOTS / "3-predicted.png")
    b.js("document.querySelector('.glioma-nomogram').scrollIntoView({block: 'start'})")
    time.sleep(0.5)
    b.screenshot(SHOTS / "3b-predicted-nomogram.png")
    b.js("document.querySelector('.glioma-model-card').scrollIntoView({block: 'end'})")
    time.sleep(0.5)
    b.screenshot(SHOTS / "3c-predicted-model-card.png")
    b.js("document.querySelector('#glioma-results-card').scrollIntoView({block: 'start'})")
    # an unedited Predict equals the CLI's run on the same folder and options
    out, _ = cli.communicate(timeout=400)
    assert cli.returncode == 0, out[-3000:]
    doc_cli = json.loads((tmp_path / "cli" / "predictions.json").read_text())
    for t in doc_cli["tasks"]:
        assert doc1[t]["probability"] == pytest.approx(doc_cli[t]["probability"], abs=1e-9), (
            t, doc1[t]["probability"], doc_cli[t]["probability"])
    assert doc1["segmentation"]["volumes_ml"] == pytest.approx(doc_cli["segmentation"]["volumes_ml"], abs=1e-9)
    # downloads: the report and the segmentation as edited
    report_url = b.js("document.querySelector('#glioma-report').getAttribute('href')")
    report = urllib.request.urlopen(base + report_url, timeout=30).read().decode()
    assert "SYNTHETIC" in report and case_id in report
    # report.pdf beside it, as the CLI's run writes it: the same text as report.html (the check of
    # test_report_status), and the key-result line the CLI's own report.pdf has
    from test_report_status import html_text, pdf_text, squeeze
    pdf_url = b.js("document.querySelector('#glioma-report-pdf').getAttribute('href')")
    (tmp_path / "web-report.pdf").write_bytes(urllib.request.urlopen(base + pdf_url, timeout=30).read())
    web_pdf = squeeze(pdf_text(tmp_path / "web-report.pdf"))
    assert web_pdf == squeeze(html_text(report))
    from GliomaRadiogenomicsLib.render import key_result_line
    key = squeeze(key_result_line(doc1))
    assert key in web_pdf and key in squeeze(pdf_text(tmp_path / "cli" / "report.pdf"))
    seg_url = b.js("document.querySelector('#glioma-seg-download').getAttribute('href')")
    assert len(urllib.request.urlopen(base + seg_url, timeout=30).read()) > 100

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
    second, _ = _run_watched(b, "#glioma-predict", "predictions ready (run 2")
    probs2 = _results(b)
    doc2 = _document(base, b)
    b.screenshot(SHOTS / "5-predicted-after-paint.png")
    assert doc2["segmentation"]["volumes_ml"]["WT"] != doc1["segmentation"]["volumes_ml"]["WT"], \
        "the tumor volume did not change after painting"
    assert probs2 != probs1, "the shown probabilities did not change with the ROI"
    assert "preprocessing reused" in second, second  # an edit changes the labels, not the preprocessing

    # another age: the models that use age move, the one without age does not
    assert b.type_text("#glioma-age", "75")
    _run_watched(b, "#glioma-predict", "predictions ready (run 3")
    doc3 = _document(base, b)
    b.screenshot(SHOTS / "6-predicted-age-75.png")
    assert doc3["case"]["clinical"]["age"] == 75
    uses_age = {t for t in doc3["tasks"] if any(a.get("feature") == "age"
                                                 for a in (doc3[t].get("nomogram") or {}).get("axes") or [])}
    assert uses_age, "no model uses age: the check would prove nothing"
    for t in doc3["tasks"]:
        if t in uses_age:
            assert doc3[t]["probability"] != doc2[t]["probability"], f"{t} did not change with the age"
        else:
            assert doc3[t]["probability"] == doc2[t]["probability"], f"{t} changed with the age"

    # the report as a clinician opens it (last: this leaves the app's page)
    b.goto(base + report_url)
    b.wait_for("document.readyState === 'complete' && document.body.innerText.includes('Model cards')", 30)
    b.screenshot(SHOTS / "7-report.png")
    b.js("Array.from(document.querySelectorAll('h2')).find(h => h.innerText.includes('Nomograms')).scrollIntoView()")
    time.sleep(0.5)
    b.screenshot(SHOTS / "7b-report-nomogram.png")
    b.js("Array.from(document.querySelectorAll('h2')).find(h => h.innerText.includes('Model cards'))"
         ".scrollIntoView()")
    time.sleep(0.5)
    b.screenshot(SHOTS / "7c-report-model-cards.png")
