"""The one renderer of a predictions document (predictions.json) into display rows and text lines.

The CLI summary, the HTML report, the PDF report, the Slicer table node, the GliomaPredict status label and the web
app all show the same facts for each task (probability, label at the cutoff, nomogram points, model, what it was
trained on, SYNTHETIC or not, why a task is not available, and the task's status); they take them from here so that
the wording and the number formats cannot drift apart.

The status of a task is decided here, once (``task_status``): ``not available``, ``out of intended use``,
``extrapolated`` (a variable outside its nomogram axis, i.e. its training range), ``imputed inputs`` (a variable
replaced by its training value), ``synthetic model``, or ``valid`` when none applies. Every screen shows it in the
same row as the probability. Nomogram points are shown clipped to their axis (0-100 per variable) with a flag,
never as -229 points; the exact value stays in predictions.json.

The JSON-bundle tasks (predictions.json ``bundle_tasks``, read by ``bundle_task_entries``; ``shim2021`` in documents
of schema version 1): the Shim 2021 tasks of a run with a CBV map (recurrence-pattern probability, Cox-LASSO risk
group) have their own rows (``shim_rows``: the result, ``not computed`` with the reason, SYNTHETIC model, what the
model was trained on) shown by the same screens; a document without the list shows none. A Choi 2021 hybrid IDH
bundle given to `run` (choi.py, kind 'choi') has its entry in the same list and is shown the same way (a
probability and its label at the cutoff), named with its paper (``ShimRow.paper``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple



class _StatusShown:
    """What every row shows the same way: its statuses (codes of STATUS_WORDS, most serious first) with their
    reasons, and what its model was trained on."""
    statuses: List[str]
    status_notes: List[str]
    trained_on: str
    synthetic: bool

    @property
    def status(self) -> str:
        """The most serious status (the first of ``statuses``)."""
        return self.statuses[0] if self.statuses else "valid"

    @property
    def status_text(self) -> str:
        """All statuses in one short cell: "extrapolated; imputed inputs; SYNTHETIC model" or "valid"."""
        return "; ".join(STATUS_WORDS[s] for s in (self.statuses or ["valid"]))

    @property
    def status_detail(self) -> str:
        """The status with its reasons, for the row's detail line."""
        return self.status_text + (": " + "; ".join(self.status_notes) if self.status_notes else "")

    @property
    def trained_on_text(self) -> str:
        return self.trained_on + (" (SYNTHETIC)" if self.synthetic else "")


@dataclass
class TaskRow(_StatusShown):
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
    statuses: List[str] = field(default_factory=list)   # codes of STATUS_ORDER, most serious first; ["valid"]
    status_notes: List[str] = field(default_factory=list)  # why each status other than valid applies
    points_clipped: Dict[str, bool] = field(default_factory=dict)  # per-variable points shown clipped to the axis
    max_points: float = 100.0

    @property
    def points_breakdown(self) -> str:
        """Per-variable points clipped to the axis (0-100): a value beyond it reads "0.0 (clipped: off axis)"."""
        return ", ".join(f"{k} {_clip(v, 0.0, self.max_points):.1f}" + (" (clipped: off axis)"
                                                                          if self.points_clipped.get(k) else "")
                         for k, v in self.points.items())

    def line(self, digits: Optional[int] = None) -> str:
        """One line of plain text for status labels and summaries; the probability with 2 significant digits
        (0.085, not 0.08), or ``digits`` decimals."""
        if not self.available:
            return f"{self.task}: not available ({self.reason or self.label})"
        from .nomogram import format_probability
        prob = format_probability(self.probability) if digits is None else f"{self.probability:.{digits}f}"
        return (f"{self.task}: {prob} ({self.label}) [{self.status_text}], {self.points_text} points; model "
                f"{self.model}, trained on {self.trained_on_text}")


STATUS_ORDER = ("not available", "out of intended use", "extrapolated", "imputed inputs", "synthetic model", "valid")
STATUS_WORDS = {"not available": "NOT AVAILABLE", "out of intended use": "OUT OF INTENDED USE",
                "extrapolated": "EXTRAPOLATED", "imputed inputs": "imputed inputs",
                "synthetic model": "SYNTHETIC model", "valid": "valid",
                "not computed": "NOT COMPUTED"}  # the last: a Shim 2021 task without its CBV map (ShimRow)
