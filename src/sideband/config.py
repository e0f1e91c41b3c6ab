"""The analysis configuration: pydantic models, one block per stage, validated on load.

Unknown keys are errors (a misspelt key must not be silently ignored), every block is frozen, and
relative paths are resolved against the folder of the configuration file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sideband.errors import ConfigError
from sideband.records import FEATURE_COLUMNS

__all__ = [
    "AnalysisConfig",
    "BackgroundConfig",
    "BumpHuntConfig",
    "DataConfig",
    "PointCloudClassifierConfig",
    "PointCloudJetModelConfig",
    "PointCloudParticleModelConfig",
    "PointCloudTemplateConfig",
    "RegionConfig",
    "ScanConfig",
    "ScoringConfig",
    "SigmaConfig",
    "load_config",
]

PositiveFloat = Annotated[float, Field(gt=0)]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Block):
    """Where the events come from."""

    path: Path
    """Feature file (LHCO features HDF5, CATHODE .npy, Parquet or ROOT from `sideband features`);
    with ``background.method: point_cloud`` a point-cloud Parquet file or folder of them
    (`sideband features ... --point-clouds DIR`)."""
    features: tuple[str, ...] = ("mj1", "delta_mj", "tau21_j1", "tau21_j2", "delta_r")
    """Auxiliary features x given to the template and the classifier (not used by the
    point_cloud method, which sees the constituents)."""
    remove_signal: bool = False
    """Drop events labelled signal (label = 1): the background-only version of the same analysis."""
    max_events: int | None = Field(default=None, gt=0)
    """Use only the first `max_events` rows (quick runs)."""
    jets: Literal["nanoaod"] | None = None
    """Read the features from a jet collection of a ROOT file instead of a features file:
    ``nanoaod`` takes the two leading ``FatJet_*`` jets of a NanoAOD-style TTree ``Events``."""

    @field_validator("features")
    @classmethod
    def _known_features(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [f for f in value if f not in FEATURE_COLUMNS or f == "mjj"]
        if unknown:
            allowed = [f for f in FEATURE_COLUMNS if f != "mjj"]
            msg = f"unknown feature(s) {unknown}; choose from {allowed} (mjj is the bump-hunt variable)"
            raise ValueError(msg)
        if not value:
            msg = "at least one feature is needed"
            raise ValueError(msg)
        return value


class RegionConfig(_Block):
    """Signal region and sidebands in m_JJ [GeV]."""

    signal_region_gev: tuple[PositiveFloat, PositiveFloat] | None = None
    """The SR of `sideband run`; a scan (``scan`` block) sets its own windows instead."""
    sideband_gev: tuple[PositiveFloat, PositiveFloat] | None = None
    """Outer bounds of the sidebands (and of the bump-hunt fit range); None = all data."""

    @model_validator(mode="after")
    def _ordered(self) -> RegionConfig:
        if self.signal_region_gev is None:
            if self.sideband_gev is not None and self.sideband_gev[0] >= self.sideband_gev[1]:
                msg = f"sideband_gev must be (low, high) with low < high; got {list(self.sideband_gev)}"
                raise ValueError(msg)
            return self
        lo, hi = self.signal_region_gev
        if lo >= hi:
            msg = f"signal_region_gev must be (low, high) with low < high; got {list(self.signal_region_gev)}"
            raise ValueError(msg)
        if self.sideband_gev is not None:
            slo, shi = self.sideband_gev
            if not (slo < lo and shi > hi):
                msg = (
                    f"sideband_gev {list(self.sideband_gev)} must enclose the signal region "
                    f"{list(self.signal_region_gev)}: widen sideband_gev or narrow the SR"
                )
                raise ValueError(msg)
        if hi < 100:
            msg = f"signal_region_gev {list(self.signal_region_gev)} looks like TeV; give masses in GeV"
            raise ValueError(msg)
        return self


class _FlowMatchingNetConfig(_Block):
    """Network and training keywords of a conditional flow-matching model given m_JJ
    (`sideband.background.SigmaTemplate`), shared by SIGMA and the point-cloud jet model."""

    hidden_features: int = Field(default=128, ge=1)
    """Width n of the velocity network (one int: every residual block has this width)."""
    n_blocks: int = Field(default=4, ge=1)
    mass_frequencies: int = Field(default=9, ge=0)
    time_frequencies: int = Field(default=3, ge=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    batch_norm: bool = False
    activation: Literal["silu", "relu"] = "silu"
    """"relu" is the paper's; "silu" makes the exact likelihood 15-60x cheaper to integrate."""
    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=1024, ge=1)
    learning_rate: PositiveFloat = 3e-4
    weight_decay: float = Field(default=0.0, ge=0)
    patience: int = Field(default=10, ge=1)
    lr_patience: int | None = Field(default=None, ge=1)
    """Epochs without a better validation loss before the learning rate drops (None: never)."""
    lr_factor: float = Field(default=0.3, gt=0, lt=1)
    val_fraction: float = Field(default=0.15, gt=0, lt=1)
    n_ensemble: int = Field(default=1, ge=1)
    selection: Literal["nll", "cfm"] = "nll"
    """Validation loss for early stopping and the kept epochs: exact NLL or flow-matching loss."""
    atol: PositiveFloat = 1e-5
    rtol: PositiveFloat = 1e-5
    """Tolerances of the adaptive ODE solver for sampling."""
    log_prob_tol: PositiveFloat = 1e-5
    """Tolerance of the likelihood ODE (the "nll" selection)."""


