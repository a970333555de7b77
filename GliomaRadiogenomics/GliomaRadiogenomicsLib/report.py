"""The case report, to file: one list of blocks (``report_blocks``) drawn twice, as self-contained HTML (figures
embedded as PNG) and as a multi-page PDF (matplotlib, no Qt or browser needed), so both carry the same text and the
same figures (Testing/Python/test_report.py compares their text).

Contents: patient / case id, age, sex, WHO grade, date; the sequences as acquired (voxel spacing, slice thickness,
slices); input-quality warnings; one key-result line; the research probabilities with each task's status in the same
row (render.task_rows: the one view model); the nomograms (rms style, nomogram.py: each logistic task's and the
Choi 2021 hybrid's, render.nomogram_results); a model card per task (intended use, training data, validation and its
metrics at the cutoff, calibration, validation status; SYNTHETIC models say so), also for the Shim 2021 / Choi 2021
bundles' tasks (render.shim_card_rows: CV AUC or C-index with its CI); the
segmentation on the reference sequence's native slice (the slice number a PACS shows: 1-based index in the
file's slice order, not the 1 mm working grid's) with contours, legend and orientation markers; volumes; warnings,
processing and inputs."""
from __future__ import annotations

import base64
import html
import io
import textwrap
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from .case import SEQUENCE_NAMES
from .io import atomic_write_bytes, atomic_write_text
from .render import (any_synthetic_model, input_quality_lines, key_result_line, model_card_rows, nomogram_results,
                     nomogram_synthetic, patient_rows, sequence_rows, shim_note, shim_rows, shim_table, shim_title,
                     SYNTHETIC_CASE_NOTE, synthetic_models_note, task_rows)

COLORS = {1: (0.85, 0.2, 0.2), 2: (0.2, 0.75, 0.3), 3: (1.0, 0.85, 0.1)}
LABEL_NAMES = {1: "necrosis (NCR)", 2: "edema (ED)", 3: "enhancing (ET)"}
DPI = 100


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


# --- the segmentation figure on the native slice --------------------------------------------------------------

def _letter(v) -> str:
    a = int(np.argmax(np.abs(v)))
    return ("L", "P", "S")[a] if v[a] > 0 else ("R", "A", "I")[a]


def display_slice(a2d: np.ndarray, direction, spacing) -> Tuple[np.ndarray, dict, float]:
    """A native slice (rows j, columns i) turned for radiological display without resampling (transpose / flips
    only): axial and coronal with the patient's right on the image's left, axial anterior up, coronal / sagittal
    superior up, sagittal anterior on the left. Returns (array, {left, right, top, bottom: L/R/A/P/S/I}, aspect)."""
    D = np.asarray(direction, float).reshape(3, 3)
    plane = int(np.argmax(np.abs(D[:, 2])))  # 2 axial, 1 coronal, 0 sagittal
    h_axis, h_sign = {2: (0, 1), 1: (0, 1), 0: (1, -1)}[plane]
    v_axis, v_sign = {2: (1, 1), 1: (2, -1), 0: (2, -1)}[plane]
    col, row, (sc, sr) = D[:, 0].copy(), D[:, 1].copy(), (float(spacing[0]), float(spacing[1]))
    a = a2d
    if abs(col[h_axis]) < abs(row[h_axis]):
        a, col, row, sc, sr = a.T, row, col, sr, sc
    if np.sign(col[h_axis]) != h_sign:
        a, col = a[:, ::-1], -col
    if np.sign(row[v_axis]) != v_sign:
        a, row = a[::-1, :], -row
    return a, {"left": _letter(-col), "right": _letter(col), "top": _letter(-row), "bottom": _letter(row)}, sr / sc


