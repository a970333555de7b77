"""Tumor segmentation backends behind one interface.

``SegmentationBackend.segment(pre) -> sitk.Image`` returns a BraTS label map on the working grid
(0 background, 1 necrosis, 2 edema / non-enhancing T2-FLAIR hyperintensity, 3 enhancing tumor).

The default backend (``"auto"``) uses ``"brats17"`` (below) when the case has FLAIR, T1, T1c and T2 and its weights
and torch are installed; else ``"lgg-unet2d"`` (a 2D U-Net on FLAIR trained on 64 real TCGA-LGG patients, unet2d.py;
whole tumor, with the weight-free necrosis / enhancement labels inside it) when its weights are installed, torch is
importable and the case has a FLAIR, and otherwise ``"hyperintensity"``; the choice and its reason are
recorded in ``pre.steps``. ``"hyperintensity"`` needs no weights and runs in seconds on a CPU: robust z-scores of
FLAIR and T2 against normal brain, hysteresis region growing from the most abnormal voxels, T1c-minus-T1 enhancement
inside the lesion, necrosis as the non-enhancing core enclosed by enhancement. It is a transparent baseline, not a
deep network. ``"brats17"`` is the BraTS 2017 cascade of Wang et al. (brats17.py: our torch port of the published
weights; FLAIR + T1 + T1c + T2, whole tumor / core / enhancing; falls back to ``"hyperintensity"`` when a sequence
is missing). Review any automatic output (Segment Editor) before trusting features computed from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Type

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from .intensity import robust_z
from .io import InputError
from .progress import Progress, null_progress

LABELS = {1: "necrosis", 2: "edema", 3: "enhancing"}


class SegmentationBackend:
    name = "base"
    description = ""
    needs_weights = False

    def segment(self, pre, progress: Progress = null_progress) -> sitk.Image:  # pragma: no cover - interface
        raise NotImplementedError

    def start_early(self, case, preprocess_options) -> bool:
        """Start what needs only the case as loaded while the pipeline preprocesses it (False: nothing started)."""
        return False

    def cancel_early(self) -> None:
        """Stop what ``start_early`` started (the pipeline calls it when preprocessing fails or is cancelled)."""


def _components(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[lab]


def _fill_holes_2d(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    for k in np.where(mask.any(axis=(1, 2)))[0]:
        out[k] = ndi.binary_fill_holes(mask[k])
    return out


def _hull_2d(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Per axial slice, the convex hull of each 3D connected component of ``mask`` (ring enhancement -> core)."""
    from skimage.morphology import convex_hull_image

    out = np.zeros_like(mask, dtype=bool)
    lab, n = ndi.label(mask)
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        comp = lab[sl] == i
        if comp.sum() < min_voxels:
            continue
        sub = out[sl]
        for k in range(comp.shape[0]):
            if comp[k].sum() >= 3:
                try:
                    sub[k] |= convex_hull_image(comp[k])
                except Exception:  # degenerate (collinear) slices
                    sub[k] |= comp[k]
    return out


def _ball(radius_vox: int) -> np.ndarray:
    r = max(1, int(radius_vox))
    z, y, x = np.ogrid[-r:r + 1, -r:r + 1, -r:r + 1]
    return (x * x + y * y + z * z) <= r * r


@dataclass
class HyperintensityParams:
    seed_z: float = 4.0          # FLAIR robust z of the most abnormal voxels (seeds)
    grow_z: float = 2.3          # FLAIR robust z reached by region growing (hysteresis)
    t2_min_z: float = 0.5        # T2 must be elevated too (excludes FLAIR-only artefacts)
    single_sequence_extra_z: float = 0.7  # FLAIR (or T2) alone: stricter growth threshold
    smooth_mm: float = 1.0
    enh_min: float = 0.25        # (T1c - T1) difference, in units of normal-brain T1c median
    enh_t1c_z: float = 2.0       # T1c robust z for enhancing voxels
    close_mm: float = 3.0        # closing of the enhancing rim before filling the necrotic core
    min_lesion_ml: float = 1.0
    min_enh_ml: float = 0.05


def add_weight_free_core(label: np.ndarray, pre) -> int:
    """The one rule for necrosis / enhancing labels inside a whole tumor drawn by something else (the lgg-unet2d
    network's outline, a user's binary mask with ``--roi-subregions``): the weight-free backend runs on ``pre`` (T1c
    needed) and its labels 1 / 3 are written into ``label`` (numpy, working grid, > 0 = whole tumor) where they fall
    inside the outline; the outline never changes. Returns the number of voxels relabelled. The backend looks for
    enhancement within 3 mm of its own hyperintense lesion, so enhancement inside the outline but away from the
    lesion it finds (or in a case where it finds none) is not labelled."""
    wt = label > 0
    h = sitk.GetArrayFromImage(HyperintensityBackend().segment(pre))
    inside = wt & np.isin(h, (1, 3))
    label[inside] = h[inside]
    return int(inside.sum())


