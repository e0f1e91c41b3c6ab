"""Stateless coffea processors: events -> two leading jets -> dijet features (and point clouds).

Two processors, for two kinds of input; both return the same accumulator and both run unchanged
inside a user's own coffea ``Runner`` (iterative, futures or Dask executor) or inside a user's own
processor (call their ``process`` and add your own keys):

- `DijetFeatureProcessor`: flat jagged particle branches named by the caller (``part_pt``,
  ``part_eta``, ``part_phi`` as written by `sideband.events.write_particles`, or any other
  names), events read with coffea's ``BaseSchema``; particles are clustered into anti-kT jets
  (`sideband.features.substructure.cluster_dijets`). `sideband.features.run.extract_features`
  uses it.
- `NanoAODDijetProcessor`: NanoAOD-style events read with coffea's ``NanoAODSchema`` (or
  ``PFNanoAODSchema``). ``jets="FatJet"`` takes the two pT-leading stored jets as they are (pt,
  eta, phi, mass, tau1, tau2; the features of `sideband.events.root.read_fatjet_features`, no
  reclustering); ``particles="PFCands"`` reclusters a candidate collection with anti-kT, as
  `DijetFeatureProcessor` does with flat branches.

`process` returns ``{dataset: acc}``; coffea's ``accumulate`` merges these across chunks (and
with a user's own dicts, ``hist.Hist``, lists and numbers): lists concatenate, counts add,
histograms add. ``acc`` holds, per chunk, one array per list key (``event_id``, ``label``, the
`sideband.records.FEATURE_COLUMNS`, the event identifiers ``run``, ``luminosityBlock``,
``event`` where the events have them, ``chunks`` describing the chunk and, with point clouds,
``point_clouds``), so that element i of every list belongs to the same chunk after any merge.
`collect_features` turns the merged accumulator into one `sideband.records.FeatureTable` per
dataset (sorted by ``event_id``, identifiers in ``FeatureTable.ids``) and `collect_point_clouds`
into one `sideband.records.PointCloudTable` per dataset.

``event_id`` is the event's entry number in its file (``entrystart`` of the chunk + position),
or the flat processor's ``event_id_branch`` where the events have it. When a dataset holds
several files, `collect_features` adds to the entry numbers of each file the entries of the
files before it (in the order of the ``fileset`` passed to it, else by file name), so ids stay
unique within the dataset; identifiers taken from a branch are left as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import hist
import numpy as np
from coffea import processor

from sideband.errors import ConfigError, InputError
from sideband.features.constituents import _point_clouds, check_max_constituents
from sideband.features.substructure import (
    _jet_columns,
    _leading_jets,
    _LeadingJets,
    check_clustering_options,
    dijet_features,
)
from sideband.records import EVENT_IDENTIFIERS, FEATURE_COLUMNS, FeatureTable, PointCloudTable

__all__ = [
    "DijetFeatureProcessor",
    "NanoAODDijetProcessor",
    "collect_features",
    "collect_point_clouds",
]

log = logging.getLogger(__name__)

#: Keys every accumulator of these processors holds (how `collect_features` tells them apart
#: from a user's own entries of the same output).
_ACC_KEYS = frozenset({"event_id", "label", "n_events", "n_fewer_than_two_jets", *FEATURE_COLUMNS})
_INT64_MAX = np.iinfo(np.int64).max


class _DijetProcessorBase(processor.ProcessorABC):  # type: ignore[misc]
    """Settings and accumulator shared by the processors (histogram, output layout)."""

    mjj_bins: tuple[int, float, float]
    point_clouds: int | None

    def _set_common(self, mjj_bins: tuple[int, float, float], point_clouds: int | None) -> None:
        if point_clouds is not None:
            point_clouds = check_max_constituents(point_clouds)
        bins, low, high = mjj_bins
        if int(bins) < 1 or not low < high:
            msg = f"mjj_bins={mjj_bins!r} must be (bins >= 1, low < high) in GeV"
            raise InputError(msg)
        self.mjj_bins = (int(bins), float(low), float(high))
        self.point_clouds = point_clouds

    def make_histogram(self) -> hist.Hist:
        """Empty m_JJ histogram [GeV] with the processor's binning."""
        bins, low, high = self.mjj_bins
        return hist.Hist(
            hist.axis.Regular(bins, low, high, name="mjj", label=r"$m_{JJ}$ [GeV]"),
            storage=hist.storage.Double(),
        )

    def postprocess(self, accumulator: Any) -> Any:
        """Nothing to do: the accumulator is returned unchanged."""
        return accumulator

    def _output(
        self,
        events: Any,
        *,
        features: Mapping[str, np.ndarray],
        keep: np.ndarray,
        event_id: np.ndarray,
        id_from_entry: bool,
        label: np.ndarray,
        clouds: Mapping[str, np.ndarray] | None,
    ) -> dict[str, dict[str, Any]]:
        """``{dataset: acc}`` of one chunk; `features` are rows of the kept events only."""
        metadata = _metadata(events)
        dataset = str(metadata.get("dataset", "events"))
        n = len(keep)
        ids = _event_identifiers(events, metadata)
        histogram = self.make_histogram()
        histogram.fill(mjj=features["mjj"])
        start = int(metadata.get("entrystart", 0))
        acc: dict[str, Any] = {
            "event_id": [event_id[keep]],
            "label": [label[keep]],
            **{name: [np.asarray(features[name], dtype=np.float64)] for name in FEATURE_COLUMNS},
            **{name: [values[keep]] for name, values in ids.items()},
            "chunks": [
                {
                    "file": str(metadata.get("filename", "")),
                    "entrystart": start,
                    "entrystop": int(metadata.get("entrystop", start + n)),
                    "n_kept": int(keep.sum()),
                    "id_from_entry": bool(id_from_entry),
                }
            ],
            "n_events": n,
            "n_fewer_than_two_jets": int(n - keep.sum()),
            "mjj_hist": histogram,
        }
        if clouds is not None:
            acc["point_clouds"] = [
                PointCloudTable(
                    clouds["constituents"][keep],
                    clouds["mask"][keep],
                    clouds["jets"][keep],
                    clouds["mjj"][keep],
                    event_id[keep],
                    None if (label[keep] < 0).any() else label[keep],
                    source=str(metadata.get("filename", dataset)),
                )
            ]
        return {dataset: acc}