def native_slice(analysis) -> dict:
    """The reference sequence's native slice with the largest tumour area: index (0-based in the file), number as
    a PACS shows it (1-based), count, slice thickness."""
    ref = analysis.pre.reference_native
    lab = sitk.GetArrayFromImage(analysis.label_native)
    k = int(np.argmax((lab > 0).sum(axis=(1, 2)))) if lab.any() else lab.shape[0] // 2
    return {"index": k, "number": k + 1, "n": int(lab.shape[0]), "thickness_mm": float(ref.GetSpacing()[2]),
            "sequence": SEQUENCE_NAMES[analysis.pre.reference]}


def overlay_figure(analysis) -> Tuple[str, str]:
    """(PNG, caption) of ``draw_overlay``: what the report embeds."""
    fig, caption = draw_overlay(analysis)
    return _png(fig), caption


def draw_overlay(analysis):
    """(matplotlib figure, caption): every sequence on the reference's native slice with the largest tumour area,
    the labels as contours, a legend and orientation letters on the four edges; the caption names the native slice
    number."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    pre = analysis.pre
    ref = pre.reference_native
    s = native_slice(analysis)
    k = s["index"]
    lab = sitk.GetArrayFromImage(analysis.label_native)[k]
    seqs = [q for q in ("t1", "t1c", "t2", "flair") if q in pre.images]
    fig, axes = plt.subplots(1, len(seqs), figsize=(3.0 * max(2, len(seqs)), 3.6), squeeze=False)
    for i, q in enumerate(seqs):
        if q == pre.reference and q in analysis.case.images:
            img = analysis.case.images[q]  # the pixels as acquired
        else:  # registered to the reference, brought back onto its native grid
            img = sitk.Resample(pre.images[q], ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        a = sitk.GetArrayFromImage(img)[k].astype(float)
        a, marks, aspect = display_slice(a, ref.GetDirection(), ref.GetSpacing())
        lb, _, _ = display_slice(lab, ref.GetDirection(), ref.GetSpacing())
        lo, hi = np.percentile(a[a > 0], (1, 99.5)) if (a > 0).any() else (0, 1)
        ax = axes[0, i]
        ax.imshow(a, cmap="gray", vmin=lo, vmax=hi, origin="upper", aspect=aspect, interpolation="nearest")
        for v, c in COLORS.items():
            if (lb == v).any():
                ax.contour((lb == v).astype(float), levels=[0.5], colors=[c], linewidths=1.2)
        for where, (x, y, ha, va) in {"left": (0.02, 0.5, "left", "center"), "right": (0.98, 0.5, "right", "center"),
                                      "top": (0.5, 0.98, "center", "top"),
                                      "bottom": (0.5, 0.02, "center", "bottom")}.items():
            ax.text(x, y, marks[where], transform=ax.transAxes, ha=ha, va=va, color="white", fontsize=11,
                    fontweight="bold", bbox=dict(facecolor="black", alpha=0.6, pad=1, edgecolor="none"))
        ax.set_axis_off()
        ax.set_title(f"{SEQUENCE_NAMES[q]}" + (" (reference)" if q == pre.reference else ""), fontsize=9)
    handles = [Line2D([0], [0], color=c, lw=2, label=LABEL_NAMES[v]) for v, c in COLORS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"{s['sequence']} native slice {s['number']} of {s['n']}", fontsize=10)
    fig.subplots_adjust(bottom=0.12)
    caption = (f"{s['sequence']} native slice {s['number']} of {s['n']} (1-based, in the file's slice order as a PACS "
               f"numbers it; {s['thickness_mm']:g} mm slices): the slice with the largest tumour area. The other "
               f"sequences are registered to {s['sequence']} and shown on the same slice. Contours: red necrosis, "
               "green edema, yellow enhancing. Letters on the edges give the patient's orientation (radiological "
               "view: the patient's right on the image's left).")
    return fig, caption


# --- nomograms ------------------------------------------------------------------------------------------------

def nomogram_figure(task: str, res: dict) -> str:
    """The task's nomogram (rms style: nomogram.draw_nomogram) from its predictions.json block, the case marked;
    a document written before nomogram axes existed gets the old points bars with a note. ``task``, ``res``: one
    (title, result) of render.nomogram_results, a logistic task's result or a JSON-bundle task entry with a
    nomogram (the Choi 2021 hybrid's); SYNTHETIC as render.nomogram_synthetic says. The web results card draws its
    figures with this function too."""
    from .nomogram import case_title, nomogram_figure as draw
    nomo = res["nomogram"]
    if "axes" in nomo:
        return _png(draw(nomo, case_title(task, nomo, nomogram_synthetic(res))))
    return _legacy_points_figure(task, res)


def legacy_points_bars(res: dict) -> List[Tuple[str, float, str]]:
    """(name, bar length, label) of the points-only figure: each variable's bar clipped to the 0-100 axis, its label
    the document's own points (marked when outside the axis), then "Total points" with the document's total, so the
    labels add up to the total that gives the probability."""
    pts = res["nomogram"]["points"]
    rows = []
    for n, v in pts.items():
        v = float(v)
        note = " (beyond 100)" if v > 100.0 else " (below 0)" if v < 0.0 else ""
        rows.append((n, min(max(v, 0.0), 100.0), f"{v:.1f}{note}"))
    total = float(res["nomogram"]["total_points"])
    return rows + [("Total points", max(total, 0.0), f"{total:.1f}")]


def _legacy_points_figure(task: str, res: dict) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .nomogram import format_probability

    rows = legacy_points_bars(res)
    fig, ax = plt.subplots(figsize=(5.5, 0.5 + 0.45 * len(rows)))
    y = np.arange(len(rows))[::-1]
    ax.barh(y, [r[1] for r in rows], color=["#4a7fb0"] * (len(rows) - 1) + ["#b04a4a"])
    ax.set_yticks(y)
    ax.set_yticklabels([r[0] for r in rows])
    for yi, (_, v, label) in zip(y, rows):
        ax.text(v, yi, f" {label}", va="center", fontsize=8)
    ax.set_xlabel("nomogram points (bars: 0-100 per variable, clipped; labels: the case's points)")
    ax.set_title(f"{task}: probability {format_probability(res['probability'])} (points only: this predictions "
                 "document has no nomogram axes)", fontsize=9)
    return _png(fig)


# --- the blocks -----------------------------------------------------------------------------------------------

Block = Tuple[str, object]  # (kind, content): title, h2, h3, p, warn, synth, kv, table, list, img, small


def report_blocks(doc: dict, analysis=None) -> List[Block]:
    """The report's content once, in order; ``render_report`` (HTML) and ``write_pdf_report`` draw it."""
    rows = task_rows(doc)
    case = doc.get("case") or {}
    b: List[Block] = [("title", f"GliomaRadiogenomics report: case {case.get('id', '?')}"),
                      ("warn", doc.get("disclaimer", ""))]
    synthetic_models = any_synthetic_model(doc)
    if synthetic_models or case.get("synthetic"):
        b.append(("synth", " ".join(t for t in ((SYNTHETIC_CASE_NOTE if case.get("synthetic") else ""),
                                                 synthetic_models_note(doc)) if t)))
    b += [("h2", "Patient and study"), ("kv", patient_rows(doc)),
          ("h2", "Key result"), ("p", key_result_line(doc)),
          ("h2", "Input quality")]
    iq = input_quality_lines(doc)
    b.append(("list", iq) if iq else ("p", "No input-quality warnings."))
    seq = sequence_rows(doc)
    if seq:
        b += [("h2", "Sequences (as acquired)"),
              ("table", (["sequence", "voxel spacing", "slice thickness", "slices", "role"], seq))]
    b += [("h2", "Research probabilities"),
          ("table", (["task", "probability", "status", "label (at cutoff)", "cutoff", "total points", "model",
                      "CV AUC (95% CI)"],
                     [[r.task, r.probability_text, r.status_text, r.label + (f" ({r.reason})" if r.reason else ""),
                       r.cutoff_text, r.points_text, r.model, r.auc_text] for r in rows]))]
    notes = [f"{r.task}: {r.status_detail}" for r in rows if r.status_notes]
    if notes:
        b.append(("list", notes))
    if any(r.points_text.endswith("*") or any(r.points_clipped.values()) for r in rows):
        b.append(("p", "* Points are shown clipped to their axis (0-100 per variable): the case lies outside the "
                       "range the model was trained on there, so the probability is extrapolated (exact values in "
                       "predictions.json)."))
    shim = shim_table(doc)
    if shim:
        b += [("h3", shim_title(doc)), ("table", shim), ("p", shim_note(doc))]
    figs = nomogram_results(doc)
    if figs:
        b += [("h2", "Nomograms"),
              ("p", "Read each nomogram from the top: the case's value on each variable's axis (red marker) gives "
                    "its points on the Points scale; the points add up to the Total points, which map to the "
                    "Probability below them. The variable with the widest effect spans 0-100 points over its trimmed "
                    "training range; a value outside an axis is marked 'out of range' beside it.")]
        for t, r in figs:
            try:
                b.append(("img", (f"nomogram {t}", nomogram_figure(t, r))))
            except Exception as exc:  # a figure must not break the report
                b.append(("warn", f"{t}: nomogram figure failed ({type(exc).__name__}: {exc})"))
    seg = doc.get("segmentation") or {}
    vol = seg.get("volumes_ml") or {}
    b += [("h2", "Segmentation"),
          ("table", (list(vol), [[f"{v:.1f} mL" for v in vol.values()]])),
          ("p", "WT whole tumor, TC tumor core, ET enhancing, NCR necrosis, ED edema. "
                + str((doc.get("features") or {}).get("segmentation") or "Automatic segmentation")
                + ": review and correct it before relying on the features.")]
    if analysis is not None:
        try:
            png, caption = overlay_figure(analysis)
            b += [("img", ("segmentation on the native slice", png)), ("p", caption)]
        except Exception as exc:  # a figure must not break the report
            b.append(("warn", f"segmentation figure failed: {exc}"))
    b.append(("h2", "Model cards"))
    for t in doc.get("tasks", []):
        b += [("h3", f"{t}"), ("kv", model_card_rows(doc, t))]
    for r in shim_rows(doc):  # the JSON-bundle tasks (Shim 2021, Choi 2021): from what their bundles record
        b += [("h3", r.title), ("kv", r.card)]
    if doc.get("warnings"):
        b += [("h2", "Warnings"), ("list", [str(w) for w in doc["warnings"]])]
    pre = doc.get("preprocessing") or {}
    feat = doc.get("features") or {}
    b += [("h2", "Processing"),
          ("list", [str(s) for s in pre.get("steps") or []]
           + [f"features: {feat.get('n', '?')} ({feat.get('preset')}, settings {feat.get('settings_hash')}, "
              f"PyRadiomics {feat.get('pyradiomics_version')})"]),
          ("h2", "Inputs"), ("list", [f"{k}: {v}" for k, v in (doc.get("inputs") or {}).items()])]
    sw = doc.get("software") or {}
    b.append(("small", f"{sw.get('name', '')} {sw.get('version', '')}, {doc.get('created', '')}"))
    return b


def _esc(v) -> str:
    return html.escape(str(v))


CSS = ("body{font-family:sans-serif;max-width:1100px;margin:auto}.warn{background:#fff3cd;border:1px solid #e0c060;"
       "padding:8px}.synth{background:#f8d7da;border:2px solid #c0392b;padding:10px;font-weight:bold}"
       "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
       "td.status-valid{color:#1e7e34}td.status-flag{color:#b03a2e;font-weight:bold}img{max-width:100%}")


def render_html(blocks: List[Block], title: str) -> str:
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_esc(title)}</title><style>{CSS}</style>"
           "</head><body>"]
    for kind, c in blocks:
        if kind == "title":
            out.append(f"<h1>{_esc(c)}</h1>")
        elif kind in ("h2", "h3"):
            out.append(f"<{kind}>{_esc(c)}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_esc(c)}</p>")
        elif kind in ("warn", "synth"):
            out.append(f"<p class='{kind}'>{_esc(c)}</p>")
        elif kind == "small":
            out.append(f"<p><small>{_esc(c)}</small></p>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{_esc(x)}</li>" for x in c) + "</ul>")
        elif kind == "kv":
            out.append("<table>" + "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in c)
                       + "</table>")
        elif kind == "table":
            head, body = c
            st = head.index("status") if "status" in head else -1

            def td(j, x):
                cls = (" class='status-valid'" if x == "valid" else " class='status-flag'") if j == st else ""
                return f"<td{cls}>{_esc(x)}</td>"
            out.append("<table><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>"
                       + "".join("<tr>" + "".join(td(j, x) for j, x in enumerate(r)) + "</tr>" for r in body)
                       + "</table>")
        elif kind == "img":
            alt, png = c
            out.append(f"<p><img alt='{_esc(alt)}' src='data:image/png;base64,{png}'></p>")
    out.append("</body></html>")
    return "\n".join(out)


