#!/usr/bin/env python
"""Training arrays for the lgg-unet2d network from the TCGA-LGG cohort (../shared/data/cohorts/tcga-lgg).

Every case's FLAIR goes through ``unet2d.network_input`` (the function the product uses at inference) and its manual
FLAIR-abnormality mask through ``unet2d.mask_to_network_grid``; the result is one compressed file (never committed:
the default output is under build/, which git ignores):

    lgg_unet_x.u8.xz   uint8 [n_slices, 240, 240] raw, xz-compressed: normalised FLAIR * QUANT
                       (x / QUANT is what the network sees); xz keeps it small enough to travel (~46 MiB)
    lgg_unet_data.npz  y (np.packbits of the 0/1 masks on the network grid), shape, case (int16 [n_slices], index
                       into case_ids), case_ids

    python scripts/prepare_lgg_unet_data.py [--cohort ../shared/data/cohorts/tcga-lgg] [--out build/lgg-unet-data]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))

from GliomaRadiogenomicsLib import unet2d  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort", default=str(ROOT.parent / "shared" / "data" / "cohorts" / "tcga-lgg"))
    ap.add_argument("--out", default=str(ROOT / "build" / "lgg-unet-data"))
    a = ap.parse_args(argv)
    import SimpleITK as sitk

    cases = sorted(p for p in (Path(a.cohort) / "cases").iterdir() if (p / "flair_abnormality.nii.gz").is_file())
    if not cases:
        raise SystemExit(f"{a.cohort}: no cases/<id>/flair_abnormality.nii.gz found")
    xs, ys, idx, ids, facts = [], [], [], [], {}
    t0 = time.perf_counter()
    for i, c in enumerate(cases):
        flair = sitk.ReadImage(str(c / "flair.nii.gz"))
        mask = sitk.ReadImage(str(c / "flair_abnormality.nii.gz"))
        x, grid, f = unet2d.network_input(flair)
        y = unet2d.mask_to_network_grid(mask, grid)
        xs.append(np.round(x * unet2d.QUANT).astype(np.uint8))
        ys.append(y)
        idx.append(np.full(len(x), i, np.int16))
        ids.append(c.name)
        facts[c.name] = {"slices": int(len(x)), "mask_pixels": int(y.sum()), "scale": f["scale"]}
        print(f"{c.name}: {len(x)} slices, mask {int(y.sum())} px, scale {f['scale']:.0f}", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    import lzma
    x = np.ascontiguousarray(np.concatenate(xs))
    y = np.concatenate(ys)
    tmp = out / "lgg_unet_x.u8.xz.tmp"
    tmp.write_bytes(lzma.compress(x.tobytes(), preset=6))
    tmp.replace(out / "lgg_unet_x.u8.xz")
    tmp = out / "lgg_unet_data.tmp.npz"
    np.savez_compressed(tmp, y=np.packbits(y), shape=np.array(x.shape), case=np.concatenate(idx),
                        case_ids=np.array(ids))
    tmp.replace(out / "lgg_unet_data.npz")
    meta = {"cohort": str(a.cohort), "n_cases": len(ids), "n_slices": int(sum(len(v) for v in xs)),
            "grid": unet2d.grid_facts(), "quant": unet2d.QUANT, "cases": facts}
    (out / "lgg_unet_data.json").write_text(json.dumps(meta, indent=1))
    size = sum((out / f).stat().st_size for f in ("lgg_unet_data.npz", "lgg_unet_x.u8.xz")) / 2 ** 20
    print(f"{len(ids)} cases, {meta['n_slices']} slices -> {out} ({size:.1f} MiB) "
          f"in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
