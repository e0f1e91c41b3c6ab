"""CATHODE-style neural classifier: a torch MLP whose best epochs form an ensemble.

CATHODE (Hallin et al., arXiv:2109.00546) separates signal-region data (label 1) from the
background template (label 0) with a ReLU MLP trained by weighted binary cross-entropy, and
scores events with the mean output of the 10 epochs that have the lowest validation loss.
`MLPEnsemble` does the same as a scikit-learn classifier, with the conventions of
`sideband.scoring.classifiers.HGBEnsemble`: the same input checks and messages, class balancing
(`event_weights`), a stratified validation split that is never trained on (or an explicit
``X_val``), and seeds from `member_seeds`. Training runs in the package's one loop,
`sideband.background.training.fit_loop` (Adam(W), per-epoch losses, the ``n_best`` epochs' state
dicts kept on the CPU, sorted with ``argsort``).
"""

from __future__ import annotations

import logging
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
    check_features,
    check_labels,
    check_validation,
    event_weights,
    member_seeds,
    stratified_split,
)

__all__ = ["MLPEnsemble"]

logger = logging.getLogger(__name__)

_FORMAT = "sideband.MLPEnsemble"
_FORMAT_VERSION = 1
_CHUNK = 65536


def _weighted_bce(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor
) -> torch.Tensor:
    """Mean over the batch of w * BCE(logit, y); with weights of mean 1 over a set, the
    batch-size weighted mean of this over the set's batches is its weighted mean loss."""
    logit = model(x).squeeze(-1)
    return torch.nn.functional.binary_cross_entropy_with_logits(logit, y, weight=w)


def _build_mlp(n_features: int, hidden: tuple[int, ...], seed: int) -> torch.nn.Sequential:
    """ReLU MLP with one logit output, initialised from ``seed`` (the global torch generator is
    left as it was)."""
    layers: list[torch.nn.Module] = []
    width = n_features
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for h in hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
            width = h
        layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers)


