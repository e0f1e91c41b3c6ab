"""Bad input through the analysis entry point: each a clear error naming the problem and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sideband.config import AnalysisConfig
from sideband.errors import InputError
from sideband.events import write_features
from sideband.generate.toy import toy_dijet_features
from sideband.pipeline import run_analysis
from sideband.records import FeatureTable

FEATURES = ("mj1", "delta_mj", "tau21_j1", "tau21_j2")


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
