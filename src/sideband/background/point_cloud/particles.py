"""EPiC-FM particle model: conditional flow matching of one jet's constituents given the jet.

`ParticleFlowMatching` learns p(constituents | jet kinematics) for point clouds of variable
multiplicity (the full-phase-space study, arXiv:2310.06897 Sec. III B; EPiC-FM,
arXiv:2307.06836). Both jets of an event use the same model, jet by jet; the multiplicity is
given by the mask (the jet-kinematics model generates it).

- preprocessing: each point feature is standardised with its mean and standard deviation over
  the real points (mask true), each conditioning column with its own;
- path and loss: the convention of `sideband.background.flow_matching.cfm_loss`, with data at
  t = 0 and noise at t = 1: x_t = (1 - t) x_0 + (σ_min + (1 - σ_min) t) ε, target velocity
  u = (1 - σ_min) ε - x_0, one t per cloud, one ε per point; the squared error is averaged over
  the real points and the features only;
- network: `EPiCVelocityNet` (permutation equivariant, padded points never influence real ones);
- training: `sideband.background.training.fit_loop` (AdamW, early stopping on a fixed-noise
  validation loss, checkpoints that resume); each minibatch is cut to its largest multiplicity;
- sampling: Gaussian noise on the real points, ODE from t = 1 to t = 0 with ``n_steps``
  midpoint steps (2 network evaluations each), in batches of similar multiplicity.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator

from sideband.background.base import generator
from sideband.background.flow_matching import SIGMA_MIN
from sideband.background.point_cloud.epic import EPiCVelocityNet
from sideband.background.training import (
    TrainingHistory,
    check_n_threads,
    fit_loop,
    load_saved,
    resolve_device,
    save_atomic,
    uses_n_threads,
)
from sideband.errors import CheckpointError, InputError, NotFittedError

__all__ = [
    "ParticleFlowMatching",
    "check_mask_cond",
    "check_point_clouds",
    "from_disk_plane",
    "point_cfm_loss",
    "to_disk_plane",
]

logger = logging.getLogger(__name__)

_FORMAT = "sideband.ParticleFlowMatching"
_FORMAT_VERSION = 1
MIN_CLOUDS = 10
# Points (clouds x slots) per network call in `sample`: bounds memory (hidden x 4 bytes each).
_POINTS_PER_CALL = {"cpu": 2**16, "cuda": 2**20}


#: Training points are pulled in to (1 - _CONE_MARGIN) * cone_radius (atanh(0.999) = 3.8).
_CONE_MARGIN = 1e-3


def to_disk_plane(xy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Map points (..., 2) of the disk r < ``radius`` onto the plane: xy * atanh(r / R) / r.

    The map is the identity / R near the centre and stretches the edge to infinity (the
    radial coordinate becomes atanh(r / R)); its inverse is `from_disk_plane`. Points at
    r >= (1 - 1e-3) R are first moved in to that radius along their direction. Returns the
    mapped points and a bool array (...) of the points moved.
    """
    xy = np.asarray(xy, dtype=np.float64)
    r = np.hypot(xy[..., 0], xy[..., 1])
    r_max = (1.0 - _CONE_MARGIN) * radius
    pulled = r > r_max
    rc = np.minimum(r, r_max)
    # atanh(r / R) / r -> 1 / R at r = 0; the clipped radius also rescales pulled points
    factor = np.where(r > 1e-12, np.arctanh(rc / radius) / np.maximum(r, 1e-12), 1.0 / radius)
    return xy * factor[..., None], pulled


def from_disk_plane(uv: torch.Tensor, radius: float) -> torch.Tensor:
    """Inverse of `to_disk_plane` (without its pull-in): uv (..., 2) -> R tanh(rho) / rho * uv,
    rho = |uv|; every result lies inside r = R (on it only where tanh rounds to 1: rho > 9 in
    float32)."""
    rho = torch.linalg.vector_norm(uv, dim=-1, keepdim=True)
    safe = torch.where(rho > 1e-12, rho, torch.ones((), dtype=uv.dtype, device=uv.device))
    factor = torch.where(rho > 1e-12, radius * torch.tanh(safe) / safe, radius)
    return uv * factor


