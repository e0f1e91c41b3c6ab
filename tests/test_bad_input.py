"""Bad input across all stages: each a clear error naming the problem and the fix, losing nothing.

Two parts:

* the original tests through `run_analysis` (``test_missing_file`` ... ``test_remove_signal_needs_labels``);
* `CASES`, the bad-input table of issue 10, one parametrized test per case. docs/bad_inputs.md
  lists the same cases (``test_docs_table_lists_exactly_the_cases`` keeps the two in step).

Every case asserts the exception type, a regex naming the problem and one naming the fix, that
the message is one line, and that nothing was lost: the case's folder holds exactly the files it
held before the failing call (no half-written output, no temporary file, no clobbered earlier
output, no changed checkpoint). CLI cases go through `click.testing.CliRunner`: exit code 1, one
line ``Error: <ErrorType>: ...``, no traceback.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from sideband.config import AnalysisConfig
from sideband.errors import CheckpointError, ConfigError, InputError, SidebandError
from sideband.events import write_features
from sideband.generate.toy import toy_dijet_features
from sideband.pipeline import run_analysis
from sideband.records import FeatureTable

FEATURES = ("mj1", "delta_mj", "tau21_j1", "tau21_j2")
DOCS_TABLE = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"


def _config(path: Path, sr: tuple[float, float] = (3300, 3700), **data: object) -> AnalysisConfig:
    return AnalysisConfig(
        output=path.parent / "run",
        progress=False,
        data={"path": path, "features": FEATURES, **data},
        region={"signal_region_gev": sr},
        background={"epochs": 1, "n_transforms": 1, "hidden_features": (8,)},
        scoring={"n_members": 1, "max_iter": 5, "n_folds": 2},
    )


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("toy") / "toy.parquet"
    return write_features(path, toy_dijet_features(3000, 0, seed=2))


# --------------------------------------------------------------------------------------------
# the original tests, through the analysis entry point
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere\.h5"):
        run_analysis(_config(tmp_path / "nowhere.h5"))


def test_missing_feature_column(tmp_path: Path, toy_file: Path) -> None:
    table = toy_dijet_features(3000, 0, seed=2)
    cols = {k: v for k, v in table.columns.items() if k != "tau21_j2"}
    path = write_features(tmp_path / "cols.parquet", FeatureTable(cols, table.event_id))
    with pytest.raises(InputError, match="tau21_j2"):
        run_analysis(_config(path))


def test_nan_in_features(tmp_path: Path) -> None:
    table = toy_dijet_features(3000, 0, seed=2)
    cols = dict(table.columns)
    cols["mj1"] = cols["mj1"].copy()
    cols["mj1"][[5, 17]] = np.nan
    path = write_features(tmp_path / "nan.parquet", FeatureTable(cols, table.event_id))
    with pytest.raises(InputError, match=r"'mj1'.*2 NaN/inf.*\[5, 17\]"):
        run_analysis(_config(path))


def test_signal_region_with_no_events(toy_file: Path) -> None:
    with pytest.raises(InputError, match="holds 0 events"):
        run_analysis(_config(toy_file, sr=(3300, 3300.01)))


def test_signal_region_outside_the_data(toy_file: Path) -> None:
    with pytest.raises(InputError, match="lies outside the data"):
        run_analysis(_config(toy_file, sr=(9000, 9500)))


def test_masses_in_tev(tmp_path: Path) -> None:
    table = toy_dijet_features(3000, 0, seed=2)
    cols = {k: v / 1000 if k in {"mjj", "mj1", "delta_mj"} else v for k, v in table.columns.items()}
    path = write_features(tmp_path / "tev.parquet", FeatureTable(cols, table.event_id))
    with pytest.raises(InputError, match="looks like TeV"):
        run_analysis(_config(path))


def test_remove_signal_needs_labels(tmp_path: Path) -> None:
    table = toy_dijet_features(3000, 0, seed=2)
    path = write_features(tmp_path / "nolabel.parquet", FeatureTable(table.columns, table.event_id))
    with pytest.raises(InputError, match="has no labels"):
        run_analysis(_config(path, remove_signal=True))


# --------------------------------------------------------------------------------------------
# the bad-input table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ctx:
    """What a case may use: its own empty folder, the shared toy file (3,000 background
    events, read-only) and the module's small fitted artefacts (built on first use)."""

    tmp: Path
    toy_file: Path
    artefacts: Callable[[str], Path]


