"""The full-phase-space background template: dijet kinematics, then each jet's constituents.

Buhmann et al., arXiv:2310.06897 (the flow-matching variant): one model generates the jet
kinematics given m_JJ, a second generates each jet's constituent point cloud given the jet.

- Jet model: conditional flow matching of the 9 `JET_MODEL_FEATURES` (eta, log(1 + m) and
  dequantised multiplicity of both jets, log pT_1, and the balance log(log(pT_1 / pT_2)) and
  log(pi - |Delta phi|), in which the generated jets keep the pT order and |Delta phi| <= pi
  exactly; see `sideband.background.point_cloud.jets`) given m_JJ, a
  `sideband.background.SigmaTemplate` without interpolation trained on the sideband events.
- Particle model: `sideband.background.point_cloud.particles.ParticleFlowMatching`, an EPiC
  flow-matching generator of (pT_rel, Delta eta, Delta phi) of one jet's constituents given that
  jet's (log pT, eta, log(1 + m), log n) with n the jet's full multiplicity; the mask holds the
  first min(n, M) slots. With clouds truncated to the M hardest constituents (M < n) the mask no
  longer tells n, and the M hardest of a wide jet are not those of a narrow one: hence log n.
  Both jets of every sideband event are training examples of the same model. The absolute azimuth
  is not a condition: the events are symmetric under rotations about the beam.

`PointCloudTemplate.sample` draws SR masses (given, or from a fitted mass sampler, as for the other
templates), the jets given the masses, then the clouds given the jets, and returns a
`sideband.records.PointCloudTable` whose ``mjj`` are the conditioning masses.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sideband.background.base import generator, sample_masses
from sideband.background.point_cloud.jets import decode_jets, dijet_mass, encode_jets
from sideband.background.training import load_saved, save_atomic
from sideband.errors import InputError, NotFittedError
from sideband.records import PointCloudTable

__all__ = [
    "PointCloudTemplate",
    "TruncationFractions",
    "close_clouds",
    "close_jets",
    "cloud_closure",
    "fold_into_cone",
]

log = logging.getLogger(__name__)

_FORMAT = "sideband.point_cloud_template"
# 2: the particle model also sees log n; truncation fractions saved. 3: the jet model's balance
# features (log log pT_1 / pT_2, log(pi - |Delta phi|)); truncation table keyed by n and m / pT.
_FORMAT_VERSION = 3

#: Values of `PointCloudTemplate`'s ``closure``.
CLOSURES = ("clouds", "jets", None)

#: Defaults of the jet model (`SigmaTemplate` keywords) where they differ from SIGMA's.
JET_MODEL_DEFAULTS: dict[str, Any] = {
    "interpolation": "none",
    "signal_region": None,
    "selection": "cfm",
    "epochs": 300,
    "patience": 40,
    "n_ensemble": 10,
    "batch_size": 512,
    "learning_rate": 1e-3,
}


#: Defaults of the particle model (`ParticleFlowMatching` keywords) where they differ from its
#: own: pT_rel is modelled as log pT_rel, so generated constituents never have pT_rel <= 0 (with
#: the paper's plain standardisation a short training gave 22% negative pT_rel); each constituent
#: exchanges messages with its 4 nearest (`NeighbourLayer`), so collinear pairs form (on the 54k
#: LHCO-like benchmark the point-cloud two-sample AUC fell from 0.77-0.82 to 0.60-0.67 over
#: classifier seeds, for 1.7x the training time); training times are drawn as t = u**2, more
#: often near the data end where those pairs form (no extra cost; in two trainings the hardest
#: pair's ΔR median 0.010 -> 0.0077-0.0080, data 0.0038, HGB on hard-core observables 0.86 ->
#: 0.82; the point-cloud AUC, 0.641 -> 0.611 and 0.644, does not resolve it; benchmarks/README.md).
PARTICLE_MODEL_DEFAULTS: dict[str, Any] = {
    "log_features": (0,),
    "n_neighbours": 4,
    "time_exponent": 2.0,
}


def close_jets(
    points: np.ndarray, mask: np.ndarray, jets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Clouds and jets made consistent: each jet becomes the sum of its massless constituents.

    In data a jet is the sum of its constituents, so with every constituent in the cloud
    (multiplicity <= M) the cloud's summed momentum is the jet's and its mass the jet's mass; a
    generator matches that only approximately, and a point-cloud classifier sees the difference.
    For those jets the constituents are placed in absolute (pT, eta, phi) with the generated
    jet, summed into a new jet four-vector, and re-expressed relative to its axis (pT_rel,
    Delta eta, Delta phi wrapped); pT, eta, phi and m of the jet are replaced, the multiplicity
    kept. Jets with more constituents than slots, or without any, are left as they are.

    Parameters
    ----------
    points
        (N, 2, M, 3) float32 (pT_rel, Delta eta, Delta phi); mask (N, 2, M); jets (N, 2, 5).

    Returns
    -------
    (points, jets): new arrays, same shapes and dtypes.
    """
    m = points.shape[2]
    c = points.astype(np.float64)
    pt = c[..., 0] * jets[..., 0:1]
    eta = c[..., 1] + jets[..., 1:2]
    phi = c[..., 2] + jets[..., 2:3]
    new_pt, new_eta, new_phi, new_m = _sum_four_vectors(pt, eta, phi, mask.astype(bool))
    ok = (jets[..., 4] <= m) & mask.any(-1) & (new_pt > 0)
    safe_pt = np.where(ok, new_pt, 1.0)
    out_jets = jets.copy()
    out_jets[..., 0] = np.where(ok, new_pt, jets[..., 0])
    out_jets[..., 1] = np.where(ok, new_eta, jets[..., 1])
    out_jets[..., 2] = np.where(ok, new_phi, jets[..., 2])
    out_jets[..., 3] = np.where(ok, new_m, jets[..., 3])
    rel = np.stack(
        [
            pt / safe_pt[..., None],
            eta - new_eta[..., None],
            (phi - new_phi[..., None] + np.pi) % (2 * np.pi) - np.pi,
        ],
        axis=-1,
    )
    use = (ok[..., None] & mask)[..., None]
    out = np.where(use, rel, c).astype(np.float32)
    out[~mask] = 0.0
    return out, out_jets


