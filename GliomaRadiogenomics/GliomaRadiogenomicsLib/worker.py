"""Heavy inference in a subprocess: JSON progress lines, cancellation that kills the whole process tree.

Protocol: the child prints one JSON object per line on stdout: {"progress": f, "message": m} while it works, then
{"result": {...}} or {"error": "..."}; anything else on stdout/stderr is kept for the error message. The parent
(``run_worker``) forwards progress to a ``Progress``, polls a cancel callback, and on cancel or timeout kills the
child's process group (the child starts a new session, so grandchildren such as data-loader workers die too).

    python -m GliomaRadiogenomicsLib.worker deepbet --input t1.nii.gz --output mask.nii.gz --device cpu
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, List, Optional

from .progress import Cancelled, JsonLinesProgress, Progress, null_progress


class WorkerError(RuntimeError):
    pass


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def run_worker(args: List[str], progress: Progress = null_progress,
               should_cancel: Optional[Callable[[], bool]] = None, timeout_s: Optional[float] = None,
               env: Optional[dict] = None, on_start: Optional[Callable[[subprocess.Popen], None]] = None) -> dict:
    """Run ``python -m GliomaRadiogenomicsLib.worker <args>``; returns the child's result dict."""
    cmd = [sys.executable, "-m", "GliomaRadiogenomicsLib.worker"] + list(args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                            start_new_session=True, env=env)
    if on_start:
        on_start(proc)
    lines: List[dict] = []
    other: List[str] = []
    err_lines: List[str] = []

    def read_out():
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                other.append(line)
                continue
            lines.append(msg)

    def read_err():
        for line in proc.stderr:
            err_lines.append(line.rstrip())
            del err_lines[:-200]

    threads = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    seen = 0
    try:
        while True:
            while seen < len(lines):
                msg = lines[seen]
                seen += 1
                if "progress" in msg:
                    progress.update(float(msg["progress"]), str(msg.get("message", "")))
            if proc.poll() is not None:
                break
            if should_cancel is not None and should_cancel():
                _kill_tree(proc)
                raise Cancelled(f"cancelled: worker '{args[0]}' stopped")
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                _kill_tree(proc)
                raise WorkerError(f"worker '{args[0]}' exceeded {timeout_s:.0f} s and was stopped")
            time.sleep(0.05)
    except BaseException:
        if proc.poll() is None:
            _kill_tree(proc)
        raise
    for t in threads:
        t.join(timeout=5)
    for msg in lines[seen:]:
        if "progress" in msg:
            progress.update(float(msg["progress"]), str(msg.get("message", "")))
    results = [m for m in lines if "result" in m]
    errors = [m["error"] for m in lines if "error" in m]
    if proc.returncode != 0 or errors or not results:
        detail = errors[-1] if errors else "\n".join((other + err_lines)[-15:])
        raise WorkerError(f"worker '{args[0]}' failed (exit code {proc.returncode}): {detail}")
    return results[-1]["result"]


# ----------------------------------------------------------------------------------------------------------------
# Child side
# ----------------------------------------------------------------------------------------------------------------
def _device(name: str) -> str:
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"progress": 0.0, "message": "CUDA not available: falling back to CPU"}), flush=True)
        return "cpu"
    return name


def stage_deepbet(a, progress: Progress) -> dict:
    progress.update(0.05, "deepbet: loading the network (weights from the deepbet wheel)")
    from deepbet.bet import BrainExtraction
    device = _device(a.device)
    bet = BrainExtraction(no_gpu=device != "cuda")
    progress.update(0.3, f"deepbet: brain extraction on {device}")
    _, _, tiv = bet.run(a.input, mask_path=a.output)
    progress.update(1.0, "deepbet: done")
    return {"mask": a.output, "tiv_ml": float(tiv), "device": device}


def stage_selftest(a, progress: Progress) -> dict:
    """Used by the test suite: spawns a grandchild and reports progress until stopped (exercises kill-tree)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    progress.update(0.0, f"grandchild {child.pid}")
    for i in range(int(a.seconds * 10)):
        time.sleep(0.1)
        progress.update(i / (a.seconds * 10), f"tick {i}")
    child.kill()
    return {"ticks": int(a.seconds * 10), "grandchild": child.pid}


STAGES = {"deepbet": stage_deepbet, "selftest": stage_selftest}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m GliomaRadiogenomicsLib.worker")
    sub = ap.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("deepbet")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p = sub.add_parser("selftest")
    p.add_argument("--seconds", type=float, default=1.0)
    a = ap.parse_args(argv)
    progress = JsonLinesProgress(sys.stdout)
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # libraries' prints must not corrupt the JSON-lines channel
    progress._stream = real_stdout
    try:
        result = STAGES[a.stage](a, progress)
    except Exception as exc:  # reported to the parent as a JSON error line
        real_stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        real_stdout.flush()
        return 1
    real_stdout.write(json.dumps({"result": result}) + "\n")
    real_stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
