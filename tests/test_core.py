"""Records, regions and configuration: the contracts between stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sideband import FeatureTable, InputError, SignalRegion
from sideband.config import AnalysisConfig, load_config
from sideband.errors import ConfigError
from sideband.generate.toy import toy_dijet_features
from sideband.regions import check_mass_units

REPO = Path(__file__).resolve().parents[1]


def _table(n: int = 10) -> FeatureTable:
    rng = np.random.default_rng(0)
    return FeatureTable(
        {"mjj": rng.uniform(3000, 4000, n), "mj1": rng.uniform(0, 200, n)},
        np.arange(n),
        rng.integers(0, 2, n),
    )


def test_feature_table_select_and_x() -> None:
    t = _table()
    mask = t.mjj > 3500
    sub = t.select(mask)
    assert len(sub) == mask.sum()
    np.testing.assert_array_equal(sub.event_id, np.flatnonzero(mask))
    assert sub.x(["mjj", "mj1"]).shape == (mask.sum(), 2)


def test_feature_table_errors_name_the_problem() -> None:
    t = _table()
    with pytest.raises(InputError, match="not in the table"):
        t.x(["tau21_j1"])
    with pytest.raises(InputError, match="needs an 'mjj' column"):
        FeatureTable({"mj1": np.ones(3)}, np.arange(3))
    with pytest.raises(InputError, match="labels must be 0"):
        FeatureTable({"mjj": np.ones(3) * 3000}, np.arange(3), np.array([0, 1, 2]))
    bad = FeatureTable({"mjj": np.array([3000.0, np.nan, 3100.0])}, np.arange(3))
    with pytest.raises(InputError, match=r"1 NaN/inf value\(s\) \(first rows \[1\]\)"):
        bad.check_finite(["mjj"])


def test_feature_table_dict_round_trip_and_concatenate() -> None:
    t = _table()
    back = FeatureTable.from_dict(t.to_dict())
    np.testing.assert_array_equal(back.mjj, t.mjj)
    np.testing.assert_array_equal(back.label, t.label)
    both = FeatureTable.concatenate([t, t])
    assert len(both) == 2 * len(t)


def test_signal_region_masks_partition_the_data() -> None:
    sr = SignalRegion(3300.0, 3700.0)
    m = np.linspace(2000, 6000, 1001)
    inside, outside = sr.contains(m), sr.in_sidebands(m)
    assert not (inside & outside).any()
    assert (inside | outside).all()
    bounded = SignalRegion(3300.0, 3700.0, 3000.0, 4000.0)
    assert bounded.in_sidebands(m).sum() < outside.sum()
    assert bounded.in_sidebands(np.array([2999.0, 3100.0, 3900.0, 4001.0])).tolist() == [
        False,
        True,
        True,
        False,
    ]


def test_signal_region_validation_errors() -> None:
    m = np.random.default_rng(1).uniform(2500, 5000, 1000)
    with pytest.raises(InputError, match="lies outside the data"):
        SignalRegion(8000.0, 9000.0).validate_against(m)
    with pytest.raises(InputError, match="holds 0 events"):
        SignalRegion(3300.0, 3300.001).validate_against(m)
    with pytest.raises(InputError, match="looks like TeV"):
        SignalRegion(3300.0, 3700.0).validate_against(m / 1000)
    with pytest.raises(InputError, match="must be below"):
        SignalRegion(3700.0, 3300.0)


def test_check_mass_units_accepts_gev() -> None:
    check_mass_units(np.array([3000.0, 3500.0]))
    with pytest.raises(InputError, match="Multiply by 1000"):
        check_mass_units(np.array([3.0, 3.5]))


def test_default_config_validates() -> None:
    config = load_config(REPO / "analysis" / "default.yaml")
    assert config.data.path.is_absolute()
    assert config.region.signal_region_gev == (3300.0, 3700.0)


def test_config_rejects_misspelt_keys_and_tev(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("data: {path: x.h5, featurs: [mj1]}\nregion: {signal_region_gev: [3.3, 3.7]}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "data.featurs: unknown key" in text
    assert "looks like TeV" in text
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("data: {path: x.h5, features: [mass]}\nregion: {signal_region_gev: [1, 2]}\n")
    with pytest.raises(ConfigError, match="unknown feature"):
        load_config(path)


def test_config_overrides_are_validated() -> None:
    config = AnalysisConfig(data={"path": "x.h5"}, region={"signal_region_gev": (3300, 3700)})
    assert config.with_overrides(**{"data.remove_signal": True}).data.remove_signal
    with pytest.raises(ConfigError, match="unknown configuration key"):
        config.with_overrides(**{"data.remove_sig": True})
    with pytest.raises(ConfigError, match="efficiency"):
        config.with_overrides(**{"bumphunt.efficiency": 2.0})


def test_toy_data_has_signal_in_the_signal_region() -> None:
    t = toy_dijet_features(20000, 200, seed=3)
    sr = SignalRegion(3300.0, 3700.0).contains(t.mjj)
    assert t.label is not None
    assert t.label[sr].sum() > 0.6 * 200
    assert np.all(t.mjj > 0)


def test_write_json_is_strict_json(tmp_path: Path) -> None:
    import json

    from sideband.report import write_json

    def refuse(name: str) -> None:
        raise AssertionError(name)

    path = write_json(tmp_path / "m.json", {"sic": float("nan"), "arr": np.array([1.0, np.inf])})
    data = json.loads(path.read_text(), parse_constant=refuse)
    assert data == {"sic": None, "arr": [1.0, None]}
    assert not list(tmp_path.glob(".*tmp"))


def test_atomic_writes_give_files_the_usual_permissions(tmp_path):
    import os

    from sideband.background.training import save_atomic
    from sideband.report import new_file_mode, write_json

    old = os.umask(0o022)
    try:
        assert new_file_mode() == 0o644
        a = write_json(tmp_path / "a.json", {"x": 1})
        save_atomic({"x": 1}, tmp_path / "b.pt")
        for path in (a, tmp_path / "b.pt"):
            assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    finally:
        os.umask(old)
