"""CATHODE background template: a conditional normalizing flow p(x | m_JJ) trained on sidebands.

CATHODE (Hallin et al., arXiv:2109.00546) learns the density of the auxiliary features x given
m_JJ in the sidebands, interpolates it into the signal region by conditioning on SR masses, and
samples a synthetic background template there; a classifier then separates SR data from the
template. LaCATHODE (arXiv:2210.14924) uses the same flow's latent space z = f(x; m) instead,
hence `CathodeTemplate.transform` / `inverse_transform`.

Model (defaults sized for ~50k sideband events with 5 features on one CPU core):

- preprocessing, fitted on the training events only: per-feature min/max scaling to (0, 1) with a
  margin ``logit_eps`` of the range, logit, standardisation (`PreprocessingPipeline`);
- context: the standardised mass ``c = (m - mean) / std`` of the training sideband masses;
- flow: zuko MAF with 6 affine masked-autoregressive transforms, each a MADE with 64x64 hidden
  ReLU units (``flow="nsf"`` for rational-quadratic spline transforms), standard normal base;
- training: `sideband.background.training.fit_loop` (Adam, batch 256, learning rate 1e-3, up to
  100 epochs, early stopping with patience 10 on a 20% validation split), keeping the
  ``n_ensemble`` best epochs by validation loss.

The original CATHODE used 15 MADE blocks with one hidden layer of 128 units and batch norm; these
defaults are smaller so a CPU run takes minutes.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import zuko

from sideband.background.base import check_features as _check_features
from sideband.background.base import check_masses as _check_masses
from sideband.background.base import generator as _generator
from sideband.background.base import sample_masses, split_validation
from sideband.background.mass_sampler import KDEMassSampler
from sideband.background.persistence import frozen_modules, load_template, save_template
from sideband.background.training import (
    fit_loop,
    resolve_device,
    uses_n_threads,
)
from sideband.background.transforms import OutOfRange, PreprocessingPipeline
from sideband.errors import InputError, NotFittedError

__all__ = ["MIN_EVENTS", "CathodeTemplate"]

logger = logging.getLogger(__name__)

#: Fewest training events `CathodeTemplate.fit` accepts.
MIN_EVENTS = 100
_FORMAT = "sideband.CathodeTemplate"
_FORMAT_VERSION = 1
_CHUNK = 65536


def _nll(model: torch.nn.Module, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of preprocessed features z (B, d) given context c (B, 1)."""
    return -model(c).log_prob(z).mean()


