"""Output sets under faults (issue 12 item 4): real processes killed with SIGKILL at random moments, a killed
worker, a full disk (a real tmpfs), unwritable outputs. Nothing is mocked.

After every kill the output folder holds the previous complete set (byte for byte) or a new complete set (its
manifest lists exactly the set's files, each with its SHA-256), never a mix; a re-run completes; an extraction
resumed after kills gives the table of an uninterrupted run. The random moments come from a seeded generator
(GLIOMA_KILL_SEED changes the seed); each kill's moment is printed, so a failure can be replayed.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from GliomaRadiogenomicsLib.bundle import bundle_preset, load_default_bundles
from GliomaRadiogenomicsLib.io import SET_MANIFEST, InputError, output_set, read_output_set

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli"]
BATCH = [sys.executable, str(REPO / "GliomaRadiogenomics" / "Batch" / "GliomaBatch.py")]
FAST = ["--spacing", "3", "--brain-mask", "threshold", "--backend", "hyperintensity", "--no-register",
        "--workers", "1"]
RUN_SET = {"predictions.json", "features.csv", "features.provenance.json", "segmentation.nii.gz",
           "brain_mask.nii.gz", "report.html", "report.pdf",
           # kept with the segmentation for `run --segmentation` / re-prediction (kept.py): part of the same set
           "segmentation.provenance.json", "segmentation.work.nii.gz", "segmentation.brain_mask.work.nii.gz",
           "segmentation.preprocessing.json"}
# the features of another preset that a default bundle was trained on (the liu2024 ATRX model; these four-sequence
# cases have its T1c and FLAIR): written with the same set
RUN_SET |= {f"features.{p}{ext}" for p in sorted({bundle_preset(b) for b in load_default_bundles()} - {"wang2025"})
            for ext in (".csv", ".provenance.json")}
RNG = random.Random(int(os.environ.get("GLIOMA_KILL_SEED", "20251126")))
LEFTOVER = re.compile(r"^\..+\.(staging|old|prev|lock)-[0-9]+-[0-9a-f]+$")  # our hidden temporary names


def at_3mm(bundles_at_spacing):
    """--bundle arguments: test copies of the shipped bundles declared at FAST's 3 mm (the shipped ones record 1 mm
    and would refuse every task: probabilities compared between runs would all be null)."""
    return [a for b in bundles_at_spacing(3.0) for a in ("--bundle", b)]


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------
def start(cmd, log: Path, env=None) -> subprocess.Popen:
    with open(log, "wb") as fh:  # a file, not a pipe: a full pipe would stall the child
        return subprocess.Popen([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def run(cmd, timeout=600, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=env)


def kill9(p: subprocess.Popen) -> bool:
    """kill -9 the run and everything it started; False when it had finished already."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(timeout=60)
    return p.returncode == -signal.SIGKILL


def wait_for(predicate, p: subprocess.Popen, timeout=300.0, interval=0.005, what="the condition"):
    """Poll until ``predicate()`` is true; fail when the process ends first (e.g. nothing was staged)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        found = predicate()
        if found:
            return found
        if p.poll() is not None:
            found = predicate()
            assert found, f"the process ended (exit code {p.returncode}) before {what}"
            return found
        time.sleep(interval)
    kill9(p)
    raise AssertionError(f"{what}: not reached in {timeout:.0f} s")


def staged_files(base: Path, name: str) -> bool:
    """True once a staging folder of set ``name`` in ``base`` holds a file: the write phase has begun."""
    for d in base.glob(f".{name}.staging-*"):
        try:
            if any(not n.startswith(".") for n in os.listdir(d)):
                return True
        except OSError:
            pass
    return False


def written_since(folder: Path, t0: float) -> bool:
    """True once a file in ``folder`` itself is newer than ``t0`` (outputs written straight into it)."""
    try:
        return any(f.stat().st_mtime > t0 for f in folder.iterdir())
    except OSError:
        return False


def snapshot(folder: Path) -> dict:
    """name -> bytes of the files in ``folder`` (our hidden leftovers of killed runs excluded)."""
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not LEFTOVER.match(p.name)}


def in_commit(folder: Path, set_name: str, previous: dict, names: set, others=frozenset()) -> str:
    """The state of a named set killed inside its file renames, checked: no manifest in the folder; the killed run's
    staging folder holds the new set's manifest (listing exactly ``names``); every file of the set in view is whole,
    either its previous bytes or the new set's (SHA-256 from that manifest), never a torn file."""
    import hashlib
    manifest = f".{set_name}{SET_MANIFEST}"
    snap = snapshot(folder)
    assert manifest not in snap, f"{folder}: a manifest, yet not a complete set: {sorted(snap)}"
    staged = [d for d in folder.glob(f".{set_name}.staging-*") if (d / manifest).is_file()]
    assert len(staged) == 1, f"{folder}: no manifest and no staged set to finish: {sorted(os.listdir(folder))}"
    new = json.loads((staged[0] / manifest).read_text())["files"]
    assert set(new) == names, sorted(new)
    for n in names:
        data = snap.get(n)
        if data is None:
            assert n not in previous, f"{n}: the previous file is gone, the new one not yet in"
            continue
        assert data == previous.get(n) or hashlib.sha256(data).hexdigest() == new[n]["sha256"], f"{n}: torn"
    assert set(snap) <= names | set(others), sorted(snap)  # others: the user's own files
    return "committing"