def render_report(doc: dict, analysis) -> str:
    return render_html(report_blocks(doc, analysis), f"GliomaRadiogenomics report {(doc.get('case') or {}).get('id')}")


def write_report(doc: dict, analysis, path, pdf: bool = True) -> Path:
    """``report.html`` and, with ``pdf``, ``report.pdf`` beside it: the same blocks (one figure rendering)."""
    blocks = report_blocks(doc, analysis)
    title = f"GliomaRadiogenomics report {(doc.get('case') or {}).get('id')}"
    out = atomic_write_text(Path(path), render_html(blocks, title))
    if pdf:
        atomic_write_bytes(Path(path).with_suffix(".pdf"), pdf_bytes(blocks))
    return out


# --- PDF: the same blocks on A4 pages ---------------------------------------------------------------------------

class _Pages:
    W, H, M = 8.27, 11.69, 0.55  # A4 inches, margin

    def __init__(self):
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib.backends.backend_pdf import PdfPages
        self.buf = io.BytesIO()
        self.pdf = PdfPages(self.buf, metadata={"Title": "GliomaRadiogenomics report"})
        self.fig = None
        self.new_page()

    def new_page(self):
        import matplotlib.pyplot as plt
        if self.fig is not None:
            self.pdf.savefig(self.fig)
            plt.close(self.fig)
        self.fig = plt.figure(figsize=(self.W, self.H))
        self.y = self.H - self.M

    def need(self, h):
        if self.y - h < self.M and self.y < self.H - self.M - 1e-6:
            self.new_page()

    def text(self, s: str, size=8.0, weight="normal", x=0.0, width=None, color="black", bg=None) -> float:
        """Wrapped text at the cursor (never split inside a word or at a hyphen); returns its height."""
        width = width or (self.W - 2 * self.M - x)
        chars = max(10, int(width * 72 / (size * 0.55)))
        lines = textwrap.wrap(s, chars, break_long_words=False, break_on_hyphens=False) or [""]
        lh = size * 1.35 / 72
        for ln in lines:
            self.need(lh)
            self.fig.text((self.M + x) / self.W, (self.y - lh * 0.8) / self.H, ln, fontsize=size,
                          fontweight=weight, color=color, parse_math=False,
                          bbox=dict(facecolor=bg, edgecolor="none", pad=1) if bg else None)
            self.y -= lh
        return lh * len(lines)

    def gap(self, h=0.08):
        self.y -= h

    def table(self, head, body, size=7.0):
        if not head:
            return
        usable = self.W - 2 * self.M
        cols = [head] + list(body)
        n = len(head)
        pad = 0.12  # inches between columns
        cw = size * 0.62 / 72  # inches per character (generous: a bold header is wider)
        widest = [max(len(str(r[j])) for r in cols) for j in range(n)]
        word = [max(len(x) for r in cols for x in (str(r[j]).split() or [""])) * cw + pad for j in range(n)]
        want = [max(word[j], min(widest[j], 60) * cw + pad) for j in range(n)]
        extra = max(0.0, usable - sum(word))
        grow = [want[j] - word[j] for j in range(n)]
        w = [word[j] + (extra * grow[j] / sum(grow) if sum(grow) > extra and sum(grow) > 0 else grow[j])
             for j in range(n)]
        lh = size * 1.35 / 72
        for i, r in enumerate(cols):
            wrapped = [textwrap.wrap(str(r[j]), max(4, int((w[j] - pad) / cw)), break_long_words=False,
                                     break_on_hyphens=False) or [""] for j in range(n)]
            h = lh * max(len(c) for c in wrapped) + 0.03
            self.need(h)
            x = 0.0
            for j, cell in enumerate(wrapped):
                for li, ln in enumerate(cell):
                    self.fig.text((self.M + x) / self.W, (self.y - lh * (li + 0.8)) / self.H, ln, fontsize=size,
                                  fontweight="bold" if i == 0 else "normal", parse_math=False)
                x += w[j]
            self.y -= h

    def image(self, png_b64: str):
        import matplotlib.image as mpimg
        a = mpimg.imread(io.BytesIO(base64.b64decode(png_b64)), format="png")
        h_in, w_in = a.shape[0] / DPI, a.shape[1] / DPI
        scale = min(1.0, (self.W - 2 * self.M) / w_in, (self.H - 2 * self.M) / h_in)
        w_in, h_in = w_in * scale, h_in * scale
        self.need(h_in)
        ax = self.fig.add_axes([self.M / self.W, (self.y - h_in) / self.H, w_in / self.W, h_in / self.H])
        ax.imshow(a, interpolation="antialiased")
        ax.set_axis_off()
        self.y -= h_in + 0.05

    def close(self) -> bytes:
        import matplotlib.pyplot as plt
        self.pdf.savefig(self.fig)
        plt.close(self.fig)
        self.pdf.close()
        return self.buf.getvalue()


