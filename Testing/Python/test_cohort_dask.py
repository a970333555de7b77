"""`extract --scheduler` (issue 16): the same table whatever runs it (sequential, local:2, a LocalCluster reached by
address), a Parquet file per case, resume without resubmitting, a worker process killed with SIGKILL mid-case
retried elsewhere with nothing lost or duplicated, a broken case recorded and the run going on. Real Dask, real
worker processes, no mocks. Small synthetic cases and a light preset (2 sequences, original image, first order +
GLCM) keep it fast: the scheduler is under test here, not the features."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed", reason="the 'cohort' extra (dask[distributed]) is not installed")
pytest.importorskip("pyarrow", reason="the 'cohort' extra (pyarrow) is not installed")

from GliomaRadiogenomicsLib import synthetic as S  # noqa: E402
from GliomaRadiogenomicsLib.cohort import extract_cohort  # noqa: E402
from GliomaRadiogenomicsLib.pipeline import PipelineOptions  # noqa: E402
from GliomaRadiogenomicsLib.preprocess import PreprocessOptions  # noqa: E402
from GliomaRadiogenomicsLib.scheduler import read_parquet_dataset  # noqa: E402

CLI = [sys.executable, "-m", "GliomaRadiogenomicsLib.cli"]
PRESET = """glioma_radiogenomics:
  name: dask-test
  sequences: [t2, flair]
  regions: [WT]
  normalization: unit_clahe
  clahe: {kernel_size: 32, clip_limit: 0.01, nbins: 256}
  percentiles: [0.5, 99.5]
  crop_pad_voxels: 10
imageType:
  Original: {}
featureClass:
  firstorder:
  glcm:
setting:
  binCount: 32
  label: 1
  normalize: false
  preCrop: false
  additionalInfo: false
  correctMask: false
  geometryTolerance: 0.0001
