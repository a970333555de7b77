"""Choi 2021 hybrid IDH model (Neuro-Oncology 23(2):304-313; ../shared/papers/choi2021_hybrid_idh.txt).

Model 2 of the paper, as far as its methods section states it:
- image input: axial T1C and T2 images and the tumour mask, 128 x 128, after registration to a 1-mm grid and
  resampling of each volume to 128 x 128 x 128; FIVE slices per patient: the axial slice with the largest tumour
  area ("maximum tumour image") and the slices +4, +2, -2, -4 from it (``select_slices``), each slice a sample; the
  patient's probability is the mean over its five slices;
- classifier: the 34-layer ResNet of He et al. 2016 (7x7 stem, layers of 3, 4, 6, 3 BasicBlocks with two 3x3
  convolutions each; ``ResNet34``), here with a one-logit head (IDH-mutant) and one input channel per image;
- numeric inputs: age + 3D shape + loci features, selected by a univariate t-test on IDH status in the development
  data (``ttest_select``: inside each training fold here).
The paper fuses them by fine-tuning fully connected layers on top of the frozen ResNet; here (issue 17) the fusion
is a logistic regression on the CNN's patient probability (logit) + the selected shape / loci features + age
(``HybridLogistic``), which gives a nomogram like our other bundles.

Missing T2 (TCGA-LGG has none): the paper's ablation (eTable 4) retrained the network with fewer image sequences;
we do the same: a channel that a cohort lacks is DROPPED (the network is built and trained with fewer input
channels), never zero-filled or substituted silently. A FLAIR-for-T2 substitution is offered only as a named,
separate variant.

This module imports only numpy and torch at the top (scipy lazily), so that the GPU training script can load it by
path on a machine without SimpleITK or the rest of the package. Pretrained weights are never downloaded: a local
file whose SHA-256 is checked before ``torch.load(weights_only=True)`` (or safetensors).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

try:  # the hybrid logistic and slice selection work without torch
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError:  # pragma: no cover - torch is a dependency of the deep features
    torch = None
    nn = None

SLICE_OFFSETS = (-4, -2, 0, 2, 4)   # the paper: maximum tumour slice and +-2, +-4
GRID = 128                          # the paper's 128 x 128 x 128 network grid
RESNET34_LAYERS = (3, 4, 6, 3)
CHANNELS_PAPER = ("t1c", "t2", "mask")


class WeightsError(ValueError):
    """A weights file that is absent, altered (SHA-256) or does not fit the network."""


# ----------------------------------------------------------------------------------------------------------------
# slices
# ----------------------------------------------------------------------------------------------------------------
def max_area_slice(mask_zyx: np.ndarray) -> int:
    """Index (axis 0 = axial) of the slice with the largest tumour area; ties: the lowest index."""
    m = np.asarray(mask_zyx) > 0
    if m.ndim != 3:
        raise ValueError(f"mask must be 3-D (z, y, x), got shape {m.shape}")
    area = m.reshape(m.shape[0], -1).sum(1)
    if area.max() == 0:
        raise ValueError("the tumour mask is empty: no slice to select")
    return int(np.argmax(area))


def select_slices(mask_zyx: np.ndarray, offsets: Sequence[int] = SLICE_OFFSETS) -> List[int]:
    """The paper's five axial slices: the maximum tumour slice + ``offsets``; an offset beyond the volume is clipped
    to the first / last slice (the paper does not say; a tumour at the edge of the volume repeats its edge slice)."""
    c = max_area_slice(mask_zyx)
    nz = np.asarray(mask_zyx).shape[0]
    return [int(min(max(c + o, 0), nz - 1)) for o in offsets]


# ----------------------------------------------------------------------------------------------------------------
# ResNet34
# ----------------------------------------------------------------------------------------------------------------
if nn is not None:
    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, cin: int, cout: int, stride: int = 1):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            out = F.relu(self.bn1(self.conv1(x)), inplace=True)
            out = self.bn2(self.conv2(out))
            return F.relu(out + idt, inplace=True)

    class ResNet34(nn.Module):
        """He et al. 2016 34-layer ResNet (torchvision's parameter names, so that its state dict loads)."""

        def __init__(self, in_channels: int = 3, num_classes: int = 1, layers: Sequence[int] = RESNET34_LAYERS):
            super().__init__()
            self.in_channels, self.num_classes = int(in_channels), int(num_classes)
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin = 64
            for i, (n, cout) in enumerate(zip(layers, (64, 128, 256, 512))):
                blocks = []
                for j in range(n):
                    blocks.append(BasicBlock(cin, cout, 2 if (j == 0 and i > 0) else 1))
                    cin = cout
                setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.fc = nn.Linear(512, num_classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
            for m in self.modules():  # zero-init of each block's last BN: a common, stable from-scratch choice
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

        def features(self, x):
            x = self.maxpool(F.relu(self.bn1(self.conv1(x)), inplace=True))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

        def forward(self, x):
            return self.fc(self.features(x))


def n_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def resnet34_parameter_count(in_channels: int = 3, num_classes: int = 1000) -> int:
    """Closed form of the ResNet34 parameter count (conv weights, BN scale + shift, fc weight + bias), independent of
    the torch module: 21,797,672 for 3 channels and 1000 classes (the published 21.8 M)."""
    total = in_channels * 64 * 49 + 2 * 64              # stem conv + BN
    cin = 64
    for i, (n, cout) in enumerate(zip(RESNET34_LAYERS, (64, 128, 256, 512))):
        for j in range(n):
            total += cin * cout * 9 + 2 * cout + cout * cout * 9 + 2 * cout
            if cin != cout:
                total += cin * cout + 2 * cout          # 1x1 projection shortcut + BN
            cin = cout
    return total + 512 * num_classes + num_classes


# ----------------------------------------------------------------------------------------------------------------
# weights: local files only, SHA-256 checked
# ----------------------------------------------------------------------------------------------------------------
def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state_dict_checked(path, expected_sha256: str) -> Dict[str, "torch.Tensor"]:
    """A state dict from a LOCAL file whose SHA-256 must equal ``expected_sha256`` (never downloaded).
    ``.safetensors`` through safetensors, anything else through ``torch.load(weights_only=True)`` (no pickle code
    runs)."""
    p = Path(path)
    if not expected_sha256 or len(expected_sha256.strip()) != 64:
        raise WeightsError(f"{p}: a 64-hex-digit SHA-256 must be given for a weights file (--resnet34-sha256)")
    if not p.is_file():
        raise WeightsError(f"{p}: weights file not found (weights are never downloaded; give a local file)")
    digest = sha256_file(p)
    if digest != expected_sha256.strip().lower():
        raise WeightsError(f"{p}: SHA-256 mismatch (expected {expected_sha256.strip().lower()[:12]}..., got "
                           f"{digest[:12]}...): the file is not the one named; refusing to load it")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(p))
    else:
        state = torch.load(p, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{p}: not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def adapt_resnet34_state(model, state: Dict[str, "torch.Tensor"], where: str = "weights") -> Dict[str, List[str]]:
    """Load a ResNet34 state dict (e.g. ImageNet's 3-channel, 1000-class one) into ``model``: the stem is adapted to
    the model's input channels (the mean over the RGB filters repeated, scaled by 3 / channels), a head of another
    size is left at its fresh initialisation. Every other tensor must match in name and shape."""
    own = model.state_dict()
    out, skipped = {}, []
    for k, v in state.items():
        if k not in own:
            if k.endswith("num_batches_tracked"):
                continue
            raise WeightsError(f"{where}: unexpected tensor '{k}' (not a ResNet34 state dict?)")
        if k == "conv1.weight" and v.shape != own[k].shape:
            c = own[k].shape[1]
            v = v.float().mean(1, keepdim=True).repeat(1, c, 1, 1) * (v.shape[1] / c)
        if k.startswith("fc.") and v.shape != own[k].shape:
            skipped.append(k)
            continue
        if v.shape != own[k].shape:
            raise WeightsError(f"{where}: '{k}' has shape {tuple(v.shape)}, the network needs {tuple(own[k].shape)}")
        out[k] = v
    missing = [k for k in own if k not in out and k not in skipped and not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsError(f"{where}: missing tensors {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    model.load_state_dict(out, strict=False)
    return {"loaded": sorted(out), "fresh": skipped}


# ----------------------------------------------------------------------------------------------------------------
# network input
# ----------------------------------------------------------------------------------------------------------------
def resample_grid(img, interpolator, grid: int = GRID):
    """The volume resampled to ``grid``^3 voxels spanning the same field of view (edges aligned); (image, spacing)."""
    import SimpleITK as sitk
    size = np.array(img.GetSize(), float)
    sp_in = np.array(img.GetSpacing(), float)
    sp = size * sp_in / grid
    D = np.array(img.GetDirection()).reshape(3, 3)
    origin = np.array(img.GetOrigin()) + D @ ((sp - sp_in) / 2.0)
    out = sitk.Resample(img, [int(grid)] * 3, sitk.Transform(), interpolator, origin.tolist(), sp.tolist(),
                        img.GetDirection(), 0.0, img.GetPixelID())
    return out, sp


def volume_slices(images: Dict[str, object], mask, channels: Sequence[str] = ("t1c", "flair", "mask"),
                  grid: int = GRID, quantisation: str = "uint8"):
    """The CNN's slices of one case, the ONE definition for the training data (scripts/prepare_choi_data.py) and
    the run-time bundle (``case_input``): each volume (SimpleITK; ``images``: sequence -> image or None, ``mask``:
    the tumour label map, > 0 = tumour) resampled to ``grid``^3 over its field of view (linear / nearest
    neighbour); the axial slices of ``select_slices`` on the resampled mask. ``quantisation`` 'uint8' stores the
    image channels rounded and clipped to 0-255 (the 8-bit TCGA sources), 'none' as float32. Returns
    (slices (S, C, grid, grid), available (C,), norm (C, 2): each image's 3-D foreground (> 0) mean and SD for the
    z-scoring of ``network_input``, facts)."""
    import SimpleITK as sitk
    if quantisation not in ("uint8", "none"):
        raise ValueError(f"quantisation '{quantisation}': 'uint8' or 'none'")
    m_img, sp = resample_grid(mask, sitk.sitkNearestNeighbor, grid)
    m = sitk.GetArrayFromImage(m_img) > 0
    idx = select_slices(m)
    out = np.zeros((len(idx), len(channels), grid, grid), np.uint8 if quantisation == "uint8" else np.float32)
    avail = np.zeros(len(channels), bool)
    norm = np.zeros((len(channels), 2), np.float32)
    clipped = {}
    for j, seq in enumerate(channels):
        if seq == "mask":
            out[:, j] = m[idx]
            avail[j] = True
            norm[j] = (0.0, 1.0)
            continue
        img = images.get(seq)
        if img is None:
            continue
        im, _ = resample_grid(sitk.Cast(img, sitk.sitkFloat32), sitk.sitkLinear, grid)
        a = sitk.GetArrayFromImage(im)
        fg = a[a > 0]
        norm[j] = (float(fg.mean()), float(fg.std())) if fg.size else (0.0, 1.0)
        if quantisation == "uint8":
            sl = a[idx]
            clipped[seq] = float(np.mean(sl > 255.5))
            out[:, j] = np.clip(np.round(sl), 0, 255).astype(np.uint8)
        else:
            out[:, j] = a[idx]
        avail[j] = True
    facts = {"slices": idx, "center": idx[len(idx) // 2], "spacing_mm": [round(float(s), 4) for s in sp],
             "max_area_px": int(m[idx[len(idx) // 2]].sum()), "clipped_fraction": clipped}
    return out, avail, norm, facts


def network_input(slices_u8: np.ndarray, channel_names: Sequence[str], norm: np.ndarray, use: Sequence[str]):
    """(S, C_stored, H, W) uint8 slices -> (S, len(use), H, W) float32: image channels z-scored with the case's
    3-D foreground mean / SD (``norm``: (C_stored, 2)), the mask channel 0 / 1."""
    idx = [list(channel_names).index(c) for c in use]
    x = slices_u8[:, idx].astype(np.float32)
    for j, c in enumerate(use):
        if c != "mask":
            mu, sd = norm[idx[j]]
            x[:, j] = (x[:, j] - mu) / max(float(sd), 1e-6)
        else:
            x[:, j] = (x[:, j] > 0).astype(np.float32)
    return x


# ----------------------------------------------------------------------------------------------------------------
# AUC (numpy; ties count half) and folds
# ----------------------------------------------------------------------------------------------------------------
def auc(y, p) -> float:
    y, p = np.asarray(y, float), np.asarray(p, float)
    pos, neg = p[y == 1], p[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    d = pos[:, None] - neg[None, :]
    return float(((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size)


def stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index per sample, stratified (numpy only: the inner splits of the GPU script)."""
    y = np.asarray(y).astype(int)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), int)
    offset = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)
    return fold


# ----------------------------------------------------------------------------------------------------------------
# the hybrid logistic model
# ----------------------------------------------------------------------------------------------------------------
def ttest_select(X: np.ndarray, y: np.ndarray, names: Sequence[str], alpha: float = 0.05,
                 force: Sequence[str] = ()) -> List[str]:
    """Choi's numeric-input selection: a univariate (Welch) t-test of each feature between IDH groups, p < alpha;
    ``force`` columns (the CNN probability) are always kept."""
    from scipy.stats import ttest_ind
    X, y = np.asarray(X, float), np.asarray(y).astype(int)
    keep = []
    for j, n in enumerate(names):
        if n in force:
            keep.append(n)
            continue
        a, b = X[y == 1, j], X[y == 0, j]
        if np.nanstd(X[:, j]) == 0:
            continue
        p = ttest_ind(a, b, equal_var=False, nan_policy="omit").pvalue
        if np.isfinite(p) and p < alpha:
            keep.append(n)
    return keep


def logistic_fit(X: np.ndarray, y: np.ndarray, C: float = 1.0, max_iter: int = 100, tol: float = 1e-10):
    """L2-penalised logistic regression by Newton-Raphson, the objective of scikit-learn's LogisticRegression(C=C)
    (penalty 0.5 ||w||^2 / C on the weights, intercept unpenalised). Returns (w, b)."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    n, d = X.shape
    Z = np.hstack([X, np.ones((n, 1))])
    beta = np.zeros(d + 1)
    lam = np.r_[np.full(d, 1.0 / C), 0.0]
    for _ in range(max_iter):
        eta = Z @ beta
        p = 1.0 / (1.0 + np.exp(-eta))
        g = Z.T @ (p - y) + lam * beta
        H = (Z * (p * (1 - p))[:, None]).T @ Z + np.diag(lam) + 1e-12 * np.eye(d + 1)
        step = np.linalg.solve(H, g)
        beta -= step
        if np.max(np.abs(step)) < tol:
            break
    return beta[:d], float(beta[d])


def logit(p, eps: float = 1e-4):
    p = np.clip(np.asarray(p, float), eps, 1 - eps)
    return np.log(p / (1 - p))


class HybridLogistic:
    """CNN probability (as its logit, column ``cnn_logit``) + t-test-selected shape / loci / age features ->
    standardised L2 logistic regression. Fitted on one training set; everything (selection, standardisation,
    imputation means) from that set only."""

    def __init__(self, C: float = 1.0, alpha: float = 0.05, force: Sequence[str] = ("cnn_logit",)):
        self.C, self.alpha, self.force = float(C), float(alpha), tuple(force)

    def fit(self, X: np.ndarray, y: np.ndarray, names: Sequence[str]):
        X = np.asarray(X, float)
        self.means_ = np.nanmean(X, 0)
        X = np.where(np.isfinite(X), X, self.means_)
        self.features_ = ttest_select(X, y, names, self.alpha, self.force)
        cols = [list(names).index(n) for n in self.features_]
        self.names_, self.cols_ = list(names), cols
        Xs = X[:, cols]
        self.center_ = Xs.mean(0)
        self.scale_ = Xs.std(0)
        self.scale_[self.scale_ == 0] = 1.0
        self.coef_, self.intercept_ = logistic_fit((Xs - self.center_) / self.scale_, y, self.C)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, float)
        X = np.where(np.isfinite(X), X, self.means_)[:, self.cols_]
        return self.intercept_ + ((X - self.center_) / self.scale_) @ self.coef_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.decision_function(X)))


# ----------------------------------------------------------------------------------------------------------------
# the hybrid in the CNN's folds (CPU, from the out-of-fold CNN probabilities of scripts/train_choi_cnn.py)
# ----------------------------------------------------------------------------------------------------------------
HYBRID_PREFIXES = ("mask_WT_original_shape_", "loc_WT_")   # 3D shape + loci (atlas lobe percentages)
HYBRID_CLINICAL = ("age",)
VARIANTS = {"t1c+mask": "t1c,mask@flair-t1-t1c", "t1c+flair+mask": "t1c,flair,mask@flair-t1-t1c",
            "flair+mask": "flair,mask@flair"}


def hybrid_columns(columns: Sequence[str]) -> List[str]:
    """The numeric inputs the hybrid is offered besides the CNN: 3D shape + loci columns of the feature table, age."""
    cols = [c for c in columns if str(c).startswith(HYBRID_PREFIXES)]
    return cols + [c for c in HYBRID_CLINICAL if c in columns]


def age_logistic(age_tr, y_tr, age_te) -> np.ndarray:
    """Age alone: unpenalised logistic regression on standardised age, missing ages at the training mean (the
    'age' baseline of train.repeated_cv)."""
    a_tr, a_te = np.asarray(age_tr, float), np.asarray(age_te, float)
    mu = np.nanmean(a_tr)
    a_tr, a_te = np.where(np.isfinite(a_tr), a_tr, mu), np.where(np.isfinite(a_te), a_te, mu)
    m, sd = a_tr.mean(), a_tr.std() or 1.0
    w, b = logistic_fit(((a_tr - m) / sd)[:, None], y_tr, C=np.inf)
    return 1.0 / (1.0 + np.exp(-(b + ((a_te - m) / sd) * w[0])))


def hybrid_repetition(rep: dict, y: np.ndarray, X: np.ndarray, names: Sequence[str], age: np.ndarray = None,
                      C: float = 1.0, alpha: float = 0.05) -> dict:
    """One complete CV repetition of the CNN JSON (``rep``: oof, folds with train_cases / train_cnn_prob /
    test_cases): in each fold the hybrid is fitted on the training cases with THEIR CNN input = the inner
    out-of-fold probability (never an in-sample CNN output), t-test selection + standardisation inside the fold, and
    predicts the held-out cases from their outer out-of-fold CNN probability. ``age`` also gives the age-alone
    baseline on the same folds."""
    y = np.asarray(y).astype(int)
    n = len(y)
    oof = np.array([np.nan if v is None else v for v in rep["oof"]], float)
    if not np.isfinite(oof).all():
        raise ValueError("the repetition is incomplete (a case has no out-of-fold CNN probability)")
    cols = ["cnn_logit"] + list(names)
    p_h, p_a = np.full(n, np.nan), np.full(n, np.nan)
    selected = {}
    for f, fd in sorted(rep["folds"].items(), key=lambda kv: int(kv[0])):
        tr, te = np.asarray(fd["train_cases"], int), np.asarray(fd["test_cases"], int)
        cnn_tr = np.array([np.nan if v is None else v for v in fd["train_cnn_prob"]], float)
        if len(cnn_tr) != len(tr) or not np.isfinite(cnn_tr).all():
            raise ValueError(f"fold {f}: training cases' CNN probabilities missing")
        h = HybridLogistic(C, alpha).fit(np.column_stack([logit(cnn_tr), X[tr]]), y[tr], cols)
        p_h[te] = h.predict_proba(np.column_stack([logit(oof[te]), X[te]]))
        selected[f] = list(h.features_)
        if age is not None:
            p_a[te] = age_logistic(age[tr], y[tr], age[te])
    out = {"auc_hybrid": auc(y, p_h), "auc_cnn": auc(y, oof), "p_hybrid": p_h, "p_cnn": oof,
           "features_per_fold": selected}
    if age is not None:
        out["auc_age"], out["p_age"] = auc(y, p_a), p_a
    return out


HYBRID_TITLES = {"cnn_logit": "CNN (logit)", "age": "Age"}


def hybrid_nomogram(h: Mapping, X_train: np.ndarray) -> dict:
    """The hybrid's nomogram (rms style, nomogram.geometry_from_training, as the logistic bundles'): one variable per
    feature (CNN logit, the kept shape / loci columns, age), trimmed ranges of ``X_train`` (training cases x
    ``h['features']``, missing values as the fit imputed them), from the stored (rounded) coefficients / centering.
    Returns the nomogram dict with its ``variables`` (name, features, c_min, c_max, axis)."""
    from .nomogram import geometry_from_training
    groups = {HYBRID_TITLES.get(f, f): [f] for f in h["features"]}
    variables, nomo = geometry_from_training(list(h["features"]), h["coef"], h["center"], h["scale"],
                                             float(h["intercept"]), X_train, groups, {"age": "years"})
    return {**nomo, "variables": variables}


def hybrid_model_bundle(b: Mapping):
    """The bundle's hybrid logistic part as a bundle.ModelBundle (its nomogram from the bundle's ``nomogram`` block),
    so that a case's points and nomogram block come from the logistic path's code (ModelBundle.predict_proba_row,
    nomogram.case_nomogram); None for a bundle saved without a nomogram."""
    from .bundle import ModelBundle, NomogramVariable
    if not b.get("nomogram"):
        return None
    h = b["hybrid"]
    nomo = {k: v for k, v in b["nomogram"].items() if k != "variables"}
    return ModelBundle(task=b["task"], name=b["name"], version=str(b.get("version")), features=list(h["features"]),
                       center=list(h["center"]), scale=list(h["scale"]), coefficients=list(h["coef"]),
                       intercept=float(h["intercept"]), cutoff=float(b["cutoff"]),
                       variables=[NomogramVariable(**v) for v in b["nomogram"]["variables"]], nomogram=nomo,
                       feature_schema=b.get("feature_schema") or {}, training=b.get("training") or {},
                       metrics=b.get("metrics") or {}, synthetic=bool(b["synthetic"]),
                       positive_label=CHOI_LABELS[1], negative_label=CHOI_LABELS[0],
                       intended_use=str(b.get("intended_use")),
                       imputation=dict(zip(h["features"][1:], map(float, h["means"][1:]))))


def hybrid_cv(cnn_json: dict, variant: str, table, label: str = "IDH", id_column: str = "case_id",
              C: float = 1.0, alpha: float = 0.05) -> dict:
    """The hybrid on every COMPLETE repetition of ``variant`` in a train_choi_cnn.py JSON, with the feature
    ``table`` (pandas; shape / loci / age columns) joined on ``id_column``; plus the final hybrid fitted on all cases
    (CNN input: the mean over the complete repetitions of each case's out-of-fold probability)."""
    v = cnn_json.get("variants", {}).get(variant)
    if v is None:
        raise ValueError(f"variant '{variant}' not in the CNN file ({', '.join(cnn_json.get('variants', {}))})")
    ids, y = [str(c) for c in v["case_ids"]], np.asarray(v["y"], int)
    t = table.copy()
    t[id_column] = t[id_column].astype(str)
    t = t.drop_duplicates(id_column).set_index(id_column)
    missing = [c for c in ids if c not in t.index]
    if missing:
        raise ValueError(f"{len(missing)} CNN case(s) have no row in the feature table: {', '.join(missing[:5])}")
    t = t.loc[ids]
    if label in t.columns:
        lab = t[label].to_numpy(float)
        bad = [c for c, a, b in zip(ids, lab, y) if np.isfinite(a) and int(a) != int(b)]
        if bad:
            raise ValueError(f"label '{label}' differs between the table and the CNN file for {', '.join(bad[:5])}")
    names = hybrid_columns(list(t.columns))
    X = t[names].apply(lambda s: s.astype(float)).to_numpy(float) if names else np.zeros((len(ids), 0))
    age = t["age"].to_numpy(float) if "age" in t.columns else None
    reps = {r: rep for r, rep in sorted(v["repetitions"].items(), key=lambda kv: int(kv[0])) if rep.get("complete")}
    if not reps:
        raise ValueError(f"variant '{variant}': no complete CV repetition in the CNN file")
    res = {r: hybrid_repetition(rep, y, X, names, age, C, alpha) for r, rep in reps.items()}
    mean_oof = np.mean([[np.nan if p is None else p for p in reps[r]["oof"]] for r in reps], 0)
    X_final = np.column_stack([logit(mean_oof), X])
    final = HybridLogistic(C, alpha).fit(X_final, y, ["cnn_logit"] + names)
    fh = {"features": final.features_, "center": final.center_.round(6).tolist(),
          "scale": final.scale_.round(6).tolist(), "coef": final.coef_.round(6).tolist(),
          "intercept": round(final.intercept_, 6)}
    X_train = np.where(np.isfinite(X_final), X_final, final.means_)[:, final.cols_]  # as the fit saw them

    def _m(key):
        vals = [round(res[r][key], 4) for r in res]
        return {"per_repetition": vals, "mean": round(float(np.mean(vals)), 4)}

    from .evaluation import compare_repeated, repeated_cv_summary
    P = {k: np.vstack([res[r][f"p_{k}"] for r in res]) for k in ("hybrid", "cnn", "age") if f"p_{k}" in res[next(iter(res))]}
    # spread over repetitions and CIs (DeLong; case bootstrap; repetitions x bootstrap: selection variability too)
    summary = {k: {kk: vv for kk, vv in repeated_cv_summary(y, P[k]).items() if kk != "auc_ci_notes"} for k in P}
    paired = {f"hybrid_vs_{k}": compare_repeated(y, P["hybrid"], P[k], "hybrid", k) for k in P if k != "hybrid"}
    return {"variant": variant, "channels": v.get("channels"), "family": v.get("family"), "n": len(y),
            "n_positive": int(y.sum()), "repetitions": [int(r) for r in res], "offered": names,
            "cnn": _m("auc_cnn"), "hybrid": _m("auc_hybrid"), **({"age": _m("auc_age")} if age is not None else {}),
            "summary": summary, "paired_same_folds": paired,
            "features_per_fold": {r: res[r]["features_per_fold"] for r in res},
            "final_hybrid": {**fh,
                             "means": [round(float(final.means_[final.names_.index(f)]), 6) for f in final.features_],
                             "C": C, "ttest_alpha": alpha,
                             "cnn_input": "mean over the complete repetitions of each case's out-of-fold CNN "
                                          "probability, as logit",
                             "nomogram": hybrid_nomogram(fh, X_train)},
            "oof_hybrid": {r: [round(float(p), 6) for p in res[r]["p_hybrid"]] for r in res}, "case_ids": ids}


# ----------------------------------------------------------------------------------------------------------------
# the run-time bundle: JSON + the final CNN's state dict (SHA-256 checked), applied by `predict` and `run`
# ----------------------------------------------------------------------------------------------------------------
CHOI_FORMAT = "glioma-radiogenomics-choi-hybrid-bundle"
# The shipped optional model's weights (ResNet34, 42.7 MB in float16) are over the repository's 5 MB per-file limit:
# the bundle JSON ships, the weights are built locally (docs/choi.md)
WEIGHTS_HINT = ("The shipped optional model choi-idh ships without its weights (42.7 MB, over the repository's 5 MB "
                "file limit): build them with `python scripts/build_choi_bundle.py` (needs the TCGA-LGG cohort; "
                "~20 min on 2 CPU cores), which installs a bundle + weights pair")
CHOI_SCHEMA_VERSION = 1
CHOI_INTENDED_USE = ("Research probability of an IDH mutation (Choi 2021 hybrid: CNN + shape + loci + age), not a "
                     "diagnosis; not validated for clinical use")
CHOI_LABELS = ("IDH-wildtype", "IDH-mutant")
_CNN_CACHE: Dict[str, object] = {}


def _bundle_error(msg: str):
    from .bundle import BundleError
    return BundleError(msg)


def weights_path(path, d: Mapping) -> Path:
    """Where a Choi bundle's CNN weights file lies: beside the bundle, named by ``cnn.weights``."""
    return Path(path).parent / str((d.get("cnn") or {}).get("weights", ""))


def _is_shipped_model(d: Mapping) -> bool:
    """True when a Choi bundle is the shipped optional model (its CNN's SHA-256 is the one a shipped Choi bundle
    records), wherever its JSON lies: only then does the missing-weights message point to the build script."""
    from .bundle import optional_models
    sha = str((d.get("cnn") or {}).get("sha256", "")).lower()
    for entry in optional_models().values():
        try:
            shipped = json.loads(Path(entry["path"]).read_text())
        except (OSError, ValueError):
            continue
        if shipped.get("format") == CHOI_FORMAT and sha and str((shipped.get("cnn") or {}).get("sha256", "")) == sha:
            return True
    return False


def load_choi_bundle(path) -> dict:
    """Read and check a Choi hybrid bundle (JSON) and its CNN weights file (beside it, named in ``cnn.weights``):
    BundleError naming the file when a key is missing, the weights file is absent or its SHA-256 differs from the
    bundle's. The returned dict carries the weights' path as ``_weights_path`` (not part of the file)."""
    from .bundle import read_format_json
    path = Path(path)
    d = read_format_json(path, CHOI_FORMAT, CHOI_SCHEMA_VERSION, ("name", "task", "cnn", "input", "hybrid", "cutoff",
                                                                  "synthetic", "training", "metrics", "intended_use"),
                         "Choi 2021 hybrid")
    h = d["hybrid"]
    n = len(h.get("features", []))
    if not n or h["features"][0] != "cnn_logit" or any(len(h.get(k, [])) != n for k in ("center", "scale", "coef",
                                                                                         "means")):
        raise _bundle_error(f"{path}: hybrid features / center / scale / coef / means do not match")
    w = weights_path(path, d)
    if not d["cnn"].get("weights") or not w.is_file():
        hint = WEIGHTS_HINT if _is_shipped_model(d) else (
            "Copy the weights file that `train --method choi-hybrid` wrote with this bundle beside it")
        raise _bundle_error(f"{w}: the CNN weights file of the Choi bundle {path.name} is missing (it must lie "
                            f"beside the bundle; SHA-256 {str(d['cnn'].get('sha256', ''))[:12]}...). {hint}")
    digest = sha256_file(w)
    if digest != str(d["cnn"].get("sha256", "")).lower():
        raise _bundle_error(f"{w}: SHA-256 {digest[:12]}... differs from the one recorded in {path.name} "
                            f"({str(d['cnn'].get('sha256'))[:12]}...): the weights file was altered or replaced; "
                            "refusing to load it")
    if d.get("nomogram") is not None:
        from .nomogram import check_geometry
        nomo = d["nomogram"]
        vs = nomo.get("variables") if isinstance(nomo, Mapping) else None
        problem = "the nomogram block has no variables" if not isinstance(vs, list) else None
        if problem is None and sorted(f for v in vs for f in v.get("features", [])) != sorted(h["features"]):
            problem = "the nomogram variables do not cover the hybrid's features exactly once"
        try:
            problem = problem or check_geometry(nomo, vs)
        except (KeyError, TypeError, AttributeError) as exc:
            problem = f"unreadable nomogram ({type(exc).__name__}: {exc})"
        if problem:
            raise _bundle_error(f"{path}: {problem}")
    return {**d, "_weights_path": str(w)}


def load_cnn(b: dict):
    """The bundle's ResNet34 in eval mode on the CPU, its state dict loaded with ``torch.load(weights_only=True)``
    after the SHA-256 check (cached per digest)."""
    key = b["cnn"]["sha256"]
    if key not in _CNN_CACHE:
        try:
            state = load_state_dict_checked(b["_weights_path"], key)
        except WeightsError as exc:
            raise _bundle_error(str(exc)) from None
        model = ResNet34(int(b["cnn"]["in_channels"]), 1, tuple(b["cnn"].get("blocks", RESNET34_LAYERS)))
        model.load_state_dict(state)
        _CNN_CACHE[key] = model.eval()
    return _CNN_CACHE[key]


def cnn_probability(model, x: np.ndarray) -> Tuple[float, List[float]]:
    """(patient probability = mean over the slices, per-slice probabilities) for (S, C, H, W) float32 input."""
    with torch.no_grad():
        p = torch.sigmoid(model(torch.from_numpy(np.ascontiguousarray(x, np.float32))).squeeze(1)).double().numpy()
    return float(p.mean()), [float(v) for v in p]


def hybrid_probability(h: dict, cnn_prob: float, values: Mapping[str, object]) -> Tuple[float, List[str]]:
    """(probability, imputed features) of the bundle's hybrid logistic part: x = [logit(CNN probability)] + the
    features' values (a missing / non-numeric value takes the training mean, named in ``imputed``);
    p = 1 / (1 + exp(-(intercept + sum(coef * (x - center) / scale))))."""
    x, imputed = [float(logit(cnn_prob))], []
    for f, mean in zip(h["features"][1:], h["means"][1:]):
        try:
            v = float(values.get(f))
        except (TypeError, ValueError):
            v = float("nan")
        if not np.isfinite(v):
            v = float(mean)
            imputed.append(f)
        x.append(v)
    z = (np.asarray(x) - np.asarray(h["center"], float)) / np.asarray(h["scale"], float)
    eta = float(h["intercept"]) + float(z @ np.asarray(h["coef"], float))
    return 1.0 / (1.0 + np.exp(-eta)), imputed


def image_features(b: dict) -> List[str]:
    """The hybrid's features that come from the images (shape, loci), i.e. all but the CNN and the clinical ones."""
    return [f for f in b["hybrid"]["features"][1:] if f not in HYBRID_CLINICAL]


def case_input(b: dict, images: Mapping[str, object], mask) -> Tuple[np.ndarray, dict]:
    """The CNN input of one case as the bundle's training data were made (``volume_slices`` with the bundle's
    channels, grid and quantisation, then ``network_input``); InputError when the case lacks a sequence the
    variant needs (never imputed) or has no tumour."""
    from .io import InputError
    inp = b["input"]
    chans = list(inp["channels"])
    lacking = [c for c in chans if c != "mask" and images.get(c) is None]
    if lacking:
        raise InputError(f"needs {', '.join(c.upper() for c in lacking)} (input variant {inp.get('variant')}: "
                         f"{'+'.join(chans)}); a missing sequence is not imputed")
    try:
        sl, _, norm, facts = volume_slices(images, mask, chans, int(inp["grid"]), inp.get("quantisation", "uint8"))
    except ValueError as exc:  # an empty tumour mask
        raise InputError(f"no CNN input: {exc}") from None
    return network_input(sl, chans, norm, chans), facts


def predict_entry(b: dict, images: Mapping[str, object], mask, values: Mapping[str, object],
                  prov: Optional[dict]) -> Tuple[dict, List[str]]:
    """One case: the CNN probability (mean over the slices), then the hybrid probability and label at the cutoff;
    probability None and the reason where a sequence is missing, the tumour is empty or the shape / loci features
    are missing or made differently (shim.check_offered against the bundle's ``feature_schema``)."""
    from .io import InputError
    from .shim import check_offered
    e = {"task": b["task"], "kind": "choi", "paper": "Choi 2021", "model": b["name"], "version": b.get("version"),
         "trained_on": b["training"].get("trained_on"), "synthetic": bool(b["synthetic"]),
         "intended_use": b.get("intended_use"), "probability": None, "label": None, "cutoff": b["cutoff"]}
    warnings: List[str] = []
    try:
        warnings += check_offered({"name": b["name"], "features": image_features(b)}, list(values), prov,
                                  b.get("feature_schema") or {})
        x, facts = case_input(b, images, mask)
    except InputError as exc:
        e["reason"] = str(exc)
        return e, warnings
    q, per_slice = cnn_probability(load_cnn(b), x)
    p, imputed = hybrid_probability(b["hybrid"], q, values)
    e.update(probability=p, label=CHOI_LABELS[int(p >= b["cutoff"])], cnn_probability=q,
             cnn_slice_probabilities=per_slice, slices=facts["slices"], imputed=";".join(imputed))
    mb = hybrid_model_bundle(b)
    if mb is not None:  # the case on the hybrid's nomogram, by the logistic bundles' code (predict.predict_one)
        from .nomogram import case_nomogram
        row = {"cnn_logit": float(logit(q))}
        for f in b["hybrid"]["features"][1:]:
            row[f] = float("nan") if f in imputed else float(values.get(f))
        r = mb.predict_proba_row(row)
        e["nomogram"] = case_nomogram(mb, r, r["imputed"])
        warnings += [w for w in r["warnings"] if "outside the nomogram" in w]
    clipped = {k: v for k, v in facts.get("clipped_fraction", {}).items() if v > 0}
    if clipped:
        warnings.append(f"model '{b['name']}': " + ", ".join(f"{100 * v:.1f} % of the {k.upper()} slice voxels"
                                                             for k, v in clipped.items())
                        + " above 255 clipped, as the model's 8-bit training images were")
    return e, warnings


def read_case_folder_images(folder: Path, channels: Sequence[str]):
    """(images by sequence, tumour mask) of a case folder (inputs.scan_case_folder: the sequences and the one mask
    file); InputError naming the folder when it has no mask."""
    import SimpleITK as sitk
    from .inputs import no_tumor_mask_text, scan_case_folder
    from .io import InputError
    files = scan_case_folder(folder)
    if files.mask is None:
        raise InputError(f"{folder}: no tumour mask file (names with mask, seg, label, abnormality or ROI) for the "
                         "Choi CNN's slices" + no_tumor_mask_text([m.name for m in files.masks]))
    images = {}
    for c in channels:
        src = files.sequences.get(c)
        if c != "mask" and src is not None:
            images[c] = files.images.get(str(src)) or sitk.ReadImage(str(src))
    return images, sitk.ReadImage(str(files.mask))


def predict_table_cases(b: dict, table, cases: Path, prov: Optional[dict], id_column: str = "case_id"):
    """`predict --bundle <choi bundle> --table T --cases DIR`: one row per table row, its images and tumour mask
    from the case folder DIR/<case id>; the table gives the shape / loci features and age."""
    import pandas as pd
    from .io import InputError
    if id_column not in table.columns:
        raise InputError(f"the table has no '{id_column}' column naming each row's case folder under {cases}")
    rows, warnings = [], []
    for _, r in table.iterrows():
        cid = str(r[id_column])
        folder = Path(cases) / cid
        if not folder.is_dir():
            raise InputError(f"{folder}: case folder not found (--cases DIR holds one folder per case id)")
        images, mask = read_case_folder_images(folder, b["input"]["channels"])
        e, w = predict_entry(b, images, mask, r.to_dict(), prov)
        warnings += w
        rows.append({id_column: cid, "task": e["task"], "probability": e["probability"], "label": e["label"],
                     "cnn_probability": e.get("cnn_probability"), "imputed": e.get("imputed", ""),
                     "reason": e.get("reason", ""), "synthetic_model": e["synthetic"], "model": e["model"]})
    res = pd.DataFrame(rows)
    res.attrs["warnings"] = list(dict.fromkeys(warnings))
    return res


def native_grid_images(case, pre, channels: Sequence[str]) -> Dict[str, object]:
    """The CNN's input volumes of a case on the REFERENCE sequence's native grid, as the training data were made
    (each case folder's own volumes resampled once, all on one grid in TCGA-LGG): the reference as acquired; any
    other sequence from its file as acquired, resampled once (linear) onto that grid through the run's registration
    transform (``pre.transforms``; not the working-grid image, which is interpolated twice and N4-corrected with
    --n4). Measured on TCGA-CS-4942 (FLAIR + mask): CNN probability 0.849 this way against 0.846 from the case
    folder's files, 0.873 from the 1 mm working grid (docs/choi.md)."""
    import SimpleITK as sitk
    ref = pre.reference_native
    out = {}
    for c in channels:
        if c == "mask" or c not in case.images or c not in pre.transforms:
            continue
        if c == pre.reference:
            out[c] = ref
        else:
            img = sitk.Resample(sitk.Cast(case.images[c], sitk.sitkFloat32), ref, pre.transforms[c],
                                sitk.sitkLinear, 0.0, sitk.sitkFloat32)
            out[c] = sitk.Maximum(img, 0.0)  # as preprocess does: no negative values from the interpolation
    return out


def case_predictions(analysis, b: dict) -> Tuple[dict, List[str]]:
    """The run path (`run --bundle <choi bundle>`): the case's images on the reference's native grid
    (``native_grid_images``) and its segmentation there (whole tumour = label > 0), with the run's features and
    clinical values."""
    values = analysis.feature_row()
    images = native_grid_images(analysis.case, analysis.pre, b["input"]["channels"])
    return predict_entry(b, images, analysis.label_native, values, analysis.features.provenance)


def _ci_metrics(summ: Optional[dict]) -> dict:
    """The hybrid's repeated-CV summary (evaluation.repeated_cv_summary) as the bundle metrics every card reads."""
    if not summ:
        return {}
    return {"auc_cv": summ["auc_mean"], "auc_cv_sd": summ["auc_sd"], "auc_cv_95ci": summ["auc_95ci_delong"],
            "auc_cv_95ci_method": "DeLong (mean of the repetitions' variances)",
            "auc_cv_95ci_bootstrap": summ["auc_95ci_bootstrap"],
            "auc_cv_95ci_repetitions_x_bootstrap": summ["auc_95ci_repetitions_x_bootstrap"],
            "auc_cv_range": [summ["auc_min"], summ["auc_max"]]}


def build_bundle(res: dict, final: dict, weights_name: str, *, table: str, cnn_data: str, synthetic: bool,
                 feature_schema: Optional[dict], version: str, evaluation: str, trained_on: Optional[str] = None,
                 intended_use: Optional[str] = None) -> dict:
    """The bundle's JSON from the evaluation (``hybrid_cv`` result) and the final CNN's record (train_choi_cnn.py
    --final)."""
    import datetime as _dt
    fh = res["final_hybrid"]
    n, npos = int(final["n"]), int(final["n_positive"])
    trained_on = trained_on or f"{Path(table).name}: {n} cases ({npos} IDH-mutant)"
    if synthetic and "SYNTHETIC" not in trained_on:
        trained_on += " (SYNTHETIC)"
    return {
        "format": CHOI_FORMAT, "schema_version": CHOI_SCHEMA_VERSION, "kind": "choi-hybrid",
        "name": f"choi2021-hybrid-IDH-{res['variant']}" + ("-SYNTHETIC" if synthetic else ""), "task": "IDH",
        "version": version, "method": "Choi 2021 model 2 (Neuro-Oncology 23:304): 2D ResNet34 on the maximum tumour "
        "slice +-2, +-4 (patient = mean of the slices), then a logistic regression on the CNN logit + t-test-"
        "selected 3D shape / loci features + age (choi.py)",
        "intended_use": CHOI_INTENDED_USE + (f". {intended_use}" if intended_use else ""),
        "synthetic": bool(synthetic), "cutoff": 0.5, "labels": list(CHOI_LABELS),
        "cnn": {"weights": weights_name, "sha256": final["sha256"], "format": "torch.save(state_dict), loaded with "
                "torch.load(weights_only=True) after the SHA-256 check", "architecture": "ResNet34",
                "blocks": list(RESNET34_LAYERS), "in_channels": len(final["channels"]), "outputs": 1,
                "epochs": final["epochs"], "epoch_rule": "inner stratified CV on all training cases, earliest "
                "maximum of the 3-epoch moving average of the inner AUC (the CV's rule)",
                "inner_auc_curve": final.get("inner_auc_curve"), "init": final.get("init"),
                "device": final.get("device"), "seconds": final.get("seconds"),
                "dtype": final.get("dtype", "float32"),
                **({"trained_sha256_float32": final["trained_sha256_float32"]}
                   if final.get("trained_sha256_float32") else {})},
        "input": {"variant": res["variant"], "channels": list(final["channels"]), "grid": int(final["grid"]),
                  "slice_offsets": list(SLICE_OFFSETS), "quantisation": final["quantisation"],
                  "slice_rule": "the axial slice with the largest tumour area on the resampled mask and the slices "
                  "at the offsets (clipped to the volume)",
                  "resample": "each volume to grid^3 voxels over its field of view (images linear, mask nearest "
                  "neighbour)", "normalisation": "image channels z-scored with the volume's foreground (> 0) mean "
                  "and SD; mask channel 0 / 1", "mask": "tumour = label > 0 (whole tumour)",
                  "aggregate": "patient probability = mean of the slice probabilities"},
        "hybrid": {"features": list(fh["features"]), "center": fh["center"], "scale": fh["scale"],
                   "coef": fh["coef"], "intercept": fh["intercept"], "means": fh["means"], "C": fh["C"],
                   "ttest_alpha": fh["ttest_alpha"], "cnn_input": "logit of the CNN probability clipped to "
                   "[1e-4, 1 - 1e-4]; fitted on " + fh["cnn_input"],
                   "formula": "p = 1 / (1 + exp(-(intercept + sum(coef * (x - center) / scale)))); a missing "
                   "value takes the training mean (named as imputed)"},
        "nomogram": fh.get("nomogram"),  # rms-style, nomogram.geometry_from_training (hybrid_nomogram)
        "features": image_features({"hybrid": fh}), "feature_schema": feature_schema or {},
        "metrics": {"validation": f"repeated nested CV, {len(res['repetitions'])} complete repetition(s), "
                    "out-of-fold AUC (the CNN's folds; the hybrid refitted inside each fold)",
                    "auc_cv_cnn": res["cnn"], "auc_cv_hybrid": res["hybrid"], "auc_cv_age": res.get("age"),
                    **_ci_metrics(res.get("summary", {}).get("hybrid")),
                    "paired_same_folds": res.get("paired_same_folds"),
                    "n": res["n"], "n_positive": res["n_positive"], "evaluation": evaluation},
        "training": {"n": n, "n_positive": npos, "trained_on": trained_on, "table": table, "cnn_data": cnn_data,
                     "synthetic": bool(synthetic), "date": _dt.date.today().isoformat()},
    }


def cli_train(args) -> int:
    """`glioma-radiogenomics train --method choi-hybrid`: the hybrid's cross-validation (and the final hybrid logistic
    part) from the CNN's out-of-fold probabilities: ``--choi-cnn`` (a scripts/train_choi_cnn.py JSON, e.g. from a
    GPU) and / or ``--choi-data`` (the arrays of scripts/prepare_choi_data.py; the CNN CV is run here first, in a
    subprocess, on ``--choi-device`` (source checkout only), unless ``--choi-cnn`` gives it). Writes the
    cross-validated evaluation (``--out``: per-repetition AUCs of the CNN, the hybrid and age alone on identical
    folds, the final hybrid's coefficients). With ``--choi-data`` the FINAL CNN is also trained on all the variant's
    cases (the CV's epoch rule) and the run-time bundle is written beside it: ``<out stem>.bundle.json`` + the
    weights ``<out stem>.bundle.cnn.pt`` (its SHA-256 in the bundle), applied by `predict --cases` and
    `run --bundle`."""
    import json
    import shutil
    import subprocess
    import sys

    from . import __version__
    from .cli import _json_bundle_kwargs, read_table, read_table_provenance
    from .io import InputError, atomic_write_json, check_output_folder

    out = Path(args.out)
    check_output_folder(out.parent if str(out.parent) else Path("."))
    if not args.choi_cnn and not args.choi_data:
        raise InputError("--method choi-hybrid needs --choi-cnn (out-of-fold CNN JSON of scripts/train_choi_cnn.py) "
                         "and / or --choi-data (choi_slices.npz of scripts/prepare_choi_data.py; needed for the "
                         "final CNN and the run-time bundle)")
    table = read_table(args.table)
    prov, _, _ = read_table_provenance(args.table)
    id_col = getattr(args, "id_column", None) or "case_id"
    if id_col not in table.columns:
        raise InputError(f"{args.table}: no '{id_col}' column to join the CNN's cases on")
    kw = _json_bundle_kwargs(args, Path(args.table), table, out, prov)  # synthetic, trained_on, intended use
    cnn_dir = out.with_name(out.stem + ".cnn")
    final = None
    if getattr(args, "choi_final", None):  # an earlier final network (e.g. trained on a GPU): not trained again
        fin = Path(args.choi_final)
        if not args.choi_cnn:
            raise InputError("--choi-final needs --choi-cnn (the cross-validation the final network goes with)")
        try:
            fdoc = json.loads(fin.read_text())
            final = {**fdoc["variants"][args.choi_variant], "data": fdoc.get("data")}
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"{fin}: not a choi_cnn_final.json with variant {args.choi_variant} ({exc})") from None
        cnn_dir = fin.parent
        w = cnn_dir / final["weights"]
        if not w.is_file() or sha256_file(w) != final["sha256"]:
            raise InputError(f"{w}: missing, or its SHA-256 differs from the one {fin.name} records")
    elif args.choi_data:
        data = Path(args.choi_data)
        script = Path(__file__).resolve().parents[2] / "scripts" / "train_choi_cnn.py"
        if not data.is_file():
            raise InputError(f"{data}: CNN data file not found (scripts/prepare_choi_data.py writes it)")
        if not script.is_file():
            raise InputError(f"{script} not found: running the CNN needs a source checkout; give --choi-cnn instead")
        if args.choi_variant not in VARIANTS:
            raise InputError(f"--choi-variant {args.choi_variant}: one of {', '.join(VARIANTS)} with --choi-data")
        cmd = [sys.executable, str(script), "--data", str(data), "--out", str(cnn_dir), "--variants",
               f"{args.choi_variant}={VARIANTS[args.choi_variant]}", "--repeats", str(args.repeats),
               "--epochs", str(args.choi_epochs), "--seed", str(args.seed),
               "--final-only" if args.choi_cnn else "--final"]
        if args.choi_device:
            cmd += ["--device", args.choi_device]
        if args.choi_max_cases:
            cmd += ["--max-cases", str(args.choi_max_cases)]
        if args.resnet34_weights:
            cmd += ["--resnet34-weights", args.resnet34_weights, "--resnet34-sha256", args.resnet34_sha256 or ""]
        print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
        r = subprocess.run(cmd)
        if r.returncode != 0:
            raise InputError(f"the CNN training failed (exit {r.returncode}): {' '.join(cmd)}")
        final = json.loads((cnn_dir / "choi_cnn_final.json").read_text())["variants"][args.choi_variant]
    cnn_path = Path(args.choi_cnn) if args.choi_cnn else cnn_dir / "choi_cnn_oof.json"
    if not cnn_path.is_file():
        raise InputError(f"{cnn_path}: CNN out-of-fold file not found")
    try:
        cnn = json.loads(cnn_path.read_text())
        res = hybrid_cv(cnn, args.choi_variant, table, args.label, id_col)
    except (ValueError, KeyError, json.JSONDecodeError) as exc:
        raise InputError(f"{cnn_path}: {exc}") from None
    if final is not None and final["case_ids"] != res["case_ids"]:
        raise InputError(f"{cnn_path} and {args.choi_data}: the final CNN's cases are not the cross-validated ones "
                         f"(variant {args.choi_variant}): use the data file the CV ran on")
    bundle_path = out.with_name(out.stem + ".bundle.json")
    res = {"what": "Choi 2021 hybrid IDH model (issue 17): cross-validated evaluation + final hybrid logistic part "
                   "(research use only, not a diagnosis); the run-time bundle (final CNN) is "
                   + (bundle_path.name if final else "not made: it needs --choi-data"),
           "table": str(args.table), "cnn_file": str(cnn_path), "cnn_device": cnn.get("device"),
           "cnn_init": cnn.get("init"), "synthetic": kw["synthetic"], **res}
    atomic_write_json(out, res)
    summary = {"evaluation": str(out), "variant": res["variant"], "n": res["n"], "repetitions": res["repetitions"],
               "auc_cnn": res["cnn"], "auc_hybrid": res["hybrid"], "auc_age": res.get("age"),
               "final_features": res["final_hybrid"]["features"], "bundle": None}
    if final is not None:
        weights = bundle_path.with_name(bundle_path.stem + ".cnn.pt")
        shutil.copyfile(cnn_dir / final["weights"], weights)
        if sha256_file(weights) != final["sha256"]:
            raise InputError(f"{weights}: the copied CNN weights differ from {cnn_dir / final['weights']}")
        if getattr(args, "choi_float16", False):  # half the size; load_cnn copies them into float32 parameters
            state = torch.load(weights, map_location="cpu", weights_only=True)
            torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, weights)
            final = {**final, "sha256": sha256_file(weights), "dtype": "float16",
                     "trained_sha256_float32": final["sha256"]}
        bundle = build_bundle(res, final, weights.name, table=str(args.table),
                              cnn_data=str(args.choi_data or final.get("data")),
                              synthetic=kw["synthetic"], feature_schema=prov, version=__version__,
                              evaluation=out.name, trained_on=args.trained_on, intended_use=args.intended_use)
        atomic_write_json(bundle_path, bundle)
        summary.update(bundle=str(bundle_path), weights=str(weights), cnn_epochs=final["epochs"],
                       synthetic=bundle["synthetic"])
    print(json.dumps(summary, indent=1))
    return 0
