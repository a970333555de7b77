"""Self-contained HTML report (figures embedded as PNG): segmentation overlay, probabilities, nomogram points,
model provenance (what each model was trained on, synthetic or not) and warnings."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .case import SEQUENCE_NAMES
from .io import atomic_write_text
from .render import task_rows

COLORS = {1: (0.85, 0.2, 0.2), 2: (0.2, 0.75, 0.3), 3: (1.0, 0.85, 0.1)}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def overlay_figure(analysis) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # radiological display: LPS array order puts anterior at the top and the patient's right on the image's left
    lps = lambda img: sitk.DICOMOrient(img, "LPS")  # noqa: E731
    lab = sitk.GetArrayFromImage(lps(analysis.label))
    if lab.any():
        z = int(np.argmax((lab > 0).sum(axis=(1, 2))))
    else:
        z = lab.shape[0] // 2
    seqs = [s for s in ("t1", "t1c", "t2", "flair") if s in analysis.pre.images]
    fig, axes = plt.subplots(2, len(seqs), figsize=(3.2 * max(2, len(seqs)), 6.6), squeeze=False)
    rgba = np.zeros(lab.shape[1:] + (4,))
    for v, c in COLORS.items():
        rgba[lab[z] == v] = (*c, 0.45)
    for i, s in enumerate(seqs):
        a = sitk.GetArrayFromImage(lps(analysis.pre.images[s]))[z]
        lo, hi = np.percentile(a[a > 0], (1, 99.5)) if (a > 0).any() else (0, 1)
        for row in range(2):
            ax = axes[row, i]
            ax.imshow(a, cmap="gray", vmin=lo, vmax=hi, origin="upper")
            if row == 1:
                ax.imshow(rgba, origin="upper")
            ax.set_axis_off()
        axes[0, i].set_title(SEQUENCE_NAMES[s])
    fig.suptitle(f"axial slice {z} (radiological view: patient's right on the left), red necrosis, green edema, "
                 "yellow enhancing", fontsize=10)
    return _png(fig)


def nomogram_figure(task: str, res: dict) -> str:
    """The task's nomogram (rms style: nomogram.draw_nomogram) from its predictions.json block, the case marked;
    a document written before nomogram axes existed gets the old points bars with a note."""
    from .nomogram import case_title, nomogram_figure as draw
    nomo = res["nomogram"]
    if "axes" in nomo:
        model = res.get("model") or {}
        return _png(draw(nomo, case_title(task, nomo, bool(model.get("synthetic")))))
    return _legacy_points_figure(task, res)


def _legacy_points_figure(task: str, res: dict) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .nomogram import format_probability

    pts = res["nomogram"]["points"]
    names = list(pts)
    fig, ax = plt.subplots(figsize=(5.5, 0.5 + 0.45 * (len(names) + 1)))
    y = np.arange(len(names) + 1)[::-1]
    vals = [pts[n] for n in names] + [res["nomogram"]["total_points"]]
    colors = ["#4a7fb0"] * len(names) + ["#b04a4a"]
    ax.barh(y, vals, color=colors)
    ax.set_yticks(y)
    ax.set_yticklabels(names + ["Total points"])
    for yi, v in zip(y, vals):
        ax.text(v, yi, f" {v:.1f}", va="center", fontsize=8)
    ax.set_xlabel("nomogram points (0-100 per variable)")
    ax.set_title(f"{task}: probability {format_probability(res['probability'])} (points only: this predictions "
                 "document has no nomogram axes)", fontsize=9)
    return _png(fig)


def _esc(v) -> str:
    return html.escape(str(v))


def render_report(doc: dict, analysis) -> str:
    parts = []
    synthetic_any = any(doc.get(t, {}).get("model", {}).get("synthetic") for t in doc.get("tasks", []))
    parts.append("<!DOCTYPE html><html><head><meta charset='utf-8'><title>GliomaRadiogenomics report "
                 f"{_esc(doc['case']['id'])}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}"
                 ".warn{background:#fff3cd;border:1px solid #e0c060;padding:8px}.synth{background:#f8d7da;"
                 "border:2px solid #c0392b;padding:10px;font-weight:bold}table{border-collapse:collapse}"
                 "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head><body>")
    parts.append(f"<h1>GliomaRadiogenomics &mdash; case {_esc(doc['case']['id'])}</h1>")
    parts.append(f"<p class='warn'>{_esc(doc['disclaimer'])}</p>")
    if synthetic_any or doc["case"].get("synthetic"):
        parts.append("<p class='synth'>SYNTHETIC: "
                     + ("this case is a simulated glioma on template anatomy. " if doc["case"].get("synthetic") else "")
                     + ("the models below were trained on SYNTHETIC data and demonstrate the software only."
                        if synthetic_any else "") + "</p>")
    parts.append("<h2>Research probabilities</h2><table><tr><th>task</th><th>probability</th><th>label "
                 "(at cutoff)</th><th>cutoff</th><th>total points</th><th>model</th><th>trained on</th>"
                 "<th>synthetic</th><th>CV AUC (95% CI)</th></tr>")
    for row in task_rows(doc):
        label = row.label + (f" ({row.reason})" if row.reason else "")
        parts.append(f"<tr><td>{_esc(row.task)}</td><td>{row.probability_text}</td><td>{_esc(label)}</td>"
                     f"<td>{row.cutoff_text}</td><td>{row.points_text}</td><td>{_esc(row.model)}</td>"
                     f"<td>{_esc(row.trained_on)}</td><td>{'YES' if row.synthetic else 'no'}</td>"
                     f"<td>{_esc(row.auc_text)}</td></tr>")
    parts.append("</table>")
    parts.append("<h2>Nomograms</h2><p>Read each nomogram from the top: the case's value on each variable's axis "
                 "(red marker) gives its points on the Points scale; the points add up to the Total points, which "
                 "map to the Probability below them. The variable with the widest effect spans 0-100 points over "
                 "its trimmed training range; a value outside an axis is marked 'out of range' beside it.</p>")
    for t in doc.get("tasks", []):
        r = doc[t]
        if r.get("nomogram"):
            parts.append(f"<img alt='nomogram {t}' src='data:image/png;base64,{nomogram_figure(t, r)}'>")
    parts.append("<h2>Segmentation</h2><table><tr>" + "".join(f"<th>{_esc(k)}</th>" for k in doc["segmentation"]["volumes_ml"])
                 + "</tr><tr>" + "".join(f"<td>{v:.1f} mL</td>" for v in doc["segmentation"]["volumes_ml"].values())
                 + "</tr></table><p>WT whole tumor, TC tumor core, ET enhancing, NCR necrosis, ED edema. "
                 "Automatic segmentation: review and correct it before relying on the features.</p>")
    try:
        parts.append(f"<img alt='segmentation overlay' src='data:image/png;base64,{overlay_figure(analysis)}'>")
    except Exception as exc:  # a figure must not break the report
        parts.append(f"<p class='warn'>overlay figure failed: {_esc(exc)}</p>")
    if doc.get("warnings"):
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{_esc(w)}</li>" for w in doc["warnings"]) + "</ul>")
    parts.append("<h2>Processing</h2><ul>" + "".join(f"<li>{_esc(s)}</li>" for s in doc["preprocessing"]["steps"])
                 + f"<li>features: {doc['features']['n']} ({_esc(doc['features'].get('preset'))}, settings "
                 f"{_esc(doc['features'].get('settings_hash'))}, PyRadiomics {_esc(doc['features'].get('pyradiomics_version'))})</li></ul>")
    parts.append("<h2>Inputs</h2><ul>" + "".join(f"<li>{_esc(k)}: {_esc(v)}</li>" for k, v in doc["inputs"].items())
                 + "</ul>")
    parts.append(f"<p><small>{_esc(doc['software']['name'])} {_esc(doc['software']['version'])}, "
                 f"{_esc(doc['created'])}</small></p></body></html>")
    return "\n".join(parts)


def write_report(doc: dict, analysis, path) -> Path:
    return atomic_write_text(Path(path), render_report(doc, analysis))


def write_pdf_summary(doc: dict, path) -> Path:
    """One-page PDF: research probabilities, labels, model provenance (trained on, synthetic) and each task's nomogram
    points; the disclaimer. Written atomically (matplotlib, no Qt needed)."""
    import io
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .io import atomic_write_bytes
    from .nomogram import case_title, draw_nomogram, format_probability
    tasks = [t for t in doc.get("tasks", []) if doc.get(t)]
    heights = [2.0] + [0.5 * (len((doc[t].get("nomogram") or {}).get("axes") or []) + 3) + 0.7
                       if (doc[t].get("nomogram") or {}).get("axes") else 2.2 for t in tasks]
    fig = plt.figure(figsize=(8.27, sum(heights)))
    subs = list(np.atleast_1d(fig.subfigures(len(tasks) + 1, 1, height_ratios=heights)))
    head = subs[0].subplots()
    head.axis("off")
    lines = [f"GliomaRadiogenomics: case {doc['case'].get('case_id', '')}", doc["disclaimer"]]
    for row in task_rows(doc):
        lines.append(row.line() + ("  [SYNTHETIC training data: demonstration only]" if row.synthetic else ""))
    head.text(0, 1, "\n".join(lines), va="top", fontsize=7, wrap=True)
    for sub, t in zip(subs[1:], tasks):
        nomo = doc[t].get("nomogram")
        if not nomo:
            sub.subplots().axis("off")
            continue
        if "axes" in nomo:
            draw_nomogram(sub, nomo, case_title(t, nomo, bool((doc[t].get("model") or {}).get("synthetic"))))
            sub.subplots_adjust(left=0.2, right=0.75, hspace=0.0, top=0.88, bottom=0.06)
            continue
        ax = sub.subplots()  # a document without nomogram axes: the old points bars
        items = list(nomo["points"].items())
        ax.barh([k for k, _ in items], [v for _, v in items], color="#2e86c1")
        ax.set_xlim(0, 100)
        ax.set_xlabel("points (0-100)")
        ax.set_title(f"{t}: total points {nomo['total_points']:.1f} -> probability "
                     f"{format_probability(doc[t]['probability'])} (no nomogram axes in this document)", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="pdf")
    plt.close(fig)
    return atomic_write_bytes(Path(path), buf.getvalue())