def _sum_four_vectors(
    pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pT, eta, phi, m of the sum of massless particles (..., M) where w (bool) is true."""
    px, py = (pt * np.cos(phi) * w).sum(-1), (pt * np.sin(phi) * w).sum(-1)
    pz, e = (pt * np.sinh(eta) * w).sum(-1), (pt * np.cosh(eta) * w).sum(-1)
    s_pt = np.hypot(px, py)
    safe = np.where(s_pt > 0, s_pt, 1.0)
    return (
        s_pt,
        np.arcsinh(pz / safe),
        np.arctan2(py, px),
        np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0)),
    )


def cloud_closure(points: np.ndarray, mask: np.ndarray, jets: np.ndarray) -> np.ndarray:
    """How each cloud adds up to its jet: (N, 2, 4) float64.

    Columns: the constituents' summed pT / jet pT, their mass / jet mass, and the offsets
    (Delta eta, Delta phi) of the sum's direction from the jet axis. A cloud that holds every
    constituent of a data jet gives (1, 1, 0, 0); one truncated to its M hardest, less.
    """
    pt = points[..., 0].astype(np.float64) * jets[..., 0:1]
    s_pt, s_eta, s_phi, s_m = _sum_four_vectors(
        pt, points[..., 1] + jets[..., 1:2], points[..., 2] + jets[..., 2:3], mask.astype(bool)
    )
    d_phi = (s_phi - jets[..., 2] + np.pi) % (2 * np.pi) - np.pi
    return np.stack(
        [s_pt / jets[..., 0], s_m / np.maximum(jets[..., 3], 1e-9), s_eta - jets[..., 1], d_phi],
        axis=-1,
    )


def fold_into_cone(points: np.ndarray, mask: np.ndarray, radius: float) -> np.ndarray:
    """Generated constituents beyond the jet radius folded back inside it.

    An anti-kT jet of radius R has a sharp edge: its farthest constituent lies just inside R
    (in LHCO-like QCD for 25% of the jets whose constituents all fit in the cloud, within 1% of
    R; beyond R for 2%). A smooth generator smears that edge (a CPU model put the farthest
    constituent beyond R in 21% of such jets). Each point at distance r > R from the axis is
    moved along its direction to 2R - r (at least 0): the density just outside the edge is
    mirrored into the band just inside it. (Generating inside the cone by construction,
    `ParticleFlowMatching`'s ``cone_radius``, matched the edge as well but needs its own
    training and did not lower the point-cloud two-sample AUC on the 54k benchmark: 0.795 and
    0.769 against 0.755, within that test's classifier-seed spread of up to 0.06.)

    Parameters
    ----------
    points
        (..., M, 3) (pT_rel, Delta eta, Delta phi); mask (..., M); radius R.

    Returns
    -------
    New array, same shape and dtype; pT_rel and the points within R unchanged.
    """
    out = np.array(points, copy=True)
    r = np.hypot(out[..., 1], out[..., 2]).astype(np.float64)
    far = mask.astype(bool) & (r > radius)
    new_r = np.clip(2.0 * radius - r, 0.0, radius)
    factor = np.where(far, new_r / np.where(far, r, 1.0), 1.0).astype(out.dtype)
    out[..., 1] *= factor
    out[..., 2] *= factor
    return out


def close_clouds(
    points: np.ndarray,
    mask: np.ndarray,
    jets: np.ndarray,
    *,
    truncated: np.ndarray | None = None,
    cone_radius: float | None = 1.0,
    n_iter: int = 8,
) -> np.ndarray:
    """Clouds adjusted to their jets: the constituents add up to the generated jet.

    In data a jet is the sum of its constituents; a generator matches that only approximately
    (a small one much worse than its marginals suggest: summed pT 0.90 +- 0.25 of the jet's
    against 0.98 +- 0.04 in data), and a point-cloud classifier sees it at once. Here the jet
    model's kinematics are kept and each cloud is moved onto them, a few times over:

    1. shift (Delta eta, Delta phi) of all points so that the direction of the constituents'
       vector sum is the jet axis (plus the target offset);
    2. scale pT_rel so that the sum's pT is the target fraction of the jet's pT;
    3. widen or narrow the cloud about the direction of its sum so that its mass is the target
       fraction of the jet's (a massless cloud's mass grows about linearly with its angular
       size). With ``cone_radius`` R (the jet radius; anti-kT jets are cones, in data hardly a
       constituent lies beyond R) each point's distance r from the centre becomes
       E (r / E)^gamma, E = max(R, the farthest point): no point moves past E, the core moves
       most (a uniform widening put up to 1.5% of the points outside the cone, a give-away
       for a classifier); gamma is set from the cloud's pT-weighted mean distance, within
       [1/4, 4] over all passes. A cloud that already reaches past R is narrowed by scaling
       all offsets by one factor (within [0.5, 2] over all passes), as is every cloud with
       ``cone_radius=None``.

    A cloud that holds every constituent (multiplicity <= M) must add up to its jet: targets
    (1, 1, 0, 0) in the columns of `cloud_closure`. A truncated cloud (the M hardest of more)
    carries only part of it; its targets are the rows of ``truncated`` (`PointCloudTemplate`
    draws them from sideband jets of similar multiplicity, `TruncationFractions`); a NaN target,
    or no ``truncated``, leaves that property as generated. Jets without points are left alone.
    The last pass applies steps 1 and 2 only, so direction and pT close to float precision and
    the mass to about 1% (a few % where a cloud had to be reshaped a lot).

    Parameters
    ----------
    points
        (N, 2, M, 3) float (pT_rel, Delta eta, Delta phi); mask (N, 2, M); jets (N, 2, 5)
        (pT [GeV], eta, phi, m [GeV], multiplicity).
    truncated
        (N, 2, 4) targets for truncated clouds (used only where multiplicity > M), columns as
        `cloud_closure`.

    Returns
    -------
    (N, 2, M, 3) float32 clouds, zero at padded slots.
    """
    m = points.shape[2]
    c = points.astype(np.float64).copy()
    w = mask.astype(bool)
    shape = jets.shape[:-1]
    target = np.full((*shape, 4), np.nan) if truncated is None else np.array(truncated, float)
    target[jets[..., 4] <= m] = (1.0, 1.0, 0.0, 0.0)
    f_pt, f_m, off_eta, off_phi = (target[..., k] for k in range(4))
    align = np.isfinite(off_eta) & np.isfinite(off_phi)
    jet_pt, jet_eta, jet_phi, jet_m = (jets[..., k].astype(np.float64) for k in range(4))

    def summed() -> tuple[np.ndarray, ...]:
        pt = c[..., 0] * jet_pt[..., None]
        return _sum_four_vectors(
            pt, c[..., 1] + jet_eta[..., None], c[..., 2] + jet_phi[..., None], w
        )

    scale = np.ones(shape)  # product of the uniform factors so far
    power = np.ones(shape)  # product of the gammas so far
    for it in range(n_iter + 1):
        s_pt, s_eta, s_phi, s_m = summed()
        has = w.any(-1) & (s_pt > 0)
        move = has & align
        d_phi = (s_phi - jet_phi - np.where(move, off_phi, 0.0) + np.pi) % (2 * np.pi) - np.pi
        c[..., 1] -= np.where(move, s_eta - jet_eta - off_eta, 0.0)[..., None]
        c[..., 2] -= np.where(move, d_phi, 0.0)[..., None]
        use = has & np.isfinite(f_pt)
        pt_factor = np.where(use, f_pt * jet_pt / np.where(has, s_pt, 1.0), 1.0)
        c[..., 0] *= pt_factor[..., None]
        if it == n_iter:
            break
        # the shift is a boost along z and a rotation about it: the sum's mass only follows
        # the pT scaling
        s_m = s_m * pt_factor
        ok = has & np.isfinite(f_m) & (s_m > 0) & (jet_m > 0)
        ratio = np.where(ok, f_m * jet_m / np.where(s_m > 0, s_m, 1.0), 1.0)
        # widen/narrow about the (target) direction of the sum, not about the jet axis
        centre = np.stack([np.where(move, off_eta, 0.0), np.where(move, off_phi, 0.0)], -1)
        rel = c[..., 1:] - centre[..., None, :]
        if cone_radius is None:
            step = np.clip(scale * ratio, 0.5, 2.0) / scale
            scale *= step
            factor = np.broadcast_to(step[..., None], w.shape)
        else:
            r = np.hypot(rel[..., 0], rel[..., 1])
            # the fixed radius: R, or the farthest point of a cloud that already reaches out
            edge = np.maximum(cone_radius, np.where(w, r, 0.0).max(-1))
            weight = np.where(w, c[..., 0], 0.0)
            r0 = (weight * r).sum(-1) / np.maximum(weight.sum(-1), 1e-300)
            x0 = np.clip(r0 / edge, 1e-6, 0.95)
            # r0 -> r0 * ratio under r -> edge (r / edge)^gamma: 1 + ln(ratio) / ln(r0 / edge)
            gamma = 1.0 + np.log(ratio) / np.log(x0)
            # a cloud reaching past R is narrowed uniformly: that pulls its far points in too
            uniform = (ratio < 1.0) & (edge > cone_radius)
            gamma = np.where(uniform, 1.0, np.clip(power * gamma, 0.25, 4.0) / power)
            power *= gamma
            step = np.where(uniform, np.clip(scale * ratio, 0.5, 2.0) / scale, 1.0)
            scale *= step
            x = np.maximum(r, 1e-12) / edge[..., None]
            factor = np.where(r > 0, x ** (gamma[..., None] - 1.0), 1.0) * step[..., None]
        c[..., 1:] = centre[..., None, :] + rel * factor[..., None]
    c[..., 2] = (c[..., 2] + np.pi) % (2 * np.pi) - np.pi
    c[~w] = 0.0
    return c.astype(np.float32)


class TruncationFractions:
    """How the M hardest constituents add up to the jet, by multiplicity and m / pT.

    A cloud truncated to its M hardest constituents carries a fraction of the jet's pT and
    mass, and its sum points slightly off the jet axis (`cloud_closure`). All depend on the
    multiplicity n, and the mass fraction also on the jet's width, which m / pT measures: in
    LHCO-like QCD SR jets of 120-200 constituents the 64 hardest carry 0.74 of the mass in the
    narrowest third and 0.88 in the widest. `fit` keeps (n, m / pT, and the four
    `cloud_closure` columns) of the truncated training clouds (at most ``max_rows``, at random);
    `draw` gives each generated jet the row of a random training jet among the ``k`` nearest in
    (log n, m / pT), each standardised over the table, so the columns keep their correlations
    and spread. (Drawn by n alone, the targets narrowed the widest generated jets: on the 54k
    LHCO-like benchmark the pT-weighted width of the 32 hardest constituents had its median at
    0.045 and its 90% quantile at 0.19, against 0.042 and 0.23 in data; drawn by (n, m / pT),
    0.041 and 0.20.)
    """

    def __init__(self, k: int = 25, max_rows: int = 20_000) -> None:
        self.k = k
        self.max_rows = max_rows
        self._index: tuple[np.ndarray, Any, np.ndarray] | None = None

    def _search_index(self) -> tuple[Any, np.ndarray]:
        """KD-tree of the standardised table keys and their scale, built once per table."""
        from scipy.spatial import cKDTree

        if self._index is None or self._index[0] is not self.table_:
            keys = self._keys(self.table_[:, 0], self.table_[:, 1])
            scale = keys.std(axis=0)
            scale = np.where(scale > 0, scale, 1.0)
            self._index = (self.table_, cKDTree(keys / scale), scale)
        return self._index[1], self._index[2]

    @staticmethod
    def _keys(n: np.ndarray, m_over_pt: np.ndarray) -> np.ndarray:
        """(rows, 2) nearest-neighbour keys: log n and m / pT (flattened)."""
        return np.column_stack([np.log(np.maximum(np.ravel(n), 1.0)), np.ravel(m_over_pt)])

    def fit(
        self, points: np.ndarray, mask: np.ndarray, jets: np.ndarray, rng: np.random.Generator
    ) -> TruncationFractions:
        """Keep the truncated clouds (multiplicity > M) of (N, 2, M, 3) points; jets (N, 2, 5).

        ``table_`` (rows, 6): n, m / pT, then the `cloud_closure` columns.
        """
        closure = cloud_closure(points, mask, jets)
        n = jets[..., 4]
        cut = (n > points.shape[2]) & np.isfinite(closure).all(-1) & (closure[..., 0] > 0)
        rows = np.column_stack([n[cut], jets[..., 3][cut] / jets[..., 0][cut], closure[cut]])
        if len(rows) > self.max_rows:
            rows = rows[rng.choice(len(rows), self.max_rows, replace=False)]
        self.table_ = rows[np.argsort(rows[:, 0], kind="stable")]
        return self

    def draw(self, jets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Targets (..., 4) for jets (..., 5); NaN when no training cloud was cut."""
        jets = np.asarray(jets, dtype=np.float64)
        shape = jets.shape[:-1]
        t = self.table_
        if len(t) == 0:
            return np.full((*shape, 4), np.nan)
        k = min(int(self.k), len(t))
        tree, scale = self._search_index()
        query = self._keys(jets[..., 4], jets[..., 3] / jets[..., 0])
        _, nearest = tree.query(query / scale, k=k)
        nearest = np.asarray(nearest).reshape(-1, k)
        pick = nearest[np.arange(len(nearest)), rng.integers(0, k, size=len(nearest))]
        return t[pick, 2:].reshape(*shape, 4)


def _jet_condition(jets: np.ndarray) -> np.ndarray:
    """Particle-model condition (N, 4): log pT, eta, log(1 + m / GeV), log n of jets (N, 5)."""
    return np.column_stack(
        [np.log(jets[:, 0]), jets[:, 1], np.log1p(jets[:, 3]), np.log(np.maximum(jets[:, 4], 1))]
    )


class PointCloudTemplate:
    """Background template of full events: both jets' kinematics and constituent point clouds.

    Parameters
    ----------
    jet_model
        Keywords of the jet model, a `sideband.background.SigmaTemplate` (defaults:
        `JET_MODEL_DEFAULTS`: no interpolation, validation by the flow-matching loss).
    particle_model
        Keywords of `sideband.background.point_cloud.particles.ParticleFlowMatching` (defaults:
        `PARTICLE_MODEL_DEFAULTS`).
    device, seed, progress, checkpoint_dir
        Passed to both models (checkpoints in ``checkpoint_dir/jets`` and
        ``checkpoint_dir/particles``; a killed fit resumes from them).
    closure
        How generated clouds are made to add up to their jets, as in data: ``"clouds"`` (default)
        folds points generated beyond ``jet_radius`` back inside it (`fold_into_cone`) and
        moves each cloud onto the jet model's kinematics (`close_clouds`; truncated clouds get
        the pT and mass fractions of sideband jets of similar multiplicity, see
        `TruncationFractions`); ``"jets"`` replaces the jet kinematics by the sum of the
        generated constituents where the whole cloud fits (`close_jets`; with a small CPU model
        it broadened the jet pT, std 438 vs 198 GeV, and the jets' m_JJ); None leaves both as
        generated.
    jet_radius
        R of the anti-kT jets the clouds come from: ``closure="clouds"`` keeps the constituents
        within R of the axis when it widens a cloud.

    Notes
    -----
    Fitted attributes: ``jet_model_``, ``particle_model_``, ``max_constituents_`` (M of the
    training clouds), ``n_train_`` (sideband events), ``truncation_`` (`TruncationFractions`).
    """

    def __init__(
        self,
        *,
        jet_model: dict[str, Any] | None = None,
        particle_model: dict[str, Any] | None = None,
        device: str = "auto",
        seed: int | None = 0,
        progress: bool = False,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        closure: str | None = "clouds",
        jet_radius: float = 1.0,
    ) -> None:
        self.jet_model = jet_model
        self.particle_model = particle_model
        self.device = device
        self.seed = seed
        self.progress = progress
        self.checkpoint_dir = checkpoint_dir
        self.closure = closure
        self.jet_radius = jet_radius

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (plain values)."""
        return {
            "jet_model": dict(self.jet_model or {}),
            "particle_model": dict(self.particle_model or {}),
            "device": self.device,
            "seed": self.seed,
            "progress": self.progress,
            "checkpoint_dir": None if self.checkpoint_dir is None else str(self.checkpoint_dir),
            "closure": self.closure,
            "jet_radius": self.jet_radius,
        }

    def _common(self, sub: str) -> dict[str, Any]:
        ck = None if self.checkpoint_dir is None else str(Path(self.checkpoint_dir) / sub)
        return {"device": self.device, "seed": self.seed, "progress": self.progress,
                "checkpoint_dir": ck}  # fmt: skip

    def _build(self) -> tuple[Any, Any]:
        from sideband.background.point_cloud.particles import ParticleFlowMatching
        from sideband.background.sigma import SigmaTemplate

        jets = SigmaTemplate(**{**JET_MODEL_DEFAULTS, **self._common("jets"),
                                **(self.jet_model or {})})  # fmt: skip
        jets._log_name = "point-cloud jet model (SIGMA)"
        particles = ParticleFlowMatching(**{**PARTICLE_MODEL_DEFAULTS, **self._common("particles"),
                                            **(self.particle_model or {})})  # fmt: skip
        return jets, particles

    def fit(self, table: PointCloudTable) -> PointCloudTemplate:
        """Train both models on `table`, the sideband events (N, 2, M, 3 clouds; GeV).

        Raises `InputError` for a table that is not a `PointCloudTable`, has fewer than 100
        events or events without two jets.
        """
        if not isinstance(table, PointCloudTable):
            msg = (
                f"fit needs a sideband.records.PointCloudTable of the sideband events, got "
                f"{type(table).__name__}; read one with sideband.events.read_point_clouds"
            )
            raise InputError(msg)
        if len(table) < 100:
            msg = f"only {len(table)} sideband events; the point-cloud template needs >= 100"
            raise InputError(msg)
        if self.closure not in CLOSURES:
            msg = f"closure must be one of {CLOSURES}; got {self.closure!r}"
            raise InputError(msg)
        if not 0 < self.jet_radius < 10:
            msg = f"jet_radius is the anti-kT R of the jets (e.g. 1.0); got {self.jet_radius!r}"
            raise InputError(msg)
        rng = generator(None if self.seed is None else np.random.SeedSequence([self.seed, 7]))
        jet_model, particle_model = self._build()
        log.info("point-cloud template: jet model on %d sideband events", len(table))
        jet_model.fit(encode_jets(table.jets, rng), table.mjj)
        m = table.max_constituents
        points = table.constituents.reshape(-1, m, 3)
        mask = table.mask.reshape(-1, m)
        cond = _jet_condition(table.jets.reshape(-1, 5))
        log.info("point-cloud template: particle model on %d jets", len(points))
        particle_model.fit(points, mask, cond)
        self.truncation_ = TruncationFractions().fit(
            table.constituents, table.mask, table.jets, rng
        )
        self.jet_model_ = jet_model
        self.particle_model_ = particle_model
        self.max_constituents_ = m
        self.n_train_ = len(table)
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "particle_model_"):
            msg = "this PointCloudTemplate is not fitted; call fit(sideband_table) first"
            raise NotFittedError(msg)

    def sample(
        self,
        n_or_m: int | np.ndarray,
        *,
        mass_sampler: Any = None,
        seed: int | np.random.Generator | None = None,
    ) -> PointCloudTable:
        """Template events: jets and clouds at the masses `n_or_m` (n,) GeV, or at `n` masses
        drawn from `mass_sampler` (a fitted `KDEMassSampler`/`HistogramMassSampler` of the SR).

        Returns a `PointCloudTable` with M = the training clouds' slots, ``mjj`` = the
        conditioning masses, ``event_id`` = 0..n-1 and no labels. The jets' own invariant mass
        follows m_JJ only as well as the jet model learned it (see `mjj_consistency`).
        """
        self._fitted()
        gen = generator(
            seed
            if seed is not None
            else (None if self.seed is None else np.random.SeedSequence([self.seed, 8]))
        )
        m_jj = sample_masses(n_or_m, mass_sampler, gen, "KDEMassSampler")
        n, m = len(m_jj), self.max_constituents_
        x = self.jet_model_.sample(m_jj, seed=gen)
        jets = decode_jets(x, gen)
        # n_constituents is the full multiplicity; the cloud holds its min(n, M) hardest
        mask = np.arange(m)[None, None, :] < jets[:, :, 4:5]
        points = self.particle_model_.sample(
            _jet_condition(jets.reshape(-1, 5)),
            mask.reshape(-1, m),
            seed=int(gen.integers(2**31)),
        ).reshape(n, 2, m, 3)
        if self.closure == "clouds":
            points = fold_into_cone(points, mask, float(self.jet_radius))
            targets = self.truncation_.draw(jets, gen)
            points = close_clouds(
                points, mask, jets, truncated=targets, cone_radius=float(self.jet_radius)
            )
        elif self.closure == "jets":
            points, jets = close_jets(points, mask, jets)
        elif self.closure is not None:
            msg = f"closure must be one of {CLOSURES}; got {self.closure!r}"
            raise InputError(msg)
        return PointCloudTable(points, mask, jets, m_jj, np.arange(n), None, source="template")

    @staticmethod
    def mjj_consistency(table: PointCloudTable) -> np.ndarray:
        """Relative difference (n,) between the jets' invariant mass and the table's m_JJ."""
        return dijet_mass(table.jets) / table.mjj - 1.0

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """One file with both models (written to a temporary file, then renamed)."""
        self._fitted()
        with tempfile.TemporaryDirectory() as tmp:
            parts = {}
            for name, model in (("jet_model", self.jet_model_),
                                ("particle_model", self.particle_model_)):  # fmt: skip
                model.save(Path(tmp) / name)
                parts[name] = torch.load(Path(tmp) / name, map_location="cpu", weights_only=True)
        save_atomic(
            {
                "format": _FORMAT,
                "format_version": _FORMAT_VERSION,
                "params": {k: v for k, v in self.get_params().items() if k != "checkpoint_dir"},
                "max_constituents": int(self.max_constituents_),
                "n_train": int(self.n_train_),
                "truncation_table": torch.from_numpy(self.truncation_.table_),
                **parts,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "auto") -> PointCloudTemplate:
        """Read a template written by `save`; `CheckpointError` if missing or corrupt."""
        from sideband.background.point_cloud.particles import ParticleFlowMatching
        from sideband.background.sigma import SigmaTemplate

        payload = load_saved(Path(path), what="point-cloud template", cls_name=cls.__name__,
                             fmt=_FORMAT, version=_FORMAT_VERSION,
                             fix="fit the template again and save it")  # fmt: skip
        obj = cls(**{**payload["params"], "device": device})
        with tempfile.TemporaryDirectory() as tmp:
            for name, sub in (
                ("jet_model", SigmaTemplate),
                ("particle_model", ParticleFlowMatching),
            ):
                torch.save(payload[name], Path(tmp) / name)
                setattr(obj, f"{name}_", sub.load(Path(tmp) / name, device=device))
        obj.max_constituents_ = int(payload["max_constituents"])
        obj.n_train_ = int(payload["n_train"])
        obj.truncation_ = TruncationFractions()
        obj.truncation_.table_ = payload["truncation_table"].numpy().astype(np.float64)
        return obj