class SigmaConfig(_FlowMatchingNetConfig):
    """SIGMA's own parameters (`SigmaTemplate`), used when ``background.method`` is "sigma".

    SIGMA (arXiv:2410.20537) trains one conditional flow-matching model on all the data (SR
    included) and interpolates its mass conditioning across the SR between two anchor masses
    outside it, so the signal it learned in the SR is not in the template.
    """

    interpolation: Literal["context", "linear", "none"] = "context"
    """How SR masses are conditioned: "context" (interpolate the context vectors, the paper's
    choice), "linear" (interpolate the velocity), "none" (the data model itself: a diagnostic,
    it has learned any signal)."""
    anchor_margin_gev: PositiveFloat = 100.0
    """Anchor masses at SR low - margin and SR high + margin [GeV]."""


class PointCloudJetModelConfig(_FlowMatchingNetConfig):
    """The point-cloud template's jet model: flow matching of both jets' kinematics (eta,
    log(1 + m / GeV), dequantised multiplicity, log pT_1 and the balance in pT and |Delta phi|,
    see `sideband.background.point_cloud.jets`) given m_JJ, trained on the sideband events (a
    `SigmaTemplate` without interpolation). Defaults are
    `sideband.background.point_cloud.template.JET_MODEL_DEFAULTS` over SIGMA's: SIGMA's
    recipe of the 10 best epochs, stopped with patience 40."""

    epochs: int = Field(default=300, ge=1)
    batch_size: int = Field(default=512, ge=1)
    learning_rate: PositiveFloat = 1e-3
    patience: int = Field(default=40, ge=1)
    n_ensemble: int = Field(default=10, ge=1)
    selection: Literal["nll", "cfm"] = "cfm"


