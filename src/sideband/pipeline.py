"""The recipe: the five stages called in order on one analysis configuration.

Each stage is a plain function or estimator taking and returning arrays, so this module is only the
wiring (cabinetry's ``example.py`` is the model). The CLI's ``sideband run`` calls `run_analysis`,
``sideband train`` calls `train_templates` and `save_templates`; both split the data with
`split_data` and fit each cross-fitting chain's template with `fit_chain_template`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from sideband.errors import ConfigError, InputError
from sideband.records import FEATURE_UNITS, FeatureTable, PointCloudTable
from sideband.regions import SignalRegion
from sideband.scoring.fold_models import FoldClassifiers

if TYPE_CHECKING:
    from sideband.background import CathodeTemplate, SigmaTemplate
    from sideband.background.point_cloud.template import PointCloudTemplate
    from sideband.bumphunt import BumpHuntResult
    from sideband.config import AnalysisConfig, BackgroundConfig
    from sideband.pipeline_point_cloud import PointCloudSplit

    AnyTemplate = CathodeTemplate | SigmaTemplate

__all__ = [
    "AnalysisResult",
    "SplitData",
    "TrainedTemplates",
    "checkpoint_dir_for",
    "fit_chain_template",
    "hunt_options_from_config",
    "run_analysis",
    "save_templates",
    "score_chains",
    "scoring_checkpoint",
    "signal_region_from_config",
    "split_data",
    "stage_seeds",
    "train_templates",
]

log = logging.getLogger(__name__)

#: The random steps of an analysis, each with its own seed spawned from the config seed.
SEED_NAMES = (
    "template_fit", "mass_sampling", "template_sampling", "scoring", "cross_fit", "bump_hunt",
)  # fmt: skip


@dataclass(frozen=True)
class AnalysisResult:
    """Everything a run produced, as arrays and records (the report writes them to disk).

    ``score_sr`` / ``score_sb`` are the anomaly scores (N_SR,) and (N_SB,) of the SR data (each
    event scored by the fold model that never saw it) and of the sideband events (each by one
    randomly assigned fold model, so both follow the same score distribution); ``threshold`` is
    the score cut that keeps ``efficiency`` of the SR data. ``template`` (n_template, d) is what
    the classifier saw as background: flow samples in feature space (CATHODE) or N(0, 1) draws in
    the flow's latent space (LaCATHODE), of the first cross-fitting chain; ``template_models``
    are the fitted `CathodeTemplate` (cathode, lacathode) or `SigmaTemplate` (sigma) of every
    chain (one per ``background.cross_fit_folds``). ``fold_sr`` / ``fold_sb`` (int64, (N_SR,) and
    (N_SB,)) name the k-fold classifier (0 to ``scoring.n_folds - 1``) of its chain that scored
    each event; the chain of an SR event is ``chain_sr`` and of a sideband event ``chain_sb``
    (its cross-fitting fold). `sideband.event_results` writes all of them per event.
    ``classifiers`` holds the k-fold classifiers of every chain (`FoldClassifiers`).
    """

    config: AnalysisConfig
    seeds: dict[str, int]
    signal_region: SignalRegion
    data: FeatureTable
    sr_mask: np.ndarray
    sb_mask: np.ndarray
    template: np.ndarray
    template_models: tuple[AnyTemplate, ...]
    score_sr: np.ndarray
    score_sb: np.ndarray
    threshold: float
    before_cut: BumpHuntResult
    after_cut: BumpHuntResult
    template_history: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    fold_sr: np.ndarray | None = None
    fold_sb: np.ndarray | None = None
    chain_sr: np.ndarray | None = None
    chain_sb: np.ndarray | None = None
    classifiers: FoldClassifiers | None = None


def stage_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for every random step, derived from one analysis seed."""
    children = np.random.SeedSequence(seed).spawn(len(SEED_NAMES))
    return {name: int(c.generate_state(1)[0]) for name, c in zip(SEED_NAMES, children, strict=True)}


