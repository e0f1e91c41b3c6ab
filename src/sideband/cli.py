"""Command-line interface: one command per step, in workflow order, plus ``run`` for all of them.

generate -> features -> train (background templates only) -> run (the whole analysis) ->
evaluate (benchmark a classifier).

Heavy libraries load inside the commands, so ``sideband --help`` is fast. Every `SidebandError`
becomes a one-paragraph message (no traceback); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sideband.errors import SidebandError

if TYPE_CHECKING:
    from sideband.config import AnalysisConfig

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


class OrderedGroup(click.Group):
    """Lists commands in the order they were added (workflow order), not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


def _friendly_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SidebandError as err:
            msg = f"{type(err).__name__}: {err}"
            raise click.ClickException(msg) from None
        except FileNotFoundError as err:
            msg = f"file not found: {err.filename}"
            raise click.ClickException(msg) from None

    return wrapper  # type: ignore[return-value]


@click.group(cls=OrderedGroup)
@click.version_option(package_name="sideband")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """sideband: resonant anomaly detection (the enhanced bump hunt).

    Workflow: generate -> features -> train -> run -> scan -> evaluate -> export-onnx -> publish.
    `train` fits only the background templates (resumable; `run` reuses them), `evaluate`
    benchmarks a classifier on labelled files, `export-onnx` writes a run's classifiers as ONNX,
    `publish` makes a HEPData submission with the pyhf workspaces. All masses are in GeV.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--process", type=click.Choice(["qcd", "signal"]), required=True,
              help="QCD dijets or W' -> X Y -> qqqq.")  # fmt: skip
@click.option("-n", "--n-events", type=int, required=True, help="Triggered events to keep.")
@click.option("--seed", type=int, required=True,
              help="Random seed (each chunk's Pythia seed derives from it and the chunk index).")  # fmt: skip
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Output folder.")  # fmt: skip
@click.option("--stem", default=None, help="File name stem (default: the process name).")
@click.option("--chunk-events", type=int, default=1000, show_default=True,
              help="Triggered events per chunk (one file pair, one resumable unit of work).")  # fmt: skip
@click.option("--executor", type=click.Choice(["processes", "dask"]), default="processes",
              show_default=True,
              help="Run chunks in a local process pool or on Dask distributed.")  # fmt: skip
@click.option("--workers", type=int, default=None,
              help="Processes of the pool or local Dask cluster (default: all cores).")  # fmt: skip
@click.option("--scheduler", default=None,
              help="Address of a running Dask scheduler (tcp://host:8786) for --executor dask; "
                   "its workers must see the output folder. Default: a local cluster.")  # fmt: skip
@click.option("--merge/--no-merge", default=True, show_default=True,
              help="Also write <stem>_raw.h5 and <stem>.features.h5 holding every chunk.")  # fmt: skip
@click.option("--fresh", is_flag=True,
              help="Delete this stem's chunks and manifest in the folder first, instead of "
                   "resuming.")  # fmt: skip
@click.option("--pthat-min-gev", type=float, default=1000.0, show_default=True,
              help="QCD: PhaseSpace:pTHatMin [GeV].")  # fmt: skip
@click.option("--mass-wprime-gev", type=float, default=3500.0, show_default=True)
@click.option("--mass-x-gev", type=float, default=500.0, show_default=True)
@click.option("--mass-y-gev", type=float, default=100.0, show_default=True)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@_friendly_errors
def generate(
    process: str,
    n_events: int,
    seed: int,
    out_dir: Path,
    stem: str | None,
    chunk_events: int,
    executor: str,
    workers: int | None,
    scheduler: str | None,
    merge: bool,
    fresh: bool,
    pthat_min_gev: float,
    mass_wprime_gev: float,
    mass_x_gev: float,
    mass_y_gev: float,
    no_progress: bool,
) -> None:
    """Generate LHCO-like events with Pythia 8 (needs sideband[generator]), in resumable chunks.

    Writes chunk i as <stem>_chunk0000i_raw.h5 (LHCO R&D raw particles) and
    <stem>_chunk0000i.features.h5 (high-level features), records every finished chunk in
    <stem>.manifest.json, and with --merge (default) also writes <stem>_raw.h5 and
    <stem>.features.h5. The events do not depend on --workers or --executor. Running the same
    command again resumes (only missing or damaged chunks are made); other settings in the same
    folder are an error (use another folder or --stem, or --fresh). Masses in GeV.
    """
    from sideband.generate.chunked import generate_sample

    sample = generate_sample(
        out_dir,
        process,  # type: ignore[arg-type]
        n_events,
        seed=seed,
        chunk_events=chunk_events,
        stem=stem,
        workers=workers,
        executor=executor,  # type: ignore[arg-type]
        scheduler=scheduler,
        pthat_min_gev=pthat_min_gev,
        mass_wprime_gev=mass_wprime_gev,
        mass_x_gev=mass_x_gev,
        mass_y_gev=mass_y_gev,
        merge=merge,
        fresh=fresh,
        progress=not no_progress,
    )
    click.echo(
        f"{sample.n_events} events in {len(sample.raw_files)} chunk(s) "
        f"({sample.chunks_made} made, {sample.chunks_reused} kept from an earlier run); "
        f"{sample.n_tried} generated, trigger efficiency {sample.efficiency:.3f}; "
        f"{sample.cpu_seconds:.1f} CPU s ({1000 * sample.cpu_seconds / sample.n_events:.1f} ms "
        "per event)"
    )
    click.echo(f"manifest: {sample.manifest}")
    if sample.merged is not None:
        for kind, path in sample.merged.items():
            click.echo(f"{kind}: {path}")
    else:
        name = stem or process
        click.echo(
            f"chunks: {sample.out_dir}/{name}_chunk*_raw.h5 and {name}_chunk*.features.h5 "
            "(`sideband features` takes the list of raw files)"
        )


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output file (.parquet or .root).")  # fmt: skip
@click.option("--executor", type=click.Choice(["iterative", "futures", "dask"]),
              default="iterative", show_default=True,
              help="coffea executor: one process, a local process pool, or Dask distributed.")  # fmt: skip
@click.option("--workers", type=int, default=1, show_default=True,
              help="Processes (futures, or a local Dask cluster).")  # fmt: skip
@click.option("--scheduler", default=None,
              help="Address of a running Dask scheduler (tcp://host:8786) for --executor dask; "
                   "default: a local cluster of --workers processes.")  # fmt: skip
@click.option("--chunk-size", type=int, default=10_000, show_default=True,
              help="Events per work item (and per checkpoint).")  # fmt: skip
@click.option("--max-events", type=int, default=None, help="Stop after this many events.")
@click.option("--axes", type=click.Choice(["KT_Axes", "OnePass_KT_Axes", "WTA_KT_Axes",
              "OnePass_WTA_KT_Axes"]), default="KT_Axes", show_default=True,
              help="N-subjettiness axes (OnePass_KT_Axes reproduces the official LHCO "
                   "features).")  # fmt: skip
@click.option("--tree", default=None, help="TTree of ROOT inputs (default: the file's only one).")
@click.option("--point-clouds", "point_cloud_dir", type=click.Path(path_type=Path), default=None,
              help="Also write the constituent point clouds of the two leading jets to this "
                   "folder (one Parquet file per chunk).")  # fmt: skip
@click.option("--max-constituents", type=int, default=279, show_default=True,
              help="Constituent slots per jet of the point clouds.")  # fmt: skip
@click.option("--checkpoint-dir", type=click.Path(path_type=Path), default=None,
              help="Per-chunk checkpoints [default: OUTPUT.checkpoints]; a killed run started "
                   "again resumes from them. Removed after success unless --keep-checkpoints.")  # fmt: skip
@click.option("--keep-checkpoints", is_flag=True, help="Keep the checkpoints after success.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@_friendly_errors
def features(
    inputs: tuple[Path, ...],
    output: Path,
    executor: str,
    workers: int,
    scheduler: str | None,
    chunk_size: int,
    max_events: int | None,
    axes: str,
    tree: str | None,
    point_cloud_dir: Path | None,
    max_constituents: int,
    checkpoint_dir: Path | None,
    keep_checkpoints: bool,
    no_progress: bool,
) -> None:
    """Cluster jets and compute dijet features from particle-level events.

    Reads LHCO R&D raw HDF5, ROOT or Parquet particles in chunks; runs a coffea processor
    (anti-kT R=1.0, fastjet) on the chosen executor and writes one row per event with two jets:
    event_id (row in the input), mjj, mj1, delta_mj, tau21_j1, tau21_j2, delta_r (GeV), label
    when present. Events with fewer than two jets are kept out and counted. Running the same
    command again after a crash resumes from the checkpoints.
    """
    import shutil

    from sideband.errors import InputError
    from sideband.events import write_features
    from sideband.features import extract_features

    if output.suffix.lower() not in (".parquet", ".root"):  # before hours of clustering
        msg = f"{output}: cannot write features with suffix {output.suffix!r}; use '.parquet' or '.root'"
        raise InputError(msg)
    if checkpoint_dir is None:
        checkpoint_dir = output.with_name(output.name + ".checkpoints")
    table, summary = extract_features(
        list(inputs),
        executor=executor,
        workers=workers,
        scheduler=scheduler,
        chunk_size=chunk_size,
        max_events=max_events,
        axes=axes,
        tree=tree,
        checkpoint_dir=checkpoint_dir,
        point_cloud_dir=point_cloud_dir,
        max_constituents=max_constituents,
        progress=not no_progress,
        with_summary=True,
    )
    write_features(output, table)
    if not keep_checkpoints:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    click.echo(
        f"{summary['n_events']} events in {summary['n_chunks']} chunk(s) "
        f"({summary['n_chunks_restored']} restored from checkpoints): {summary['n_kept']} with "
        f"two jets, {summary['n_fewer_than_two_jets']} with fewer kept out"
    )
    click.echo(f"wrote {len(table)} events with two jets to {output}")
    if point_cloud_dir is not None:
        click.echo(f"point clouds (<= {max_constituents} per jet): {point_cloud_dir}/*.parquet")


def _config_options(func: F) -> F:
    """The options `run` and `train` share: which data, and whether to show progress bars."""
    func = click.option("--no-progress", is_flag=True, help="Hide progress bars.")(func)
    func = click.option("--remove-signal", is_flag=True,
                        help="Drop labelled signal events (background-only check of the same "
                             "analysis).")(func)  # fmt: skip
    return click.argument("config_path", metavar="CONFIG", type=click.Path(path_type=Path))(func)


def _load_analysis_config(
    config_path: Path, *, output: Path | None = None, remove_signal: bool, no_progress: bool
) -> AnalysisConfig:
    """CONFIG (YAML) validated, with the command-line overrides applied."""
    from sideband.config import load_config

    config = load_config(config_path)
    overrides: dict[str, Any] = {}
    if remove_signal:
        overrides["data.remove_signal"] = True
    if no_progress:
        overrides["progress"] = False
    if output is not None:
        overrides["output"] = output.resolve()
    return config.with_overrides(**overrides) if overrides else config


@main.command()
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Folder for the models (default: <config output>/templates).")  # fmt: skip
@click.option("--chain", "chains", type=int, multiple=True,
              help="Train only this cross-fitting chain (repeatable; default: all).")  # fmt: skip
@click.option("--checkpoint-dir", type=click.Path(path_type=Path), default=None,
              help="Training checkpoints (default: <config output>/checkpoints/<key>, where "
                   "`sideband run` of the same config resumes from).")  # fmt: skip
@_config_options
@_friendly_errors
def train(
    config_path: Path,
    remove_signal: bool,
    no_progress: bool,
    output: Path | None,
    chains: tuple[int, ...],
    checkpoint_dir: Path | None,
) -> None:
    """Train the background template of each cross-fitting chain of CONFIG (YAML), no scoring.

    The model (CATHODE flow, SIGMA with `background.method: sigma`, or with `point_cloud` the
    jet + constituent generator, read from a point-cloud folder) is trained exactly as
    `sideband run` would train it and saved as template_model_<k>.pt (CathodeTemplate.load,
    SigmaTemplate.load or PointCloudTemplate.load), with templates.json (method, parameters,
    seeds, best epochs of each model, training time, versions). Checkpoints are kept: rerunning
    resumes, and `sideband run` of the same config afterwards skips the training.
    """
    from sideband.pipeline import checkpoint_dir_for, save_templates, train_templates

    config = _load_analysis_config(config_path, remove_signal=remove_signal,
                                   no_progress=no_progress)  # fmt: skip
    out_dir = Path(config.output) / "templates" if output is None else output
    checkpoints = checkpoint_dir_for(config) if checkpoint_dir is None else checkpoint_dir
    trained = train_templates(config, checkpoint_dir=checkpoints, chains=chains or None)
    summary = save_templates(trained, out_dir)
    for k, seconds, resumed in zip(trained.chains, trained.train_time_s, trained.resumed,
                                   strict=True):  # fmt: skip
        note = " (resumed from a checkpoint)" if resumed else ""
        click.echo(f"chain {k}: {config.background.method} template trained in {seconds:.1f} s"
                   f"{note} -> {out_dir / f'template_model_{k}.pt'}")  # fmt: skip
    click.echo(f"summary: {summary}; checkpoints: {checkpoints}")


@main.command()
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Run folder (default: `output` in the config).")  # fmt: skip
@click.option("--no-plots", is_flag=True, help="Skip the plots.")
@_config_options
@_friendly_errors
def run(
    config_path: Path, remove_signal: bool, no_progress: bool, output: Path | None, no_plots: bool
) -> None:
    """Run the whole analysis of CONFIG (YAML) and write a run folder; prints Z.

    Stages: read features -> background template (CATHODE trained on the sidebands, or SIGMA)
    -> k-fold classifier (SR data vs template) -> cut on the score -> pyhf fit of m_JJ (Z,
    mu-hat, 95% CL limit). Resumes the template training from `sideband train`'s checkpoints.
    With `background.method: point_cloud` it reads a point-cloud folder (`sideband features
    --point-clouds`), trains the jet + constituent generator on the sidebands and scores with
    the point-cloud classifier; an interrupted run resumes the template training when rerun.
    """
    from sideband.pipeline import checkpoint_dir_for, run_analysis
    from sideband.report import write_run

    config = _load_analysis_config(config_path, output=output, remove_signal=remove_signal,
                                   no_progress=no_progress)  # fmt: skip
    # An interrupted run leaves its checkpoints; rerunning the same command resumes from them.
    checkpoints = checkpoint_dir_for(config)
    result = run_analysis(config, checkpoint_dir=checkpoints)
    out = write_run(result, config.output, plots=not no_plots)
    shutil.rmtree(checkpoints.parent, ignore_errors=True)
    m = result.metrics
    click.echo(json.dumps({k: m[k] for k in ("z_before_cut", "z_after_cut", "mu_hat_after_cut",
                                              "upper_limit_after_cut")}, indent=2))  # fmt: skip
    click.echo(
        f"Z = {m['z_after_cut']:.2f} after the cut (efficiency {config.bumphunt.efficiency:g}), "
        f"{m['z_before_cut']:.2f} before; run folder: {out}"
    )


@main.command()
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Scan folder (default: `output` in the config).")  # fmt: skip
@click.option("--no-plots", is_flag=True, help="Skip the plots.")
@click.option("--fresh", is_flag=True,
              help="Redo every window instead of reusing those an earlier run finished.")  # fmt: skip
@_config_options
@_friendly_errors
def scan(
    config_path: Path,
    remove_signal: bool,
    no_progress: bool,
    output: Path | None,
    no_plots: bool,
    fresh: bool,
) -> None:
    """Sliding-window search of CONFIG (YAML, with a `scan` block): the bump hunt in every SR
    window across m_JJ; prints the table and the global significance.

    Each window: template (SIGMA: one model for all windows; CATHODE/LaCATHODE: one per window,
    resumed from checkpoints), k-fold score, cuts at the `scan.efficiencies`, pyhf fit (local Z,
    mu-hat, limits). Windows are written as they finish, so rerunning a killed scan resumes;
    a window that fails is recorded and the scan goes on. Writes scan.json, scan_table.csv, one
    pyhf workspace per window and cut, and plots (local Z and limits against m_JJ).
    """
    from sideband.scan import run_scan

    config = _load_analysis_config(config_path, output=output, remove_signal=remove_signal,
                                   no_progress=no_progress)  # fmt: skip
    result = run_scan(config, resume=not fresh, plots=not no_plots)
    click.echo(f"{'window (GeV)':>15} {'eff':>6} {'Z':>6} {'mu_hat':>9} {'limit':>9}  status")
    for row in result.rows:
        window = f"{row['sr_low_gev']:.0f}-{row['sr_high_gev']:.0f}"
        if row["status"] != "ok":
            click.echo(f"{window:>15} {row['efficiency']:>6g} {'':>6} {'':>9} {'':>9}  "
                       f"failed: {row['error']}")  # fmt: skip
            continue
        limit = "-" if row["upper_limit"] is None else f"{row['upper_limit']:.1f}"
        click.echo(f"{window:>15} {row['efficiency']:>6g} {row['z']:>6.2f} "
                   f"{row['mu_hat']:>9.1f} {limit:>9}  ok")  # fmt: skip
    for eff, entry in result.global_significance["by_efficiency"].items():
        if "local_z" not in entry:
            click.echo(f"efficiency {eff}: {entry['status']}")
            continue
        text = (
            f"efficiency {eff}: max local Z {entry['local_z']:.2f} at {entry['center_gev']:.0f} GeV"
        )
        if "global_z" in entry:
            text += (f", global p = {entry['global_p']:.3g} (Z = {entry['global_z']:.2f}, "
                     f"{result.global_significance['n_toys']} toys)")  # fmt: skip
        click.echo(text)
    click.echo(f"scan folder: {result.out_dir}")


@main.command()
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="SR data (iad) or a labelled file whose signal rows train (supervised).")  # fmt: skip
@click.option("--reference", type=click.Path(path_type=Path), required=True,
              help="Background reference (its label-0 rows if labelled).")  # fmt: skip
@click.option("--test", "test_path", type=click.Path(path_type=Path), required=True,
              help="Labelled test file (signal and background), disjoint from the others.")  # fmt: skip
@click.option("--protocol", type=click.Choice(["iad", "supervised"]), default="iad",
              show_default=True)  # fmt: skip
@click.option("--classifier", type=click.Choice(["hgb", "mlp"]), default="hgb", show_default=True)
@click.option("--features", default="mj1,delta_mj,tau21_j1,tau21_j2",
              show_default=True, help="Comma-separated feature columns.")  # fmt: skip
@click.option("--n-members", type=int, default=10, show_default=True,
              help="HGB members, or MLP best epochs averaged.")  # fmt: skip
@click.option("--n-folds", type=int, default=None,
              help="Train k models with rotating validation folds (default: one ensemble).")  # fmt: skip
@click.option("--reference-folds", type=int, default=None,
              help="Pool the background of --reference and --test and k-fold it: each model "
                   "trains against k-1 folds and scores the last (scarce background).")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="Threads per fit (default: all cores).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("runs/evaluate"),
              show_default=True, help="Output folder (metrics, scores, plots).")  # fmt: skip
@click.option("--no-plots", is_flag=True, help="Skip the plots.")
@_friendly_errors
def evaluate(
    data_path: Path,
    reference: Path,
    test_path: Path,
    protocol: str,
    classifier: str,
    features: str,
    n_members: int,
    n_folds: int | None,
    reference_folds: int | None,
    seed: int,
    threads: int | None,
    output: Path,
    no_plots: bool,
) -> None:
    """Train an IAD (data vs background reference) or supervised classifier and score a test set.

    Prints AUC, SIC at eps_B = 1e-4, 1e-3, 1e-2 and the maximum SIC (with its cutoff rule) as JSON
    and writes them, the scores and the ROC/SIC/score plots to the output folder. Files may be in
    any format sideband reads (CATHODE .npy in TeV included; masses become GeV).
    """
    from sideband.evaluate import evaluate_files, write_evaluation

    names = tuple(f.strip() for f in features.split(",") if f.strip())
    result, record = evaluate_files(data_path, reference, test_path, protocol=protocol,
                                    classifier=classifier, features=names, n_members=n_members,
                                    n_folds=n_folds, reference_folds=reference_folds,
                                    seed=seed, n_threads=threads)  # fmt: skip
    write_evaluation(result, record, output, plots=not no_plots)
    click.echo(json.dumps(result.as_dict(), indent=2, default=str))


@main.command("export-onnx")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="ONNX file to write (default: RUN_DIR/scorer.onnx).")  # fmt: skip
@click.option("--chain", type=int, default=None,
              help="Export one cross-fitting chain's classifiers (default: every chain's).")  # fmt: skip
@_friendly_errors
def export_onnx(run_dir: Path, output: Path | None, chain: int | None) -> None:
    """Export the anomaly classifiers of a run folder (`sideband run`) to ONNX.

    The graph reads `features` (float64, N x d, the config's features in GeV) and gives `score`
    (the mean over the fold classifiers, for new events) and `fold_scores` (N x K, one column per
    classifier, chain by chain). Feature names and units are stored in the model; see
    docs/onnx.md for calling it from C++. Needs the `onnx` extra.
    """
    from sideband.scoring.fold_models import FoldClassifiers
    from sideband.scoring.onnx_scorer import export_onnx as export

    classifiers = FoldClassifiers.load(Path(run_dir) / "classifiers.pkl")
    if classifiers.input_space != "features":
        reads = {
            "latent": "the template flow's latent space (LaCATHODE), which the ONNX export does "
            "not include",
            "point_clouds": "point clouds (background.method point_cloud), which the ONNX export "
            "does not convert; use FoldClassifiers.load(...).score on a PointCloudTable",
        }[classifiers.input_space]
        msg = f"{run_dir}: the classifiers of this run read {reads}; export a cathode or sigma run"
        raise click.ClickException(msg)
    if chain is None:
        models = classifiers.flat()
    elif 0 <= chain < classifiers.n_chains:
        models = list(classifiers.models[chain])
    else:
        msg = f"--chain {chain}: the run has chains 0 to {classifiers.n_chains - 1}"
        raise click.ClickException(msg)
    out = export(models, output or Path(run_dir) / "scorer.onnx",
                 feature_names=classifiers.feature_names, units=classifiers.units)  # fmt: skip
    click.echo(f"wrote {out} ({len(models)} classifiers; inputs {list(classifiers.feature_names)})")


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Folder to create: hepdata/, submission.tar.gz and workspaces/.")  # fmt: skip
@click.option("--dataset", default=None,
              help="Data set named in the tables (default: LHCO R&D when recognised, else the "
                   "input file name).")  # fmt: skip
@click.option("--abstract", default=None, help="The submission's comment.")
@click.option("--efficiency", "efficiencies", type=float, multiple=True,
              help="Cut efficiency to publish (repeatable; default all, 1.0 = no cut).")  # fmt: skip
@click.option("--sqrt-s-gev", type=float, default=None,
              help="Centre-of-mass energy in GeV (default: the config's).")  # fmt: skip
@click.option("--sic-points", type=int, default=100, show_default=True,
              help="Points of the SIC curve (labelled runs).")  # fmt: skip
@click.option("--no-recompute-limits", is_flag=True,
              help="Do not recompute limits a run folder did not record.")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@_friendly_errors
def publish(
    folder: Path,
    output: Path,
    dataset: str | None,
    abstract: str | None,
    efficiencies: tuple[float, ...],
    sqrt_s_gev: float | None,
    sic_points: int,
    no_recompute_limits: bool,
    overwrite: bool,
) -> None:
    """Write HEPData records and the pyhf workspaces of a scan or run folder.

    Tables: local significance against the SR, observed and expected limits with their bands,
    SIC (labelled runs) and m_JJ after the cut, validated with hepdata-validator; every window's
    pyhf workspace with reproduce.py, which checks the published numbers with pyhf alone.
    Needs the `hepdata` extra.
    """
    from sideband.publish import write_hepdata

    out = write_hepdata(folder, output, dataset=dataset, abstract=abstract,
                        efficiencies=efficiencies or None, sqrt_s_gev=sqrt_s_gev,
                        sic_points=sic_points, recompute_limits=not no_recompute_limits,
                        overwrite=overwrite)  # fmt: skip
    click.echo(f"HEPData submission: {out / 'submission.tar.gz'}")
    click.echo(
        f"pyhf workspaces:    {out / 'workspaces'} (check: python reproduce.py --check there)"
    )
