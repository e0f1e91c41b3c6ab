"""Supervised and IAD classifiers on the real LHCO R&D signal region; write JSON.

Usage: python benchmarks/lhco_rnd_evaluation.py [--classifier hgb|mlp] [--seeds 0 1 2 3 4]
       [--n-members 10] [--threads 2] [--out benchmarks/results]

The split is described in `lhco_rnd_split.py`. Each seed retrains both classifiers (the split is
fixed); the JSON holds every seed, the median and the 16-84% band, and the wall time of each IAD
evaluation (training + scoring) with the given number of threads.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from lhco_rnd_split import load_split

from sideband.evaluate import make_classifier
from sideband.evaluation import band
from sideband.report import package_versions, write_json
from sideband.scoring.protocols import idealized_ad_kfold, supervised_kfold

KEYS = ("auc", "sic_at_1e-04", "sic_at_1e-03", "sic_at_1e-02", "max_sic", "seconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--classifier", choices=["hgb", "mlp"], default="hgb")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--n-members", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5, help="folds of the background pool")
    parser.add_argument("--conditions", default="idle machine",
                        help="recorded with the timings, e.g. 'machine busy with the test suite'")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    split = load_split()
    out = args.out / f"lhco_rnd_evaluation_{args.classifier}.json"
    runs: dict[str, list[dict[str, float]]] = {"supervised": [], "iad": []}
    for seed in args.seeds:
        for protocol, fn, x1 in (
            ("supervised", supervised_kfold, split.signal_train),
            ("iad", idealized_ad_kfold, split.data),
        ):
            clf = make_classifier(args.classifier, n_members=args.n_members, n_threads=args.threads)
            res = fn(x1, split.background_pool, split.signal_test, classifier=clf,
                     n_folds=args.folds, seed=seed)  # fmt: skip
            row = {"seed": seed, **{k: res.as_dict()[k] for k in KEYS}}
            runs[protocol].append(row)
            print(protocol, row, flush=True)
        # rewritten after every seed, so a stopped benchmark keeps the seeds it finished
        write_json(out, record(args, split, runs))
    print(f"wrote {out}")


def record(
    args: argparse.Namespace, split: object, runs: dict[str, list[dict[str, float]]]
) -> dict:
    summary = {}
    for protocol, rows in runs.items():
        summary[protocol] = {}
        for k in KEYS:
            b = band([r[k] for r in rows])
            summary[protocol][k] = {"median": b.median, "p16": b.lo, "p84": b.hi}
    return {
        "what": "supervised and IAD classifiers on the real LHCO R&D SR (CATHODE files)",
        "split": split.describe(),
        "classifier": args.classifier,
        "n_members": args.n_members,
        "protocol": "idealized_ad_kfold / supervised_kfold",
        "folds": args.folds,
        "threads": args.threads,
        "seeds_done": [r["seed"] for r in runs["iad"]],
        "summary": summary,
        "runs": runs,
        "max_sic_rule": ">= 25 background events kept (20% relative error on eps_B)",
        "conditions": args.conditions,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
        "versions": package_versions(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


if __name__ == "__main__":
    main()
