"""The full-phase-space recipe: `run_analysis` for ``background.method: point_cloud``.

The enhanced bump hunt of `sideband.pipeline`, on the constituents of the two leading jets
instead of a handful of jet features (Buhmann et al., arXiv:2310.06897):

1. read the point clouds (`sideband.events.read_point_clouds`: a folder written by
   ``sideband features ... --point-clouds DIR``, or one file);
2. cut the SR and the sidebands in m_JJ and deal the sideband events into the cross-fitting
   folds (``background.cross_fit_folds``), exactly as `sideband.pipeline.split_data`;
3. train one `PointCloudTemplate` per chain on the chain's sideband folds (a jet model given
   m_JJ, then a particle model of each jet's constituents given the jet) and sample it into the
   SR at ``oversampling`` x N_SR masses drawn from a KDE of the SR data masses (as CATHODE);
4. per chain, a k-folded `PointCloudClassifier` SR data vs template: SR events of the chain take
   their out-of-fold scores, the chain's sideband fold is scored by the fold models (each event
   by one seeded random fold model, as `KFoldResult.predict_by_fold`, so SR and sideband scores
   follow the same distribution);
5. cut at ``bumphunt.efficiency`` of the SR data and run the pyhf bump hunt before and after.

The result is a `sideband.pipeline.AnalysisResult` (``data`` is the `PointCloudTable`,
``template`` the jets of chain 0's template, ``template_models`` the `PointCloudTemplate` of
every chain), so `sideband.report.write_run` writes the usual run folder.

``sideband train`` (`sideband.pipeline.train_templates`) runs stages 1-3 alone with the same
`split_point_clouds` and `fit_point_cloud_template`, into the same checkpoint folder, so a later
``sideband run`` resumes the finished training instead of repeating it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sideband.errors import InputError
from sideband.records import CONSTITUENT_FEATURES, FeatureTable, PointCloudTable
from sideband.scoring.fold_models import FoldClassifiers

if TYPE_CHECKING:
    from sideband.background.point_cloud.template import PointCloudTemplate
    from sideband.config import AnalysisConfig
    from sideband.pipeline import AnalysisResult
    from sideband.regions import SignalRegion

__all__ = [
    "TEMPLATE_CHECKPOINT_SUBDIRS",
    "PointCloudSplit",
    "fit_point_cloud_template",
    "load_point_clouds",
    "run_point_cloud_analysis",
    "score_point_cloud_chains",
    "split_point_clouds",
    "template_training_summary",
]

log = logging.getLogger(__name__)

#: Fewest sideband events a chain's template may train on (`PointCloudTemplate.fit`'s floor).
MIN_TRAIN_EVENTS = 100

#: Where `PointCloudTemplate` keeps the checkpoints of its jet and particle models, below a
#: chain's ``<checkpoint_dir>/template_<k>``.
TEMPLATE_CHECKPOINT_SUBDIRS = ("jets", "particles")

_FEATURES_HINT = (
    "make one from particle-level events with `sideband features RAW.h5 -o features.parquet "
    "--point-clouds DIR` and set data.path to DIR"
)


def _check_point_cloud_input(path: Path) -> None:
    """InputError naming the fix unless `path` is a point-cloud Parquet file or a folder of them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        msg = f"data.path {path} does not exist; background.method point_cloud needs point clouds: {_FEATURES_HINT}"
        raise InputError(msg)
    if path.is_dir():
        files = sorted(f for f in path.glob("*.parquet") if not f.name.startswith("."))
        if not files:
            msg = (
                f"data.path {path} is a folder without .parquet point-cloud files; {_FEATURES_HINT}"
            )
            raise InputError(msg)
    else:
        files = [path]
    for f in files:
        try:
            meta = pq.read_schema(f).metadata or {}
        except (pa.ArrowException, OSError) as err:
            msg = (
                f"{f} is not a Parquet point-cloud file ({type(err).__name__}); background.method "
                f"point_cloud reads the constituents of both jets, not jet features: {_FEATURES_HINT}"
            )
            raise InputError(msg) from err
        if meta.get(b"sideband.content") != b"point_clouds":
            msg = (
                f"{f} is a Parquet file but not a point-cloud file (a features file?); "
                f"background.method point_cloud reads the constituents of both jets: {_FEATURES_HINT}"
            )
            raise InputError(msg)


