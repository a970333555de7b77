"""Issue 18 item 4: the report's segmentation figure of a real case, checked on the rendered pixels.

TCGA-FG-6692 as acquired (FLAIR reference: 26 oblique slices of 5.5 mm; T1, T1c, T2 registered to it), analysed by
the real pipeline (weight-free hyperintensity segmentation, 2 mm working grid, threshold brain mask: the figure is
under test, not the segmentation's quality) and written by ``write_report`` as the CLI's `run` writes it. The PNG
embedded in report.html is decoded and read pixel by pixel: each label's contour colour lies along that label's
boundary and not inside it (contours, not fills), the legend names the labels in their colours, the orientation
letters are drawn (R on the image's left of an axial slice: radiological view), and the slice shown is the FLAIR's
own slice (its number <= 26, its pixels the file's), not the 1 mm / 2 mm working grid's. A chromium screenshot of
the report page goes to $GLIOMA_TEST_OUTPUT/report (default build/test-output/report)."""
from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("GLIOMA_TEST_OUTPUT", REPO / "build" / "test-output")) / "report"
CASE = "TCGA-FG-6692"  # FLAIR 208 x 256 x 26, 0.9 x 0.9 x 5.5 mm, oblique
TOL = 40  # per channel, 0-255: a contour pixel's colour; a grey pixel is >= 70 away from every contour colour


@pytest.fixture(scope="module")
def real_report(shared_data, tmp_path_factory, bundles_at_spacing):
    from GliomaRadiogenomicsLib.bundle import load_bundle
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.pipeline import PipelineOptions, evaluate_case
    from GliomaRadiogenomicsLib.preprocess import PreprocessOptions
    from GliomaRadiogenomicsLib.report import write_report
    folder = shared_data / "cases" / CASE
    if not folder.is_dir():
        pytest.skip(f"{folder} absent: the real-data report figure test is skipped")
    case = load_case_folder(folder, {"age": 47, "sex": "female"})
    opt = PipelineOptions(preprocess=PreprocessOptions(spacing=2.0, brain_mask="threshold"), backend="hyperintensity",
                          feature_workers=1)
    analysis, doc = evaluate_case(case, opt, bundles=[load_bundle(p) for p in bundles_at_spacing(2.0)])
    out = tmp_path_factory.mktemp("report") / "report.html"
    write_report(doc, analysis, out)
    return folder, analysis, doc, out


def embedded_figure(page: str) -> np.ndarray:
    """The segmentation figure as the report embeds it: RGB uint8 (rows, columns, 3)."""
    import matplotlib.image as mpimg
    m = re.search(r"alt='segmentation on the native slice' src='data:image/png;base64,([^']+)'", page)
    assert m, "report.html has no segmentation figure"
    a = mpimg.imread(io.BytesIO(base64.b64decode(m.group(1))), format="png")
    return (a[..., :3] * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def figure(real_report):
    """(embedded PNG pixels, the same figure drawn again, its caption, mapping display -> PNG pixel). The report
    saves with bbox_inches='tight' (pad 0.1 in): the PNG is the figure cropped to its tight box."""
    from GliomaRadiogenomicsLib.report import DPI, draw_overlay
    _, analysis, _, out = real_report
    png = embedded_figure(out.read_text())
    fig, caption = draw_overlay(analysis)
    fig.set_dpi(DPI)
    fig.canvas.draw()
    box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.1)
    assert abs(png.shape[1] - box.width * DPI) <= 1.5 and abs(png.shape[0] - box.height * DPI) <= 1.5, \
        (png.shape, box.width * DPI, box.height * DPI)

    def to_png(xy):
        xy = np.atleast_2d(xy)
        return np.stack([box.y1 * DPI - xy[:, 1], xy[:, 0] - box.x0 * DPI], axis=1)  # (row, column), float
    yield png, fig, caption, to_png
    import matplotlib.pyplot as plt
    plt.close(fig)


def colour_mask(png: np.ndarray, rgb) -> np.ndarray:
    want = np.array([round(c * 255) for c in rgb])
    return (np.abs(png.astype(int) - want) <= TOL).all(axis=-1)