class PointCloudParticleModelConfig(_Block):
    """The point-cloud template's particle model (`ParticleFlowMatching`, EPiC-FM): flow
    matching of each jet's constituents (pT_rel, Delta eta, Delta phi) given the jet."""

    hidden: int = Field(default=128, ge=1)
    """Width of the EPiC layers (the paper: 128)."""
    global_dim: int = Field(default=32, ge=1)
    n_layers: int = Field(default=6, ge=1)
    time_frequencies: int = Field(default=8, ge=0)
    sum_scale: PositiveFloat = 1e-2
    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=256, ge=1)
    learning_rate: PositiveFloat = 1e-3
    weight_decay: float = Field(default=5e-5, ge=0)
    patience: int | None = Field(default=10, ge=1)
    """Early stopping after this many epochs without a better validation loss (None: never)."""
    val_fraction: float = Field(default=0.1, gt=0, lt=1)
    lr_patience: int | None = Field(default=None, ge=1)
    lr_factor: float = Field(default=0.3, gt=0, lt=1)
    lr_cosine: bool = False
    """Cosine annealing of the learning rate to 0 at ``epochs`` (the paper's schedule)."""
    warmup_epochs: int = Field(default=0, ge=0)
    """Linear warm-up epochs before the cosine (only with lr_cosine)."""
    n_steps: int = Field(default=100, ge=1)
    """Midpoint steps of the sampling ODE (2 network evaluations each)."""
    log_features: tuple[Annotated[int, Field(ge=0, le=2)], ...] = (0,)
    """Point features modelled in log: (0,) = log pT_rel, so generated pT_rel stay positive."""
    n_neighbours: int = Field(default=4, ge=0)
    """Messages between each constituent and its k nearest in (Delta eta, Delta phi), so the
    generator forms collinear pairs (two-sample AUC on particle-level events 0.77-0.82 without,
    0.60-0.67 with k = 4; 1.7x the training time); 0: EPiC-FM as in the paper."""
    neighbour_layers: int = Field(default=1, ge=1)
    """How many neighbour-message layers (with n_neighbours > 0; at most n_layers)."""
    time_exponent: float = Field(default=2.0, ge=0.1, le=10)
    """Training times t = u ** time_exponent: 2 (the default) trains more near the data end,
    t -> 0, where collinear constituent pairs form (on particle-level events the hard-core
    observables come closer to data at no cost; benchmarks/README.md); 1: uniform, as in the
    paper."""
    n_threads: int | None = Field(default=None, ge=1)
    """torch CPU threads while fitting and sampling (None: as set)."""

    @model_validator(mode="after")
    def _schedule(self) -> PointCloudParticleModelConfig:
        if self.lr_cosine and self.lr_patience is not None:
            msg = "choose one learning-rate schedule: lr_cosine: true or lr_patience, not both"
            raise ValueError(msg)
        if self.warmup_epochs and (not self.lr_cosine or self.warmup_epochs >= self.epochs):
            msg = (
                f"warmup_epochs ({self.warmup_epochs}) needs lr_cosine: true and fewer warm-up "
                f"epochs than epochs ({self.epochs})"
            )
            raise ValueError(msg)
        if self.neighbour_layers > self.n_layers:
            msg = f"neighbour_layers ({self.neighbour_layers}) must not exceed n_layers ({self.n_layers})"
            raise ValueError(msg)
        return self


class PointCloudTemplateConfig(_Block):
    """The full-phase-space template (`PointCloudTemplate`, arXiv:2310.06897), used when
    ``background.method`` is "point_cloud": a jet model given m_JJ, then a particle model
    of each jet's constituents given the jet, both trained on the sideband events."""

    max_constituents: int | None = Field(default=None, ge=1)
    """M, the constituent slots per jet read from the point-cloud files (each jet keeps its
    hardest M); None: as written by `sideband features --max-constituents` (279)."""
    jet_model: PointCloudJetModelConfig = PointCloudJetModelConfig()
    particle_model: PointCloudParticleModelConfig = PointCloudParticleModelConfig()
    closure: Literal["clouds", "jets"] | None = "clouds"
    """How generated clouds are made to add up to their jets (`PointCloudTemplate`): "clouds"
    moves each cloud onto its generated jet, "jets" the reverse, null neither."""
    jet_radius: PositiveFloat = 1.0
    """R of the anti-kT jets of the point-cloud files (``sideband features``: 1.0)."""