class MLPEnsemble(ProbabilityScores, ClassifierMixin, BaseEstimator):
    """ReLU MLP classifier (label 1 vs label 0) scored by its ``n_best`` best epochs.

    Parameters
    ----------
    hidden
        Widths of the hidden layers (ReLU); one logit output.
    n_epochs
        Training epochs (no early stopping: every epoch is trained and validated).
    batch_size
        Minibatch size; the last partial batch of each (shuffled) epoch is dropped. CATHODE used
        128; the default 256 halves the number of steps: 90,000 rows x 4 features, 100 epochs
        took 62 s instead of 129 s on a busy 2-core CPU (2 threads), with the same held-out AUC
        on a Gaussian toy (0.6623 both; optimum 0.6643).
    learning_rate, weight_decay
        Adam settings (AdamW, so ``weight_decay`` is decoupled; 0 = plain Adam).
    n_best
        Number of epochs, those with the lowest validation loss, whose models are averaged
        (CATHODE: 10).
    validation_fraction
        Without ``X_val`` in `fit`: the stratified fraction of the rows held out for the
        validation loss, never trained on.
    class_weight
        ``"balanced"`` (default): both classes carry the same total weight; None: no
        reweighting; or a dict ``{0: w0, 1: w1}``. Applied to the training and validation rows.
    standardize
        Scale each feature by the training rows' mean and standard deviation.
    random_state
        int, ``numpy.random.Generator`` or None. Seeds the validation split, the weight
        initialisation and the shuffling (children of ``SeedSequence(random_state)``); the global
        torch and numpy generators are left as they were. An int gives bit-identical results on
        the CPU with the same thread count.
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
    n_threads
        torch CPU threads while fitting and predicting (None: torch's current setting); the
        previous setting is restored after.
    progress
        tqdm bar over epochs.

    Attributes
    ----------
    models_
        The ``n_best`` fitted MLPs (best first, eval mode, on ``device_``).
    best_epochs_
        int64 (n_best,): their epochs, ``argsort(val_loss_)[:n_best]``.
    val_loss_, train_loss_
        float64 (n_epochs,): weighted BCE per epoch; epoch 0 is the first trained epoch, its
        validation loss is measured after its updates.
    mean_, std_
        float64 (d,): the standardisation (0 and 1 with ``standardize=False``).
    n_features_in_
        Number of features seen in ``fit``.
    classes_
        ``array([0, 1])``.
    device_
        The `torch.device` the models live on.

    Notes
    -----
    ``score(X)`` returns the per-event anomaly score (like ``decision_function``), not the
    accuracy that scikit-learn's ``ClassifierMixin.score(X, y)`` returns; the accuracy is still
    given when ``y`` is passed.
    """

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (64, 64, 64),
        n_epochs: int = 100,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        n_best: int = 10,
        validation_fraction: float = 0.2,
        class_weight: str | dict[int, float] | None = "balanced",
        standardize: bool = True,
        random_state: int | np.random.Generator | None = None,
        device: str = "auto",
        n_threads: int | None = None,
        progress: bool = False,
    ) -> None:
        self.hidden = hidden
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.n_best = n_best
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.standardize = standardize
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads
        self.progress = progress

    # ------------------------------------------------------------------ parameters
    def _hidden(self) -> tuple[int, ...]:
        try:
            widths = tuple(self.hidden)
        except TypeError:
            widths = ()
        if not widths or not all(isinstance(h, (int, np.integer)) and h >= 1 for h in widths):
            msg = (
                f"hidden must be a non-empty sequence of positive layer widths, e.g. (64, 64, 64); "
                f"got {self.hidden!r}"
            )
            raise InputError(msg)
        return tuple(int(h) for h in widths)

    def _check_params(self, *, need_split: bool = True) -> None:
        self._hidden()
        for name in ("n_epochs", "batch_size", "n_best"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                msg = f"{name} must be a positive integer; got {v!r}"
                raise InputError(msg)
        if self.n_best > self.n_epochs:
            msg = (
                f"n_best ({self.n_best}) exceeds n_epochs ({self.n_epochs}); the ensemble takes "
                "its models from distinct epochs: lower n_best or train longer"
            )
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
        check_n_threads(self.n_threads)
        check_class_weight(self.class_weight)

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
    ) -> MLPEnsemble:
        """Train the MLP for ``n_epochs`` and keep the ``n_best`` epochs by validation loss.

        Parameters
        ----------
        X
            Features, shape (N, d); finite.
        y
            Labels, shape (N,): 1 = SR data (or signal), 0 = template (or background).
        sample_weight
            Optional non-negative weights, shape (N,); multiplied by the class balancing.
        X_val, y_val, sample_weight_val
            Optional explicit validation set, shapes (M, d), (M,), (M,); its weights get the
            same class balancing. Without it, a stratified, seeded ``validation_fraction`` of
            (X, y) is held out and never trained on.

        Returns
        -------
        self

        Raises
        ------
        InputError
            Bad labels, NaN/inf, mismatched shapes, a class with no (positive) weight, too few
            rows to split, invalid parameters.
        TrainingError
            The loss became non-finite.
        """
        self._check_params(need_split=X_val is None and y_val is None)
        Xa = check_features(X)
        ya = check_labels(y, len(Xa))
        w = event_weights(ya, sample_weight, self.class_weight)
        val = check_validation(X_val, y_val, sample_weight_val, Xa.shape[1], self.class_weight)
        hidden = self._hidden()
        device = resolve_device(self.device)
        split_seed, init_seed, loop_seed = member_seeds(self.random_state, 3)

        if val is None:
            tr, va = stratified_split(
                ya, float(self.validation_fraction), np.random.default_rng(split_seed)
            )
            X_tr, y_tr, w_tr = Xa[tr], ya[tr], w[tr]
            X_va, y_va, w_va = Xa[va], ya[va], w[va]
            # weights of mean 1 on each side, so each loss is a weighted mean
            w_tr, w_va = w_tr * (len(w_tr) / w_tr.sum()), w_va * (len(w_va) / w_va.sum())
        else:
            X_tr, y_tr, w_tr = Xa, ya, w
            X_va, y_va, w_va = val

        if self.standardize:
            mean = X_tr.mean(axis=0)
            std = X_tr.std(axis=0)
            constant = ~(std > 0)
            if constant.any():
                logger.warning(
                    "MLPEnsemble: feature column(s) %s are constant in the training rows; "
                    "they are left unscaled",
                    np.flatnonzero(constant).tolist(),
                )
                std = np.where(constant, 1.0, std)
        else:
            mean, std = np.zeros(Xa.shape[1]), np.ones(Xa.shape[1])

        def arrays(
            x: np.ndarray, lab: np.ndarray, wt: np.ndarray
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return (
                ((x - mean) / std).astype(np.float32),
                lab.astype(np.float32),
                wt.astype(np.float32),
            )

        model = _build_mlp(Xa.shape[1], hidden, init_seed)
        logger.info(
            "MLPEnsemble: training hidden %s for %d epochs on %d rows, %d validation, device %s",
            hidden,
            self.n_epochs,
            len(X_tr),
            len(X_va),
            device,
        )
        with torch_threads(self.n_threads):
            result = fit_loop(
                model,
                _weighted_bce,
                arrays(X_tr, y_tr, w_tr),
                arrays(X_va, y_va, w_va),
                epochs=int(self.n_epochs),
                batch_size=int(self.batch_size),
                learning_rate=float(self.learning_rate),
                weight_decay=float(self.weight_decay),
                patience=None,
                n_ensemble=int(self.n_best),
                drop_last=True,
                seed=loop_seed,
                device=device,
                progress=bool(self.progress),
                val_batch_size=max(len(X_va), 1),
            )
        history = result.history
        self.mean_ = np.asarray(mean, dtype=np.float64)
        self.std_ = np.asarray(std, dtype=np.float64)
        self.n_features_in_ = Xa.shape[1]
        self.classes_ = np.array([0, 1])
        self.device_ = device
        self.train_loss_ = history.train_loss
        self.val_loss_ = history.val_loss
        self.best_epochs_ = history.best_epochs
        self._set_models(result.best_states)
        return self

    def _set_models(self, states: list[dict[str, torch.Tensor]]) -> None:
        models = []
        for state in states:
            model = _build_mlp(self.n_features_in_, self._hidden(), 0)  # weights overwritten
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
                "this MLPEnsemble is not fitted yet; call fit(X, y) or MLPEnsemble.load(path) "
                "before scoring"
            )
            raise NotFittedError(msg)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Mean over the ``n_best`` epoch models of sigmoid(logit), shape (N, 2): columns
        P(label 0), P(label 1)."""
        self._check_fitted()
        Xa = check_features(X, n_features=self.n_features_in_)
        z = ((Xa - self.mean_) / self.std_).astype(np.float32)
        p1 = np.empty(len(Xa))
        with torch_threads(self.n_threads), torch.inference_mode():
            for i in range(0, len(z), _CHUNK):
                x = torch.as_tensor(z[i : i + _CHUNK], device=self.device_)
                total = torch.zeros(x.shape[0], dtype=torch.float64, device=self.device_)
                for model in self.models_:
                    total += torch.sigmoid(model(x).squeeze(-1)).double()
                p1[i : i + _CHUNK] = (total / len(self.models_)).cpu().numpy()
        return np.column_stack([1.0 - p1, p1])

    # ------------------------------------------------------------------ persistence
    def _saved_params(self) -> dict[str, Any]:
        params = self.get_params()
        rs = params["random_state"]
        params["random_state"] = int(rs) if isinstance(rs, (int, np.integer)) else None
        params["hidden"] = list(self._hidden())
        cw = params["class_weight"]
        if isinstance(cw, dict):
            params["class_weight"] = {int(k): float(v) for k, v in cw.items()}
        params["device"] = str(params["device"])
        return params

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write one file: parameters, the epoch models' state dicts, the standardisation and
        the losses (``torch.save`` to a temporary file, then ``os.replace``).

        A ``numpy.random.Generator`` random_state is stored as None.
        """
        self._check_fitted()
        import sideband

        payload = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "versions": {"sideband": sideband.__version__, "torch": str(torch.__version__)},
            "params": self._saved_params(),
            "n_features_in": int(self.n_features_in_),
            "mean": torch.as_tensor(self.mean_, dtype=torch.float64),
            "std": torch.as_tensor(self.std_, dtype=torch.float64),
            "states": [
                {k: v.detach().cpu() for k, v in m.state_dict().items()} for m in self.models_
            ],
            "best_epochs": torch.as_tensor(self.best_epochs_, dtype=torch.int64),
            "train_loss": torch.as_tensor(self.train_loss_, dtype=torch.float64),
            "val_loss": torch.as_tensor(self.val_loss_, dtype=torch.float64),
        }
        save_atomic(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "auto") -> MLPEnsemble:
        """Read a classifier written by `save` onto ``device``; raises `CheckpointError` if the
        file is missing, corrupt, or not a saved MLPEnsemble of this format version."""
        path = Path(path)
        payload = load_saved(path, cls_name="MLPEnsemble", what="MLPEnsemble", fmt=_FORMAT, version=_FORMAT_VERSION,
                             fix="refit and save")  # fmt: skip
        dev = resolve_device(device)
        try:
            params = dict(payload["params"])
            params["hidden"] = tuple(params["hidden"])
            params["device"] = device
            obj = cls(**params)
            obj._check_params(need_split=False)
            obj.n_features_in_ = int(payload["n_features_in"])
            obj.mean_ = np.asarray(payload["mean"], dtype=np.float64)
            obj.std_ = np.asarray(payload["std"], dtype=np.float64)
            if obj.mean_.shape != (obj.n_features_in_,) or obj.std_.shape != obj.mean_.shape:
                msg = "standardisation and n_features_in disagree"
                raise ValueError(msg)
            obj.best_epochs_ = np.asarray(payload["best_epochs"], dtype=np.int64)
            obj.train_loss_ = np.asarray(payload["train_loss"], dtype=np.float64)
            obj.val_loss_ = np.asarray(payload["val_loss"], dtype=np.float64)
            obj.classes_ = np.array([0, 1])
            obj.device_ = dev
            obj._set_models(list(payload["states"]))
        except (KeyError, TypeError, ValueError, RuntimeError, InputError) as err:
            msg = (
                f"{path} does not match an MLPEnsemble of this version ({type(err).__name__}: "
                f"{str(err)[:200]}); refit and save"
            )
            raise CheckpointError(msg) from err
        return obj
