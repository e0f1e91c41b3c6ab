"""LHCO-like event generation with Pythia 8 (the optional extra ``sideband[generator]``).

`generate_events` makes QCD dijet or W' -> X Y -> qqqq events passing the LHCO trigger;
`write_generated` stores them in the LHCO raw and features HDF5 formats. pythia8mc is imported
only when events are generated.
"""

from __future__ import annotations

from sideband.generate.pythia import (
    GeneratedEvents,
    concatenate_generated,
    generate_events,
    pythia_settings,
    write_generated,
)

__all__ = [
    "GeneratedEvents",
    "concatenate_generated",
    "generate_events",
    "pythia_settings",
    "write_generated",
]


def __dir__() -> list[str]:
    return __all__