class BackgroundConfig(_Block):
    """The background template model (stage 3).

    The flow fields (``flow`` ... ``n_ensemble``) configure the CATHODE flow used by "cathode"
    and "lacathode"; "sigma" takes its parameters from the ``sigma`` sub-block instead, and
    "point_cloud" from the ``point_cloud`` sub-block (all optional). ``mass_sampler``,
    ``oversampling``, ``cross_fit_folds`` and ``device`` apply to every method.
    """

    method: Literal["cathode", "lacathode", "sigma", "point_cloud"] = "cathode"
    """"cathode": classify SR data against flow samples in feature space; "lacathode": map data
    through the sideband flow into its latent space and classify it against N(0, 1) there, so
    the score is decorrelated from m_JJ and the cut does not sculpt the background; "sigma":
    classify SR data against samples of a flow-matching model of all the data, interpolated
    across the SR (the ``sigma`` block); "point_cloud": the full-phase-space analysis
    (arXiv:2310.06897), a generator of both jets and their constituent point clouds trained on
    the sidebands, scored by a point-cloud classifier (``scoring.classifier: point_cloud``);
    the input is a folder of point-cloud files from ``sideband features --point-clouds``."""
    flow: Literal["maf", "nsf"] = "maf"
    n_transforms: int = Field(default=6, ge=1)
    hidden_features: tuple[int, ...] = (64, 64)
    epochs: int = Field(default=60, ge=1)
    batch_size: int = Field(default=256, ge=1)
    learning_rate: PositiveFloat = 1e-3
    weight_decay: float = Field(default=0.0, ge=0)
    patience: int = Field(default=10, ge=1)
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    n_ensemble: int = Field(default=1, ge=1)
    sigma: SigmaConfig | None = None
    """SIGMA's parameters (method "sigma" only); omitted: `SigmaConfig` defaults."""
    point_cloud: PointCloudTemplateConfig | None = None
    """The point-cloud template's parameters (method "point_cloud" only); omitted: defaults."""
    mass_sampler: Literal["kde", "histogram"] | None = None
    """SR masses of the template: "kde" (reflected Gaussian KDE of the SR masses) or "histogram"
    (a histogram of them); None: the method's default, kde for cathode, histogram for sigma.
    LaCATHODE samples no masses."""
    oversampling: PositiveFloat = 4.0
    """Template events per SR data event."""
    cross_fit_folds: int = Field(default=2, ge=1)
    """Split the sidebands in K folds, train one flow (and classifier) per fold on the others and
    score each sideband event with the chain that did not train on it. 1: one flow on all the
    sidebands, which then scores its own training events (biases the cut towards the SR).
    SIGMA's chain k trains on the SR data and the sideband folds other than k."""
    device: str = "auto"

    @model_validator(mode="after")
    def _method_options(self) -> BackgroundConfig:
        if self.sigma is not None and self.method != "sigma":
            msg = (
                f"a sigma block is given but method is {self.method!r}; set method: sigma, or "
                "remove the sigma block"
            )
            raise ValueError(msg)
        if self.point_cloud is not None and self.method != "point_cloud":
            msg = (
                f"a point_cloud block is given but method is {self.method!r}; set method: "
                "point_cloud, or remove the point_cloud block"
            )
            raise ValueError(msg)
        if self.mass_sampler is not None and self.method == "lacathode":
            msg = (
                "mass_sampler has no effect with method lacathode (its template is N(0, 1) in "
                "the latent space); remove it"
            )
            raise ValueError(msg)
        return self

    @property
    def mass_sampler_kind(self) -> Literal["kde", "histogram"]:
        """The mass sampler in effect: the configured one, or the method's default."""
        if self.mass_sampler is not None:
            return self.mass_sampler
        return "histogram" if self.method == "sigma" else "kde"

    @property
    def sigma_params(self) -> SigmaConfig:
        """The SIGMA parameters in effect (the ``sigma`` block or its defaults)."""
        return self.sigma if self.sigma is not None else SigmaConfig()

    @property
    def point_cloud_params(self) -> PointCloudTemplateConfig:
        """The point-cloud template parameters in effect (the ``point_cloud`` block or its
        defaults)."""
        return self.point_cloud if self.point_cloud is not None else PointCloudTemplateConfig()


#: Jet inputs of the point-cloud classifier (`sideband.scoring.point_cloud.JET_FEATURE_NAMES`).
PointCloudJetFeature = Literal["log_pt", "eta", "log_m", "log_n", "abs_dphi_jj"]


class PointCloudClassifierConfig(_Block):
    """The point-cloud classifier (`sideband.scoring.PointCloudClassifier`), used when
    ``scoring.classifier`` is "point_cloud"."""

    hidden: int = Field(default=32, ge=1)
    """Width of every embedding and attention block (divisible by ``heads``)."""
    heads: int = Field(default=4, ge=1)
    n_blocks: int = Field(default=2, ge=0)
    """Particle self-attention blocks (attention within each jet)."""
    dropout: float = Field(default=0.1, ge=0, lt=1)
    jet_features: tuple[PointCloudJetFeature, ...] = ("log_m", "abs_dphi_jj")
    """Per-jet inputs. The default leaves out log_pt and eta (with them the classifier could
    rebuild m_JJ) and the multiplicity log_n: it grows with the jet pT, and where the template
    models it less well than the rest a cut on the score sculpts m_JJ (background-only
    LHCO-like run of analysis/point_cloud_small.yaml with close_jets on: sideband efficiency
    8.6% at a 10% SR cut, a fake Z = 2.05, with log_n; 9.7% and Z = 0.27 without)."""
    max_particles: int | None = Field(default=None, ge=1)
    """Use only each jet's ``max_particles`` hardest constituents (None: all M)."""
    n_epochs: int = Field(default=50, ge=1)
    patience: int | None = Field(default=10, ge=1)
    batch_size: int = Field(default=128, ge=1)
    learning_rate: PositiveFloat = 1e-3
    weight_decay: float = Field(default=0.0, ge=0)
    n_best: int = Field(default=5, ge=1)
    """The ``n_best`` epochs by validation loss are kept; the score is their mean."""
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    class_weight: Literal["balanced"] | None = "balanced"
    device: str = "auto"

    @model_validator(mode="after")
    def _consistent(self) -> PointCloudClassifierConfig:
        if self.hidden % self.heads:
            msg = f"hidden ({self.hidden}) must be divisible by heads ({self.heads}); e.g. 32 and 4"
            raise ValueError(msg)
        if self.n_best > self.n_epochs:
            msg = f"n_best ({self.n_best}) exceeds n_epochs ({self.n_epochs}); lower n_best"
            raise ValueError(msg)
        if not self.jet_features or len(set(self.jet_features)) != len(self.jet_features):
            msg = f"jet_features must be distinct and not empty; got {list(self.jet_features)}"
            raise ValueError(msg)
        return self