def _metadata(events: Any) -> dict[str, Any]:
    return dict(getattr(events, "metadata", None) or {})


def _where(metadata: Mapping[str, Any]) -> str:
    return f"dataset {metadata.get('dataset', 'events')!r} (file {metadata.get('filename', '?')})"


def _entry_ids(metadata: Mapping[str, Any], n: int) -> np.ndarray:
    start = int(metadata.get("entrystart", 0))
    return np.arange(start, start + n, dtype=np.int64)


def _event_identifiers(events: Any, metadata: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """int64 (N,) ``run``, ``luminosityBlock``, ``event`` of the events that have them."""
    fields = set(ak.fields(events))
    out: dict[str, np.ndarray] = {}
    for name in EVENT_IDENTIFIERS:
        if name not in fields:
            continue
        values = np.asarray(ak.to_numpy(events[name]))
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            msg = (
                f"{_where(metadata)}: field {name!r} is {values.dtype} of shape {values.shape}, "
                "not one integer per event; rename the field (it is read as an event identifier)"
            )
            raise InputError(msg)
        if values.dtype == np.uint64 and values.size and int(values.max()) > _INT64_MAX:
            msg = (
                f"{_where(metadata)}: {name!r} holds values above 2**63 - 1; cannot store as int64"
            )
            raise InputError(msg)
        out[name] = values.astype(np.int64)
    return out


def _labels(events: Any, name: str | None, n: int) -> np.ndarray:
    if name is not None and name in set(ak.fields(events)):
        return np.asarray(ak.to_numpy(events[name])).astype(np.int8)
    return np.full(n, -1, dtype=np.int8)


def _recluster(
    particles: ak.Array, *, r: float, min_jet_pt_gev: float, axes: str, point_clouds: int | None
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray] | None]:
    """(features of all N events, mask of events with two jets, point clouds or None)."""
    check_clustering_options(r=r, min_jet_pt_gev=min_jet_pt_gev, axes=axes)
    leading = _leading_jets(particles, r=r, min_jet_pt_gev=min_jet_pt_gev)
    jets = _jet_columns(leading, r=r, axes=axes)
    clouds = None if point_clouds is None else _point_clouds(leading, point_clouds)
    return dijet_features(jets), np.asarray(jets["has_dijet"]), clouds