def previous_or_new(folder: Path, previous: dict, names: set, set_name=None) -> str:
    snap = snapshot(folder)
    if snap == previous:
        return "previous"
    manifest = SET_MANIFEST if set_name is None else f".{set_name}{SET_MANIFEST}"
    m = read_output_set(folder, set_name, verify=True)
    assert m is not None and set(m["files"]) == names, f"{folder}: neither the previous set nor a complete new " \
                                                       f"one: {sorted(snap)}"
    assert set(snap) == names | {manifest}, f"{folder}: files of two sets: {sorted(snap)}"
    return "new"


def worker_of(parent: int):
    """pid of the worker child of ``parent`` (``<python> .../GliomaRadiogenomicsLib/launch.py worker ...``), or None."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{d}/cmdline", "rb") as fh:
                cmd = fh.read()
            if b"GliomaRadiogenomicsLib.worker" in cmd or b"launch.py\x00worker" in cmd:
                return int(d)
        except (OSError, ValueError, IndexError):
            continue
    return None


class Tmpfs:
    """A real tmpfs of ``size`` mounted in ``path`` (we run as root in CI); skip when mounting is not permitted."""

    def __init__(self, path: Path, size: str, readonly=False):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        opts = f"size={size}" + (",ro" if readonly else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {r.stderr.strip()[:200]}")

    def close(self):
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


# ---------------------------------------------------------------------------------------------------------------
# fixtures: two small SYNTHETIC cases and one uninterrupted run (the reference, and the previous set of the kills)
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    from GliomaRadiogenomicsLib import synthetic as S
    d = tmp_path_factory.mktemp("cohort")
    S.generate_cohort(2, d, seed=11, downsample=3)
    return d


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory, bundles_at_spacing):
    out = tmp_path_factory.mktemp("reference") / "case"
    r = run(CLI + ["run", "--case-dir", cohort / "synth-0000", "--out", out] + FAST + at_3mm(bundles_at_spacing))
    assert r.returncode == 0, r.stderr[-3000:]
    snap = snapshot(out)
    assert set(snap) == RUN_SET | {SET_MANIFEST} and read_output_set(out, verify=True)
    return out, snap


# ---------------------------------------------------------------------------------------------------------------
# run: kill -9 before, during the image work, and from the write phase to the swap (the commit window itself is
# hit many times by test_commit_killed_at_random_moments below)
# ---------------------------------------------------------------------------------------------------------------
def test_run_killed_at_random_moments_leaves_previous_or_new_set(cohort, reference, tmp_path, bundles_at_spacing):
    ref_out, ref = reference
    base = tmp_path / "results"
    out = base / "case"
    shutil.copytree(ref_out, out)
    cmd = CLI + ["run", "--case-dir", cohort / "synth-0000", "--out", out] + FAST + at_3mm(bundles_at_spacing)
    seen = []
    for moment in ("start", "image work", "writing"):
        before = snapshot(out)
        p = start(cmd, tmp_path / f"{moment}.log")
        if moment == "start":
            delay = RNG.uniform(0.05, 1.5)
        elif moment == "image work":
            delay = RNG.uniform(1.5, 4.0)
        else:  # from the first output written (staged, or in the folder itself) to the end
            t0 = time.time()
            wait_for(lambda: staged_files(base, "case") or written_since(out, t0), p, what="an output was written")
            delay = RNG.uniform(0.0, 1.0)
        time.sleep(delay)
        killed = kill9(p)
        state = previous_or_new(out, before, RUN_SET)
        seen.append((moment, round(delay, 3), killed, state))
        assert killed or state == "new", seen
        # beside the output folder: only hidden leftovers of the killed run, never a visible partial copy
        assert {x.name for x in base.iterdir() if not x.name.startswith(".")} == {"case"}, sorted(base.iterdir())
        assert not [x for x in out.iterdir() if x.is_dir()]
    print("kill moments (moment, delay s, killed, output folder):", seen)
    assert seen[0][3] == "previous"  # killed before anything was written

    # a re-run completes, cleans up the killed runs' leftovers and keeps the previous set as one dated copy
    before = snapshot(out)
    r = run(cmd + ["--keep-previous", "1"])
    assert r.returncode == 0, r.stderr[-3000:]
    new = snapshot(out)
    assert read_output_set(out, verify=True) and set(new) == RUN_SET | {SET_MANIFEST}
    assert sorted(x.name for x in base.iterdir() if x.name.startswith(".")) == []
    copies = sorted(base.glob("case.previous-*"))
    assert len(copies) == 1 and snapshot(copies[0]) == before
    # same inputs and options: the same features and probabilities as the uninterrupted run
    assert new["features.csv"] == ref["features.csv"]
    doc, doc_ref = json.loads(new["predictions.json"]), json.loads(ref["predictions.json"])
    assert [doc[t]["probability"] for t in doc["tasks"]] == [doc_ref[t]["probability"] for t in doc_ref["tasks"]]
    assert all(doc[t]["probability"] is not None for t in doc["tasks"])  # a real comparison, not null == null
    assert not list(out.glob("*.bak-*"))


def test_killed_worker_leaves_no_partial_output(cohort, reference, tmp_path):
    """kill -9 the skull-stripping worker (deepbet, a subprocess of the run): the run fails naming the worker, the
    output folder keeps its previous set, the worker's temporary folder is removed, nothing is staged."""
    pytest.importorskip("deepbet", reason="deepbet (the 'brain' extra) is not installed")
    ref_out, ref = reference
    base = tmp_path / "results"
    out = base / "case"
    shutil.copytree(ref_out, out)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    log = tmp_path / "worker.log"
    cmd = CLI + ["run", "--case-dir", cohort / "synth-0000", "--out", out, "--spacing", "3", "--brain-mask",
                 "deepbet", "--device", "cpu", "--backend", "hyperintensity", "--no-register", "--workers", "1"]
    p = start(cmd, log, env=dict(os.environ, TMPDIR=str(tmp)))
    try:
        worker = wait_for(lambda: worker_of(p.pid), p, what="the deepbet worker started")
        time.sleep(RNG.uniform(0.05, 1.5))
        os.kill(worker, signal.SIGKILL)
        rc = p.wait(timeout=300)
    finally:
        kill9(p)
    text = log.read_text()
    assert rc == 1 and "worker 'deepbet' failed (exit code -9)" in text, text[-2000:]
    # the previous set is untouched; the only new file is the failed run's error.log (its traceback)
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k != "error.log"} == ref
    assert "deepbet" in after.get("error.log", b"deepbet").decode()
    assert not [x for x in base.iterdir() if x.name.startswith(".")]  # no staging folder, no lock
    assert not list(tmp.glob("gr-deepbet-*"))                        # the worker's input / output files