def load_point_clouds(config: AnalysisConfig) -> PointCloudTable:
    """Stage 1: read the configured point clouds, keep the first ``data.max_events`` and drop
    labelled signal with ``data.remove_signal``.

    Each jet keeps its hardest ``background.point_cloud.max_constituents`` (M) constituents;
    its multiplicity (``jets[:, :, 4]``) stays the full count, as the template generates it
    (the template's clouds also hold min(n, M) constituents).
    """
    from sideband.events import read_point_clouds

    path = Path(config.data.path)
    _check_point_cloud_input(path)
    m = config.background.point_cloud_params.max_constituents
    from sideband.pipeline import apply_data_options

    table = apply_data_options(read_point_clouds(path, max_constituents=m), config)
    kept = table.mask.sum(axis=-1)
    if (kept < 1).any():
        msg = (
            f"{int((kept < 1).any(axis=1).sum())} events have a jet without constituents; drop them"
        )
        raise InputError(msg)
    for name in ("mjj", "jets", "constituents"):
        if not np.isfinite(getattr(table, name)).all():
            msg = f"{path}: {name} holds NaN/inf values; fix or drop those events"
            raise InputError(msg)
    return table


@dataclass(frozen=True)
class PointCloudSplit:
    """The events of a point-cloud analysis split into SR, sidebands and cross-fitting chains.

    ``sr`` / ``sb`` are the SR and sideband rows of ``table`` (selected by ``sr_mask`` /
    ``sb_mask``, shape (N,) bool); ``sb_fold`` (N_SB,) int the cross-fitting fold of each sideband
    event (chain k's template never trains on fold k when there are several), ``sr_chain``
    (N_SR,) int the chain whose classifier scores each SR event. Same rules and seeds as
    `sideband.pipeline.SplitData`.
    """

    seeds: dict[str, int]
    table: PointCloudTable
    signal_region: SignalRegion
    sr_mask: np.ndarray
    sb_mask: np.ndarray
    sr: PointCloudTable
    sb: PointCloudTable
    sb_fold: np.ndarray
    sr_chain: np.ndarray
    n_chains: int

    def sb_train(self, chain: int) -> np.ndarray:
        """(N_SB,) bool: the sideband events chain `chain`'s template trains on."""
        from sideband.pipeline import chain_training_rows

        return chain_training_rows(self.sb_fold, self.n_chains, chain)


def split_point_clouds(
    config: AnalysisConfig, *, data: PointCloudTable | None = None
) -> PointCloudSplit:
    """Stages 1-2: read the point clouds (or take `data`), cut the SR and the sidebands in m_JJ
    (GeV) and assign the cross-fitting folds as `sideband.pipeline.split_data` does.

    Raises `InputError` for an unusable input, an SR or sidebands with fewer than 100 events,
    and a chain with fewer than 100 sideband events to train on.
    """
    from sideband.pipeline import draw_cross_fit_folds, signal_region_from_config, stage_seeds

    seeds = stage_seeds(config.seed)
    if data is not None and not isinstance(data, PointCloudTable):
        msg = (
            f"data must be a sideband.records.PointCloudTable for background.method point_cloud; "
            f"got {type(data).__name__}. Read one with sideband.events.read_point_clouds"
        )
        raise InputError(msg)
    table = load_point_clouds(config) if data is None else data
    sr = signal_region_from_config(config)
    sr.validate_against(table.mjj, min_events=100)
    sr_mask = sr.contains(table.mjj)
    sb_mask = sr.in_sidebands(table.mjj)
    n_sr, n_sb = int(sr_mask.sum()), int(sb_mask.sum())
    log.info("SR %s GeV: %d events; sidebands: %d events", (sr.low_gev, sr.high_gev), n_sr, n_sb)
    n_chains = config.background.cross_fit_folds
    sb_fold, sr_chain = draw_cross_fit_folds(n_sb, n_sr, n_chains, seeds["cross_fit"])
    split = PointCloudSplit(
        seeds=seeds,
        table=table,
        signal_region=sr,
        sr_mask=sr_mask,
        sb_mask=sb_mask,
        sr=table.select(sr_mask),
        sb=table.select(sb_mask),
        sb_fold=sb_fold,
        sr_chain=sr_chain,
        n_chains=n_chains,
    )
    n_train = min(int(split.sb_train(k).sum()) for k in range(n_chains))
    if n_train < MIN_TRAIN_EVENTS:
        msg = (
            f"each cross-fitting chain trains on {n_train} sideband events, fewer than "
            f"{MIN_TRAIN_EVENTS}; widen region.sideband_gev, use more data, or lower "
            f"background.cross_fit_folds ({n_chains})"
        )
        raise InputError(msg)
    return split