class DijetFeatureProcessor(_DijetProcessorBase):
    """Cluster particles into anti-kT jets and compute the dijet features of each event.

    Reads flat jagged particle branches by name (coffea ``BaseSchema``). For NanoAOD-style
    events (``NanoAODSchema``: collections such as ``events.PFCands``) use
    `NanoAODDijetProcessor`.

    Stateless: the constructor only stores settings, so one instance can be shipped to any
    executor (iterative, futures, dask).

    Parameters
    ----------
    pt_branch, eta_branch, phi_branch
        Names of the jagged particle branches: pT [GeV], pseudorapidity, azimuth.
    mass_branch
        Jagged particle mass branch [GeV], used where the events have it (else massless).
    event_id_branch
        Branch with the event's identifier (int); where absent, the row index in the file
        (``entrystart`` of the chunk + position) is used.
    label_branch
        Branch with the truth label (1 signal, 0 background, -1 unknown); where absent, -1.
    r
        Anti-kT jet radius.
    min_jet_pt_gev
        Jets below this pT [GeV] are not counted.
    axes
        N-subjettiness axes (`sideband.features.substructure.NSUBJETTINESS_AXES`).
    mjj_bins
        ``(bins, low, high)`` [GeV] of the m_JJ histogram in the accumulator.
    point_clouds
        If an integer M, also return the constituent point clouds of the two leading jets
        (`sideband.features.constituents.jet_point_clouds`, M slots per jet) from the same
        clustering; None (default): features only.
    """

    def __init__(
        self,
        *,
        pt_branch: str = "part_pt",
        eta_branch: str = "part_eta",
        phi_branch: str = "part_phi",
        mass_branch: str | None = "part_mass",
        event_id_branch: str = "event_id",
        label_branch: str = "label",
        r: float = 1.0,
        min_jet_pt_gev: float = 20.0,
        axes: str = "KT_Axes",
        mjj_bins: tuple[int, float, float] = (130, 1500.0, 8000.0),
        point_clouds: int | None = None,
    ) -> None:
        check_clustering_options(r=r, min_jet_pt_gev=min_jet_pt_gev, axes=axes)
        self._set_common(mjj_bins, point_clouds)
        self.pt_branch = pt_branch
        self.eta_branch = eta_branch
        self.phi_branch = phi_branch
        self.mass_branch = mass_branch
        self.event_id_branch = event_id_branch
        self.label_branch = label_branch
        self.r = float(r)
        self.min_jet_pt_gev = float(min_jet_pt_gev)
        self.axes = axes

    def __repr__(self) -> str:
        return (
            f"DijetFeatureProcessor(pt_branch={self.pt_branch!r}, eta_branch={self.eta_branch!r}, "
            f"phi_branch={self.phi_branch!r}, r={self.r}, min_jet_pt_gev={self.min_jet_pt_gev}, "
            f"axes={self.axes!r}, point_clouds={self.point_clouds!r})"
        )

    def process(self, events: Any) -> dict[str, dict[str, Any]]:
        """Features of one chunk of events.

        Parameters
        ----------
        events
            Awkward array (e.g. coffea NanoEvents with ``BaseSchema``) of N events with the
            particle branches; ``events.metadata`` may hold ``dataset``, ``filename`` and
            ``entrystart``.

        Returns
        -------
        ``{dataset: acc}`` where ``acc`` holds ``"event_id"``, ``"label"``, one entry per name
        of `FEATURE_COLUMNS` and one per event identifier the events have (``run``,
        ``luminosityBlock``, ``event``; int64), each a one-element list with a numpy array of
        the kept events (two jets); ``"chunks"``, a one-element list describing the chunk
        (file, entry range, kept events); ``"n_events"`` (events seen),
        ``"n_fewer_than_two_jets"`` (events dropped) and ``"mjj_hist"``, a ``hist.Hist`` of
        the kept events' m_JJ [GeV]. With ``point_clouds`` set, also ``"point_clouds"``: a
        one-element list with the `sideband.records.PointCloudTable` of the kept events.
        """
        metadata = _metadata(events)
        fields = set(ak.fields(events))
        names = {"pt": self.pt_branch, "eta": self.eta_branch, "phi": self.phi_branch}
        missing = {k: v for k, v in names.items() if v not in fields}
        if missing:
            msg = (
                f"particle branch(es) {sorted(missing.values())} not found in "
                f"{_where(metadata)}; available: {sorted(fields)}. Set pt_branch / eta_branch "
                "/ phi_branch of DijetFeatureProcessor to the file's names (NanoAOD "
                "collections read with NanoAODSchema: use NanoAODDijetProcessor)."
            )
            raise InputError(msg)
        n = len(events)
        if self.mass_branch is not None and self.mass_branch in fields:
            names["mass"] = self.mass_branch  # massive particles [GeV]
        particles = ak.zip({k: events[v] for k, v in names.items()})
        features, keep, clouds = _recluster(
            particles,
            r=self.r,
            min_jet_pt_gev=self.min_jet_pt_gev,
            axes=self.axes,
            point_clouds=self.point_clouds,
        )
        from_branch = self.event_id_branch in fields
        event_id = (
            np.asarray(ak.to_numpy(events[self.event_id_branch]), dtype=np.int64)
            if from_branch
            else _entry_ids(metadata, n)
        )
        return self._output(
            events,
            features={k: v[keep] for k, v in features.items()},
            keep=keep,
            event_id=event_id,
            id_from_entry=not from_branch,
            label=_labels(events, self.label_branch, n),
            clouds=clouds,
        )