# ---------------------------------------------------------------------------------------------------------------
# extract: kills during a case and at the final write; the resumed table equals an uninterrupted run's
# ---------------------------------------------------------------------------------------------------------------
def test_extract_killed_then_resumed_equals_uninterrupted(cohort, tmp_path):
    opts = FAST + ["--preset", "wang2025"]  # shim2021 needs a CBV map, which the synthetic cohort lacks
    names = {"t.csv", "t.provenance.json", "t.failures.csv"}
    ref = tmp_path / "ref" / "t.csv"
    r = run(CLI + ["extract", "--cases", cohort, "--out", ref] + opts)
    assert r.returncode == 0, r.stderr[-3000:]
    ref_table = pd.read_csv(ref)
    assert len(ref_table) == 2 and read_output_set(ref.parent, "t.csv", verify=True)

    folder = tmp_path / "res"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's own file")
    for n in names | {".t.csv" + SET_MANIFEST}:  # the previous complete set
        shutil.copy2(ref.parent / n, folder / n)
    cache = folder / "t.csv.cases"
    cmd = CLI + ["extract", "--cases", cohort, "--out", folder / "t.csv"] + opts

    def cached(n):
        return lambda: len([c for c in cache.glob("*.json") if not c.name.startswith(".")]) >= n

    seen = []
    for moment, ready, delay in (("second case", cached(1), RNG.uniform(0.0, 0.5)),
                                 ("final write", cached(2), RNG.uniform(0.0, 0.15))):
        before = snapshot(folder)
        p = start(cmd, tmp_path / f"extract-{moment}.log")
        wait_for(ready, p, what=f"{moment}: case(s) cached")
        time.sleep(delay)
        killed = kill9(p)
        snap = snapshot(folder)
        assert snap.pop("notes.txt") == b"the user's own file"
        prev = {k: v for k, v in before.items() if k != "notes.txt"}
        if snap == prev:
            state = "previous"
        elif read_output_set(folder, "t.csv", verify=True) is None and moment == "final write":
            # a named set shares its folder with the user's files, so it is replaced file by file (io.OutputSet):
            # killed inside those few renames, the folder has no manifest and the next run finishes the commit
            state = in_commit(folder, "t.csv", prev, names, {"notes.txt"})
        else:
            m = read_output_set(folder, "t.csv", verify=True)
            assert m is not None and set(m["files"]) == names and set(snap) == names | {".t.csv" + SET_MANIFEST}, \
                f"{moment}: neither the previous table set nor a complete new one: {sorted(snap)}"
            state = "new"
        # the run had committed its set before the kill landed (it may still be alive, tearing down): its summary
        # line is in the log
        committed = '"n_ok"' in (tmp_path / f"extract-{moment}.log").read_text(errors="replace")
        seen.append((moment, round(delay, 3), killed, state, committed))
    print("extract kill moments:", seen)
    # a kill during the second case leaves the previous set; a new set only if the run had committed it by then
    assert seen[0][3] == "previous" or seen[0][4] or not seen[0][2], seen

    r = run(cmd)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["n_ok"] == 2 and summary["n_cached"] == 2  # both cases came from the killed runs' cache
    pd.testing.assert_frame_equal(pd.read_csv(folder / "t.csv"), ref_table, check_exact=True)
    assert read_output_set(folder, "t.csv", verify=True)
    assert (folder / "notes.txt").read_text() == "the user's own file"
    assert not [x.name for x in folder.iterdir() if LEFTOVER.match(x.name)]