class CathodeTemplate:
    """CATHODE background template p(x | m_JJ): a zuko conditional flow trained on sidebands.

    ``__init__`` only stores parameters; torch objects are built in `fit`.

    Parameters
    ----------
    flow
        "maf" (affine masked autoregressive flow) or "nsf" (rational-quadratic splines).
    n_transforms, hidden_features
        Number of autoregressive transforms and the hidden layer sizes of each MADE.
    epochs, batch_size, learning_rate, weight_decay, patience
        Training settings (see `fit_loop`); ``patience=None`` disables early stopping.
    val_fraction
        Fraction of the events held out for validation when `fit` gets no ``X_val``.
    n_ensemble
        Keep the flows of the ``n_ensemble`` best epochs; sampling draws each event from a
        randomly chosen member, `log_prob` is the log of the mean density.
    logit_eps
        Margin of the logit scaling, as a fraction of each feature's fitted range.
    out_of_range
        What preprocessing does with events outside the fitted feature range: "clip", "nan" or
        "raise" (counts are logged).
    nsf_bins
        Spline bins per transform for ``flow="nsf"``.
    device
        "auto" (CUDA when available, else CPU), "cpu", "cuda".
    n_threads
        torch CPU threads while fitting, sampling and evaluating (restored after); None: torch's
        setting. On a shared machine, more threads than free cores slows training down a lot.
    seed
        Seeds the validation split, the weight initialisation (in a forked torch RNG; nothing is
        seeded globally), the shuffling and the default of `sample`. None: fresh entropy.
    progress
        tqdm bar over epochs.
    checkpoint_dir
        Optional folder for per-epoch training checkpoints; a rerun with the same data, settings
        and (int) ``seed`` resumes from it.

    Notes
    -----
    Fitted attributes: ``preprocessing_`` (`PreprocessingPipeline`), ``flow_`` (best epoch's zuko
    flow), ``flows_`` (the epoch ensemble, best first), ``history_`` (`TrainingHistory`),
    ``best_epochs_``, ``n_features_in_``, ``mass_mean_gev_``, ``mass_std_gev_``, ``device_``.
    """

    def __init__(
        self,
        *,
        flow: Literal["maf", "nsf"] = "maf",
        n_transforms: int = 6,
        hidden_features: Sequence[int] = (64, 64),
        epochs: int = 100,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int | None = 10,
        val_fraction: float = 0.2,
        n_ensemble: int = 1,
        logit_eps: float = 1e-3,
        out_of_range: OutOfRange = "clip",
        nsf_bins: int = 8,
        device: str = "auto",
        n_threads: int | None = None,
        seed: int | None = 0,
        progress: bool = False,
        checkpoint_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.flow = flow
        self.n_transforms = n_transforms
        self.hidden_features = hidden_features
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.val_fraction = val_fraction
        self.n_ensemble = n_ensemble
        self.logit_eps = logit_eps
        self.out_of_range = out_of_range
        self.nsf_bins = nsf_bins
        self.device = device
        self.n_threads = n_threads
        self.seed = seed
        self.progress = progress
        self.checkpoint_dir = checkpoint_dir

    # ------------------------------------------------------------------ parameters
    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (plain values), e.g. to record a run or clone."""
        return {
            "flow": self.flow,
            "n_transforms": int(self.n_transforms),
            "hidden_features": tuple(int(h) for h in self.hidden_features),
            "epochs": int(self.epochs),
            "batch_size": int(self.batch_size),
            "learning_rate": float(self.learning_rate),
            "weight_decay": float(self.weight_decay),
            "patience": None if self.patience is None else int(self.patience),
            "val_fraction": float(self.val_fraction),
            "n_ensemble": int(self.n_ensemble),
            "logit_eps": float(self.logit_eps),
            "out_of_range": self.out_of_range,
            "nsf_bins": int(self.nsf_bins),
            "device": str(self.device),
            "n_threads": None if self.n_threads is None else int(self.n_threads),
            "seed": None if self.seed is None else int(self.seed),
            "progress": bool(self.progress),
            "checkpoint_dir": None if self.checkpoint_dir is None else str(self.checkpoint_dir),
        }

    def clone(self) -> CathodeTemplate:
        """An unfitted copy with the same parameters."""
        return type(self)(**self.get_params())

    def _check_params(self) -> None:
        if self.flow not in ("maf", "nsf"):
            msg = f"flow must be 'maf' or 'nsf'; got {self.flow!r}"
            raise InputError(msg)
        if self.n_transforms < 1 or not self.hidden_features or min(self.hidden_features) < 1:
            msg = (
                f"need n_transforms >= 1 and positive hidden_features; got {self.n_transforms} "
                f"and {tuple(self.hidden_features)}"
            )
            raise InputError(msg)

    def _build_flow(self, n_features: int, torch_seed: int | None) -> torch.nn.Module:
        kwargs: dict[str, Any] = {
            "features": n_features,
            "context": 1,
            "transforms": int(self.n_transforms),
            "hidden_features": tuple(int(h) for h in self.hidden_features),
        }
        with torch.random.fork_rng(devices=[]):
            if torch_seed is not None:
                torch.manual_seed(torch_seed)
            if self.flow == "nsf":
                model: torch.nn.Module = zuko.flows.NSF(bins=int(self.nsf_bins), **kwargs)
            else:
                model = zuko.flows.MAF(**kwargs)
        return model

    # ------------------------------------------------------------------ fitting
    @uses_n_threads
    def fit(
        self,
        X: np.ndarray,
        m: np.ndarray,
        X_val: np.ndarray | None = None,
        m_val: np.ndarray | None = None,
    ) -> CathodeTemplate:
        """Train on sideband events.

        Parameters
        ----------
        X
            (N, d) auxiliary features of the sideband events.
        m
            (N,) m_JJ of the same events, GeV.
        X_val, m_val
            Optional explicit validation events (both or neither); otherwise ``val_fraction``
            of (X, m) is held out at random.

        Returns
        -------
        self

        Raises
        ------
        InputError
            NaN/inf, mismatched shapes, masses that look like TeV, fewer than `MIN_EVENTS`
            training events.
        TrainingError
            The loss became non-finite.
        """
        self._check_params()
        X = _check_features(X, "X")
        m = _check_masses(m, "m", X.shape[0])
        if X.shape[1] < 1:
            msg = "X has no feature columns; pass at least one auxiliary feature"
            raise InputError(msg)
        if self.seed is None:
            seeds = np.random.SeedSequence().spawn(3)
        else:
            seeds = np.random.SeedSequence(int(self.seed)).spawn(3)
        split_rng, torch_ss, loop_ss = (np.random.default_rng(s) for s in seeds)
        X_tr, m_tr, X_va, m_va = split_validation(
            X, m, X_val, m_val, val_fraction=self.val_fraction, rng=split_rng,
            min_events=MIN_EVENTS,
            shortfall=f"CATHODE needs at least {MIN_EVENTS} sideband events to train on (and a "
            "validation set); widen the sidebands or use more data (in an analysis each "
            "cross-fitting chain trains on the other chains' sideband folds only: lower "
            "background.cross_fit_folds to give it more)",
        )  # fmt: skip

        device = resolve_device(self.device)
        pre = PreprocessingPipeline(logit_eps=self.logit_eps, out_of_range=self.out_of_range)
        pre.fit(X_tr)
        # Validation events outside the training range would be clipped to the logit edge and
        # dominate the validation loss (and so early stopping): leave them out of it, logged.
        inside = pre.in_range(X_va)
        if not inside.all():
            logger.warning(
                "CATHODE: %d of %d validation event(s) lie outside the training events' feature "
                "range; they are left out of the validation loss",
                int((~inside).sum()),
                inside.size,
            )
            X_va, m_va = X_va[inside], m_va[inside]
        if X_va.shape[0] < 1:
            msg = "no validation event lies inside the training range; pass other X_val, m_val"
            raise InputError(msg)
        z_tr, z_va = pre.transform(X_tr), pre.transform(X_va)
        mass_mean, mass_std = float(m_tr.mean()), float(m_tr.std())
        if not mass_std > 0:
            msg = "all training masses are equal; CATHODE conditions on m_JJ and needs a spread"
            raise InputError(msg)
        c_tr = ((m_tr - mass_mean) / mass_std)[:, None]
        c_va = ((m_va - mass_mean) / mass_std)[:, None]

        torch_seed = int(torch_ss.integers(2**62))
        model = self._build_flow(X.shape[1], torch_seed)
        logger.info(
            "CATHODE: training a %s flow (%d transforms, hidden %s) on %d events, %d validation, "
            "device %s",
            self.flow.upper(),
            self.n_transforms,
            tuple(self.hidden_features),
            z_tr.shape[0],
            z_va.shape[0],
            device,
        )
        result = fit_loop(
            model,
            _nll,
            (z_tr, c_tr),
            (z_va, c_va),
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            patience=self.patience,
            n_ensemble=self.n_ensemble,
            seed=loop_ss,
            device=device,
            progress=self.progress,
            checkpoint_dir=self.checkpoint_dir,
        )
        self.preprocessing_ = pre
        self.mass_mean_gev_, self.mass_std_gev_ = mass_mean, mass_std
        self.n_features_in_ = X.shape[1]
        self.device_ = device
        self.history_ = result.history
        self.best_epochs_ = result.history.best_epochs
        self._set_flows(result.best_states)
        return self

    def _set_flows(self, states: Sequence[dict[str, torch.Tensor]]) -> None:
        build = lambda: self._build_flow(self.n_features_in_, None)
        self.flows_ = frozen_modules(build, states, self.device_)
        self.flow_ = self.flows_[0]

    # ------------------------------------------------------------------ evaluation
    def _fitted(self) -> None:
        if not hasattr(self, "flow_"):
            msg = "this CathodeTemplate is not fitted yet; call fit(X, m) or CathodeTemplate.load"
            raise NotFittedError(msg)

    def _context(self, m: np.ndarray) -> torch.Tensor:
        c = (m - self.mass_mean_gev_) / self.mass_std_gev_
        return torch.as_tensor(c[:, None], dtype=torch.float32, device=self.device_)

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float32, device=self.device_)

    @uses_n_threads
    def log_prob(self, X: np.ndarray, m: np.ndarray) -> np.ndarray:
        """log p(x | m) in the ORIGINAL feature space, shape (N,).

        Includes the preprocessing log-Jacobian; with an epoch ensemble, the log of the mean of
        the members' densities. X (N, d) in the fitted features' units, m (N,) in GeV.
        """
        self._fitted()
        X = _check_features(X, "X", self.n_features_in_)
        m = _check_masses(m, "m", X.shape[0])
        z, ladj = self.preprocessing_.transform_and_ladj(X)
        out = np.empty(X.shape[0])
        with torch.no_grad():
            for i in range(0, X.shape[0], _CHUNK):
                zc, cc = self._tensor(z[i : i + _CHUNK]), self._context(m[i : i + _CHUNK])
                lps = torch.stack([f(cc).log_prob(zc) for f in self.flows_]).double()
                lp = torch.logsumexp(lps, dim=0) - math.log(len(self.flows_))
                out[i : i + _CHUNK] = lp.cpu().numpy()
        return out + ladj

    @uses_n_threads
    def sample(
        self,
        n_or_m: int | np.ndarray,
        *,
        mass_sampler: KDEMassSampler | None = None,
        seed: int | np.random.Generator | None = None,
        return_mass: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Draw template events in the ORIGINAL feature space, float64 (n, d).

        Parameters
        ----------
        n_or_m
            Masses m (n,) in GeV (one sample per mass, conditional on it), or a number n of
            events, whose masses then come from ``mass_sampler`` (a fitted `KDEMassSampler`
            on the SR masses).
        seed
            Seed or Generator; None uses the template's ``seed`` (an int gives the same
            template on every call). Each event comes from a randomly chosen ensemble member.
        return_mass
            Also return the masses (n,) in GeV.
        """
        self._fitted()
        gen = _generator(seed if seed is not None else self._default_sample_seed())
        m = sample_masses(n_or_m, mass_sampler, gen, "KDEMassSampler")
        n, d = m.shape[0], self.n_features_in_
        z = gen.standard_normal((n, d))
        k = len(self.flows_)
        member = gen.integers(k, size=n) if k > 1 else np.zeros(n, dtype=np.int64)
        x_pre = np.empty((n, d))
        with torch.no_grad():
            for j, flow in enumerate(self.flows_):
                rows = np.flatnonzero(member == j)
                for i in range(0, rows.size, _CHUNK):
                    r = rows[i : i + _CHUNK]
                    xt = flow(self._context(m[r])).transform.inv(self._tensor(z[r]))
                    x_pre[r] = xt.double().cpu().numpy()
        X = self.preprocessing_.inverse_transform(x_pre)
        return (X, m) if return_mass else X

    def _default_sample_seed(self) -> np.random.SeedSequence | None:
        if self.seed is None:
            return None
        return np.random.SeedSequence([int(self.seed), 1])

    @uses_n_threads
    def transform(self, X: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Latent z = f(preprocess(x); m) of the best flow, shape (N, d) (LaCATHODE's space).

        Background events map to a standard normal for every m. X (N, d), m (N,) GeV.
        """
        self._fitted()
        X = _check_features(X, "X", self.n_features_in_)
        m = _check_masses(m, "m", X.shape[0])
        zp = self.preprocessing_.transform(X)
        out = np.empty_like(zp)
        with torch.no_grad():
            for i in range(0, X.shape[0], _CHUNK):
                zt = self.flow_(self._context(m[i : i + _CHUNK])).transform(
                    self._tensor(zp[i : i + _CHUNK])
                )
                out[i : i + _CHUNK] = zt.double().cpu().numpy()
        return out

    @uses_n_threads
    def inverse_transform(self, z: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Features X (N, d) in the original space from latent z (N, d) at masses m (N,) GeV."""
        self._fitted()
        z = _check_features(z, "z", self.n_features_in_)
        m = _check_masses(m, "m", z.shape[0])
        x_pre = np.empty_like(z)
        with torch.no_grad():
            for i in range(0, z.shape[0], _CHUNK):
                xt = self.flow_(self._context(m[i : i + _CHUNK])).transform.inv(
                    self._tensor(z[i : i + _CHUNK])
                )
                x_pre[i : i + _CHUNK] = xt.double().cpu().numpy()
        return self.preprocessing_.inverse_transform(x_pre)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write one file: flow state dicts, preprocessing arrays, mass scaling, history,
        parameters and library versions (torch.save to a temporary file, then os.replace)."""
        self._fitted()
        save_template(self, path, fmt=_FORMAT, version=_FORMAT_VERSION, states_key="flow_states",
                      modules=self.flows_,
                      extra={"mass_scaling_gev": [self.mass_mean_gev_, self.mass_std_gev_]})  # fmt: skip

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "auto") -> CathodeTemplate:
        """Read a template written by `save`; raises `CheckpointError` if the file is missing,
        corrupt, or does not match this version of the model."""

        def restore(obj: CathodeTemplate, payload: dict[str, Any]) -> None:
            obj.mass_mean_gev_, obj.mass_std_gev_ = (float(v) for v in payload["mass_scaling_gev"])
            obj._set_flows(payload["flow_states"])

        return load_template(cls, path, device, fmt=_FORMAT, version=_FORMAT_VERSION,
                             what="CATHODE template", restore=restore)  # fmt: skip