_INTENDED_USE_WORDS = "out of its intended use"


def _clip(v: float, lo: float, hi: float) -> float:
    return min(max(float(v), lo), hi)


def task_status(r: dict):
    """(statuses most serious first, notes) of one task block of predictions.json: the one definition."""
    statuses, notes = [], []
    m = r.get("model") or {}
    nomo = r.get("nomogram") or {}
    if r.get("probability") is None:
        statuses.append("not available")
        notes.append(str(r.get("reason") or r.get("label") or "no probability"))
    use = r.get("out_of_intended_use") or next((w for w in r.get("warnings") or [] if _INTENDED_USE_WORDS in str(w)),
                                               None)
    if use and r.get("probability") is not None:
        statuses.append("out of intended use")
        notes.append(str(use))
    axes = nomo.get("axes") or []
    off = [a for a in axes if (a.get("case") or {}).get("out_of_range")]
    max_pts = float(nomo.get("max_points_per_variable") or 100)
    beyond = [k for k, v in (nomo.get("points") or {}).items() if not -1e-6 <= float(v) <= max_pts + 1e-6]
    if off or beyond or nomo.get("total_out_of_range"):
        statuses.append("extrapolated")
        named = [a.get("title") or a.get("name") for a in off] or beyond
        notes.append(("outside the training range: " + ", ".join(
            f"{n} ({(a.get('case') or {}).get('range_text', '')})".replace(" ()", "")
            for n, a in zip(named, off or [{}] * len(named)))) if named else "total points outside the axis")
    imputed = [a.get("title") or a.get("name") for a in axes if (a.get("case") or {}).get("imputed")]
    if not axes:  # a document without axes: the bundle's warning says what was replaced
        imputed = [str(w) for w in r.get("warnings") or [] if "replaced by the training" in str(w)]
    if imputed and r.get("probability") is not None:
        statuses.append("imputed inputs")
        notes.append("imputed (training value): " + ", ".join(imputed))
    if m.get("synthetic"):
        statuses.append("synthetic model")
        notes.append("trained on SYNTHETIC data: demonstration only")
    return statuses or ["valid"], notes


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
        max_pts = float(nomo.get("max_points_per_variable") or 100)
        points = {k: float(v) for k, v in (nomo.get("points") or {}).items()}
        total_hi = float((nomo.get("total_points_range") or [0, max_pts * max(1, len(points))])[1])
        total = nomo.get("total_points")
        statuses, notes = task_status(r)
        rows.append(TaskRow(
            task=t, available=p is not None, probability=p,
            probability_text="n/a" if p is None else f"{p:.3f}",
            label=str(r.get("label", "")),
            cutoff_text="n/a" if cutoff is None else f"{cutoff:.3f}",
            points_text="n/a" if total is None else f"{_clip(total, 0.0, total_hi):.1f}"
                                                   + ("*" if not 0 <= float(total) <= total_hi else ""),
            points=points,
            model=f"{m.get('name', '?')} v{m.get('version', '?')}",
            trained_on=str(m.get("trained_on", "?")), synthetic=bool(m.get("synthetic")),
            auc_text=_auc_text(m.get("metrics") or {}), reason=str(r.get("reason") or ""),
            warnings=[str(w) for w in (r.get("warnings") or [])], statuses=statuses, status_notes=notes,
            points_clipped={k: not -1e-6 <= v <= max_pts + 1e-6 for k, v in points.items()}, max_points=max_pts))
    return rows


# --- the JSON-bundle tasks (predictions.json "bundle_tasks": shim.case_predictions) ------------------------------

BUNDLE_TASKS_KEY = "bundle_tasks"      # predictions.json schema version 2 (pipeline.evaluate_case writes it)
LEGACY_BUNDLE_TASKS_KEY = "shim2021"   # the same list in documents of schema version 1


