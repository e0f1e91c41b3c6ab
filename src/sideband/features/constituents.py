"""Constituent point clouds of the two leading jets: (pT_rel, Delta eta, Delta phi), padded.

The representation of the full-phase-space study (Buhmann et al., arXiv:2310.06897): each of the
two pT-leading anti-kT jets is a set of constituents in coordinates relative to the jet axis,
pT_rel = pT / pT_jet, Delta eta = eta - eta_jet and Delta phi = phi - phi_jet wrapped into
[-pi, pi), hardest first, padded with a mask to a fixed maximum (279 there: the largest jet
multiplicity of the LHCO R&D events), plus the jet kinematics (pT, eta, phi, m, multiplicity).
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from sideband.errors import InputError
from sideband.features.substructure import (
    _leading_jets,
    _LeadingJets,
    check_clustering_options,
)
from sideband.records import CONSTITUENT_FEATURES

__all__ = ["DEFAULT_MAX_CONSTITUENTS", "jet_point_clouds"]

#: Constituent slots per jet by default: the largest multiplicity of a leading jet in the LHCO
#: R&D events (arXiv:2310.06897).
DEFAULT_MAX_CONSTITUENTS: int = 279


def check_max_constituents(max_constituents: int) -> int:
    """Return `max_constituents` as an int, or raise for a non-positive or non-integer value."""
    if (
        isinstance(max_constituents, bool)
        or int(max_constituents) != max_constituents
        or max_constituents < 1
    ):
        msg = (
            f"max_constituents must be a positive integer (slots per jet, default "
            f"{DEFAULT_MAX_CONSTITUENTS}); got {max_constituents!r}"
        )
        raise InputError(msg)
    return int(max_constituents)


def jet_point_clouds(
    particles: ak.Array,
    *,
    r: float = 1.0,
    min_jet_pt_gev: float = 20.0,
    max_constituents: int = DEFAULT_MAX_CONSTITUENTS,
) -> dict[str, np.ndarray]:
    """Cluster each event with anti-kT and return the point clouds of its two leading jets.

    Parameters
    ----------
    particles
        Awkward array of N events of particle records ``pt`` [GeV], ``eta``, ``phi`` (optional
        ``mass`` [GeV]); pT <= 0 slots are ignored.
    r, min_jet_pt_gev
        Anti-kT radius and jet pT threshold [GeV].
    max_constituents
        M, constituent slots per jet; the softest constituents of a jet with more are dropped
        (its ``n_constituents`` still counts them all).

    Returns
    -------
    dict with ``constituents`` float32 (N, 2, M, 3) of `CONSTITUENT_FEATURES`, ``mask`` bool
    (N, 2, M), ``jets`` float64 (N, 2, 5) of `JET_KINEMATICS` (pT, eta, phi, m [GeV],
    multiplicity), ``mjj`` float64 (N,) [GeV], ``n_jets`` int64 (N,) and ``has_dijet`` bool (N,).
    Rows of events with fewer than two jets have NaN jets and empty (all-false) masks.
    """
    check_clustering_options(r=r, min_jet_pt_gev=min_jet_pt_gev, axes="KT_Axes")
    m = check_max_constituents(max_constituents)
    return _point_clouds(_leading_jets(particles, r=r, min_jet_pt_gev=min_jet_pt_gev), m)


def _point_clouds(leading: _LeadingJets, max_constituents: int) -> dict[str, np.ndarray]:
    n_events = len(leading.n_jets)
    m = max_constituents
    has_dijet = leading.n_jets >= 2
    four = leading.four
    jet_pt = np.hypot(four["px"], four["py"])
    jet_eta = np.arcsinh(four["pz"] / jet_pt)
    jet_phi = np.arctan2(four["py"], four["px"])
    jet_m = np.sqrt(
        np.maximum(four["e"] ** 2 - four["px"] ** 2 - four["py"] ** 2 - four["pz"] ** 2, 0)
    )
    n_cons = np.zeros((n_events, 2))
    cons = np.zeros((n_events, 2, m, len(CONSTITUENT_FEATURES)), dtype=np.float32)
    mask = np.zeros((n_events, 2, m), dtype=bool)
    if leading.constituents is not None:
        c = leading.constituents  # (N, <=2, var)
        jets_per_event = np.asarray(ak.num(c, axis=1), dtype=np.int64)
        per_jet = ak.flatten(c, axis=1)  # (J, var)
        count = np.asarray(ak.num(per_jet, axis=1), dtype=np.int64)
        event = np.repeat(np.arange(n_events), jets_per_event)  # (J,)
        slot = np.arange(len(event)) - np.repeat(
            np.cumsum(jets_per_event) - jets_per_event, jets_per_event
        )
        n_cons[event, slot] = count
        flat = {q: ak.to_numpy(ak.flatten(per_jet[q], axis=None)) for q in ("px", "py", "pz")}
        pt = np.hypot(flat["px"], flat["py"])
        jet_of = np.repeat(np.arange(len(event)), count)
        ev, sl = event[jet_of], slot[jet_of]
        pt_rel = pt / jet_pt[ev, sl]
        deta = np.arcsinh(flat["pz"] / pt) - jet_eta[ev, sl]
        dphi = np.arctan2(flat["py"], flat["px"]) - jet_phi[ev, sl]
        dphi = (dphi + np.pi) % (2 * np.pi) - np.pi
        # hardest first within each jet: sort by (jet, -pT), then the position inside the jet
        order = np.lexsort((-pt, jet_of))
        rank = np.empty(len(order), dtype=np.int64)
        first = np.cumsum(count) - count
        rank[order] = np.arange(len(order)) - first[jet_of[order]]
        keep = rank < m
        at = (ev[keep], sl[keep], rank[keep])
        for k, values in enumerate((pt_rel, deta, dphi)):
            cons[(*at, k)] = values[keep]
        mask[at] = True
    jets = np.stack([jet_pt, jet_eta, jet_phi, jet_m, n_cons], axis=-1)  # JET_KINEMATICS
    jets[~has_dijet] = np.nan
    cons[~has_dijet] = 0.0
    mask[~has_dijet] = False
    e, px, py, pz = (four[q].sum(axis=1) for q in ("e", "px", "py", "pz"))
    mjj = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    mjj[~has_dijet] = np.nan
    return {
        "constituents": cons,
        "mask": mask,
        "jets": jets,
        "mjj": mjj,
        "n_jets": leading.n_jets,
        "has_dijet": has_dijet,
    }
