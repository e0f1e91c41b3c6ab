"""LHCO-like events from Pythia 8: QCD dijets and W' -> X Y -> qqqq, with the LHCO dijet trigger.

The recipe follows the LHC Olympics 2020 R&D dataset (Kasieczka, Nachman, Shih et al.,
arXiv:2101.08320) without its Delphes detector simulation: pp collisions at 13 TeV, Pythia 8 with
the Monash tune, multi-parton interactions and hadronisation on; every visible final-state particle
(neutrinos dropped) with |eta| < 2.5 is kept as a massless (pt [GeV], eta, phi) triplet. An event is
accepted when an anti-kT R = 1.0 jet has pT > 1.2 TeV and |eta| < 2.5 (clustering by
`sideband.features.substructure.cluster_dijets`).

pythia8mc (``pip install 'sideband[generator]'``) is imported only when events are generated.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import platform
import queue
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import awkward as ak
import numpy as np

from sideband.errors import InputError

__all__ = [
    "GeneratedEvents",
    "concatenate_generated",
    "generate_events",
    "pythia_settings",
    "write_generated",
]

log = logging.getLogger(__name__)

#: PDG ids of the invisible final-state particles (neutrinos) dropped before clustering.
_INVISIBLE_IDS = (12, 14, 16)
#: Largest seed Pythia accepts (``Random:seed`` runs from 0 to 900 000 000).
_MAX_PYTHIA_SEED = 900_000_000
#: Pythia events generated per call of ``Pythia.nextBatch`` (and per trigger clustering step).
_BATCH = 50
#: Particles are kept in |eta| < this (the LHCO acceptance).
_PARTICLE_ETA_MAX = 2.5
#: Anti-kT radius of the trigger and feature jets.
_JET_R = 1.0


@dataclass(frozen=True, eq=False)
class GeneratedEvents:
    """Accepted (triggered) events of one `generate_events` call.

    Attributes
    ----------
    particles
        Jagged awkward array of records ``pt`` [GeV], ``eta``, ``phi``, shape (N, var): visible
        final-state particles with |eta| < 2.5, massless, in decreasing pT within each event.
    jets
        The dict of `sideband.features.substructure.cluster_dijets` for these events: float64
        arrays of shape (N,) such as ``pxj1``, ``mj1`` [GeV], ``tau21``-inputs ``tau1j1``...;
        j1 is the pT-leading jet.
    label
        int8 array (N,): 1 for signal (W' -> X Y), 0 for QCD.
    n_tried
        Events Pythia generated to get these N accepted ones (so N / n_tried is the trigger
        efficiency).
    settings
        Every Pythia setting (``settings["pythia"]``), the seeds (``seed``, ``worker_seeds``), the
        trigger and the versions used.

    Instances compare by identity (the arrays have no single truth value).
    """

    particles: ak.Array
    jets: Mapping[str, np.ndarray]
    label: np.ndarray
    n_tried: int
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.label)

    @property
    def efficiency(self) -> float:
        """Fraction of generated events that passed the trigger."""
        return len(self) / self.n_tried if self.n_tried else float("nan")


def pythia_settings(
    process: Literal["qcd", "signal"],
    *,
    pthat_min_gev: float = 1000.0,
    mass_wprime_gev: float = 3500.0,
    mass_x_gev: float = 500.0,
    mass_y_gev: float = 100.0,
) -> dict[str, str]:
    """Pythia settings (name -> value, as given to ``readString``) of one process, seed excluded.

    QCD: all 2 -> 2 hard QCD processes with pT-hat > `pthat_min_gev`. Signal: ``ffbar -> W'``
    with W' forced to W Z, the W (the LHCO "X") and Z (the "Y") given the masses `mass_x_gev` and
    `mass_y_gev` and forced to decay to light quarks (d, u, s, c, b; no top).
    """
    _check_process(process)
    common = {
        "Beams:idA": "2212",
        "Beams:idB": "2212",
        "Beams:eCM": "13000.",
        "Tune:pp": "14",  # Monash 2013
        "PartonLevel:MPI": "on",
        "PartonLevel:ISR": "on",
        "PartonLevel:FSR": "on",
        "HadronLevel:all": "on",
        "Print:quiet": "on",
        "Next:numberCount": "0",
        "Init:showChangedSettings": "off",
        "Init:showChangedParticleData": "off",
        "Init:showProcesses": "off",
    }
    if process == "qcd":
        return {**common, "HardQCD:all": "on", "PhaseSpace:pTHatMin": f"{pthat_min_gev:.6g}"}
    return {
        **common,
        "NewGaugeBoson:ffbar2Wprime": "on",
        "Wprime:coup2WZ": "1.",
        "34:m0": f"{mass_wprime_gev:.6g}",
        "24:m0": f"{mass_x_gev:.6g}",
        "23:m0": f"{mass_y_gev:.6g}",
        "34:onMode": "off",
        "34:onIfAll": "23 24",
        "24:onMode": "off",
        "24:onIfAny": "1 2 3 4 5",
        "24:offIfAny": "6",
        "23:onMode": "off",
        "23:onIfAny": "1 2 3 4 5",
    }


def generate_events(
    process: Literal["qcd", "signal"],
    n_events: int,
    *,
    seed: int,
    workers: int | None = None,
    pthat_min_gev: float = 1000.0,
    mass_wprime_gev: float = 3500.0,
    mass_x_gev: float = 500.0,
    mass_y_gev: float = 100.0,
    trigger_pt_gev: float = 1200.0,
    trigger_eta: float = 2.5,
    progress: bool = True,
) -> GeneratedEvents:
    """Generate `n_events` accepted (triggered) events with Pythia 8.

    pp at 13 TeV, Monash tune, MPI and hadronisation on, no detector simulation: all visible
    final-state particles (no neutrinos) with |eta| < 2.5, treated as massless (pt [GeV], eta,
    phi). ``process="qcd"``: ``HardQCD:all = on``, ``PhaseSpace:pTHatMin = pthat_min_gev``.
    ``process="signal"``: W'(`mass_wprime_gev`) -> X(`mass_x_gev`) Y(`mass_y_gev`) -> qqqq, made
    as ``NewGaugeBoson:ffbar2Wprime`` with W' -> W Z and the W, Z masses reset (see
    `pythia_settings`).

    Trigger: the event has two anti-kT R = 1.0 jets (pT > 20 GeV) and one of the two pT-leading
    jets has pT > `trigger_pt_gev` and |eta| < `trigger_eta`. Events are generated in batches of
    50 until `n_events` pass; ``n_tried`` counts the events up to the last accepted one.

    The work is split over `workers` processes (default: the CPU cores available), worker ``i``
    making ``n_events // workers`` (+1 for the first ``n_events % workers``) events with its own
    Pythia seed from ``numpy.random.SeedSequence(seed).spawn(workers)[i]``: the result is
    deterministic for a given (seed, workers, n_events) and the rows are in worker order.
    Pythia's printout is silenced; `progress` shows a tqdm bar of accepted events.

    Cost (one core, clustering included): 15-30 ms of CPU per generated QCD event (41% accepted
    at pT-hat > 1 TeV) and 12-20 ms per signal event (62% accepted).

    Returns
    -------
    GeneratedEvents
        N = `n_events` rows: particles (N, var) of (pt [GeV], eta, phi), the two leading jets
        (arrays of shape (N,), GeV), labels (1 signal, 0 QCD), ``n_tried`` and the settings.

    Raises
    ------
    InputError
        Bad arguments, or pythia8mc not installed (``pip install 'sideband[generator]'``).
    """
    _check_process(process)
    if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events < 1:
        msg = f"n_events must be a positive integer (accepted events); got {n_events!r}"
        raise InputError(msg)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        msg = f"seed must be a non-negative integer; got {seed!r}"
        raise InputError(msg)
    if workers is None:
        workers = _available_cores()
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        msg = (
            f"workers must be a positive integer (processes) or None for all cores; got {workers!r}"
        )
        raise InputError(msg)
    _check_positive(
        pthat_min_gev=pthat_min_gev,
        mass_wprime_gev=mass_wprime_gev,
        mass_x_gev=mass_x_gev,
        mass_y_gev=mass_y_gev,
        trigger_pt_gev=trigger_pt_gev,
        trigger_eta=trigger_eta,
    )
    if process == "signal" and mass_x_gev + mass_y_gev >= mass_wprime_gev:
        msg = (
            f"W' -> X Y needs m_X + m_Y < m_W': got {mass_x_gev} + {mass_y_gev} >= "
            f"{mass_wprime_gev} GeV. Masses are in GeV."
        )
        raise InputError(msg)
    pythia_version = _require_pythia()

    workers = int(min(workers, n_events))
    pythia = pythia_settings(
        process,
        pthat_min_gev=pthat_min_gev,
        mass_wprime_gev=mass_wprime_gev,
        mass_x_gev=mass_x_gev,
        mass_y_gev=mass_y_gev,
    )
    worker_seeds = [
        int(child.generate_state(1, dtype=np.uint64)[0] % _MAX_PYTHIA_SEED) + 1
        for child in np.random.SeedSequence(int(seed)).spawn(workers)
    ]
    quotas = [n_events // workers + (i < n_events % workers) for i in range(workers)]
    trigger = {"pt_gev": float(trigger_pt_gev), "abs_eta": float(trigger_eta)}
    tasks = [(pythia, s, q, trigger) for s, q in zip(worker_seeds, quotas, strict=True)]

    start = time.perf_counter()
    results = _run_tasks(tasks, n_events=n_events, progress=progress, desc=f"pythia {process}")
    wall = time.perf_counter() - start

    counts = np.concatenate([r["counts"] for r in results])
    flat = {k: np.concatenate([r[k] for r in results]) for k in ("pt", "eta", "phi")}
    particles = ak.unflatten(ak.zip(flat), counts)
    jet_keys = results[0]["jets"].keys()
    jets = {k: np.concatenate([r["jets"][k] for r in results]) for k in jet_keys}
    n_tried = int(sum(r["n_tried"] for r in results))
    settings: dict[str, Any] = {
        "process": process,
        "n_events": int(n_events),
        "seed": int(seed),
        "workers": workers,
        "worker_seeds": worker_seeds,
        "worker_events": quotas,
        "pythia": pythia,
        "trigger": {**trigger, "jet": f"anti-kT R={_JET_R}", "min_jet_pt_gev": 20.0},
        "particles": {
            "abs_eta_max": _PARTICLE_ETA_MAX,
            "dropped_ids": list(_INVISIBLE_IDS),
            "massless": True,
        },
        "n_tried": n_tried,
        "cpu_seconds": float(sum(r["cpu_seconds"] for r in results)),
        "wall_seconds": wall,
        "versions": _versions(pythia_version),
    }
    label = np.full(len(counts), 1 if process == "signal" else 0, dtype=np.int8)
    log.info(
        "generated %d %s events (%d tried, efficiency %.3f) in %.1f s",
        len(counts),
        process,
        n_tried,
        len(counts) / n_tried,
        wall,
    )
    return GeneratedEvents(particles, jets, label, n_tried, settings)


def concatenate_generated(parts: list[GeneratedEvents]) -> GeneratedEvents:
    """Stack several `GeneratedEvents` in order (labels kept); ``settings`` lists each part's."""
    if not parts:
        msg = "cannot concatenate an empty list of GeneratedEvents"
        raise InputError(msg)
    keys = list(parts[0].jets)
    return GeneratedEvents(
        ak.concatenate([p.particles for p in parts]),
        {k: np.concatenate([p.jets[k] for p in parts]) for k in keys},
        np.concatenate([p.label for p in parts]),
        int(sum(p.n_tried for p in parts)),
        {"parts": [dict(p.settings) for p in parts]},
    )


