"""What the core needs installed, decided from what is installed (standard library only: importable before any
science package, in Slicer's Python on first use, in a bare venv).

``plan()`` reads the installed distributions (importlib.metadata) and returns a ``Plan``:

- packages Slicer ships (numpy, SimpleITK, vtk) are never installed, upgraded or re-pinned inside Slicer: their
  versions are checked against our minimums (a clear message names the one that is too old) and pinned to the
  installed version in a pip constraints file, so nothing pip resolves for the other packages can replace them;
- the other packages get the requirements of pyproject.toml (our minimums, never constraints.txt's pins);
- torch comes from Slicer's PyTorch extension (``PyTorchUtils`` picks the CPU or CUDA build); packages that need torch
  (deepbet) are installed only once torch is there, with torch protected like numpy;
- ``offline_message`` turns pip's network failures into one clear sentence.

The Slicer side (GliomaMRML/install.py) shows the plan in a dialog and runs it with ``slicer.util.pip_install``;
outside Slicer ``pip_command`` gives the same install as a command line.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

# Slicer's own Python packages: never replaced inside Slicer (Slicer's SimpleITK has its own IO classes; numpy / vtk
# are compiled against by Slicer's libraries). name -> our minimum (None: no minimum, protected only).
SLICER_SHIPPED: Dict[str, Optional[str]] = {"numpy": "1.24", "SimpleITK": "2.3", "vtk": None}

# The core's other requirements: exactly pyproject.toml's [project] dependencies minus the shipped ones (a test keeps
# them equal). pyradiomics-bhklab keeps its exact version: the feature definitions depend on it.
PIP_REQUIREMENTS: Tuple[str, ...] = (
    "scipy>=1.10",
    "pandas>=2.0",
    "pyradiomics-bhklab==3.1.4",
    "nilearn>=0.10",
    "nibabel>=5.0",
    "scikit-learn>=1.3",
    "scikit-image>=0.21",
    "matplotlib>=3.7",
    "PyYAML>=6.0",
    "psutil>=5.9",
)
TORCH_REQUIREMENT = "torch>=2.0"
# installed after torch, with torch protected (deepbet's metadata would otherwise pull a CUDA torch from PyPI)
AFTER_TORCH: Tuple[str, ...] = ("deepbet==1.0.2",)
# pip's words when the package index cannot be reached
_OFFLINE = re.compile(r"(NewConnectionError|Failed to establish a new connection|Temporary failure in name "
                      r"resolution|Name or service not known|nodename nor servname|getaddrinfo failed|Network is "
                      r"unreachable|Connection refused|ConnectTimeoutError|Read timed out|ProxyError|"
                      r"Could not fetch URL|No route to host|Max retries exceeded)", re.I)


def canonical(name: str) -> str:
    """PEP 503 name: 'SimpleITK' -> 'simpleitk', 'PyYAML' -> 'pyyaml', 'scikit_learn' -> 'scikit-learn'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def version_tuple(v: str) -> Tuple[int, ...]:
    """The release part of a version ('2.4.6', '1.26.4+cpu', '2.0.0rc1' -> (2, 0, 0)): enough to compare minimums."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", v)
    if not m:
        raise ValueError(f"not a version: {v!r}")
    parts = [int(p) for p in m.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def split_requirement(req: str) -> Tuple[str, List[Tuple[str, str]]]:
    """'pandas>=2.0,<3' -> ('pandas', [('>=', '2.0'), ('<', '3')]). No extras or markers (ours have none)."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$", req)
    if not m or "[" in req or ";" in req:
        raise ValueError(f"unsupported requirement: {req!r}")
    specs = []
    for part in filter(None, (p.strip() for p in m.group(2).split(","))):
        s = re.match(r"(>=|<=|==|!=|~=|>|<)\s*([0-9][0-9A-Za-z.+]*)$", part)
        if not s:
            raise ValueError(f"unsupported version specifier in {req!r}: {part!r}")
        specs.append((s.group(1), s.group(2)))
    return m.group(1), specs