class HyperintensityBackend(SegmentationBackend):
    name = "hyperintensity"
    description = ("Default, weight-free: FLAIR/T2 hyperintensity against normal brain (hysteresis), "
                   "T1c-T1 enhancement, enclosed non-enhancing core as necrosis")

    def __init__(self, params: HyperintensityParams | None = None):
        self.params = params or HyperintensityParams()

    def segment(self, pre, progress: Progress = null_progress) -> sitk.Image:
        p = self.params
        sp = float(pre.grid.GetSpacing()[0])
        vox_ml = float(np.prod(pre.grid.GetSpacing())) / 1000.0
        brain = sitk.GetArrayFromImage(pre.brain_mask) > 0
        if brain.sum() < 1000:
            raise RuntimeError("brain mask too small for tumor segmentation")
        core_brain = ndi.binary_erosion(brain, iterations=max(1, int(round(3 / sp))))
        if core_brain.sum() < 1000:
            core_brain = brain

        def arr(seq):
            a = pre.array(seq).astype(np.float32)  # noqa: E306
            if p.smooth_mm > 0:
                a = ndi.gaussian_filter(a, p.smooth_mm / sp)
            return a

        have = set(pre.images)
        if not have & {"flair", "t2"}:
            if "t1c" not in have:
                raise InputError("the default backend needs FLAIR or T2 (whole tumor), or T1c (tumor core)")
            return self._to_image(self._t1c_only(arr("t1c"), brain, core_brain, sp, vox_ml, progress), pre)
        progress.update(0.1, "segmentation: FLAIR / T2 hyperintensity")
        hyper_seq = "flair" if "flair" in have else "t2"
        fz = robust_z(arr(hyper_seq), core_brain)
        tz = robust_z(arr("t2"), core_brain) if ("t2" in have and hyper_seq == "flair") else None
        t2_ok = (tz > p.t2_min_z) if tz is not None else np.ones(brain.shape, bool)
        # without a second sequence to confirm the hyperintensity, grow less far (fewer normal-tissue false positives)
        grow_z = p.grow_z if tz is not None else p.grow_z + p.single_sequence_extra_z
        hyper = (fz > grow_z) & t2_ok & brain
        seeds = (fz > p.seed_z) & t2_ok & core_brain
        lab, n = ndi.label(hyper)
        if n == 0 or not seeds.any():
            progress.update(1.0, "segmentation: no abnormal hyperintensity found")
            return self._to_image(np.zeros(brain.shape, np.uint8), pre)
        seeded = np.unique(lab[seeds & hyper])
        seeded = seeded[seeded > 0]
        sizes = np.bincount(lab.ravel())
        # the lesion: the largest seeded component plus seeded components at least 20% of its size
        big = seeded[sizes[seeded] >= max(p.min_lesion_ml / vox_ml, 0.2 * sizes[seeded].max())]
        wt = np.isin(lab, big)
        wt = ndi.binary_opening(wt, structure=_ball(1))
        wt = _components(wt, int(p.min_lesion_ml / vox_ml))

        et = np.zeros_like(wt)
        ncr = np.zeros_like(wt)
        if "t1c" in have:
            progress.update(0.5, "segmentation: enhancement (T1c - T1)" if "t1" in have else "segmentation: T1c enhancement")
            t1c = arr("t1c")
            t1cz = robust_z(t1c, core_brain)
            near = ndi.binary_dilation(wt, structure=_ball(int(round(3 / sp)))) & brain
            if "t1" in have:
                t1 = arr("t1")
                ref_t1 = float(np.median(t1[core_brain])) or 1.0
                ref_t1c = float(np.median(t1c[core_brain])) or 1.0
                enh = t1c / ref_t1c - t1 / ref_t1
                et = (enh > p.enh_min) & (t1cz > p.enh_t1c_z) & near
            else:  # no pre-contrast T1: stricter T1c threshold alone
                et = (t1cz > p.enh_t1c_z + 1.0) & near
            et = _components(et, max(2, int(p.min_enh_ml / vox_ml)))
            progress.update(0.75, "segmentation: necrosis and holes")
            ncr = self._enclosed_core(et, t1cz, brain, sp, vox_ml)
        wt = wt | et | ncr
        wt = ndi.binary_fill_holes(wt) & brain
        label = np.zeros(brain.shape, np.uint8)
        label[wt] = 2
        label[ncr] = 1
        label[et] = 3
        progress.update(1.0, "segmentation done")
        return self._to_image(label, pre)

    def _enclosed_core(self, et, t1cz, brain, sp, vox_ml):
        """Necrosis: the non-enhancing core enclosed by enhancement, darker than normal brain on T1c."""
        p = self.params
        closed = ndi.binary_closing(et, structure=_ball(int(round(p.close_mm / sp))))
        enclosed = (ndi.binary_fill_holes(closed) | _fill_holes_2d(closed) | _hull_2d(et, int(p.min_enh_ml / vox_ml)))
        ncr = enclosed & ~et & brain & (t1cz < 0.0)
        return _components(ncr, 3)

    def _t1c_only(self, t1c, brain, core_brain, sp, vox_ml, progress):
        """T1c alone (no FLAIR / T2): tumor core = the largest enhancing component + the necrosis it encloses."""
        p = self.params
        progress.update(0.3, "segmentation: T1c only (tumor core)")
        t1cz = robust_z(t1c, core_brain)
        et = (t1cz > p.enh_t1c_z + 1.0) & ndi.binary_erosion(brain, iterations=max(1, int(round(4 / sp))))
        et = ndi.binary_opening(et, structure=_ball(1))
        lab, n = ndi.label(et)
        label = np.zeros(brain.shape, np.uint8)
        if n == 0:
            return label
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        et = lab == int(np.argmax(sizes))
        ncr = self._enclosed_core(et, t1cz, brain, sp, vox_ml)
        label[ncr] = 1
        label[et] = 3
        progress.update(1.0, "segmentation done (T1c only: no edema estimate)")
        return label

    @staticmethod
    def _to_image(label: np.ndarray, pre) -> sitk.Image:
        img = sitk.GetImageFromArray(label.astype(np.uint8))
        img.CopyInformation(pre.grid)
        return img


