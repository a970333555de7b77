"""Cohort runs on Dask distributed (``--scheduler local:N | tcp://HOST:PORT``): one task per case.

``local:N`` starts a ``distributed.LocalCluster`` of N worker *processes* with one thread each on this machine;
``tcp://HOST:PORT`` connects to a scheduler started elsewhere (``dask scheduler`` + ``dask worker`` on machines that
share the cohort and output folders; docs/scaling.md). Per-case results are written by the task itself (JSON cache
and a one-row Parquet file, both atomic), so a worker killed mid-case loses only that case's attempt: Dask reruns the
task on another worker (``distributed.scheduler.allowed-failures``, default 3) and the rerun replaces the same files.
A case whose workers die more often than that (e.g. out of memory every time) is recorded as failed with the reason;
the run goes on. Cases that need a deep network are tagged with the resource ``GPU=1`` when at least one worker
declares it (``dask worker ... --resources GPU=1``), so they run only there.

Needs the ``cohort`` extra (``pip install -c constraints.txt '.[cohort]'``: dask[distributed], pyarrow, bokeh for
the dashboard). Where the scheduler runs without bokeh the Dask dashboard is off; this is said on the console.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io as _io
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from .io import InputError, atomic_write_bytes
from .progress import Progress, null_progress

INSTALL_HINT = "install the 'cohort' extra: pip install -c constraints.txt '.[cohort]' (dask[distributed], pyarrow)"
# segmentation backends that run a deep network (torch): their cases go to GPU workers when some declare one
LIGHT_BACKENDS = ("hyperintensity",)


def parse_scheduler(spec: str) -> Tuple[str, object]:
    """``local:N`` -> ("local", N); ``tcp://HOST:PORT`` (or tls://, inproc://) -> ("address", spec)."""
    s = (spec or "").strip()
    if s.startswith("local:"):
        try:
            n = int(s.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise InputError(f"--scheduler {spec}: local:N needs a number of workers N >= 1 (e.g. local:2)")
        return "local", n
    if s == "local":
        return "local", 1
    if "://" in s and s.split("://", 1)[0] in ("tcp", "tls", "inproc", "ucx", "ws", "wss"):
        if not s.split("://", 1)[1]:
            raise InputError(f"--scheduler {spec}: no host:port after the protocol")
        return "address", s
    raise InputError(f"--scheduler {spec}: give local:N (N worker processes here) or tcp://HOST:PORT "
                     "(a running `dask scheduler`)")


def require_distributed() -> None:
    if importlib.util.find_spec("distributed") is None:
        raise InputError(f"--scheduler needs Dask distributed, which is not installed: {INSTALL_HINT}")


def _scheduler_has_bokeh() -> bool:
    import importlib.util as u
    return u.find_spec("bokeh") is not None


def dashboard_line(client) -> str:
    """Where the Dask dashboard is, or why there is none: without bokeh on the scheduler's machine its address only
    serves a page asking for bokeh, so it is reported as off."""
    try:
        services = client.scheduler_info().get("services", {})
        bokeh = bool(client.run_on_scheduler(_scheduler_has_bokeh))
    except Exception:  # noqa: BLE001 - informational only
        services, bokeh = {}, False
    if "dashboard" not in services:
        return "Dask dashboard: off (the scheduler did not start one)"
    if not bokeh:
        return ("Dask dashboard: off (bokeh is not installed where the scheduler runs: pip install 'bokeh>=3.1' "
                "there to have it at " + str(client.dashboard_link) + "; the console progress below says the same)")
    return f"Dask dashboard: {client.dashboard_link}"


@contextlib.contextmanager
def dask_client(spec: str, stream=None) -> Iterator[object]:
    """A ``distributed.Client`` for ``spec`` (``parse_scheduler``); prints the scheduler, the workers and the
    dashboard address on ``stream`` (stderr). A LocalCluster started here is closed on exit."""
    kind, value = parse_scheduler(spec)
    require_distributed()
    from distributed import Client, LocalCluster
    stream = stream or sys.stderr
    cluster = None
    if kind == "local":
        # one thread per worker process: PyRadiomics and SimpleITK are CPU-bound; each case is single-threaded.
        # The dashboard on a free port (several runs may share the machine).
        cluster = LocalCluster(n_workers=int(value), threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=40)
        client = Client(cluster)
    else:
        try:
            client = Client(value, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"--scheduler {value}: cannot reach the Dask scheduler ({exc}); start it with "
                             "`dask scheduler` and workers with `dask worker ADDRESS` (docs/scaling.md)") from None
    try:
        info = client.scheduler_info()
        workers = info.get("workers", {})
        stream.write(f"Dask scheduler {info.get('address', value)}: {len(workers)} worker(s), "
                     f"{sum(w.get('nthreads', 1) for w in workers.values())} thread(s)\n")
        stream.write(dashboard_line(client) + "\n")
        stream.flush()
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def gpu_workers(client) -> int:
    """How many workers declare a GPU resource (``dask worker --resources GPU=1``)."""
    workers = client.scheduler_info().get("workers", {})
    return sum(1 for w in workers.values() if (w.get("resources") or {}).get("GPU", 0) > 0)


def needs_gpu(backend: Optional[str], case_roi: bool = False) -> bool:
    """Whether a case's task runs a deep network (segmentation other than the intensity baseline)."""
    return not case_roi and (backend or "auto") not in LIGHT_BACKENDS


def _duration(s: float) -> str:
    s = int(round(max(0.0, s)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class CohortBar:
    """Counts of a cohort run and its one-line bar: done / failed / running, rate (cases per hour), ETA."""

    def __init__(self, total: int, skipped: int = 0, width: int = 24):
        self.total, self.skipped, self.width = total, skipped, width
        self.done = self.failed = self.running = 0
        self.t0 = time.perf_counter()

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def fraction(self) -> float:
        return 1.0 if self.total == 0 else self.finished / self.total

    def line(self) -> str:
        elapsed = time.perf_counter() - self.t0
        n = int(self.width * self.fraction())
        rate = self.finished / elapsed * 3600 if elapsed > 0 and self.finished else 0.0
        left = self.total - self.finished
        eta = _duration(left / rate * 3600) if rate > 0 else "?"
        skipped = f", {self.skipped} already done (skipped)" if self.skipped else ""
        return (f"[{'#' * n}{'.' * (self.width - n)}] {self.done}/{self.total} done, {self.failed} failed, "
                f"{self.running} running{skipped} | {rate:.1f} cases/h | elapsed {_duration(elapsed)} ETA {eta}")


def run_cases(client, fn: Callable, items: Sequence[Tuple[str, tuple]], on_result: Callable[[str, object], bool],
              on_lost: Callable[[str, BaseException], object], progress: Progress = null_progress,
              resources: Optional[dict] = None, skipped: int = 0, refresh_s: float = 10.0) -> CohortBar:
    """Submit ``fn(*args)`` once per ``(name, args)`` and hand each result to ``on_result(name, result)`` (returns
    True for a case done, False for a failed one) as it completes, in completion order. A task that errors in Dask
    itself (``KilledWorker``: its workers died too often; a worker-side import error) goes to ``on_lost(name, exc)``
    and counts as failed. Progress: ``progress.update(fraction, CohortBar.line())`` on every change."""
    from distributed import wait
    bar = CohortBar(len(items), skipped)
    run = uuid.uuid4().hex[:8]
    futures = {}
    for name, args in items:
        f = client.submit(fn, *args, key=f"glioma-case-{name}-{run}", pure=False, resources=resources)
        futures[f] = name
    keys = {f.key for f in futures}
    pending = set(futures)
    last, last_t = None, 0.0
    while pending:
        try:
            done, pending = wait(pending, timeout=2.0, return_when="FIRST_COMPLETED")
        except (TimeoutError, asyncio.TimeoutError):  # the same class from Python 3.11 on, not on 3.10
            done = set()
        for f in done:
            name = futures[f]
            try:
                ok = bool(on_result(name, f.result()))
            except Exception as exc:  # noqa: BLE001 - the task itself errored in Dask: recorded, the run goes on
                on_lost(name, exc)
                ok = False
            if ok:
                bar.done += 1
            else:
                bar.failed += 1
            f.release()
        try:
            processing = client.processing()
            bar.running = sum(1 for ks in processing.values() for k in ks if k in keys)
        except Exception:  # noqa: BLE001 - informational only
            bar.running = min(len(pending), bar.running)
        line = bar.line()
        now = time.perf_counter()
        counts = (bar.done, bar.failed, bar.running)
        if counts != last or now - last_t >= refresh_s:
            progress.update(bar.fraction(), line)
            last, last_t = counts, now
    return bar


# --- Parquet: one file per case -------------------------------------------------------------------------------------

def parquet_available() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


def write_case_parquet(row: dict, path: Path) -> Path:
    """One case's public columns (no ``_`` bookkeeping) as a one-row Parquet file, written atomically."""
    import pandas as pd
    frame = pd.DataFrame([{k: v for k, v in row.items() if not str(k).startswith("_")}])
    buf = _io.BytesIO()
    frame.to_parquet(buf, index=False)
    return atomic_write_bytes(path, buf.getvalue())


def read_parquet_dataset(folder, order: Optional[List[str]] = None):
    """The cohort table from a Parquet dataset of one file per case (files concatenated, in ``order`` of case
    file stems when given, else by name). Columns missing in some cases are NaN, as in the CSV."""
    import pandas as pd
    files = {p.stem: p for p in Path(folder).glob("*.parquet")}
    names = [n for n in order if n in files] if order else sorted(files)
    if not names:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(files[n]) for n in names], ignore_index=True)


def align_parquet_dataset(folder, table, names: Sequence[str]) -> int:
    """Make the Parquet dataset in ``folder`` exactly ``table``: one file per row, ``names[i].parquet`` for row i,
    each with the table's schema (the same columns in the same order, the same types). Readers that take the first
    file's schema (``pyarrow.dataset``, ``pandas.read_parquet(folder)``, DuckDB, Spark) then see every column: a
    case without a sequence that others have (a FLAIR-only case: fewer columns) or with an integer where another
    case has NaN (int64 against double) is rewritten from its table row (atomically), as is a missing file. Files
    already in the table's schema are left as written; files of other names are left to ``finish_parquet_dataset``.
    Returns the number of files (re)written."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = table.reset_index(drop=True)
    schema = pa.Schema.from_pandas(table, preserve_index=False)
    plain = schema.remove_metadata()
    written = 0
    for i, name in enumerate(names):
        path = folder / f"{name}.parquet"
        try:
            same = pq.read_schema(path).remove_metadata().equals(plain)
        except (OSError, pa.ArrowException):  # missing or unreadable: written again
            same = False
        if not same:
            buf = _io.BytesIO()
            pq.write_table(pa.Table.from_pandas(table.iloc[[i]], schema=schema, preserve_index=False), buf)
            atomic_write_bytes(path, buf.getvalue())
            written += 1
    return written


def finish_parquet_dataset(folder, table, names: Sequence[str]) -> Optional[str]:
    """The end of a cohort run's Parquet dataset (extract, the batch script): every file in the table's schema
    (``align_parquet_dataset``; ``table`` None: no rows) and only the files of ``names`` kept. Returns why aligning
    failed (the files then stay as written; the CSV is the table), else None."""
    try:
        if table is not None and len(names):
            align_parquet_dataset(folder, table, names)
        return None
    except Exception as exc:  # noqa: BLE001 - reported by the caller; the run's CSV is complete
        return str(exc)
    finally:
        prune_parquet_dataset(folder, names)


def prune_parquet_dataset(folder: Path, keep: Sequence[str]) -> None:
    """Remove the per-case files of cases not in ``keep`` (failed now, or gone from the cohort) and temp files."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    keep = set(keep)
    for p in folder.iterdir():
        if p.is_file() and (p.name.startswith(".") or (p.suffix == ".parquet" and p.stem not in keep)):
            p.unlink(missing_ok=True)
