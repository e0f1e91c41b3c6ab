"""Supervised sanity check of the point-cloud classifier on the LHCO-like events; write JSON.

Usage: python benchmarks/point_cloud_classifier.py [--raw RAW.h5] [--work DIR] [--seed 0]
       [--epochs 20] [--max-particles 64] [--threads 1] [--out benchmarks/results]

QCD (label 0) vs W' -> XY signal (label 1) of the LHCO-like raw file
(/work/shared/data/lhco_like/events_lhco_like_raw.h5, 14k events, 4k signal): the particles are
clustered once (`extract_features` with ``point_cloud_dir``, cached in ``--work``), the events
are split 50/50 (stratified, seeded) into training and test halves, and

* `PointCloudClassifier` learns from the constituents of the two leading jets plus the jets'
  mass, multiplicity and |Δφ_JJ| (``jet_features`` without pT and η, so it cannot rebuild
  m_JJ, which alone separates the 3.5 TeV signal from the falling QCD spectrum);
* `HGBEnsemble` learns from the high-level features of the same events (m_J1, Δm_J, τ21 of
  both jets; no m_JJ).

Both are evaluated on the test half over the whole mass range and in the 3.3-3.7 TeV signal
region (AUC, SIC at background efficiencies 1e-4..1e-2, max SIC with >= 25 background events).
This only checks that the architecture sees the signal; the weakly supervised numbers of the
issue come later. Timings are wall-clock seconds with ``--threads`` torch/OpenMP threads.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

RAW = Path("/work/shared/data/lhco_like/events_lhco_like_raw.h5")
HIGH_LEVEL = ("mj1", "delta_mj", "tau21_j1", "tau21_j2")
SR_GEV = (3300.0, 3700.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, default=RAW)
    parser.add_argument("--work", type=Path, default=Path("/tmp/sideband_pc_benchmark"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--max-particles", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--conditions", default="2-core CPU dev machine, shared with other workers")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from sideband.evaluation.metrics import summary
    from sideband.events import read_point_clouds
    from sideband.features import extract_features
    from sideband.report import package_versions, write_json
    from sideband.scoring import HGBEnsemble
    from sideband.scoring.classifiers import stratified_split
    from sideband.scoring.point_cloud import PointCloudClassifier, flatten_point_clouds

    clouds_dir = args.work / "clouds"
    features_file = args.work / "features.npz"
    if not features_file.exists():
        table = extract_features(args.raw, point_cloud_dir=clouds_dir, progress=False)
        np.savez(
            features_file,
            event_id=table.event_id,
            **{k: np.asarray(v) for k, v in table.columns.items()},
        )
    feats = np.load(features_file)
    clouds = read_point_clouds(clouds_dir)
    pos = {int(e): i for i, e in enumerate(feats["event_id"])}
    rows = np.array([pos[int(e)] for e in clouds.event_id])  # feature rows in cloud order
    if clouds.label is None:
        msg = f"{args.raw} has no signal labels; the supervised check needs them"
        raise SystemExit(msg)
    y = clouds.label.astype(np.int64)
    mjj = clouds.mjj
    X_hl = np.column_stack([feats[k][rows] for k in HIGH_LEVEL])
    X_pc = flatten_point_clouds(clouds.constituents, clouds.mask, clouds.jets)
    train, test = stratified_split(y, 0.5, np.random.default_rng(args.seed))
    in_sr = (mjj[test] > SR_GEV[0]) & (mjj[test] < SR_GEV[1])

    pc = PointCloudClassifier(
        hidden=args.hidden,
        jet_features=("log_m", "log_n", "abs_dphi_jj"),
        max_particles=args.max_particles,
        n_epochs=args.epochs,
        patience=None,
        n_best=5,
        device="cpu",
        n_threads=args.threads,
        random_state=args.seed,
    )
    t0 = time.perf_counter()
    pc.fit(X_pc[train], y[train])
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    s_pc = pc.decision_function(X_pc[test])
    t_score = time.perf_counter() - t0

    hgb = HGBEnsemble(n_members=5, n_threads=args.threads, random_state=args.seed)
    t0 = time.perf_counter()
    hgb.fit(X_hl[train], y[train])
    t_hgb = time.perf_counter() - t0
    s_hgb = hgb.decision_function(X_hl[test])

    results = {}
    for name, s in (("point_cloud", s_pc), ("hgb_high_level", s_hgb)):
        results[name] = {
            "all_masses": summary(y[test], s),
            "signal_region": summary(y[test][in_sr], s[in_sr]),
        }
    n_train = len(train)
    out = {
        "what": "supervised QCD vs W'->XY on the LHCO-like raw file (sanity check)",
        "data": str(args.raw),
        "n_events": len(y),
        "n_signal": int(y.sum()),
        "n_train": n_train,
        "n_test": len(test),
        "n_test_signal_region": int(in_sr.sum()),
        "signal_region_gev": list(SR_GEV),
        "seed": args.seed,
        "point_cloud_params": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in pc.get_params().items()
        },
        "point_cloud_best_epochs": pc.best_epochs_.tolist(),
        "point_cloud_val_loss": pc.val_loss_.tolist(),
        "high_level_features": list(HIGH_LEVEL),
        "results": results,
        "timing": {
            "threads": args.threads,
            "conditions": args.conditions,
            "point_cloud_fit_s": t_fit,
            "point_cloud_train_events_per_s": n_train * args.epochs / t_fit,
            "point_cloud_score_s": t_score,
            "point_cloud_score_events_per_s": len(test) / t_score,
            "hgb_fit_s": t_hgb,
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "versions": package_versions(),
    }
    path = write_json(args.out / "point_cloud_classifier_supervised.json", out)
    for name, r in results.items():
        a, sr = r["all_masses"], r["signal_region"]
        print(
            f"{name:15s} AUC {a['auc']:.4f} max SIC {a['max_sic']:.2f} | SR: AUC "
            f"{sr['auc']:.4f} max SIC {sr['max_sic']:.2f}"
        )
    print(f"fit {t_fit:.0f} s, score {t_score:.1f} s; wrote {path}")


if __name__ == "__main__":
    main()