def _template_params(config: AnalysisConfig) -> dict[str, Any]:
    """`PointCloudTemplate` keywords of the ``background.point_cloud`` block (no seed, device)."""
    pc = config.background.point_cloud_params
    return {
        "jet_model": pc.jet_model.model_dump(),
        "particle_model": {**pc.particle_model.model_dump(),
                           "log_features": tuple(pc.particle_model.log_features)},
        "closure": pc.closure,
        "jet_radius": pc.jet_radius,
    }  # fmt: skip


def fit_point_cloud_template(
    config: AnalysisConfig,
    split: PointCloudSplit,
    chain: int,
    *,
    checkpoint_dir: str | Path | None = None,
) -> PointCloudTemplate:
    """Stage 3 for one cross-fitting chain: a `PointCloudTemplate` trained on the chain's
    sideband folds. With `checkpoint_dir`, checkpoints go to ``<checkpoint_dir>/template_<chain>``
    (``jets/`` and ``particles/`` below it) and a rerun resumes from them."""
    from sideband.background.point_cloud.template import PointCloudTemplate
    from sideband.pipeline import _chain_checkpoint, _chain_seed, _check_chains

    _check_chains([chain], split.n_chains)
    model = PointCloudTemplate(
        **_template_params(config),
        device=config.background.device,
        seed=_chain_seed(split.seeds["template_fit"], chain),
        progress=config.progress,
        checkpoint_dir=_chain_checkpoint(checkpoint_dir, chain),
    )
    return model.fit(split.sb.select(split.sb_train(chain)))


def template_training_summary(
    model: PointCloudTemplate, split: PointCloudSplit, chain: int
) -> dict[str, Any]:
    """What ``templates.json`` records of chain `chain`'s fitted template: sideband events it
    trained on, constituent slots M, and per model (``jet_model``, ``particle_model``) the
    epochs trained, best epochs (best first), best validation loss and early stop."""
    from sideband.pipeline import _training_summary

    per_model = {
        name: _training_summary(getattr(model, f"{name}_").history_)
        for name in ("jet_model", "particle_model")
    }
    return {
        "n_train_events": int(split.sb_train(chain).sum()),
        "max_constituents": int(model.max_constituents_),
        **{key: {name: s[key] for name, s in per_model.items()} for key in per_model["jet_model"]},
    }


def _flatten(table: PointCloudTable) -> np.ndarray:
    from sideband.scoring.point_cloud import flatten_point_clouds

    return flatten_point_clouds(table.constituents, table.mask, table.jets)


def _classifier(config: AnalysisConfig) -> Any:
    from sideband.scoring.point_cloud import PointCloudClassifier

    params = config.scoring.point_cloud_params.model_dump()
    params["jet_features"] = tuple(params["jet_features"])
    return PointCloudClassifier(**params, n_threads=config.scoring.n_threads)


def _proba(model: Any, X: np.ndarray) -> np.ndarray:
    """P(data) (n,) of a fitted `PointCloudClassifier` (no float64 copy of the clouds)."""
    return model.predict_proba(X)[:, 1]


@dataclass(frozen=True)
class _ChainScores:
    score_sr: np.ndarray
    score_sb: np.ndarray
    fold_sr: np.ndarray
    fold_sb: np.ndarray
    template_0: PointCloudTable
    classifier_info: list[dict[str, Any]]
    classifiers: tuple[tuple[Any, ...], ...]
    seconds: dict[str, float]


def score_point_cloud_chains(
    config: AnalysisConfig,
    split: PointCloudSplit,
    models: list[PointCloudTemplate],
    *,
    checkpoint_dir: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray, PointCloudTable]:
    """Stages 3-4 after training: sample each chain's template into the SR and score events.

    Returns ``(score_sr (N_SR,), score_sb (N_SB,), template of chain 0)``; see
    `run_point_cloud_analysis` for the rules (and for `checkpoint_dir`).
    """
    out = _score_chains(config, split, models, checkpoint_dir=checkpoint_dir)
    return out.score_sr, out.score_sb, out.template_0


