"""Time the sliding-window search on the bundled data, with and without its signal; write JSON.

Usage: python benchmarks/scan_bundled.py [--config analysis/scan.yaml] [--out benchmarks/results]
       [--background-only] [--work runs/bench_scan]

Writes ``scan_<config stem>.json``: wall time of the whole scan and of its parts (template
training, each window, the global-significance toys), the table of local Z, mu-hat and limits
per window and cut, and the global significance. Each run keeps its window files in ``--work``,
so a killed benchmark resumes (its timings then cover only the windows redone; ``resumed_windows``
says how many were reused).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from sideband.config import load_config
from sideband.report import environment, write_json
from sideband.scan import run_scan


def _timed_scan(config, work: Path) -> dict:  # type: ignore[no-untyped-def]
    done_before = len(list((work / "windows").glob("window_*.json"))) if work.is_dir() else 0
    start = time.perf_counter()
    result = run_scan(config, out_dir=work, plots=True)
    wall = time.perf_counter() - start
    windows = result.window_records
    template = [w.get("template_seconds") for w in windows]
    return {
        "wall_s": round(wall, 1),
        "resumed_windows": done_before,
        "window_seconds": [
            None if w.get("seconds") is None else round(w["seconds"], 1) for w in windows
        ],
        "window_template_seconds": [None if t is None else round(t, 1) for t in template],
        "window_score_seconds": [
            None if w.get("score_seconds") is None else round(w["score_seconds"], 1)
            for w in windows
        ],
        "global_significance": result.global_significance,
        "table": [
            {
                k: r[k]
                for k in (
                    "sr_low_gev",
                    "sr_high_gev",
                    "efficiency",
                    "status",
                    "z",
                    "z_signed",
                    "mu_hat",
                    "mu_err",
                    "upper_limit",
                    "n_signal_true_in_sr",
                    "error",
                )
            }
            for r in result.rows
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=Path("analysis/scan.yaml"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--work", type=Path, default=Path("runs/bench_scan"))
    parser.add_argument("--background-only", action="store_true",
                        help="also scan the data without its signal")  # fmt: skip
    parser.add_argument("--conditions", default="", help="recorded with the timings")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")  # fmt: skip
    config = load_config(args.config).with_overrides(progress=False)
    runs = {"with_signal": config}
    if args.background_only:
        runs["background_only"] = config.with_overrides(**{"data.remove_signal": True})
    path = args.out / f"scan_{args.config.stem}.json"
    results = {}
    for name, cfg in runs.items():
        results[name] = _timed_scan(cfg, args.work / name)
        print(name, results[name]["wall_s"], "s")
        write_json(
            path,
            {
                "what": (
                    "sideband scan on the bundled data (with its injected signal, and without it "
                    "when --background-only): wall time of the whole scan and of each window, the "
                    "table and the global significance"
                ),
                "config": str(args.config),
                **environment(args.conditions),
                "results": results,
            },
        )


if __name__ == "__main__":
    main()
