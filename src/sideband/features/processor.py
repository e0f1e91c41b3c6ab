"""A stateless coffea processor: particles -> two leading anti-kT jets -> dijet features.

`DijetFeatureProcessor.process` takes one chunk of events (flat jagged particle branches, e.g.
``part_pt``, ``part_eta``, ``part_phi`` as written by `sideband.events.write_particles` to ROOT),
clusters them with `sideband.features.substructure.cluster_dijets`, keeps the events with two jets
and returns an accumulator (see `DijetFeatureProcessor.process`) that coffea's ``accumulate``
merges across chunks: lists concatenate, counts add, histograms add. `collect_features` turns the
merged accumulator into one `sideband.records.FeatureTable` per dataset, sorted by ``event_id``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import awkward as ak
import hist
import numpy as np
from coffea import processor

from sideband.errors import InputError
from sideband.features.constituents import _point_clouds, check_max_constituents
from sideband.features.substructure import (
    _jet_columns,
    _leading_jets,
    check_clustering_options,
    dijet_features,
)
from sideband.records import FEATURE_COLUMNS, FeatureTable, PointCloudTable

__all__ = ["DijetFeatureProcessor", "collect_features"]

log = logging.getLogger(__name__)


class DijetFeatureProcessor(processor.ProcessorABC):  # type: ignore[misc]
    """Cluster particles into anti-kT jets and compute the dijet features of each event.

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
        if point_clouds is not None:
            point_clouds = check_max_constituents(point_clouds)
        bins, low, high = mjj_bins
        if int(bins) < 1 or not low < high:
            msg = f"mjj_bins={mjj_bins!r} must be (bins >= 1, low < high) in GeV"
            raise InputError(msg)
        self.pt_branch = pt_branch
        self.eta_branch = eta_branch
        self.phi_branch = phi_branch
        self.mass_branch = mass_branch
        self.event_id_branch = event_id_branch
        self.label_branch = label_branch
        self.r = float(r)
        self.min_jet_pt_gev = float(min_jet_pt_gev)
        self.axes = axes
        self.mjj_bins = (int(bins), float(low), float(high))
        self.point_clouds = point_clouds

    def __repr__(self) -> str:
        return (
            f"DijetFeatureProcessor(pt_branch={self.pt_branch!r}, eta_branch={self.eta_branch!r}, "
            f"phi_branch={self.phi_branch!r}, r={self.r}, min_jet_pt_gev={self.min_jet_pt_gev}, "
            f"axes={self.axes!r}, point_clouds={self.point_clouds!r})"
        )

    def make_histogram(self) -> hist.Hist:
        """Empty m_JJ histogram [GeV] with the processor's binning."""
        bins, low, high = self.mjj_bins
        return hist.Hist(
            hist.axis.Regular(bins, low, high, name="mjj", label=r"$m_{JJ}$ [GeV]"),
            storage=hist.storage.Double(),
        )

    def process(self, events: Any) -> dict[str, dict[str, Any]]:
        """Features of one chunk of events.

        Parameters
        ----------
        events
            Awkward array (e.g. coffea NanoEvents with ``BaseSchema``) of N events with the
            particle branches; ``events.metadata`` may hold ``dataset`` and ``entrystart``.

        Returns
        -------
        ``{dataset: acc}`` where ``acc`` holds ``"event_id"``, ``"label"`` and one entry per
        name of `FEATURE_COLUMNS`, each a one-element list with a numpy array of the kept
        events (two jets); ``"n_events"`` (events seen), ``"n_fewer_than_two_jets"`` (events
        dropped) and ``"mjj_hist"``, a ``hist.Hist`` of the kept events' m_JJ [GeV]. With
        ``point_clouds`` set, also ``"point_clouds"``: a one-element list with the
        `sideband.records.PointCloudTable` of the kept events.
        """
        metadata = getattr(events, "metadata", None) or {}
        dataset = str(metadata.get("dataset", "events"))
        fields = set(ak.fields(events))
        names = {"pt": self.pt_branch, "eta": self.eta_branch, "phi": self.phi_branch}
        missing = {k: v for k, v in names.items() if v not in fields}
        if missing:
            msg = (
                f"particle branch(es) {sorted(missing.values())} not found in {dataset!r} "
                f"(file {metadata.get('filename', '?')}); available: {sorted(fields)}. Set "
                "pt_branch / eta_branch / phi_branch of DijetFeatureProcessor to the file's names."
            )
            raise InputError(msg)
        n = len(events)
        if self.mass_branch is not None and self.mass_branch in fields:
            names["mass"] = self.mass_branch  # massive particles [GeV]
        particles = ak.zip({k: events[v] for k, v in names.items()})
        check_clustering_options(r=self.r, min_jet_pt_gev=self.min_jet_pt_gev, axes=self.axes)
        leading = _leading_jets(particles, r=self.r, min_jet_pt_gev=self.min_jet_pt_gev)
        jets = _jet_columns(leading, r=self.r, axes=self.axes)
        features = dijet_features(jets)
        keep = jets["has_dijet"]

        if self.event_id_branch in fields:
            event_id = np.asarray(ak.to_numpy(events[self.event_id_branch]), dtype=np.int64)
        else:
            start = int(metadata.get("entrystart", 0))
            event_id = np.arange(start, start + n, dtype=np.int64)
        if self.label_branch in fields:
            label = np.asarray(ak.to_numpy(events[self.label_branch])).astype(np.int8)
        else:
            label = np.full(n, -1, dtype=np.int8)

        histogram = self.make_histogram()
        histogram.fill(mjj=features["mjj"][keep])
        acc: dict[str, Any] = {
            "event_id": [event_id[keep]],
            "label": [label[keep]],
            **{name: [features[name][keep]] for name in FEATURE_COLUMNS},
            "n_events": n,
            "n_fewer_than_two_jets": int(n - keep.sum()),
            "mjj_hist": histogram,
        }
        if self.point_clouds is not None:
            clouds = _point_clouds(leading, self.point_clouds)
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

    def postprocess(self, accumulator: Any) -> Any:
        """Nothing to do: the accumulator is returned unchanged."""
        return accumulator


def collect_features(
    accumulator: Mapping[str, Mapping[str, Any]], *, source: str = ""
) -> dict[str, FeatureTable]:
    """One `FeatureTable` per dataset of a merged `DijetFeatureProcessor` accumulator.

    Rows are sorted by ``event_id`` (executors may merge chunks in any order). Labels are kept
    when every event of the dataset is labelled 0 or 1; if any is -1 (unknown) the table has no
    labels.
    """
    tables: dict[str, FeatureTable] = {}
    for dataset, acc in accumulator.items():
        event_id = np.concatenate([np.asarray(a, dtype=np.int64) for a in acc["event_id"]])
        order = np.argsort(event_id, kind="stable")
        if len(np.unique(event_id)) != len(event_id):
            log.warning("dataset %r has repeated event_id values; rows kept in id order", dataset)
        columns = {
            name: np.concatenate([np.asarray(a, dtype=np.float64) for a in acc[name]])[order]
            for name in FEATURE_COLUMNS
        }
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
        tables[dataset] = FeatureTable(columns, event_id[order], label, source=source or dataset)
        log.info(
            "%s: %d events seen, %d with fewer than two jets dropped, %d kept",
            dataset,
            int(acc["n_events"]),
            int(acc["n_fewer_than_two_jets"]),
            len(event_id),
        )
    return tables
