"""k-folded anomaly scores: every event is scored by a model that never saw it.

Data (SR events, label 1) and template (background samples in the SR, label 0) are each cut
into ``n_folds`` folds by a seeded permutation. The model of fold ``i`` trains on all other folds
of both and scores data fold ``i`` and template fold ``i``. Events no model trained on (e.g. the
sidebands, which the bump hunt also cuts on) take the mean score of all fold models.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sideband.errors import InputError
from sideband.scoring.classifiers import check_features, member_seeds
from sideband.scoring.fold_checkpoints import fold_fingerprint, fold_path, load_fold, save_fold

__all__ = [
    "KFoldResult",
    "efficiency_threshold",
    "fold_indices",
    "kfold_scores",
    "labelled",
    "model_scores",
    "score_by_fold",
    "score_kfold",
]

logger = logging.getLogger(__name__)


def model_scores(model: Any, X: np.ndarray) -> np.ndarray:
    """Score, shape (N,), of a fitted classifier: P(label 1) if it has ``predict_proba``,
    else ``decision_function``."""
    if hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(X))
        classes = list(getattr(model, "classes_", [0, 1]))
        return proba[:, classes.index(1)].astype(np.float64)
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(X), dtype=np.float64).reshape(len(X))
    msg = (
        f"classifier {type(model).__name__} has neither predict_proba nor decision_function; "
        "use a scikit-learn style classifier such as sideband.scoring.HGBEnsemble"
    )
    raise InputError(msg)


@dataclass(frozen=True)
class KFoldResult:
    """Out-of-fold scores of the data and the template.

    Attributes
    ----------
    scores
        float64 (N_data,): score of each data event (row order of ``data_X``), from the one fold
        model that did not train on it.
    fold
        int64 (N_data,): fold index of each data event; ``models[fold[j]]`` scored event ``j``.
    models
        The ``n_folds`` fitted classifiers, model ``i`` trained without fold ``i``.
    template_scores
        float64 (N_template,): same rule for the template rows.
    template_fold
        int64 (N_template,): fold index of each template event.
    """

    scores: np.ndarray
    fold: np.ndarray
    models: Sequence[Any]
    template_scores: np.ndarray
    template_fold: np.ndarray

    @property
    def n_folds(self) -> int:
        return len(self.models)

    def predict(self, X: Any) -> np.ndarray:
        """Mean score over the fold models, shape (M,), for events none of them trained on.

        Use this for events outside the k-fold (e.g. the sidebands); for the data and template
        rows use `scores` and `template_scores`, which never come from a model that saw them.
        """
        n_features = _n_features(self.models[0])
        Xa = check_features(X, name="X", n_features=n_features)
        if len(Xa) == 0:
            return np.empty(0)
        return np.mean([model_scores(m, Xa) for m in self.models], axis=0)

    def predict_by_fold(self, X: Any, *, seed: int) -> np.ndarray:
        """Score (M,) of events no model saw, each by ONE fold model (seeded random fold).

        Use this for the sideband events that a threshold set on `scores` is applied to: each SR
        data event is scored by a single fold model, and the mean over models (`predict`) has a
        narrower distribution, so the same threshold would keep fewer sideband events than SR
        events and fake an excess in the SR. Scoring both alike keeps the selection consistent.
        The fold of each event is ``fold_indices(M, n_folds, default_rng(seed))`` (`score_by_fold`
        returns it too).
        """
        n_features = _n_features(self.models[0])
        Xa = check_features(X, name="X", n_features=n_features)
        return score_by_fold(self.models, Xa, seed=seed)[0]


def score_by_fold(
    models: Sequence[Any],
    X: Any,
    *,
    seed: int,
    score: Callable[[Any, Any], np.ndarray] = model_scores,
) -> tuple[np.ndarray, np.ndarray]:
    """Score events none of the fold `models` trained on, each by one seeded random fold model.

    `X` is any row-indexable batch of M events (an (M, d) array, or a flattened point cloud);
    ``score(model, rows)`` gives the scores of a batch (default `model_scores`). Returns
    ``(scores float64 (M,), fold int64 (M,))``: event ``j`` was scored by ``models[fold[j]]``,
    ``fold = fold_indices(M, len(models), default_rng(seed))``.
    """
    n = len(X)
    out = np.empty(n)
    fold = fold_indices(n, len(models), np.random.default_rng(seed))
    for k, model in enumerate(models):
        rows = fold == k
        if rows.any():
            out[rows] = score(model, X[rows])
    return out, fold


def _n_features(model: Any) -> int | None:
    n = getattr(model, "n_features_in_", None)
    return None if n is None else int(n)


def labelled(data: np.ndarray, template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stack data (label 1) and template (label 0) rows with their labels."""
    X = np.concatenate([data, template])
    y = np.concatenate([np.ones(len(data), np.int64), np.zeros(len(template), np.int64)])
    return X, y