#: Keys of the scoring block that only the HGB classifier uses.
HGB_KEYS = ("n_members", "max_iter", "learning_rate", "max_leaf_nodes")


class ScoringConfig(_Block):
    """The anomaly score (stage 4): data vs template classifier, k-folded.

    ``classifier: hgb`` (feature-space methods) uses the HGB keys (``n_members`` ...
    ``max_leaf_nodes``); ``classifier: point_cloud`` (``background.method: point_cloud``) takes
    its parameters from the ``point_cloud`` sub-block. ``n_folds`` and ``n_threads`` apply to both.
    """

    classifier: Literal["hgb", "point_cloud"] = "hgb"
    n_members: int = Field(default=5, ge=1)
    max_iter: int = Field(default=200, ge=1)
    learning_rate: PositiveFloat = 0.1
    max_leaf_nodes: int = Field(default=31, ge=2)
    n_folds: int = Field(default=5, ge=2)
    n_threads: int | None = Field(default=None, ge=1)
    """OpenMP (HGB) or torch (point_cloud) threads per classifier fit (None: all cores / as set)."""
    point_cloud: PointCloudClassifierConfig | None = None
    """The point-cloud classifier's parameters (classifier "point_cloud" only)."""

    @model_validator(mode="after")
    def _classifier_options(self) -> ScoringConfig:
        if self.point_cloud is not None and self.classifier != "point_cloud":
            msg = (
                f"a point_cloud block is given but classifier is {self.classifier!r}; set "
                "classifier: point_cloud, or remove the point_cloud block"
            )
            raise ValueError(msg)
        if self.classifier == "point_cloud":
            changed = [
                k for k in HGB_KEYS if getattr(self, k) != type(self).model_fields[k].default
            ]
            if changed:
                msg = (
                    f"{changed} configure the hgb classifier and have no effect with classifier "
                    "point_cloud; remove them (its parameters go in scoring.point_cloud)"
                )
                raise ValueError(msg)
        return self

    @property
    def point_cloud_params(self) -> PointCloudClassifierConfig:
        """The point-cloud classifier parameters in effect (the block or its defaults)."""
        return self.point_cloud if self.point_cloud is not None else PointCloudClassifierConfig()


class BumpHuntConfig(_Block):
    """The bump hunt (stage 5): cut on the score, fit m_JJ with pyhf."""

    efficiency: float = Field(default=0.1, gt=0, le=1)
    """Fraction of SR data kept by the score cut (threshold set in the SR, applied everywhere)."""
    bin_width_gev: PositiveFloat = 100.0
    bin_resolution: Annotated[float, Field(gt=0, lt=1)] | None = None
    """Bins of ``bin_resolution`` x m_JJ (variable width) instead of ``bin_width_gev``."""
    n_params: Literal[3, 4, 5, "auto"] = 4
    """Dijet-function parameters; "auto" picks 3-5 by a Wilks test (less well calibrated on the
    LHCO-like spectrum than a fixed 4: benchmarks/README.md)."""
    n_params_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    signal_width_gev: PositiveFloat | None = None
    sqrt_s_gev: PositiveFloat = 13000.0
    compute_limit: bool = True
    calculator: Literal["asymptotics", "toys"] = "asymptotics"
    """p0 from asymptotic formulae, or from ``n_toys`` pyhf pseudo-experiments (limits stay
    asymptotic)."""
    n_toys: int = Field(default=1000, ge=10)
    likelihood: Literal["signal_region", "joint"] = "signal_region"
    """The pyhf model: SR bins only, or every bin with the sidebands fitted jointly (unbiased
    for signal that leaks outside the SR, larger mu uncertainty): see `bump_hunt`."""


