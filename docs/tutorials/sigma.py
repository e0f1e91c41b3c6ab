"""Tutorial: SIGMA on the bundled LHCO-like data (docs/tutorials/sigma.md).

Run it from anywhere: ``python docs/tutorials/sigma.py [--output DIR]``.
"""

# ruff: noqa: T201 (a tutorial prints its results)

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sideband.config import load_config
from sideband.pipeline import run_analysis
from sideband.report import write_run

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="SIGMA on the bundled data")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "tutorial_sigma")
    args = parser.parse_args(argv)

    # analysis/sigma.yaml: background.method sigma, one flow-matching model per cross-fitting
    # chain trained on the SR data and the other sideband folds, its mass conditioning
    # interpolated across the SR ("context"), template masses from a histogram of the SR data.
    config = load_config(REPO / "analysis" / "sigma.yaml")
    # The YAML trains up to 100 epochs and picks epochs by the exact likelihood (an ODE solve
    # per validation event): about 7 minutes on a laptop CPU. For the tutorial: at most 30
    # epochs, epochs picked by the flow-matching loss, looser ODE tolerances (1e-4) and a
    # template twice (not four times) the size of the SR data.
    config = config.with_overrides(
        **{
            "output": str(args.output),
            "progress": False,
            "background.oversampling": 2,
            "background.sigma.epochs": 30,
            "background.sigma.patience": 5,
            "background.sigma.selection": "cfm",
            "background.sigma.atol": 1e-4,
            "background.sigma.rtol": 1e-4,
        }
    )

    result = run_analysis(config)
    run_dir = write_run(result, args.output)

    m = result.metrics
    m["sideband_efficiency"] = float(np.mean(result.score_sb >= result.threshold))
    chains = result.template_history["chains"]
    m["best_epochs"] = [c["best_epochs"] for c in chains]
    print(f"SR {config.region.signal_region_gev} GeV: {m['n_signal_region']} events")
    print(f"epochs trained: {[len(c['epochs']) for c in chains]}, best: {m['best_epochs']}")
    print(f"Z before the cut: {m['z_before_cut']:.2f}")
    print(f"Z after keeping {config.bumphunt.efficiency:.0%} of the SR: {m['z_after_cut']:.2f}")
    print(f"fitted signal after the cut: {m['mu_hat_after_cut']:.0f} ± {m['mu_err_after_cut']:.0f}")
    print(f"true signal events after the cut: {m['n_signal_true_in_sr_after_cut']}")
    print(f"AUC of the score against the truth labels: {m['score_vs_truth']['auc']:.3f}")
    print(f"sideband events passing the cut: {m['sideband_efficiency']:.1%}")
    print(f"run folder: {run_dir}")
    (run_dir / "tutorial.json").write_text(json.dumps(m, indent=1))
    return m


if __name__ == "__main__":
    main()
