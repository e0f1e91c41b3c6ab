"""A fast toy dijet dataset with the shapes of the LHCO features, for tests and tutorials.

Not physics: a power-law m_JJ spectrum with auxiliary features that depend smoothly on m_JJ (so a
template must interpolate them), and a resonant signal localised in m_JJ and in the features, like
W' -> X Y -> qqqq with m_X = 500 GeV and m_Y = 100 GeV. Needs only numpy.
"""

from __future__ import annotations

import numpy as np

from sideband.records import FeatureTable

__all__ = ["toy_dijet_features"]


def toy_dijet_features(
    n_background: int,
    n_signal: int = 0,
    *,
    seed: int,
    mjj_min_gev: float = 2000.0,
    mjj_max_gev: float = 7000.0,
    power: float = 5.0,
    signal_mass_gev: float = 3500.0,
    signal_width_gev: float = 150.0,
) -> FeatureTable:
    """A shuffled, labelled `FeatureTable` of `n_background` + `n_signal` events (GeV).

    Background m_JJ follows ``p(m) ∝ m^-power`` on [min, max]; signal is Gaussian in m_JJ around
    `signal_mass_gev`, with mj1 ≈ 100 GeV, delta_mj ≈ 400 GeV and small tau21 (two-prong jets).
    """
    rng = np.random.default_rng(seed)
    # Inverse CDF of a truncated power law.
    a = 1.0 - power
    lo, hi = mjj_min_gev**a, mjj_max_gev**a
    m_bg = (lo + rng.random(n_background) * (hi - lo)) ** (1.0 / a)
    t = (m_bg - 3500.0) / 1000.0  # drives the m_JJ dependence of the features
    bg = {
        "mjj": m_bg,
        "mj1": np.abs(rng.normal(110.0 + 15.0 * t, 60.0)) + 10.0,
        "delta_mj": rng.exponential(150.0 + 20.0 * t.clip(-1.5, None)),
        "tau21_j1": rng.beta(4.0 + 0.3 * t.clip(-2, 2), 2.0),
        "tau21_j2": rng.beta(3.0, 2.5, n_background),
        "delta_r": np.clip(rng.normal(3.0 + 0.1 * t, 0.3), 1.0, 6.0),
    }
    m_sig = rng.normal(signal_mass_gev, signal_width_gev, n_signal)
    sig = {
        "mjj": m_sig,
        "mj1": rng.normal(100.0, 10.0, n_signal).clip(5.0, None),
        "delta_mj": rng.normal(400.0, 25.0, n_signal),
        "tau21_j1": rng.beta(2.0, 5.0, n_signal),
        "tau21_j2": rng.beta(2.0, 5.0, n_signal),
        "delta_r": np.clip(rng.normal(3.0, 0.3, n_signal), 1.0, 6.0),
    }
    cols = {k: np.concatenate([bg[k], sig[k]]) for k in bg}
    label = np.concatenate([np.zeros(n_background, np.int8), np.ones(n_signal, np.int8)])
    order = rng.permutation(len(label))
    return FeatureTable(
        {k: v[order] for k, v in cols.items()},
        np.arange(len(label)),
        label[order],
        source="toy",
    )