class ScanConfig(_Block):
    """A sliding-window search (`sideband scan`): SR windows across the m_JJ range.

    Window i is ``[first_low_gev + i * step_gev, first_low_gev + i * step_gev + width_gev]`` for
    every i whose window ends at or below ``last_high_gev``; all windows share the sideband
    bounds (``region.sideband_gev``, required), which are also the bump-hunt fit range.
    """

    first_low_gev: PositiveFloat
    last_high_gev: PositiveFloat
    width_gev: PositiveFloat = 400.0
    step_gev: PositiveFloat = 200.0
    efficiencies: tuple[Annotated[float, Field(gt=0, le=1)], ...] = (0.1, 0.02)
    """SR efficiencies of the score cuts; the bump hunt runs at each (and before any cut)."""
    n_global_toys: int = Field(default=100, ge=0)
    """Background-only pseudo-experiments of the fit stage for the global significance (0: none)."""

    @model_validator(mode="after")
    def _some_window(self) -> ScanConfig:
        if self.first_low_gev + self.width_gev > self.last_high_gev + 1e-6:
            msg = (
                f"no scan window fits: the first window {self.first_low_gev:g}-"
                f"{self.first_low_gev + self.width_gev:g} GeV ends above last_high_gev "
                f"{self.last_high_gev:g}; lower first_low_gev or width_gev, or raise last_high_gev"
            )
            raise ValueError(msg)
        if not self.efficiencies:
            msg = "efficiencies needs at least one score-cut efficiency, e.g. [0.1, 0.02]"
            raise ValueError(msg)
        return self

    def windows(self) -> list[tuple[float, float]]:
        """The (low, high) GeV of every window, in order."""
        out = []
        low = float(self.first_low_gev)
        while low + self.width_gev <= self.last_high_gev + 1e-6:
            out.append((low, low + float(self.width_gev)))
            low += float(self.step_gev)
        return out


class AnalysisConfig(_Block):
    """A whole analysis: `sideband run analysis/<name>.yaml`."""

    name: str = "analysis"
    seed: int = Field(default=0, ge=0)
    output: Path = Path("runs/analysis")
    progress: bool = True
    data: DataConfig
    region: RegionConfig
    background: BackgroundConfig = BackgroundConfig()
    scoring: ScoringConfig = ScoringConfig()
    bumphunt: BumpHuntConfig = BumpHuntConfig()
    scan: ScanConfig | None = None

    @model_validator(mode="after")
    def _point_cloud(self) -> AnalysisConfig:
        point_cloud_template = self.background.method == "point_cloud"
        point_cloud_classifier = self.scoring.classifier == "point_cloud"
        if point_cloud_template and not point_cloud_classifier:
            msg = (
                "background.method point_cloud generates point clouds, which only the point-cloud "
                "classifier can score; set scoring.classifier: point_cloud"
            )
            raise ValueError(msg)
        if point_cloud_classifier and not point_cloud_template:
            msg = (
                f"scoring.classifier point_cloud needs point-cloud templates, but "
                f"background.method is {self.background.method!r}; set background.method: "
                "point_cloud, or classifier: hgb"
            )
            raise ValueError(msg)
        if point_cloud_template and self.data.jets is not None:
            msg = (
                "data.jets reads jet features from a ROOT file; background.method point_cloud "
                "reads a point-cloud folder (sideband features --point-clouds): remove data.jets"
            )
            raise ValueError(msg)
        if point_cloud_template and self.scan is not None:
            msg = "a scan (scan block) does not support background.method point_cloud yet"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _regions(self) -> AnalysisConfig:
        region = self.region
        if self.scan is None:
            if region.signal_region_gev is None:
                msg = (
                    "region.signal_region_gev is missing: give the SR (low, high) in GeV, or a "
                    "scan block for a sliding-window search"
                )
                raise ValueError(msg)
            return self
        if region.sideband_gev is None:
            msg = (
                "a scan needs region.sideband_gev, the m_JJ range (GeV) shared by every window's "
                "sidebands and fit, e.g. [3000, 5600]"
            )
            raise ValueError(msg)
        slo, shi = region.sideband_gev
        lo, hi = self.scan.first_low_gev, self.scan.windows()[-1][1]
        if not (slo < lo and hi < shi):
            msg = (
                f"the scan windows span {lo:g}-{hi:g} GeV, which must lie strictly inside "
                f"region.sideband_gev {list(region.sideband_gev)} (each window needs sidebands)"
            )
            raise ValueError(msg)
        return self

    def resolve_paths(self, base: Path) -> AnalysisConfig:
        """Relative paths become relative to `base` (the config file's folder)."""
        data = self.data.model_copy(update={"path": _resolve(self.data.path, base)})
        return self.model_copy(update={"data": data, "output": _resolve(self.output, base)})

    def with_overrides(self, **updates: Any) -> AnalysisConfig:
        """A validated copy with dotted-key overrides, e.g. ``{"data.remove_signal": True}``."""
        raw = self.model_dump(mode="python")
        for dotted, value in updates.items():
            node = raw
            *parents, leaf = dotted.split(".")
            new_block = False
            for key in parents:
                if not isinstance(node, dict) or (key not in node and not new_block):
                    msg = f"unknown configuration key {dotted!r}"
                    raise ConfigError(msg)
                if node.get(key) is None:  # an optional sub-block (background.sigma) not given
                    # yet, or a block inside one: validation rejects misspelt keys
                    node[key], new_block = {}, True
                node = node[key]
            if not isinstance(node, dict) or (leaf not in node and not new_block):
                msg = f"unknown configuration key {dotted!r}"
                raise ConfigError(msg)
            node[leaf] = value
        return _validate(raw, where="overrides")