#: Per-jet fields `NanoAODDijetProcessor` reads from a stored jet collection (``jets=``).
_JET_FIELDS: tuple[str, ...] = ("pt", "eta", "phi", "mass", "tau1", "tau2")
_CANDIDATE_FIELDS: tuple[str, ...] = ("pt", "eta", "phi", "mass")


class NanoAODDijetProcessor(_DijetProcessorBase):
    """Dijet features (and point clouds) of NanoAOD-style events (coffea ``NanoAODSchema``).

    Two modes, chosen by which collection is named:

    - ``jets="FatJet"`` (the default when neither is given): the two pT-leading jets of a stored
      jet collection, **without reclustering**. Reads ``events.<jets>.pt, .eta, .phi, .mass``
      [GeV], ``.tau1, .tau2``; the features are those of
      `sideband.events.root.read_fatjet_features` (same code: m_JJ of the two four-vectors,
      lighter jet mass, mass difference, tau21 = tau2 / (tau1 + 1e-5) of the lighter and the
      heavier jet, Delta R). All stored jets count (NanoAOD's own selection, e.g. AK8 PUPPI
      pT > 170 GeV, applies). Point clouds come from PFNano's association table
      ``events.<link>`` (default ``<jets><candidates>``, e.g. ``FatJetPFCands``) with the local
      indices ``jetIdx`` and ``pFCandsIdx`` into ``events.<candidates>`` (``PFCands``), as in
      `sideband.events.root.iter_fatjet_constituents`. The local indices exist under both
      ``NanoAODSchema`` and ``PFNanoAODSchema``, and the table need not be grouped by jet
      (``FatJet.constituents`` of ``PFNanoAODSchema`` assumes it is and needs
      ``FatJet_nConstituents``).
    - ``particles="PFCands"``: recluster the candidates ``events.<particles>.pt, .eta, .phi,
      .mass`` [GeV] with anti-kT (`r`, `min_jet_pt_gev`, `axes`), exactly as
      `DijetFeatureProcessor` clusters flat branches; point clouds from that clustering.

    Event identifiers ``run``, ``luminosityBlock``, ``event`` (NanoAOD's, int64) go into the
    accumulator and `collect_features` puts them into ``FeatureTable.ids``; ``event_id`` is the
    entry number in the file. Stateless: ship one instance to any executor.

    Parameters
    ----------
    jets
        Stored jet collection (``"FatJet"``; e.g. ``"FatJetAK15"`` in PFNano with AK15 jets).
    particles
        Candidate collection to recluster (``"PFCands"``; JME PFNano: ``"PFCand"``). Give
        `jets` or `particles`, not both.
    candidates, link, jet_index, candidate_index
        For point clouds with `jets`: the candidate collection (``"PFCands"``), the
        association collection (default ``jets + candidates``) and its index fields
        (``"jetIdx"``; default ``"pFCandsIdx"`` for ``PFCands``, else ``<candidates>Idx``).
    weight
        Optional candidate field (e.g. ``"puppiWeight"``) scaling each candidate's pT and mass,
        in both modes (PUPPI jets are built from weighted candidates). Default: unweighted.
    label
        Event field with the truth label (1 signal, 0 background, -1 unknown); where absent,
        -1 (an unlabelled table).
    r, min_jet_pt_gev, axes
        Anti-kT radius, jet pT threshold [GeV] and N-subjettiness axes of `particles` mode
        (defaults 1.0, 20.0, ``"KT_Axes"``); not allowed with `jets`, whose stored jets and
        taus are used as they are.
    mjj_bins
        ``(bins, low, high)`` [GeV] of the m_JJ histogram in the accumulator.
    point_clouds
        If an integer M, also return the point clouds of the two leading jets (M slots per
        jet, `sideband.records.PointCloudTable`).
    """

    def __init__(
        self,
        *,
        jets: str | None = None,
        particles: str | None = None,
        candidates: str = "PFCands",
        link: str | None = None,
        jet_index: str = "jetIdx",
        candidate_index: str | None = None,
        weight: str | None = None,
        label: str | None = "label",
        r: float | None = None,
        min_jet_pt_gev: float | None = None,
        axes: str | None = None,
        mjj_bins: tuple[int, float, float] = (130, 1500.0, 8000.0),
        point_clouds: int | None = None,
    ) -> None:
        if jets is not None and particles is not None:
            msg = (
                f"NanoAODDijetProcessor got jets={jets!r} and particles={particles!r}; give "
                "one: jets= takes the stored jets, particles= reclusters the candidates"
            )
            raise ConfigError(msg)
        if jets is None and particles is None:
            jets = "FatJet"
        for option, value in (
            ("jets", jets),
            ("particles", particles),
            ("candidates", candidates),
            ("link", link),
            ("jet_index", jet_index),
            ("candidate_index", candidate_index),
            ("weight", weight),
            ("label", label),
        ):
            if value is not None and (not isinstance(value, str) or not value):
                msg = f"{option}= must be a collection or field name (a non-empty string); got {value!r}"
                raise ConfigError(msg)
        clustering = {"r": r, "min_jet_pt_gev": min_jet_pt_gev, "axes": axes}
        if jets is not None:
            given = [k for k, v in clustering.items() if v is not None]
            if given:
                msg = (
                    f"{', '.join(given)} set with jets={jets!r}: the stored jets (and their "
                    "tau1, tau2) are used as they are. Drop them, or recluster the candidates "
                    "with particles='PFCands'."
                )
                raise ConfigError(msg)
        self._set_common(mjj_bins, point_clouds)
        self.jets = jets
        self.particles = particles
        self.candidates = candidates
        self.link = link or f"{jets}{candidates}"
        self.jet_index = jet_index
        self.candidate_index = candidate_index or (
            "pFCandsIdx" if candidates == "PFCands" else f"{candidates}Idx"
        )
        self.weight = weight
        self.label = label
        self.r = 1.0 if r is None else float(r)
        self.min_jet_pt_gev = 20.0 if min_jet_pt_gev is None else float(min_jet_pt_gev)
        self.axes = "KT_Axes" if axes is None else axes
        check_clustering_options(r=self.r, min_jet_pt_gev=self.min_jet_pt_gev, axes=self.axes)

    @property
    def mode(self) -> str:
        """``"jets"`` (stored jets) or ``"particles"`` (reclustering)."""
        return "jets" if self.jets is not None else "particles"

    def __repr__(self) -> str:
        if self.jets is not None:
            what = f"jets={self.jets!r}"
            if self.point_clouds is not None:
                what += f", link={self.link!r}, candidates={self.candidates!r}"
        else:
            what = (
                f"particles={self.particles!r}, r={self.r}, min_jet_pt_gev={self.min_jet_pt_gev}"
                f", axes={self.axes!r}"
            )
        return (
            f"NanoAODDijetProcessor({what}, weight={self.weight!r}, "
            f"point_clouds={self.point_clouds!r})"
        )

    def _collection(self, events: Any, name: str, needed: Sequence[str], option: str) -> Any:
        """``events[name]`` after checking it is a jagged collection with fields `needed`."""
        metadata = _metadata(events)
        fields = list(ak.fields(events))
        if name not in fields:
            present = _collections(events)
            fitting = sorted(c for c, f in present.items() if set(needed) <= set(f))
            if not present and any("_" in f for f in fields):
                hint = (
                    f"The events have only flat branches ({sorted(fields)[:8]}...): read the "
                    "file with coffea's NanoAODSchema (Runner(..., schema=NanoAODSchema))."
                )
            else:
                hint = f"Collections present: {sorted(present)}."
            msg = (
                f"{_where(metadata)} has no collection {name!r}; set {option}= of "
                f"NanoAODDijetProcessor to a collection with fields {list(needed)}: "
                f"{fitting}. {hint}"
            )
            raise InputError(msg)
        coll = events[name]
        if not _is_collection(coll):
            msg = (
                f"{_where(metadata)}: {name!r} is not a jagged collection (one list per event); "
                f"set {option}= to a collection. Is the file read with coffea's NanoAODSchema "
                "(the flat-branch processor is DijetFeatureProcessor)?"
            )
            raise InputError(msg)
        missing = [q for q in needed if q not in ak.fields(coll)]
        if missing:
            msg = (
                f"{_where(metadata)}: collection {name!r} has no field(s) {missing} (it has "
                f"{sorted(ak.fields(coll))}); set {option}= to a collection with {list(needed)}"
            )
            raise InputError(msg)
        return coll

    def process(self, events: Any) -> dict[str, dict[str, Any]]:
        """Features of one chunk of NanoAOD-style events.

        Parameters
        ----------
        events
            coffea NanoEvents (``NanoAODSchema`` or ``PFNanoAODSchema``) of N events, or any
            awkward record array with the collections as fields; ``events.metadata`` may hold
            ``dataset``, ``filename``, ``entrystart``.

        Returns
        -------
        ``{dataset: acc}`` as `DijetFeatureProcessor.process` (``event_id``: entry number).

        Raises
        ------
        InputError
            A missing collection or field (the message names the option to set and the
            collections present), or association indices pointing outside their collections.
        """
        metadata = _metadata(events)
        n = len(events)
        extra = [self.weight] if self.weight else []
        if self.particles is not None:
            cands = self._collection(
                events, self.particles, [*_CANDIDATE_FIELDS, *extra], "particles"
            )
            particles = ak.zip({q: cands[q] for q in _CANDIDATE_FIELDS})
            if self.weight:
                w = cands[self.weight]
                particles = ak.zip(
                    {
                        "pt": cands["pt"] * w,
                        "eta": cands["eta"],
                        "phi": cands["phi"],
                        "mass": cands["mass"] * w,
                    }
                )
            all_features, keep, clouds = _recluster(
                particles,
                r=self.r,
                min_jet_pt_gev=self.min_jet_pt_gev,
                axes=self.axes,
                point_clouds=self.point_clouds,
            )
            features = {k: v[keep] for k, v in all_features.items()}
        else:
            features, keep, clouds = self._stored_jets(events, metadata, str(self.jets))
        return self._output(
            events,
            features=features,
            keep=keep,
            event_id=_entry_ids(metadata, n),
            id_from_entry=True,
            label=_labels(events, self.label, n),
            clouds=clouds,
        )

    def _stored_jets(
        self, events: Any, metadata: Mapping[str, Any], prefix: str
    ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray] | None]:
        from sideband.events.root import _jets_with_constituents, _leading_pair_features

        jets = self._collection(events, prefix, _JET_FIELDS, "jets")
        columns = {f"{prefix}_{q}": jets[q] for q in _JET_FIELDS}
        # the uproot reader's own code, on a table with its branch names
        features, keep = _leading_pair_features(ak.zip(columns, depth_limit=1), prefix)
        keep = np.asarray(keep, dtype=bool)
        if self.point_clouds is None:
            return features, keep, None
        cand_q = [*_CANDIDATE_FIELDS, *([self.weight] if self.weight else [])]
        cands = self._collection(events, self.candidates, cand_q, "candidates")
        link = self._collection(events, self.link, [self.jet_index, self.candidate_index], "link")
        jet_branches = [f"{prefix}_{q}" for q in _CANDIDATE_FIELDS]
        cand_branches = [f"{self.candidates}_{q}" for q in cand_q]
        link_branches = [f"{self.link}_{self.jet_index}", f"{self.link}_{self.candidate_index}"]
        table = ak.zip(
            {
                **{b: jets[q] for b, q in zip(jet_branches, _CANDIDATE_FIELDS, strict=True)},
                **{b: cands[q] for b, q in zip(cand_branches, cand_q, strict=True)},
                link_branches[0]: link[self.jet_index],
                link_branches[1]: link[self.candidate_index],
            },
            depth_limit=1,
        )
        lead = _jets_with_constituents(
            Path(str(metadata.get("filename", "events"))),
            table,
            jet_branches,
            cand_branches,
            link_branches,
            2,
            int(metadata.get("entrystart", 0)),
        )
        leading = _stored_leading(lead, np.asarray(ak.num(jets["pt"], axis=1), dtype=np.int64))
        return features, keep, _point_clouds(leading, self.point_clouds)


