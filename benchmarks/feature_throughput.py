"""Throughput and peak memory of read + cluster + features (and point clouds); write JSON.

Usage:
    python benchmarks/feature_throughput.py throughput [--input RAW.h5] [--max-events 14000]
        [--chunk-size 2000] [--out benchmarks/results] [--conditions TEXT]
    python benchmarks/feature_throughput.py memory [--input RAW.h5] [--repeat 10]
        [--scratch DIR] [--chunk-size 2000] [--out benchmarks/results]

``throughput`` runs `sideband.features.extract_features` on the LHCO-like raw particle file (LHCO
R&D HDF5 layout, 700 particles x (pT, eta, phi) per event) with the iterative executor (one
process): features only, then features + constituent point clouds (279 slots per jet, written
to Parquet chunk files); then on a local Dask distributed cluster of 1 and 2 single-threaded
workers (features only), and records wall time, events per second per worker and the 2-over-1
worker speedup (cluster start-up included). A per-stage breakdown (read, anti-kT, N-subjettiness,
point clouds) is timed on one chunk in this process. All runs must give identical features.
Writes ``feature_throughput.json``.

``memory`` writes a file `--repeat` times larger than the input (its events repeated, same
format, blosc) into `--scratch`, then processes the input and the large file each in a fresh
process (iterative executor, features + point clouds) and records the peak resident memory
(``ru_maxrss``) of each: it must not grow with the file. Writes ``feature_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sideband.features import extract_features
from sideband.records import FEATURE_COLUMNS
from sideband.report import environment, write_json

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lhco_like"


def _stage_breakdown(path: Path, n: int) -> dict[str, float]:
    """Seconds per 1,000 events of each stage, measured on the first `n` events."""
    from sideband.events import iter_particles
    from sideband.features.constituents import _point_clouds
    from sideband.features.substructure import _jet_columns, _leading_jets, dijet_features

    start = time.perf_counter()
    chunk = next(iter(iter_particles(path, chunk_size=n)))
    t_read = time.perf_counter() - start
    start = time.perf_counter()
    leading = _leading_jets(chunk["particles"], r=1.0, min_jet_pt_gev=20.0)
    t_cluster = time.perf_counter() - start
    start = time.perf_counter()
    dijet_features(_jet_columns(leading, r=1.0, axes="KT_Axes"))
    t_nsub = time.perf_counter() - start
    start = time.perf_counter()
    _point_clouds(leading, 279)
    t_clouds = time.perf_counter() - start
    per_k = 1000.0 / n
    return {
        "events": n,
        "read_hdf5_s_per_1k": round(t_read * per_k, 3),
        "antikt_and_constituents_s_per_1k": round(t_cluster * per_k, 3),
        "nsubjettiness_and_features_s_per_1k": round(t_nsub * per_k, 3),
        "point_clouds_s_per_1k": round(t_clouds * per_k, 3),
    }


def throughput(args: argparse.Namespace) -> None:
    runs = {
        "iterative": ("iterative", 1, False),
        "iterative_with_point_clouds": ("iterative", 1, True),
        "dask_1_worker": ("dask", 1, False),
        "dask_2_workers": ("dask", 2, False),
    }
    results, tables = {}, {}
    for name, (executor, workers, clouds) in runs.items():
        with tempfile.TemporaryDirectory(prefix="sideband-bench-") as tmp:
            start = time.perf_counter()
            table = extract_features(
                args.input,
                executor=executor,
                workers=workers,
                chunk_size=args.chunk_size,
                max_events=args.max_events,
                progress=False,
                point_cloud_dir=Path(tmp) / "clouds" if clouds else None,
            )
            wall = time.perf_counter() - start
        tables[name] = table
        results[name] = {
            "executor": executor,
            "workers": workers,
            "point_clouds": clouds,
            "wall_s": round(wall, 2),
            "events_in": args.max_events,
            "events_with_two_jets": len(table),
            "events_per_s": round(args.max_events / wall, 1),
            "events_per_s_per_worker": round(args.max_events / wall / workers, 1),
        }
        print(name, results[name], flush=True)
    reference = tables["iterative"]
    for table in tables.values():
        for column in FEATURE_COLUMNS:
            np.testing.assert_array_equal(table.columns[column], reference.columns[column])
    speedup = results["dask_1_worker"]["wall_s"] / results["dask_2_workers"]["wall_s"]
    breakdown = _stage_breakdown(args.input, args.chunk_size)
    print("stages", breakdown)
    write_json(
        args.out / "feature_throughput.json",
        {
            "what": (
                "read LHCO-style raw HDF5 + anti-kT R=1.0 clustering (fastjet) + dijet features "
                "(+ point clouds), chunk work items on coffea executors; identical features in "
                "every run"
            ),
            "input": str(args.input),
            "chunk_size": args.chunk_size,
            **environment(args.conditions),
            "results": results,
            "dask_speedup_2_over_1_workers": round(speedup, 3),
            "stage_breakdown_one_process": breakdown,
        },
    )
    print("speedup 2 over 1 Dask workers:", round(speedup, 2))


def _repeat_file(src: Path, dst: Path, times: int) -> int:
    """Write `src` (LHCO raw HDF5) `times` over into `dst`, same layout; returns the rows."""
    import h5py
    import hdf5plugin  # noqa: F401  (blosc filter)
    import tables

    from sideband.events.lhco import lhco_raw_frame

    with h5py.File(src, "r") as fh:
        ds = fh["df/block0_values"]
        n, n_cols = ds.shape
        total = n * times
        with tables.open_file(str(dst), mode="w") as h5:
            out = lhco_raw_frame(h5, total, n_cols)
            step = 2000
            for k in range(times):
                for a in range(0, n, step):
                    b = min(a + step, n)
                    out[k * n + a : k * n + b] = ds[a:b]
    return total


_CHILD = """
import json, resource, sys, tempfile, time
from pathlib import Path
from sideband.features import extract_features
path, chunk = sys.argv[1], int(sys.argv[2])
with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    table = extract_features(path, chunk_size=chunk, progress=False,
                             point_cloud_dir=Path(tmp) / "clouds")
    wall = time.perf_counter() - start
