"""The recipe: the five stages called in order on one analysis configuration.

Each stage is a plain function or estimator taking and returning arrays, so this module is only the
wiring (cabinetry's ``example.py`` is the model). The CLI's ``sideband run`` calls `run_analysis`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sideband.errors import InputError
from sideband.records import FeatureTable
from sideband.regions import SignalRegion

if TYPE_CHECKING:
    from sideband.background import CathodeTemplate
    from sideband.bumphunt import BumpHuntResult
    from sideband.config import AnalysisConfig

__all__ = [
    "AnalysisResult",
    "checkpoint_dir_for",
    "run_analysis",
    "signal_region_from_config",
    "stage_seeds",
]

log = logging.getLogger(__name__)

#: The random steps of an analysis, each with its own seed spawned from the config seed.
SEED_NAMES = ("template_fit", "mass_sampling", "template_sampling", "scoring", "cross_fit")


@dataclass(frozen=True)
class AnalysisResult:
    """Everything a run produced, as arrays and records (the report writes them to disk).

    ``score_sr`` / ``score_sb`` are the anomaly scores (N_SR,) and (N_SB,) of the SR data (each
    event scored by the fold model that never saw it) and of the sideband events (each by one
    randomly assigned fold model, so both follow the same score distribution); ``threshold`` is
    the score cut that keeps ``efficiency`` of the SR data. ``template`` (n_template, d) is what
    the classifier saw as background: flow samples in feature space (CATHODE) or N(0, 1) draws in
    the flow's latent space (LaCATHODE), of the first cross-fitting chain; ``template_models``
    are the fitted `CathodeTemplate` of every chain (one per ``background.cross_fit_folds``).
    """

    config: AnalysisConfig
    seeds: dict[str, int]
    signal_region: SignalRegion
    data: FeatureTable
    sr_mask: np.ndarray
    sb_mask: np.ndarray
    template: np.ndarray
    template_models: tuple[CathodeTemplate, ...]
    score_sr: np.ndarray
    score_sb: np.ndarray
    threshold: float
    before_cut: BumpHuntResult
    after_cut: BumpHuntResult
    template_history: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)


def stage_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for every random step, derived from one analysis seed."""
    children = np.random.SeedSequence(seed).spawn(len(SEED_NAMES))
    return {name: int(c.generate_state(1)[0]) for name, c in zip(SEED_NAMES, children, strict=True)}


def checkpoint_dir_for(config: AnalysisConfig) -> Path:
    """Where `sideband run` keeps training checkpoints: ``<output>/checkpoints/<key>``.

    The key hashes the configuration (without output and progress) and the input file's size
    and modification time, so a rerun of the same analysis resumes and a changed one starts
    afresh in its own folder.
    """
    import hashlib
    import json

    cfg = config.model_dump(mode="json", exclude={"output", "progress"})
    path = Path(config.data.path)
    stat = path.stat() if path.is_file() else None
    cfg["_input"] = None if stat is None else [stat.st_size, stat.st_mtime_ns]
    key = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
    return Path(config.output) / "checkpoints" / key


def signal_region_from_config(config: AnalysisConfig) -> SignalRegion:
    lo, hi = config.region.signal_region_gev
    sb = config.region.sideband_gev
    return SignalRegion(lo, hi, None if sb is None else sb[0], None if sb is None else sb[1])


def load_data(config: AnalysisConfig) -> FeatureTable:
    """Stage 1: read the feature file named in the config and apply the data options."""
    from sideband.events import read_features

    table = read_features(config.data.path)
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
    table.x(config.data.features)  # raises a clear error for missing columns
    table.check_finite(("mjj", *config.data.features))
    return table