def _score_chains(
    config: AnalysisConfig,
    split: PointCloudSplit,
    models: list[PointCloudTemplate],
    *,
    checkpoint_dir: str | Path | None = None,
) -> _ChainScores:
    from sideband.pipeline import _chain_seed, _mass_sampler, scoring_checkpoint
    from sideband.scoring.kfold import score_by_fold
    from sideband.scoring.point_cloud import score_kfold_point_clouds

    bg, sc, seeds, sr = config.background, config.scoring, split.seeds, split.signal_region
    if len(models) != split.n_chains:
        msg = f"{len(models)} template models for {split.n_chains} cross-fitting chains"
        raise InputError(msg)
    n_sr = len(split.sr)
    n_template = round(bg.oversampling * n_sr)
    m_sr = split.sr.mjj
    x_sr = _flatten(split.sr)
    score_sr, score_sb = np.full(n_sr, np.nan), np.full(len(split.sb), np.nan)
    fold_sr, fold_sb = np.full(n_sr, -1), np.full(len(split.sb), -1)
    template_0: PointCloudTable | None = None
    info: list[dict[str, Any]] = []
    classifiers: list[tuple[Any, ...]] = []
    seconds = {"template_sampling": 0.0, "classifier": 0.0}
    for k, model in enumerate(models):
        start = time.perf_counter()
        sampler = _mass_sampler(bg, _chain_seed(seeds["mass_sampling"], k))
        sampler.fit(m_sr, low_gev=sr.low_gev, high_gev=sr.high_gev)
        template = model.sample(
            sampler.sample(n_template), seed=_chain_seed(seeds["template_sampling"], k)
        )
        seconds["template_sampling"] += time.perf_counter() - start
        start = time.perf_counter()
        scoring_seed = _chain_seed(seeds["scoring"], k)
        kfold = score_kfold_point_clouds(
            x_sr,
            _flatten(template),
            classifier=_classifier(config),
            n_folds=sc.n_folds,
            seed=scoring_seed,
            progress=config.progress,
            checkpoint_dir=scoring_checkpoint(checkpoint_dir, k),
        )
        mine = split.sr_chain == k
        score_sr[mine], fold_sr[mine] = kfold.scores[mine], kfold.fold[mine]
        fold = split.sb_fold == k
        score_sb[fold], fold_sb[fold] = score_by_fold(
            kfold.models, _flatten(split.sb.select(fold)), seed=scoring_seed, score=_proba
        )
        seconds["classifier"] += time.perf_counter() - start
        classifiers.append(tuple(kfold.models))
        info.append(
            {
                "chain": k,
                "n_template": len(template),
                "template_mjj_consistency_median_abs": float(
                    np.median(np.abs(model.mjj_consistency(template)))
                ),
                "best_val_loss_per_fold": [float(np.min(m.val_loss_)) for m in kfold.models],
                "epochs_per_fold": [len(m.val_loss_) for m in kfold.models],
                "template_scores_mean": float(np.mean(kfold.template_scores)),
                "data_scores_mean": float(np.mean(kfold.scores)),
            }
        )
        if k == 0:
            template_0 = template
    if template_0 is None:
        msg = "no cross-fitting chain to score; background.cross_fit_folds must be at least 1"
        raise InputError(msg)
    return _ChainScores(
        score_sr, score_sb, fold_sr, fold_sb, template_0, info, tuple(classifiers), seconds
    )


def _history(model: PointCloudTemplate) -> dict[str, Any]:
    """Both models' training histories as plain lists."""

    def plain(hist: Any) -> dict[str, Any]:
        return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in hist.as_dict().items()}

    return {
        "jet_model": plain(model.jet_model_.history_),
        "particle_model": plain(model.particle_model_.history_),
        "max_constituents": int(model.max_constituents_),
        "n_train_events": int(model.n_train_),
    }