# ---------------------------------------------------------------------------------------------------------------
# batch script (plain Python with slicer-core): a case folder keeps its previous set when the batch is killed
# ---------------------------------------------------------------------------------------------------------------
def test_batch_killed_while_writing_then_rerun(cohort, tmp_path, bundles_at_spacing):
    pytest.importorskip("slicer", reason="slicer-core is not installed (make test installs it)")
    names = {"predictions.json", "segmentation.nii.gz", "summary.pdf"}
    inp, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(cohort / "synth-0001", inp / "synth-0001")
    with output_set(out / "synth-0001") as staging:  # a previous complete set of this case
        for n in names:
            (staging / n).write_bytes(f"previous {n}".encode())
    previous = snapshot(out / "synth-0001")
    cmd = BATCH + ["--input", inp, "--output", out, "--spacing", "3", "--brain-mask", "threshold", "--backend",
                   "hyperintensity", "--no-register"] + at_3mm(bundles_at_spacing)
    t0 = time.time()
    p = start(cmd, tmp_path / "batch.log")
    wait_for(lambda: staged_files(out, "synth-0001") or written_since(out / "synth-0001", t0), p, timeout=600,
             what="an output was written")
    delay = RNG.uniform(0.0, 0.3)
    time.sleep(delay)
    killed = kill9(p)
    state = previous_or_new(out / "synth-0001", previous, names)
    print("batch kill:", round(delay, 3), killed, state)
    r = run(cmd)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    m = read_output_set(out / "synth-0001", verify=True)
    assert m is not None and set(m["files"]) == names
    doc = json.loads((out / "synth-0001" / "predictions.json").read_text())
    assert 0 <= doc["IDH"]["probability"] <= 1
    assert pd.read_csv(out / "batch_results.csv").status.tolist() == ["ok"]
    # leftovers cleaned (the Parquet rows beside the CSV are part of the batch's results)
    assert sorted(x.name for x in out.iterdir()) == ["batch_results.csv", "batch_results.parquet", "synth-0001"]