def _collections(events: Any) -> dict[str, list[str]]:
    """Name -> fields of the jagged collections of `events` (for error messages)."""
    out: dict[str, list[str]] = {}
    for name in ak.fields(events):
        try:
            coll = events[name]
        except Exception as err:  # noqa: BLE001 - e.g. PFNano's PFCands without charge
            log.debug("collection %r cannot be built: %s", name, err)
            continue
        if _is_collection(coll):
            out[name] = list(ak.fields(coll))
    return out


def _is_collection(array: Any) -> bool:
    """True for a jagged array of records (a NanoAOD collection), one list per event."""
    try:
        return bool(array.ndim == 2 and ak.fields(array))
    except (AttributeError, TypeError):
        return False


def _stored_leading(lead: ak.Array, n_jets: np.ndarray) -> _LeadingJets:
    """`_LeadingJets` of stored jets: (N, <=2) records {pt, eta, phi, mass, constituents} in pT
    order (`sideband.events.root._jets_with_constituents`) and the number of jets per event."""
    n_events = len(lead)
    padded = ak.pad_none(lead, 2, axis=1, clip=True)
    q = {
        k: ak.to_numpy(ak.fill_none(padded[k], np.nan)).astype(np.float64)
        for k in _CANDIDATE_FIELDS
    }
    px, py = q["pt"] * np.cos(q["phi"]), q["pt"] * np.sin(q["phi"])
    pz = q["pt"] * np.sinh(q["eta"])
    e = np.sqrt(px**2 + py**2 + pz**2 + q["mass"] ** 2)
    four = {"px": px, "py": py, "pz": pz, "e": e}
    c = lead["constituents"]
    constituents = ak.zip(
        {
            "px": c["pt"] * np.cos(c["phi"]),
            "py": c["pt"] * np.sin(c["phi"]),
            "pz": c["pt"] * np.sinh(c["eta"]),
            "E": np.sqrt((c["pt"] * np.cosh(c["eta"])) ** 2 + c["mass"] ** 2),
        }
    )
    if n_events and ak.sum(ak.num(c, axis=2)) == 0:
        constituents = None
    return _LeadingJets(n_jets, four, constituents if n_events else None)