"""


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("dask-cohort")
    S.generate_cohort(2, d / "cases", seed=5, downsample=3)
    bad = d / "cases" / "broken-case"
    bad.mkdir()
    (bad / "t1.nii.gz").write_bytes(b"not an image")
    (d / "preset.yaml").write_text(PRESET)
    return d


def _options(cohort):
    return PipelineOptions(preprocess=PreprocessOptions(spacing=3, brain_mask="threshold", register=False),
                           backend="hyperintensity", preset=str(cohort / "preset.yaml"), feature_workers=1)


@pytest.fixture(scope="module")
def sequential(cohort):
    out = cohort / "seq" / "table.csv"
    s = extract_cohort(cohort / "cases", out, _options(cohort))
    assert s["n_ok"] == 2 and s["n_failed"] == 1
    return pd.read_csv(out)


def assert_same_table(a: pd.DataFrame, b: pd.DataFrame):
    """Same rows, same columns, values equal to 1e-12."""
    assert list(a.columns) == list(b.columns)
    assert a.case_id.tolist() == b.case_id.tolist()
    num = a.select_dtypes("number").columns
    assert len(num) > 50
    np.testing.assert_allclose(a[num].to_numpy(float), b[num].to_numpy(float), rtol=0, atol=1e-12)
    other = [c for c in a.columns if c not in num]
    pd.testing.assert_frame_equal(a[other].astype(str), b[other].astype(str))


def test_local2_equals_sequential_parquet_and_resume(cohort, sequential, tmp_path):
    out = tmp_path / "table.csv"
    p = subprocess.run(CLI + ["extract", "--cases", str(cohort / "cases"), "--out", str(out), "--spacing", "3",
                              "--brain-mask", "threshold", "--no-register", "--backend", "hyperintensity",
                              "--preset", str(cohort / "preset.yaml"), "--scheduler", "local:2"],
                       capture_output=True, encoding="utf-8", errors="replace", timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout[p.stdout.index("{"):])
    assert summary["n_ok"] == 2 and summary["n_failed"] == 1 and summary["n_cached"] == 0
    assert "Dask scheduler tcp://" in p.stderr and "2 worker(s)" in p.stderr
    import importlib.util
    if importlib.util.find_spec("bokeh"):  # the cohort extra installs it: the dashboard's address is printed
        assert "Dask dashboard: http://127.0.0.1:" in p.stderr and "/status" in p.stderr, p.stderr[-2000:]
    else:
        assert "Dask dashboard: off (bokeh is not installed" in p.stderr
    assert "2/3 done, 1 failed, 0 running" in p.stderr and "cases/h" in p.stderr and "ETA" in p.stderr
    table = pd.read_csv(out)
    assert_same_table(sequential, table)
    # the broken case is recorded with its error; the run went on
    fails = pd.read_csv(tmp_path / "table.failures.csv")
    assert fails.case_id.tolist() == ["broken-case"] and "not gzip-compressed" in fails.error[0]
    # the Parquet dataset: one file per ok case, the same rows as the CSV, no temp files left
    pq = tmp_path / "table.parquet"
    assert sorted(f.name for f in pq.iterdir()) == ["synth-0000.parquet", "synth-0001.parquet"]
    assert_same_table(table, read_parquet_dataset(pq, table.case_id.tolist()))
    # resume: nothing resubmitted (all skipped before Dask), the same table; JSON progress lines for GUIs
    p2 = subprocess.run(CLI + ["extract", "--cases", str(cohort / "cases"), "--out", str(out), "--spacing", "3",
                               "--brain-mask", "threshold", "--no-register", "--backend", "hyperintensity",
                               "--preset", str(cohort / "preset.yaml"), "--scheduler", "local:1",
                               "--json-progress"],
                        capture_output=True, encoding="utf-8", errors="replace", timeout=300)
    assert p2.returncode == 0, p2.stderr[-3000:]
    lines = [json.loads(x) for x in p2.stdout.splitlines() if x.startswith('{"progress"')]
    assert lines and lines[-1]["progress"] == 1.0
    assert any("2 already done (skipped)" in x["message"] for x in lines), lines
    s2 = json.loads(p2.stdout[p2.stdout.index("{\n"):])
    assert s2["n_cached"] == 2 and s2["n_failed"] == 1
    assert_same_table(table, pd.read_csv(out))


def test_worker_killed_mid_case_is_retried(cohort, sequential, tmp_path):
    """A LocalCluster of 2 single-threaded worker processes reached like a remote scheduler (by its Client); one
    worker is killed with SIGKILL while the scheduler says it is running a case: Dask reruns that case on a worker,
    and the table still equals the sequential one, each case once."""
    from distributed import Client, LocalCluster
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Attempts(SchedulerPlugin):
        def __init__(self):
            self.started = {}

        def transition(self, key, start, finish, *args, **kwargs):
            if finish == "processing":
                self.started[key] = self.started.get(key, 0) + 1

    attempts = Attempts()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50) as cluster, Client(cluster) as client:
        cluster.scheduler.add_plugin(attempts, name="attempts")
        out = tmp_path / "table.csv"
        result = {}
        runner = threading.Thread(target=lambda: result.update(
            extract_cohort(cohort / "cases", out, _options(cohort), scheduler=client)))
        runner.start()
        killed = None
        deadline = time.time() + 120
        while killed is None and time.time() < deadline and runner.is_alive():
            for ts in list(cluster.scheduler.tasks.values()):
                key = str(ts.key)
                if key.startswith("glioma-case-synth-") and ts.state == "processing" and ts.processing_on:
                    # the worker has had the case for a moment: it is importing / computing (imports alone take
                    # seconds in a fresh worker process); kill it there
                    time.sleep(0.5)
                    if ts.state != "processing" or ts.processing_on is None:
                        continue
                    addr = ts.processing_on.address
                    pid = client.run(os.getpid, workers=[addr])[addr]
                    os.kill(pid, signal.SIGKILL)
                    killed = key
                    break
            time.sleep(0.05)
        runner.join(240)
        assert not runner.is_alive()
    assert killed is not None, "no case was seen running on a worker"
    assert attempts.started[killed] >= 2, attempts.started  # the killed case was run again
    assert result["n_ok"] == 2 and result["n_failed"] == 1
    table = pd.read_csv(out)
    assert table.case_id.is_unique
    assert_same_table(sequential, table)
    pq = tmp_path / "table.parquet"
    assert sorted(f.name for f in pq.iterdir()) == ["synth-0000.parquet", "synth-0001.parquet"]
    assert_same_table(table, read_parquet_dataset(pq, table.case_id.tolist()))


def test_tcp_scheduler_with_workers_in_another_folder(cohort, sequential, tmp_path):
    """A scheduler and a worker started as separate processes (`python -m distributed.cli.dask_scheduler` /
    `dask_worker`, as docs/scaling.md starts them on other machines), the worker in another working folder; extract
    reaches the scheduler by its tcp:// address with relative --cases / --out / --preset paths (the client's
    folder): every path a task carries must be absolute, else the worker finds no case and writes its cache
    elsewhere."""
    elsewhere = tmp_path / "worker-folder"
    elsewhere.mkdir()
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--scheduler-file",
                               str(sched_file), "--port", "0", "--no-dashboard"], cwd=elsewhere, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline, address = time.time() + 60, None
        while address is None and time.time() < deadline:
            try:  # the scheduler writes the file when it is up (not atomically: read until it parses)
                address = json.loads(sched_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.2)
        assert address, "the Dask scheduler did not start in 60 s"
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads",
                                       "1", "--nworkers", "1", "--no-dashboard"], cwd=elsewhere, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        client_dir = cohort  # holds cases/ and preset.yaml: the paths below are relative to it
        out = tmp_path / "client-out"
        rel_out = os.path.relpath(out / "table.csv", client_dir)
        p = subprocess.run(CLI + ["extract", "--cases", "cases", "--out", rel_out, "--spacing", "3",
                                  "--brain-mask", "threshold", "--no-register", "--backend", "hyperintensity",
                                  "--preset", "preset.yaml", "--scheduler", address],
                           cwd=client_dir, env=env, capture_output=True, encoding="utf-8", errors="replace",
                           timeout=300)
    finally:
        for q in reversed(procs):
            q.terminate()
        for q in procs:
            try:
                q.wait(30)
            except subprocess.TimeoutExpired:
                q.kill()
                q.wait(10)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout[p.stdout.index("{"):])
    assert summary["n_ok"] == 2 and summary["n_failed"] == 1, summary
    assert_same_table(sequential, pd.read_csv(out / "table.csv"))
    assert sorted(f.name for f in (out / "table.csv.cases").iterdir()) == ["synth-0000.json", "synth-0001.json"]
    assert not any(elsewhere.rglob("*.json")) and not any(elsewhere.rglob("*.parquet"))  # nothing written there


def test_relative_option_paths_made_absolute(tmp_path, monkeypatch):
    """The option paths a worker reads (preset YAML, deep weights, backend weight / model folders, bundles) become
    absolute; names (wang2025, the atlas mni152, device cpu, a checkpoint file name, a missing path) stay as given
    even where a file or folder of that name exists here; the options hash does not change for a preset file."""
    from GliomaRadiogenomicsLib.cohort import absolute_options
    from GliomaRadiogenomicsLib.provenance import options_hash
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(PRESET)
    (tmp_path / "w.pth").write_bytes(b"x")
    (tmp_path / "models").mkdir()
    (tmp_path / "b.json").write_text("{}")
    (tmp_path / "mni152").mkdir()  # names that happen to exist here stay names
    (tmp_path / "cpu").write_text("")
    opt = PipelineOptions(preprocess=PreprocessOptions(atlas="mni152"), preset="p.yaml", deep_weights="w.pth",
                          backend_options={"weights_dir": "models", "device": "cpu", "checkpoint": "b.json"},
                          bundles=["b.json", "nope.json"])
    a = absolute_options(opt)
    assert a.preset == str(tmp_path / "p.yaml") and a.deep_weights == str(tmp_path / "w.pth")
    assert a.backend_options == {"weights_dir": str(tmp_path / "models"), "device": "cpu", "checkpoint": "b.json"}
    assert a.bundles == [str(tmp_path / "b.json"), "nope.json"] and a.preprocess.atlas == "mni152"
    assert opt.preset == "p.yaml"  # a copy: the caller's options unchanged
    assert options_hash(PipelineOptions(preset="p.yaml")) == options_hash(absolute_options(PipelineOptions(
        preset="p.yaml")))
    assert absolute_options(PipelineOptions()).preset == "wang2025"


def test_parquet_dataset_has_one_schema_when_a_case_lacks_a_sequence(tmp_path):
    """A FLAIR-only case among FLAIR + T2 cases has fewer feature columns. Readers that take the first file's schema
    (pyarrow.dataset, pandas on the folder, DuckDB, Spark) must still read every column of every case: each per-case
    file is written in the table's schema (its absent columns null), also after a resumed run."""
    import shutil

    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    cases = tmp_path / "cases"
    S.generate_cohort(2, cases, seed=5, downsample=3)
    shutil.copytree(cases / "synth-0001", cases / "a-flair-only")  # first by name: its file is read first
    for f in (cases / "a-flair-only").iterdir():
        if f.name.startswith(("t1", "t2")):
            f.unlink()
    meta = json.loads((cases / "a-flair-only" / "case.json").read_text())
    (cases / "a-flair-only" / "case.json").write_text(json.dumps({**meta, "case_id": "a-flair-only"}))
    (tmp_path / "preset.yaml").write_text(PRESET)
    out = tmp_path / "t" / "table.csv"
    for run in range(2):  # the second run resumes from the cache (rows cached with fewer columns)
        s = extract_cohort(cases, out, _options(tmp_path))
        assert s["n_ok"] == 3 and s["n_cached"] == 3 * run, s
        table = pd.read_csv(out)
        assert table.case_id.tolist() == ["a-flair-only", "synth-0000", "synth-0001"]
        t2 = [c for c in table.columns if c.startswith("T2_")]
        assert t2 and table.loc[0, t2].isna().all() and table.loc[1:, t2].notna().all().all()
        folder = tmp_path / "t" / "table.parquet"
        files = [folder / f"{n}.parquet" for n in table.case_id]
        assert sorted(folder.iterdir()) == sorted(files)
        for f in files:
            assert pq.read_schema(f).names == list(table.columns), f.name
        first_schema = ds.dataset(files, format="parquet").to_table().to_pandas()  # the FLAIR-only file first
        assert_same_table(table, first_schema)
        assert_same_table(table, pd.read_parquet(folder).set_index("case_id").loc[table.case_id].reset_index())