def satisfies(version: str, specs: Sequence[Tuple[str, str]]) -> bool:
    v = version_tuple(version)
    for op, ref in specs:
        r = version_tuple(ref)
        ok = {">=": v >= r, ">": v > r, "<=": v <= r, "<": v < r, "==": v == r, "!=": v != r,
              "~=": v >= r and v[:len(r) - 1] == r[:len(r) - 1]}[op]
        if not ok:
            return False
    return True


def installed_versions() -> Dict[str, str]:
    """canonical name -> version of every distribution this Python sees."""
    from importlib import metadata
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            out.setdefault(canonical(name), dist.version)
    return out


@dataclass
class Plan:
    """What to do so that the core runs. Empty ``install`` / ``torch`` / ``after_torch`` and no ``blocking``: ready."""
    install: List[str] = field(default_factory=list)        # pip requirements (ours), missing or too old
    reasons: Dict[str, str] = field(default_factory=dict)   # requirement -> 'missing' / 'installed 1.2, needs >=1.3'
    protect: Dict[str, str] = field(default_factory=dict)   # shipped (and torch) name -> installed version (pinned)
    blocking: List[str] = field(default_factory=list)       # messages: a shipped package missing / too old
    torch: Optional[str] = None                             # torch requirement for PyTorchUtils (None: satisfied)
    after_torch: List[str] = field(default_factory=list)    # pip requirements that need torch first
    satisfied: List[str] = field(default_factory=list)      # 'name version' already fine
    in_slicer: bool = True

    @property
    def ready(self) -> bool:
        return not (self.install or self.torch or self.after_torch or self.blocking)

    def constraints_text(self) -> str:
        """pip constraints that keep the protected packages at their installed versions."""
        return "".join(f"{n}=={v}\n" for n, v in sorted(self.protect.items()))

    def pip_args(self, constraints_path: str, stage: str = "main") -> List[str]:
        """Arguments after ``pip install``: stage 'main' (the core's packages) or 'after_torch'."""
        reqs = self.install if stage == "main" else self.after_torch
        return (list(reqs) + ["-c", str(constraints_path)]) if reqs else []

    def summary_lines(self) -> List[str]:
        """The dialog's text, one line per item."""
        lines = list(self.blocking)
        for r in self.install:
            lines.append(f"install {r} ({self.reasons.get(r, 'missing')})")
        if self.torch:
            lines.append(f"install {self.torch} through the PyTorch extension (CPU or CUDA build for this computer; "
                         f"{self.reasons.get(self.torch, 'missing')})")
        for r in self.after_torch:
            lines.append(f"install {r} after PyTorch ({self.reasons.get(r, 'missing')})")
        if self.protect and (self.install or self.after_torch):
            lines.append("kept as installed: " + ", ".join(f"{n} {v}" for n, v in sorted(self.protect.items())))
        return lines


def _check(name: str, req: str, have: Mapping[str, str], plan: Plan, into: List[str]) -> None:
    _, specs = split_requirement(req)
    v = have.get(canonical(name))
    if v is None:
        into.append(req)
        plan.reasons[req] = "missing"
    elif not satisfies(v, specs):
        into.append(req)
        plan.reasons[req] = f"installed {v}, needs {req[len(name):]}"
    else:
        plan.satisfied.append(f"{name} {v}")