def fold_indices(n: int, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index (n,) int64 of each row: a random permutation dealt round-robin, so fold sizes
    differ by at most one."""
    fold = np.empty(n, dtype=np.int64)
    fold[rng.permutation(n)] = np.arange(n) % n_folds
    return fold


def score_kfold(
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
    """Train data-vs-template classifiers k-folded and score every event out of fold.

    Parameters
    ----------
    data_X
        SR data features, shape (N_data, d), label 1.
    template_X
        Template (background samples in the SR) features, shape (N_template, d), label 0.
    classifier
        Unfitted scikit-learn style classifier (``fit(X, y)``, ``predict_proba`` or
        ``decision_function``), cloned with ``sklearn.base.clone`` for each fold. If it has a
        ``random_state`` parameter, fold ``i`` gets its own seed from
        ``SeedSequence(seed).spawn``. Class balancing is the classifier's job
        (`HGBEnsemble` balances by default).
    n_folds
        Number of folds, at least 2 (3 with ``validation="rotate"``).
    validation
        ``"internal"``: the model of fold ``i`` trains on all other folds and early-stops on its
        own internal split of them. ``"rotate"``: fold ``i + 1`` (mod k) is its validation set
        (passed to ``fit`` as ``X_val``/``y_val``) and it trains on the remaining k - 2 folds;
        the classifier's ``fit`` must accept ``X_val`` (`HGBEnsemble`, `MLPEnsemble` do).
    seed
        Seeds the fold permutations and the per-fold classifier seeds.
    progress
        Show a progress bar over the folds.
    checkpoint_dir
        Folder for one file per finished fold (`sideband.scoring.fold_checkpoints`): a rerun
        with the same classifier, data, template, folds and seed takes those folds from disk
        and trains only the missing ones; files written with other settings raise
        `CheckpointError`, files for other rows (a template sampled anew) are retrained.

    Returns
    -------
    KFoldResult
        Data scores aligned with the rows of ``data_X``, template scores, fold indices, models.
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
        check=check_features,
        classifier_hint="HGBEnsemble/MLPEnsemble",
        width_fix="build both from the same feature columns",
    )