def checkpoint_dir_for(config: AnalysisConfig) -> Path:
    """Where `sideband run` keeps training checkpoints: ``<output>/checkpoints/<key>``.

    The key hashes the configuration (without output and progress) and the input's size and
    modification time (for a folder of point-cloud files: each file's name, size and
    modification time), so a rerun of the same analysis resumes and a changed one starts
    afresh in its own folder.
    """
    import hashlib
    import json

    cfg = config.model_dump(mode="json", exclude={"output", "progress"})
    path = Path(config.data.path)
    if path.is_file():
        stat = path.stat()
        cfg["_input"] = [stat.st_size, stat.st_mtime_ns]
    elif path.is_dir():
        cfg["_input"] = [
            [f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(path.glob("*.parquet"))
        ]
    else:
        cfg["_input"] = None
    key = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
    return Path(config.output) / "checkpoints" / key


def signal_region_from_config(config: AnalysisConfig) -> SignalRegion:
    """The configured SR with its sideband bounds (GeV)."""
    if config.region.signal_region_gev is None:
        msg = (
            "this configuration has no region.signal_region_gev (a scan configuration); run it "
            "with `sideband scan`, or add the SR (low, high) in GeV"
        )
        raise ConfigError(msg)
    lo, hi = config.region.signal_region_gev
    sb = config.region.sideband_gev
    return SignalRegion(lo, hi, None if sb is None else sb[0], None if sb is None else sb[1])


_Table = TypeVar("_Table", FeatureTable, PointCloudTable)


def apply_data_options(table: _Table, config: AnalysisConfig) -> _Table:
    """The first ``data.max_events`` rows of `table` (a `FeatureTable` or `PointCloudTable`),
    without labelled signal when ``data.remove_signal`` is set."""
    if config.data.max_events is not None:
        table = table.select(np.arange(min(len(table), config.data.max_events)))
    if config.data.remove_signal:
        if table.label is None:
            msg = (
                f"data.remove_signal is set but {config.data.path} has no labels; "
                "remove the option or use a labelled file"
            )
            raise InputError(msg)
        table = table.select(table.label == 0)
    return table


def load_data(config: AnalysisConfig) -> FeatureTable:
    """Stage 1: read the feature file named in the config and apply the data options."""
    from sideband.events import read_features

    if config.background.method == "point_cloud":
        msg = (
            "background.method point_cloud reads point clouds, not jet features, and has no "
            "sliding-window scan (`sideband scan` would need a point-cloud template per window); "
            "analyse one signal region with `sideband run` (or `sideband train` for the templates "
            "only), or scan with background.method cathode, lacathode or sigma"
        )
        raise ConfigError(msg)
    table = apply_data_options(read_features(config.data.path, jets=config.data.jets), config)
    table.x(config.data.features)  # raises a clear error for missing columns
    table.check_finite(("mjj", *config.data.features))
    return table


@dataclass(frozen=True)
class SplitData:
    """The data of an analysis split into SR and sidebands, and into cross-fitting chains.

    ``x_sr`` (N_SR, d) / ``m_sr`` (N_SR,) GeV and ``x_sb`` (N_SB, d) / ``m_sb`` (N_SB,) GeV are the
    configured features and m_JJ of the SR and sideband events (rows of ``table`` selected by
    ``sr_mask`` / ``sb_mask``, shape (N,) bool). ``sb_fold`` (N_SB,) int gives each sideband event
    its cross-fitting fold (chain k's template never trains on fold k when there are several),
    ``sr_chain`` (N_SR,) int the chain whose classifier scores each SR event.
    """

    seeds: dict[str, int]
    table: FeatureTable
    signal_region: SignalRegion
    sr_mask: np.ndarray
    sb_mask: np.ndarray
    x_sr: np.ndarray
    m_sr: np.ndarray
    x_sb: np.ndarray
    m_sb: np.ndarray
    sb_fold: np.ndarray
    sr_chain: np.ndarray
    n_chains: int

    def sb_train(self, chain: int) -> np.ndarray:
        """(N_SB,) bool: the sideband events chain `chain`'s template trains on."""
        return chain_training_rows(self.sb_fold, self.n_chains, chain)

    def training_events(self, chain: int, method: str) -> tuple[np.ndarray, np.ndarray]:
        """(X (n, d), m (n,) GeV) that chain `chain`'s template of `method` trains on: its
        sideband folds (cathode, lacathode), or the SR events and those folds (sigma)."""
        train = self.sb_train(chain)
        x, m = self.x_sb[train], self.m_sb[train]
        if method == "sigma":
            return np.concatenate([self.x_sr, x]), np.concatenate([self.m_sr, m])
        return x, m


def draw_cross_fit_folds(
    n_sb: int, n_sr: int, n_chains: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitting assignment: ``(sb_fold (n_sb,), sr_chain (n_sr,))`` ints in [0, n_chains),
    balanced, drawn with `seed` (the ``cross_fit`` stage seed)."""
    rng = np.random.default_rng(seed)
    return rng.permutation(n_sb) % n_chains, rng.permutation(n_sr) % n_chains


def chain_training_rows(sb_fold: np.ndarray, n_chains: int, chain: int) -> np.ndarray:
    """(N_SB,) bool: the sideband events chain `chain`'s template trains on (every event with
    one chain, else those outside fold `chain`)."""
    if n_chains == 1:
        return np.ones(len(sb_fold), dtype=bool)
    return sb_fold != chain


def split_data(
    config: AnalysisConfig,
    *,
    data: FeatureTable | None = None,
    event_fold: np.ndarray | None = None,
) -> SplitData:
    """Stages 1-2: read the configured data (or take `data`), cut the SR and the sidebands and
    assign the cross-fitting folds (``background.cross_fit_folds``).

    `event_fold` (N,) int in ``[0, cross_fit_folds)`` fixes the fold of every event of the table
    (a scan shares one assignment across its windows); by default the folds are drawn for the
    SR and sideband events of this SR.

    Raises `InputError` for a missing or unusable input file and an SR with fewer than 100
    events or outside the data.
    """
    seeds = stage_seeds(config.seed)
    table = load_data(config) if data is None else data
    sr = signal_region_from_config(config)
    sr.validate_against(table.mjj, min_events=100)
    sr_mask = sr.contains(table.mjj)
    sb_mask = sr.in_sidebands(table.mjj)
    x = table.x(config.data.features)
    x_sr, m_sr = x[sr_mask], table.mjj[sr_mask]
    x_sb, m_sb = x[sb_mask], table.mjj[sb_mask]
    log.info(
        "SR %s GeV: %d events; sidebands: %d events",
        (sr.low_gev, sr.high_gev),
        len(m_sr),
        len(m_sb),
    )
    n_chains = config.background.cross_fit_folds
    # Cross-fitting: with K > 1 the sidebands are split in K folds; chain k trains its flow on the
    # other folds, and only its classifier scores sideband fold k. The flow learns the
    # statistical fluctuations of its training events, the classifier then selects where the
    # template falls short, i.e. where those events fluctuated low: scoring the same events would
    # give the sidebands a lower efficiency than the SR and fake a bump. Each SR event is scored
    # by one randomly assigned chain, so SR and sideband scores follow the same distribution.
    if event_fold is None:
        sb_fold, sr_chain = draw_cross_fit_folds(len(m_sb), len(m_sr), n_chains, seeds["cross_fit"])
    else:
        event_fold = np.asarray(event_fold)
        if event_fold.shape != table.mjj.shape or not np.all(
            (event_fold >= 0) & (event_fold < n_chains)
        ):
            msg = (
                f"event_fold must be ({len(table)},) ints in [0, {n_chains}), one cross-fitting "
                "fold per event"
            )
            raise InputError(msg)
        sb_fold, sr_chain = event_fold[sb_mask], event_fold[sr_mask]
    return SplitData(
        seeds=seeds,
        table=table,
        signal_region=sr,
        sr_mask=sr_mask,
        sb_mask=sb_mask,
        x_sr=x_sr,
        m_sr=m_sr,
        x_sb=x_sb,
        m_sb=m_sb,
        sb_fold=sb_fold,
        sr_chain=sr_chain,
        n_chains=n_chains,
    )


def _make_template(
    bg: BackgroundConfig,
    *,
    seed: int,
    progress: bool,
    checkpoint_dir: Path | None,
    sr: SignalRegion | None,
) -> AnyTemplate:
    """An unfitted template model for ``bg.method``: the CATHODE flow (cathode, lacathode) from the
    block's flow fields, or `SigmaTemplate` from its ``sigma`` sub-block, interpolating across
    the SR ``sr`` (GeV; None: no SR yet, as for a scan's model of every window)."""
    if bg.method == "sigma":
        from sideband.background import SigmaTemplate

        return SigmaTemplate(
            **bg.sigma_params.model_dump(),
            signal_region=None if sr is None else (sr.low_gev, sr.high_gev),
            device=bg.device,
            seed=seed,
            progress=progress,
            checkpoint_dir=checkpoint_dir,
        )
    from sideband.background import CathodeTemplate

    # The config block holds the estimator's own parameters, plus the pipeline's options.
    pipeline_options = {
        "method", "sigma", "point_cloud", "mass_sampler", "oversampling", "cross_fit_folds",
    }  # fmt: skip
    return CathodeTemplate(
        **bg.model_dump(exclude=pipeline_options),
        seed=seed,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
    )


def fit_chain_template(
    config: AnalysisConfig,
    split: SplitData,
    chain: int,
    *,
    checkpoint_dir: str | Path | None = None,
) -> AnyTemplate:
    """Stage 3 for one cross-fitting chain: build and fit the configured template model.

    CATHODE and LaCATHODE train on the chain's sideband folds; SIGMA on all the data of the
    chain, the SR events and those sideband folds (it interpolates across the SR instead of
    leaving it out). With `checkpoint_dir`, training checkpoints go to
    ``<checkpoint_dir>/template_<chain>`` and a rerun resumes from them.
    """
    _check_chains([chain], split.n_chains)
    model = _make_template(
        config.background,
        seed=_chain_seed(split.seeds["template_fit"], chain),
        progress=config.progress,
        checkpoint_dir=_chain_checkpoint(checkpoint_dir, chain),
        sr=split.signal_region,
    )
    return model.fit(*split.training_events(chain, config.background.method))


def _chain_checkpoint(checkpoint_dir: str | Path | None, chain: int) -> Path | None:
    """Where chain `chain` keeps its training checkpoints: ``<checkpoint_dir>/template_<chain>``."""
    return None if checkpoint_dir is None else Path(checkpoint_dir) / f"template_{chain}"


def scoring_checkpoint(checkpoint_dir: str | Path | None, chain: int) -> Path | None:
    """Folder of chain `chain`'s finished k-fold classifiers: ``<checkpoint_dir>/scoring_<chain>``
    (None without a checkpoint folder)."""
    return None if checkpoint_dir is None else Path(checkpoint_dir) / f"scoring_{chain}"


def _check_chains(chains: Sequence[int], n_chains: int) -> None:
    bad = [k for k in chains if not 0 <= k < n_chains]
    if not chains or bad:
        msg = (
            f"chain(s) {bad or list(chains)} cannot be trained: background.cross_fit_folds is "
            f"{n_chains}, so the chains are 0 to {n_chains - 1}; pick among those"
        )
        raise ConfigError(msg)


def run_analysis(
    config: AnalysisConfig,
    *,
    data: FeatureTable | PointCloudTable | None = None,
    checkpoint_dir: str | Path | None = None,
) -> AnalysisResult:
    """Run every stage of the enhanced bump hunt on the configured data.

    1. read the features (GeV); 2. split into SR and sidebands; 3. train the background template
    of every cross-fitting chain (CATHODE / LaCATHODE: a flow on the sidebands; SIGMA: a
    flow-matching model of SR and sidebands interpolated across the SR) and sample it into the
    SR at masses drawn from the SR data (KDE or histogram); 4. k-fold classifier SR data vs
    template -> anomaly score; 5. cut at the configured SR efficiency and fit m_JJ with pyhf,
    before and after the cut.

    `data` replaces the configured input file (e.g. pseudo-data; a `PointCloudTable` for
    ``background.method: point_cloud``, which `sideband.pipeline_point_cloud` runs); with
    `checkpoint_dir` the template training writes per-epoch checkpoints there, the scoring one
    file per finished classifier fold, and a rerun with the same data and settings resumes from
    them.
    """
    if config.background.method == "point_cloud":
        from sideband.pipeline_point_cloud import run_point_cloud_analysis

        return run_point_cloud_analysis(config, data=data, checkpoint_dir=checkpoint_dir)
    if data is not None and not isinstance(data, FeatureTable):
        msg = f"data must be a FeatureTable for method {config.background.method!r}"
        raise InputError(msg)
    from sideband.bumphunt import bump_hunt
    from sideband.scoring import efficiency_threshold

    split = split_data(config, data=data)
    seeds, table, sr = split.seeds, split.table, split.signal_region
    sr_mask, sb_mask, m_sr, m_sb = split.sr_mask, split.sb_mask, split.m_sr, split.m_sb

    bg = config.background
    models = [
        fit_chain_template(config, split, k, checkpoint_dir=checkpoint_dir)
        for k in range(split.n_chains)
    ]
    scored = _score_chains(config, split, models, checkpoint_dir=checkpoint_dir)
    score_sr, score_sb = scored.score_sr, scored.score_sb
    threshold = efficiency_threshold(score_sr, config.bumphunt.efficiency)

    mjj_all = np.concatenate([m_sr, m_sb])
    mjj_cut = np.concatenate([m_sr[score_sr >= threshold], m_sb[score_sb >= threshold]])
    hunt_options = hunt_options_from_config(config)
    before = bump_hunt(mjj_all, sr, **hunt_options)
    after = bump_hunt(mjj_cut, sr, **hunt_options)

    return AnalysisResult(
        config=config,
        seeds=seeds,
        signal_region=sr,
        data=table,
        sr_mask=sr_mask,
        sb_mask=sb_mask,
        template=scored.template_0,
        template_models=tuple(models),
        score_sr=score_sr,
        score_sb=score_sb,
        threshold=float(threshold),
        before_cut=before,
        after_cut=after,
        template_history={
            "method": bg.method,
            "cross_fit_folds": split.n_chains,
            "chains": [_history(m) for m in models],
        },
        metrics=_metrics(table, sr_mask, score_sr, before, after, threshold, config),
        fold_sr=scored.fold_sr,
        fold_sb=scored.fold_sb,
        chain_sr=split.sr_chain,
        chain_sb=split.sb_fold,
        classifiers=FoldClassifiers(
            scored.classifiers,
            config.data.features,
            tuple(FEATURE_UNITS.get(n, "") for n in config.data.features),
            "latent" if bg.method == "lacathode" else "features",
        ),
    )


def hunt_options_from_config(config: AnalysisConfig) -> dict[str, Any]:
    """`bump_hunt` keyword arguments of the ``bumphunt`` block, with the analysis's seed for
    pseudo-experiment p-values."""
    options = config.bumphunt.model_dump(exclude={"efficiency"})
    options["seed"] = stage_seeds(config.seed)["bump_hunt"]
    return options


def score_chains(
    config: AnalysisConfig,
    split: SplitData,
    models: Sequence[AnyTemplate],
    *,
    checkpoint_dir: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stages 3-4 after training: sample each chain's template into the SR and score the events.

    ``models[k]`` is chain k's fitted template (for SIGMA: interpolating across this SR). Chain
    k's classifier is k-folded on the SR data against its template; SR events with
    ``sr_chain == k`` take their out-of-fold scores, sideband fold k is scored by the fold
    models. Returns ``(score_sr (N_SR,), score_sb (N_SB,), template of chain 0 (n, d))``. With
    `checkpoint_dir`, chain k's finished folds are saved to ``<checkpoint_dir>/scoring_<k>``
    and a rerun takes them from there.
    """
    out = _score_chains(config, split, models, checkpoint_dir=checkpoint_dir)
    return out.score_sr, out.score_sb, out.template_0


@dataclass(frozen=True)
class ChainScores:
    """Scores of `score_chains` with the k-fold classifier (within its chain) of each event:
    ``fold_sr`` (N_SR,) and ``fold_sb`` (N_SB,), int64."""

    score_sr: np.ndarray
    score_sb: np.ndarray
    fold_sr: np.ndarray
    fold_sb: np.ndarray
    template_0: np.ndarray
    classifiers: tuple[tuple[Any, ...], ...] = ()


def _score_chains(
    config: AnalysisConfig,
    split: SplitData,
    models: Sequence[AnyTemplate],
    *,
    checkpoint_dir: str | Path | None = None,
) -> ChainScores:
    from sideband.scoring import HGBEnsemble, score_kfold
    from sideband.scoring.kfold import score_by_fold

    bg, sc, seeds, sr = config.background, config.scoring, split.seeds, split.signal_region
    if len(models) != split.n_chains:
        msg = f"{len(models)} template models for {split.n_chains} cross-fitting chains"
        raise InputError(msg)
    score_sr, score_sb = np.empty(len(split.m_sr)), np.empty(len(split.m_sb))
    fold_sr = np.full(len(split.m_sr), -1, dtype=np.int64)
    fold_sb = np.full(len(split.m_sb), -1, dtype=np.int64)
    template_0 = np.empty((0, split.x_sr.shape[1]))
    classifiers = []
    for k, model in enumerate(models):
        # a fixed line marking that the training is over and scoring began (tests watch for it)
        log.info("scoring chain %d of %d", k, len(models))
        fold = split.sb_fold == k
        template, x_sr_k, x_sb_k = _template(
            model, bg, split.x_sr, split.m_sr, split.x_sb[fold], split.m_sb[fold], sr,
            n_template=round(bg.oversampling * len(split.m_sr)),
            seeds={name: _chain_seed(seeds[name], k) for name in seeds},
        )  # fmt: skip
        scoring_seed = _chain_seed(seeds["scoring"], k)
        kfold = score_kfold(
            x_sr_k,
            template,
            classifier=HGBEnsemble(
                **sc.model_dump(exclude={"classifier", "n_folds", "point_cloud"})
            ),
            n_folds=sc.n_folds,
            seed=scoring_seed,
            progress=config.progress,
            checkpoint_dir=scoring_checkpoint(checkpoint_dir, k),
        )
        mine = split.sr_chain == k
        score_sr[mine], fold_sr[mine] = kfold.scores[mine], kfold.fold[mine]
        score_sb[fold], fold_sb[fold] = score_by_fold(kfold.models, x_sb_k, seed=scoring_seed)
        classifiers.append(tuple(kfold.models))
        if k == 0:
            template_0 = template
    return ChainScores(score_sr, score_sb, fold_sr, fold_sb, template_0, tuple(classifiers))


def _chain_seed(seed: int, chain: int) -> int:
    """Seed of a random step in cross-fitting chain `chain` (chain 0 keeps the stage seed)."""
    if chain == 0:
        return seed
    return int(np.random.SeedSequence([seed, chain]).generate_state(1)[0])


def _history(model: AnyTemplate) -> dict[str, Any]:
    """A template's training history as plain lists (epochs, losses, best epochs)."""
    return {
        k: v.tolist() if hasattr(v, "tolist") else v for k, v in model.history_.as_dict().items()
    }


def _mass_sampler(bg: BackgroundConfig, seed: int) -> Any:
    """The unfitted SR mass sampler in effect for ``bg`` (`KDEMassSampler` or
    `HistogramMassSampler`)."""
    from sideband.background import HistogramMassSampler, KDEMassSampler

    if bg.mass_sampler_kind == "histogram":
        return HistogramMassSampler(seed=seed)
    return KDEMassSampler(seed=seed)


def _template(
    model: AnyTemplate,
    bg: BackgroundConfig,
    x_sr: np.ndarray,
    m_sr: np.ndarray,
    x_sb: np.ndarray,
    m_sb: np.ndarray,
    sr: SignalRegion,
    *,
    n_template: int,
    seeds: dict[str, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The classifier's inputs for one chain: (template, SR data, sideband events), each (n, d).

    CATHODE: flow samples in feature space at masses from the SR mass sampler (a KDE of the SR
    data by default), and the data as they are. SIGMA: the same, sampling the flow-matching model
    interpolated across the SR, at masses from a histogram of the SR data by default. LaCATHODE
    (arXiv:2210.14924): everything in the flow's latent space, where background is N(0, 1) at
    every m_JJ, so the template is a standard normal and the score cannot depend on m_JJ through
    the features' correlation with it.
    """
    if bg.method == "lacathode":
        template = np.random.default_rng(seeds["template_sampling"]).standard_normal(
            (n_template, x_sr.shape[1])
        )
        return template, model.transform(x_sr, m_sr), model.transform(x_sb, m_sb)
    m_template = (
        _mass_sampler(bg, seeds["mass_sampling"])
        .fit(m_sr, low_gev=sr.low_gev, high_gev=sr.high_gev)
        .sample(n_template)
    )
    return model.sample(m_template, seed=seeds["template_sampling"]), x_sr, x_sb


@dataclass(frozen=True)
class TrainedTemplates:
    """What `train_templates` produced: the fitted template of each trained chain.

    ``models[i]`` belongs to chain ``chains[i]`` (a `CathodeTemplate`, `SigmaTemplate`, or for
    ``background.method: point_cloud`` a `PointCloudTemplate`, with ``split`` then the
    `sideband.pipeline_point_cloud.PointCloudSplit`); ``train_time_s[i]`` is its wall-clock
    training time in this call (s; small when it resumed from a finished checkpoint) and
    ``resumed[i]`` whether a checkpoint (of either model, for point clouds) existed when
    training started. ``data_from_config`` is False when the events were passed in instead of
    read from ``config.data.path``.
    """

    config: AnalysisConfig
    split: SplitData | PointCloudSplit
    chains: tuple[int, ...]
    models: tuple[AnyTemplate | PointCloudTemplate, ...]
    train_time_s: tuple[float, ...]
    resumed: tuple[bool, ...]
    checkpoint_dir: Path | None
    data_from_config: bool = True


def train_templates(
    config: AnalysisConfig,
    *,
    data: FeatureTable | PointCloudTable | None = None,
    checkpoint_dir: str | Path | None = None,
    chains: Sequence[int] | None = None,
) -> TrainedTemplates:
    """Stages 1-3 only: fit the background template of each cross-fitting chain, exactly as
    `run_analysis` would (same split, seeds and training events), without scoring.

    For ``background.method: point_cloud`` the split is `split_point_clouds` and each chain's
    `PointCloudTemplate` (jet and particle model) is fitted by `fit_point_cloud_template`, as in
    `run_point_cloud_analysis`; `data` is then a `PointCloudTable` (default: read
    ``data.path``), otherwise a `FeatureTable`.

    `chains` picks chains (default: all ``background.cross_fit_folds``). With `checkpoint_dir`
    (e.g. `checkpoint_dir_for` of the config, which `sideband run` uses too) training resumes
    from its checkpoints, so a later `run_analysis` with the same folder skips the training.
    """
    from sideband.background.training import CHECKPOINT_NAME

    split: SplitData | PointCloudSplit
    if config.background.method == "point_cloud":
        from sideband.pipeline_point_cloud import (
            TEMPLATE_CHECKPOINT_SUBDIRS,
            fit_point_cloud_template,
            split_point_clouds,
        )

        split = split_point_clouds(config, data=data)  # type: ignore[arg-type]
        fit: Any = fit_point_cloud_template
        subdirs: tuple[str, ...] = TEMPLATE_CHECKPOINT_SUBDIRS
    else:
        if data is not None and not isinstance(data, FeatureTable):
            msg = (
                f"data must be a sideband.records.FeatureTable for background.method "
                f"{config.background.method!r}; got {type(data).__name__}"
            )
            raise InputError(msg)
        split = split_data(config, data=data)
        fit, subdirs = fit_chain_template, ("",)
    todo = tuple(range(split.n_chains)) if chains is None else tuple(dict.fromkeys(chains))
    _check_chains(todo, split.n_chains)
    models, times, resumed = [], [], []
    for k in todo:
        ckpt = _chain_checkpoint(checkpoint_dir, k)
        resumed.append(
            ckpt is not None and any((ckpt / sub / CHECKPOINT_NAME).is_file() for sub in subdirs)
        )
        start = time.perf_counter()
        models.append(fit(config, split, k, checkpoint_dir=checkpoint_dir))
        times.append(time.perf_counter() - start)
        log.info("template of chain %d trained in %.1f s", k, times[-1])
    return TrainedTemplates(
        config=config,
        split=split,
        chains=todo,
        models=tuple(models),
        train_time_s=tuple(times),
        resumed=tuple(resumed),
        checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir),
        data_from_config=data is None,
    )


#: File name of the summary `save_templates` writes beside the models.
TEMPLATES_JSON = "templates.json"


def save_templates(trained: TrainedTemplates, out_dir: str | Path) -> Path:
    """Write each trained chain's model to ``<out_dir>/template_model_<k>.pt`` (its ``save``;
    read back with `CathodeTemplate.load`, `SigmaTemplate.load` or `PointCloudTemplate.load`,
    as ``method`` in the JSON says) and a summary ``templates.json``: method, parameters,
    seeds, best epochs, training time (s), input checksums and package versions. Returns the
    JSON's path. For point clouds each chain's ``epochs_trained``, ``best_epochs``,
    ``best_val_loss`` and ``stopped_early`` hold one entry per model (``jet_model``,
    ``particle_model``), and ``features`` is null (the template sees whole events).

    Chains trained by an earlier call into the same folder for the same configuration and
    input (same `checkpoint_dir_for` key) keep their entries; another configuration replaces
    the summary.
    """
    import json

    from sideband.report import input_checksums, package_versions, write_json

    config, split = trained.config, trained.split
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = checkpoint_dir_for(config).name
    path = out_dir / TEMPLATES_JSON
    chains: dict[str, Any] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
        if isinstance(old, dict) and old.get("config_key") == key:
            chains = dict(old.get("chains", {}))
    bg = config.background
    for k, model, seconds, resumed in zip(
        trained.chains, trained.models, trained.train_time_s, trained.resumed, strict=True
    ):
        name = f"template_model_{k}.pt"
        model.save(out_dir / name)
        if isinstance(split, SplitData):
            training = {
                "n_train_events": len(split.training_events(k, bg.method)[1]),
                **_training_summary(model.history_),  # type: ignore[union-attr]
            }
        else:
            from sideband.pipeline_point_cloud import template_training_summary

            training = template_training_summary(model, split, k)  # type: ignore[arg-type]
        chains[str(k)] = {
            "file": name,
            "seed": _chain_seed(split.seeds["template_fit"], k),
            "params": model.get_params(),
            **training,
            "train_time_s": round(seconds, 3),
            "resumed_from_checkpoint": resumed,
        }
    point_cloud: dict[str, Any] = {}
    if isinstance(split.table, PointCloudTable):  # the template sees whole events
        point_cloud = {"max_constituents": split.table.max_constituents}
    data_path = Path(config.data.path)
    summary = {
        "name": config.name,
        "method": bg.method,
        "mass_sampler": None if bg.method == "lacathode" else bg.mass_sampler_kind,
        "signal_region_gev": [split.signal_region.low_gev, split.signal_region.high_gev],
        "sideband_gev": config.region.sideband_gev,
        "features": None if point_cloud else list(config.data.features),
        **point_cloud,
        "cross_fit_folds": split.n_chains,
        "seed": config.seed,
        "stage_seeds": split.seeds,
        "config_key": key,
        "checkpoint_dir": None if trained.checkpoint_dir is None else str(trained.checkpoint_dir),
        "chains": dict(sorted(chains.items(), key=lambda item: int(item[0]))),
        "inputs": input_checksums(data_path) if trained.data_from_config else {},
        "versions": package_versions(),
    }
    return write_json(path, summary)


def _training_summary(hist: Any) -> dict[str, Any]:
    """Epochs trained, best epochs (best first), best validation loss and early stop of a
    `TrainingHistory`."""
    return {
        "epochs_trained": len(hist.epochs),
        "best_epochs": hist.best_epochs.tolist(),
        "best_val_loss": float(hist.val_loss[hist.best_epochs[0]]),
        "stopped_early": bool(hist.stopped_early),
    }


def _metrics(
    table: FeatureTable,
    sr_mask: np.ndarray,
    score_sr: np.ndarray,
    before: BumpHuntResult,
    after: BumpHuntResult,
    threshold: float,
    config: AnalysisConfig,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "n_events": len(table),
        "n_signal_region": int(sr_mask.sum()),
        "efficiency": config.bumphunt.efficiency,
        "threshold": float(threshold),
        "z_before_cut": float(before.z),
        "z_after_cut": float(after.z),
        "z_signed_before_cut": float(before.fit_info["z_signed"]),
        "z_signed_after_cut": float(after.fit_info["z_signed"]),
        "p0_before_cut": float(before.p0),
        "p0_after_cut": float(after.p0),
        "mu_hat_before_cut": float(before.mu_hat),
        "mu_hat_after_cut": float(after.mu_hat),
        "mu_err_before_cut": float(before.mu_err),
        "mu_err_after_cut": float(after.mu_err),
    }
    for name, hunt in (("before_cut", before), ("after_cut", after)):
        # observed and expected (-2, -1, 0, +1, +2 sigma) 95% CL limits on signal events in the SR
        out[f"upper_limit_{name}"] = None if hunt.upper_limit is None else float(hunt.upper_limit)
        out[f"expected_limits_{name}"] = (
            None if hunt.expected_limits is None else [float(v) for v in hunt.expected_limits]
        )
    if table.label is not None:
        y = table.label[sr_mask]
        out["n_signal_true_in_sr"] = int(y.sum())
        out["n_signal_true_in_sr_after_cut"] = int(y[score_sr >= threshold].sum())
        if 0 < y.sum() < len(y):
            from sideband.evaluation.metrics import summary

            out["score_vs_truth"] = summary(y, score_sr)
    return out
