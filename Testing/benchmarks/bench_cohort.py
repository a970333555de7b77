#!/usr/bin/env python
"""Cohort throughput (issue 16): cases per hour of `extract` run sequentially, with --jobs N (local processes, as
before Dask), with --scheduler local:N (a LocalCluster started by extract) and on a LocalCluster of N single-threaded
worker processes reached through its Client (as a remote scheduler would be), plus the peak memory of each worker and
the per-stage time of one case. Each mode starts from an empty output folder (no cache), except with --keep DIR: a rerun
into the same DIR resumes each mode (cases done before with the same options are skipped, shown as cached=, and left
out of the rate).

Usage: python Testing/benchmarks/bench_cohort.py [--cases ../shared/data/cohorts/tcga-lgg/cases] [--n 4]
       [--workers 2] [--modes sequential,jobs,local,cluster] [--no-case-roi] [--preset wang2025]
       [--compare TABLE] [--whole-case K] [--keep DIR]
Every mode's table is compared with the sequential mode's of the same run (when it ran first).
--compare TABLE: each mode's table must equal TABLE (same rows, same columns, values to 1e-12), e.g. the sequential
table of `make real-bundles` (build/tcga-lgg/features.csv) against a 64-case `--modes local` run.
--whole-case K: files to probabilities as `run --case-dir` does it (default options and bundles: automatic
segmentation, location / VASARI when a bundle uses them), on K cases spread over the cohort, one after the other in
this process; prints seconds per case and whole_case_median_s=..
Default options are those of `make real-bundles` (--case-roi --location, wang2025). --n limits the cases (the first
n by name): all 64 take hours on 2 cores.
Last line: cohort_cases_per_hour=<best> workers=<N>
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))

from GliomaRadiogenomicsLib.cohort import extract_cohort, find_case_folders  # noqa: E402
from GliomaRadiogenomicsLib.pipeline import PipelineOptions  # noqa: E402


def _worker_peak_rss_mb() -> float:
    """Peak memory of this process plus that of its largest finished subprocess (the deepbet brain-mask and
    segmentation networks run in worker subprocesses, worker.run_worker, while this process holds the case's
    images): an upper bound of what the worker needed at once."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024.0


def one_case_stages(folder: Path, opt: PipelineOptions) -> dict:
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.pipeline import analyze_case, case_roi
    t = time.perf_counter()
    case = load_case_folder(folder)
    load_s = time.perf_counter() - t
    label, source = case_roi(case) if opt.case_roi else (None, "")
    analysis = analyze_case(case, opt, label=label, label_source=source)
    return {"load": load_s, **analysis.timings, "total": time.perf_counter() - t}


def compare_tables(table: Path, reference: Path) -> str:
    """The reference's rows for the benchmark's cases (each once), the same columns, values equal to 1e-12 (relative;
    NaN = NaN; text columns identical)."""
    import numpy as np
    import pandas as pd
    got = pd.read_csv(table).set_index("case_id")
    ref = pd.read_csv(reference).set_index("case_id")
    if not set(got.index) <= set(ref.index) or got.index.has_duplicates:
        return f"table_equal=False rows not in the reference (or repeated): " \
               f"{sorted(set(got.index) - set(ref.index))[:5]}"
    ref = ref.loc[[i for i in ref.index if i in set(got.index)]]  # the benchmark's cases (all 64 for the full run)
    if set(got.columns) != set(ref.columns):
        return f"table_equal=False columns differ: {sorted(set(got.columns) ^ set(ref.columns))[:5]}"
    got = got.loc[ref.index, ref.columns]
    num = [c for c in ref.columns if pd.api.types.is_numeric_dtype(ref[c]) and pd.api.types.is_numeric_dtype(got[c])]
    other = [c for c in ref.columns if c not in num]
    g, r = got[num].to_numpy(float), ref[num].to_numpy(float)
    both_nan = np.isnan(g) & np.isnan(r)
    rel = np.where(both_nan, 0.0, np.abs(g - r) / np.maximum(np.abs(r), 1e-300))
    rel = np.where((np.abs(r) < 1e-12) & ~both_nan, np.abs(g - r), rel)
    worst = float(np.nanmax(rel)) if rel.size else 0.0
    if np.isnan(rel).any():
        worst = float("inf")
    text_ok = all(got[c].fillna("").astype(str).equals(ref[c].fillna("").astype(str)) for c in other)
    ok = worst <= 1e-12 and text_ok
    return (f"table_equal={ok} rows={len(ref)} columns={len(ref.columns)} max_rel_diff={worst:.2e}"
            f"{'' if text_ok else ' (text columns differ)'}")


