"""The one renderer of a predictions document (predictions.json) into display rows and text lines.

The CLI summary, the HTML report, the PDF summary, the Slicer table node, the GliomaPredict status label and the web
app all show the same facts for each task (probability, label at the cutoff, nomogram points, model, what it was
trained on, SYNTHETIC or not, why a task is not available); they take them from here so that the wording and the
number formats cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

SYNTHETIC_MODELS_NOTE = "The default models were trained on SYNTHETIC data: the numbers demonstrate the software only."


@dataclass
class TaskRow:
    task: str
    available: bool
    probability: Optional[float]
    probability_text: str          # "0.734" or "n/a"
    label: str                     # label at the cutoff, or "not available (...)"
    cutoff_text: str
    points_text: str               # total nomogram points "57.3" or "n/a"
    points: Dict[str, float]       # per-variable points
    model: str                     # "<name> v<version>"
    trained_on: str
    synthetic: bool
    auc_text: str                  # "0.75 (0.58-0.93)" or "n/a"
    reason: str = ""               # why the task is not available (missing sequence, ...)
    warnings: List[str] = field(default_factory=list)

    @property
    def trained_on_text(self) -> str:
        return self.trained_on + (" (SYNTHETIC)" if self.synthetic else "")

    @property
    def points_breakdown(self) -> str:
        return ", ".join(f"{k} {v:.1f}" for k, v in self.points.items())

    def line(self, digits: Optional[int] = None) -> str:
        """One line of plain text for status labels and summaries; the probability with 2 significant digits
        (0.085, not 0.08), or ``digits`` decimals."""
        if not self.available:
            return f"{self.task}: not available ({self.reason or self.label})"
        from .nomogram import format_probability
        prob = format_probability(self.probability) if digits is None else f"{self.probability:.{digits}f}"
        return (f"{self.task}: {prob} ({self.label}), {self.points_text} points; model {self.model}, trained on "
                f"{self.trained_on_text}")


def _auc_text(metrics: dict) -> str:
    if metrics.get("auc_cv") is None:
        return "n/a"
    ci = metrics.get("auc_cv_95ci") or ["?", "?"]
    return f"{metrics['auc_cv']} ({ci[0]}-{ci[1]})"


def task_rows(doc: dict) -> List[TaskRow]:
    """One row per task of the document, in the document's task order."""
    rows = []
    for t in doc.get("tasks", []):
        r = doc.get(t) or {}
        m = r.get("model") or {}
        p = r.get("probability")
        nomo = r.get("nomogram") or {}
        cutoff = r.get("cutoff")
        rows.append(TaskRow(
            task=t, available=p is not None, probability=p,
            probability_text="n/a" if p is None else f"{p:.3f}",
            label=str(r.get("label", "")),
            cutoff_text="n/a" if cutoff is None else f"{cutoff:.3f}",
            points_text=f"{nomo['total_points']:.1f}" if nomo.get("total_points") is not None else "n/a",
            points={k: float(v) for k, v in (nomo.get("points") or {}).items()},
            model=f"{m.get('name', '?')} v{m.get('version', '?')}",
            trained_on=str(m.get("trained_on", "?")), synthetic=bool(m.get("synthetic")),
            auc_text=_auc_text(m.get("metrics") or {}), reason=str(r.get("reason") or ""),
            warnings=[str(w) for w in (r.get("warnings") or [])]))
    return rows


def any_synthetic_model(doc: dict) -> bool:
    return any(row.synthetic for row in task_rows(doc))


def summary_lines(doc: dict, digits: Optional[int] = None) -> List[str]:
    """Plain-text lines: one per task, the warnings, the SYNTHETIC notes and the disclaimer."""
    lines = [row.line(digits) for row in task_rows(doc)]
    if doc.get("warnings"):
        lines.append("Warnings: " + "; ".join(str(w) for w in doc["warnings"]))
    if any_synthetic_model(doc):
        lines.append(SYNTHETIC_MODELS_NOTE)
    if (doc.get("case") or {}).get("synthetic"):
        lines.append("SYNTHETIC case (simulated glioma on template anatomy).")
    if doc.get("disclaimer"):
        lines.append(doc["disclaimer"])
    return lines
