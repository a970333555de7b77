#!/usr/bin/env python
"""Refresh the file lists (name, bytes, SHA-256) and size_bytes of the bundled models in
GliomaRadiogenomicsLib/resources/models/segmentation_models.json from their weight folders, then validate the
registry against its schema. Run it after retraining or replacing bundled weights (e.g. `make lgg-unet`, or after
copying the BraTS 2017 cascade into resources/weights/brats17_cascade/).

- a model with a ``manifest`` in its folder (lgg-unet2d: manifest.json ``folds``; brats17: SHA256SUMS): the files
  are the manifest's, each file present is checked against it and its size read;
- a model without one: each listed file present in the folder is hashed; files absent keep their entry (the
  registry may describe weights not copied yet) and are reported.

    python scripts/update_model_registry.py            # rewrite the registry
    python scripts/update_model_registry.py --check    # exit 1 when the registry is not up to date
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "GliomaRadiogenomics"))

from GliomaRadiogenomicsLib import registry  # noqa: E402


def refreshed(doc: dict) -> tuple:
    doc = json.loads(json.dumps(doc))
    notes = []
    for m in doc["models"]:
        w = m["weights"]
        if w["source"] != "bundled":
            continue
        folder = registry.PACKAGE_DIR / w["path"]
        manifest = folder / w["manifest"] if w.get("manifest") else None
        if manifest is not None and manifest.is_file():
            sums = registry.read_manifest_sums(manifest)
            old = {f["name"]: f for f in w["files"]}
            w["files"] = [{"name": n, "bytes": s["bytes"] or old.get(n, {}).get("bytes") or 1, "sha256": s["sha256"]}
                          for n, s in sums.items()]
        elif manifest is not None:
            notes.append(f"{m['id']}: {manifest} absent (entries kept)")
        absent = []
        for f in w["files"]:
            p = folder / f["name"]
            if not p.is_file():
                absent.append(f["name"])
                continue
            size, digest = p.stat().st_size, registry.sha256_file(p)
            if manifest is not None and digest != f["sha256"]:
                raise SystemExit(f"{p}: SHA-256 {digest} does not match its manifest {manifest}; fix the manifest "
                                 "first")
            f.update(bytes=size, sha256=digest)
        if absent:
            notes.append(f"{m['id']}: {len(absent)} file(s) absent from {folder} (entries kept): {', '.join(absent)}")
        m["size_bytes"] = sum(f["bytes"] for f in w["files"])
    return doc, notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check; exit 1 when an update is needed")
    args = ap.parse_args(argv)
    f = registry.REGISTRY_FILE
    old = json.loads(f.read_text(encoding="utf-8"))
    new, notes = refreshed(old)
    registry.validate(new, f)
    for n in notes:
        print(f"note: {n}")
    text = registry.dumps_registry(new)
    if text == f.read_text(encoding="utf-8"):
        print(f"{f}: up to date")
        return 0
    if args.check:
        print(f"{f}: out of date (run scripts/update_model_registry.py)")
        return 1
    f.write_text(text, encoding="utf-8")
    print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