def whole_case(folders, k: int) -> None:
    """Files -> probabilities (evaluate_case: the run path without writing files) on k cases spread over the list."""
    import statistics
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.pipeline import PipelineOptions, evaluate_case
    step = max(1, len(folders) // k)
    chosen = folders[::step][:k]
    secs = []
    for f in chosen:
        t = time.perf_counter()
        case = load_case_folder(f)
        _, doc = evaluate_case(case, PipelineOptions())
        secs.append(time.perf_counter() - t)
        tim = " ".join(f"{k_}={v:.1f}" for k_, v in doc.get("timings_s", {}).items())
        print(f"whole case {f.name}: {secs[-1]:.1f} s ({len(case.images)} sequences; {tim})", flush=True)
    print(f"whole_case_median_s={statistics.median(secs):.1f} min={min(secs):.1f} max={max(secs):.1f} n={len(secs)}",
          flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=str(ROOT.parent / "shared" / "data" / "cohorts" / "tcga-lgg" / "cases"))
    ap.add_argument("--n", type=int, default=4, help="first n cases (default 4)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--modes", default="sequential,jobs,local,cluster")
    ap.add_argument("--no-case-roi", action="store_true", help="segment automatically instead of the manual ROI")
    ap.add_argument("--no-location", action="store_true")
    ap.add_argument("--preset", default="wang2025")
    ap.add_argument("--stages", action="store_true", help="also time the stages of one case in this process")
    ap.add_argument("--compare", help="reference feature table (CSV) that every mode's table must equal (1e-12)")
    ap.add_argument("--whole-case", type=int, default=0, metavar="K",
                    help="time files -> probabilities (the run path) on K cases spread over the cohort")
    ap.add_argument("--keep", help="write the tables here (kept) instead of a temporary folder")
    a = ap.parse_args(argv)
    src = Path(a.cases)
    if not src.is_dir():
        print(f"cohort not found: {src} (../shared/data/cohorts/tcga-lgg)", file=sys.stderr)
        return 2
    folders = find_case_folders(src)[:a.n]
    opt = PipelineOptions(preset=a.preset, feature_workers=1, location=not a.no_location)
    opt.case_roi = not a.no_case_roi
    W = a.workers
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench-cohort-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        cohort = work / "cases"
        shutil.rmtree(cohort, ignore_errors=True)
        cohort.mkdir()
        for f in folders:  # the subset, without copying the images
            (cohort / f.name).symlink_to(f.resolve(), target_is_directory=True)
        print(f"{len(folders)} case(s) of {src}; {W} worker(s); case_roi={opt.case_roi} location={opt.location} "
              f"preset={opt.preset}", flush=True)
        results = {}
        for mode in [m.strip() for m in a.modes.split(",") if m.strip()]:
            out = work / mode / "features.csv"
            t = time.perf_counter()
            peak = None
            if mode == "sequential":
                s = extract_cohort(cohort, out, opt, jobs=1)
            elif mode == "jobs":
                s = extract_cohort(cohort, out, opt, jobs=W)
            elif mode == "local":
                s = extract_cohort(cohort, out, opt, scheduler=f"local:{W}")
            elif mode == "cluster":
                from distributed import Client, LocalCluster
                with LocalCluster(n_workers=W, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as cluster, Client(cluster) as client:
                    t = time.perf_counter()  # the cluster's start-up is not per-case cost
                    s = extract_cohort(cohort, out, opt, scheduler=client)
                    peak = client.run(_worker_peak_rss_mb)
            else:
                print(f"unknown mode {mode}", file=sys.stderr)
                return 2
            wall = time.perf_counter() - t
            done = s["n_ok"] - s.get("n_cached", 0)  # a --keep rerun resumes: cached cases cost nothing, not counted
            rate = done / wall * 3600 if wall > 0 else 0.0
            results[mode] = rate
            extra = ""
            if peak:
                extra = " peak_rss_mb_per_worker=" + ",".join(f"{v:.0f}" for v in peak.values())
            cached = f" cached={s['n_cached']} (skipped: done before in {work / mode})" if s.get("n_cached") else ""
            print(f"{mode:10s} ok={s['n_ok']} failed={s['n_failed']}{cached} wall_s={wall:.1f}"
                  f" cases_per_hour={rate:.1f} s_per_case={wall / max(1, done):.1f}{extra}", flush=True)
            if a.compare:
                print(f"{mode:10s} " + compare_tables(out, Path(a.compare)), flush=True)
            if mode != "sequential" and (work / "sequential" / "features.csv").is_file():
                print(f"{mode:10s} vs sequential: " + compare_tables(out, work / "sequential" / "features.csv"),
                      flush=True)
        if a.stages and folders:
            st = one_case_stages(folders[0], opt)
            print("stages of " + folders[0].name + ": " + " ".join(f"{k}={v:.1f}s" for k, v in st.items())
                  + f" peak_rss_mb={_worker_peak_rss_mb():.0f}", flush=True)
        if a.whole_case:
            whole_case(find_case_folders(src), a.whole_case)
        best = max(results, key=results.get) if results else None
        print(f"cohort_cases_per_hour={results.get(best, 0.0):.1f} workers={W if best != 'sequential' else 1}"
              f" mode={best}")
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
