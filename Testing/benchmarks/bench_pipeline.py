#!/usr/bin/env python
"""Per-stage time and peak memory of the whole pipeline on the SYNTHETIC demo case (full resolution).

Usage: python Testing/benchmarks/bench_pipeline.py [--downsample 1] [--workers N]
Last line: demo_total_seconds=<s> preprocess=<s> segmentation=<s> features=<s> peak_rss_mb=<m>
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "GliomaRadiogenomics"))

from GliomaRadiogenomicsLib.case import load_case_folder  # noqa: E402
from GliomaRadiogenomicsLib.pipeline import PipelineOptions, run_case  # noqa: E402
from GliomaRadiogenomicsLib.synthetic import make_demo_case  # noqa: E402


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--downsample", type=int, default=1)
    ap.add_argument("--workers", type=int, default=None)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        make_demo_case(downsample=a.downsample).save(Path(tmp) / "case")
        t_case = time.perf_counter() - t
        case = load_case_folder(Path(tmp) / "case")
        t = time.perf_counter()
        doc = run_case(case, Path(tmp) / "out", PipelineOptions(feature_workers=a.workers))
        total = time.perf_counter() - t
    ts = doc["timings_s"]
    print(f"synthetic case generation: {t_case:.1f} s")
    for k, v in ts.items():
        print(f"{k:>16}: {v:.1f} s")
    print(f"demo_total_seconds={total + t_case:.1f} preprocess={ts['preprocess_s']:.1f} "
          f"segmentation={ts['segmentation_s']:.1f} features={ts['features_s']:.1f} peak_rss_mb={peak_rss_mb():.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
