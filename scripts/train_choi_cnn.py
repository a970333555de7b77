#!/usr/bin/env python
"""Choi 2021 CNN (2D ResNet34, issue 17): repeated nested CV on the arrays of scripts/prepare_choi_data.py,
writing out-of-fold CNN probabilities per case and repetition (the hybrid logistic model is fitted from them on
the CPU afterwards, in the same folds: GliomaRadiogenomicsLib.choi / `train --method choi-hybrid`).

Needs only python3 + torch + numpy (no SimpleITK, no package install: choi.py is loaded by path), so it runs on a
bare GPU machine. Outer folds: the LASSO models' folds stored in the data file (folds_<family>). Inside each outer
training fold (every selection inside the folds):
  - an inner stratified ``--inner-folds``-fold split of the training cases; a network per inner fold trained for
    ``--epochs`` epochs, its inner-validation patients scored after every epoch;
  - the epoch count is chosen by the pooled inner out-of-fold AUC (3-epoch moving average; earliest maximum);
  - the inner out-of-fold probabilities at that epoch are the TRAINING cases' CNN probabilities (what the hybrid
    logistic model is fitted on: never in-sample CNN outputs);
  - one network on the whole training fold for that many epochs scores the held-out fold (mean over the case's 5
    slices, as the paper).
Variants (``--variants``, name=channels@family; ``--order priority`` (default) runs every repetition of the
first variant, then the others interleaved by repetition, so that a time budget cuts the secondary ones):
  t1c+mask        T1c + tumour mask: the paper's input without T2 (its ablation with fewer sequences; TCGA-LGG has
                  no T2), on the flair-t1-t1c cases;
  t1c+flair+mask  FLAIR in T2's place (our deviation), same cases and folds;
  flair+mask      FLAIR + mask on every case (the flair family's folds).

    python scripts/train_choi_cnn.py --data build/choi-data/choi_slices.npz --out OUT --device cuda \
        --repeats 3 --time-budget-s 280
    python scripts/train_choi_cnn.py --device cpu --epochs 1 --max-cases 8 --repeats 1 --out /tmp/choi-smoke  # smoke
With --final (or --final-only) each variant's FINAL network is also trained on all its cases (the same epoch rule:
an inner CV on all of them) and saved as OUT/choi_cnn_final_<variant>.pt (torch.save(state_dict)) with
OUT/choi_cnn_final.json (epochs, SHA-256, channels, grid, quantisation): the run-time Choi bundle's CNN.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHOI_FILE = ROOT / "GliomaRadiogenomics" / "GliomaRadiogenomicsLib" / "choi.py"
DEFAULT_VARIANTS = "t1c+mask=t1c,mask@flair-t1-t1c;t1c+flair+mask=t1c,flair,mask@flair-t1-t1c;flair+mask=flair,mask@flair"


def load_choi():
    spec = importlib.util.spec_from_file_location("choi", CHOI_FILE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["choi"] = mod
    spec.loader.exec_module(mod)
    return mod


C = load_choi()
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402


def parse_variants(spec: str):
    out = []
    for item in [s for s in spec.split(";") if s.strip()]:
        name, rest = item.split("=", 1)
        chans, fam = rest.split("@", 1)
        out.append({"name": name.strip(), "channels": [c.strip() for c in chans.split(",")], "family": fam.strip()})
    return out


class Data:
    """The prepared arrays; per variant the network inputs of its cohort, on the device."""

    def __init__(self, path: Path):
        d = np.load(path, allow_pickle=False)
        self.images, self.available, self.norm = d["images"], d["available"], d["norm"]
        self.case_ids = [str(c) for c in d["case_ids"]]
        self.y = d["y"].astype(float)
        self.channels = [str(c) for c in d["channels"]]
        self.folds = {k[len("folds_"):]: d[k] for k in d.files if k.startswith("folds_")}

    def cohort(self, family: str, channels):
        if family not in self.folds:
            raise SystemExit(f"family '{family}' has no folds in the data file ({', '.join(self.folds)})")
        Fo = self.folds[family]
        miss = [c for c in channels if c not in self.channels]
        if miss:
            raise SystemExit(f"channel(s) {', '.join(miss)} not in the data file ({', '.join(self.channels)}); "
                             "a missing sequence is dropped from the variant, not substituted")
        idx = np.flatnonzero(Fo[0] >= 0)
        ch = [self.channels.index(c) for c in channels]
        lacking = [self.case_ids[i] for i in idx if not self.available[i, ch].all()]
        if lacking:
            raise SystemExit(f"{family}: case(s) {', '.join(lacking[:5])} lack a channel of {channels}")
        X = np.stack([C.network_input(self.images[i], self.channels, self.norm[i], channels) for i in idx])
        return idx, X, self.y[idx], Fo[:, idx]


def augment(x: torch.Tensor, n_img: int, gen: torch.Generator) -> torch.Tensor:
    """Random left-right flip, shift of up to 8 px and intensity scale 0.9-1.1 of the image channels."""
    b = x.shape[0]
    flip = torch.rand(b, generator=gen, device="cpu") < 0.5
    x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
    dy, dx = (int(v) for v in torch.randint(-8, 9, (2,), generator=gen))
    x = torch.roll(x, (dy, dx), (-2, -1))
    if n_img:
        s = (0.9 + 0.2 * torch.rand(b, 1, 1, 1, generator=gen)).to(x.device)
        x = torch.cat([x[:, :n_img] * s, x[:, n_img:]], 1)
    return x


def make_model(n_ch: int, device, init_state=None):
    m = C.ResNet34(n_ch, 1)
    if init_state is not None:
        C.adapt_resnet34_state(m, init_state, "--resnet34-weights")
    return m.to(device).to(memory_format=torch.channels_last)


@torch.no_grad()
def predict_cases(model, X: torch.Tensor, amp: bool) -> np.ndarray:
    """(n_cases, 5, C, H, W) -> per-slice probabilities (n_cases, 5)."""
    model.eval()
    n, s = X.shape[:2]
    flat = X.reshape(n * s, *X.shape[2:]).contiguous(memory_format=torch.channels_last)
    out = []
    for i in range(0, len(flat), 256):
        with torch.autocast(flat.device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(torch.sigmoid(model(flat[i:i + 256]).float().squeeze(1)))
    return torch.cat(out).reshape(n, s).cpu().numpy()


def train_net(X: torch.Tensor, y: np.ndarray, a, seed: int, n_img: int, epochs: int, init_state=None,
              X_val: torch.Tensor = None):
    """Train on (n, 5, C, H, W) patients' slices for ``epochs`` epochs; with X_val the per-slice validation
    probabilities after every epoch (epochs, n_val, 5)."""
    dev = X.device
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = make_model(X.shape[2], dev, init_state)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    n, s = X.shape[:2]
    flat = X.reshape(n * s, *X.shape[2:])
    ys = torch.tensor(np.repeat(y, s), dtype=torch.float32, device=dev)
    npos = float(y.sum())
    pos_weight = torch.tensor((len(y) - npos) / max(npos, 1.0), device=dev)
    amp = dev.type == "cuda"
    curve = []
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(flat), generator=gen).to(dev)
        for i in range(0, len(perm), a.batch_size):
            b = perm[i:i + a.batch_size]
            if len(b) < 2:
                continue
            xb = augment(flat[b], n_img, gen).contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                logit = model(xb).float().squeeze(1)
            loss = F.binary_cross_entropy_with_logits(logit, ys[b], pos_weight=pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if X_val is not None:
            curve.append(predict_cases(model, X_val, amp))
    return model, (np.stack(curve) if curve else None)


def choose_epoch(auc_curve: np.ndarray) -> int:
    """1-based epoch count: the earliest maximum of the 3-epoch moving average of the inner AUC."""
    a = np.nan_to_num(np.asarray(auc_curve, float), nan=0.5)
    sm = np.convolve(np.pad(a, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    return int(np.argmax(sm)) + 1


def inner_cv(Xt: torch.Tensor, y: np.ndarray, tr: np.ndarray, a, seed: int, n_img: int, init_state=None):
    """The epoch rule on the training cases ``tr``: an inner stratified CV whose networks are scored after every
    epoch; (epoch count, inner folds, inner AUC curve, the training cases' inner out-of-fold probabilities at it)."""
    ytr = y[tr]
    k_in = int(max(2, min(a.inner_folds, np.bincount(ytr.astype(int), minlength=2).min())))
    inner = C.stratified_folds(ytr, k_in, seed)
    P_in = np.full((a.epochs, len(tr), Xt.shape[1]), np.nan)
    for g in range(k_in):
        itr, iva = tr[inner != g], tr[inner == g]
        _, curve = train_net(Xt[itr], y[itr], a, seed * 10 + g, n_img, a.epochs, init_state, X_val=Xt[iva])
        P_in[:, inner == g] = curve
    case_in = P_in.mean(2)  # (epochs, n_train): patient = mean of its slices
    auc_curve = [C.auc(ytr, case_in[e]) for e in range(a.epochs)]
    e_star = choose_epoch(auc_curve)
    return e_star, k_in, auc_curve, case_in[e_star - 1]


def run_fold(Xt: torch.Tensor, y: np.ndarray, tr: np.ndarray, te: np.ndarray, a, seed: int, n_img: int,
             init_state=None) -> dict:
    """One outer fold: inner CV (epoch choice + training-case probabilities), then the outer network."""
    t0 = time.perf_counter()
    e_star, k_in, auc_curve, train_prob = inner_cv(Xt, y, tr, a, seed, n_img, init_state)
    model, _ = train_net(Xt[tr], y[tr], a, seed * 10 + 9, n_img, e_star, init_state)
    p_slices = predict_cases(model, Xt[te], Xt.device.type == "cuda")
    return {"epochs_selected": e_star, "inner_folds": k_in, "inner_auc_curve": [round(v, 4) for v in auc_curve],
            "train_cnn_prob": train_prob, "test_slices": p_slices, "test_prob": p_slices.mean(1),
            "seconds": time.perf_counter() - t0}


FINAL_SEED = 999_983


def final_network(name: str, Xt: torch.Tensor, y: np.ndarray, a, n_img: int, init_state, out: Path) -> dict:
    """The FINAL network of a variant (the run-time Choi bundle's): the CV's epoch rule (``inner_cv``) on ALL the
    cases, then one network on all of them for that many epochs; its state dict (float32, CPU) -> torch.save."""
    t0 = time.perf_counter()
    everyone = np.arange(len(y))
    seed = a.seed + FINAL_SEED
    e_star, k_in, auc_curve, _ = inner_cv(Xt, y, everyone, a, seed, n_img, init_state)
    model, _ = train_net(Xt, y, a, seed * 10 + 9, n_img, e_star, init_state)
    state = {k: v.detach().float().cpu().contiguous() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    path = out / f"choi_cnn_final_{name}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return {"weights": path.name, "sha256": C.sha256_file(path), "epochs": e_star, "inner_folds": k_in,
            "inner_auc_curve": [round(v, 4) for v in auc_curve], "n": int(len(y)), "n_positive": int(y.sum()),
            "seconds": round(time.perf_counter() - t0, 2)}


def subset_for_smoke(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pos, neg = rng.permutation(np.flatnonzero(y == 1)), rng.permutation(np.flatnonzero(y == 0))
    nn_ = max(2, min(len(neg), n // 2))
    return np.sort(np.r_[neg[:nn_], pos[:max(2, n - nn_)]])


def _r(v):
    return None if v is None or not np.isfinite(v) else round(float(v), 6)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "build" / "choi-data" / "choi_slices.npz"))
    ap.add_argument("--out", required=True, help="folder for choi_cnn_oof.json")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help="name=channels@family;... (see the docstring)")
    ap.add_argument("--repeats", type=int, default=3, help="CV repetitions (the first N of the stored folds)")
    ap.add_argument("--repetitions", default="",
                    help="comma list of stored repetitions to run instead of the first --repeats (e.g. 3,4): "
                    "several processes can share a GPU, one repetition each; seeds depend on the repetition and "
                    "fold only, so the split changes nothing (join the outputs with --merge)")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="join choi_cnn_oof.json files of disjoint repetitions into OUT/choi_cnn_oof.json and exit")
    ap.add_argument("--epochs", type=int, default=30, help="maximum epochs (the inner CV picks the count)")
    ap.add_argument("--inner-folds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--time-budget-s", type=float, default=0.0,
                    help="stop before a fold that would not finish within this many seconds of the start (0: none)")
    ap.add_argument("--order", choices=("priority", "interleaved"), default="priority",
                    help="priority: every repetition of the first variant first, then the others interleaved")
    ap.add_argument("--max-cases", type=int, default=0, help="smoke test: a stratified subset, refolded (2-fold)")
    ap.add_argument("--resnet34-weights", help="local ResNet34 state dict (.pth via torch.load(weights_only=True), "
                    "or .safetensors); never downloaded")
    ap.add_argument("--resnet34-sha256", help="its SHA-256 (required with --resnet34-weights)")
    ap.add_argument("--final", action="store_true", help="also train each variant's FINAL network on all its cases "
                    "(the CV's epoch rule on all of them): OUT/choi_cnn_final_<variant>.pt + choi_cnn_final.json, "
                    "what `train --method choi-hybrid` makes the run-time bundle from")
    ap.add_argument("--final-only", action="store_true", help="the final networks only (no cross-validation)")
    a = ap.parse_args(argv)
    if a.merge:
        return merge_outputs([Path(p) for p in a.merge], Path(a.out))
    t_start = time.perf_counter()
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:  # denormal floats (tiny gradients of a network trained from scratch) slow the CPU kernels 10-fold
        torch.set_flush_denormal(True)
    init_state = None
    if a.resnet34_weights:
        init_state = C.load_state_dict_checked(a.resnet34_weights, a.resnet34_sha256 or "")
    data = Data(Path(a.data))
    variants = parse_variants(a.variants)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"what": "Choi 2021 2D ResNet34 out-of-fold IDH probabilities (issue 17)", "data": str(a.data),
           "config": {k: v for k, v in vars(a).items() if k not in ("out",)},
           "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "init": ("ResNet34 weights " + Path(a.resnet34_weights).name + " sha256 "
                                                + str(a.resnet34_sha256)) if a.resnet34_weights else "from scratch",
           "variants": {}}
    cohorts, finals = {}, {}
    for v in variants:
        idx, X, y, Fo = data.cohort(v["family"], v["channels"])
        if a.max_cases:
            keep = subset_for_smoke(y, a.max_cases, a.seed)
            idx, X, y = idx[keep], X[keep], y[keep]
            Fo = np.stack([C.stratified_folds(y, 2, a.seed + 1 + r) for r in range(a.repeats)])
        reps = min(a.repeats, Fo.shape[0])
        n_img = sum(c != "mask" for c in v["channels"])
        Xt = torch.from_numpy(X).to(dev)
        cohorts[v["name"]] = (idx, Xt, y, Fo[:reps], n_img)
        if a.final or a.final_only:
            finals[v["name"]] = {"variant": v["name"], "channels": v["channels"], "family": v["family"],
                                 "grid": int(X.shape[-1]), "case_ids": [data.case_ids[i] for i in idx],
                                 "quantisation": "uint8" if data.images.dtype == np.uint8 else "none"}
        res["variants"][v["name"]] = {"channels": v["channels"], "family": v["family"],
                                      "case_ids": [data.case_ids[i] for i in idx], "y": [int(t) for t in y],
                                      "n": int(len(y)), "n_positive": int(y.sum()), "repetitions": {}}
        print(f"{v['name']}: {len(y)} cases ({int(y.sum())} IDH-mutant), channels {v['channels']}, "
              f"{reps} repetition(s) x {int(Fo.max()) + 1} folds", flush=True)
    if finals:
        for name, rec in finals.items():
            idx, Xt, y, Fo, n_img = cohorts[name]
            rec.update(final_network(name, Xt, y, a, n_img, init_state, out), init=res["init"], device=res["device"],
                       torch=torch.__version__)
            print(f"final network {name}: {rec['n']} cases, {rec['epochs']} epoch(s) (inner AUC curve "
                  f"{rec['inner_auc_curve']}), {rec['seconds']:.1f}s -> {out / rec['weights']}", flush=True)
        tmp = out / "choi_cnn_final.tmp"
        tmp.write_text(json.dumps({"data": str(a.data), "config": res["config"], "variants": finals}))
        os.replace(tmp, out / "choi_cnn_final.json")
        if a.final_only:
            return 0
    jobs = []
    max_reps = max(c[3].shape[0] for c in cohorts.values())
    rep_ids = list(range(max_reps))
    if a.repetitions:
        rep_ids = [int(t) for t in a.repetitions.split(",") if t.strip()]
        if not a.max_cases:  # every stored repetition addressable, not only the first --repeats
            for name, (idx, Xt, y, Fo, n_img) in cohorts.items():
                cohorts[name] = (idx, Xt, y, data.folds[res["variants"][name]["family"]][:, idx], n_img)
        stored = min(c[3].shape[0] for c in cohorts.values())
        bad = [r for r in rep_ids if not 0 <= r < stored]
        if bad:
            raise SystemExit(f"--repetitions {bad}: only repetitions 0-{stored - 1} are available")
    order = ([(variants[0], r) for r in rep_ids] if a.order == "priority" else [])
    for r in rep_ids:  # the (other) variants interleaved: each gets repetition r before any gets r + 1
        order += [(v, r) for v in variants if a.order == "interleaved" or v is not variants[0]]
    for v, r in order:
        Fo = cohorts[v["name"]][3]
        if r < Fo.shape[0]:
            jobs += [(v["name"], r, f) for f in range(int(Fo[r].max()) + 1)]
    fold_seconds, stopped = [], None
    path = out / "choi_cnn_oof.json"
    for j, (name, r, f) in enumerate(jobs):
        idx, Xt, y, Fo, n_img = cohorts[name]
        elapsed = time.perf_counter() - t_start
        est = float(np.mean(fold_seconds)) if fold_seconds else 0.0
        if a.time_budget_s and fold_seconds and elapsed + 1.1 * est > a.time_budget_s:
            stopped = f"time budget {a.time_budget_s:.0f} s: stopped before {name} repetition {r} fold {f}"
            print(stopped, flush=True)
            break
        tr, te = np.flatnonzero(Fo[r] != f), np.flatnonzero(Fo[r] == f)
        fr = run_fold(Xt, y, tr, te, a, a.seed + 1000 * r + 17 * f, n_img, init_state)
        fold_seconds.append(fr["seconds"])
        rep = res["variants"][name]["repetitions"].setdefault(str(r), {
            "oof": [None] * len(y), "oof_slices": [None] * len(y), "folds": {}})
        for i, p, ps in zip(te, fr["test_prob"], fr["test_slices"]):
            rep["oof"][i] = _r(p)
            rep["oof_slices"][i] = [_r(v) for v in ps]
        rep["folds"][str(f)] = {"test_cases": te.tolist(), "epochs_selected": fr["epochs_selected"],
                                "inner_folds": fr["inner_folds"], "inner_auc_curve": fr["inner_auc_curve"],
                                "train_cases": tr.tolist(), "train_cnn_prob": [_r(v) for v in fr["train_cnn_prob"]],
                                "seconds": round(fr["seconds"], 2)}
        rep["complete"] = all(v is not None for v in rep["oof"])
        if rep["complete"]:
            rep["auc"] = round(C.auc(y, np.array(rep["oof"], float)), 4)
        print(f"[{time.perf_counter() - t_start:6.0f}s] {j + 1}/{len(jobs)} {name} rep {r} fold {f}: "
              f"{fr['seconds']:.1f}s, epochs {fr['epochs_selected']}, inner AUC "
              f"{max(fr['inner_auc_curve']):.3f}, fold AUC {C.auc(y[te], fr['test_prob']):.3f}"
              + (f"; repetition AUC {rep['auc']:.3f}" if rep.get("complete") else ""), flush=True)
        res["seconds"] = round(time.perf_counter() - t_start, 1)
        res["stopped"] = stopped
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(res))
        os.replace(tmp, path)
    res["stopped"] = stopped
    res["seconds"] = round(time.perf_counter() - t_start, 1)
    res["seconds_per_fold_mean"] = round(float(np.mean(fold_seconds)), 2) if fold_seconds else None
    summarise(res)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(res))
    os.replace(tmp, path)
    print(f"-> {path} ({res['seconds']:.0f} s)", flush=True)
    return 0


