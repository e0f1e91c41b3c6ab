"""Per-event results written back: Parquet and ROOT friend trees that join to the input exactly."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import uproot

from sideband.config import AnalysisConfig
from sideband.errors import InputError
from sideband.event_results import (
    REGION_CODES,
    event_results,
    pad_to_entries,
    read_event_results,
    write_event_results,
)
from sideband.events import read_features, write_features
from sideband.generate.toy import toy_dijet_features
from sideband.pipeline import AnalysisResult, run_analysis
from sideband.records import FeatureTable
from sideband.report import write_run

N_INPUT = 12_000  # entries of the input file (background + signal)


def _input(tmp_path: Path) -> tuple[Path, FeatureTable]:
    """Toy features with collider identifiers; every 7th entry dropped (as if it had < 2 jets)."""
    toy = toy_dijet_features(N_INPUT - 100, 100, seed=3)
    rng = np.random.default_rng(5)
    ids = {
        "run": 1 + np.arange(N_INPUT) // 5000,
        "luminosityBlock": 1 + np.arange(N_INPUT) // 100,
        "event": rng.permutation(10 * N_INPUT)[:N_INPUT],
    }
    full = FeatureTable(toy.columns, np.arange(N_INPUT), toy.label, ids)
    table = full.select(np.arange(N_INPUT) % 7 != 0)
    return write_features(tmp_path / "input.parquet", table), table


def _config(path: Path, out: Path) -> AnalysisConfig:
    return AnalysisConfig(
        name="writeback",
        seed=13,
        output=out,
        progress=False,
        data={"path": path, "features": ("mj1", "delta_mj", "tau21_j1", "tau21_j2")},
        region={"signal_region_gev": (3300, 3700), "sideband_gev": (2500, 5500)},
        background={
            "n_transforms": 1, "hidden_features": (16, 16), "epochs": 2, "patience": 2,
            "cross_fit_folds": 2,
        },
        scoring={"n_members": 1, "max_iter": 30, "n_folds": 3},
        bumphunt={"efficiency": 0.2, "compute_limit": False},
    )  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FeatureTable, AnalysisResult]:
    tmp = tmp_path_factory.mktemp("writeback")
    path, table = _input(tmp)
    return path, table, run_analysis(_config(path, tmp / "run"))


def test_identifiers_survive_the_features_file(run: tuple) -> None:
    path, table, result = run
    back = read_features(path)
    assert sorted(back.ids) == ["event", "luminosityBlock", "run"]
    for name, values in table.ids.items():
        np.testing.assert_array_equal(back.ids[name], values)
    np.testing.assert_array_equal(result.data.ids["event"], table.ids["event"])


def test_columns_equal_the_in_memory_scores(run: tuple) -> None:
    result = run[2]
    cols = event_results(result)
    sr, sb = result.sr_mask, result.sb_mask
    np.testing.assert_array_equal(cols["score"][sr], result.score_sr)
    np.testing.assert_array_equal(cols["score"][sb], result.score_sb)
    assert np.isnan(cols["score"][~(sr | sb)]).all()
    assert (cols["region"][sr] == REGION_CODES["SR"]).all()
    assert (cols["region"][sb] == REGION_CODES["sideband"]).all()
    # Every scored event names its chain (2) and k-fold classifier (3); unscored ones -1.
    scored = sr | sb
    assert set(np.unique(cols["chain"][scored])) == {0, 1}
    assert set(np.unique(cols["fold"][scored])) == {0, 1, 2}
    assert (cols["chain"][~scored] == -1).all()
    assert (cols["fold"][~scored] == -1).all()
    np.testing.assert_array_equal(cols["chain"][sr], result.chain_sr)
    np.testing.assert_array_equal(cols["chain"][sb], result.chain_sb)
    np.testing.assert_array_equal(
        cols["passes_cut"], np.nan_to_num(cols["score"], nan=-1) >= result.threshold
    )
    assert cols["passes_cut"][sr].mean() == pytest.approx(0.2, abs=0.01)


@pytest.mark.parametrize("suffix", [".parquet", ".root"])
def test_written_back_scores_join_to_the_input_exactly(
    run: tuple, tmp_path: Path, suffix: str
) -> None:
    _, table, result = run
    out = write_event_results(result, tmp_path / f"scores{suffix}")
    back = read_event_results(out)
    cols = event_results(result)
    assert list(back) == list(cols)
    for name, values in cols.items():
        assert back[name].dtype == values.dtype, name
        np.testing.assert_array_equal(back[name], values)  # NaN == NaN here, exact floats

    # Join back to the input by its collider identifiers: nothing lost, nothing duplicated.
    keys = ["run", "luminosityBlock", "event"]
    source = pd.DataFrame({**{k: table.ids[k] for k in keys}, "mjj_input": table.mjj})
    joined = source.merge(pd.DataFrame(back), on=keys, how="outer", validate="one_to_one",
                          indicator=True)  # fmt: skip
    assert (joined["_merge"] == "both").all()
    assert len(joined) == len(table)
    np.testing.assert_array_equal(joined["mjj"], joined["mjj_input"])


def test_friend_tree_aligned_by_entry(run: tuple, tmp_path: Path) -> None:
    _, table, result = run
    out = write_event_results(result, tmp_path / "friend.root", n_entries=N_INPUT)
    with uproot.open(out) as fh:
        friend = fh["sideband"].arrays(library="np")
    assert len(friend["event_id"]) == N_INPUT
    np.testing.assert_array_equal(friend["event_id"], np.arange(N_INPUT))
    dropped = np.arange(N_INPUT) % 7 == 0
    assert (friend["region"][dropped] == REGION_CODES["not_analysed"]).all()
    assert (friend["region"][~dropped] >= 0).all()
    # Entry i of the friend is entry i of the input.
    np.testing.assert_array_equal(friend["mjj"][~dropped], table.mjj)
    np.testing.assert_array_equal(friend["event"][~dropped], table.ids["event"])

    with pytest.raises(InputError, match="outside the input's 100 entries"):
        pad_to_entries(event_results(result), 100)


def test_rewriting_gives_identical_bytes(run: tuple, tmp_path: Path) -> None:
    _, _, result = run

    def digest(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    first = {
        s: digest(write_event_results(result, tmp_path / "a" / f"s{s}"))
        for s in (".root", ".parquet")
    }
    time.sleep(1.1)  # ROOT stamps times with one-second resolution
    again = {
        s: digest(write_event_results(result, tmp_path / "b" / f"s{s}"))
        for s in (".root", ".parquet")
    }
    assert first == again


def test_rerun_with_the_same_seed_writes_identical_files(run: tuple, tmp_path: Path) -> None:
    path, _, result = run
    again = run_analysis(_config(path, tmp_path / "again"))
    a = write_run(result, tmp_path / "a", plots=False)
    b = write_run(again, tmp_path / "b", plots=False)
    for name in ("scores.parquet", "scores.root"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"suffix '\.csv'"):
        write_event_results({"event_id": [0], "mjj": [1.0], "region": [2], "score": [0.5]},
                            tmp_path / "x.csv")  # fmt: skip
    with pytest.raises(InputError, match="missing"):
        write_event_results({"event_id": [0]}, tmp_path / "x.parquet")
    with pytest.raises(InputError, match="repeated"):
        pad_to_entries({"event_id": [0, 0], "mjj": [1.0, 2.0], "region": [2, 2],
                        "score": [0.1, 0.2]}, 5)  # fmt: skip
    with pytest.raises(InputError, match="no such file"):
        read_event_results(tmp_path / "missing.root")
    bad = tmp_path / "bad.root"
    bad.write_bytes(b"not a root file")
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_event_results(bad)
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind


def test_fold_column_names_the_classifier_that_scored_each_event(
    run: tuple, tmp_path: Path
) -> None:
    _, table, result = run
    cols = event_results(result)
    classifiers = result.classifiers
    assert classifiers.feature_names == ("mj1", "delta_mj", "tau21_j1", "tau21_j2")
    assert classifiers.units == ("GeV", "GeV", "", "")
    assert (classifiers.n_chains, classifiers.n_folds) == (2, 3)
    scored = cols["region"] > 0
    for chain in range(2):
        for fold in range(3):
            rows = scored & (cols["chain"] == chain) & (cols["fold"] == fold)
            assert rows.sum() > 10
            again = classifiers.score(table.select(rows), chain=chain, fold=fold)
            np.testing.assert_array_equal(again, cols["score"][rows])

    out = write_run(result, tmp_path / "run", plots=False)
    back = type(classifiers).load(out / "classifiers.pkl")
    x = table.select(slice(0, 500))
    np.testing.assert_array_equal(back.score(x), classifiers.score(x))
    by_name = {n: x.columns[n] for n in reversed(classifiers.feature_names)}
    np.testing.assert_array_equal(back.score(by_name), classifiers.score(x))
    with pytest.raises(InputError, match="missing input column"):
        back.score({"mj1": x.columns["mj1"]})
    with pytest.raises(InputError, match="expected"):
        back.score(np.zeros((3, 2)))
    corrupt = tmp_path / "corrupt.pkl"
    corrupt.write_bytes((out / "classifiers.pkl").read_bytes()[:200])
    with pytest.raises(InputError, match="truncated or corrupt"):
        type(classifiers).load(corrupt)


def test_cli_exports_the_run_classifiers_to_onnx(run: tuple, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sideband.cli import main
    from sideband.scoring import OnnxScorer

    _, table, result = run
    out = write_run(result, tmp_path / "run", plots=False)
    cli = CliRunner().invoke(main, ["export-onnx", str(out)])
    assert cli.exit_code == 0, cli.output
    scorer = OnnxScorer.load(out / "scorer.onnx")
    assert tuple(scorer.feature_names) == result.classifiers.feature_names
    x = table.select(slice(0, 2000))
    np.testing.assert_allclose(scorer.score(x), result.classifiers.score(x), rtol=0, atol=1e-12)
    # Column chain * n_folds + fold of fold_scores is that classifier; it reproduces the run's
    # per-event scores of the events it scored.
    cols = event_results(result)
    per_fold = scorer.fold_scores(table)
    rows = (cols["region"] > 0) & (cols["chain"] >= 0)
    column = cols["chain"][rows] * 3 + cols["fold"][rows]
    np.testing.assert_allclose(per_fold[rows, column], cols["score"][rows], rtol=0, atol=1e-12)

    cli = CliRunner().invoke(main, ["export-onnx", str(out), "--chain", "5"])
    assert cli.exit_code != 0
    assert "chains 0 to 1" in cli.output
