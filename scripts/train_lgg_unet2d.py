#!/usr/bin/env python
"""Train the lgg-unet2d fold networks (whole tumor on FLAIR) from the arrays of scripts/prepare_lgg_unet_data.py.

Needs torch and numpy only (SimpleITK is not needed: the input grid was built by the preparation script with the same
``unet2d.network_input`` the product uses), so it runs on a bare GPU machine. Case-level K-fold split with a fixed
seed; each fold network is trained on the other folds' cases and evaluated on its own (out-of-fold Dice on the
network grid). Writes ``fold<k>.pt`` (float16 state_dict) and ``fold<k>.json`` per fold, and ``train_summary.json``.

    python scripts/prepare_lgg_unet_data.py                                  # once, needs SimpleITK
    python scripts/train_lgg_unet2d.py --data build/lgg-unet-data --out build/lgg-unet-weights --parallel
    python scripts/update_lgg_unet_weights.py --trained build/lgg-unet-weights   # manifest + install

On a GPU all folds train at the same time (``--parallel``: one process per fold on the same device). On a CPU it works
too, slowly: ``--device cpu --epochs 1 --max-slices 64`` is the smoke test. The learning rate follows a cosine over
max(epoch fraction, time fraction) so that ``--time-budget-s`` ends training on schedule whatever the device.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import lzma
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
UNET_FILE = ROOT / "GliomaRadiogenomics" / "GliomaRadiogenomicsLib" / "unet2d.py"


def load_unet2d():
    spec = importlib.util.spec_from_file_location("unet2d", UNET_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def slice_positions(case: np.ndarray) -> np.ndarray:
    """Position of each slice in its case for the full arrays (each case's slices are stored in order)."""
    pos = np.zeros(len(case), np.int64)
    for c in np.unique(case):
        idx = np.where(case == c)[0]
        pos[idx] = np.arange(len(idx))
    return pos


def load_data(folder: Path, with_weight: bool = False):
    """(x, y, case, case_ids[, weight, pos, trainable]) of the full arrays or of a subset (``make_subset``)."""
    d = np.load(folder / "lgg_unet_data.npz")
    shape = tuple(int(v) for v in d["shape"])
    x = np.frombuffer(lzma.decompress((folder / "lgg_unet_x.u8.xz").read_bytes()), np.uint8).reshape(shape)
    y = np.unpackbits(d["y"])[: int(np.prod(shape))].reshape(shape)
    case = d["case"].astype(np.int64)
    out = (x, y, case, [str(v) for v in d["case_ids"]])
    if with_weight:
        out += (d["weight"].astype(np.float64) if "weight" in d.files else np.ones(shape[0]),
                d["pos"].astype(np.int64) if "pos" in d.files else slice_positions(case),
                d["trainable"].astype(bool) if "trainable" in d.files else np.ones(shape[0], bool))
    return out


def make_subset(src: Path, dst: Path, neg_keep: float, seed: int, context: int = 0) -> None:
    """A smaller copy of the training arrays (every slice with tumor, a random ``neg_keep`` of the others) with
    sampling weights 1 / neg_keep on the kept tumor-free slices, so batches keep the full data's slice mix. Used to
    carry a warm start (fold weights) and the data together within a transfer limit. With ``context`` > 0 the
    ``context`` neighbours of every kept slice are stored too, as input channels only (``trainable`` False), with
    each slice's position in its case (``pos``) so that ``unet2d.context_index`` finds them."""
    x, y, case, ids = load_data(src)
    pos_all = slice_positions(case)
    tumor = y.reshape(len(y), -1).any(1)
    rng = np.random.default_rng(seed)
    def with_neighbours(sel):
        out = sel.copy()
        for d in range(1, context + 1):
            for shift in (d, -d):
                src_i = np.where(sel)[0]
                nb = src_i + shift
                ok = (nb >= 0) & (nb < len(y))
                ok[ok] = case[nb[ok]] == case[src_i[ok]]
                out[nb[ok]] = True
        return out

    # the tumor slices' neighbours are stored anyway (as context): they are trained on too (near-tumor negatives)
    train = with_neighbours(tumor) | (rng.random(len(y)) < neg_keep)
    keep = with_neighbours(train)
    # sampling weight of a tumor-free slice: (tumor-free slices in the full data) / (tumor-free slices trained on),
    # so that batches keep the full data's mix of slices with and without tumor
    neg_w = float((~tumor).sum()) / max(1, int((train & ~tumor).sum()))
    weight = np.where(tumor[keep], 1.0, neg_w)
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "lgg_unet_x.u8.xz").write_bytes(lzma.compress(np.ascontiguousarray(x[keep]).tobytes(), preset=6))
    np.savez_compressed(dst / "lgg_unet_data.npz", y=np.packbits(y[keep]), shape=np.array(x[keep].shape),
                        case=case[keep].astype(np.int16), case_ids=np.array(ids), weight=weight,
                        pos=pos_all[keep].astype(np.int16), trainable=train[keep], context=np.array(context))
    print(f"subset: {int(keep.sum())} of {len(y)} slices stored, {int(train.sum())} trainable "
          f"({int(tumor.sum())} with tumor), context {context} -> {dst}")


