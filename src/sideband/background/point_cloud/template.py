"""The full-phase-space background template: dijet kinematics, then each jet's constituents.

Buhmann et al., arXiv:2310.06897 (the flow-matching variant): one model generates the jet
kinematics given m_JJ, a second generates each jet's constituent point cloud given the jet.

- Jet model: conditional flow matching of the 9 `JET_MODEL_FEATURES` (log pT, eta, log(1 + m),
  dequantised multiplicity of both jets and |Delta phi|) given m_JJ, a
  `sideband.background.SigmaTemplate` without interpolation trained on the sideband events.
- Particle model: `sideband.background.point_cloud.particles.ParticleFlowMatching`, an EPiC
  flow-matching generator of (pT_rel, Delta eta, Delta phi) of one jet's constituents given that
  jet's (log pT, eta, log(1 + m)); the multiplicity enters through the mask (the first n slots).
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

__all__ = ["PointCloudTemplate"]

log = logging.getLogger(__name__)

_FORMAT = "sideband.point_cloud_template"
_FORMAT_VERSION = 1

#: Defaults of the jet model (`SigmaTemplate` keywords) where they differ from SIGMA's.
JET_MODEL_DEFAULTS: dict[str, Any] = {
    "interpolation": "none",
    "signal_region": None,
    "selection": "cfm",
    "epochs": 200,
    "patience": 20,
    "batch_size": 512,
    "learning_rate": 1e-3,
}


#: Defaults of the particle model (`ParticleFlowMatching` keywords) where they differ from its
#: own: pT_rel is modelled as log pT_rel, so generated constituents never have pT_rel <= 0 (with
#: the paper's plain standardisation a short training gave 22% negative pT_rel).
PARTICLE_MODEL_DEFAULTS: dict[str, Any] = {"log_features": (0,)}


def _jet_condition(jets: np.ndarray) -> np.ndarray:
    """Particle-model condition (N, 3): log pT, eta, log(1 + m / GeV) of jets (N, 5)."""
    return np.column_stack([np.log(jets[:, 0]), jets[:, 1], np.log1p(jets[:, 3])])


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

    Fitted attributes: ``jet_model_``, ``particle_model_``, ``max_constituents_`` (M of the
    training clouds), ``n_train_`` (sideband events).
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
    ) -> None:
        self.jet_model = jet_model
        self.particle_model = particle_model
        self.device = device
        self.seed = seed
        self.progress = progress
        self.checkpoint_dir = checkpoint_dir

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (plain values)."""
        return {
            "jet_model": dict(self.jet_model or {}),
            "particle_model": dict(self.particle_model or {}),
            "device": self.device,
            "seed": self.seed,
            "progress": self.progress,
            "checkpoint_dir": None if self.checkpoint_dir is None else str(self.checkpoint_dir),
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
        return obj