# --------------------------------------------------------------------------------------------
# merged accumulators -> tables
# --------------------------------------------------------------------------------------------


def _feature_accumulators(
    accumulator: Mapping[str, Any],
) -> dict[str, Mapping[str, Any]]:
    """The entries of `accumulator` that are outputs of these processors (a user's own keys of
    the same output, e.g. a cutflow dict or a histogram, are skipped)."""
    if not accumulator:  # nothing was processed
        return {}
    found = {
        str(k): v for k, v in accumulator.items() if isinstance(v, Mapping) and set(v) >= _ACC_KEYS
    }
    if not found:
        msg = (
            f"no sideband feature accumulator among the keys {sorted(map(str, accumulator))}; "
            "pass the merged output of DijetFeatureProcessor / NanoAODDijetProcessor "
            "({dataset: acc}, a user's own keys beside it are skipped)"
        )
        raise InputError(msg)
    return found


def _fileset_files(fileset: Mapping[str, Any] | None, dataset: str) -> list[str]:
    """File names of `dataset` in a coffea fileset (list, {"files": list | dict} forms)."""
    if fileset is None or dataset not in fileset:
        return []
    entry = fileset[dataset]
    files = entry.get("files", []) if isinstance(entry, Mapping) else entry
    if isinstance(files, str):
        files = [files]
    return [str(f) for f in files]


