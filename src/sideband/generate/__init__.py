"""LHCO-like event generation with Pythia 8 (the optional extra ``sideband[generator]``).

`generate_events` makes QCD dijet or W' -> X Y -> qqqq events passing the LHCO trigger;
`write_generated` stores them in the LHCO raw and features HDF5 formats. `generate_sample` makes a
sample of any size as resumable chunks (all cores or a Dask cluster), for sensitivity studies at any
W'/X/Y masses. pythia8mc is imported only when events are generated.
"""

from __future__ import annotations

from sideband.generate.chunked import GeneratedSample, generate_sample
from sideband.generate.pythia import (
    GeneratedEvents,
    concatenate_generated,
    generate_events,
    pythia_settings,
    write_generated,
)

__all__ = [
    "GeneratedEvents",
    "GeneratedSample",
    "concatenate_generated",
    "generate_events",
    "generate_sample",
    "pythia_settings",
    "write_generated",
]


def __dir__() -> list[str]:
    return __all__
