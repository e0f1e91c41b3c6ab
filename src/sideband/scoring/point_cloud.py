"""Point-cloud classifier for the weakly supervised anomaly score (full phase space, 2310.06897).

The full-phase-space study (Buhmann et al., arXiv:2310.06897, Sec. III C) scores events with a
transformer-style classifier that sees the constituents of the two leading jets, not a handful
of high-level features. `PointCloudClassifier` is a small version of it, with the interface of
`sideband.scoring.mlp.MLPEnsemble` (``fit(X, y, sample_weight, X_val=, y_val=)``,
``predict_proba``, class balancing, seeds from `member_seeds`, the ``n_best`` epochs of
`sideband.background.training.fit_loop` averaged, atomic ``save``/``load``).

Architecture (hidden width ``h``, all weights shared between the two jets):

1. jet tokens: per jet (log pT, η, log m, log(1 + n_constituents), |Δφ_JJ|) (a subset with
   ``jet_features``), standardised, embedded by an MLP; one self-attention block over the two
   jet tokens (the dijet system);
2. particle tokens: per constituent (log pT_rel, Δη, Δφ), standardised over real constituents,
   embedded by an MLP, plus a projection of the own jet's token; ``n_blocks`` pre-LayerNorm
   self-attention blocks whose attention sees only the particles of the same jet (padding
   masked out);
3. the N1 + N2 + 2 tokens together: Linear → Dropout → LeakyReLU per token, mean over the real
   tokens, Linear → Dropout → LeakyReLU, Linear → one logit (sigmoid = P(label 1)).

The score is therefore invariant to the order of the particles within a jet and to the order of
the two jets, and padded entries (mask false) never reach it: they are zeroed before the
network and masked out of attention and pooling. Absolute φ is not used (the events are
symmetric in φ).

Input. To reuse the 2-D machinery (`sideband.scoring.kfold.score_kfold`), events travel as one
float32 row each: `flatten_point_clouds` packs ``constituents`` (N, 2, M, 3), ``mask`` (N, 2, M)
and ``jets`` (N, 2, 5) of a `sideband.records.PointCloudTable` into X of shape (N, 8 M + 10);
the classifier recovers M from the width. `score_kfold` converts X to float64 (a copy of
8 bytes × N × (8 M + 10), 1.8 GB for 100k events at M = 279) and copies the training folds again;
`score_kfold_point_clouds` is the same k-fold (same `fold_indices`, same seeds, same
`KFoldResult`) without those float64 copies.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from sideband.background.training import (
    check_n_threads,
    fit_loop,
    load_saved,
    resolve_device,
    save_atomic,
    torch_threads,
)
from sideband.errors import CheckpointError, InputError, NotFittedError
from sideband.scoring.classifiers import (
    ProbabilityScores,
    check_class_weight,
    check_labels,
    event_weights,
    member_seeds,
    stratified_split,
)
from sideband.scoring.kfold import KFoldResult, kfold_scores

__all__ = [
    "JET_FEATURE_NAMES",
    "PointCloudClassifier",
    "flatten_point_clouds",
    "n_constituents_from_width",
    "score_kfold_point_clouds",
    "unflatten_point_clouds",
]

logger = logging.getLogger(__name__)

_FORMAT = "sideband.PointCloudClassifier"
_FORMAT_VERSION = 1
#: Per-jet inputs the classifier can use, computed from `sideband.records.JET_KINEMATICS`:
#: log(pT / GeV), η, log(max(m, 1 GeV) / GeV), log(1 + n_constituents), |Δφ| between the jets.
JET_FEATURE_NAMES: tuple[str, ...] = ("log_pt", "eta", "log_m", "log_n", "abs_dphi_jj")
_N_JET = 5  # columns of jets (pt, eta, phi, m, n_constituents)
_N_PART = 3  # columns of constituents (pt_rel, deta, dphi)
_ATTN_BUDGET = 2**25  # attention-score elements per forward chunk (128 MiB in float32)
_NEG = -1e9  # additive attention mask of padded keys (exp underflows to exactly 0)


# ---------------------------------------------------------------------------------- layout
def n_constituents_from_width(d: int) -> int:
    """M (constituents per jet) of a flattened row of width ``d = 8 M + 10``; InputError if
    ``d`` is not of that form."""
    m, rest = divmod(int(d) - 2 * _N_JET, 2 * (_N_PART + 1))
    if rest or m < 1:
        msg = (
            f"a flattened point-cloud row has 8 M + 10 columns (M constituents per jet); got "
            f"{d}. Build X with sideband.scoring.point_cloud.flatten_point_clouds"
        )
        raise InputError(msg)
    return m


def flatten_point_clouds(constituents: Any, mask: Any, jets: Any) -> np.ndarray:
    """Pack point clouds into one float32 row per event.

    Parameters
    ----------
    constituents
        (N, 2, M, 3): (pT_rel, Δη, Δφ) of the constituents of the two leading jets
        (`sideband.records.PointCloudTable.constituents`).
    mask
        bool (N, 2, M): true for real constituents.
    jets
        (N, 2, 5): (pT [GeV], η, φ, m [GeV], n_constituents) of the two jets.

    Returns
    -------
    float32 (N, 8 M + 10): columns ``[constituents.reshape(N, 6 M), mask (0/1) .reshape(N, 2 M),
    jets.reshape(N, 10)]``. `unflatten_point_clouds` inverts it.
    """
    c = np.asarray(constituents)
    mk = np.asarray(mask)
    j = np.asarray(jets)
    if c.ndim != 4 or c.shape[1] != 2 or c.shape[3] != _N_PART:
        msg = (
            f"constituents must have shape (N, 2, M, 3) (pT_rel, deta, dphi of two jets); got "
            f"{c.shape}. Use PointCloudTable.constituents"
        )
        raise InputError(msg)
    n, _, m, _ = c.shape
    if mk.shape != (n, 2, m):
        msg = f"mask must have shape {(n, 2, m)} to match constituents; got {mk.shape}"
        raise InputError(msg)
    if mk.dtype != np.bool_ and not np.isin(mk, (0, 1)).all():
        msg = "mask must be boolean (true = real constituent); got values other than 0/1"
        raise InputError(msg)
    if j.shape != (n, 2, _N_JET):
        msg = (
            f"jets must have shape {(n, 2, _N_JET)} (pt, eta, phi, m, n_constituents); got "
            f"{j.shape}. Use PointCloudTable.jets"
        )
        raise InputError(msg)
    out = np.empty((n, 8 * m + 2 * _N_JET), dtype=np.float32)
    out[:, : 6 * m] = c.reshape(n, 6 * m)
    out[:, 6 * m : 8 * m] = mk.reshape(n, 2 * m)
    out[:, 8 * m :] = j.reshape(n, 2 * _N_JET)
    return out


def unflatten_point_clouds(X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of `flatten_point_clouds`: (constituents float32 (N, 2, M, 3), mask bool
    (N, 2, M), jets float32 (N, 2, 5)) from X (N, 8 M + 10)."""
    Xa = np.asarray(X, dtype=np.float32)
    if Xa.ndim != 2:
        msg = f"X must be 2-D (N, 8 M + 10); got shape {Xa.shape}"
        raise InputError(msg)
    n, d = Xa.shape
    m = n_constituents_from_width(d)
    c = Xa[:, : 6 * m].reshape(n, 2, m, _N_PART)
    mk = Xa[:, 6 * m : 8 * m].reshape(n, 2, m) > 0.5
    j = Xa[:, 8 * m :].reshape(n, 2, _N_JET)
    return c, mk, j