def plan(installed: Optional[Mapping[str, str]] = None, in_slicer: Optional[bool] = None,
         with_torch: bool = True) -> Plan:
    """What to install, given ``installed`` (name -> version; default: this Python's distributions).

    ``in_slicer`` (default: whether ``slicer.app`` exists): inside Slicer a missing or too old shipped package blocks
    (Slicer must be updated; we never replace its numpy / SimpleITK / vtk); outside Slicer (a plain venv) a missing
    one is installed with our minimum, an installed one is protected likewise. ``with_torch`` False: leave torch and
    the packages that need it out (weight-free paths only)."""
    have = {canonical(k): v for k, v in (installed_versions() if installed is None else installed).items()}
    if in_slicer is None:
        in_slicer = _in_slicer_application()
    p = Plan(in_slicer=in_slicer)
    for name, minimum in SLICER_SHIPPED.items():
        v = have.get(canonical(name))
        if v is None:
            if minimum is None:
                continue
            if in_slicer:
                p.blocking.append(f"{name} is missing from Slicer's Python: reinstall Slicer (this extension never "
                                  f"installs its own {name} into Slicer)")
            else:
                req = f"{name}>={minimum}"
                p.install.append(req)
                p.reasons[req] = "missing"
            continue
        p.protect[name] = v
        if minimum is not None and version_tuple(v) < version_tuple(minimum):
            p.blocking.append(f"{name} {v} is older than the {minimum} this extension needs: "
                              + ("update Slicer (its own numpy / SimpleITK / vtk are never replaced)" if in_slicer
                                 else f"upgrade it (pip install '{name}>={minimum}')"))
        else:
            p.satisfied.append(f"{name} {v}")
    for req in PIP_REQUIREMENTS:
        _check(split_requirement(req)[0], req, have, p, p.install)
    if with_torch:
        tname, tspecs = split_requirement(TORCH_REQUIREMENT)
        tv = have.get("torch")
        if tv is None or not satisfies(tv, tspecs):
            p.torch = TORCH_REQUIREMENT
            p.reasons[TORCH_REQUIREMENT] = "missing" if tv is None else f"installed {tv}, needs {TORCH_REQUIREMENT[5:]}"
        else:
            p.protect["torch"] = tv
            p.satisfied.append(f"torch {tv}")
        for req in AFTER_TORCH:
            _check(split_requirement(req)[0], req, have, p, p.after_torch)
    return p


def _in_slicer_application() -> bool:
    mod = sys.modules.get("slicer")
    return mod is not None and getattr(mod, "app", None) is not None


OFFLINE_TEXT = ("The Python packages could not be downloaded: the package index (PyPI) cannot be reached from this "
                "computer. Connect to the internet (or set a proxy: pip's --proxy / HTTPS_PROXY) and try again; "
                "nothing was changed in Slicer's Python.")


def index_reachable(url: Optional[str] = None, timeout: float = 5.0) -> bool:
    """Whether the package index answers (PIP_INDEX_URL, else PyPI's simple index)."""
    import os
    import urllib.request
    url = url or os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple/"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except Exception as exc:  # HTTP errors mean it answered
        import urllib.error
        return isinstance(exc, urllib.error.HTTPError)


def offline_message(pip_output: str, check_index: bool = False) -> Optional[str]:
    """A clear sentence when pip failed because the package index could not be reached, else None: pip's network
    errors in its output, or (``check_index``) 'from versions: none' while the index does not answer."""
    text = pip_output or ""
    if _OFFLINE.search(text):
        return OFFLINE_TEXT
    if check_index and "from versions: none" in text and not index_reachable():
        return OFFLINE_TEXT
    return None


def pip_command(plan_: Plan, constraints_path: str, python: Optional[str] = None, stage: str = "main") -> List[str]:
    """The plan as a command line outside Slicer (``python -m pip install ...``); [] when nothing to install."""
    args = plan_.pip_args(constraints_path, stage)
    return [python or sys.executable, "-m", "pip", "install", "--disable-pip-version-check"] + args if args else []


def missing_message(plan_: Plan) -> str:
    return "\n".join(plan_.summary_lines()) or "all dependencies are installed"


if __name__ == "__main__":  # python dependencies.py: print the plan for this Python
    pl = plan()
    print(missing_message(pl))
    sys.exit(0 if pl.ready else 1)