def bundle_task_entries(doc: dict) -> List[dict]:
    """The JSON-bundle task entries of a predictions document (Shim 2021 recurrence / survival, Choi 2021 hybrid
    IDH): its ``bundle_tasks`` list, or the ``shim2021`` list of a document written before the key was renamed
    (schema version 1); [] when it has neither. Every reader takes the entries from here."""
    if BUNDLE_TASKS_KEY in doc:
        return list(doc[BUNDLE_TASKS_KEY] or [])
    return list(doc.get(LEGACY_BUNDLE_TASKS_KEY) or [])


SHIM_TITLE = "Shim 2021 tasks (DSC perfusion)"
CHOI_TITLE = "Choi 2021 hybrid IDH (CNN on the tumour slices + shape / loci / age)"
PAPER_TITLES = {"Shim 2021": SHIM_TITLE, "Choi 2021": CHOI_TITLE}


@dataclass
class ShimRow(_StatusShown):
    """One Shim 2021 entry as every screen shows it: a recurrence-pattern probability with its label, or a
    Cox-LASSO risk score with its risk group; or not computed, with the reason."""
    task: str
    kind: str                      # 'recurrence' | 'survival' | 'choi' (Choi 2021 hybrid IDH, also a probability)
    available: bool
    value_text: str                # "probability 0.734" / "risk score +0.123" / "not computed"
    label: str                     # the label at the cutoff / "high risk" / "" when not computed
    cutoff_text: str               # "cutoff 0.5" / "training median +0.123" / ""
    model: str                     # "<name> v<version>"
    trained_on: str
    synthetic: bool
    reason: str = ""
    statuses: List[str] = field(default_factory=list)   # not computed / imputed inputs / synthetic model / valid
    status_notes: List[str] = field(default_factory=list)
    paper: str = "Shim 2021"       # the method's paper, shown beside the task
    card: List[tuple] = field(default_factory=list)     # the model card's (field, value) rows (shim_card_rows)

    @property
    def title(self) -> str:
        """The row's name on every screen that names it apart from the logistic tasks: "IDH (Choi 2021)" (the
        Slicer table's task cell, the report's model card, the nomogram's title: ``nomogram_results``)."""
        return f"{self.task} ({self.paper})"

    @property
    def result_text(self) -> str:
        """"probability 0.734, distant (cutoff 0.5)" / "risk score +0.123, high risk (training median +0.050)" /
        "not computed: <reason>"."""
        if not self.available:
            return f"not computed: {self.reason}"
        return f"{self.value_text}, {self.label} ({self.cutoff_text})"

    def line(self) -> str:
        """The CLI summary's / status label's line."""
        syn = " [SYNTHETIC-trained]" if self.synthetic else ""
        return (f"{self.task} ({self.paper}): {self.result_text} [{self.status_text}]; model {self.model}{syn}, "
                f"trained on {self.trained_on}")


def shim_rows(doc: dict) -> List[ShimRow]:
    """One row per JSON-bundle task entry of the document (bundle_task_entries; none when it has none)."""
    rows = []
    for e in bundle_task_entries(doc):
        rec = e.get("kind") in ("recurrence", "choi")  # a probability with its label at the cutoff
        value = e.get("probability") if rec else e.get("risk_score")
        available = value is not None and not e.get("reason")
        statuses, notes = [], []
        if not available:
            statuses.append("not computed")
            notes.append(str(e.get("reason") or "no value"))
        if available and e.get("imputed"):
            statuses.append("imputed inputs")
            notes.append(f"imputed (training value): {str(e['imputed']).replace(';', ', ')}")
        if e.get("synthetic"):
            statuses.append("synthetic model")
            notes.append("trained on SYNTHETIC data: demonstration only")
        if not available:
            value_text, label, cutoff = "not computed", "", ""
        elif rec:
            value_text, label = f"probability {float(value):.3f}", str(e.get("label"))
            cutoff = f"cutoff {float(e['cutoff']):g}" if e.get("cutoff") is not None else "cutoff n/a"
        else:
            value_text, label = f"risk score {float(value):+.3f}", f"{e.get('risk_group')} risk"
            cut = e.get("risk_group_cutoff")
            cutoff = f"training median {float(cut):+.3f}" if cut is not None else "training median n/a"
        rows.append(ShimRow(task=str(e.get("task") or e.get("kind")), kind=str(e.get("kind")), available=available,
                            value_text=value_text, label=label, cutoff_text=cutoff,
                            model=f"{e.get('model', '?')} v{e.get('version') or '?'}",
                            trained_on=str(e.get("trained_on") or "not stated"), synthetic=bool(e.get("synthetic")),
                            reason=str(e.get("reason") or ""), statuses=statuses or ["valid"], status_notes=notes,
                            paper=str(e.get("paper") or "Shim 2021"), card=shim_card_rows(e)))
    return rows