def point_cfm_loss(
    net: torch.nn.Module,
    x0: torch.Tensor,
    mask: torch.Tensor,
    cond: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
) -> torch.Tensor:
    """Flow-matching loss of point clouds, mean over real points and features.

    x0, eps (B, M, F); mask (B, M) bool; cond (B, C); t (B,). Same path as `cfm_loss`.
    """
    tt = t.reshape(-1, 1, 1)
    xt = (1 - tt) * x0 + (SIGMA_MIN + (1 - SIGMA_MIN) * tt) * eps
    target = (1 - SIGMA_MIN) * eps - x0
    se = (net(xt, t, cond, mask) - target).pow(2)
    m = mask.unsqueeze(-1)
    total = torch.where(m, se, torch.zeros((), dtype=se.dtype, device=se.device)).sum()
    return total / (mask.sum() * x0.shape[-1]).clamp(min=1)


def _trim(mask: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Cut (B, M, ...) tensors to the batch's largest multiplicity (masks are first-n-slots)."""
    n_max = max(int(mask.sum(dim=1).max()), 1)
    return [mask[:, :n_max], *(t[:, :n_max] for t in tensors)]


def check_mask_cond(
    mask: np.ndarray, cond: np.ndarray, *, n_cond: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a mask (N, M) and conditioning (N, C); see `check_point_clouds`."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        msg = (
            f"mask must be 2-D (N clouds, M slots); got shape {mask.shape}. For a "
            "PointCloudTable pass one jet at a time, e.g. table.mask[:, 0]"
        )
        raise InputError(msg)
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            msg = f"mask must be boolean (or 0/1); got values like {np.unique(mask)[:5]}"
            raise InputError(msg)
        mask = mask.astype(bool)
    n, m = mask.shape
    if n < 1 or m < 1:
        msg = f"mask has shape {mask.shape}; pass at least one cloud with at least one slot"
        raise InputError(msg)
    counts = mask.sum(axis=1)
    if (counts == 0).any():
        bad = np.flatnonzero(counts == 0)
        msg = (
            f"{bad.size} cloud(s) have no real point (first: row {bad[0]}); drop jets without "
            "constituents before fitting or sampling"
        )
        raise InputError(msg)
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        bad = np.flatnonzero((mask[:, 1:] & ~mask[:, :-1]).any(axis=1))
        msg = (
            f"mask must mark the first n slots of each cloud as real (zero-padded at the end); "
            f"{bad.size} row(s) have gaps (first: row {bad[0]}). Sort each cloud's real points "
            "to the front, e.g. by pT as PointCloudTable does"
        )
        raise InputError(msg)
    cond = np.asarray(cond, dtype=np.float64)
    if cond.ndim != 2 or cond.shape[0] != n:
        msg = (
            f"cond must be 2-D (N={n}, C) with one row per cloud; got shape {cond.shape} "
            "(reshape a single column with cond.reshape(-1, 1))"
        )
        raise InputError(msg)
    if n_cond is not None and cond.shape[1] != n_cond:
        msg = f"cond has {cond.shape[1]} columns but the model was fitted with {n_cond}"
        raise InputError(msg)
    if not np.isfinite(cond).all():
        msg = f"cond holds {int((~np.isfinite(cond)).sum())} NaN/inf value(s); remove or fix them"
        raise InputError(msg)
    return mask, cond


def check_point_clouds(
    points: np.ndarray,
    mask: np.ndarray,
    cond: np.ndarray,
    *,
    n_features: int | None = None,
    n_cond: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate point clouds: points (N, M, F) float, mask (N, M) bool, cond (N, C) float.

    The mask must mark the first n slots of each cloud (n >= 1) as real; points must be finite
    at the real slots (padded values are ignored and returned as 0); cond must be finite.
    Returns float64 points (zeros at padding), bool mask and float64 cond; raises `InputError`
    naming the problem and the fix.
    """
    mask, cond = check_mask_cond(mask, cond, n_cond=n_cond)
    n, m = mask.shape
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[:2] != (n, m):
        msg = (
            f"points must have shape (N={n}, M={m}, F) to match mask {mask.shape}; got "
            f"{points.shape}. For a PointCloudTable pass one jet, e.g. table.constituents[:, 0]"
        )
        raise InputError(msg)
    if n_features is not None and points.shape[2] != n_features:
        msg = f"points have {points.shape[2]} features but the model was fitted with {n_features}"
        raise InputError(msg)
    if points.shape[2] < 1:
        msg = "points have no feature columns; pass (pT_rel, Δη, Δφ) per point"
        raise InputError(msg)
    real = points[mask]
    if not np.isfinite(real).all():
        msg = (
            f"points hold {int((~np.isfinite(real)).sum())} NaN/inf value(s) at real slots "
            "(mask true); remove those clouds or fix the mask"
        )
        raise InputError(msg)
    points = np.where(mask[:, :, None], points, 0.0)
    return points, mask, cond


def _std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations of (n, k) values (a zero spread becomes 1)."""
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


class ParticleFlowMatching(BaseEstimator):
    """EPiC-FM generator of one jet's constituents (pT_rel, Δη, Δφ) given the jet's kinematics.

    ``__init__`` only stores parameters; torch objects are built in `fit`.

    Parameters
    ----------
    hidden, global_dim, n_layers, time_frequencies, sum_scale
        `EPiCVelocityNet`: per-point width, global vector size, EPiC layers, frequencies of the
        time embedding, factor on the sum pooling.
    epochs, batch_size, learning_rate, weight_decay, patience, val_fraction
        Training with `fit_loop` (AdamW); ``batch_size`` counts clouds; early stopping after
        ``patience`` epochs without a lower validation loss (flow-matching loss at fixed noise on
        a random ``val_fraction`` of the clouds); None: never stop early.
    lr_patience, lr_factor
        Reduce the learning rate on a plateau (see `fit_loop`); None: constant.
    lr_cosine, warmup_epochs
        Cosine annealing of the learning rate to zero at ``epochs`` after a linear warm-up
        (the paper's particle model: cosine with warm-up); see `fit_loop`.
    n_steps
        Midpoint steps of the sampling ODE from t = 1 to 0 (2 network calls each).
    log_features
        Point features modelled as log(value) (standardised after the log, exponentiated after
        sampling), e.g. ``(0,)`` for pT_rel: generated values are then always positive. The
        paper standardises the raw values (the default, ``()``); with it, short trainings give
        some negative pT_rel. Those features must be > 0 at every real point.
    cone_radius
        R: features 1 and 2 (Delta eta, Delta phi) lie within R of the jet axis, as the
        constituents of an anti-kT jet of radius R do. They are then modelled in coordinates
        that map the disk r < R onto the plane, (Delta eta, Delta phi) * atanh(r / R) / r, so
        generated points always lie inside R and the sharp edge of the jet at r = R (where the
        farthest constituent of most jets lies) is no longer a step the smooth velocity field
        must learn: with plain coordinates a CPU model put the farthest constituent beyond R in
        21% of the fully contained jets against 2% in data. Training points at r >= (1 - 1e-3) R
        (in data, by the recoil of the jet axis, about 0.1% of points) are pulled in to that
        radius. None (the default): plain coordinates. On the 54k-event LHCO-like benchmark it
        matched the edge (farthest-constituent AUC 0.65 -> 0.55) but did not lower the
        point-cloud two-sample AUC (benchmarks/README.md); `PointCloudTemplate` instead folds
        points beyond R inside (`sideband.background.point_cloud.template.fold_into_cone`).
    n_neighbours
        k > 0: the velocity network also passes messages between each point and its k nearest
        points in (Delta eta, Delta phi) (`sideband.background.point_cloud.epic.NeighbourLayer`),
        so it can place a point relative to its neighbours (at particle level the two hardest
        constituents are often a collinear pair a few 10^-3 apart, which the pooling-only EPiC
        network smears out). 0 (the default here): EPiC-FM as in the paper; `PointCloudTemplate`
        uses 4. On the 54k-event LHCO-like benchmark (benchmarks/README.md) k = 4 lowered the
        point-cloud two-sample AUC from 0.77-0.82 to 0.60-0.67 (over classifier seeds) and the
        HGB AUC of the two hardest constituents' ΔR from 0.83 to 0.75, for 1.7x the training
        and sampling time on a CPU.
    time_exponent
        Training times are drawn as t = u ** time_exponent with u uniform in (0, 1) (also the
        validation times): 1 (the default here) is uniform, as in the paper; 2 (the default of
        `PointCloudTemplate` and the pipeline) trains 8x more often at t < 0.015, where
        structure finer than 1.5% of a feature's spread (collinear pairs of constituents)
        forms, and less often near the noise. The loss's minimiser (the
        velocity field) is the same at every t; only where the network spends its capacity
        changes. On the 54k-event LHCO-like benchmark 2 brought the lower half of the ΔR
        distribution of the two hardest constituents onto data (median 0.0077-0.0080 in two
        trainings against 0.010 with 1; data 0.0038; HGB on hard-core observables 0.82 against
        0.86); the point-cloud two-sample AUC (mean over classifier seeds 0.611 and 0.644
        against 0.641) varies as much from one training seed to the next (benchmarks/README.md).
    neighbour_layers
        With ``n_neighbours`` > 0: how many neighbour-message layers (the first before the EPiC
        layers, the others spread between them; they share the neighbour search). 2 on the
        54k-event benchmark: 1.1x the training time, pair observables a little closer to data,
        two-sample AUC not lower (mean 0.662 against 0.641; with ``time_exponent=2`` 0.610,
        that option alone 0.611 and 0.644 in two trainings; benchmarks/README.md).
    seed
        Seeds the validation split, the initial weights, the shuffling and the training noise;
        with ``sample(seed=None)`` also the sampling noise (the same sample every call).
    device
        "auto" (CUDA when available), "cpu", "cuda".
    n_threads
        torch threads during fit/sample (None: as is).
    progress
        tqdm bar over epochs.
    checkpoint_dir
        Folder for `fit_loop`'s checkpoint; a second `fit` on the same data resumes from it.

    Notes
    -----
    Fitted attributes: ``net_`` (best epoch's network, eval mode), ``n_features_in_``,
    ``n_cond_in_``, ``point_mean_``, ``point_std_`` (F,), ``cond_mean_``, ``cond_std_`` (C,),
    ``history_`` (`TrainingHistory`), ``best_epochs_``, ``device_``.
    """

    def __init__(
        self,
        *,
        hidden: int = 128,
        global_dim: int = 32,
        n_layers: int = 6,
        time_frequencies: int = 8,
        sum_scale: float = 1e-2,
        epochs: int = 100,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 5e-5,
        patience: int | None = 10,
        val_fraction: float = 0.1,
        lr_patience: int | None = None,
        lr_factor: float = 0.3,
        lr_cosine: bool = False,
        warmup_epochs: int = 0,
        n_steps: int = 100,
        log_features: tuple[int, ...] = (),
        cone_radius: float | None = None,
        n_neighbours: int = 0,
        neighbour_layers: int = 1,
        time_exponent: float = 1.0,
        seed: int | None = 0,
        device: str = "auto",
        n_threads: int | None = None,
        progress: bool = False,
        checkpoint_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.hidden = hidden
        self.global_dim = global_dim
        self.n_layers = n_layers
        self.time_frequencies = time_frequencies
        self.sum_scale = sum_scale
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.val_fraction = val_fraction
        self.lr_patience = lr_patience
        self.lr_factor = lr_factor
        self.lr_cosine = lr_cosine
        self.warmup_epochs = warmup_epochs
        self.n_steps = n_steps
        self.log_features = log_features
        self.cone_radius = cone_radius
        self.n_neighbours = n_neighbours
        self.neighbour_layers = neighbour_layers
        self.time_exponent = time_exponent
        self.seed = seed
        self.device = device
        self.n_threads = n_threads
        self.progress = progress
        self.checkpoint_dir = checkpoint_dir

    # ------------------------------------------------------------------ parameters
    def _check_params(self) -> None:
        ints = {
            "hidden": self.hidden,
            "global_dim": self.global_dim,
            "n_layers": self.n_layers,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "n_steps": self.n_steps,
        }
        for name, value in ints.items():
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                msg = f"{name} must be a positive integer; got {value!r}"
                raise InputError(msg)
        if not isinstance(self.time_frequencies, int | np.integer) or self.time_frequencies < 0:
            msg = f"time_frequencies must be an integer >= 0; got {self.time_frequencies!r}"
            raise InputError(msg)
        if (
            isinstance(self.n_neighbours, bool)
            or not isinstance(self.n_neighbours, int | np.integer)
            or self.n_neighbours < 0
        ):
            msg = f"n_neighbours must be an integer >= 0 (0: none); got {self.n_neighbours!r}"
            raise InputError(msg)
        if (
            isinstance(self.neighbour_layers, bool)
            or not isinstance(self.neighbour_layers, int | np.integer)
            or not 1 <= self.neighbour_layers <= max(int(self.n_layers), 1)
        ):
            msg = (
                f"neighbour_layers must be an integer in 1..n_layers ({self.n_layers}); got "
                f"{self.neighbour_layers!r}"
            )
            raise InputError(msg)
        if (
            isinstance(self.time_exponent, bool)
            or not isinstance(self.time_exponent, int | float | np.integer | np.floating)
            or not 0.1 <= self.time_exponent <= 10
        ):
            msg = f"time_exponent must be a number in [0.1, 10] (1: uniform); got {self.time_exponent!r}"
            raise InputError(msg)
        if not 0 < self.val_fraction < 1:
            msg = f"val_fraction must be in (0, 1); got {self.val_fraction}"
            raise InputError(msg)
        if not (self.learning_rate > 0 and self.weight_decay >= 0 and self.sum_scale > 0):
            msg = (
                "need learning_rate > 0, weight_decay >= 0 and sum_scale > 0; got "
                f"{self.learning_rate}, {self.weight_decay}, {self.sum_scale}"
            )
            raise InputError(msg)
        if self.patience is not None and self.patience < 1:
            msg = f"patience must be None or >= 1; got {self.patience}"
            raise InputError(msg)
        check_n_threads(self.n_threads)
        if not all(isinstance(k, int | np.integer) and k >= 0 for k in self.log_features):
            msg = f"log_features must be feature indices >= 0, e.g. (0,); got {self.log_features!r}"
            raise InputError(msg)
        if self.cone_radius is not None and not (
            isinstance(self.cone_radius, int | float | np.floating) and self.cone_radius > 0
        ):
            msg = f"cone_radius must be None or the jet radius R > 0; got {self.cone_radius!r}"
            raise InputError(msg)
        if self.cone_radius is not None and ({1, 2} & {int(k) for k in self.log_features}):
            msg = (
                "cone_radius models features 1 and 2 (Delta eta, Delta phi); drop them from "
                "log_features"
            )
            raise InputError(msg)

    def _build_net(self, n_features: int, n_cond: int, torch_seed: int | None) -> EPiCVelocityNet:
        with torch.random.fork_rng(devices=[]):
            if torch_seed is not None:
                torch.manual_seed(torch_seed)
            return EPiCVelocityNet(
                n_features,
                n_cond,
                hidden=int(self.hidden),
                global_dim=int(self.global_dim),
                n_layers=int(self.n_layers),
                time_frequencies=int(self.time_frequencies),
                sum_scale=float(self.sum_scale),
                n_neighbours=int(self.n_neighbours),
                neighbour_layers=int(self.neighbour_layers),
            )

    # ------------------------------------------------------------------ fitting
    @uses_n_threads
    def fit(self, points: np.ndarray, mask: np.ndarray, cond: np.ndarray) -> ParticleFlowMatching:
        """Train on point clouds.

        Parameters
        ----------
        points
            (N, M, F) per-point features, e.g. one jet's (pT_rel, Δη, Δφ) of
            ``PointCloudTable.constituents[:, j]``; values at padded slots are ignored.
        mask
            (N, M) bool, true for the first n_i slots of cloud i (n_i >= 1).
        cond
            (N, C) conditioning per cloud, e.g. the jet's (pT [GeV], η, φ, m [GeV]).

        Returns
        -------
        self

        Raises
        ------
        InputError
            Bad shapes, NaN/inf, clouds without points, masks with gaps, fewer than 10 clouds.
        TrainingError
            Non-finite loss (names the epoch and batch).
        CheckpointError
            ``checkpoint_dir`` holds a checkpoint of another model, setting or data.
        """
        self._check_params()
        x, mask, cond = check_point_clouds(points, mask, cond)
        logs = sorted({int(k) for k in self.log_features})
        if logs and (logs[-1] >= x.shape[2] or not (x[mask][:, logs] > 0).all()):
            msg = (
                f"log_features {tuple(logs)} need feature indices below {x.shape[2]} whose values "
                "are > 0 at every real point; drop non-positive points or the option"
            )
            raise InputError(msg)
        x[..., logs] = np.log(np.where(mask[:, :, None], x[..., logs], 1.0))
        if self.cone_radius is not None:
            if x.shape[2] < 3:
                msg = (
                    f"cone_radius needs (pT_rel, Delta eta, Delta phi) per point; got "
                    f"{x.shape[2]} feature(s)"
                )
                raise InputError(msg)
            x[..., 1:3], n_pulled = to_disk_plane(x[..., 1:3], float(self.cone_radius))
            n_pulled = int((n_pulled & mask).sum())
            if n_pulled:
                logger.info(
                    "ParticleFlowMatching: %d of %d points at r >= %.4g (1 - 1e-3 of "
                    "cone_radius) pulled in to it",
                    n_pulled,
                    int(mask.sum()),
                    (1 - _CONE_MARGIN) * float(self.cone_radius),
                )
        n = x.shape[0]
        n_val = round(self.val_fraction * n)
        if n < MIN_CLOUDS or n_val < 1 or n - n_val < 1:
            msg = f"got {n} clouds; ParticleFlowMatching needs at least {MIN_CLOUDS} to train"
            raise InputError(msg)
        root = np.random.SeedSequence(None if self.seed is None else int(self.seed))
        split_rng, torch_rng, loop_rng, noise_rng = (
            np.random.default_rng(s) for s in root.spawn(4)
        )
        self.point_mean_, self.point_std_ = _std(x[mask])
        self.cond_mean_, self.cond_std_ = _std(cond)
        z = np.where(mask[:, :, None], (x - self.point_mean_) / self.point_std_, 0.0)
        z = z.astype(np.float32)
        c = ((cond - self.cond_mean_) / self.cond_std_).astype(np.float32)
        perm = split_rng.permutation(n)
        va, tr = perm[:n_val], perm[n_val:]

        device = resolve_device(self.device)
        net = self._build_net(x.shape[2], cond.shape[1], int(torch_rng.integers(2**62)))
        noise_seed = int(noise_rng.integers(2**62))
        noise = torch.Generator(device=device)

        exponent = float(self.time_exponent)

        def reseed(epoch: int) -> None:
            noise.manual_seed(int(np.random.SeedSequence([noise_seed, epoch]).generate_state(1)[0]))

        def train_loss(
            model: EPiCVelocityNet, x0: torch.Tensor, m: torch.Tensor, cc: torch.Tensor
        ) -> torch.Tensor:
            m, x0 = _trim(m, x0)
            t = torch.rand((x0.shape[0],), generator=noise, device=x0.device) ** exponent
            eps = torch.randn(x0.shape, generator=noise, device=x0.device)
            return point_cfm_loss(model, x0, m, cc, t, eps)

        def val_loss(
            model: EPiCVelocityNet,
            x0: torch.Tensor,
            m: torch.Tensor,
            cc: torch.Tensor,
            t: torch.Tensor,
            eps: torch.Tensor,
        ) -> torch.Tensor:
            m, x0, eps = _trim(m, x0, eps)
            return point_cfm_loss(model, x0, m, cc, t, eps)

        val_gen = np.random.default_rng(noise_seed + 1)
        t_va = (val_gen.random(n_val) ** exponent).astype(np.float32)
        eps_va = val_gen.standard_normal(z[va].shape, dtype=np.float32)
        logger.info(
            "ParticleFlowMatching: EPiC (width %d, %d layers) on %d clouds (%d validation), "
            "up to %d points, device %s",
            self.hidden,
            self.n_layers,
            tr.size,
            va.size,
            x.shape[1],
            device,
        )
        result = fit_loop(
            net,
            train_loss,
            (z[tr], mask[tr], c[tr]),
            (z[va], mask[va], c[va], t_va, eps_va),
            epochs=int(self.epochs),
            batch_size=int(self.batch_size),
            learning_rate=float(self.learning_rate),
            weight_decay=float(self.weight_decay),
            patience=self.patience,
            seed=loop_rng,
            device=device,
            progress=self.progress,
            checkpoint_dir=self.checkpoint_dir,
            val_batch_size=int(self.batch_size),
            val_loss_fn=val_loss,
            lr_patience=self.lr_patience,
            lr_factor=self.lr_factor,
            lr_cosine=bool(self.lr_cosine),
            warmup_epochs=int(self.warmup_epochs),
            on_epoch_start=reseed,
        )
        self.n_features_in_ = int(x.shape[2])
        self.n_cond_in_ = int(cond.shape[1])
        self.device_ = device
        self.history_ = result.history
        self.best_epochs_ = result.history.best_epochs
        self._set_net(result.best_states[0])
        return self

    def _set_net(self, state: dict[str, torch.Tensor]) -> None:
        net = self._build_net(self.n_features_in_, self.n_cond_in_, None)
        net.load_state_dict(state)
        net.to(self.device_).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.net_ = net

    # ------------------------------------------------------------------ sampling
    def _fitted(self) -> None:
        if not hasattr(self, "net_"):
            msg = (
                "this ParticleFlowMatching is not fitted yet; call fit(points, mask, cond) or "
                "ParticleFlowMatching.load(path)"
            )
            raise NotFittedError(msg)

    def _integrate(self, z: torch.Tensor, c: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Midpoint steps of dx/dt = v from t = 1 (noise z) to t = 0; (B, M, F)."""
        n_steps = int(self.n_steps)
        dt = -1.0 / n_steps
        t = torch.empty(z.shape[0], dtype=z.dtype, device=z.device)
        x = z
        for k in range(n_steps):
            t0 = 1.0 - k / n_steps
            v = self.net_(x, t.fill_(t0), c, mask)
            v = self.net_(x + 0.5 * dt * v, t.fill_(t0 + 0.5 * dt), c, mask)
            x = x + dt * v
        return x

    @uses_n_threads
    def sample(
        self,
        cond: np.ndarray,
        mask: np.ndarray,
        *,
        seed: int | np.random.Generator | np.random.SeedSequence | None = None,
    ) -> np.ndarray:
        """Generated point clouds (N, M, F) float32, zero at padded slots.

        Parameters
        ----------
        cond
            (N, C) conditioning, same columns and units as in `fit` (e.g. pT, m in GeV).
        mask
            (N, M) bool, the first n_i slots of cloud i real (the multiplicity to generate); M
            need not equal the training M.
        seed
            Seed or Generator of the noise; None: derived from the model's ``seed`` (the same
            sample every call). The result does not depend on the batching or the device
            beyond floating-point rounding.
        """
        self._fitted()
        mask, cond = check_mask_cond(mask, cond, n_cond=self.n_cond_in_)
        n, m = mask.shape
        f = self.n_features_in_
        gen = generator(seed if seed is not None else self._default_sample_seed())
        out = gen.standard_normal((n, m, f), dtype=np.float32)
        out[~mask] = 0.0
        c_all = ((cond - self.cond_mean_) / self.cond_std_).astype(np.float32)
        counts = mask.sum(axis=1)
        order = np.argsort(counts, kind="stable")
        budget = _POINTS_PER_CALL["cuda" if self.device_.type == "cuda" else "cpu"]
        mean = torch.as_tensor(self.point_mean_, dtype=torch.float32, device=self.device_)
        std = torch.as_tensor(self.point_std_, dtype=torch.float32, device=self.device_)
        logs = sorted({int(k) for k in self.log_features})
        sorted_counts = counts[order]
        i = 0
        with torch.no_grad():
            while i < n:
                # the largest batch (clouds of similar multiplicity, sorted) whose clouds x
                # largest multiplicity stays within the budget; at least one cloud
                j = i + 1
                lo, hi = i + 1, n
                while lo <= hi:
                    mid = (lo + hi) // 2
                    if (mid - i) * int(sorted_counts[mid - 1]) <= budget:
                        j, lo = mid, mid + 1
                    else:
                        hi = mid - 1
                rows = order[i:j]
                n_max = int(sorted_counts[j - 1])
                z = torch.as_tensor(out[rows, :n_max], device=self.device_)
                mk = torch.as_tensor(mask[rows, :n_max], device=self.device_)
                cc = torch.as_tensor(c_all[rows], device=self.device_)
                x = self._integrate(z, cc, mk) * std + mean
                if logs:
                    x[..., logs] = x[..., logs].exp()
                if self.cone_radius is not None:
                    x[..., 1:3] = from_disk_plane(x[..., 1:3], float(self.cone_radius))
                x = torch.where(mk.unsqueeze(-1), x, torch.zeros((), device=x.device))
                out[rows, :n_max] = x.cpu().numpy()
                i = j
        return out

    def _default_sample_seed(self) -> np.random.SeedSequence | None:
        return None if self.seed is None else np.random.SeedSequence([int(self.seed), 1])

    # ------------------------------------------------------------------ persistence
    def _saved_params(self) -> dict[str, Any]:
        params = self.get_params()
        if params["checkpoint_dir"] is not None:
            params["checkpoint_dir"] = str(params["checkpoint_dir"])
        params["device"] = str(params["device"])
        params["log_features"] = [int(k) for k in params["log_features"]]
        params["n_neighbours"] = int(params["n_neighbours"])
        params["neighbour_layers"] = int(params["neighbour_layers"])
        params["time_exponent"] = float(params["time_exponent"])
        if params["cone_radius"] is not None:
            params["cone_radius"] = float(params["cone_radius"])
        return params

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write one file (parameters, standardisation, network state, history), atomically."""
        self._fitted()
        import sideband

        payload = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "versions": {"sideband": sideband.__version__, "torch": str(torch.__version__)},
            "params": self._saved_params(),
            "n_features_in": self.n_features_in_,
            "n_cond_in": self.n_cond_in_,
            "point_mean": torch.as_tensor(self.point_mean_, dtype=torch.float64),
            "point_std": torch.as_tensor(self.point_std_, dtype=torch.float64),
            "cond_mean": torch.as_tensor(self.cond_mean_, dtype=torch.float64),
            "cond_std": torch.as_tensor(self.cond_std_, dtype=torch.float64),
            "state": {k: v.detach().cpu() for k, v in self.net_.state_dict().items()},
            "history": self.history_.as_dict(),
        }
        save_atomic(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "auto") -> ParticleFlowMatching:
        """Read a model written by `save` onto ``device``; `CheckpointError` if the file is
        missing, corrupt, or not a saved ParticleFlowMatching of this format version."""
        path = Path(path)
        payload = load_saved(path, what="ParticleFlowMatching", cls_name="ParticleFlowMatching",
                             fmt=_FORMAT, version=_FORMAT_VERSION, fix="refit and save")  # fmt: skip
        try:
            params = dict(payload["params"])
            params["device"] = device
            params["log_features"] = tuple(params["log_features"])
            obj = cls(**params)
            obj._check_params()
            obj.n_features_in_ = int(payload["n_features_in"])
            obj.n_cond_in_ = int(payload["n_cond_in"])
            for key, size in (("point", obj.n_features_in_), ("cond", obj.n_cond_in_)):
                mean = np.asarray(payload[f"{key}_mean"], dtype=np.float64)
                std = np.asarray(payload[f"{key}_std"], dtype=np.float64)
                if mean.shape != (size,) or std.shape != (size,):
                    msg = f"{key} standardisation has shape {mean.shape}, expected ({size},)"
                    raise ValueError(msg)
                setattr(obj, f"{key}_mean_", mean)
                setattr(obj, f"{key}_std_", std)
            obj.history_ = TrainingHistory.from_dict(payload["history"])
            obj.best_epochs_ = obj.history_.best_epochs
            obj.device_ = resolve_device(device)
            obj._set_net(payload["state"])
        except (KeyError, TypeError, ValueError, RuntimeError, InputError) as err:
            msg = (
                f"{path} does not match a ParticleFlowMatching of this version "
                f"({type(err).__name__}: {str(err)[:200]}); refit and save"
            )
            raise CheckpointError(msg) from err
        return obj