# ---------------------------------------------------------------------------------------------------------------
# disk full, unwritable outputs: clear errors (exit 2) before the image work, nothing partial left
# ---------------------------------------------------------------------------------------------------------------
def test_disk_full_before_and_while_writing(cohort, tmp_path):
    small = Tmpfs(tmp_path / "small", "1m")
    try:  # too little space from the start: refused before any image is read
        out = small.path / "case"
        r = run(CLI + ["run", "--case-dir", cohort / "synth-0000", "--out", out] + FAST, timeout=120)
        assert r.returncode == 2, r.stderr[-2000:]
        assert str(out) in r.stderr and "disk full" in r.stderr and "Traceback" not in r.stderr
        assert list(small.path.iterdir()) == []
    finally:
        small.close()
    disk = Tmpfs(tmp_path / "disk", "10m")
    try:  # the disk fills up during the run (another program's file): the outputs cannot be written
        out = disk.path / "case"
        p = start(CLI + ["segment", "--case-dir", cohort / "synth-0000", "--out", out] + FAST[:-2],
                  tmp_path / "full.log")
        wait_for(lambda: list(disk.path.glob(".case.staging-*")), p, what="a staging folder appeared")
        with open(disk.path / "filler", "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        rc = p.wait(timeout=300)
        text = (tmp_path / "full.log").read_text()
        assert rc == 2, text[-2000:]
        assert str(out) in text and "no space left" in text and "disk full" in text and "Traceback" not in text
        assert sorted(x.name for x in disk.path.iterdir()) == ["filler"]  # no staging, no partial output
    finally:
        disk.close()


def test_unwritable_or_file_outputs_are_clear_errors(cohort, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    case = cohort / "synth-0000"
    r = run(CLI + ["run", "--case-dir", case, "--out", a_file] + FAST, timeout=120)
    assert r.returncode == 2 and f"output folder {a_file} is an existing file, not a folder" in r.stderr, r.stderr
    r = run(CLI + ["segment", "--case-dir", case, "--out", a_file / "sub"] + FAST[:-2], timeout=120)
    assert r.returncode == 2 and f"{a_file} is a file" in r.stderr, r.stderr
    r = run(CLI + ["demo", "--out", "/proc/no/such/folder"] + FAST, timeout=120)
    assert r.returncode == 2 and "/proc/no/such/folder" in r.stderr and "cannot write" in r.stderr, r.stderr
    pytest.importorskip("slicer", reason="slicer-core is not installed (make test installs it)")
    r = run(BATCH + ["--input", cohort, "--output", a_file], timeout=120)
    assert r.returncode == 2 and f"{a_file} is an existing file" in r.stderr, r.stderr[-2000:]
    assert a_file.read_text() == "not a folder"
    ro = Tmpfs(tmp_path / "ro", "1m", readonly=True)  # last: it skips where mounting is not permitted
    try:
        r = run(CLI + ["extract", "--cases", cohort, "--out", ro.path / "t.csv"] + FAST, timeout=120)
        assert r.returncode == 2 and str(ro.path) in r.stderr and "read-only file system" in r.stderr, r.stderr
    finally:
        ro.close()
    assert not (tmp_path / "ro" / "t.csv.cases").exists()


# ---------------------------------------------------------------------------------------------------------------
# the helper itself: many kills of a process that does nothing but commit sets (most land inside a commit)
# ---------------------------------------------------------------------------------------------------------------
WRITER = """
import sys
from pathlib import Path
from GliomaRadiogenomicsLib.io import output_set, read_output_set
out = Path(sys.argv[1])
print("ready", flush=True)
while True:
    with output_set(out, keep_previous=2) as staging:  # generation i = the one in place + 1
        i = int((out / "a.txt").read_text().split()[0]) + 1 if read_output_set(out) else 1
        for name in ("a.txt", "b.txt", "c.txt"):
            (staging / name).write_text(f"{i}\\n" * 2000)
"""


def _generation(folder: Path):
    m = read_output_set(folder, verify=True)
    if m is None:
        return None
    values = {(folder / n).read_text() for n in m["files"]}
    assert set(m["files"]) == {"a.txt", "b.txt", "c.txt"} and len(values) == 1, "one set, one generation"
    return int(values.pop().split()[0])


@pytest.mark.parametrize("with_user_file", [False, True], ids=["folder-swap", "file-renames"])
def test_commit_killed_at_random_moments(tmp_path, with_user_file):
    out = tmp_path / "sets" / "out"
    if with_user_file:  # the folder holds a file of the user's: the set's files are renamed in one by one
        out.mkdir(parents=True)
        (out / "mine.txt").write_text("keep me")
    incomplete, last = 0, None
    for k in range(8):
        p = start([sys.executable, "-c", WRITER, out], tmp_path / "writer.log")
        wait_for(lambda: (tmp_path / "writer.log").read_text().startswith("ready"), p, timeout=60)
        time.sleep(RNG.uniform(0.0, 0.4))
        kill9(p)
        gen = _generation(out)
        if gen is None and with_user_file and sorted(os.listdir(out)) != ["mine.txt"]:
            # only possible inside the file renames: the manifest is out, the staged set holds its own manifest
            incomplete += 1
            with pytest.raises(RuntimeError):
                with output_set(out):  # entering finishes the killed commit; this set is abandoned
                    raise RuntimeError("abandon")
            gen = _generation(out)
            assert gen is not None, f"kill {k}: the interrupted commit was not finished: {sorted(os.listdir(out))}"
        if gen is None:  # killed before its first set: nothing there yet (the previous state)
            assert last is None and sorted(os.listdir(out) if out.exists() else []) == (
                ["mine.txt"] if with_user_file else []), f"kill {k}: an incomplete set"
        else:
            assert last is None or gen >= last, f"kill {k}: an older set came back"
            last = gen
        if with_user_file:
            assert (out / "mine.txt").read_text() == "keep me"
        copies = sorted(out.parent.glob("out.previous-*"))
        assert len(copies) <= 2 and all(_generation(c) is not None for c in copies)
    with output_set(out) as staging:  # and a normal run afterwards cleans up every leftover
        for name in ("a.txt", "b.txt", "c.txt"):
            (staging / name).write_text("0\n")
    assert _generation(out) == 0
    assert not [x for x in out.parent.iterdir() if LEFTOVER.match(x.name)]
    assert not [x for x in out.iterdir() if LEFTOVER.match(x.name)]
    print("kills that landed inside the file renames:", incomplete)


# ---------------------------------------------------------------------------------------------------------------
# the rule for what is replaced and what is kept (in-process, fast)
# ---------------------------------------------------------------------------------------------------------------
def _write(out, files: dict, **kw):
    with output_set(out, **kw) as staging:
        for n, text in files.items():
            (staging / n).write_text(text)


def test_what_is_replaced_and_what_is_kept(tmp_path):
    out = tmp_path / "res" / "case"
    _write(out, {"predictions.json": "1", "segmentation.json": "1"})
    inode = out.stat().st_ino
    _write(out, {"predictions.json": "2", "features.csv": "2"})
    assert out.stat().st_ino != inode  # the folder was swapped as a whole
    assert sorted(os.listdir(out)) == [SET_MANIFEST, "features.csv", "predictions.json"]  # segmentation.json gone
    assert sorted(os.listdir(out.parent)) == ["case"]  # keep_previous=0: no copy, no .bak
    # the user's own files and folders are never touched; the set's files are replaced inside the folder
    (out / "notes.txt").write_text("mine")
    (out / "inputs").mkdir()
    (out / "inputs" / "flair.nii.gz").write_text("mine too")
    (out / "predictions.json.bak-20240101-000000").write_text("an old backup")
    _write(out, {"predictions.json": "3"}, keep_previous=2)
    assert sorted(os.listdir(out)) == [SET_MANIFEST, "inputs", "notes.txt", "predictions.json",
                                       "predictions.json.bak-20240101-000000"]
    assert (out / "predictions.json").read_text() == "3" and (out / "notes.txt").read_text() == "mine"
    copies = sorted(out.parent.glob("case.previous-*"))
    assert len(copies) == 1 and sorted(os.listdir(copies[0])) == [SET_MANIFEST, "features.csv", "predictions.json"]
    assert (copies[0] / "predictions.json").read_text() == "2" and read_output_set(copies[0], verify=True)
    for i in (4, 5, 6):  # at most N dated copies, the oldest pruned
        time.sleep(0.01)
        _write(out, {"predictions.json": str(i)}, keep_previous=2)
    copies = sorted(out.parent.glob("case.previous-*"), key=lambda p: p.stat().st_mtime)
    assert [(c / "predictions.json").read_text() for c in copies] == ["4", "5"]
    # a failure inside the block: the folder stays as it was, the staging folder is removed
    with pytest.raises(ZeroDivisionError):
        with output_set(out) as staging:
            (staging / "predictions.json").write_text("never")
            1 / 0
    assert (out / "predictions.json").read_text() == "6"
    assert not [x for x in out.parent.iterdir() if x.name.startswith(".")]
    # a folder written before output sets (no manifest): files with our output names are the previous set
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "predictions.json").write_text("old")
    (legacy / "report.html").write_text("old")
    _write(legacy, {"predictions.json": "new"}, keep_previous=1)
    assert sorted(os.listdir(legacy)) == [SET_MANIFEST, "predictions.json"]
    (kept,) = tmp_path.glob("legacy.previous-*")
    assert sorted(os.listdir(kept)) == [SET_MANIFEST, "predictions.json", "report.html"]
    # an existing file where the folder should be
    with pytest.raises(InputError, match="is an existing file, not a folder"):
        _write(tmp_path / "res" / "case" / "notes.txt", {"x": "1"})


def _staged(staging: Path, files: dict, replaces=()) -> dict:
    """A staged set exactly as a run leaves it before its renames (files, then its manifest)."""
    import hashlib
    from GliomaRadiogenomicsLib.io import SET_FORMAT
    staging.mkdir()
    for n, text in files.items():
        (staging / n).write_text(text)
    manifest = {"format": SET_FORMAT, "version": 1, "id": staging.name.rsplit("-", 2)[-2] + "-" +
                staging.name.rsplit("-", 1)[-1], "created": "", "replaces": list(replaces),
                "files": {n: {"bytes": len(t.encode()), "sha256": hashlib.sha256(t.encode()).hexdigest()}
                          for n, t in files.items()}}
    (staging / SET_MANIFEST).write_text(json.dumps(manifest))
    return manifest


def test_next_run_finishes_a_commit_killed_inside_the_file_renames(tmp_path):
    """The on-disk state of a run killed after the first of its renames (its lock died with it): a reader sees no
    complete set; the next run into the folder finishes that commit before anything else."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    _write(out, {"a.txt": "1", "b.txt": "1", "c.txt": "1"})
    staging = tmp_path / ".out.staging-999999-deadbeef"
    m = _staged(staging, {"a.txt": "2", "b.txt": "2"}, replaces=["c.txt"])
    (out / SET_MANIFEST).unlink()
    os.replace(staging / "a.txt", out / "a.txt")  # killed here
    assert read_output_set(out) is None
    with pytest.raises(RuntimeError):
        with output_set(out):
            raise RuntimeError("this run fails, after finishing the killed one's commit")
    assert read_output_set(out, verify=True)["id"] == m["id"]
    assert sorted(os.listdir(out)) == [SET_MANIFEST, "a.txt", "b.txt", "mine.txt"]
    assert (out / "b.txt").read_text() == "2" and not staging.exists()


def test_next_run_restores_a_folder_killed_between_two_renames(tmp_path):
    """Where the system cannot swap two folders in one call, the swap is two renames: killed between them, the
    output folder is missing; the next run puts the complete set back (the new one when it was complete)."""
    out = tmp_path / "out"
    _write(out, {"a.txt": "1"})
    os.rename(out, tmp_path / ".out.old-999999-deadbeef")
    staging = tmp_path / ".out.staging-999999-deadbeef"
    staging.mkdir()
    (staging / "a.txt").write_text("2")  # killed before its manifest: not a complete set
    with pytest.raises(RuntimeError):
        with output_set(out):
            raise RuntimeError("abandon")
    assert read_output_set(out, verify=True) and (out / "a.txt").read_text() == "1"
    assert sorted(os.listdir(tmp_path)) == ["out"]
    # the same with a complete staged set: it becomes the output folder, the old one is removed
    os.rename(out, tmp_path / ".out.old-999999-deadbeef")
    m = _staged(staging, {"a.txt": "3"})
    with pytest.raises(RuntimeError):
        with output_set(out):
            raise RuntimeError("abandon")
    assert read_output_set(out, verify=True)["id"] == m["id"] and (out / "a.txt").read_text() == "3"
    assert sorted(os.listdir(tmp_path)) == ["out"]