def _where(i):
    from distributed import get_worker
    return get_worker().name


def test_gpu_tagged_cases_go_to_gpu_workers_only():
    """Cases that run a segmentation network are submitted with the GPU resource when some workers declare one
    (`dask worker --resources GPU=1`): real Dask workers, one declaring GPU=1 (a resource label: no GPU needed to
    route), one not; every tagged task runs on the GPU worker (untagged, they may run on either)."""
    from distributed import Client, Scheduler, SpecCluster, Worker
    from GliomaRadiogenomicsLib.scheduler import gpu_workers, needs_gpu, run_cases
    assert needs_gpu("auto") and needs_gpu("lgg-unet2d") and needs_gpu("brats17")
    assert not needs_gpu("hyperintensity") and not needs_gpu("auto", case_roi=True)
    spec = {"gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}, "name": "gpu"}},
            "cpu": {"cls": Worker, "options": {"nthreads": 1, "name": "cpu"}}}
    with SpecCluster(workers=spec, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
                     silence_logs=50) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        assert gpu_workers(client) == 1
        for resources, expected in (({"GPU": 1}, {"gpu"}), (None, {"gpu", "cpu"})):
            where = {}
            run_cases(client, _where, [(f"c{i}", (i,)) for i in range(12)],
                      lambda name, w: where.update({name: w}) or True, lambda name, exc: None,
                      resources=resources, refresh_s=0.1)
            assert len(where) == 12 and set(where.values()) <= expected
            if resources:
                assert set(where.values()) == expected, where