def write_generated(
    out_dir: str | os.PathLike[str],
    events: GeneratedEvents,
    *,
    stem: str,
    max_particles: int = 700,
) -> dict[str, Path]:
    """Write events in the two LHCO formats: ``<stem>_raw.h5`` and ``<stem>.features.h5``.

    The raw file holds up to `max_particles` particles per event (the hardest, zero padded; the
    LHCO files use 700) as (pt [GeV], eta, phi) plus the label; the features file holds the jet
    four-vectors, masses and N-subjettiness of the two leading jets plus the label. Both go through
    `sideband.events.write_lhco_raw` / `write_lhco_features`. Returns ``{"raw": path,
    "features": path}``.
    """
    from sideband.events import write_lhco_features, write_lhco_raw

    if not stem or "/" in stem or os.sep in stem:
        msg = f"stem must be a plain file-name prefix such as 'qcd'; got {stem!r}"
        raise InputError(msg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"raw": out / f"{stem}_raw.h5", "features": out / f"{stem}.features.h5"}
    particles = events.particles
    write_lhco_raw(
        paths["raw"],
        particles.pt,
        particles.eta,
        particles.phi,
        events.label,
        max_particles=max_particles,
    )
    write_lhco_features(paths["features"], events.jets, events.label)
    log.info("wrote %d events to %s and %s", len(events), paths["raw"], paths["features"])
    return paths