def test_figure_is_the_reference_native_slice(real_report, figure):
    import SimpleITK as sitk
    from GliomaRadiogenomicsLib.report import display_slice
    folder, analysis, doc, out = real_report
    png, fig, caption, _ = figure
    flair = sitk.ReadImage(str(folder / "flair.nii.gz"))
    n = flair.GetSize()[2]
    assert n == 26 and doc["sequences"]["FLAIR"]["n_slices"] == 26
    page = out.read_text()
    m = re.search(r"FLAIR native slice (\d+) of (\d+)", page)
    assert m and int(m.group(2)) == n and 1 <= int(m.group(1)) <= n, m and m.group(0)
    k = int(m.group(1))
    lab = sitk.GetArrayFromImage(analysis.label_native)
    assert lab.shape[0] == n and k == int(np.argmax((lab > 0).sum(axis=(1, 2)))) + 1  # the largest tumour area
    assert fig._suptitle.get_text() == f"FLAIR native slice {k} of {n}" and f"native slice {k} of {n}" in caption
    # the FLAIR panel shows the file's own slice k (1-based) turned for display, not a resampled one
    ax = next(a for a in fig.axes if a.get_title() == "FLAIR (reference)")
    shown = np.asarray(ax.images[0].get_array())
    want, _, _ = display_slice(sitk.GetArrayFromImage(flair)[k - 1].astype(float), flair.GetDirection(),
                               flair.GetSpacing())
    assert shown.shape == want.shape == (256, 208) and np.array_equal(shown, want)


def test_contours_lie_on_the_mask_boundary_not_inside(real_report, figure):
    """Per label and panel: >= 90 % of the boundary voxels (less those under a contour drawn later) have the label's
    contour colour within 2 pixels of their place in the PNG; < 2 % of the voxels 4 or more voxels inside the label
    do (no fill)."""
    import SimpleITK as sitk
    from scipy import ndimage
    from GliomaRadiogenomicsLib.report import COLORS, display_slice, native_slice
    _, analysis, _, _ = real_report
    png, fig, _, to_png = figure
    ref = analysis.pre.reference_native
    lab = sitk.GetArrayFromImage(analysis.label_native)[native_slice(analysis)["index"]]
    lb, _, _ = display_slice(lab, ref.GetDirection(), ref.GetSpacing())
    panels = [a for a in fig.axes if a.images]
    assert len(panels) == 4  # T1, T1c, T2, FLAIR
    checked = 0
    for v, rgb in COLORS.items():
        mask = lb == v
        if mask.sum() < 50:
            continue
        near = ndimage.binary_dilation(colour_mask(png, rgb), iterations=2)  # within 2 pixels
        # the boundary, less where a label drawn later (over it) is within 2 voxels: its contour covers this one
        later = ndimage.binary_dilation(np.isin(lb, [w for w in COLORS if w > v]), iterations=2)
        edge = mask & ~ndimage.binary_erosion(mask) & ~later
        inner = ndimage.binary_erosion(mask, iterations=4)
        for ax in panels:
            def hits(voxels, where):
                rc = np.argwhere(voxels)  # (row, column) of the display array = data (y, x)
                p = np.rint(to_png(ax.transData.transform(rc[:, ::-1].astype(float)))).astype(int)
                return where[p[:, 0], p[:, 1]]
            on_edge = hits(edge, near).mean()
            assert on_edge >= 0.9, f"label {v} in {ax.get_title()}: {on_edge:.0%} of the boundary has its contour"
            if inner.sum() >= 20:
                inside = hits(inner, colour_mask(png, rgb)).mean()
                assert inside < 0.02, f"label {v} in {ax.get_title()}: {inside:.0%} of the interior is coloured"
                checked += 1
    assert checked >= 1, "no label large enough to check its interior: the test proves nothing"