LABEL_NAME_MAP = {  # dataset.json label names -> BraTS labels of this project
    1: ("necrosis", "ncr", "necrotic", "netc", "ncr_net", "non-enhancing tumor core", "tumor core"),
    2: ("edema", "ed", "snfh", "peritumoral edema", "surrounding non-enhancing flair hyperintensity"),
    3: ("enhancing", "et", "enhancing tumor", "enhancing_tumor"),
}
REGION_NAME_MAP = {  # region-based dataset.json: region names -> the BraTS region they are
    "WT": ("whole tumor", "whole_tumor", "whole tumour", "wt", "complete tumor", "tumor"),
    "TC": ("tumor core", "tumor_core", "tumour core", "tc", "core"),
    "ET": ("enhancing tumor", "enhancing_tumor", "enhancing tumour", "et", "enhancing"),
}


def nnunet_label_map(dataset: dict, where: str = "dataset.json") -> Dict[int, int]:
    """nnU-Net output value -> BraTS label of this project (1 necrosis, 2 edema, 3 enhancing); values not in the
    map become 0.

    Plain labels: by their names (numbers kept when no name is known and the model uses the 1/2/3 convention).
    Region-based models (labels given as lists, nnU-Net v2's ``regions_class_order``): nnU-Net paints region i with
    ``regions_class_order[i]`` in order, later regions over earlier ones, so a voxel of that value lies in region i
    and in no later region. Each region is recognised as whole tumor / tumor core / enhancing tumor by its name (or,
    without names, by nesting: largest = WT), which tells the compartment of each training label (in ET: enhancing;
    in TC only: necrosis; in WT only: edema); the painted value maps to the compartment of the labels of region i
    that no later region holds. nnU-Net's BraTS 2021 conversion (edema 1, necrosis 2, enhancing 3; WT (1, 2, 3),
    TC (2, 3), ET (3); order 1, 2, 3) thus gives 1 -> edema, 2 -> necrosis, 3 -> enhancing. A dataset.json that
    cannot be mapped is an InputError naming it (the model folder is the user's input)."""
    labels = dict(dataset.get("labels") or {})
    regions = [(str(name), tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value])))
               for name, value in labels.items() if name != "ignore"]
    regions = [(n, r) for n, r in regions if set(r) != {0}]
    if not any(len(set(r)) > 1 for _, r in regions):  # plain labels (as nnU-Net's LabelManager decides)
        mapping = {}
        for name, value in labels.items():
            n = str(name).lower().strip()
            for brats, names in LABEL_NAME_MAP.items():
                if n in names and not isinstance(value, (list, tuple)):
                    mapping[int(value)] = brats
        return mapping or {1: 1, 2: 2, 3: 3}
    order = dataset.get("regions_class_order")
    if not order or len(order) != len(regions):
        raise InputError(f"{where}: region-based labels need regions_class_order with one value per region "
                         f"({len(regions)} regions)")
    role = {}
    for i, (name, _) in enumerate(regions):
        n = name.lower().strip()
        hit = [k for k, names in REGION_NAME_MAP.items() if n in names]
        if hit:
            role[hit[0]] = i
    if len(role) != len(regions) or len(regions) > 3:  # names unknown: BraTS nesting, largest region = whole tumor
        by_size = sorted(range(len(regions)), key=lambda i: -len(set(regions[i][1])))
        sets = [set(regions[i][1]) for i in by_size]
        if len(regions) > 3 or any(not b < a for a, b in zip(sets, sets[1:])):
            raise InputError(f"{where}: regions {[n for n, _ in regions]} are not whole tumor / tumor core / "
                             "enhancing tumor (by name or nesting): cannot map them to BraTS labels")
        role = dict(zip(("WT", "TC", "ET")[:len(regions)], by_size))

    def compartment(v):  # BraTS label of one training label value
        for key, brats in (("ET", 3), ("TC", 1), ("WT", 2)):
            if key in role and v in regions[role[key]][1]:
                return brats
    mapping = {}
    for i, (name, r) in enumerate(regions):
        later = set().union(*[set(x) for _, x in regions[i + 1:]])
        kinds = {compartment(v) for v in set(r) - later}
        if len(kinds) != 1:
            raise InputError(f"{where}: regions_class_order {list(order)} paints region '{name}' with "
                             f"{order[i]}, which stands for {'no' if not kinds else 'several'} BraTS labels: "
                             "cannot map this model's output")
        mapping[int(order[i])] = kinds.pop()
    return mapping


