"""The default analysis on the bundled data, with and without its injected signal (slow: minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sideband.config import load_config
from sideband.pipeline import run_analysis

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def config():  # type: ignore[no-untyped-def]
    return load_config(REPO / "analysis" / "default.yaml").with_overrides(progress=False)


def test_default_analysis_finds_the_injected_signal(config) -> None:  # type: ignore[no-untyped-def]
    result = run_analysis(config)
    m = result.metrics
    assert m["score_vs_truth"]["auc"] > 0.6
    assert m["z_after_cut"] > m["z_before_cut"]
    assert (
        m["n_signal_true_in_sr_after_cut"] > config.bumphunt.efficiency * m["n_signal_true_in_sr"]
    )


@pytest.mark.xfail(
    reason="known open problem (issue 3): on the bundled background-only data the 10% cut gives "
    "Z = 2.47, 1.81, 1.98 for seeds 1, 2, 3 (mu-hat ~ +90..+113 events): template mismodelling or "
    "sculpting by a classifier trained in the SR only; LaCATHODE (issue 5) is the cure to try",
    strict=False,
)
def test_default_analysis_without_signal_finds_nothing(config) -> None:  # type: ignore[no-untyped-def]
    result = run_analysis(config.with_overrides(**{"data.remove_signal": True}))
    assert result.metrics["z_after_cut"] < 2
    assert result.metrics["z_before_cut"] < 2