def run_analysis(
    config: AnalysisConfig,
    *,
    data: FeatureTable | None = None,
    checkpoint_dir: str | Path | None = None,
) -> AnalysisResult:
    """Run every stage of the enhanced bump hunt on the configured data.

    1. read the features (GeV); 2. split into SR and sidebands; 3. train the CATHODE template on
    the sidebands and sample it into the SR at masses drawn from a KDE of the SR data;
    4. k-fold classifier SR data vs template -> anomaly score; 5. cut at the configured SR
    efficiency and fit m_JJ with pyhf, before and after the cut.

    `data` replaces the configured input file (e.g. pseudo-data); with `checkpoint_dir` the
    flow training writes per-epoch checkpoints there and resumes from them when rerun with the
    same data and settings.
    """
    from sideband.background import CathodeTemplate
    from sideband.bumphunt import bump_hunt
    from sideband.scoring import HGBEnsemble, efficiency_threshold, score_kfold

    seeds = stage_seeds(config.seed)
    table = load_data(config) if data is None else data
    sr = signal_region_from_config(config)
    sr.validate_against(table.mjj, min_events=100)
    sr_mask = sr.contains(table.mjj)
    sb_mask = sr.in_sidebands(table.mjj)
    names = config.data.features
    x_sr, m_sr = table.x(names)[sr_mask], table.mjj[sr_mask]
    x_sb, m_sb = table.x(names)[sb_mask], table.mjj[sb_mask]
    log.info(
        "SR %s GeV: %d events; sidebands: %d events",
        (sr.low_gev, sr.high_gev),
        len(m_sr),
        len(m_sb),
    )

    bg, sc = config.background, config.scoring
    n_chains = bg.cross_fit_folds
    # Cross-fitting: with K > 1 the sidebands are split in K folds; chain k trains its flow on the
    # other folds, and only its classifier scores sideband fold k. The flow learns the
    # statistical fluctuations of its training events, the classifier then selects where the
    # template falls short, i.e. where those events fluctuated low: scoring the same events would
    # give the sidebands a lower efficiency than the SR and fake a bump. Each SR event is scored
    # by one randomly assigned chain, so SR and sideband scores follow the same distribution.
    split_rng = np.random.default_rng(seeds["cross_fit"])
    sb_fold = split_rng.permutation(len(m_sb)) % n_chains
    sr_chain = split_rng.permutation(len(m_sr)) % n_chains
    score_sr, score_sb = np.empty(len(m_sr)), np.empty(len(m_sb))
    models = []
    for k in range(n_chains):
        train = sb_fold != k if n_chains > 1 else np.ones(len(m_sb), dtype=bool)
        ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / f"template_{k}"
        # The config block holds the estimator's own parameters, plus the pipeline's options.
        model = CathodeTemplate(
            **bg.model_dump(exclude={"method", "oversampling", "cross_fit_folds"}),
            seed=_chain_seed(seeds["template_fit"], k),
            progress=config.progress,
            checkpoint_dir=ckpt,
        ).fit(x_sb[train], m_sb[train])
        template, x_sr_k, x_sb_k = _template(
            model, bg.method, x_sr, m_sr, x_sb[sb_fold == k], m_sb[sb_fold == k], sr,
            n_template=round(bg.oversampling * len(m_sr)),
            seeds={name: _chain_seed(seeds[name], k) for name in seeds},
        )  # fmt: skip
        scoring_seed = _chain_seed(seeds["scoring"], k)
        kfold = score_kfold(
            x_sr_k,
            template,
            classifier=HGBEnsemble(**sc.model_dump(exclude={"classifier", "n_folds"})),
            n_folds=sc.n_folds,
            seed=scoring_seed,
            progress=config.progress,
        )
        score_sr[sr_chain == k] = kfold.scores[sr_chain == k]
        score_sb[sb_fold == k] = kfold.predict_by_fold(x_sb_k, seed=scoring_seed)
        models.append(model)
        if k == 0:
            template_0 = template
    threshold = efficiency_threshold(score_sr, config.bumphunt.efficiency)

    bh = config.bumphunt
    mjj_all = np.concatenate([m_sr, m_sb])
    mjj_cut = np.concatenate([m_sr[score_sr >= threshold], m_sb[score_sb >= threshold]])
    hunt_options = bh.model_dump(exclude={"efficiency"})
    before = bump_hunt(mjj_all, sr, **hunt_options)
    after = bump_hunt(mjj_cut, sr, **hunt_options)

    return AnalysisResult(
        config=config,
        seeds=seeds,
        signal_region=sr,
        data=table,
        sr_mask=sr_mask,
        sb_mask=sb_mask,
        template=template_0,
        template_models=tuple(models),
        score_sr=score_sr,
        score_sb=score_sb,
        threshold=float(threshold),
        before_cut=before,
        after_cut=after,
        template_history={
            "cross_fit_folds": n_chains,
            "chains": [
                {
                    k: v.tolist() if hasattr(v, "tolist") else v
                    for k, v in m.history_.as_dict().items()
                }
                for m in models
            ],
        },
        metrics=_metrics(table, sr_mask, score_sr, before, after, threshold, config),
    )


def _chain_seed(seed: int, chain: int) -> int:
    """Seed of a random step in cross-fitting chain `chain` (chain 0 keeps the stage seed)."""
    if chain == 0:
        return seed
    return int(np.random.SeedSequence([seed, chain]).generate_state(1)[0])


def _template(
    model: CathodeTemplate,
    method: str,
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

    CATHODE: flow samples in feature space at masses from a KDE of the SR data, and the data
    as they are. LaCATHODE (arXiv:2210.14924): everything in the flow's latent space, where
    background is N(0, 1) at every m_JJ, so the template is a standard normal and the score
    cannot depend on m_JJ through the features' correlation with it.
    """
    from sideband.background import KDEMassSampler

    if method == "lacathode":
        template = np.random.default_rng(seeds["template_sampling"]).standard_normal(
            (n_template, x_sr.shape[1])
        )
        return template, model.transform(x_sr, m_sr), model.transform(x_sb, m_sb)
    m_template = (
        KDEMassSampler(seed=seeds["mass_sampling"])
        .fit(m_sr, low_gev=sr.low_gev, high_gev=sr.high_gev)
        .sample(n_template)
    )
    return model.sample(m_template, seed=seeds["template_sampling"]), x_sr, x_sb


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
        "mu_hat_before_cut": float(before.mu_hat),
        "mu_hat_after_cut": float(after.mu_hat),
        "mu_err_after_cut": float(after.mu_err),
        "upper_limit_after_cut": None if after.upper_limit is None else float(after.upper_limit),
    }
    if table.label is not None:
        y = table.label[sr_mask]
        out["n_signal_true_in_sr"] = int(y.sum())
        out["n_signal_true_in_sr_after_cut"] = int(y[score_sr >= threshold].sum())
        if 0 < y.sum() < len(y):
            from sideband.evaluation.metrics import summary

            out["score_vs_truth"] = summary(y, score_sr)
    return out
