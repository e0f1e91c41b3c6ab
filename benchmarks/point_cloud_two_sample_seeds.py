"""Point-cloud two-sample AUC of saved samples with other classifier seeds: add them to a JSON.

Usage:
    python benchmarks/point_cloud_two_sample_seeds.py RESULT.json REFERENCE.npz TEMPLATE.npz
        --seeds 1 2

`point_cloud_template.py --save-samples` writes the reference and template clouds
(``samples_reference.npz``, ``samples_template_closure_clouds.npz``). This refits the
benchmark's `PointCloudClassifier` two-sample test (5 folds) on the same samples with other
seeds (other folds and initial weights) and records the AUCs under
``closure_clouds.two_sample.auc_by_classifier_seed`` of RESULT.json (the run's own seed
included), with their mean and maximum: the spread is the classifier's share of the AUC's
uncertainty. When RESULT.json was measured with another classifier (an older benchmark with
early stopping), its numbers move under ``two_sample.superseded`` and the seed list starts
afresh: pass every seed, the run's own (0) included.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _load(path: Path):
    from sideband.records import PointCloudTable

    d = np.load(path)
    n = len(d["mjj"])
    return PointCloudTable(d["constituents"], d["mask"], d["jets"], d["mjj"], np.arange(n), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("result", type=Path)
    parser.add_argument("reference", type=Path)
    parser.add_argument("template", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--classifier-particles", type=int, default=32)
    parser.add_argument("--classifier-epochs", type=int, default=30)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    from point_cloud_template import (
        TWO_SAMPLE_TARGET,
        _two_sample_auc,
        describe_two_sample_classifier,
        two_sample_classifier,
    )

    from sideband.report import write_json

    ref, gen = _load(args.reference), _load(args.template)
    result = json.loads(args.result.read_text())
    two = result["closure_clouds"]["two_sample"]
    run_seed = str(result.get("seed", 0))

    def new_classifier():
        return two_sample_classifier(args.classifier_particles, args.classifier_epochs, args.device)

    described = describe_two_sample_classifier(new_classifier())
    if two["classifier"] == described:
        by_seed = dict(two.get("auc_by_classifier_seed", {run_seed: two["auc"]}))
    else:
        # Measured with another classifier (e.g. with early stopping): keep those numbers
        # apart and start the seed list afresh, so the two are never mixed.
        superseded = {
            "classifier": two["classifier"],
            "auc_by_classifier_seed": two.get("auc_by_classifier_seed", {run_seed: two["auc"]}),
        }
        two.clear()
        two.update(classifier=described, superseded=superseded)
        by_seed = {}
    for seed in args.seeds:
        clf = new_classifier()
        start = time.perf_counter()
        auc, sigma_null = _two_sample_auc(ref, gen, clf, seed)
        print(f"seed {seed}: AUC {auc:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
        by_seed[str(seed)] = round(auc, 4)
        two["auc_by_classifier_seed"] = dict(sorted(by_seed.items(), key=lambda kv: int(kv[0])))
        values = list(by_seed.values())
        two["auc_mean_over_seeds"] = round(float(np.mean(values)), 4)
        two["auc_max_over_seeds"] = round(float(np.max(values)), 4)
        if run_seed in by_seed:
            two["auc"] = by_seed[run_seed]
        two["null_sigma"] = round(sigma_null, 4)  # depends on the sample sizes only
        two.setdefault("target", TWO_SAMPLE_TARGET)
        write_json(args.result, result)  # after every seed: a stopped run keeps what it measured


if __name__ == "__main__":
    main()
