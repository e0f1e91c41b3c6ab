"""Studies built from many scoring runs: signal injection (sensitivity against N_sig).

`run_injection_study` runs a grid of (N_sig, seed) runs, resumable; `iad_injection_run` is the
idealized-anomaly-detector run it is usually given.
"""

from __future__ import annotations

from sideband.studies.injection import (
    InjectionTable,
    iad_injection_run,
    inject_signal,
    run_injection_study,
)

__all__ = ["InjectionTable", "iad_injection_run", "inject_signal", "run_injection_study"]


def __dir__() -> list[str]:
    return __all__
