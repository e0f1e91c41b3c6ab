"""Throughput of read + cluster + features through coffea, per executor; write JSON.

Usage: python benchmarks/feature_throughput.py [--input RAW.h5] [--max-events 14000]
       [--chunk-size 2000] [--out benchmarks/results]

Runs `sideband.features.extract_features` on the LHCO-like raw particle file (LHCO R&D HDF5
layout, 700 particles x (pT, eta, phi) per event) with the iterative executor (one process) and a
local Dask distributed cluster of 1 and 2 single-threaded workers, and records wall time, events
per second, events per second per worker and the 2-over-1-worker speedup. The wall time includes
converting the HDF5 rows to Parquet chunks (coffea's Runner reads ROOT and Parquet only), which
happens once in the main process before the executor starts, and starting the Dask cluster.
Writes ``feature_throughput.json``; all runs must give identical features.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from sideband.features import extract_features
from sideband.records import FEATURE_COLUMNS
from sideband.report import environment, write_json

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lhco_like"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", type=Path, default=SHARED / "events_lhco_like_raw.h5")
    parser.add_argument("--max-events", type=int, default=14_000)
    parser.add_argument("--chunk-size", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--conditions", default="", help="recorded with the timings")
    args = parser.parse_args()
    runs = {
        "iterative": ("iterative", 1),
        "dask_1_worker": ("dask", 1),
        "dask_2_workers": ("dask", 2),
    }
    results, tables = {}, {}
    for name, (executor, workers) in runs.items():
        start = time.perf_counter()
        table = extract_features(
            args.input,
            executor=executor,
            workers=workers,
            chunk_size=args.chunk_size,
            max_events=args.max_events,
            progress=False,
        )
        wall = time.perf_counter() - start
        tables[name] = table
        results[name] = {
            "executor": executor,
            "workers": workers,
            "wall_s": round(wall, 2),
            "events_in": args.max_events,
            "events_with_two_jets": len(table),
            "events_per_s": round(args.max_events / wall, 1),
            "events_per_s_per_worker": round(args.max_events / wall / workers, 1),
        }
        print(name, results[name])
    reference = tables["iterative"]
    for table in tables.values():
        for column in FEATURE_COLUMNS:
            np.testing.assert_array_equal(table.columns[column], reference.columns[column])
    speedup = results["dask_1_worker"]["wall_s"] / results["dask_2_workers"]["wall_s"]
    write_json(
        args.out / "feature_throughput.json",
        {
            "what": (
                "read LHCO-style raw HDF5 + anti-kT R=1.0 clustering (fastjet) + dijet features, "
                "through coffea's Runner, per executor; identical features in every run"
            ),
            "input": str(args.input),
            "chunk_size": args.chunk_size,
            **environment(args.conditions),
            "results": results,
            "dask_speedup_2_over_1_workers": round(speedup, 3),
        },
    )
    print("speedup 2 over 1 Dask workers:", round(speedup, 2))


if __name__ == "__main__":
    main()