def test_legend_and_orientation_letters_are_drawn(figure):
    from GliomaRadiogenomicsLib.report import COLORS, LABEL_NAMES
    png, fig, _, to_png = figure
    leg = fig.legends[0]
    assert [t.get_text() for t in leg.get_texts()] == [LABEL_NAMES[v] for v in COLORS]
    r = fig.canvas.get_renderer()

    def region(artist, pad=2):
        b = artist.get_window_extent(r)
        (r0, c0), (r1, c1) = np.rint(to_png([[b.x0, b.y1], [b.x1, b.y0]])).astype(int)
        return png[max(r0 - pad, 0):r1 + pad + 1, max(c0 - pad, 0):c1 + pad + 1]
    # the legend, under the panels (a figure legend is placed anew in the tight box when saved: found by its
    # pixels): per label a short horizontal line in its colour, left to right in the legend's order, each followed
    # by dark text pixels (its name)
    below = int(max(to_png([[0, a.get_window_extent(r).y0]])[0, 0] for a in fig.axes if a.images)) + 2
    strip = png[below:]
    starts = []
    for v, rgb in COLORS.items():
        rc = np.argwhere(colour_mask(strip, rgb))
        assert len(rc) >= 20, f"legend line of {LABEL_NAMES[v]} not drawn"
        assert np.ptp(rc[:, 0]) <= 4 and np.ptp(rc[:, 1]) >= 15, f"legend entry {LABEL_NAMES[v]} is not a line"
        after = strip[rc[:, 0].min():rc[:, 0].max() + 1, rc[:, 1].max() + 3:rc[:, 1].max() + 40]
        assert (after <= 80).all(axis=-1).sum() >= 10, f"no label text after the {LABEL_NAMES[v]} line"
        starts.append(rc[:, 1].min())
    assert starts == sorted(starts)
    for ax in (a for a in fig.axes if a.images):
        letters = {t.get_text(): t for t in ax.texts}
        assert set(letters) == {"R", "L", "A", "P"}, (ax.get_title(), set(letters))
        x = {k: t.get_position()[0] for k, t in letters.items()}
        assert x["R"] < 0.1 and x["L"] > 0.9, "axial slice not in the radiological view (patient's right on the left)"
        for k, t in letters.items():
            box = region(t)
            white = (box >= 200).all(axis=-1).sum()
            dark = (box <= 110).all(axis=-1).sum()
            assert white >= 5 and dark >= 5, f"{ax.get_title()}: letter {k} not drawn ({white} white, {dark} dark)"


def test_threshold_mask_on_the_raw_head_is_an_input_quality_warning(real_report):
    """This fixture's weight-free path (threshold brain mask on the head as acquired, not skull-stripped) lets the
    segmentation reach the scalp fat and the orbits (the screenshot): the report says so under Input quality."""
    from GliomaRadiogenomicsLib.brainmask import THRESHOLD_ON_HEAD
    _, _, doc, out = real_report
    assert THRESHOLD_ON_HEAD in doc["input_quality"]
    import html
    page = html.unescape(out.read_text())
    assert page.index(THRESHOLD_ON_HEAD) < page.index("Sequences (as acquired)")


def test_report_page_screenshot(real_report):
    """The report as a clinician opens it, in chromium: the figure loads (its natural size is the PNG's)."""
    from cdp_browser import Browser, chromium_path
    if chromium_path() is None:
        pytest.skip("chromium not found (make test installs Debian's chromium when run as root)")
    _, _, _, out = real_report
    SHOTS.mkdir(parents=True, exist_ok=True)
    b = Browser(1200, 1000)
    try:
        b.goto(out.resolve().as_uri())
        b.wait_for("document.readyState === 'complete' && document.body.innerText.includes('Model cards')", 30)
        b.screenshot(SHOTS / "report-top.png")
        assert b.wait_for("(() => { const i = document.querySelector(\"img[alt='segmentation on the native slice']\");"
                          " return i && i.complete && i.naturalWidth > 600; })()", 20)
        b.js("document.querySelector(\"img[alt='segmentation on the native slice']\").scrollIntoView()")
        b.screenshot(SHOTS / "report-segmentation.png")
    finally:
        b.close()
    for name in ("report-top.png", "report-segmentation.png"):
        assert (SHOTS / name).stat().st_size > 20_000, name
