#!/usr/bin/env python
"""Cohort throughput (issue 16): cases per hour of `extract` run sequentially, with --jobs N (local processes, as
before Dask), with --scheduler local:N (a LocalCluster started by extract) and on a LocalCluster of N single-threaded
worker processes reached through its Client (as a remote scheduler would be), plus the peak memory of each worker and
the per-stage time of one case. Each mode starts from an empty output folder (no cache).

Usage: python Testing/benchmarks/bench_cohort.py [--cases ../shared/data/cohorts/tcga-lgg/cases] [--n 4]
       [--workers 2] [--modes sequential,jobs,local,cluster] [--no-case-roi] [--preset wang2025]
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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def one_case_stages(folder: Path, opt: PipelineOptions) -> dict:
    from GliomaRadiogenomicsLib.case import load_case_folder
    from GliomaRadiogenomicsLib.pipeline import analyze_case, case_roi
    t = time.perf_counter()
    case = load_case_folder(folder)
    load_s = time.perf_counter() - t
    label, source = case_roi(case) if opt.case_roi else (None, "")
    analysis = analyze_case(case, opt, label=label, label_source=source)
    return {"load": load_s, **analysis.timings, "total": time.perf_counter() - t}


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
    a = ap.parse_args(argv)
    src = Path(a.cases)
    if not src.is_dir():
        print(f"cohort not found: {src} (../shared/data/cohorts/tcga-lgg)", file=sys.stderr)
        return 2
    folders = find_case_folders(src)[:a.n]
    opt = PipelineOptions(preset=a.preset, feature_workers=1, location=not a.no_location)
    opt.case_roi = not a.no_case_roi
    W = a.workers
    work = Path(tempfile.mkdtemp(prefix="bench-cohort-"))
    try:
        cohort = work / "cases"
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
            rate = s["n_ok"] / wall * 3600 if wall > 0 else 0.0
            results[mode] = rate
            extra = ""
            if peak:
                extra = " peak_rss_mb_per_worker=" + ",".join(f"{v:.0f}" for v in peak.values())
            print(f"{mode:10s} ok={s['n_ok']} failed={s['n_failed']} wall_s={wall:.1f} cases_per_hour={rate:.1f}"
                  f" s_per_case={wall / max(1, s['n_ok']):.1f}{extra}", flush=True)
        if a.stages and folders:
            st = one_case_stages(folders[0], opt)
            print("stages of " + folders[0].name + ": " + " ".join(f"{k}={v:.1f}s" for k, v in st.items())
                  + f" peak_rss_mb={_worker_peak_rss_mb():.0f}", flush=True)
        best = max(results, key=results.get) if results else None
        print(f"cohort_cases_per_hour={results.get(best, 0.0):.1f} workers={W if best != 'sequential' else 1}"
              f" mode={best}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