def _id_offsets(
    acc: Mapping[str, Any], dataset: str, fileset: Mapping[str, Any] | None
) -> list[int]:
    """Per chunk, the number added to its entry-number event ids: the entries of the earlier
    files of the dataset (fileset order, else by name; a file's entries are the largest
    ``entrystop`` of its chunks: the whole file unless the Runner's ``maxchunks`` stopped
    earlier); 0 for one file or for ids taken from a branch."""
    chunks = list(acc.get("chunks", []))
    n_chunks = len(acc["event_id"])
    if len(chunks) != n_chunks:  # an accumulator of an older sideband: no chunk records
        return [0] * n_chunks
    files = {c["file"] for c in chunks if c["id_from_entry"]}
    if len(files) <= 1:
        return [0] * n_chunks
    order = [f for f in _fileset_files(fileset, dataset) if f in files]
    order += sorted(files - set(order))
    entries = {f: max(c["entrystop"] for c in chunks if c["file"] == f) for f in files}
    starts = dict(zip(order, np.cumsum([0] + [entries[f] for f in order[:-1]]), strict=True))
    log.info(
        "dataset %r: %d files; event_id = entry + entries of the earlier files (%s order)",
        dataset,
        len(files),
        "fileset" if fileset is not None else "name",
    )
    return [int(starts[c["file"]]) if c["id_from_entry"] else 0 for c in chunks]


