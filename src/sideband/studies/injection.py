"""Signal-injection studies: how the sensitivity falls as the injected signal shrinks.

A study runs one full scoring run per (N_sig, seed) on a grid and records its headline numbers
(AUC, SIC at eps_B = 1e-4, 1e-3, 1e-2, max SIC). The table is rewritten atomically after every run
together with the study's settings, so a study that is stopped resumes where it left off when it
is started again with the same settings (and refuses to mix rows from different settings).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sideband.errors import InputError

__all__ = [
    "InjectionTable",
    "iad_injection_run",
    "inject_signal",
    "run_injection_study",
]

logger = logging.getLogger(__name__)

TABLE_NAME = "injection_table.json"

#: One run of a study: (n_signal, seed) -> dict of headline numbers (see `summary`).
RunOne = Callable[[int, int], Mapping[str, Any]]


@dataclass(frozen=True)
class InjectionTable:
    """Rows of a signal-injection study and their per-N_sig bands.

    Attributes
    ----------
    rows
        One dict per run: ``n_signal``, ``seed`` and the run's numbers.
    settings
        What the study was run with (recorded with the rows, checked on resume).
    """

    rows: tuple[dict[str, Any], ...]
    settings: dict[str, Any]

    def bands(self, key: str = "sic_at_1e-03") -> dict[str, np.ndarray]:
        """Median and 16-84% band of ``key`` over seeds at each injected N_sig.

        Returns a dict of float64 arrays ``n_signal``, ``median``, ``lo``, ``hi`` and int64
        ``n_runs`` (K,), sorted by N_sig. NaN values (e.g. a SIC the test set cannot reach)
        are left out of the band.
        """
        if not self.rows:
            msg = "the injection table is empty; run the study first"
            raise InputError(msg)
        if key not in self.rows[0]:
            msg = f"unknown column {key!r}; the table has {sorted(self.rows[0])}"
            raise InputError(msg)
        from sideband.evaluation.bands import Band, band

        grid = np.array(sorted({int(r["n_signal"]) for r in self.rows}))
        per_n = [[r[key] for r in self.rows if int(r["n_signal"]) == n] for n in grid]
        # one column per N_sig, NaN-padded to the most seeds (None = NaN read back from JSON)
        values = np.full((max(len(v) for v in per_n), len(grid)), np.nan)
        for j, v in enumerate(per_n):
            values[: len(v), j] = np.array(v, dtype=np.float64)
        if np.isnan(values).all():
            nan = np.full(len(grid), np.nan)
            b = Band(nan, nan, nan, np.zeros(len(grid)))
        else:
            b = band(values, axis=0)
        return {
            "n_signal": grid.astype(np.float64),
            "median": np.atleast_1d(b.median),
            "lo": np.atleast_1d(b.lo),
            "hi": np.atleast_1d(b.hi),
            "n_runs": np.atleast_1d(b.n).astype(np.int64),
        }

    def to_json(self, path: str | Path) -> Path:
        """Write settings, rows and bands atomically to `path`."""
        from sideband.report import write_json

        obj: dict[str, Any] = {"settings": self.settings, "rows": list(self.rows)}
        if self.rows:
            obj["bands"] = {
                key: {k: v.tolist() for k, v in self.bands(key).items()}
                for key in ("auc", "sic_at_1e-03", "sic_at_1e-02", "max_sic")
                if key in self.rows[0]
            }
        return write_json(Path(path), obj)

    @classmethod
    def from_json(cls, path: str | Path) -> InjectionTable:
        """Read a table written by `to_json`; `InputError` if the file is not one."""
        p = Path(path)
        try:
            obj = json.loads(p.read_text())
            rows = tuple(dict(r) for r in obj["rows"])
            settings = dict(obj["settings"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            msg = (
                f"{p}: not a readable injection table ({err}); delete it to start the study "
                "afresh or point the study at another folder"
            )
            raise InputError(msg) from None
        return cls(rows, settings)


def run_injection_study(
    run_one: RunOne,
    *,
    n_signal: Sequence[int],
    seeds: Sequence[int],
    output_dir: str | Path,
    settings: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> InjectionTable:
    """Run `run_one` for every (N_sig, seed) pair not yet in ``output_dir``'s table.

    Parameters
    ----------
    run_one
        ``run_one(n_signal, seed)`` does one full scoring run and returns its numbers (a flat
        dict of floats, e.g. `ProtocolResult.as_dict`).
    n_signal
        Grid of injected signal counts (non-negative integers).
    seeds
        Seeds; each (N_sig, seed) pair is one run.
    output_dir
        Folder of the table (``injection_table.json``); created if missing. An existing table
        with the same settings is resumed; one with different settings is an error.
    settings
        Everything that defines the study besides the grid (data files, split, classifier...),
        JSON-serialisable; stored with the table.
    progress
        Show a progress bar.
    """
    from tqdm import tqdm

    from sideband.report import jsonable

    grid = [int(n) for n in n_signal]
    seed_list = [int(s) for s in seeds]
    if not grid or not seed_list:
        msg = "n_signal and seeds must each hold at least one value"
        raise InputError(msg)
    if min(grid) < 0:
        msg = f"injected signal counts must be non-negative; got {grid}"
        raise InputError(msg)
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TABLE_NAME
    study_settings = jsonable(dict(settings or {}))
    rows: list[dict[str, Any]] = []
    if path.exists():
        old = InjectionTable.from_json(path)
        if old.settings != study_settings:
            changed = sorted(
                k
                for k in set(old.settings) | set(study_settings)
                if old.settings.get(k) != study_settings.get(k)
            )
            msg = (
                f"{path} was written by a study with other settings (differing: {changed}); "
                "use another output folder, or delete the table to start afresh"
            )
            raise InputError(msg)
        rows = list(old.rows)
        logger.info("%s: resuming, %d run(s) already done", path, len(rows))
    done = {(int(r["n_signal"]), int(r["seed"])) for r in rows}
    todo = [(n, s) for n in grid for s in seed_list if (n, s) not in done]
    for n, s in tqdm(todo, desc="injection study", disable=not progress):
        numbers = jsonable(dict(run_one(n, s)))
        clash = sorted({"n_signal", "seed"} & set(numbers))
        if clash:
            msg = (
                f"run_one returned the key(s) {clash}, which the table uses for the injected "
                "signal count and the seed; rename them (e.g. n_test_signal)"
            )
            raise InputError(msg)
        rows.append({"n_signal": n, "seed": s, **numbers})
        InjectionTable(tuple(rows), study_settings).to_json(path)
    table = InjectionTable(tuple(rows), study_settings)
    if not todo:
        table.to_json(path)
    return table


def inject_signal(
    background: np.ndarray, signal: np.ndarray, n_signal: int, *, seed: int
) -> np.ndarray:
    """Background rows (N_B, d) plus `n_signal` signal rows drawn without replacement from
    `signal` (N_S, d) with a seeded generator, shuffled together: shape (N_B + n_signal, d)."""
    if n_signal > len(signal):
        msg = (
            f"cannot inject {n_signal} signal events from a pool of {len(signal)}; lower the "
            "injection grid or provide more signal events"
        )
        raise InputError(msg)
    rng = np.random.default_rng(seed)
    picked = signal[rng.choice(len(signal), size=n_signal, replace=False)]
    data = np.concatenate([background, picked])
    return data[rng.permutation(len(data))]


def iad_injection_run(
    background: np.ndarray,
    signal: np.ndarray,
    reference: np.ndarray,
    test_X: np.ndarray,
    test_y: np.ndarray,
    *,
    classifier: Any = None,
    n_folds: int | None = None,
) -> RunOne:
    """`RunOne` for an idealized-anomaly-detector injection study.

    Each run injects N_sig events from `signal` (N_S, d) into the data background `background`
    (N_B, d) (seed = the run's seed), trains data vs `reference` (pure background, (N_R, d)) with
    `idealized_ad`, and scores the labelled test set. Its numbers also hold
    ``n_data_background`` (N_B), ``s_over_sqrt_b`` and the test-set counts ``n_test_signal``,
    ``n_test_background``.
    """
    from sideband.scoring.protocols import idealized_ad

    def run(n_signal: int, seed: int) -> dict[str, Any]:
        data = inject_signal(background, signal, n_signal, seed=seed)
        result = idealized_ad(data, reference, test_X, test_y, classifier=classifier,
                              n_folds=n_folds, seed=seed)  # fmt: skip
        out = result.as_dict()
        out.pop("cutoff_rule", None)
        out["n_test_signal"] = out.pop("n_signal")
        out["n_test_background"] = out.pop("n_background")
        out.update(n_data_background=len(background),
                   s_over_sqrt_b=n_signal / math.sqrt(len(background)))  # fmt: skip
        return out

    return run