def _check_x(X: Any, *, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """X as a C-contiguous float32 (N, 8 M + 10) array with finite values and a 0/1 mask, or
    InputError. No copy when X is already such a float32 array."""
    try:
        arr = np.ascontiguousarray(X, dtype=np.float32)
    except (TypeError, ValueError) as err:
        msg = f"{name} cannot be read as a float array ({err}); pass flatten_point_clouds(...)"
        raise InputError(msg) from err
    if arr.ndim != 2:
        msg = (
            f"{name} must be a 2-D array (n_events, 8 M + 10); got shape {arr.shape}. Build it "
            "with sideband.scoring.point_cloud.flatten_point_clouds(constituents, mask, jets)"
        )
        raise InputError(msg)
    if n_features is not None and arr.shape[1] != n_features:
        msg = (
            f"{name} has {arr.shape[1]} columns but the classifier was fitted on {n_features} "
            f"(M = {n_constituents_from_width(n_features)} constituents per jet); flatten the "
            "point clouds with the same max_constituents as in fit"
        )
        raise InputError(msg)
    m = n_constituents_from_width(arr.shape[1])
    step = max(1, 2**22 // max(arr.shape[1], 1))
    for i in range(0, len(arr), step):
        block = arr[i : i + step]
        bad = ~np.isfinite(block)
        if bad.any():
            rows = i + np.flatnonzero(bad.any(axis=1))
            msg = (
                f"{name} has NaN/inf value(s) in row(s) {rows[:5].tolist()}; fix or drop those "
                "events (padding must be finite, e.g. zero)"
            )
            raise InputError(msg)
        mk = block[:, 6 * m : 8 * m]
        if not ((mk == 0) | (mk == 1)).all():
            msg = (
                f"{name}: the mask columns (6 M to 8 M, M = {m}) hold values other than 0/1; "
                "build X with flatten_point_clouds"
            )
            raise InputError(msg)
    return arr


def _jet_table(jets: torch.Tensor) -> torch.Tensor:
    """(B, 2, 5) jet kinematics -> (B, 2, 5) `JET_FEATURE_NAMES`, symmetric in the jet order."""
    pt = jets[..., 0].clamp_min(1e-3)
    eta = jets[..., 1]
    phi = jets[..., 2]
    m = jets[..., 3].clamp_min(1.0)
    n = jets[..., 4].clamp_min(0.0)
    dphi = torch.remainder(phi[:, 0] - phi[:, 1] + math.pi, 2 * math.pi) - math.pi
    adphi = dphi.abs().unsqueeze(1).expand(-1, 2)
    return torch.stack([pt.log(), eta, m.log(), torch.log1p(n), adphi], dim=-1)


def _particle_table(constituents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, 2, M, 3) (pT_rel, Δη, Δφ) -> (log pT_rel, Δη, Δφ), zero where ``mask`` is false."""
    logpt = constituents[..., 0].clamp_min(1e-8).log()
    feats = torch.stack([logpt, constituents[..., 1], constituents[..., 2]], dim=-1)
    return torch.where(mask.unsqueeze(-1), feats, torch.zeros_like(feats))


# ---------------------------------------------------------------------------------- network
class _Block(torch.nn.Module):
    """Pre-LayerNorm transformer block with an additive key mask."""

    def __init__(self, h: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(h)
        self.qkv = torch.nn.Linear(h, 3 * h)
        self.out = torch.nn.Linear(h, h)
        self.norm2 = torch.nn.LayerNorm(h)
        self.ffn = torch.nn.Sequential(
            torch.nn.Linear(h, 2 * h), torch.nn.LeakyReLU(), torch.nn.Linear(2 * h, h)
        )

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor | None) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, h // self.heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (b, heads, t, dh)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=key_bias)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, h))
        return x + self.ffn(self.norm2(x))


class _PointCloudNet(torch.nn.Module):
    """The classifier network; input one flattened row per event, output one logit."""

    def __init__(
        self,
        m: int,
        jet_columns: tuple[int, ...],
        hidden: int,
        heads: int,
        n_blocks: int,
        dropout: float,
        max_particles: int | None = None,
    ) -> None:
        super().__init__()
        self.m = m
        self.max_particles = max_particles
        self.register_buffer("jet_columns", torch.tensor(jet_columns, dtype=torch.int64))
        nj = len(jet_columns)
        self.register_buffer("jet_mean", torch.zeros(nj))
        self.register_buffer("jet_std", torch.ones(nj))
        self.register_buffer("part_mean", torch.zeros(_N_PART))
        self.register_buffer("part_std", torch.ones(_N_PART))
        act = torch.nn.LeakyReLU
        self.jet_embed = torch.nn.Sequential(
            torch.nn.Linear(nj, hidden), act(), torch.nn.Linear(hidden, hidden)
        )
        self.jet_block = _Block(hidden, heads)
        self.part_embed = torch.nn.Sequential(
            torch.nn.Linear(_N_PART, hidden), act(), torch.nn.Linear(hidden, hidden)
        )
        self.jet_to_part = torch.nn.Linear(hidden, hidden)
        self.part_blocks = torch.nn.ModuleList(_Block(hidden, heads) for _ in range(n_blocks))
        self.token_mix = torch.nn.Sequential(
            torch.nn.Linear(hidden, hidden), torch.nn.Dropout(dropout), act()
        )
        self.head = torch.nn.Sequential(
            torch.nn.Linear(hidden, hidden),
            torch.nn.Dropout(dropout),
            act(),
            torch.nn.Linear(hidden, 1),
        )

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flattened rows (B, 8 M + 10) -> constituents (B, 2, M', 3), mask (B, 2, M'), jets
        (B, 2, 5), with M' = the last real constituent position in the batch (at least 1)."""
        b, m = x.shape[0], self.m
        c = x[:, : 6 * m].reshape(b, 2, m, _N_PART)
        mask = x[:, 6 * m : 8 * m].reshape(b, 2, m) > 0.5
        jets = x[:, 8 * m :].reshape(b, 2, _N_JET)
        any_real = mask.any(dim=1).any(dim=0)  # (M,)
        used = int(any_real.nonzero().max().item()) + 1 if bool(any_real.any()) else 1
        c, mask = c[:, :, :used], mask[:, :, :used]
        k = self.max_particles
        if k is not None and used > k:
            # the k highest-pT_rel real constituents of each jet, whatever their slots
            key = torch.where(mask, c[..., 0], torch.full_like(c[..., 0], -1.0))
            top = key.topk(k, dim=-1, sorted=False).indices
            c = c.gather(2, top.unsqueeze(-1).expand(-1, -1, -1, _N_PART))
            mask = mask.gather(2, top)
        return c, mask, jets

    def jet_inputs(self, jets: torch.Tensor) -> torch.Tensor:
        return _jet_table(jets).index_select(-1, self.jet_columns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, mask, jets = self.split(x)
        b, _, m, _ = c.shape
        hj = self.jet_embed((self.jet_inputs(jets) - self.jet_mean) / self.jet_std)  # (B, 2, h)
        hj = self.jet_block(hj, None)
        hsize = hj.shape[-1]
        parts = (_particle_table(c, mask) - self.part_mean) / self.part_std
        parts = torch.where(mask.unsqueeze(-1), parts, torch.zeros_like(parts))
        hp = self.part_embed(parts) + self.jet_to_part(hj).unsqueeze(2)  # (B, 2, M, h)
        hp = hp.reshape(b * 2, m, hsize)
        flat_mask = mask.reshape(b * 2, m)
        bias = torch.zeros(b * 2, 1, 1, m, dtype=hp.dtype, device=hp.device)
        bias = bias.masked_fill(~flat_mask[:, None, None, :], _NEG)
        for block in self.part_blocks:
            hp = block(hp, bias)
        tokens = torch.cat([hj, hp.reshape(b, 2 * m, hsize)], dim=1)  # (B, 2 + 2M, h)
        keep = torch.cat(
            [torch.ones(b, 2, dtype=torch.bool, device=x.device), mask.reshape(b, 2 * m)], dim=1
        )
        tokens = self.token_mix(tokens)
        w = keep.to(tokens.dtype).unsqueeze(-1)
        pooled = (tokens * w).sum(dim=1) / w.sum(dim=1)
        return self.head(pooled).squeeze(-1)


def _weighted_bce(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor
) -> torch.Tensor:
    """Mean over the batch of w * BCE(logit, y) (weights of mean 1 over a set)."""
    return torch.nn.functional.binary_cross_entropy_with_logits(model(x), y, weight=w)


class _Moments:
    """Running count, sum and sum of squares (float64) of feature vectors."""

    def __init__(self, d: int) -> None:
        self.n = 0
        self.s1 = np.zeros(d)
        self.s2 = np.zeros(d)

    def add(self, v: np.ndarray) -> None:
        v = v.astype(np.float64)
        self.n += len(v)
        self.s1 += v.sum(axis=0)
        self.s2 += (v * v).sum(axis=0)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation; std 0 (or no rows) -> 1."""
        if self.n == 0:
            return np.zeros_like(self.s1), np.ones_like(self.s1)
        mean = self.s1 / self.n
        var = np.maximum(self.s2 / self.n - mean * mean, 0.0)
        std = np.sqrt(var)
        return mean, np.where(std > 1e-12, std, 1.0)


def _input_stats(
    X: np.ndarray, jet_columns: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(jet mean, jet std, particle mean, particle std) of the network inputs over the rows of
    X (both jets; real constituents only), in blocks so memory stays small."""
    jets_m, parts_m = _Moments(len(jet_columns)), _Moments(_N_PART)
    step = max(1, 2**22 // max(X.shape[1], 1))
    with torch.no_grad():
        for i in range(0, len(X), step):
            c, mk, jets = unflatten_point_clouds(X[i : i + step])
            jt = _jet_table(torch.as_tensor(jets)).numpy()[..., list(jet_columns)]
            jets_m.add(jt.reshape(-1, len(jet_columns)))
            pt = _particle_table(torch.as_tensor(c), torch.as_tensor(mk)).numpy()
            parts_m.add(pt[mk])
    return (*jets_m.mean_std(), *parts_m.mean_std())


# ---------------------------------------------------------------------------------- estimator
class PointCloudClassifier(ProbabilityScores, ClassifierMixin, BaseEstimator):
    """Permutation-invariant point-cloud classifier (label 1 vs label 0) of dijet events.

    Parameters
    ----------
    hidden
        Width of every embedding and attention block (divisible by ``heads``).
    heads
        Attention heads.
    n_blocks
        Particle self-attention blocks (attention within each jet).
    dropout
        Dropout of the token and head layers (paper: dropout + LeakyReLU after each).
    jet_features
        Subset of `JET_FEATURE_NAMES` given to the jet tokens. Drop ``"log_pt"`` and ``"eta"``
        to keep the classifier from reconstructing m_JJ from the jets.
    max_particles
        Use only the ``max_particles`` constituents of highest pT_rel in each jet (chosen by
        value, not slot, so the score stays permutation invariant); None: all M. The attention
        costs O(M^2) per jet: on a CPU, 64 is several times faster than 279.
    n_epochs, patience
        At most ``n_epochs`` epochs; stop after ``patience`` epochs without a lower validation
        loss (None: never).
    batch_size, learning_rate, weight_decay
        Minibatch AdamW settings (last partial batch dropped).
    n_best
        The ``n_best`` epochs with the lowest validation loss are kept; scores are their mean
        P(label 1). Each costs one forward pass when scoring.
    validation_fraction
        Without ``X_val``: stratified fraction of (X, y) held out for the validation loss.
    class_weight
        ``"balanced"`` (default), None, or ``{0: w0, 1: w1}``; as `MLPEnsemble`.
    random_state
        int, Generator or None: seeds the split, the initialisation and the shuffling.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    n_threads
        torch CPU threads while fitting and scoring (None: as set), restored after.
    progress
        tqdm bar over epochs.

    Attributes
    ----------
    models_
        The ``n_best`` networks (best first, eval mode, on ``device_``).
    best_epochs_, train_loss_, val_loss_
        As in `MLPEnsemble`.
    n_constituents_
        M, constituents per jet, from the width of X.
    jet_mean_, jet_std_, part_mean_, part_std_
        float64 standardisation of the jet inputs and of (log pT_rel, Δη, Δφ) over the real
        training constituents.
    n_features_in_, classes_, device_
        As in `MLPEnsemble`.
    """

    def __init__(
        self,
        *,
        hidden: int = 32,
        heads: int = 4,
        n_blocks: int = 2,
        dropout: float = 0.1,
        jet_features: tuple[str, ...] = JET_FEATURE_NAMES,
        max_particles: int | None = None,
        n_epochs: int = 50,
        patience: int | None = 10,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        n_best: int = 5,
        validation_fraction: float = 0.2,
        class_weight: str | dict[int, float] | None = "balanced",
        random_state: int | np.random.Generator | None = None,
        device: str = "auto",
        n_threads: int | None = None,
        progress: bool = False,
    ) -> None:
        self.hidden = hidden
        self.heads = heads
        self.n_blocks = n_blocks
        self.dropout = dropout
        self.jet_features = jet_features
        self.max_particles = max_particles
        self.n_epochs = n_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.n_best = n_best
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads
        self.progress = progress

    # ------------------------------------------------------------------ parameters
    def _jet_columns(self) -> tuple[int, ...]:
        try:
            names = tuple(self.jet_features)
        except TypeError:
            names = ()
        bad = [n for n in names if n not in JET_FEATURE_NAMES]
        if not names or bad or len(set(names)) != len(names):
            msg = (
                f"jet_features must be distinct names from {JET_FEATURE_NAMES}; got "
                f"{self.jet_features!r}"
            )
            raise InputError(msg)
        return tuple(JET_FEATURE_NAMES.index(n) for n in names)

    def _check_params(self, *, need_split: bool = True) -> None:
        for name in ("hidden", "heads", "n_blocks", "n_epochs", "batch_size", "n_best"):
            v = getattr(self, name)
            if (
                not isinstance(v, (int, np.integer))
                or isinstance(v, bool)
                or v < (name != "n_blocks")
            ):
                msg = f"{name} must be a {'non-negative' if name == 'n_blocks' else 'positive'} integer; got {v!r}"
                raise InputError(msg)
        if self.hidden % self.heads:
            msg = f"hidden ({self.hidden}) must be divisible by heads ({self.heads}); e.g. 32 and 4"
            raise InputError(msg)
        if self.n_best > self.n_epochs:
            msg = f"n_best ({self.n_best}) exceeds n_epochs ({self.n_epochs}); lower n_best"
            raise InputError(msg)
        if self.patience is not None and (
            not isinstance(self.patience, (int, np.integer)) or self.patience < 1
        ):
            msg = f"patience must be a positive integer or None; got {self.patience!r}"
            raise InputError(msg)
        mp = self.max_particles
        if mp is not None and (
            not isinstance(mp, (int, np.integer)) or isinstance(mp, bool) or mp < 1
        ):
            msg = f"max_particles must be a positive integer or None (all constituents); got {mp!r}"
            raise InputError(msg)
        if not 0.0 <= float(self.dropout) < 1.0:
            msg = f"dropout must lie in [0, 1); got {self.dropout!r}"
            raise InputError(msg)
        if not float(self.learning_rate) > 0 or not float(self.weight_decay) >= 0:
            msg = (
                f"learning_rate must be positive and weight_decay non-negative; got "
                f"{self.learning_rate!r} and {self.weight_decay!r}"
            )
            raise InputError(msg)
        if need_split and not 0.0 < float(self.validation_fraction) < 1.0:
            msg = (
                f"validation_fraction must lie in (0, 1) when no X_val is given; got "
                f"{self.validation_fraction!r}"
            )
            raise InputError(msg)
        self._jet_columns()
        check_n_threads(self.n_threads)
        check_class_weight(self.class_weight)

    def _build(self, seed: int) -> _PointCloudNet:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _PointCloudNet(
                self.n_constituents_,
                self._jet_columns(),
                int(self.hidden),
                int(self.heads),
                int(self.n_blocks),
                float(self.dropout),
                None if self.max_particles is None else int(self.max_particles),
            )

    def _chunk(self, m: int | None = None) -> int:
        """Events per forward pass with ``m`` particles per jet (default: all M): attention
        scores within ``_ATTN_BUDGET`` elements."""
        m = self.n_constituents_ if m is None else m
        if self.max_particles is not None:
            m = min(m, int(self.max_particles))
        per_event = 2 * int(self.heads) * max(m, 1) ** 2
        return int(np.clip(_ATTN_BUDGET // per_event, 16, 8192))

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        X_val: Any = None,
        y_val: Any = None,
        sample_weight_val: Any = None,
    ) -> PointCloudClassifier:
        """Train and keep the ``n_best`` epochs by validation loss.

        Parameters
        ----------
        X
            float (N, 8 M + 10) from `flatten_point_clouds`; finite, mask columns 0/1.
        y
            Labels (N,): 1 = SR data (or signal), 0 = template (or background).
        sample_weight
            Optional non-negative (N,); multiplied by the class balancing.
        X_val, y_val, sample_weight_val
            Optional explicit validation set (same layout); else a stratified, seeded
            ``validation_fraction`` of (X, y) is held out and never trained on.

        Returns
        -------
        self
        """
        self._check_params(need_split=X_val is None and y_val is None)
        Xa = _check_x(X)
        ya = check_labels(y, len(Xa))
        w = event_weights(ya, sample_weight, self.class_weight)
        if X_val is None and y_val is None:
            if sample_weight_val is not None:
                msg = "sample_weight_val was given without X_val and y_val; pass all three or none"
                raise InputError(msg)
            val = None
        elif X_val is None or y_val is None:
            msg = "pass both X_val and y_val, or neither (then validation_fraction is held out)"
            raise InputError(msg)
        else:
            Xv = _check_x(X_val, name="X_val", n_features=Xa.shape[1])
            yv = check_labels(y_val, len(Xv), name="y_val", x_name="X_val")
            val = (
                Xv,
                yv,
                event_weights(yv, sample_weight_val, self.class_weight, name="sample_weight_val"),
            )
        device = resolve_device(self.device)
        split_seed, init_seed, loop_seed, dropout_seed = member_seeds(self.random_state, 4)

        if val is None:
            tr, va = stratified_split(
                ya, float(self.validation_fraction), np.random.default_rng(split_seed)
            )
            X_tr, y_tr, w_tr = Xa[tr], ya[tr], w[tr]
            X_va, y_va, w_va = Xa[va], ya[va], w[va]
            w_tr, w_va = w_tr * (len(w_tr) / w_tr.sum()), w_va * (len(w_va) / w_va.sum())
        else:
            X_tr, y_tr, w_tr = Xa, ya, w
            X_va, y_va, w_va = val

        self.n_features_in_ = Xa.shape[1]
        self.n_constituents_ = n_constituents_from_width(Xa.shape[1])
        self.jet_mean_, self.jet_std_, self.part_mean_, self.part_std_ = _input_stats(
            X_tr, self._jet_columns()
        )

        model = self._build(init_seed)
        self._set_buffers(model)
        chunk = self._chunk()
        logger.info(
            "PointCloudClassifier: hidden %d, %d blocks, M = %d; %d training rows, %d "
            "validation, device %s",
            self.hidden,
            self.n_blocks,
            self.n_constituents_,
            len(X_tr),
            len(X_va),
            device,
        )
        f32 = np.float32
        # dropout draws from torch's global generator: seed a fork of it, restore it after
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch_threads(self.n_threads), torch.random.fork_rng(devices=cuda):
            torch.manual_seed(dropout_seed)
            result = fit_loop(
                model,
                _weighted_bce,
                (X_tr, y_tr.astype(f32), w_tr.astype(f32)),
                (X_va, y_va.astype(f32), w_va.astype(f32)),
                epochs=int(self.n_epochs),
                batch_size=int(self.batch_size),
                learning_rate=float(self.learning_rate),
                weight_decay=float(self.weight_decay),
                patience=None if self.patience is None else int(self.patience),
                n_ensemble=int(self.n_best),
                drop_last=True,
                seed=loop_seed,
                device=device,
                progress=bool(self.progress),
                val_batch_size=chunk,
            )
        history = result.history
        self.classes_ = np.array([0, 1])
        self.device_ = device
        self.train_loss_ = history.train_loss
        self.val_loss_ = history.val_loss
        self.best_epochs_ = history.best_epochs
        self._set_models(result.best_states)
        return self

    def _set_buffers(self, model: _PointCloudNet) -> None:
        for name in ("jet_mean", "jet_std", "part_mean", "part_std"):
            value = torch.as_tensor(getattr(self, name + "_"), dtype=torch.float32)
            getattr(model, name).copy_(value)

    def _set_models(self, states: list[dict[str, torch.Tensor]]) -> None:
        models = []
        for state in states:
            model = self._build(0)  # weights overwritten
            model.load_state_dict(state)
            model.to(self.device_).eval()
            for p in model.parameters():
                p.requires_grad_(False)
            models.append(model)
        self.models_ = models

    # ------------------------------------------------------------------ scoring
    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            msg = (
                "this PointCloudClassifier is not fitted yet; call fit(X, y) or "
                "PointCloudClassifier.load(path) before scoring"
            )
            raise NotFittedError(msg)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Mean over the ``n_best`` epoch networks of sigmoid(logit), shape (N, 2): columns
        P(label 0), P(label 1). X: (N, 8 M + 10) from `flatten_point_clouds`."""
        self._check_fitted()
        Xa = _check_x(X, n_features=self.n_features_in_)
        n, m = len(Xa), self.n_constituents_
        # events in order of multiplicity, so each chunk pads to about its own size
        counts = Xa[:, 6 * m : 8 * m].reshape(n, 2, m).sum(axis=2).max(axis=1).astype(np.int64)
        order = np.argsort(counts, kind="stable")
        counts = counts[order]
        p1 = np.empty(n)
        with torch_threads(self.n_threads), torch.inference_mode():
            i = 0
            while i < n:
                size = self._chunk(int(counts[min(i + self._chunk(int(counts[i])), n) - 1]))
                rows = order[i : i + size]
                x = torch.as_tensor(Xa[rows], device=self.device_)
                total = torch.zeros(x.shape[0], dtype=torch.float64, device=self.device_)
                for model in self.models_:
                    total += torch.sigmoid(model(x)).double()
                p1[rows] = (total / len(self.models_)).cpu().numpy()
                i += size
        return np.column_stack([1.0 - p1, p1])

    # ------------------------------------------------------------------ persistence
    def _saved_params(self) -> dict[str, Any]:
        params = self.get_params()
        rs = params["random_state"]
        params["random_state"] = int(rs) if isinstance(rs, (int, np.integer)) else None
        params["jet_features"] = list(params["jet_features"])
        cw = params["class_weight"]
        if isinstance(cw, dict):
            params["class_weight"] = {int(k): float(v) for k, v in cw.items()}
        params["device"] = str(params["device"])
        return params

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write one file (parameters, the epoch networks' state dicts, standardisation,
        losses) atomically: ``torch.save`` to a temporary file, then ``os.replace``. A Generator
        random_state is stored as None."""
        self._check_fitted()
        import sideband

        f64 = torch.float64
        payload = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "versions": {"sideband": sideband.__version__, "torch": str(torch.__version__)},
            "params": self._saved_params(),
            "n_features_in": int(self.n_features_in_),
            "jet_mean": torch.as_tensor(self.jet_mean_, dtype=f64),
            "jet_std": torch.as_tensor(self.jet_std_, dtype=f64),
            "part_mean": torch.as_tensor(self.part_mean_, dtype=f64),
            "part_std": torch.as_tensor(self.part_std_, dtype=f64),
            "states": [
                {k: v.detach().cpu() for k, v in m.state_dict().items()} for m in self.models_
            ],
            "best_epochs": torch.as_tensor(self.best_epochs_, dtype=torch.int64),
            "train_loss": torch.as_tensor(self.train_loss_, dtype=f64),
            "val_loss": torch.as_tensor(self.val_loss_, dtype=f64),
        }
        save_atomic(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "auto") -> PointCloudClassifier:
        """Read a classifier written by `save` onto ``device``; `CheckpointError` if the file
        is missing, corrupt, or not a saved PointCloudClassifier of this format version."""
        path = Path(path)
        payload = load_saved(path, cls_name="PointCloudClassifier", what="PointCloudClassifier",
                             fmt=_FORMAT, version=_FORMAT_VERSION, fix="refit and save")  # fmt: skip
        dev = resolve_device(device)
        try:
            params = dict(payload["params"])
            params["jet_features"] = tuple(params["jet_features"])
            params["device"] = device
            obj = cls(**params)
            obj._check_params(need_split=False)
            obj.n_features_in_ = int(payload["n_features_in"])
            obj.n_constituents_ = n_constituents_from_width(obj.n_features_in_)
            for name in ("jet_mean", "jet_std", "part_mean", "part_std"):
                setattr(obj, name + "_", np.asarray(payload[name], dtype=np.float64))
            obj.best_epochs_ = np.asarray(payload["best_epochs"], dtype=np.int64)
            obj.train_loss_ = np.asarray(payload["train_loss"], dtype=np.float64)
            obj.val_loss_ = np.asarray(payload["val_loss"], dtype=np.float64)
            obj.classes_ = np.array([0, 1])
            obj.device_ = dev
            obj._set_models(list(payload["states"]))
        except (KeyError, TypeError, ValueError, RuntimeError, InputError) as err:
            msg = (
                f"{path} does not match a PointCloudClassifier of this version "
                f"({type(err).__name__}: {str(err)[:200]}); refit and save"
            )
            raise CheckpointError(msg) from err
        return obj


# ---------------------------------------------------------------------------------- k-fold
def score_kfold_point_clouds(
    data_X: Any,
    template_X: Any,
    *,
    classifier: Any,
    n_folds: int = 5,
    seed: int = 0,
    validation: str = "internal",
    progress: bool = False,
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> KFoldResult:
    """`sideband.scoring.kfold.score_kfold` for flattened point clouds, without float64 copies.

    Same folds (`fold_indices` from the same seeds), same per-fold classifier seeds, same
    `KFoldResult`: with a deterministic classifier it returns the scores `score_kfold` would.
    The difference is memory: ``data_X`` and ``template_X`` (float32 (N, 8 M + 10) from
    `flatten_point_clouds`) are used as they are, and only each fold's training rows are copied
    (float32).

    Parameters
    ----------
    data_X, template_X
        SR data (label 1) and template (label 0) rows, same width.
    classifier
        Unfitted classifier taking flattened rows (usually `PointCloudClassifier`), cloned per
        fold; ``random_state`` set from ``SeedSequence(seed).spawn`` if it has one.
    n_folds, seed, validation, progress, checkpoint_dir
        As in `score_kfold` (``validation="rotate"``: fold i + 1 is fold i's validation set;
        ``checkpoint_dir``: finished folds are saved there and reused by a rerun).
    """
    return kfold_scores(
        data_X,
        template_X,
        classifier=classifier,
        n_folds=n_folds,
        seed=seed,
        validation=validation,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        check=_check_x,
        classifier_hint="PointCloudClassifier",
        width_fix="flatten both with the same max_constituents",
    )