def _resolve(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def _block_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The configuration block (pydantic model) holding the key at `loc`, or None."""
    import typing

    model: type[BaseModel] = AnalysisConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        blocks = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not blocks:
            return None
        model = blocks[0]
    return model


def _unknown_key(loc: tuple[Any, ...]) -> str:
    """'unknown key (misspelt?)', with the closest allowed key(s) of its block when there are."""
    import difflib

    block = _block_at(loc)
    if block is None or not loc:
        return "unknown key (misspelt?)"
    allowed = list(block.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=2, cutoff=0.6)
    if close:
        return "unknown key (misspelt?); did you mean " + " or ".join(repr(c) for c in close) + "?"
    return f"unknown key (misspelt?); allowed here: {', '.join(allowed)}"


def _describe(e: Any) -> str:
    """One validation error as 'loc: what is wrong (got value)', on one line."""
    loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
    if e["type"] == "extra_forbidden":
        return f"{loc}: {_unknown_key(tuple(e['loc']))}"
    detail = str(e["msg"])
    if e["type"] == "value_error" and "error" in e.get("ctx", {}):
        detail = str(e["ctx"]["error"])  # our own message, without pydantic's "Value error, "
    value = e.get("input")
    if isinstance(value, str | int | float | bool) and e["type"] != "missing":
        detail += f" (got {value!r})"
    return f"{loc}: {detail}"


def _validate(raw: Any, *, where: str) -> AnalysisConfig:
    try:
        return AnalysisConfig.model_validate(raw)
    except ValidationError as err:
        # one line (the CLI prints it as such): every problem, separated by "; "
        problems = "; ".join(_describe(e) for e in err.errors())
        msg = f"invalid configuration {where}: {problems}"
        raise ConfigError(msg) from None


def load_config(path: str | Path) -> AnalysisConfig:
    """Read and validate a YAML analysis configuration; relative paths resolve against its folder."""
    path = Path(path)
    if not path.is_file():
        msg = f"configuration file {path} does not exist; see analysis/default.yaml for an example"
        raise ConfigError(msg)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(err, "problem", None) or " ".join(str(err).split())
        msg = (
            f"configuration file {path} is not valid YAML{where}: {problem}; fix the syntax "
            "there (see analysis/default.yaml)"
        )
        raise ConfigError(msg) from None
    if not isinstance(raw, dict):
        msg = f"configuration file {path} must hold a mapping of blocks (data, region, ...)"
        raise ConfigError(msg)
    return _validate(raw, where=f"in {path}").resolve_paths(path.parent)