@dataclass(frozen=True)
class Case:
    """One bad input: ``setup(ctx)`` prepares the files and returns the failing call (for a CLI
    case: the argument list of ``sideband``)."""

    id: str
    stage: str
    error: type[SidebandError]
    problem: str  # regex: names the problem (the file, column, option, value)
    fix: str  # regex: names what to do
    setup: Callable[[Ctx], Callable[[], Any] | list[str]]
    cli: bool = False
    marks: tuple[Any, ...] = ()


def _toy(n: int = 3000, **kw: Any) -> FeatureTable:
    return toy_dijet_features(n, 0, seed=2, **kw)


def _write(ctx: Ctx, name: str, table: FeatureTable) -> Path:
    return write_features(ctx.tmp / name, table)


def _with_columns(table: FeatureTable, **changes: np.ndarray) -> FeatureTable:
    return FeatureTable({**table.columns, **changes}, table.event_id, table.label, table.ids)


def _scaled_masses(table: FeatureTable, factor: float) -> FeatureTable:
    masses = {k: table.columns[k] * factor for k in ("mjj", "mj1", "delta_mj")}
    return _with_columns(table, **masses)


def _with_bad(table: FeatureTable, column: str, rows: list[int], value: float) -> FeatureTable:
    values = table.columns[column].copy()
    values[rows] = value
    return _with_columns(table, **{column: values})


def _yaml(
    ctx: Ctx,
    data: Path | None = None,
    *,
    features: tuple[str, ...] = FEATURES,
    background: str = "{epochs: 1, n_transforms: 1, hidden_features: [8]}",
    region: str = "{signal_region_gev: [3300, 3700]}",
    bumphunt: str = "{compute_limit: false}",
    extra: str = "",
) -> Path:
    """A small analysis YAML in the case folder (output: run/ beside it)."""
    path = ctx.tmp / "analysis.yaml"
    path.write_text(
        "name: bad\nseed: 1\noutput: run\nprogress: false\n"
        f"data: {{path: {data or ctx.toy_file}, features: [{', '.join(features)}]}}\n"
        f"region: {region}\nbackground: {background}\n"
        "scoring: {n_members: 1, max_iter: 5, n_folds: 2}\n"
        f"bumphunt: {bumphunt}\n" + extra
    )
    return path


def _earlier_run(ctx: Ctx) -> None:
    """A finished run folder from an earlier, good run: a failed rerun must not clobber it."""
    run = ctx.tmp / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"z_after_cut": 1.5}\n')
    (run / "event_results.parquet").write_bytes(b"PAR1 earlier results PAR1")


def _run_cli(ctx: Ctx, config: Path, *more: str) -> list[str]:
    _earlier_run(ctx)
    return ["run", str(config), "--no-plots", *more]


def _load(config: Path) -> Callable[[], Any]:
    from sideband.config import load_config

    return lambda: load_config(config)


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# ---- files ---------------------------------------------------------------------------------


def _directory(ctx: Ctx) -> Callable[[], Any]:
    from sideband.events import read_features

    (ctx.tmp / "events").mkdir()
    return lambda: read_features(ctx.tmp / "events")


def _empty(ctx: Ctx) -> Callable[[], Any]:
    from sideband.events import read_features

    (ctx.tmp / "empty.parquet").write_bytes(b"")
    return lambda: read_features(ctx.tmp / "empty.parquet")


def _truncated(suffix: str) -> Callable[[Ctx], Callable[[], Any]]:
    def setup(ctx: Ctx) -> Callable[[], Any]:
        from sideband.events import read_features

        path = _truncate(_write(ctx, f"cut{suffix}", _toy(500)))
        return lambda: read_features(path)

    return setup


def _lhco_jets(n: int) -> dict[str, np.ndarray]:
    """The 14 columns of an LHCO features file for `n` back-to-back dijet events (GeV)."""
    rng = np.random.default_rng(3)
    pt = rng.uniform(1300, 1800, n)
    jets = {f"pxj{j}": s * pt for j, s in ((1, 1.0), (2, -1.0))}
    jets |= {f"pyj{j}": np.zeros(n) for j in (1, 2)}
    jets |= {f"pzj{j}": rng.normal(0, 500, n) for j in (1, 2)}
    jets |= {f"mj{j}": rng.uniform(50, 400, n) for j in (1, 2)}
    for j in (1, 2):
        jets |= {f"tau{k}j{j}": rng.uniform(0.1, 1.0, n) / k for k in (1, 2, 3)}
    return jets


def _truncated_hdf5(ctx: Ctx) -> Callable[[], Any]:
    from sideband.events import read_features, write_lhco_features

    path = _truncate(write_lhco_features(ctx.tmp / "cut.h5", _lhco_jets(300)))
    return lambda: read_features(path)