class NnUNetBackend(SegmentationBackend):
    """Any trained nnU-Net v2 model folder, run in a subprocess (JSON progress, cancellable).

    Channel order comes from the model's dataset.json (channel names matched to T1 / T1c / T2 / FLAIR); output
    labels are mapped to this project's BraTS labels by their names in dataset.json (numbers are kept when the
    names are unknown and the model uses the BraTS 1/2/3 convention)."""
    name = "nnunet"
    description = "nnU-Net v2 model folder (subprocess, CPU or CUDA)"
    needs_weights = True

    def __init__(self, model_folder=None, folds: str = "", device: str = "auto", checkpoint: str = "checkpoint_final.pth",
                 mirroring: bool = False, tile_step: float = 0.5, should_cancel=None, timeout_s=None):
        import json
        from pathlib import Path
        if model_folder is None:
            raise InputError("the nnunet backend needs a trained model folder (--nnunet-model DIR)")
        self.model = Path(model_folder)
        ds = self.model / "dataset.json"
        if not ds.exists() or not (self.model / "plans.json").exists():
            raise InputError(f"{self.model}: not an nnU-Net v2 model folder (dataset.json and plans.json expected)")
        if not list(self.model.glob(f"fold_*/{checkpoint}")):
            raise InputError(f"{self.model}: no fold_*/{checkpoint} found")
        self.dataset = json.loads(ds.read_text())
        self.folds, self.device, self.checkpoint = folds, device, checkpoint
        self.mirroring, self.tile_step = mirroring, tile_step
        self.should_cancel, self.timeout_s = should_cancel, timeout_s
        self.channel_order = self._channel_order()
        self.label_map = self._label_map()

    def _channel_order(self):
        from .inputs import classify_name
        names = self.dataset.get("channel_names") or self.dataset.get("modality") or {}
        order = []
        for k in sorted(names, key=lambda v: int(v)):
            n = str(names[k])
            seq = {"t1n": "t1", "t1ce": "t1c", "t2w": "t2", "t2f": "flair"}.get(n.lower()) or classify_name(n)
            if seq is None:
                raise InputError(f"{self.model}/dataset.json: channel {k} '{n}' is not one of T1, T1c, T2, FLAIR")
            order.append(seq)
        return order

    def _label_map(self):
        return nnunet_label_map(self.dataset, f"{self.model}/dataset.json")

    def segment(self, pre, progress: Progress = null_progress) -> sitk.Image:
        import tempfile
        from pathlib import Path
        from .worker import run_worker
        with tempfile.TemporaryDirectory(prefix="gr-nnunet-") as tmp:
            files = []
            for i, seq in enumerate(self.channel_order):
                f = Path(tmp) / f"case_{i:04d}.nii.gz"
                sitk.WriteImage(pre.images[seq], str(f))
                files.append(str(f))
            out = Path(tmp) / "seg.nii.gz"
            args = ["nnunet", "--model", str(self.model), "--channels", *files, "--output", str(out),
                    "--device", self.device, "--checkpoint", self.checkpoint, "--tile-step", str(self.tile_step)]
            if self.folds:
                args += ["--folds", self.folds]
            if self.mirroring:
                args.append("--mirroring")
            run_worker(args, progress, should_cancel=self.should_cancel, timeout_s=self.timeout_s)
            seg = sitk.ReadImage(str(out))
        arr = sitk.GetArrayFromImage(seg)
        lab = np.zeros(arr.shape, np.uint8)
        for v, brats in self.label_map.items():
            lab[arr == v] = brats
        brain = sitk.GetArrayFromImage(pre.brain_mask) > 0 if pre.brain_mask is not None else None
        if brain is not None:
            lab[~brain] = 0
        img = sitk.GetImageFromArray(lab)
        img.CopyInformation(pre.grid)
        return img


def keep_large_components(mask: np.ndarray, min_fraction: float = 0.1, min_voxels: int = 0) -> np.ndarray:
    """The largest 3D component and every component at least ``min_fraction`` of its size (and ``min_voxels``)."""
    lab, n = ndi.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    keep = sizes >= max(min_voxels, min_fraction * sizes.max())
    keep[0] = False
    return keep[lab]