def split_folds(case_ids, k: int, seed: int):
    """Case-level split: a seeded permutation of the sorted case ids, dealt round-robin into k folds."""
    ids = sorted(case_ids)
    perm = np.random.default_rng(seed).permutation(len(ids))
    return {f: sorted(ids[j] for j in perm[f::k]) for f in range(k)}


def augment(x, y, torch, F, clip):
    """GPU batch augmentation: left-right flip, rotation +-15 deg, scale 0.85-1.15, shift +-8 %, intensity scale and
    gamma, occasional noise and low-resolution simulation (clinical thick-slice / low-matrix images)."""
    b = x.shape[0]
    dev = x.device
    ang = (torch.rand(b, device=dev) * 2 - 1) * math.radians(15)
    sc = 0.85 + 0.3 * torch.rand(b, device=dev)
    flip = torch.where(torch.rand(b, device=dev) < 0.5, -1.0, 1.0)
    tx, ty = [(torch.rand(b, device=dev) * 2 - 1) * 0.08 for _ in range(2)]
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = (F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False) >= 0.5).float()
    gamma = torch.exp((torch.rand(b, 1, 1, 1, device=dev) * 2 - 1) * math.log(1.5))
    x = clip * (x / clip).clamp(0, 1) ** gamma
    x = x * (0.85 + 0.3 * torch.rand(b, 1, 1, 1, device=dev))
    noisy = (torch.rand(b, 1, 1, 1, device=dev) < 0.3).float()
    x = x + noisy * torch.randn_like(x) * 0.05 * torch.rand(b, 1, 1, 1, device=dev)
    if random.random() < 0.25:  # python random: no GPU synchronisation
        f = 1.0 + random.random()
        h, w = x.shape[-2:]
        small = F.interpolate(x, size=(max(8, int(h / f)), max(8, int(w / f))), mode="bilinear", align_corners=False)
        x = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return x.clamp(0, clip), y


def dice(a, b) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * (a & b).sum() / s)


def largest_components(m, frac: float = 0.1):
    try:
        from scipy import ndimage as ndi
    except ImportError:  # pragma: no cover
        return m
    lab, n = ndi.label(m)
    if n <= 1:
        return m
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    keep = sizes >= frac * sizes.max()
    keep[0] = False
    return keep[lab]


def expand_to_context(state: dict, context: int) -> dict:
    """A 2D network's state_dict -> the 2.5D network's (2 * context + 1 input channels): the slice itself on the
    centre channel, zero weights on the neighbours, so the warm-started network computes exactly the 2D network's
    output before fine-tuning. A state that already has the channels is returned unchanged."""
    import torch
    first = "down.0.0.weight"
    cin = 2 * context + 1
    if state[first].shape[1] == 1 and cin > 1:
        w = torch.zeros(state[first].shape[0], cin, *state[first].shape[2:], dtype=state[first].dtype)
        w[:, context] = state[first][:, 0]
        state[first] = w
    return state