# --------------------------------------------------------------------------------------------
# workers


def _run_tasks(
    tasks: list[tuple[dict[str, str], int, int, dict[str, float]]],
    *,
    n_events: int,
    progress: bool,
    desc: str,
) -> list[dict[str, Any]]:
    """Run the worker tasks (in this process when there is one) with a tqdm bar."""
    from tqdm.auto import tqdm

    with tqdm(total=n_events, desc=desc, unit="evt", disable=not progress) as bar:
        if len(tasks) == 1:
            return [_worker(*tasks[0], progress=bar.update)]
        ctx = multiprocessing.get_context("spawn")
        with ctx.Manager() as manager:
            updates = manager.Queue()
            with ProcessPoolExecutor(max_workers=len(tasks), mp_context=ctx) as pool:
                futures = [pool.submit(_worker, *t, progress=updates) for t in tasks]
                while not all(f.done() for f in futures):
                    with contextlib.suppress(queue.Empty):
                        bar.update(updates.get(timeout=0.5))
                results = [f.result() for f in futures]
            while not updates.empty():
                bar.update(updates.get())
        return results


def _worker(
    pythia_cfg: Mapping[str, str],
    pythia_seed: int,
    n_accept: int,
    trigger: Mapping[str, float],
    *,
    progress: Any = None,
) -> dict[str, Any]:
    """Generate events with one Pythia instance until `n_accept` pass the trigger."""
    import pythia8mc

    from sideband.features.substructure import cluster_dijets

    cpu0 = time.process_time()
    pythia = pythia8mc.Pythia("", False)
    for name, value in {
        **pythia_cfg,
        "Random:setSeed": "on",
        "Random:seed": str(pythia_seed),
    }.items():
        if not pythia.readString(f"{name} = {value}"):
            msg = f"Pythia rejected the setting '{name} = {value}'; check its name and value"
            raise InputError(msg)
    if not pythia.init():
        msg = f"Pythia failed to initialise with settings {dict(pythia_cfg)}"
        raise InputError(msg)

    kept: list[ak.Array] = []
    kept_jets: list[dict[str, np.ndarray]] = []
    n_kept = 0
    n_tried = 0
    while n_kept < n_accept:
        batch = pythia.nextBatch(_BATCH)
        if len(batch) == 0:
            msg = "Pythia returned no events in a batch of 50 (every event failed)"
            raise InputError(msg)
        particles = _visible_particles(batch.prt)
        jets = cluster_dijets(particles, r=_JET_R, min_jet_pt_gev=20.0)
        accept = _trigger(jets, trigger["pt_gev"], trigger["abs_eta"])
        idx = np.flatnonzero(accept)[: n_accept - n_kept]
        if len(idx) == n_accept - n_kept:  # the quota fills in this batch: stop counting there
            n_tried += int(idx[-1]) + 1
        else:
            n_tried += len(batch)
        if len(idx):
            kept.append(particles[idx])
            kept_jets.append({k: np.asarray(v)[idx] for k, v in jets.items()})
            n_kept += len(idx)
            if callable(progress):
                progress(len(idx))
            elif progress is not None:
                progress.put(len(idx))

    particles = ak.concatenate(kept) if len(kept) > 1 else kept[0]
    keys = kept_jets[0].keys()
    return {
        "counts": ak.to_numpy(ak.num(particles)).astype(np.int64),
        "pt": ak.to_numpy(ak.flatten(particles.pt)).astype(np.float64),
        "eta": ak.to_numpy(ak.flatten(particles.eta)).astype(np.float64),
        "phi": ak.to_numpy(ak.flatten(particles.phi)).astype(np.float64),
        "jets": {k: np.concatenate([j[k] for j in kept_jets]) for k in keys},
        "n_tried": n_tried,
        "cpu_seconds": time.process_time() - cpu0,
    }


