"""`merge_into` of benchmarks/point_cloud_vs_cathode.py: injections run as parallel processes
(`--sb 3 --merge`, `--sb 6 --merge`) end up in one results file, and a file written with other
inputs or settings is never mixed in."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from benchmark_scripts import load_benchmark

vsc = load_benchmark("point_cloud_vs_cathode")


def _record(sb: float, *, seed: int = 0, conditions: str = "") -> dict:
    return {
        "what": "test",
        "inputs": ["a.h5", "b.h5"],
        "n_events": {"all": 10, "signal": 2},
        "settings": {"seed": seed, "window_gev": (2300.0, 5000.0)},
        "conditions": conditions,
        "results": {f"sb_{sb:g}": {"s_over_sqrt_b": sb, "auc": 0.5 + sb / 100}},
    }


def test_merge_keeps_other_injections_and_replaces_same(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    vsc.merge_into(out, _record(3, conditions="run a"))
    vsc.merge_into(out, _record(6, conditions="run b"))
    first = json.loads(out.read_text())
    assert set(first["results"]) == {"sb_3", "sb_6"}
    assert first["conditions"] == "run a | run b"
    again = _record(3, conditions="run a")
    again["results"]["sb_3"]["auc"] = 0.9
    vsc.merge_into(out, again)
    merged = json.loads(out.read_text())
    assert merged["results"]["sb_3"]["auc"] == 0.9
    assert merged["results"]["sb_6"] == first["results"]["sb_6"]
    assert merged["conditions"] == "run a | run b"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no lock file beside it


def test_merge_refuses_other_settings_and_leaves_file(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    vsc.merge_into(out, _record(3))
    before = out.read_text()
    with pytest.raises(SystemExit, match=r"other settings \(differing: \['seed'\]\)"):
        vsc.merge_into(out, _record(6, seed=1))
    other_inputs = _record(6)
    other_inputs["inputs"] = ["c.h5"]
    with pytest.raises(SystemExit, match="other inputs"):
        vsc.merge_into(out, other_inputs)
    assert out.read_text() == before


def _merge_many(out: str, first: int) -> None:
    for sb in range(first, first + 20, 2):
        vsc.merge_into(Path(out), _record(sb))


def test_parallel_merges_lose_nothing(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_merge_many, args=(str(out), first)) for first in (1, 2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    assert set(json.loads(out.read_text())["results"]) == {f"sb_{sb}" for sb in range(1, 21)}