def kfold_scores(
    data_X: Any,
    template_X: Any,
    *,
    classifier: Any,
    n_folds: int,
    seed: int,
    validation: str,
    progress: bool,
    check: Callable[..., np.ndarray],
    classifier_hint: str,
    width_fix: str,
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> KFoldResult:
    """The k-fold loop of `score_kfold`, with the input check ``check(X, name=...)`` (2-D array
    back) as a parameter, so other row layouts (flattened point clouds) share it; the hints
    complete the error messages. With ``checkpoint_dir`` finished folds are saved and reused
    (`sideband.scoring.fold_checkpoints`)."""
    from sklearn.base import clone
    from tqdm import tqdm

    if validation not in ("internal", "rotate"):
        msg = f"validation must be 'internal' or 'rotate'; got {validation!r}"
        raise InputError(msg)
    rotate = validation == "rotate"
    min_folds = 3 if rotate else 2
    if (
        not isinstance(n_folds, (int, np.integer))
        or isinstance(n_folds, bool)
        or n_folds < min_folds
    ):
        msg = f"n_folds must be an integer >= {min_folds} with validation={validation!r}; got {n_folds!r}"
        raise InputError(msg)
    if rotate and "X_val" not in inspect.signature(classifier.fit).parameters:
        msg = (
            f"{type(classifier).__name__}.fit does not accept X_val/y_val, which "
            f"validation='rotate' passes; use validation='internal' or {classifier_hint}"
        )
        raise InputError(msg)
    data = check(data_X, name="data_X")
    template = check(template_X, name="template_X")
    if data.shape[1] != template.shape[1]:
        msg = (
            f"data_X has {data.shape[1]} columns but template_X has {template.shape[1]}; "
            f"{width_fix}"
        )
        raise InputError(msg)
    for name, arr in (("data_X", data), ("template_X", template)):
        if len(arr) < 2 * n_folds:
            msg = (
                f"{name} has {len(arr)} events, too few for {n_folds} folds (need at least "
                f"{2 * n_folds}); use fewer folds or more events"
            )
            raise InputError(msg)

    seeds = member_seeds(seed, n_folds + 2)
    data_fold = fold_indices(len(data), n_folds, np.random.default_rng(seeds[0]))
    template_fold = fold_indices(len(template), n_folds, np.random.default_rng(seeds[1]))

    scores = np.full(len(data), np.nan)
    template_scores = np.full(len(template), np.nan)
    fingerprint = None
    if checkpoint_dir is not None:
        fingerprint = fold_fingerprint(classifier, n_folds=n_folds, seed=seed,
                                       validation=validation, data=data, template=template)  # fmt: skip
    models = []
    for i in tqdm(range(n_folds), desc="k-fold", disable=not progress):
        d_test, t_test = data_fold == i, template_fold == i
        path = None if checkpoint_dir is None else fold_path(checkpoint_dir, i, n_folds)
        exists = path is not None and path.is_file()
        saved = load_fold(path, fingerprint) if exists else None
        if saved is not None:
            model, scores[d_test], template_scores[t_test] = saved
            logger.info("fold %d/%d: taken from %s", i + 1, n_folds, path)
            models.append(model)
            continue
        if exists:
            logger.warning(
                "fold %d/%d: %s was written for other data or template rows; retraining it",
                i + 1,
                n_folds,
                path,
            )
        model = clone(classifier)
        if "random_state" in model.get_params():
            model.set_params(random_state=seeds[2 + i])
        d_train, t_train = ~d_test, ~t_test
        fit_kwargs: dict[str, np.ndarray] = {}
        if rotate:
            v = (i + 1) % n_folds
            d_val, t_val = data_fold == v, template_fold == v
            d_train, t_train = d_train & ~d_val, t_train & ~t_val
            X_val, y_val = labelled(data[d_val], template[t_val])
            fit_kwargs = {"X_val": X_val, "y_val": y_val}
        model.fit(*labelled(data[d_train], template[t_train]), **fit_kwargs)
        scores[d_test] = model_scores(model, data[d_test])
        template_scores[t_test] = model_scores(model, template[t_test])
        logger.info(
            "fold %d/%d: trained on %d data + %d template events",
            i + 1,
            n_folds,
            int(d_train.sum()),
            int(t_train.sum()),
        )
        if path is not None:
            save_fold(path, fingerprint, model, scores[d_test], template_scores[t_test])
        models.append(model)
    return KFoldResult(
        scores=scores,
        fold=data_fold,
        models=tuple(models),
        template_scores=template_scores,
        template_fold=template_fold,
    )


def efficiency_threshold(scores: Any, efficiency: float) -> float:
    """Threshold ``t`` such that the cut ``scores >= t`` keeps a fraction `efficiency` of `scores`.

    The cut keeps exactly ``k = round(efficiency * N)`` events (barring tied scores): ``t`` lies
    halfway between the ``k``-th highest score and the next one (or is the ``k``-th highest when
    the two are neighbouring floats). ``efficiency = 1`` gives a threshold just below the minimum
    (keeps everything).

    Parameters
    ----------
    scores
        Shape (N,), finite; usually the SR data scores.
    efficiency
        Fraction in (0, 1] of the events to keep.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        msg = f"scores must be a non-empty 1-D array; got shape {s.shape}"
        raise InputError(msg)
    if not np.isfinite(s).all():
        msg = (
            f"scores hold {int((~np.isfinite(s)).sum())} NaN/inf value(s); score every event "
            "before choosing a threshold"
        )
        raise InputError(msg)
    if not 0.0 < float(efficiency) <= 1.0:
        msg = f"efficiency must lie in (0, 1]; got {efficiency!r} (e.g. 0.01 keeps the top 1%)"
        raise InputError(msg)
    s = np.sort(s)
    n = s.size
    k = round(float(efficiency) * n)
    if k >= n:
        return float(np.nextafter(s[0], -np.inf))
    if k == 0:
        logger.warning(
            "efficiency %g of %d events keeps no event; the threshold is the maximum score",
            efficiency,
            n,
        )
        return float(np.nextafter(s[-1], np.inf))
    lo, hi = float(s[n - k - 1]), float(s[n - k])
    mid = 0.5 * (lo + hi)
    return mid if lo < mid < hi else hi