class LggUnet2dBackend(SegmentationBackend):
    """Whole tumor (FLAIR abnormality, label 2) by a 2D U-Net on FLAIR trained on 64 TCGA-LGG patients (unet2d.py).

    Inference runs in the worker subprocess (JSON progress, cancellable): FLAIR -> network grid (unet2d.network_input)
    -> mean sigmoid of the fold networks -> probabilities back on the working grid (linear) -> threshold -> the
    largest component and components >= ``min_fraction`` of it = the whole tumor (label 2). The network knows no
    sub-regions: with ``core=True`` (default) and a T1c, the weight-free backend's necrosis (1) and enhancing (3)
    labels are kept where they fall inside the network's whole tumor (the network's outline is never changed)."""
    name = "lgg-unet2d"
    description = ("2D U-Net on FLAIR (whole tumor only), 5-fold ensemble trained on 64 TCGA-LGG patients "
                   "(Buda 2019 masks); subprocess, CPU or CUDA")
    needs_weights = True

    def __init__(self, weights_dir=None, folds: str = "", device: str = "auto", threshold: float = 0.5,
                 min_fraction: float = 0.1, flip: bool = False, brain_clip: bool = False, core: bool = True,
                 should_cancel=None, timeout_s=None):
        from . import unet2d
        if weights_dir is None:   # the registry's source: bundled (the package folder) or downloaded on first use
            from .registry import weights_for_backend
            weights_dir = weights_for_backend("lgg-unet2d")
        self.weights_dir = weights_dir
        if not unet2d.weights_available(weights_dir):
            from .io import InputError
            raise InputError(f"lgg-unet2d: weights not found in {weights_dir or unet2d.WEIGHTS_DIR} "
                             "(manifest.json and fold files; see docs/real-segmentation.md)")
        self.manifest = unet2d.read_manifest(weights_dir)
        self.folds = ",".join(str(f) for f in unet2d.parse_folds(folds, self.manifest))  # validates early
        self.device, self.threshold, self.min_fraction, self.flip = device, threshold, min_fraction, flip
        self.brain_clip, self.core = brain_clip, core
        self.should_cancel, self.timeout_s = should_cancel, timeout_s

    _early = None

    def _predict(self, flair: sitk.Image, grid: sitk.Image, progress: Progress, should_cancel):
        """The fold ensemble in the worker subprocess: FLAIR -> probability array on ``grid``."""
        import tempfile
        from pathlib import Path
        from .worker import run_worker
        with tempfile.TemporaryDirectory(prefix="gr-unet2d-") as tmp:
            fin, ftarget, fout = (str(Path(tmp) / n) for n in ("flair.nii.gz", "grid.nii.gz", "prob.nii.gz"))
            sitk.WriteImage(sitk.Cast(flair, sitk.sitkFloat32), fin)
            sitk.WriteImage(self._grid_only(grid), ftarget, True)
            args = ["unet2d", "--input", fin, "--target", ftarget, "--output", fout, "--device", self.device,
                    "--folds", self.folds]
            if self.weights_dir:
                args += ["--weights", str(self.weights_dir)]
            if self.flip:
                args.append("--flip")
            info = run_worker(args, progress, should_cancel=should_cancel, timeout_s=self.timeout_s)
            return info, sitk.GetArrayFromImage(sitk.ReadImage(fout))

    def start_early(self, case, preprocess_options) -> bool:
        """With the FLAIR as the reference (the default), the network needs only the FLAIR as acquired and the
        working grid, both known before registration and brain extraction: its worker starts now and runs while the
        pipeline preprocesses the case (segment() then takes its result when the preprocessed case has exactly
        these inputs, and otherwise cancels it and runs again). Same inputs, same worker: the same probabilities."""
        from .preprocess import working_grid
        self.cancel_early()
        popt = preprocess_options
        if popt.reference != "flair" or "flair" not in case.images or popt.orientation:
            return False
        flair = case.images["flair"]
        try:
            grid = working_grid(flair, popt.spacing)
        except Exception:  # preprocessing reports a bad grid with its own message
            return False
        user_cancel = self.should_cancel

        def run(cancelled):
            stop = (lambda: cancelled() or bool(user_cancel())) if user_cancel else cancelled
            return self._predict(flair, grid, null_progress, stop)
        from .background import InThread
        self._early = (InThread(run, "gr-early-segmentation"), flair, grid)
        return True

    def cancel_early(self) -> None:
        if self._early is not None:
            self._early[0].cancel()
            self._early = None

    def _take_early(self, pre, flair):
        """The early job when it was started on these very inputs (else cancelled; None)."""
        if self._early is None:
            return None
        job, e_flair, e_grid = self._early
        self._early = None
        g = pre.grid
        if (e_flair is flair and e_grid.GetSize() == g.GetSize() and e_grid.GetSpacing() == g.GetSpacing()
                and e_grid.GetOrigin() == g.GetOrigin() and e_grid.GetDirection() == g.GetDirection()):
            return job
        job.cancel()
        return None

    def segment(self, pre, progress: Progress = null_progress) -> sitk.Image:
        if "flair" not in pre.images:
            self.cancel_early()
            raise InputError("the lgg-unet2d backend needs a FLAIR image")
        # the FLAIR as acquired when it is the reference (its own slices), else the registered working-grid FLAIR
        flair = pre.reference_native if pre.reference == "flair" else pre.images["flair"]
        job = self._take_early(pre, flair)
        if job is not None:
            progress.update(0.0, "lgg-unet2d: waiting for the network (started while the case was preprocessed)")
            info, prob = job.wait(self.should_cancel)
            pre.steps.append("lgg-unet2d: the network ran in its worker while the case was preprocessed (its inputs, "
                             "the FLAIR as acquired and the working grid, are known before registration)")
            progress.update(0.95, "lgg-unet2d: probabilities received")
        else:
            info, prob = self._predict(flair, pre.grid, progress.sub(0.0, 0.95), self.should_cancel)
        wt = prob >= self.threshold
        if wt.any():
            wt = keep_large_components(wt, self.min_fraction)
        if self.brain_clip and pre.brain_mask is not None:
            wt &= ndi.binary_dilation(sitk.GetArrayFromImage(pre.brain_mask) > 0, iterations=3)
        label = np.zeros(prob.shape, np.uint8)
        label[wt] = 2
        core_note = "whole tumor only (label 2)"
        if self.core and "t1c" in pre.images and wt.any():
            progress.update(0.96, "lgg-unet2d: necrosis / enhancement inside the whole tumor (weight-free)")
            inside = add_weight_free_core(label, pre)
            core_note = ("whole tumor from the network; necrosis / enhancing labels inside it from the weight-free "
                         f"backend ({inside} voxels)")
        pre.steps.append(f"lgg-unet2d: {info['slices']} axial slices, fold(s) {self.folds} on {info['device']}"
                         f"{' with flip TTA' if self.flip else ''}; threshold {self.threshold:g}, components >= "
                         f"{self.min_fraction:g} of the largest{'; clipped to the dilated brain mask' if self.brain_clip else ''}"
                         f"; {core_note}")
        progress.update(1.0, "segmentation done (lgg-unet2d)")
        img = sitk.GetImageFromArray(label)
        img.CopyInformation(pre.grid)
        return img

    @staticmethod
    def _grid_only(grid: sitk.Image) -> sitk.Image:
        """A uint8 image with the grid's geometry (what the worker needs of the working grid)."""
        g = sitk.Image(grid.GetSize(), sitk.sitkUInt8)
        g.CopyInformation(grid)
        return g