def _joined_ids(acc: Mapping[str, Any], offsets: Sequence[int]) -> np.ndarray:
    return np.concatenate(
        [np.asarray(a, dtype=np.int64) + o for a, o in zip(acc["event_id"], offsets, strict=True)]
    )


def collect_features(
    accumulator: Mapping[str, Any],
    *,
    source: str = "",
    fileset: Mapping[str, Any] | None = None,
) -> dict[str, FeatureTable]:
    """One `FeatureTable` per dataset of a merged `DijetFeatureProcessor` /
    `NanoAODDijetProcessor` accumulator.

    Parameters
    ----------
    accumulator
        ``{dataset: acc, ...}`` as merged by coffea (a Runner's output). Entries that are not
        such accumulators (a user's own cutflow dict, histograms, ...) are skipped.
    source
        Source string of the tables (default: the dataset name).
    fileset
        The coffea fileset the Runner ran on; only used to order the files of a dataset with
        several files when event ids are entry numbers (see the module docstring).

    Returns
    -------
    ``{dataset: FeatureTable}``: rows sorted by ``event_id`` (executors may merge chunks in any
    order), `FEATURE_COLUMNS` in GeV, ``ids`` holding ``run``, ``luminosityBlock``, ``event``
    (int64) where every chunk had them. Labels are kept when every event of the dataset is
    labelled 0 or 1; if any is -1 (unknown) the table has no labels.
    """
    tables: dict[str, FeatureTable] = {}
    for dataset, acc in _feature_accumulators(accumulator).items():
        offsets = _id_offsets(acc, dataset, fileset)
        event_id = _joined_ids(acc, offsets)
        order = np.argsort(event_id, kind="stable")
        if len(np.unique(event_id)) != len(event_id):
            log.warning("dataset %r has repeated event_id values; rows kept in id order", dataset)
        columns = {
            name: np.concatenate([np.asarray(a, dtype=np.float64) for a in acc[name]])[order]
            for name in FEATURE_COLUMNS
        }
        ids: dict[str, np.ndarray] = {}
        for name in EVENT_IDENTIFIERS:
            if name not in acc:
                continue
            values = np.concatenate([np.asarray(a, dtype=np.int64) for a in acc[name]])
            if len(values) != len(event_id):  # some chunks (files) lack this identifier
                log.warning(
                    "dataset %r: %r is missing in some chunks; the table keeps no %r",
                    dataset,
                    name,
                    name,
                )
                continue
            ids[name] = values[order]
        label: np.ndarray | None = np.concatenate(
            [np.asarray(a, dtype=np.int8) for a in acc["label"]]
        )[order]
        if label is not None and (label < 0).any():
            if (label >= 0).any():
                log.warning(
                    "dataset %r: %d of %d events have no label (-1); the table keeps no labels",
                    dataset,
                    int((label < 0).sum()),
                    len(label),
                )
            label = None
        tables[dataset] = FeatureTable(
            columns, event_id[order], label, ids, source=source or dataset
        )
        log.info(
            "%s: %d events seen, %d with fewer than two jets dropped, %d kept",
            dataset,
            int(acc["n_events"]),
            int(acc["n_fewer_than_two_jets"]),
            len(event_id),
        )
    return tables


def collect_point_clouds(
    accumulator: Mapping[str, Any], *, fileset: Mapping[str, Any] | None = None
) -> dict[str, PointCloudTable]:
    """One `PointCloudTable` per dataset of a merged accumulator of a processor run with
    ``point_clouds=M``: rows sorted by ``event_id`` with the same ids as `collect_features`
    (so row i of both tables is the same event)."""
    out: dict[str, PointCloudTable] = {}
    for dataset, acc in _feature_accumulators(accumulator).items():
        if "point_clouds" not in acc:
            msg = (
                f"dataset {dataset!r} has no point clouds; run the processor with "
                "point_clouds=M (constituent slots per jet, e.g. 279)"
            )
            raise InputError(msg)
        offsets = _id_offsets(acc, dataset, fileset)
        parts = [
            PointCloudTable(
                t.constituents,
                t.mask,
                t.jets,
                t.mjj,
                t.event_id + o,
                t.label,
                source=t.source,
            )
            for t, o in zip(acc["point_clouds"], offsets, strict=True)
        ]
        table = PointCloudTable.concatenate(parts)
        out[dataset] = table.select(np.argsort(table.event_id, kind="stable"))
    return out
