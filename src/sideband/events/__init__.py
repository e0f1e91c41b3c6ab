"""Stage 1, events: read and write event files (LHCO HDF5, CATHODE .npy, Parquet, ROOT).

Everything returned is in GeV. `read_features` gives a `sideband.records.FeatureTable` from a
features file; `read_point_clouds` the constituent point clouds written by
`sideband.features.extract_features`; `iter_particles` streams particle-level events as awkward chunks of records
``{event_id, label, particles: var * {pt, eta, phi}}``. The writers produce files that the
readers (and, for the LHCO formats, `pandas.read_hdf`) read back; all write atomically.
"""

from __future__ import annotations

from sideband.events.formats import (
    PARTICLE_BRANCH_PRESETS,
    count_events,
    detect_format,
    iter_particles,
    read_features,
    write_features,
    write_particles,
)
from sideband.events.lhco import write_lhco_features, write_lhco_raw
from sideband.events.point_clouds import read_point_clouds, write_point_clouds
from sideband.events.root import iter_fatjet_constituents, read_fatjet_features

__all__ = [
    "PARTICLE_BRANCH_PRESETS",
    "count_events",
    "detect_format",
    "iter_fatjet_constituents",
    "iter_particles",
    "read_fatjet_features",
    "read_features",
    "read_point_clouds",
    "write_features",
    "write_lhco_features",
    "write_lhco_raw",
    "write_particles",
    "write_point_clouds",
]


def __dir__() -> list[str]:
    return __all__