def _visible_particles(prt: ak.Array) -> ak.Array:
    """Final-state, visible particles with |eta| < 2.5 as massless (pt, eta, phi), pT-ordered.

    `prt` is the ``prt`` field of ``Pythia.nextBatch``: (n_events, var) Pythia particle records.
    """
    visible = (prt.status > 0) & ~_isin(abs(prt.id), _INVISIBLE_IDS)
    p = prt.p[visible]
    px, py, pz = p.px, p.py, p.pz
    pt = np.hypot(px, py)
    good = pt > 0.0
    px, py, pz, pt = px[good], py[good], pz[good], pt[good]
    eta = np.arcsinh(pz / pt)
    phi = np.arctan2(py, px)
    inside = abs(eta) < _PARTICLE_ETA_MAX
    pt, eta, phi = pt[inside], eta[inside], phi[inside]
    order = ak.argsort(pt, axis=1, ascending=False, stable=True)
    out = ak.zip({"pt": pt[order], "eta": eta[order], "phi": phi[order]})
    return ak.to_packed(ak.without_parameters(out))


def _isin(values: ak.Array, ids: tuple[int, ...]) -> ak.Array:
    out = values == ids[0]
    for i in ids[1:]:
        out = out | (values == i)
    return out


def _trigger(jets: Mapping[str, np.ndarray], pt_gev: float, abs_eta: float) -> np.ndarray:
    """Boolean (N,): two jets, and one of the two leading ones with pT > `pt_gev`, |eta| < cut."""
    has = np.asarray(jets["has_dijet"], dtype=bool)
    with np.errstate(invalid="ignore"):
        j1 = (np.asarray(jets["ptj1"]) > pt_gev) & (np.abs(np.asarray(jets["etaj1"])) < abs_eta)
        j2 = (np.asarray(jets["ptj2"]) > pt_gev) & (np.abs(np.asarray(jets["etaj2"])) < abs_eta)
    return has & (j1 | j2)


# --------------------------------------------------------------------------------------------
# checks and provenance


def _check_process(process: str) -> None:
    if process not in ("qcd", "signal"):
        msg = f"process must be 'qcd' or 'signal' (W' -> X Y -> qqqq); got {process!r}"
        raise InputError(msg)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not np.isfinite(value) or value <= 0:
            msg = f"{name} must be a positive finite number (GeV for masses and pT); got {value!r}"
            raise InputError(msg)


def _require_pythia() -> str:
    """Import pythia8mc (raising a helpful InputError if absent) and return its version."""
    try:
        import pythia8mc  # noqa: F401
    except ImportError as err:
        msg = (
            "generating events needs Pythia 8 from the pythia8mc package, which is not installed; "
            "install it with `pip install 'sideband[generator]'` (pythia8mc==8.317.2)"
        )
        raise InputError(msg) from err
    try:
        return metadata.version("pythia8mc")
    except metadata.PackageNotFoundError:
        return "unknown"


def _versions(pythia_version: str) -> dict[str, str]:
    out = {"python": platform.python_version(), "pythia8mc": pythia_version}
    for dist in ("fastjet", "awkward", "numpy", "sideband"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
