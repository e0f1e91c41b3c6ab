"""Tutorial: CATHODE on the bundled LHCO-like data (docs/tutorials/cathode.md).

Run it from anywhere: ``python docs/tutorials/cathode.py [--output DIR]``.
"""

# ruff: noqa: T201 (a tutorial prints its results)

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sideband.config import load_config
from sideband.evaluation.sculpting import sculpting_test
from sideband.pipeline import AnalysisResult, run_analysis
from sideband.report import write_run

REPO = Path(__file__).resolve().parents[2]


def background_sculpting(result: AnalysisResult) -> dict[str, list[float]]:
    """chi2/ndof of the true-background m_JJ spectrum after score cuts against before them
    (LaCATHODE's sculpting test), for cuts keeping 5, 10 and 20% of the SR background, with
    the mean for random selections of the same sizes."""
    table, sr, sb = result.data, result.sr_mask, result.sb_mask
    bkg_sr, bkg_sb = table.label[sr] == 0, table.label[sb] == 0  # the bundled data is labelled
    m_sr, s_sr = table.mjj[sr][bkg_sr], result.score_sr[bkg_sr]
    m_all = np.concatenate([m_sr, table.mjj[sb][bkg_sb]])
    s_all = np.concatenate([s_sr, result.score_sb[bkg_sb]])
    test = sculpting_test(m_sr, s_sr, m_all, s_all, eps_sel=(0.05, 0.1, 0.2), n_bins=50)
    return {
        "eps_sel": test.eps_sel.tolist(),
        "chi2_ndof": test.chi2_ndof.round(2).tolist(),
        "random_mean": test.random_chi2_ndof_mean.round(2).tolist(),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="CATHODE on the bundled data")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "tutorial_cathode")
    args = parser.parse_args(argv)

    # The default analysis: CATHODE template, HGB classifier, pyhf bump hunt. Relative paths in
    # the YAML (the data file) resolve against the YAML's folder.
    config = load_config(REPO / "analysis" / "default.yaml")
    # Dotted-key overrides give a new, validated configuration (a misspelt key is an error).
    # Here: at most 30 flow epochs and no progress bars.
    config = config.with_overrides(
        **{
            "output": str(args.output),
            "progress": False,
            "background.epochs": 30,
            "background.patience": 5,
        }
    )

    result = run_analysis(config)  # the five stages, in memory
    run_dir = write_run(result, args.output)  # the run folder: metrics, workspaces, scores, plots

    m = result.metrics
    m["sideband_efficiency"] = float(np.mean(result.score_sb >= result.threshold))
    m["sculpting_chi2_ndof"] = background_sculpting(result)
    print(f"SR {config.region.signal_region_gev} GeV: {m['n_signal_region']} events")
    print(f"Z before the cut: {m['z_before_cut']:.2f}")
    print(f"Z after keeping {config.bumphunt.efficiency:.0%} of the SR: {m['z_after_cut']:.2f}")
    print(f"fitted signal after the cut: {m['mu_hat_after_cut']:.0f} ± {m['mu_err_after_cut']:.0f}")
    print(f"true signal events after the cut: {m['n_signal_true_in_sr_after_cut']}")
    print(f"AUC of the score against the truth labels: {m['score_vs_truth']['auc']:.3f}")
    print(f"sideband events passing the cut: {m['sideband_efficiency']:.1%}")
    sculpt = m["sculpting_chi2_ndof"]
    print(
        f"sculpting chi2/ndof at 5, 10, 20%: {sculpt['chi2_ndof']} (random: {sculpt['random_mean']})"
    )
    print(f"run folder: {run_dir}")
    (run_dir / "tutorial.json").write_text(json.dumps(m, indent=1))
    return m


if __name__ == "__main__":
    main()