def run_point_cloud_analysis(
    config: AnalysisConfig,
    *,
    data: PointCloudTable | FeatureTable | None = None,
    checkpoint_dir: str | Path | None = None,
) -> AnalysisResult:
    """Run the full-phase-space enhanced bump hunt (``background.method: point_cloud``).

    1. read the point clouds (GeV) of ``data.path`` (or take `data`, a `PointCloudTable`);
    2. split into SR and sidebands, and the sidebands into ``background.cross_fit_folds``
       folds;
    3. per chain, train a `PointCloudTemplate` on the other sideband folds and sample
       ``oversampling`` x N_SR template events at SR masses from a KDE of the SR data
       (``background.mass_sampler``);
    4. per chain, a k-folded `PointCloudClassifier` SR data vs template: the chain's SR events
       take out-of-fold scores, its sideband fold one fold model's score each;
    5. cut at ``bumphunt.efficiency`` of the SR data and run the pyhf bump hunt before and
       after the cut.

    With `checkpoint_dir` both template models write per-epoch checkpoints to
    ``<checkpoint_dir>/template_<k>/{jets,particles}`` and a rerun with the same data and
    settings resumes from them; each chain's finished classifier folds are saved to
    ``<checkpoint_dir>/scoring_<k>`` and reused too.
    Returns a `sideband.pipeline.AnalysisResult` whose ``data`` is the `PointCloudTable`,
    ``template`` (n_template, 10) the jets (pT, eta, phi, m, n of each jet; GeV) of chain 0's
    template, ``template_models`` the chains' `PointCloudTemplate`; the metrics add timings
    (s), per-chain classifier losses and the template's m_JJ consistency.
    """
    from sideband.bumphunt import bump_hunt
    from sideband.pipeline import AnalysisResult, _metrics, hunt_options_from_config
    from sideband.scoring import efficiency_threshold

    if data is not None and not isinstance(data, PointCloudTable):
        msg = (
            f"data must be a sideband.records.PointCloudTable for background.method point_cloud; "
            f"got {type(data).__name__}. Read one with sideband.events.read_point_clouds"
        )
        raise InputError(msg)
    start = time.perf_counter()
    split = split_point_clouds(config, data=data)
    seconds = {"read_and_split": time.perf_counter() - start}
    start = time.perf_counter()
    models = [
        fit_point_cloud_template(config, split, k, checkpoint_dir=checkpoint_dir)
        for k in range(split.n_chains)
    ]
    seconds["template_training"] = time.perf_counter() - start
    scored = _score_chains(config, split, models, checkpoint_dir=checkpoint_dir)
    seconds.update(scored.seconds)
    score_sr, score_sb = scored.score_sr, scored.score_sb
    if not (np.isfinite(score_sr).all() and np.isfinite(score_sb).all()):
        msg = "some SR or sideband events got no finite score; this is a bug, please report it"
        raise InputError(msg)
    threshold = efficiency_threshold(score_sr, config.bumphunt.efficiency)

    m_sr, m_sb, sr = split.sr.mjj, split.sb.mjj, split.signal_region
    start = time.perf_counter()
    hunt_options = hunt_options_from_config(config)
    before = bump_hunt(np.concatenate([m_sr, m_sb]), sr, **hunt_options)
    after = bump_hunt(
        np.concatenate([m_sr[score_sr >= threshold], m_sb[score_sb >= threshold]]),
        sr,
        **hunt_options,
    )
    seconds["bump_hunt"] = time.perf_counter() - start
    metrics = _metrics(split.table, split.sr_mask, score_sr, before, after, threshold, config)  # type: ignore[arg-type]
    metrics.update(
        {
            "method": "point_cloud",
            "n_sidebands": len(split.sb),
            "max_constituents": split.table.max_constituents,
            "sideband_efficiency": float(np.mean(score_sb >= threshold)),
            "chains": scored.classifier_info,
            "time_s": {k: round(v, 2) for k, v in seconds.items()},
        }
    )
    template_0 = scored.template_0
    return AnalysisResult(
        config=config,
        seeds=split.seeds,
        signal_region=sr,
        data=split.table,  # type: ignore[arg-type]
        sr_mask=split.sr_mask,
        sb_mask=split.sb_mask,
        template=template_0.jets.reshape(len(template_0), -1),
        template_models=tuple(models),  # type: ignore[arg-type]
        score_sr=score_sr,
        score_sb=score_sb,
        threshold=float(threshold),
        before_cut=before,
        after_cut=after,
        template_history={
            "method": "point_cloud",
            "cross_fit_folds": split.n_chains,
            "chains": [_history(m) for m in models],
        },
        metrics=metrics,
        fold_sr=scored.fold_sr,
        fold_sb=scored.fold_sb,
        chain_sr=split.sr_chain,
        chain_sb=split.sb_fold,
        classifiers=FoldClassifiers(
            scored.classifiers, CONSTITUENT_FEATURES, ("", "", ""), "point_clouds"
        ),
    )