print(json.dumps({"events_with_two_jets": len(table), "wall_s": round(wall, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def memory(args: argparse.Namespace) -> None:
    args.scratch.mkdir(parents=True, exist_ok=True)
    big = args.scratch / f"repeat{args.repeat}_{args.input.name}"
    start = time.perf_counter()
    rows = _repeat_file(args.input, big, args.repeat)
    made = time.perf_counter() - start
    print(f"wrote {big} ({rows} events, {big.stat().st_size / 1e6:.0f} MB) in {made:.0f} s")
    results = {}
    try:
        for name, path in (("1x", args.input), (f"{args.repeat}x", big)):
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD, str(path), str(args.chunk_size)],
                check=True,
                capture_output=True,
                text=True,
            )
            results[name] = {
                "file": str(path),
                "file_mb": round(path.stat().st_size / 1e6, 1),
                **json.loads(proc.stdout.strip().splitlines()[-1]),
            }
            print(name, results[name], flush=True)
    finally:
        if not args.keep:
            big.unlink(missing_ok=True)
    ratio = results[f"{args.repeat}x"]["peak_rss_mb"] / results["1x"]["peak_rss_mb"]
    write_json(
        args.out / "feature_memory.json",
        {
            "what": (
                "peak resident memory (ru_maxrss) of one process running extract_features "
                "(iterative executor, features + point clouds written per chunk) on a file and "
                f"on the same events repeated {args.repeat} times"
            ),
            "chunk_size": args.chunk_size,
            **environment(args.conditions),
            "results": results,
            "peak_rss_ratio_large_over_small": round(ratio, 3),
            "target": "peak memory flat in the file size, <= 2 GB",
        },
    )
    print("peak RSS ratio:", round(ratio, 3), "this process:",
          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "MB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["throughput", "memory"])
    parser.add_argument("--input", type=Path, default=SHARED / "events_lhco_like_raw.h5")
    parser.add_argument("--max-events", type=int, default=14_000)
    parser.add_argument("--chunk-size", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the repeated file")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--conditions", default="", help="recorded with the timings")
    args = parser.parse_args()
    throughput(args) if args.mode == "throughput" else memory(args)


if __name__ == "__main__":
    main()
