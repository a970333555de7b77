"""First use inside Slicer: install what the core needs into Slicer's Python (the way SlicerMONAIAuto3DSeg and
TotalSegmentator do it).

Thin GUI over ``GliomaRadiogenomicsLib.dependencies.plan`` (standard library only, tested in a fresh venv): a dialog
lists what is missing; on OK, torch comes from the PyTorch extension (``PyTorchUtils`` picks the CPU or CUDA build),
the other packages from ``slicer.util.pip_install`` with a constraints file that keeps Slicer's own numpy, SimpleITK
and vtk (and the installed torch) exactly as they are; pip's network failures become one clear offline message.
Imports only the standard library at module level; Qt and slicer only inside the functions (desktop application).
"""
from __future__ import annotations

import importlib
import os
import subprocess
import tempfile
from typing import Callable, List, Optional

TITLE = "Glioma Radiogenomics: Python packages"


def _torch_logic():
    """PyTorchUtils' logic (the PyTorch extension, declared in EXTENSION_DEPENDS), or None when it is not there."""
    try:
        import PyTorchUtils
    except ImportError:
        return None
    return PyTorchUtils.PyTorchUtilsLogic()


def _pip(util, args: List[str], log: Callable[[str], None]) -> Optional[str]:
    """slicer.util.pip_install(args); returns an error message (offline or pip's own) or None."""
    from GliomaRadiogenomicsLib.dependencies import offline_message
    log("pip install " + " ".join(args))
    try:
        util.pip_install(args)
    except subprocess.CalledProcessError as exc:
        output = "\n".join(str(x) for x in (exc.output, exc.stderr) if x)
        return offline_message(output, check_index=True) or f"pip could not install the packages (exit {exc.returncode}):\n" + \
            "\n".join(output.splitlines()[-15:])
    return None


def install(plan, log: Callable[[str], None] = print) -> Optional[str]:
    """Carry out ``plan`` in Slicer's Python; returns None on success, else the message to show."""
    import slicer
    from GliomaRadiogenomicsLib import dependencies as D
    if plan.blocking:
        return "\n".join(plan.blocking)
    if plan.torch:
        logic = _torch_logic()
        if logic is None:
            return ("PyTorch is needed (deep segmentation and skull stripping). Install the 'PyTorch' extension from "
                    "the Extensions Manager, restart Slicer and open this module again.")
        log(f"installing {plan.torch} through the PyTorch extension (CPU or CUDA build for this computer)")
        try:
            torch_module = logic.installTorch(askConfirmation=False,
                                              torchVersionRequirement=plan.torch[len("torch"):])
        except Exception as exc:  # PyTorchUtils raises when pip fails (offline, no matching build, ...)
            detail = "\n".join(str(x) for x in (exc, getattr(exc, "output", None), getattr(exc, "stderr", None)) if x)
            return D.offline_message(detail, check_index=True) or (
                f"PyTorch could not be installed by the PyTorch extension ({type(exc).__name__}: "
                f"{str(exc).strip()[:300]}); see the Python console.")
        if torch_module is None:
            return "PyTorch could not be installed by the PyTorch extension (see the Python console)."
        importlib.invalidate_caches()
        plan = D.plan(in_slicer=True)  # torch is now installed: protected like numpy for the next steps
    fd, constraints = tempfile.mkstemp(prefix="glioma-constraints-", suffix=".txt")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(plan.constraints_text())
        for stage in ("main", "after_torch"):
            args = plan.pip_args(constraints, stage)
            if args:
                err = _pip(slicer.util, args, log)
                if err:
                    return err
    finally:
        os.unlink(constraints)
    importlib.invalidate_caches()
    left = D.plan(in_slicer=True, with_torch=plan.torch is not None or "torch" in plan.protect)
    return None if left.ready else "still missing after the install:\n" + D.missing_message(left)


def ensure_dependencies(ask: bool = True, with_torch: bool = True) -> bool:
    """True when the core can run (installing it first, with the user's OK, when something is missing)."""
    import slicer
    from GliomaRadiogenomicsLib import dependencies as D
    plan = D.plan(in_slicer=True, with_torch=with_torch)
    if plan.ready:
        return True
    if plan.blocking:
        slicer.util.errorDisplay("\n".join(plan.blocking), windowTitle=TITLE)
        return False
    text = ("Glioma Radiogenomics needs these Python packages in Slicer's Python:\n\n"
            + "\n".join("  - " + line for line in plan.summary_lines())
            + "\n\nThey are downloaded from the internet (a few minutes; several hundred MB with PyTorch). "
              "Slicer's own numpy, SimpleITK and vtk are not changed. Install now?")
    if ask and not slicer.util.confirmOkCancelDisplay(text, windowTitle=TITLE):
        return False
    with slicer.util.WaitCursor():
        err = install(plan, log=lambda m: print("[GliomaRadiogenomics] " + m))
    if err:
        slicer.util.errorDisplay(err, windowTitle=TITLE)
        return False
    return True


def add_install_button(layout, module_name: str) -> None:
    """Where the packages are missing and the user said not now: a button that offers the install again, then reloads
    the module (desktop Slicer)."""
    import qt
    import slicer
    button = qt.QPushButton("Install the Python packages this module needs...")
    button.toolTip = "Lists what is missing and installs it into Slicer's Python (internet needed)"

    def retry():
        if ensure_dependencies():
            slicer.util.reloadScriptedModule(module_name)
    button.connect("clicked(bool)", lambda _checked=False: retry())
    layout.addWidget(button)
    layout.addStretch(1)