def test_scheduler_spec_errors(cohort, tmp_path):
    from GliomaRadiogenomicsLib.io import InputError
    from GliomaRadiogenomicsLib.scheduler import parse_scheduler
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("tcp://10.0.0.5:8786") == ("address", "tcp://10.0.0.5:8786")
    for bad in ("local:0", "local:x", "10.0.0.5:8786", "http://host:1"):
        with pytest.raises(InputError, match="--scheduler"):
            parse_scheduler(bad)
    p = subprocess.run(CLI + ["extract", "--cases", str(cohort / "cases"), "--out", str(tmp_path / "t.csv"),
                              "--scheduler", "local:0"], capture_output=True, encoding="utf-8", timeout=120)
    assert p.returncode == 2 and "local:N needs a number of workers" in p.stderr


@pytest.mark.slow
def test_batch_script_on_local2(cohort, tmp_path, bundles_at_spacing):
    """The batch script (slicer-core, real MRML in each worker process) with --scheduler local:2: the broken case
    recorded and the others ok with their probabilities, a Parquet row per case, a re-run skips all ok cases.
    (Its sequential run is test_mrml's batch test; a sequential run here too would double this test's time.)"""
    pytest.importorskip("slicer", reason="the batch script needs slicer-core (the 'slicer' extra)")
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "GliomaRadiogenomics" / "Batch" / "GliomaBatch.py"
    bundles = [a for b in bundles_at_spacing(3.0) for a in ("--bundle", b)]
    out = tmp_path / "dask"
    cmd = [sys.executable, str(script), "--input", str(cohort / "cases"), "--output", str(out), "--spacing", "3",
           "--brain-mask", "threshold", "--no-register", "--backend", "hyperintensity", "--scheduler", "local:2"
           ] + bundles
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr[-3000:]  # the broken case failed, the others ran
    res = pd.read_csv(out / "batch_results.csv")
    assert res.case.tolist() == ["broken-case", "synth-0000", "synth-0001"]  # the cohort's order, each once
    assert res.status.tolist() == ["failed", "ok", "ok"] and "not gzip-compressed" in res.error[0]
    assert res["p_IDH"].dropna().between(0, 1).all() and res.loc[1:, "volume_WT_ml"].gt(0).all()
    for c in ("synth-0000", "synth-0001"):
        assert (out / c / "predictions.json").exists() and (out / c / "segmentation.nii.gz").exists()
    assert "2/3 done, 1 failed" in r.stderr and "Dask dashboard:" in r.stderr
    pq = read_parquet_dataset(out / "batch_results.parquet", res.case.tolist())
    assert pq.case.tolist() == res.case.tolist() and pq.status.tolist() == res.status.tolist()
    np.testing.assert_allclose(pq.p_IDH.to_numpy(float), res.p_IDH.to_numpy(float), rtol=0, atol=1e-12)
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r2.stdout.count('"case"') == 1 and "2 already done (skipped)" in r2.stderr  # only the broken one again
