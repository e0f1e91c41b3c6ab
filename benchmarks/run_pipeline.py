"""Time an analysis on the bundled data, with and without its signal; write JSON.

Usage: python benchmarks/run_pipeline.py [--config analysis/default.yaml] [--out benchmarks/results]
       [--seeds 1 2 3]

Writes ``pipeline_<config name>.json`` (``pipeline_default.json`` for the default analysis).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from sideband.config import load_config
from sideband.pipeline import run_analysis
from sideband.report import package_versions, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=Path("analysis/default.yaml"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[1, 2, 3],
        help="analysis seeds of the background-only runs",
    )  # fmt: skip
    args = parser.parse_args()
    config = load_config(args.config).with_overrides(progress=False)
    rows = {}
    runs = {"with_signal": config}
    for seed in args.seeds:
        runs[f"background_only_seed{seed}"] = config.with_overrides(
            seed=seed, **{"data.remove_signal": True}
        )
    for name, cfg in runs.items():
        start = time.perf_counter()
        result = run_analysis(cfg)
        rows[name] = {"wall_s": round(time.perf_counter() - start, 1), **result.metrics}
        print(name, rows[name]["wall_s"], "s, Z before/after:",
              rows[name]["z_before_cut"], rows[name]["z_after_cut"])  # fmt: skip
    write_json(
        args.out / f"pipeline_{args.config.stem}.json",
        {
            "what": (
                "sideband run on the bundled data, with its injected signal (config seed) and "
                "without it (--remove-signal) for several analysis seeds; wall_s per run"
            ),
            "config": str(args.config),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "versions": package_versions(),
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