def eval_case(U, net, x8, sl, ctx, case, pos, context: int, dev: str, flip: bool) -> np.ndarray:
    """Probabilities of one case's stored slices ``sl``. Full arrays: exactly the product's ``predict_slices`` on the
    volume. A subset: the same network pass on the stored slices with their stored neighbours (``ctx``)."""
    full = len(sl) == int(pos[sl].max()) + 1
    if full:
        return U.predict_slices([net], x8[sl].astype(np.float32) / U.QUANT, device=dev, batch=32, flip=flip,
                                context=context)
    xs = x8.astype(np.float32) / U.QUANT  # subset: neighbours are rows of the whole stored array
    import torch
    out = []
    with torch.inference_mode():
        for i in range(0, len(sl), 32):
            t = torch.from_numpy(U.stack_context(xs, ctx[sl[i:i + 32]])).to(dev)
            p = torch.sigmoid(net(t).float())
            if flip:
                p = 0.5 * (p + torch.flip(torch.sigmoid(net(torch.flip(t, dims=[3])).float()), dims=[3]))
            out.append(p[:, 0].cpu().numpy())
    return np.concatenate(out)


def train_fold(a, fold: int) -> dict:
    import torch
    import torch.nn.functional as F

    U = load_unet2d()
    torch.manual_seed(a.seed * 100 + fold)
    random.seed(a.seed * 100 + fold)
    np.random.seed(a.seed * 100 + fold)
    dev = "cuda" if (a.device == "auto" and torch.cuda.is_available()) else ("cpu" if a.device == "auto" else a.device)
    if dev == "cpu":
        torch.set_num_threads(max(1, a.threads or (os.cpu_count() or 1)))
    else:
        torch.set_num_threads(max(1, a.threads or 3))
        torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    x8, y8, case, ids, wts, pos, trainable = load_data(Path(a.data), with_weight=True)
    folds = split_folds(ids, a.folds, a.seed)
    test_ids = set(folds[fold])
    is_test = np.array([ids[c] in test_ids for c in case])
    tr = np.where(~is_test & trainable)[0]
    ctx = U.context_index(case, pos, a.context)  # [n, 2 * context + 1] neighbour rows (one definition with inference)
    if a.max_slices:
        tr = tr[np.random.permutation(len(tr))[: a.max_slices]]
    clip = float(U.CLIP)
    X = torch.from_numpy(np.ascontiguousarray(x8)).to(dev)  # every stored slice (neighbours are inputs too)
    Y = torch.from_numpy(np.ascontiguousarray(y8[tr])).to(dev)
    CTX = torch.from_numpy(ctx[tr]).to(dev)
    W = torch.from_numpy(wts[tr].astype(np.float32)).to(dev)
    weighted = bool((wts[tr] != 1).any())
    cin = 2 * a.context + 1
    net = U.build_unet(a.base, a.depth, in_channels=cin)
    if a.init:  # warm start from an earlier run's fold network (same fold: same training cases)
        st = {k: v.float() for k, v in torch.load(Path(a.init) / f"fold{fold}.pt", map_location="cpu",
                                                  weights_only=True).items()}
        net.load_state_dict(expand_to_context(st, a.context))
    net = net.to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=1e-4)
    use_amp = dev == "cuda"
    steps_per_epoch = max(1, len(tr) // a.batch)
    warm = a.warmup if a.warmup is not None else min(100, steps_per_epoch * 2)
    log, step, epoch = [], 0, 0
    t_train = time.perf_counter()
    print(f"[fold {fold}] {dev}: {len(tr)} training slices of {len(ids) - len(test_ids)} cases, "
          f"{steps_per_epoch} steps/epoch, data {time.perf_counter() - t0:.0f} s", flush=True)
    done = a.eval_only
    while not done:
        net.train()
        perm = (torch.multinomial(W, len(tr), replacement=True) if weighted
                else torch.randperm(len(tr), device=dev))
        tot, nb = torch.zeros((), device=dev), 0
        for i in range(steps_per_epoch):
            prog = max((epoch + i / steps_per_epoch) / a.epochs, (time.perf_counter() - t_train) / a.time_budget_s)
            if prog >= 1.0:
                done = True
                break
            lr = a.lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * prog))
            for g in opt.param_groups:
                g["lr"] = lr
            sel = perm[i * a.batch:(i + 1) * a.batch]
            xb = X[CTX[sel]].float() / U.QUANT  # [b, 2 * context + 1, H, W]
            yb = Y[sel].float()[:, None]
            xb, yb = augment(xb, yb, torch, F, clip)
            xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                logit = net(xb)
            logit = logit.float()
            p = torch.sigmoid(logit)
            inter = (p * yb).sum()
            dl = 1 - (2 * inter + 1) / (p.sum() + yb.sum() + 1)
            loss = F.binary_cross_entropy_with_logits(logit, yb) + dl
            if a.sample_dice > 0:  # per-slice Dice on slices with tumor: small lesions count as much as large ones
                ys = yb.sum(dim=(1, 2, 3))
                ds = 1 - (2 * (p * yb).sum(dim=(1, 2, 3)) + 1) / (p.sum(dim=(1, 2, 3)) + ys + 1)
                has = (ys > 0).float()
                loss = loss + a.sample_dice * (ds * has).sum() / has.sum().clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            tot += loss.detach()
            nb += 1
            step += 1
        epoch += 1
        if nb:
            tot = float(tot)
            log.append({"epoch": epoch, "loss": round(tot / nb, 4), "lr": round(lr, 6),
                        "s": round(time.perf_counter() - t_train, 1)})
            print(f"[fold {fold}] epoch {epoch} loss {tot / nb:.4f} lr {lr:.2e} {time.perf_counter() - t_train:.0f} s",
                  flush=True)
        if epoch >= a.epochs:
            done = True
    train_s = time.perf_counter() - t_train
    net.eval()
    state = {k: v.detach().to("cpu", torch.float16) for k, v in net.state_dict().items()}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(state, out / f"fold{fold}.tmp")
    os.replace(out / f"fold{fold}.tmp", out / f"fold{fold}.pt")
    # out-of-fold evaluation with the float16 weights as shipped (float32 compute, as on a CPU at inference)
    net32 = U.build_unet(a.base, a.depth, in_channels=cin)
    net32.load_state_dict({k: v.float() for k, v in state.items()})
    net32 = net32.to(dev).eval()
    per_case = {}
    for cid in ([] if a.no_eval else sorted(test_ids)[: a.eval_cases or None]):
        ci = ids.index(cid)
        sl = np.where(case == ci)[0]
        p1, p2 = (eval_case(U, net32, x8, sl, ctx, case, pos, a.context, dev, flip) for flip in (False, True))
        ref = y8[sl] > 0
        per_case[cid] = {"dice": round(dice(p1 >= 0.5, ref), 4), "dice_flip": round(dice(p2 >= 0.5, ref), 4),
                         "dice_flip_lcc": round(dice(largest_components(p2 >= 0.5), ref), 4),
                         "ref_px": int(ref.sum()), "pred_px": int((p2 >= 0.5).sum())}
    res = {"fold": fold, "device": dev, "epochs": epoch, "steps": step, "train_s": round(train_s, 1),
           "train_cases": sorted(set(ids) - test_ids), "test_cases": sorted(test_ids), "n_train_slices": int(len(tr)),
           "log": log, "oof": per_case}
    (out / f"fold{fold}.json").write_text(json.dumps(res, indent=1))
    d = [v["dice_flip"] for v in per_case.values()]
    print(f"[fold {fold}] done: {epoch} epochs in {train_s:.0f} s; out-of-fold Dice mean {np.mean(d):.3f} "
          f"min {np.min(d):.3f} (n={len(d)})", flush=True)
    return res