def nomogram_results(doc: dict) -> List[Tuple[str, dict]]:
    """(title, result) of every nomogram of a predictions document, in order: the one list that the report
    (report.report_blocks), the web results card and the Slicer nomogram plots (GliomaMRML.convert.nomogram_charts)
    draw. Each logistic task's result that has a nomogram block (titled with the task), then each JSON-bundle task
    entry that has one (the Choi 2021 hybrid's, ``choi.predict_entry``; titled as its row, ``ShimRow.title``:
    "IDH (Choi 2021)"). Each is drawn from its ``nomogram`` block; ``nomogram_synthetic`` says whether to mark it
    SYNTHETIC."""
    out = [(t, doc[t]) for t in doc.get("tasks", []) if (doc.get(t) or {}).get("nomogram")]
    return out + [(row.title, e) for e, row in zip(bundle_task_entries(doc), shim_rows(doc)) if e.get("nomogram")]


def nomogram_synthetic(res: dict) -> bool:
    """Whether a ``nomogram_results`` result's model was trained on SYNTHETIC data: a logistic task's from its
    ``model`` card, a JSON-bundle task entry's from its own ``synthetic`` (its ``model`` is the model's name)."""
    model = res.get("model")
    return bool(model.get("synthetic") if isinstance(model, dict) else res.get("synthetic"))


def shim_title(doc: dict) -> str:
    """The heading of the JSON-bundle tasks (predictions.json ``bundle_tasks``), the one definition every screen shows
    (report, CLI summary, Slicer status, web card): the paper's title when every row is of one paper (SHIM_TITLE,
    CHOI_TITLE), else "Further tasks (Choi 2021, Shim 2021)"; "" when the document has none."""
    papers = sorted({r.paper for r in shim_rows(doc)})
    if not papers:
        return ""
    if len(papers) == 1:
        return PAPER_TITLES.get(papers[0], f"{papers[0]} tasks")
    return f"Further tasks ({', '.join(papers)})"


def shim_note(doc: dict) -> str:
    """The sentence under the heading: what the tasks present are computed from (by kind)."""
    kinds = {str(e.get("kind")) for e in bundle_task_entries(doc)}
    parts = []
    shim = [w for k, w in (("recurrence", "a recurrence-pattern probability"), ("survival", "a Cox-LASSO risk group"))
            if k in kinds]
    if shim:
        parts.append("Shim 2021, from the CBV map (rCBV features of the shim2021 preset): " + " and ".join(shim))
    if "choi" in kinds:
        parts.append("Choi 2021: an IDH probability from a CNN on the tumour slices + shape / loci / age")
    return ("; ".join(parts) + ". " if parts else "") + ("Research outputs, not diagnoses; a model marked SYNTHETIC "
                                                         "demonstrates the software only.")


def _ci_text(value, ci, digits: int = 2, how: str = "") -> str:
    """"0.83 (95% CI 0.75-0.91, DeLong)" / "0.83 (no CI recorded)" / "not recorded"."""
    if value is None:
        return "not recorded"
    if ci and len(ci) == 2 and None not in ci:
        return f"{_num(value, digits)} (95% CI {_num(ci[0], digits)}-{_num(ci[1], digits)}" + \
            (f", {how})" if how else ")")
    return f"{_num(value, digits)} (no CI recorded)"


def _at_cutoff_text(at: dict, cutoff) -> str:
    return (f"cutoff {_num(at.get('cutoff', cutoff), 3)}: sensitivity {_num(at.get('sensitivity'))}, specificity "
            f"{_num(at.get('specificity'))}, PPV {_num(at.get('ppv'))}, NPV {_num(at.get('npv'))}")


def _card_model_row(name, version, synthetic) -> tuple:
    return ("Model", f"{name or '?'} v{version or '?'}" + ("  [SYNTHETIC: demonstration only]" if synthetic else ""))