def summarise(res: dict) -> None:
    for name, v in res["variants"].items():
        aucs = [rep["auc"] for _, rep in sorted(v["repetitions"].items(), key=lambda kv: int(kv[0]))
                if rep.get("complete")]
        v["auc_per_repetition"] = aucs
        v["auc_mean"] = round(float(np.mean(aucs)), 4) if aucs else None
        print(f"{name}: complete repetitions {len(aucs)}, AUC per repetition {aucs}, mean {v['auc_mean']}",
              flush=True)


def merge_outputs(paths, out: Path) -> int:
    """One choi_cnn_oof.json from runs of disjoint repetitions (same data, variants and settings)."""
    parts = [json.loads(p.read_text()) for p in paths]
    res = parts[0]
    for p, part in zip(paths[1:], parts[1:]):
        for name, v in part["variants"].items():
            tgt = res["variants"].setdefault(name, v)
            if tgt is v:
                continue
            if tgt["case_ids"] != v["case_ids"]:
                raise SystemExit(f"{p}: variant {name} has other cases than {paths[0]}")
            clash = set(tgt["repetitions"]) & set(v["repetitions"])
            if clash:
                raise SystemExit(f"{p}: repetition(s) {sorted(clash)} of {name} are also in an earlier file")
            tgt["repetitions"].update(v["repetitions"])
    res["merged_from"] = [{"file": str(p), "seconds": part.get("seconds"), "stopped": part.get("stopped"),
                           "repetitions": part["config"].get("repetitions")} for p, part in zip(paths, parts)]
    res["seconds"] = max(part.get("seconds") or 0 for part in parts)
    res["stopped"] = "; ".join(s for s in (part.get("stopped") for part in parts) if s) or None
    summarise(res)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "choi_cnn_oof.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(res))
    os.replace(tmp, path)
    print(f"-> {path} (merged {len(paths)} files)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