def pdf_bytes(blocks: List[Block]) -> bytes:
    pg = _Pages()
    for kind, c in blocks:
        if kind == "title":
            pg.text(c, size=14, weight="bold")
            pg.gap()
        elif kind == "h2":
            pg.gap(0.1)
            pg.need(0.5)
            pg.text(c, size=11, weight="bold")
        elif kind == "h3":
            pg.need(0.4)
            pg.text(c, size=9.5, weight="bold")
        elif kind == "p":
            pg.text(c)
            pg.gap(0.04)
        elif kind == "warn":
            pg.text(c, bg="#fff3cd")
            pg.gap()
        elif kind == "synth":
            pg.text(c, weight="bold", color="#c0392b")
            pg.gap()
        elif kind == "small":
            pg.text(c, size=6.5, color="#555555")
        elif kind == "list":
            for x in c:
                pg.text("\u2022 " + str(x))  # bullet (the HTML list's marker)
        elif kind == "kv":
            for k, v in c:
                start = pg.y
                pg.text(str(k), weight="bold", width=1.5)
                after = pg.y
                pg.y = start
                pg.text(str(v), x=1.6)
                pg.y = min(pg.y, after)
        elif kind == "table":
            pg.table(*c)
            pg.gap()
        elif kind == "img":
            pg.image(c[1])
    return pg.close()


def write_pdf_report(doc: dict, path, analysis=None) -> Path:
    """The report as a PDF: the same blocks as the HTML report (with the segmentation figure when ``analysis``
    holds the images)."""
    return atomic_write_bytes(Path(path), pdf_bytes(report_blocks(doc, analysis)))


def write_pdf_summary(doc: dict, path, analysis=None) -> Path:
    """Kept for callers (Slicer Logic, batch): the full report as PDF (write_pdf_report)."""
    return write_pdf_report(doc, path, analysis)