def _card_status_row(synthetic, recorded) -> tuple:
    """The card's last row: SYNTHETIC says so; else the recorded validation status, or internal CV only."""
    if synthetic:
        return ("Validation status", "SYNTHETIC: trained and validated on simulated data only; not validated on "
                                     "patients")
    return ("Validation status", str(recorded or "internal cross-validation only; no external validation recorded: "
                                     "validate on your own data before use"))


def shim_card_rows(e: dict) -> List[tuple]:
    """(field, value) pairs of the model card of one ``bundle_tasks`` entry, from what its bundle records (the entry's
    ``card``, shim.entry_card): model, method, intended use, training data, validation; the CV AUC with its CI
    (recurrence pattern; Choi 2021: the hybrid's, beside the CNN alone and age alone) and the metrics at the cutoff,
    or the C-index with its CI, time-dependent AUC, log-rank test and risk-group rule (Cox-LASSO); the validation
    status. A SYNTHETIC model says so."""
    c = e.get("card") or {}
    kind = e.get("kind")
    n = c.get("n")
    count = ("" if n is None else f"; {n} cases" + (f" ({c['events']} events)" if c.get("events") is not None else
                                                     f" ({c['n_positive']} positive)" if c.get("n_positive") is not None
                                                     else ""))
    rows = [_card_model_row(e.get("model"), e.get("version"), e.get("synthetic")),
            ("Method", str(c.get("method") or e.get("paper") or "Shim 2021")),
            ("Intended use", str(e.get("intended_use") or "not stated")),
            ("Training data", str(e.get("trained_on") or "not stated") + count),
            ("Validation", str(c.get("validation") or "not stated"))]
    if c.get("data_licence"):  # third-party training data: its licence, not ours
        rows.append(("Data licence", str(c["data_licence"])))
    if c.get("caveats"):
        rows.append(("Caveats", "; ".join(str(v) for v in c["caveats"])))
    if kind == "survival":
        rows.append(("C-index (95% CI)", _ci_text(c.get("cindex_cv"), c.get("cindex_cv_95ci"), how="case bootstrap")))
        td = c.get("td_auc") or {}
        rows.append(("Time-dependent AUC", ", ".join(f"{_num(v)} at {float(t):g} days" for t, v in td.items()
                                                    if v is not None) or "not recorded"))
        if c.get("logrank_p_cv_median") is not None:
            rows.append(("Log-rank test (CV)", f"median p {c['logrank_p_cv_median']:.3g} (risk groups out of fold)"))
        rows.append(("Risk groups", str(c.get("risk_group_rule") or "at the training median")))
    else:
        rows.append(("AUC (95% CI)", _ci_text(c.get("auc_cv"), c.get("auc_cv_95ci"), how=c.get("auc_cv_95ci_method"))
                     + (f"; mean of {len(c['auc_cv_per_repetition'])} repetition(s)"
                        if c.get("auc_cv_per_repetition") else "")))
        if kind == "choi":
            rows.append(("Compared (CV AUC)", f"CNN alone {_num(c.get('auc_cv_cnn'))}, age alone "
                                              f"{_num(c.get('auc_cv_age'))}"))
        rows.append(("At the cutoff", _at_cutoff_text(c["at_cutoff"], e.get("cutoff")) if c.get("at_cutoff") else
                     "sensitivity / specificity / PPV / NPV not recorded in this model"))
    rows.append(_card_status_row(e.get("synthetic"), c.get("validation_status")))
    return rows


def shim_table(doc: dict):
    """(header, rows) of the Shim 2021 table (report); None when the document has none."""
    rows = shim_rows(doc)
    if not rows:
        return None
    return (["task", "result", "status", "model", "trained on"],
            [[r.task, r.result_text, r.status_text, r.model, r.trained_on_text] for r in rows])


def shim_lines(doc: dict) -> List[str]:
    """The JSON-bundle tasks as plain-text lines (CLI summary, Slicer status label): the heading (shim_title), then
    one line per row; none when the document has none."""
    rows = shim_rows(doc)
    return [shim_title(doc) + ":"] + [r.line() for r in rows] if rows else []


SYNTHETIC_CASE_NOTE = "SYNTHETIC case (simulated glioma on template anatomy)."


