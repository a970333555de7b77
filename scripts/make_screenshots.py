"""Screenshots for the Slicer catalog entry (CMakeLists.txt EXTENSION_SCREENSHOTURLS), made from the real rendering of
a real case, never drawn by hand:

    python scripts/make_screenshots.py [--case DIR] [--out Resources/Screenshots]

Starts the web app (trame-slicer: real MRML slice and 3D views rendered server-side, the same Logic as the Slicer
modules) on the case (default: BraTS-example of ../shared/data/cases, skull-stripped, so the threshold brain mask),
segments it with the weight-free hyperintensity model, predicts with the shipped models at their 1 mm working grid,
and takes in headless chromium (Testing/Python/cdp_browser.py, as the web browser test does):

- slicer-views.png: the slice views with the segmentation overlay, the tumour in 3D and the results card (each task's
  probability with its status);
- report.png: the report that Predict wrote (report.write_report, the CLI run's renderer) as a browser opens it.

Each PNG stays under 500 KB (reduced to a 256-colour palette when larger). Takes a few minutes on a CPU."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing" / "Python"))
from cdp_browser import Browser, free_port  # noqa: E402

SHARED = Path(os.environ.get("GLIOMA_SHARED_DATA", REPO.parent / "shared" / "data"))
MAX_BYTES = 500_000


def status_has(b: Browser, text: str, timeout: float) -> str:
    return b.wait_for("(document.querySelector('#glioma-status') || {innerText: ''}).innerText.includes("
                      f"{text!r}) && document.querySelector('#glioma-status').innerText", timeout, interval=1.0)


def small_png(path: Path) -> Path:
    """The PNG as it is when under MAX_BYTES, else reduced to a 256-colour palette (same size in pixels)."""
    if path.stat().st_size > MAX_BYTES:
        from PIL import Image
        Image.open(path).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    assert path.stat().st_size <= MAX_BYTES, f"{path}: {path.stat().st_size} bytes"
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default=str(SHARED / "cases" / "BraTS-example"), help="case folder (real images)")
    ap.add_argument("--out", default=str(REPO / "Resources" / "Screenshots"), help="folder of the PNGs")
    ap.add_argument("--backend", default="hyperintensity", help="segmentation model (web --backend)")
    ap.add_argument("--brain-mask", default="threshold", help="brain mask method (threshold: a skull-stripped case)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, VTK_DEFAULT_OPENGL_WINDOW="vtkEGLRenderWindow")
    server = subprocess.Popen([sys.executable, "-m", "GliomaRadiogenomicsLib.cli", "web", "--port", str(port),
                               "--case", args.case, "--backend", args.backend, "--brain-mask", args.brain_mask],
                              env=env, start_new_session=True)
    b = None
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(base, timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"the web app exited ({server.returncode})")
                time.sleep(0.5)
        b = Browser(1400, 900)
        b.goto(base + "/")
        status_has(b, "loaded", 120)
        t0 = time.time()
        assert b.click("#glioma-segment")
        print(status_has(b, "segmentation ready", 900), flush=True)
        assert b.click("#glioma-predict")
        print(status_has(b, "predictions ready", 1800), flush=True)
        print(f"segment + predict: {time.time() - t0:.0f} s", flush=True)
        time.sleep(3)  # the views' last images
        b.js("document.querySelector('#glioma-results-card').scrollIntoView({block: 'start'})")
        time.sleep(1)
        shots = [b.screenshot(out / "slicer-views.png")]
        report = b.js("document.querySelector('#glioma-report').getAttribute('href')")
        b.goto(base + report)
        b.wait_for("document.readyState === 'complete' && document.body.innerText.includes('Model cards')", 60)
        b.js("Array.from(document.querySelectorAll('h2')).find(h => h.innerText.includes('Key result'))"
             ".scrollIntoView()")
        time.sleep(1)
        shots.append(b.screenshot(out / "report.png"))
        for p in shots:
            print(f"{small_png(Path(p))}: {Path(p).stat().st_size} bytes")
    finally:
        if b is not None:
            b.close()
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
