"""`sideband evaluate`: benchmark a classifier protocol on labelled feature files.

Reads a data file, a background reference file and a labelled test file (any format
`sideband.events.read_features` reads, the CATHODE ``.npy`` files included), trains with the IAD
or the supervised protocol, scores the test file and writes a folder with ``metrics.json``,
``provenance.json``, ``scores.npz`` and the ROC, SIC and score plots.
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sideband.errors import InputError
from sideband.records import FeatureTable

__all__ = ["DEFAULT_FEATURES", "evaluate_files", "make_classifier", "write_evaluation"]

logger = logging.getLogger(__name__)

#: The features every LHCO format provides (the CATHODE .npy files have no delta_r).
DEFAULT_FEATURES = ("mj1", "delta_mj", "tau21_j1", "tau21_j2")

PROTOCOLS = ("iad", "supervised")
CLASSIFIERS = ("hgb", "mlp")


def make_classifier(
    name: str, *, n_members: int = 10, n_threads: int | None = None, device: str = "auto"
) -> Any:
    """Unfitted classifier by name: ``"hgb"`` (`HGBEnsemble` with `n_members` members) or
    ``"mlp"`` (`MLPEnsemble`, the mean of its `n_members` best epochs)."""
    if name == "hgb":
        from sideband.scoring import HGBEnsemble

        return HGBEnsemble(n_members=n_members, n_threads=n_threads)
    if name == "mlp":
        from sideband.scoring.mlp import MLPEnsemble

        return MLPEnsemble(n_best=n_members, n_threads=n_threads, device=device)
    msg = f"unknown classifier {name!r}; choose one of {list(CLASSIFIERS)}"
    raise InputError(msg)


def _read(path: str | Path, role: str, features: tuple[str, ...]) -> FeatureTable:
    from sideband.events import read_features

    table = read_features(path)
    missing = [f for f in features if f not in table.columns]
    if missing:
        msg = (
            f"{path} ({role}) has no column(s) {missing}; it has {list(table.names)}. Choose "
            "features the three files share with --features."
        )
        raise InputError(msg)
    table.check_finite(features)
    return table


def _background_rows(table: FeatureTable, role: str) -> FeatureTable:
    """Label-0 rows of a labelled table (all rows of an unlabelled one)."""
    if table.label is None:
        return table
    n_sig = int(table.label.sum())
    if n_sig:
        logger.info("%s: using its %d background rows, dropping %d signal rows", role,
                    len(table) - n_sig, n_sig)  # fmt: skip
    return table.select(table.label == 0)


def evaluate_files(
    data: str | Path,
    reference: str | Path,
    test: str | Path,
    *,
    protocol: str = "iad",
    classifier: str = "hgb",
    features: tuple[str, ...] = DEFAULT_FEATURES,
    n_members: int = 10,
    n_folds: int | None = None,
    reference_folds: int | None = None,
    seed: int = 0,
    n_threads: int | None = None,
    progress: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Train `protocol` on the files and score the test file.

    * ``iad``: every row of `data` (label 1) against the background rows of `reference`
      (label 0; its label-0 rows if it is labelled);
    * ``supervised``: the signal rows of `data` (it must be labelled) against the background rows
      of `reference` and of `data`.

    `test` must be labelled, with signal and background rows. With ``reference_folds = k`` the
    background rows of `reference` and `test` form one pool, cut into k folds: model i trains
    against k - 1 of them and scores the last and its share of the test signal
    (`idealized_ad_kfold`), so scarce background serves as reference and test background.
    Returns the `sideband.scoring.protocols.ProtocolResult` and a JSON-ready record of the
    inputs.
    """
    from sideband.scoring import protocols

    if protocol not in PROTOCOLS:
        msg = f"unknown protocol {protocol!r}; choose one of {list(PROTOCOLS)}"
        raise InputError(msg)
    features = tuple(features)
    d = _read(data, "data", features)
    r = _background_rows(_read(reference, "reference", features), "reference")
    t = _read(test, "test", features)
    if t.label is None:
        msg = f"{test}: the test file has no labels; evaluation needs a labelled test file"
        raise InputError(msg)
    clf = make_classifier(classifier, n_members=n_members, n_threads=n_threads)
    kwargs: dict[str, Any] = {"classifier": clf, "n_folds": n_folds, "seed": seed,
                              "progress": progress}  # fmt: skip
    if protocol == "iad":
        x1, background = d.x(features), r.x(features)
    else:
        if d.label is None or not d.label.any():
            msg = (
                f"{data}: the supervised protocol trains on the signal rows (label 1) of the data "
                "file, and it has none; pass a labelled file with signal events"
            )
            raise InputError(msg)
        x1 = d.x(features)[d.label == 1]
        background = np.concatenate([r.x(features), d.x(features)[d.label == 0]])
    tx = t.x(features)
    if reference_folds is None:
        fn = protocols.idealized_ad if protocol == "iad" else protocols.supervised
        result = fn(x1, background, tx, t.label, **kwargs)
    else:
        if n_folds is not None:
            msg = "choose either n_folds (validation folds) or reference_folds, not both"
            raise InputError(msg)
        if t.label.all() or not t.label.any():
            msg = f"{test}: the test file needs signal and background rows"
            raise InputError(msg)
        kwargs["n_folds"] = reference_folds
        fn = protocols.idealized_ad_kfold if protocol == "iad" else protocols.supervised_kfold
        pool = np.concatenate([background, tx[t.label == 0]])
        result = fn(x1, pool, tx[t.label == 1], **kwargs)
    record = {
        "protocol": protocol,
        "classifier": classifier,
        "n_members": n_members,
        "n_folds": n_folds,
        "reference_folds": reference_folds,
        "features": list(features),
        "seed": seed,
        "inputs": {
            "data": _describe(data, d),
            "reference": _describe(reference, r),
            "test": _describe(test, t),
        },
    }
    return result, record


def _describe(path: str | Path, table: FeatureTable) -> dict[str, Any]:
    from sideband.report import file_sha256

    p = Path(path)
    out: dict[str, Any] = {"path": str(p), "rows_used": len(table)}
    if table.label is not None:
        out["signal_rows"] = int(table.label.sum())
    if p.is_file():
        out["sha256"] = file_sha256(p)
    return out


def write_evaluation(
    result: Any, record: dict[str, Any], out_dir: str | Path, *, plots: bool = True
) -> Path:
    """Write ``metrics.json``, ``provenance.json``, ``scores.npz`` and plots to `out_dir`."""
    from sideband.report import atomic_write, package_versions, write_json

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "metrics.json", result.as_dict())
    write_json(
        folder / "provenance.json",
        {
            **record,
            "command": sys.argv,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(),
            "versions": package_versions(),
        },
    )

    def save_scores(p: Path) -> None:
        with p.open("wb") as handle:
            np.savez(handle, scores=result.scores, labels=result.labels)

    atomic_write(folder / "scores.npz", save_scores)
    if plots:
        from sideband.evaluation import plot_roc, plot_scores, plot_sic

        label = f"{result.protocol} ({record['classifier']})"
        plot_roc(result.labels, result.scores, folder / "roc.png", label=label)
        plot_sic(result.labels, result.scores, folder / "sic.png", label=label)
        plot_scores(result.scores, result.labels, folder / "scores.png")
    return folder