def synthetic_model_tasks(doc: dict) -> List[str]:
    """The tasks of the document whose model was trained on SYNTHETIC data (a JSON-bundle task by its title)."""
    return ([r.task for r in task_rows(doc) if r.synthetic]
            + [r.title for r in shim_rows(doc) if r.synthetic])


def any_synthetic_model(doc: dict) -> bool:
    return bool(synthetic_model_tasks(doc))


def synthetic_models_note(doc: dict) -> str:
    """The one sentence every summary adds when a model of the document was trained on SYNTHETIC data, naming those
    tasks only (the others' models may be real-data models: their rows say what they were trained on); "" when
    none was."""
    tasks = synthetic_model_tasks(doc)
    if not tasks:
        return ""
    one = len(tasks) == 1
    names = tasks[0] if one else ", ".join(tasks[:-1]) + " and " + tasks[-1]
    return (f"SYNTHETIC: the {names} model{'' if one else 's'} {'was' if one else 'were'} trained on simulated data; "
            f"{'its' if one else 'their'} numbers demonstrate the software only.")


def summary_lines(doc: dict, digits: Optional[int] = None) -> List[str]:
    """Plain-text lines: one per task, the warnings, the SYNTHETIC notes and the disclaimer."""
    lines = [row.line(digits) for row in task_rows(doc)] + shim_lines(doc)
    if doc.get("warnings"):
        lines.append("Warnings: " + "; ".join(str(w) for w in doc["warnings"]))
    if any_synthetic_model(doc):
        lines.append(synthetic_models_note(doc))
    if (doc.get("case") or {}).get("synthetic"):
        lines.append(SYNTHETIC_CASE_NOTE)
    if doc.get("disclaimer"):
        lines.append(doc["disclaimer"])
    return lines


# --- the case-level facts of a filed report (HTML and PDF draw these same lines) ----------------------------------

def _num(v, digits: int = 2) -> str:
    try:
        return f"{float(v):.{digits}f}"
    except (TypeError, ValueError):
        return "n/a"


def patient_rows(doc: dict) -> List[tuple]:
    """(field, value) pairs: case id, age, sex, WHO grade, VASARI, report date, synthetic case."""
    case = doc.get("case") or {}
    c = case.get("clinical") or {}
    sex = {"F": "female", "M": "male"}.get(str(c.get("sex") or "").upper(), "not given (training proportion used)")
    age = c.get("age")
    rows = [("Case id", str(case.get("id", "?"))),
            ("Age", f"{float(age):g} years" if age is not None else "not given (training mean used)"),
            ("Sex", sex),
            ("WHO grade", str(c["who_grade"]) if c.get("who_grade") is not None else "not given"),
            ("Report date", str(doc.get("created", ""))[:19].replace("T", " ") + " UTC")]
    if c.get("vasari_score") is not None:
        rows.insert(4, ("VASARI score", str(c["vasari_score"])))
    if case.get("synthetic"):
        rows.append(("Case", "SYNTHETIC (simulated glioma on template anatomy)"))
    return rows


def sequence_rows(doc: dict) -> List[List[str]]:
    """One row per input sequence as acquired: name, voxel spacing, slice thickness, slices, role."""
    out = []
    for name, s in (doc.get("sequences") or {}).items():
        sp = s.get("spacing_mm") or []
        out.append([name, " x ".join(f"{v:g}" for v in sp) + " mm",
                    f"{s['slice_thickness_mm']:g} mm" if s.get("slice_thickness_mm") is not None else "n/a",
                    str(s.get("n_slices", "n/a")),
                    "reference (output grid, slice numbers)" if s.get("reference") else "registered to the reference"])
    return out


def input_quality_lines(doc: dict) -> List[str]:
    return [str(w) for w in doc.get("input_quality") or []]


def key_result_line(doc: dict) -> str:
    """One line: each task's probability, label and status, and the whole-tumour volume."""
    from .nomogram import format_probability
    parts = []
    for r in task_rows(doc):
        parts.append(f"{r.task} not available" if not r.available else
                     f"{r.task} {format_probability(r.probability)} ({r.label}, {r.status_text})")
    for r in shim_rows(doc):
        parts.append(f"{r.task} not computed" if not r.available else
                     f"{r.task} {r.value_text} ({r.label}, {r.status_text})")
    wt = (doc.get("segmentation") or {}).get("volumes_ml", {}).get("WT")
    return ("Key result: " + "; ".join(parts) + (f"; whole tumour {wt:.1f} mL" if wt is not None else "")
            + ". Research probabilities, not diagnoses.")