def summarise(a) -> dict:
    out = Path(a.out)
    res = [json.loads((out / f"fold{k}.json").read_text()) for k in range(a.folds) if (out / f"fold{k}.json").exists()]
    oof = {cid: v for r in res for cid, v in r["oof"].items()}
    summ = {"folds": a.folds, "seed": a.seed, "epochs_max": a.epochs, "time_budget_s": a.time_budget_s,
            "batch": a.batch, "lr": a.lr, "base": a.base, "depth": a.depth, "init": a.init, "warmup": a.warmup,
            "sample_dice": a.sample_dice, "data": a.data, "context": a.context, "eval_only": a.eval_only,
            "per_fold": [{k: r[k] for k in ("fold", "device", "epochs", "steps", "train_s", "train_cases", "test_cases",
                                            "n_train_slices", "log")} | {"final_loss": r["log"][-1]["loss"] if r["log"] else None}
                         for r in res], "oof": oof}
    for key in ("dice", "dice_flip", "dice_flip_lcc"):
        v = np.array([o[key] for o in oof.values()]) if oof else np.zeros(0)
        if v.size:
            summ[key] = {"mean": round(float(v.mean()), 4), "median": round(float(np.median(v)), 4),
                         "min": round(float(v.min()), 4), "n": int(v.size)}
            print(f"out-of-fold {key}: mean {v.mean():.4f} median {np.median(v):.4f} min {v.min():.4f} n={v.size}")
    (out / "train_summary.json").write_text(json.dumps(summ, indent=1))
    return summ


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "build" / "lgg-unet-data"))
    ap.add_argument("--out", default=str(ROOT / "build" / "lgg-unet-weights"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--fold", type=int, default=None, help="train this fold only")
    ap.add_argument("--parallel", action="store_true", help="one process per fold at the same time (GPU)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--time-budget-s", type=float, default=1e9, help="training time per fold (cosine follows it)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--max-slices", type=int, default=0, help="smoke test: train on this many slices only")
    ap.add_argument("--eval-cases", type=int, default=0, help="smoke test: evaluate this many held-out cases only")
    ap.add_argument("--no-eval", action="store_true", help="skip the out-of-fold evaluation (done elsewhere)")
    ap.add_argument("--init", help="warm start: folder with fold<k>.pt of an earlier run (fine-tuning)")
    ap.add_argument("--warmup", type=int, default=None, help="learning-rate warm-up steps (default min(100, 2 epochs))")
    ap.add_argument("--sample-dice", type=float, default=0.0, help="weight of the per-slice Dice term (0: off)")
    ap.add_argument("--make-subset", help="write a subset of --data (all tumor slices, --neg-keep of the others) "
                    "to this folder and exit")
    ap.add_argument("--neg-keep", type=float, default=0.45)
    ap.add_argument("--context", type=int, default=0, help="2.5D: neighbouring slices on either side as input "
                    "channels (0: 2D); a 2D --init is expanded (zero weights on the neighbours)")
    ap.add_argument("--eval-only", action="store_true", help="no training: evaluate the --init networks out of fold")
    a = ap.parse_args(argv)
    if a.make_subset:
        make_subset(Path(a.data), Path(a.make_subset), a.neg_keep, a.seed, a.context)
        return 0
    if a.fold is not None:
        train_fold(a, a.fold)
        return 0
    if a.parallel:
        rest = [v for v in (argv if argv is not None else sys.argv[1:]) if v != "--parallel"]
        procs = [subprocess.Popen([sys.executable, __file__, *rest, "--fold", str(k)]) for k in range(a.folds)]
        codes = [p.wait() for p in procs]
        if any(codes):
            print(f"fold processes exit codes {codes}", flush=True)
    else:
        for k in range(a.folds):
            train_fold(a, k)
    summarise(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