def _unknown_format(ctx: Ctx) -> Callable[[], Any]:
    from sideband.events import read_features

    path = ctx.tmp / "events.csv"
    path.write_text("mjj,mj1,delta_mj\n3500,100,200\n")
    return lambda: read_features(path)


def _mislabelled(ctx: Ctx) -> Callable[[], Any]:
    from sideband.events import read_features

    path = ctx.tmp / "events.h5"
    path.write_text("<html>404 Not Found</html>\n")  # a failed download saved under the name
    return lambda: read_features(path)


def _particles_as_features(ctx: Ctx) -> Callable[[], Any]:
    from sideband.events import read_features, write_lhco_raw

    rng = np.random.default_rng(1)
    pt = [rng.uniform(10, 500, 30) for _ in range(5)]
    eta = [rng.normal(0, 1, 30) for _ in range(5)]
    phi = [rng.uniform(-3, 3, 30) for _ in range(5)]
    path = write_lhco_raw(ctx.tmp / "raw.h5", pt, eta, phi, max_particles=40)
    return lambda: read_features(path)


def _wrong_columns(ctx: Ctx) -> Callable[[], Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sideband.events import read_features

    t = _toy(100)
    path = ctx.tmp / "renamed.parquet"
    pq.write_table(pa.table({"m_jj": t.mjj, "m_j1": t.columns["mj1"]}), path)
    return lambda: read_features(path)


def _write_bad_suffix(ctx: Ctx) -> Callable[[], Any]:
    (ctx.tmp / "features.csv").write_text("an earlier export, kept\n")
    return lambda: write_features(ctx.tmp / "features.csv", _toy(100))


# ---- columns and values ----------------------------------------------------------------------


def _missing_feature_cli(ctx: Ctx) -> list[str]:
    t = _toy()
    cols = {k: v for k, v in t.columns.items() if k != "delta_r"}
    path = _write(ctx, "no_delta_r.parquet", FeatureTable(cols, t.event_id))
    return _run_cli(ctx, _yaml(ctx, path, features=(*FEATURES, "delta_r")))


def _nan_cli(ctx: Ctx) -> list[str]:
    path = _write(ctx, "nan.parquet", _with_bad(_toy(), "mj1", [5, 17], np.nan))
    return ["train", str(_yaml(ctx, path))]


def _inf(ctx: Ctx) -> Callable[[], Any]:
    from sideband.events import read_features

    path = _write(ctx, "inf.parquet", _with_bad(_toy(), "tau21_j1", [3], np.inf))
    return lambda: read_features(path)


def _tev_cli(ctx: Ctx) -> list[str]:
    path = _write(ctx, "tev.parquet", _scaled_masses(_toy(), 1e-3))
    return _run_cli(ctx, _yaml(ctx, path))


def _mev(ctx: Ctx) -> Callable[[], Any]:
    from sideband.events import read_features

    path = _write(ctx, "mev.parquet", _scaled_masses(_toy(), 1e3))
    return lambda: read_features(path)


def _labels_not_01(ctx: Ctx) -> Callable[[], Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sideband.events import read_features

    t = _toy(200)
    label = np.zeros(len(t), dtype=np.int8)
    label[[4, 9]] = 2  # e.g. a second signal model coded as 2
    path = ctx.tmp / "labels.parquet"
    pq.write_table(pa.table({**t.columns, "label": label}), path)
    return lambda: read_features(path)


def _other_version(ctx: Ctx) -> Callable[[], Any]:
    import pyarrow.parquet as pq

    from sideband.events import read_features

    path = _write(ctx, "old.parquet", _toy(200))
    table = pq.read_table(path)
    meta = {b"sideband.content": b"features", b"sideband.units": b"TeV"}
    pq.write_table(table.replace_schema_metadata(meta), path)
    return lambda: read_features(path)


def _remove_signal_cli(ctx: Ctx) -> list[str]:
    t = _toy()
    path = _write(ctx, "unlabelled.parquet", FeatureTable(t.columns, t.event_id))
    return _run_cli(ctx, _yaml(ctx, path), "--remove-signal")


# ---- regions ---------------------------------------------------------------------------------


def _empty_sr_cli(ctx: Ctx) -> list[str]:
    return _run_cli(ctx, _yaml(ctx, region="{signal_region_gev: [3300, 3300.5]}"))


def _sr_outside_cli(ctx: Ctx) -> list[str]:
    return _run_cli(ctx, _yaml(ctx, region="{signal_region_gev: [9000, 9500]}"))


def _sr_wider_than_sidebands(ctx: Ctx) -> Callable[[], Any]:
    region = "{signal_region_gev: [3300, 3700], sideband_gev: [3400, 3600]}"
    return _load(_yaml(ctx, region=region))


def _sr_in_tev_config(ctx: Ctx) -> Callable[[], Any]:
    return _load(_yaml(ctx, region="{signal_region_gev: [3.3, 3.7]}"))


def _sidebands_too_few(ctx: Ctx) -> Callable[[], Any]:
    t = _toy()
    path = _write(ctx, "narrow.parquet", t.select((t.mjj > 3250) & (t.mjj < 3800)))
    return lambda: run_analysis(_config(path))


def _too_few_to_train(ctx: Ctx) -> Callable[[], Any]:
    # 120 sideband events pass the split's check (>= 100), but cross-fitting gives each chain's
    # flow half of them: 48 training events after the validation split
    t = _toy()
    sr = t.select((t.mjj > 3300) & (t.mjj < 3700))
    sb = t.select(np.flatnonzero((t.mjj <= 3300) | (t.mjj >= 3700))[:120])
    path = _write(ctx, "few.parquet", FeatureTable.concatenate([sr, sb]))
    return lambda: run_analysis(_config(path))


# ---- background: checkpoints and saved models -------------------------------------------------


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    return dst


def _tiny_cathode(**kw: Any) -> Any:
    from sideband.background import CathodeTemplate

    return CathodeTemplate(
        epochs=1, n_transforms=1, hidden_features=(8,), device="cpu", n_threads=1, **kw
    )


def _tiny_training_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.uniform(0.1, 0.9, (300, 2)), rng.uniform(2500, 4500, 300)


def _checkpoint_other_settings(ctx: Ctx) -> Callable[[], Any]:
    folder = ctx.tmp / "ckpt"
    _copy(ctx.artefacts("checkpoint"), folder / "fit_loop.pt")
    X, m = _tiny_training_data()
    return lambda: _tiny_cathode(checkpoint_dir=folder, n_ensemble=2).fit(X, m)


def _checkpoint_corrupt(ctx: Ctx) -> Callable[[], Any]:
    folder = ctx.tmp / "ckpt"
    folder.mkdir()
    _truncate(_copy(ctx.artefacts("checkpoint"), folder / "fit_loop.pt"))
    X, m = _tiny_training_data()
    return lambda: _tiny_cathode(checkpoint_dir=folder).fit(X, m)


def _checkpoint_other_settings_cli(ctx: Ctx) -> list[str]:
    # a checkpoint of another model (2 features, not 4) where this config's chain 0 resumes from
    folder = ctx.tmp / "ckpt"
    _copy(ctx.artefacts("checkpoint"), folder / "template_0" / "fit_loop.pt")
    return ["train", str(_yaml(ctx)), "--checkpoint-dir", str(folder)]


def _saved_model_corrupt(ctx: Ctx) -> Callable[[], Any]:
    from sideband.background import CathodeTemplate

    path = _truncate(_copy(ctx.artefacts("model"), ctx.tmp / "template_model_0.pt"))
    return lambda: CathodeTemplate.load(path)


def _saved_model_other_kind(ctx: Ctx) -> Callable[[], Any]:
    from sideband.background import SigmaTemplate

    path = _copy(ctx.artefacts("model"), ctx.tmp / "template_model_0.pt")
    return lambda: SigmaTemplate.load(path)


# ---- configuration ---------------------------------------------------------------------------


def _config_typo_cli(ctx: Ctx) -> list[str]:
    return _run_cli(ctx, _yaml(ctx, background="{epoch: 1, n_transforms: 1}"))


def _config_wrong_type(ctx: Ctx) -> Callable[[], Any]:
    return _load(_yaml(ctx, background="{epochs: ten}"))


def _config_negative_epochs_cli(ctx: Ctx) -> list[str]:
    return ["train", str(_yaml(ctx, background="{epochs: -3}"))]


def _config_efficiency(ctx: Ctx) -> Callable[[], Any]:
    return _load(_yaml(ctx, bumphunt="{efficiency: 1.5}"))


def _config_unknown_method(ctx: Ctx) -> Callable[[], Any]:
    return _load(_yaml(ctx, background="{method: cathod}"))


def _config_unknown_feature(ctx: Ctx) -> Callable[[], Any]:
    return _load(_yaml(ctx, features=("mj1", "tau32_j1")))


def _config_missing_cli(ctx: Ctx) -> list[str]:
    _earlier_run(ctx)
    return ["run", str(ctx.tmp / "analysis.yml")]


def _config_invalid_yaml(ctx: Ctx) -> Callable[[], Any]:
    path = ctx.tmp / "analysis.yaml"
    path.write_text("data: {path: x.parquet\nregion: {signal_region_gev: [3300, 3700]}\n")
    return _load(path)


def _point_cloud_features_file(ctx: Ctx) -> Callable[[], Any]:
    config = AnalysisConfig(
        output=ctx.tmp / "run",
        progress=False,
        data={"path": ctx.toy_file},
        region={"signal_region_gev": (3300, 3700)},
        background={"method": "point_cloud"},
        scoring={"classifier": "point_cloud"},
    )
    return lambda: run_analysis(config)


def _scan_outside_cli(ctx: Ctx) -> list[str]:
    config = _yaml(
        ctx,
        region="{sideband_gev: [9000, 12000]}",
        extra="scan: {first_low_gev: 9500, last_high_gev: 11000}\n",
    )
    return ["scan", str(config), "--no-plots"]


# ---- scoring, evaluation, results ------------------------------------------------------------


def _onnx_order(ctx: Ctx) -> Callable[[], Any]:
    from sideband.scoring.onnx_scorer import OnnxScorer

    scorer = OnnxScorer.load(ctx.artefacts("onnx"))
    x = _toy(200).x(("delta_mj", "mj1", "tau21_j1", "tau21_j2"))
    return lambda: scorer.score(x, feature_names=["delta_mj", "mj1", "tau21_j1", "tau21_j2"])


def _onnx_units(ctx: Ctx) -> Callable[[], Any]:
    from sideband.scoring.onnx_scorer import OnnxScorer

    scorer = OnnxScorer.load(ctx.artefacts("onnx"))
    x = _scaled_masses(_toy(200), 1e-3).x(FEATURES)
    return lambda: scorer.score(x, feature_names=FEATURES, units=["TeV", "TeV", "", ""])


def _scored_folds(ctx: Ctx) -> Callable[..., Any]:
    """k-fold scoring of toy data with fold checkpoints in ctx.tmp/scoring (seed 1); returns a
    function running it again with other keywords."""
    from sideband.scoring import HGBEnsemble, score_kfold

    x = _toy(300).x(FEATURES)
    data, template = x[:150], x[150:]
    clf = HGBEnsemble(n_members=1, max_iter=5, n_threads=1)
    run = dict(classifier=clf, n_folds=3, checkpoint_dir=ctx.tmp / "scoring")  # noqa: C408
    score_kfold(data, template, seed=1, **run)
    return lambda **kw: score_kfold(data, template, **{"seed": 1, **run, **kw})


def _fold_checkpoint_other_run(ctx: Ctx) -> Callable[[], Any]:
    rerun = _scored_folds(ctx)
    return lambda: rerun(seed=2)


def _fold_checkpoint_corrupt(ctx: Ctx) -> Callable[[], Any]:
    rerun = _scored_folds(ctx)
    _truncate(ctx.tmp / "scoring" / "fold_0_of_3.pkl")
    return rerun


def _event_results_suffix(ctx: Ctx) -> Callable[[], Any]:
    from sideband.event_results import write_event_results

    (ctx.tmp / "results.csv").write_text("an earlier export, kept\n")
    n = 10
    columns = {
        "event_id": np.arange(n),
        "mjj": np.full(n, 3500.0),
        "region": np.full(n, 2, dtype=np.int8),
        "score": np.linspace(0, 1, n),
    }
    return lambda: write_event_results(columns, ctx.tmp / "results.csv")


def _metrics_one_class(ctx: Ctx) -> Callable[[], Any]:
    from sideband.evaluation.metrics import auc

    return lambda: auc(np.zeros(50, dtype=int), np.linspace(0, 1, 50))


def _evaluate_missing_cli(ctx: Ctx) -> list[str]:
    return [
        "evaluate", "--data", str(ctx.toy_file), "--reference", str(ctx.tmp / "background.h5"),
        "--test", str(ctx.toy_file), "-o", str(ctx.tmp / "evaluation"), "--no-plots",
    ]  # fmt: skip


def _export_onnx_not_a_run_cli(ctx: Ctx) -> list[str]:
    (ctx.tmp / "runs").mkdir()
    return ["export-onnx", str(ctx.tmp / "runs")]


def _features_output_suffix_cli(ctx: Ctx) -> list[str]:
    from sideband.events import write_lhco_raw

    rng = np.random.default_rng(2)
    n = 20  # two hard back-to-back sprays of particles per event

    def spray(phi0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return rng.uniform(50, 300, 8), rng.normal(0, 0.2, 8), rng.normal(phi0, 0.2, 8)

    events = [[spray(0.0), spray(np.pi - 0.1)] for _ in range(n)]
    pt, eta, phi = ([np.concatenate([s[i] for s in ev]) for ev in events] for i in range(3))
    raw = write_lhco_raw(ctx.tmp / "raw.h5", pt, eta, phi, max_particles=20)
    return ["features", str(raw), "-o", str(ctx.tmp / "features.csv"), "--no-progress"]


CASES: tuple[Case, ...] = (
    # files
    Case("missing_file_cli", "events", InputError, r"nowhere\.parquet: no such file",
         r"Check the path",
         lambda c: _run_cli(c, _yaml(c, c.tmp / "nowhere.parquet")), cli=True),
    Case("directory_instead_of_file", "events", InputError, r"events: is not a regular file",
         r"Pass the path of one event file", _directory),
    Case("empty_file", "events", InputError, r"empty\.parquet: is empty \(0 bytes\)",
         r"recreate it", _empty),
    Case("truncated_parquet", "events", InputError,
         r"cut\.parquet: cannot be read as Parquet.*truncated or corrupt", r"Re-create it",
         _truncated(".parquet")),
    Case("truncated_hdf5", "events", InputError,
         r"cut\.h5: cannot be opened as HDF5.*truncated or corrupt", r"Re-download or re-write",
         _truncated_hdf5),
    Case("truncated_root", "events", InputError,
         r"cut\.root: cannot read TTree 'features'.*truncated or corrupt", r"Re-create it",
         _truncated(".root")),
    Case("unknown_format", "events", InputError,
         r"events\.csv: not a recognised event file", r"Supported: .*Parquet.*ROOT",
         _unknown_format),
    Case("content_does_not_match_suffix", "events", InputError,
         r"events\.h5: has suffix '\.h5' but its content is not a hdf5 file",
         r"Re-create or re-download it", _mislabelled),
    Case("particle_file_as_features", "events", InputError,
         r"raw\.h5: is an LHCO raw particle file, not a features file", r"Cluster jets first",
         _particles_as_features),
    Case("wrong_columns", "events", InputError,
         r"renamed\.parquet: Parquet columns \['m_jj', 'm_j1'\] match neither a features file",
         r"at least 'mjj'.*write_features", _wrong_columns),
    Case("write_features_bad_suffix", "events", InputError,
         r"features\.csv: cannot write features with suffix '\.csv'",
         r"use '\.parquet' or '\.root'", _write_bad_suffix),
    # columns and values
    Case("missing_feature_cli", "events", InputError,
         r"feature\(s\) \['delta_r'\] not in the table.*no_delta_r\.parquet",
         r"Choose features from those", _missing_feature_cli, cli=True),
    Case("nan_cli", "events", InputError,
         r"nan\.parquet: column 'mj1' has 2 NaN/inf value\(s\) \(first rows \[5, 17\]\)",
         r"drop or fix those events", _nan_cli, cli=True),
    Case("inf", "events", InputError,
         r"inf\.parquet: column 'tau21_j1' has 1 NaN/inf value\(s\) \(first rows \[3\]\)",
         r"drop or fix those events", _inf),
    Case("masses_in_tev_cli", "events", InputError, r"tev\.parquet: mjj has median .*looks like TeV",
         r"Multiply by 1000", _tev_cli, cli=True),
    Case("masses_in_mev", "events", InputError, r"mev\.parquet: mjj has median .*looks like MeV",
         r"Divide the masses .* by 1000", _mev),
    Case("labels_not_0_or_1", "events", InputError,
         r"labels\.parquet: column 'label' holds 2 value\(s\) other than 0 .*\[2\].*\[4, 9\]",
         r"Relabel them as 0/1, or drop the label column", _labels_not_01),
    Case("features_file_of_other_version", "events", InputError,
         r"old\.parquet: its schema metadata says .* units 'TeV'",
         r"Re-create it with this version", _other_version),
    Case("remove_signal_unlabelled_cli", "events", InputError,
         r"data\.remove_signal is set but .*unlabelled\.parquet has no labels",
         r"remove the option or use a labelled file", _remove_signal_cli, cli=True),
    # regions
    Case("empty_signal_region_cli", "regions", InputError,
         r"signal region \(3300, 3300\.5\) GeV holds 0 events", r"Widen the window",
         _empty_sr_cli, cli=True),
    Case("signal_region_outside_data_cli", "regions", InputError,
         r"signal region \(9000, 9500\) GeV lies outside the data.*spans 2000-\d+ GeV",
         r"move the window inside the data", _sr_outside_cli, cli=True),
    Case("signal_region_wider_than_sidebands", "regions", ConfigError,
         r"sideband_gev \[3400\.0, 3600\.0\] must enclose the signal region",
         r"widen sideband_gev or narrow the SR", _sr_wider_than_sidebands),
    Case("signal_region_in_tev", "regions", ConfigError,
         r"signal_region_gev \[3\.3, 3\.7\] looks like TeV", r"give masses in GeV",
         _sr_in_tev_config),
    Case("sidebands_too_few_events", "regions", InputError,
         r"sidebands of \(3300, 3700\) GeV hold fewer than 100 events",
         r"Move the window away from the data's edge", _sidebands_too_few),
    Case("too_few_events_to_train", "background", InputError,
         r"48 training and 12 validation events: CATHODE needs at least 100 sideband events",
         r"widen the sidebands or use more data.*lower background\.cross_fit_folds",
         _too_few_to_train),
    # background
    Case("checkpoint_of_other_settings", "background", CheckpointError,
         r"fit_loop\.pt was written for a different model or settings \(differing: .*\)",
         r"use a new checkpoint_dir or delete the file", _checkpoint_other_settings),
    Case("checkpoint_corrupt", "background", CheckpointError,
         r"fit_loop\.pt cannot be read .*corrupt", r"delete it to train from scratch",
         _checkpoint_corrupt),
    Case("checkpoint_of_other_model_cli", "background", CheckpointError,
         r"template_0/fit_loop\.pt was written for a different model or settings",
         r"use a new checkpoint_dir or delete the file", _checkpoint_other_settings_cli,
         cli=True),
    Case("saved_model_corrupt", "background", CheckpointError,
         r"template_model_0\.pt cannot be read as a saved CATHODE template.*corrupt",
         r"retrain and save", _saved_model_corrupt),
    Case("saved_model_of_other_kind", "background", CheckpointError,
         r"template_model_0\.pt is not a saved sideband SigmaTemplate", r"retrain and save",
         _saved_model_other_kind),
    # configuration
    Case("config_unknown_key_cli", "config", ConfigError,
         r"analysis\.yaml: background\.epoch: unknown key", r"did you mean 'epochs'\?",
         _config_typo_cli, cli=True),
    Case("config_wrong_type", "config", ConfigError,
         r"background\.epochs: .*\(got 'ten'\)", r"should be a valid integer", _config_wrong_type),
    Case("config_negative_epochs_cli", "config", ConfigError,
         r"background\.epochs: .*\(got -3\)", r"should be greater than or equal to 1",
         _config_negative_epochs_cli, cli=True),
    Case("config_efficiency_out_of_range", "config", ConfigError,
         r"bumphunt\.efficiency: .*\(got 1\.5\)", r"should be less than or equal to 1",
         _config_efficiency),
    Case("config_unknown_method", "config", ConfigError,
         r"background\.method: .*\(got 'cathod'\)",
         r"should be 'cathode', 'lacathode', 'sigma' or 'point_cloud'", _config_unknown_method),
    Case("config_unknown_feature", "config", ConfigError,
         r"data\.features: .*unknown feature\(s\) \['tau32_j1'\]", r"choose from \['mj1'",
         _config_unknown_feature),
    Case("config_file_missing_cli", "config", ConfigError,
         r"configuration file .*analysis\.yml does not exist", r"see analysis/default\.yaml",
         _config_missing_cli, cli=True),
    Case("config_invalid_yaml", "config", ConfigError,
         r"analysis\.yaml is not valid YAML at line \d+, column \d+", r"fix the syntax there",
         _config_invalid_yaml),
    Case("point_cloud_method_given_features_file", "config", InputError,
         r"toy\.parquet is a Parquet file but not a point-cloud file",
         r"--point-clouds DIR` and set data\.path to DIR", _point_cloud_features_file),
    Case("scan_windows_outside_data_cli", "config", InputError,
         r"region\.sideband_gev \[9000\.0, 12000\.0\] GeV does not overlap the data",
         r"move the scan range inside the data", _scan_outside_cli, cli=True),
    # scoring, evaluation, results
    Case("onnx_wrong_column_order", "scoring", InputError,
         r"columns are in the order \['delta_mj', 'mj1', .*but the model expects \['mj1'",
         r"reorder with X\[:, \[1, 0, 2, 3\]\]", _onnx_order),
    Case("onnx_wrong_units", "scoring", InputError,
         r"feature 'mj1' \(model column 0\) is in 'TeV'.*trained on 'GeV'",
         r"multiply the column by 1000", _onnx_units),
    Case("fold_checkpoint_of_another_run", "scoring", CheckpointError,
         r"fold checkpoint .*fold_0_of_3\.pkl was written by another run \(differing: \['seed'\]\)",
         r"delete .*fold_0_of_3\.pkl \(that fold is then retrained\) or use another checkpoint_dir",
         _fold_checkpoint_other_run),
    Case("fold_checkpoint_corrupt", "scoring", CheckpointError,
         r"fold checkpoint .*fold_0_of_3\.pkl cannot be read \(\w+\); it is corrupt",
         r"delete .*fold_0_of_3\.pkl", _fold_checkpoint_corrupt),
    Case("event_results_bad_suffix", "results", InputError,
         r"results\.csv: cannot write per-event results with suffix '\.csv'",
         r"use \.parquet or \.root", _event_results_suffix),
    Case("metrics_one_class", "evaluation", InputError,
         r"y_true holds 0 signal and 50 background events",
         r"Evaluate on a labelled sample containing signal and background", _metrics_one_class),
    Case("evaluate_missing_reference_cli", "evaluation", InputError,
         r"background\.h5: no such file", r"Check the path", _evaluate_missing_cli, cli=True),
    Case("export_onnx_not_a_run_folder_cli", "scoring", InputError,
         r"runs/classifiers\.pkl: no such file", r"a run folder of `sideband run`",
         _export_onnx_not_a_run_cli, cli=True),
    Case("features_output_bad_suffix_cli", "features", InputError,
         r"features\.csv: cannot write features with suffix '\.csv'",
         r"use '\.parquet' or '\.root'", _features_output_suffix_cli, cli=True),
)  # fmt: skip


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Small fitted files, each made once on first use: ``"checkpoint"``, a CATHODE training
    checkpoint (``fit_loop.pt`` of a 2-feature flow); ``"model"``, that flow saved; ``"onnx"``,
    an ONNX scorer of `FEATURES`."""
    made: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name in made:
            return made[name]
        folder = tmp_path_factory.mktemp(name)
        if name in ("checkpoint", "model"):
            X, m = _tiny_training_data()
            model = _tiny_cathode(checkpoint_dir=folder / "ckpt").fit(X, m)
            model.save(folder / "model.pt")
            made["checkpoint"] = folder / "ckpt" / "fit_loop.pt"
            made["model"] = folder / "model.pt"
        else:
            from sideband.scoring import HGBEnsemble
            from sideband.scoring.onnx_scorer import export_onnx

            t = toy_dijet_features(400, 100, seed=1)
            hgb = HGBEnsemble(n_members=1, max_iter=5, n_threads=1).fit(t.x(FEATURES), t.label)
            made["onnx"] = export_onnx(hgb, folder / "scorer.onnx", feature_names=FEATURES)
        return made[name]

    return build


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder`: relative path -> SHA-256 of the content ("dir")."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES]
)  # fmt: skip
def test_bad_input_table(
    case: Case,
    tmp_path: Path,
    toy_file: Path,
    artefacts: Callable[[str], Path],
) -> None:
    from sideband.cli import main

    ctx = Ctx(tmp_path, toy_file, artefacts)
    action = case.setup(ctx)
    before = _snapshot(tmp_path)
    if case.cli:
        assert isinstance(action, list)
        result = CliRunner().invoke(main, action)
        text = result.output.strip()
        assert result.exit_code == 1, text
        assert "Traceback" not in text
        assert "\n" not in text, f"not one line:\n{text}"
        assert text.startswith(f"Error: {case.error.__name__}: "), text
        message = text
    else:
        assert callable(action)
        with pytest.raises(case.error) as info:
            action()
        message = str(info.value)
        assert "\n" not in message, f"not one line:\n{message}"
    assert re.search(case.problem, message), f"problem {case.problem!r} not named in: {message}"
    assert re.search(case.fix, message), f"fix {case.fix!r} not named in: {message}"
    assert _snapshot(tmp_path) == before, "the failed call created, changed or removed files"


def test_the_table_covers_every_stage_and_enough_cli_cases() -> None:
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)
    assert sum(c.cli and not c.marks for c in CASES) >= 8
    stages = {c.stage for c in CASES}
    assert {"events", "regions", "background", "config", "scoring", "evaluation"} <= stages


def test_docs_table_lists_exactly_the_cases() -> None:
    """docs/bad_inputs.md has one table row per case, naming its test id and stage."""
    ids, stages = [], {}
    for line in DOCS_TABLE.read_text().splitlines():
        found = re.search(r"`test_bad_input_table\[([\w-]+)\]`", line)
        if line.startswith("|") and found:
            ids.append(found.group(1))
            stages[found.group(1)] = [c.strip() for c in line.strip().strip("|").split("|")][1]
    assert sorted(ids) == sorted(c.id for c in CASES)  # the same ids, each once
    for c in CASES:
        assert stages[c.id] == c.stage, (
            f"{c.id}: stage {stages[c.id]!r} in the docs, {c.stage!r} here"
        )
