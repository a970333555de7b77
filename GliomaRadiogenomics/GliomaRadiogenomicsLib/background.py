"""A child process that reports progress as JSON lines, read without blocking (GUI timers, trame, workers).

``BackgroundJob(cmd).poll()`` never blocks: a reader thread parses stdout lines ({"progress", "message"},
{"result"}, {"error"}); ``cancel()`` ends the child's whole process tree through psutil (Linux, macOS, Windows: the
tree is frozen, collected and killed, so data-loader grandchildren die too). ``BackgroundJob.core("cli" | "worker",
args)`` starts the core by the path of its ``launch.py`` with an explicit PYTHONPATH: no pip install needed (works
from PythonSlicer, a plain venv, an editable checkout and a non-editable install). ``run_worker`` (worker.py) and the
Slicer modules' Run / Cancel buttons use it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional


PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder that holds GliomaRadiogenomicsLib
LAUNCHER = Path(__file__).resolve().parent / "launch.py"


class InThread:
    """``fn(cancelled)`` in a daemon thread named ``name`` (work that leaves the GIL free: a worker subprocess it waits
    on, a SimpleITK registration); ``wait`` returns its result or raises its error in the caller's thread;
    ``cancel`` makes ``cancelled()`` true (run_worker then kills the worker's process tree) and waits for the
    thread."""

    def __init__(self, fn, name: str):
        self._stop = threading.Event()
        self.result, self.error = None, None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True, name=name)
        self.thread.start()

    def _run(self, fn):
        try:
            self.result = fn(self._stop.is_set)
        except BaseException as exc:  # re-raised by wait() in the caller's thread
            self.error = exc

    def cancel(self) -> None:
        self._stop.set()
        self.thread.join()

    def wait(self, should_cancel=None):
        from .progress import Cancelled
        while self.thread.is_alive():
            if should_cancel is not None and should_cancel():
                self.cancel()
                raise Cancelled("cancelled: segmentation stopped")
            self.thread.join(0.05)
        if self.error is not None:
            raise self.error
        return self.result


def kill_process_tree(pid: int, timeout: float = 5.0, wait_root: bool = True) -> List[int]:
    """End process ``pid`` and all its descendants (any OS); returns the pids that were ended.

    Each process is suspended before its children are listed, so none can start a new one in between; then all are
    killed (SIGKILL / TerminateProcess: the core's outputs are written as sets that survive it) and waited for.
    ``wait_root`` False: the caller reaps ``pid`` itself (a subprocess.Popen child keeps its exit status)."""
    import psutil
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    found, queue = [], [root]
    while queue:
        p = queue.pop()
        try:
            p.suspend()
        except psutil.Error:
            pass
        found.append(p)
        try:
            queue.extend(c for c in p.children() if c.pid not in {f.pid for f in found})
        except psutil.Error:
            pass
    for p in found:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    # a killed grandchild stays a zombie until its new parent reaps it (PID 1 in a container may never): it has ended
    alive, t0 = list(found if wait_root else found[1:]), time.monotonic()
    while alive and time.monotonic() - t0 < timeout:
        psutil.wait_procs(alive, timeout=0.05)  # reaps our own children
        alive = [p for p in alive if _running(p)]
    if alive:
        raise RuntimeError("could not end process(es) " + ", ".join(str(p.pid) for p in alive))
    return [p.pid for p in found]


def _running(p) -> bool:
    import psutil
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_process_group(proc: subprocess.Popen) -> None:
    """Kept for callers of the old name: ends ``proc``'s whole process tree (kill_process_tree) and reaps it."""
    kill_process_tree(proc.pid, wait_root=False)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def core_environment(env: Optional[dict] = None) -> dict:
    """``env`` (default: this process's) with PYTHONPATH starting with the folder that holds the core package."""
    child = dict(os.environ if env is None else env)
    rest = [p for p in child.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != PACKAGE_ROOT]
    child["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT)] + rest)
    return child


@dataclass
class JobStatus:
    running: bool
    progress: float
    message: str
    returncode: Optional[int]
    cancelled: bool
    result: Optional[dict] = None
    error: Optional[str] = None
    new_messages: List[dict] = field(default_factory=list)


class BackgroundJob:
    def __init__(self, cmd: List[str], env: Optional[dict] = None, cwd: Optional[str] = None):
        # explicit UTF-8: under an ASCII locale (CI), progress bars' block characters would break decoding
        child_env = dict(os.environ if env is None else env, PYTHONIOENCODING="utf-8")
        self.cmd = list(cmd)
        # own session / process group: a terminal's Ctrl-C or a closing GUI does not hit the child by accident
        group = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if sys.platform == "win32" else
                 {"start_new_session": True})
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8",
                                     errors="replace", bufsize=1, env=child_env, cwd=cwd, **group)
        self.started = time.monotonic()
        self.messages: List[dict] = []
        self.other: List[str] = []
        self.stderr: List[str] = []
        self.cancelled = False
        self._seen = 0
        self._progress, self._message = 0.0, "started"
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()

    @classmethod
    def core(cls, entry: str, args: List[str], python: Optional[str] = None, env: Optional[dict] = None,
             **kw) -> "BackgroundJob":
        """The core's ``cli`` or ``worker`` in a child process: ``python <package>/launch.py entry args...`` with
        PYTHONPATH set to the package's folder (``python``: default this interpreter; PythonSlicer in Slicer)."""
        return cls([python or sys.executable, str(LAUNCHER), entry] + list(args), env=core_environment(env), **kw)

    @classmethod
    def python_module(cls, module: str, args: List[str], python: Optional[str] = None, **kw) -> "BackgroundJob":
        """``python -m module``: resolves only where the module is importable; the core's own entry points use
        ``core``."""
        return cls([python or sys.executable, "-m", module] + list(args), **kw)

    def _read_out(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                self.other.append(line)
                del self.other[:-200]
                continue
            if isinstance(msg, dict):
                self.messages.append(msg)
            else:
                self.other.append(line)

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())
            del self.stderr[:-200]

    def poll(self) -> JobStatus:
        """Non-blocking: the latest progress, the messages since the last poll, and the outcome once finished."""
        rc = self.proc.poll()
        if rc is not None:
            for t in self._threads:  # the pipes are closed: collect the last lines
                t.join(timeout=5)
        new = self.messages[self._seen:]
        self._seen = len(self.messages)
        for m in new:
            if "progress" in m:
                self._progress, self._message = float(m["progress"]), str(m.get("message", ""))
        results = [m["result"] for m in self.messages if "result" in m]
        errors = [m["error"] for m in self.messages if "error" in m]
        error = None
        if rc is not None and (rc != 0 or errors or self.cancelled):
            error = "cancelled" if self.cancelled else (errors[-1] if errors else
                                                        "\n".join((self.other + self.stderr)[-15:]) or f"exit {rc}")
        return JobStatus(rc is None, self._progress, self._message, rc, self.cancelled,
                         results[-1] if results else None, error, new)

    def cancel(self) -> None:
        self.cancelled = True
        if self.proc.poll() is None:
            kill_process_group(self.proc)

    def wait(self, timeout: Optional[float] = None, interval: float = 0.05, on_status=None) -> JobStatus:
        t0 = time.monotonic()
        while True:
            st = self.poll()
            if on_status is not None:
                on_status(st)
            if not st.running:
                return st
            if timeout is not None and time.monotonic() - t0 > timeout:
                self.cancel()
                return self.poll()
            time.sleep(interval)
