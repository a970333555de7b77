#!/usr/bin/env python
"""What a run pays for a bundle trained on another preset (the shipped ATRX model: Liu 2024 on liu2024, beside the
run's wang2025 features): the full liu2024 extraction against only the columns the shipped bundles read
(``extract_features(columns=...)``, what ``pipeline.add_bundle_presets`` does), on one preprocessed case and its
segmentation, and whether both give the same values.

    python Testing/benchmarks/bench_bundle_presets.py [--case-dir DIR] [--workers 2] [--spacing 1]

Default case: the TCGA-LGG patient TCGA-CS-4942 (../shared/data/cohorts/tcga-lgg; FLAIR + T1 + T1c), segmented with
its manual mask plus --roi-subregions (the liu2024 regions of the training); without ../shared, the synthetic demo
case (built in a temporary folder). Last line: bundle_presets full_s=.. columns_s=.. n_columns=.. of=.. equal=..
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))

from GliomaRadiogenomicsLib.bundle import bundle_preset, load_default_bundles  # noqa: E402
from GliomaRadiogenomicsLib.case import load_case_folder  # noqa: E402
from GliomaRadiogenomicsLib.features import extract_features, load_preset  # noqa: E402
from GliomaRadiogenomicsLib.io import read_image  # noqa: E402
from GliomaRadiogenomicsLib.pipeline import PipelineOptions, segment_case  # noqa: E402
from GliomaRadiogenomicsLib.preprocess import PreprocessOptions  # noqa: E402

CASE = ROOT.parent / "shared" / "data" / "cohorts" / "tcga-lgg" / "cases" / "TCGA-CS-4942"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case-dir", default=str(CASE) if CASE.is_dir() else None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--spacing", type=float, default=1.0)
    a = ap.parse_args(argv)
    bundles = [b for b in load_default_bundles() if bundle_preset(b) == "liu2024"]
    columns = [f for b in bundles for f in b.features]
    print(f"shipped bundles on liu2024: {', '.join(b.name for b in bundles) or 'none'}; "
          f"{len(columns)} columns read", flush=True)
    if a.case_dir:
        case = load_case_folder(a.case_dir)
    else:
        from GliomaRadiogenomicsLib.synthetic import make_demo_case
        folder = Path(tempfile.mkdtemp()) / "demo"
        make_demo_case().save(folder)
        case = load_case_folder(folder)
    opt = PipelineOptions(PreprocessOptions(spacing=a.spacing), roi_subregions=bool(case.mask_path))
    label = read_image(case.mask_path, label=True) if case.mask_path else None
    t = time.perf_counter()
    seg = segment_case(case, opt, label=label, label_source="case-folder mask" if label is not None else "")
    print(f"{case.case_id}: preprocessing + segmentation {time.perf_counter() - t:.1f} s", flush=True)
    preset = load_preset("liu2024")
    t = time.perf_counter()
    full = extract_features(seg.pre, seg.label, preset, a.workers)
    full_s = time.perf_counter() - t
    t = time.perf_counter()
    sub = extract_features(seg.pre, seg.label, preset, a.workers, columns=columns)
    columns_s = time.perf_counter() - t
    equal = all(np.array_equal(full.values[k], v, equal_nan=True) for k, v in sub.values.items())
    print(f"full liu2024 extraction: {len(full.values)} values in {full_s:.1f} s; the bundles' columns only: "
          f"{len(sub.values)} values in {columns_s:.1f} s ({sub.provenance.get('columns_subset')})")
    print(f"bundle_presets full_s={full_s:.1f} columns_s={columns_s:.1f} n_columns={len(sub.values)} "
          f"of={len(full.values)} equal={equal}")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