def _model_at_cutoff_text(at: dict, cutoff) -> str:
    """A bundle's cross-validated metrics at the cutoff, said as what they are: ``at_cutoff_cv`` of bundles trained
    by train.py holds the mean over repetitions of sensitivity / specificity / PPV / NPV at the cutoff chosen inside
    each outer training fold (its ``fold_cutoffs``), not at the final model's cutoff (the one applied to this case);
    an ``at_cutoff_cv`` with its own ``cutoff`` (older bundles) was measured at that cutoff."""
    if at.get("cutoff") is not None or not (at.get("fold_cutoffs") or at.get("cutoff_source")):
        return _at_cutoff_text(at, cutoff)
    fc = at.get("fold_cutoffs") or {}
    where = "at cutoffs chosen in each training fold"
    if fc.get("median") is not None:
        where += f" (median {_num(fc['median'], 3)}, range {_num(fc.get('min'), 3)}-{_num(fc.get('max'), 3)})"
    metrics = (f"sensitivity {_num(at.get('sensitivity'))}, specificity {_num(at.get('specificity'))}, PPV "
               f"{_num(at.get('ppv'))}, NPV {_num(at.get('npv'))}")
    final = f"; final model's cutoff {_num(cutoff, 3)} (applied to this case)" if cutoff is not None else ""
    return f"{where}: {metrics}{final}"


def _calibration_texts(met: dict) -> List[str]:
    """Calibration intercept and slope of the out-of-fold predictions with their 95% CIs: ``calibration_cv``
    (train.py), else ``calibration_intercept_slope`` (older bundles); [] when neither is recorded."""
    cis = met.get("calibration_cv") or met.get("calibration_intercept_slope") or {}
    if not isinstance(cis, dict) or cis.get("slope") is None:
        return []

    def one(name):  # "to" between the CI's ends: an intercept's are often negative
        v, ci = cis.get(name), cis.get(f"{name}_95ci_bootstrap") or cis.get(f"{name}_95ci")
        if v is None:
            return "not recorded"
        return _num(v) + (f" (95% CI {_num(ci[0])} to {_num(ci[1])})" if ci and len(ci) == 2 and None not in ci
                          else " (no CI recorded)")
    return [f"calibration intercept {one('intercept')}", f"slope {one('slope')} (ideal: intercept 0, slope 1)"]


def model_card_rows(doc: dict, task: str) -> List[tuple]:
    """(field, value) pairs of the task's model card: intended use, training data, validation and its metrics at
    the cutoff (sensitivity / specificity / PPV / NPV, out of fold where the bundle holds them), calibration,
    validation status. A SYNTHETIC model says so."""
    r = doc.get(task) or {}
    m = r.get("model") or {}
    met = m.get("metrics") or {}
    at = met.get("at_cutoff_cv") or {}
    rows = [_card_model_row(m.get("name"), m.get("version"), m.get("synthetic")),
            ("Intended use", str(m.get("intended_use") or "not stated")),
            ("Training data", str(m.get("trained_on") or "not stated")
             + (f"; sequences {'+'.join(m['sequences'])}" if m.get("sequences") else "")),
            ("Validation", str(met.get("auc_cv_method") or "not stated")),
            ("AUC (95% CI)", _auc_text(met))]
    if at:
        rows.append(("At the cutoff", _model_at_cutoff_text(at, r.get("cutoff"))))
    else:
        rows.append(("At the cutoff", "sensitivity / specificity / PPV / NPV not recorded in this model"))
    cal = []
    if met.get("brier_cv") is not None:
        cal.append(f"Brier score {_num(met['brier_cv'], 3)}")
    cal += _calibration_texts(met)
    rows.append(("Calibration", ", ".join(cal) or "not recorded"))
    rows.append(_card_status_row(m.get("synthetic"), met.get("validation_status")))
    return rows
