"""Entry script of the core's child processes, run by its path (never ``-m``):

    <python> <package folder>/launch.py cli run --out ...        # glioma-radiogenomics run ...
    <python> <package folder>/launch.py worker deepbet ...       # python -m GliomaRadiogenomicsLib.worker deepbet ...

The parent (background.BackgroundJob.core) sets PYTHONPATH to the folder that holds GliomaRadiogenomicsLib, so the
same command works from PythonSlicer (the extension's module folder), a plain venv, an editable checkout and a
non-editable install. This file uses the standard library only and no relative imports.
"""
import os
import runpy
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
# Python put this script's folder (the package itself) first on sys.path: its modules (io.py, ...) must not shadow
# the standard library or be imported twice under top-level names
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

ENTRY_POINTS = ("cli", "worker")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ENTRY_POINTS:
        sys.stderr.write(f"usage: {os.path.basename(__file__)} {{{','.join(ENTRY_POINTS)}}} [args...]\n")
        sys.exit(2)
    module = "GliomaRadiogenomicsLib." + sys.argv[1]
    sys.argv = [module] + sys.argv[2:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