class Brats17Backend(SegmentationBackend):
    """The BraTS 2017 cascade of Wang et al. (WNet -> TNet -> ENet; brats17.py), our torch port of the published
    weights, in the worker subprocess (JSON progress, cancellable; CPU or CUDA).

    Input: the preprocessed case (registration to the reference, brain mask e.g. deepbet, working grid) -> the four
    channels flair, t1, t1c, t2 and the brain mask on an LPS 1 mm grid (a reorientation of the working grid;
    resampled when the working grid is not 1 mm) -> label map back on the working grid (nearest neighbour). Labels:
    1 necrosis / non-enhancing core, 2 edema, 3 enhancing. ``views="all"`` is the published 3-view fusion,
    ``"axial"`` runs the axial networks only (3x faster), ``"auto"`` (default) picks ``"all"`` when the reference
    sequence's native slices are at most ``AUTO_BRATS17_THICK_MM`` thick and ``"axial"`` otherwise (thick-slice
    clinical input: the sagittal / coronal networks see interpolated slices; docs/segmentation-quality.md). A case lacking one of the four sequences falls back to the
    weight-free ``hyperintensity`` backend, said in ``pre.steps`` / ``pre.warnings`` (and so in predictions.json);
    ``substitute_t2="flair"`` instead feeds the FLAIR as the T2 channel when only T2 is missing (measured on
    TCGA-LGG: docs/segmentation-quality.md)."""
    name = "brats17"
    description = ("BraTS 2017 cascade (Wang et al. 2017, WNet -> TNet -> ENet, 3 views): FLAIR + T1 + T1c + T2; "
                   "whole tumor, core, enhancing; subprocess, CPU or CUDA")
    needs_weights = True

    def __init__(self, weights_dir=None, device: str = "auto", views: str = "auto", substitute_t2: str | None = None,
                 seed: int = 0, should_cancel=None, timeout_s=None):
        from . import brats17
        if views not in ("auto", "all", "axial"):
            raise InputError(f"brats17: views must be 'auto', 'all' or 'axial', not '{views}'")
        if substitute_t2 not in (None, "", "flair"):
            raise InputError(f"brats17: substitute_t2 can only be 'flair', not '{substitute_t2}'")
        import os
        if weights_dir is None and not os.environ.get(brats17.WEIGHTS_ENV, "").strip():
            from .registry import weights_for_backend   # bundled, or downloaded on first use (registry source)
            weights_dir = weights_for_backend("brats17")
        self.weights_dir = brats17.weights_dir(weights_dir)
        if not brats17.weights_available(self.weights_dir, ("axial",) if views == "axial" else brats17.VIEWS):
            raise InputError(f"brats17: weights not found in {self.weights_dir} (nine msnet_*.npz files and "
                             f"SHA256SUMS; or set ${brats17.WEIGHTS_ENV}; see docs/segmentation.md)")
        self.device, self.views, self.substitute_t2, self.seed = device, views, substitute_t2 or None, seed
        self.should_cancel, self.timeout_s = should_cancel, timeout_s
        self.chosen = None

    def segment(self, pre, progress: Progress = null_progress) -> sitk.Image:
        import tempfile
        from pathlib import Path
        from . import brats17
        from .sequences import SEQUENCE_NAMES
        from .worker import run_worker
        self.name, self.chosen = "brats17", None
        missing = [s for s in brats17.CHANNELS if s not in pre.images]
        source = {s: s for s in brats17.CHANNELS}
        if missing == ["t2"] and self.substitute_t2 == "flair" and "flair" in pre.images:
            source["t2"] = "flair"
            pre.steps.append("brats17: no T2: the FLAIR is fed as the T2 channel (substitute_t2='flair', measured on "
                             "TCGA-LGG, docs/segmentation-quality.md)")
        elif missing:
            names = ", ".join(SEQUENCE_NAMES.get(s, s) for s in missing)
            msg = (f"brats17 needs FLAIR, T1, T1c and T2; this case lacks {names}: segmented by the weight-free "
                   "hyperintensity backend instead")
            pre.steps.append(f"segmentation backend: brats17 -> hyperintensity ({msg})")
            pre.warnings.append(msg)
            progress.update(0.0, msg)
            self.chosen, self.name = "hyperintensity", "brats17 -> hyperintensity (fallback)"
            return HyperintensityBackend().segment(pre, progress)
        if pre.brain_mask is None:
            raise InputError("brats17 needs a brain mask (skull-stripped input): preprocess with a brain mask method")
        views, why = brats17_views(pre, self.views)
        self.views_used = views
        if why:
            pre.steps.append(f"brats17: {why}")
        images, mask = brats17.network_images({s: pre.images[source[s]] for s in brats17.CHANNELS}, pre.brain_mask)
        with tempfile.TemporaryDirectory(prefix="gr-brats17-") as tmp:
            files = []
            for s in brats17.CHANNELS:
                files.append(str(Path(tmp) / f"{s}.nii.gz"))
                sitk.WriteImage(images[s], files[-1])
            fmask, fout = str(Path(tmp) / "brain.nii.gz"), str(Path(tmp) / "label.nii.gz")
            sitk.WriteImage(mask, fmask)
            args = ["brats17", "--channels", *files, "--mask", fmask, "--output", fout, "--device", self.device,
                    "--views", views, "--seed", str(self.seed), "--weights", str(self.weights_dir)]
            info = run_worker(args, progress.sub(0.0, 0.98), should_cancel=self.should_cancel,
                              timeout_s=self.timeout_s)
            net_label = sitk.ReadImage(fout)
        label = sitk.Resample(net_label, pre.grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        arr = sitk.GetArrayFromImage(label)
        pre.steps.append(
            f"brats17: WNet -> TNet -> ENet ({'3-view fusion' if views == 'all' else 'axial view only'}) on "
            f"{info['device']}, {info['seconds']:.0f} s; test-time batch-statistics BN; LPS 1 mm network grid "
            f"{images['flair'].GetSize()}, labels back on the working grid (nearest); "
            f"voxels WT {int((arr > 0).sum())}, TC {int(np.isin(arr, (1, 3)).sum())}, ET {int((arr == 3).sum())}")
        progress.update(1.0, "segmentation done (brats17)")
        label.CopyInformation(pre.grid)
        return label


def torch_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("torch") is not None


# Native slice spacing (mm) above which the automatic choice runs brats17's axial networks only: the sagittal and
# coronal networks see thick axial slices interpolated along their in-plane axes, unlike their 1 mm training data
# (TCGA-FG-6692, 5.5 mm: the 3-view fusion lost the tumor core; docs/segmentation-quality.md).
AUTO_BRATS17_THICK_MM = 2.5


def brats17_views(pre, views: str = "auto"):
    """(views, reason) for the BraTS 2017 cascade on this case: ``views`` unless ``"auto"``, which is ``"all"`` (the
    published 3-view fusion) when the reference sequence's native slices are at most ``AUTO_BRATS17_THICK_MM`` thick
    and ``"axial"`` otherwise; the reason is empty for an explicit choice."""
    if views != "auto":
        return views, ""
    thick = max(pre.reference_native.GetSpacing())
    chosen = "all" if thick <= AUTO_BRATS17_THICK_MM else "axial"
    return chosen, (f"{'3-view fusion' if chosen == 'all' else 'axial networks only'}: the {pre.reference.upper()} "
                    f"slices are {thick:.1f} mm ({'<=' if chosen == 'all' else '>'} {AUTO_BRATS17_THICK_MM} mm)")


class AutoBackend(SegmentationBackend):
    """Default, per case: ``brats17`` (the BraTS 2017 cascade: whole tumor, core, enhancing) when the case has FLAIR,
    T1, T1c and T2, its weights are installed and torch is importable (3-view fusion on thin-slice input, the axial
    networks only when the reference sequence's native slices are thicker than ``AUTO_BRATS17_THICK_MM``); else
    ``lgg-unet2d`` when the case has FLAIR and its weights are installed; else the weight-free ``hyperintensity``.
    Measured side by side in docs/segmentation-quality.md (BraTS-example WT Dice: brats17 0.972, hyperintensity
    0.919, lgg-unet2d 0.418; TCGA-LGG, no T2: lgg-unet2d out-of-fold 0.79). The choice and its reason go to
    ``pre.steps`` (and predictions.json)."""
    name = "auto"
    description = ("Default: brats17 (BraTS 2017 cascade) when FLAIR, T1, T1c and T2 are all present; else "
                   "lgg-unet2d (FLAIR U-Net, whole tumor); else hyperintensity")

    def __init__(self, unet_folds: str = "", device: str = "auto", weights_dir=None, brats17_weights=None,
                 brats17_views: str = "auto", should_cancel=None, timeout_s=None):
        self.unet_folds, self.device, self.weights_dir = unet_folds, device, weights_dir
        self.brats17_weights, self.brats17_views = brats17_weights, brats17_views
        self.should_cancel, self.timeout_s = should_cancel, timeout_s
        self.chosen = None

    def choose(self, pre):
        return self.choose_for(set(pre.images), pre)

    def choose_for(self, have, pre=None):
        """The choice from the sequences a case has; ``pre`` (the preprocessed case) is needed only to pick
        brats17's views: without it a brats17 choice is (None, reason)."""
        from . import brats17, unet2d
        why_not = ""
        if set(brats17.CHANNELS) <= have:
            if not torch_available():
                why_not = "brats17 not used: torch is not installed"
            elif not brats17.weights_available(self.brats17_weights):
                why_not = "brats17 not used: its weights are not installed"
            elif pre is None:
                return None, "brats17: its views are chosen on the preprocessed case"
            else:
                views, why = brats17_views(pre, self.brats17_views)
                why = why or f"views {views} (asked)"
                b = Brats17Backend(self.brats17_weights, self.device, views=views, should_cancel=self.should_cancel,
                                   timeout_s=self.timeout_s)
                return b, f"FLAIR, T1, T1c and T2 present and weights installed; {why}"
        else:
            why_not = "brats17 needs FLAIR, T1, T1c and T2"
        if "flair" not in have:
            return HyperintensityBackend(), f"the case has no FLAIR (lgg-unet2d needs it; {why_not})"
        if not unet2d.weights_available(self.weights_dir):
            return HyperintensityBackend(), f"lgg-unet2d weights are not installed ({why_not})"
        if not torch_available():
            return HyperintensityBackend(), "torch is not installed (pip install the 'brain' extra)"
        b = LggUnet2dBackend(self.weights_dir, self.unet_folds, self.device, should_cancel=self.should_cancel,
                             timeout_s=self.timeout_s)
        return b, f"FLAIR present and weights installed (fold(s) {b.folds}); {why_not}"

    _early = None

    def start_early(self, case, preprocess_options) -> bool:
        """When the choice is already lgg-unet2d from the sequences the case has (no brats17: not all four
        sequences or no brats17 weights), start it early (LggUnet2dBackend.start_early)."""
        self.cancel_early()
        try:
            b, _ = self.choose_for(set(case.images))
        except Exception:  # segment() reports it
            return False
        if not isinstance(b, LggUnet2dBackend):
            return False  # brats17 needs the registered channels and the brain mask; hyperintensity has no network
        if b.start_early(case, preprocess_options):
            self._early = b
            return True
        return False

    def cancel_early(self) -> None:
        if self._early is not None:
            self._early.cancel_early()
            self._early = None

    def segment(self, pre, progress: Progress = null_progress) -> sitk.Image:
        backend, reason = self.choose(pre)
        early, self._early = self._early, None
        if early is not None:
            if isinstance(backend, LggUnet2dBackend):
                backend = early  # same settings; it holds the job started on this case
            else:
                early.cancel_early()
        self.chosen = backend.name
        self.picked = backend
        pre.steps.append(f"segmentation backend: auto -> {backend.name} ({reason})")
        label = backend.segment(pre, progress)
        self.chosen = getattr(backend, "chosen", None) or backend.name
        self.name = f"auto: {backend.name}"   # what the pipeline records as the automatic segmentation source
        return label


BACKENDS: Dict[str, Type[SegmentationBackend]] = {"auto": AutoBackend, "lgg-unet2d": LggUnet2dBackend,
                                                  "hyperintensity": HyperintensityBackend, "nnunet": NnUNetBackend,
                                                  "brats17": Brats17Backend}
DEFAULT_BACKEND = "auto"


def get_backend(name: str = DEFAULT_BACKEND, **kwargs) -> SegmentationBackend:
    if name not in BACKENDS:
        raise InputError(f"unknown segmentation backend '{name}'; available: {', '.join(BACKENDS)}")
    return BACKENDS[name](**kwargs)
