"""A child process that reports progress as JSON lines, read without blocking (GUI timers, trame, workers).

``BackgroundJob(cmd).poll()`` never blocks: a reader thread parses stdout lines ({"progress", "message"},
{"result"}, {"error"}); ``cancel()`` kills the child's whole process group (the child starts a new session, so
data-loader grandchildren die too). ``run_worker`` (worker.py) and the Slicer modules' Run / Cancel buttons use it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import List, Optional


def kill_process_group(proc: subprocess.Popen) -> None:
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
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8",
                                     errors="replace", bufsize=1, start_new_session=True, env=child_env, cwd=cwd)
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
    def python_module(cls, module: str, args: List[str], python: Optional[str] = None, **kw) -> "BackgroundJob":
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
        if rc is not None and (rc != 0 or errors):
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
