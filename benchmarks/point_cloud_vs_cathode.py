"""Full-phase-space (point-cloud) method against the high-level CATHODE, signal injected: JSON.

Usage:
    python benchmarks/point_cloud_vs_cathode.py --raw RAW.h5 [RAW.h5 ...] [--sb 3 6]
        [--work DIR] [--max-constituents 64] [--particle-epochs 100] [--out FILE] [--merge]

On a few-core machine, run the injections as parallel processes writing one file:
``--sb 3 --merge`` and ``--sb 6 --merge`` (same ``--out``, ``--work`` and inputs; each
process adds its injections to the results already in ``--out``, under a file lock).

Inputs: LHCO raw-format particle files (default: the LHCO-like file of ../shared/data, 10,000 QCD
and 4,000 W' -> X Y signal events; add QCD made with `sideband generate --process qcd`). Each file
is clustered once (features and point clouds, cached in ``--work``).

Split (seeded): QCD with 2.3 < m_JJ < 5.0 TeV: one third held out (its SR part is the test
background), two thirds are "data". Signal: halved at random; the SR events of one half are the
test signal, the other half is the injection pool. For each ``--sb`` (S/sqrt(B) in the SR data),
pool events are drawn until the SR data holds round(sb x sqrt(B_SR)) signal events; the drawn
events inside the window join the data (sidebands too, as in real data).

Per injection, both methods see the same data events:

- CATHODE (arXiv:2109.00546): `CathodeTemplate` (MAF) on the high-level features (m_J1, Delta m_J,
  tau21 of both jets) of the data sidebands 2.3-3.3 and 3.7-5.0 TeV, sampled at masses from a
  KDE of the SR data (4x), `HGBEnsemble` k-folded (`score_kfold`, 5 folds);
- point cloud (arXiv:2310.06897): `PointCloudTemplate` on the data sidebands' point clouds (the
  M hardest constituents of both jets), sampled at KDE masses (2x, as the paper), the
  `PointCloudClassifier` k-folded (`score_kfold_point_clouds`, 5 folds).

The test set (held-out SR QCD + test signal, never seen by any model) is scored with the mean of
the fold models. Reported per method and injection: AUC, SIC at eps_B = 1e-3 and 1e-2, max SIC
(background efficiency >= `DEFAULT_MIN_BACKGROUND` test events), with bootstrap 16-84% bands of
the test set; wall times.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sideband.report import environment, jsonable, write_json

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lhco_like"
WINDOW = (2300.0, 5000.0)
SR = (3300.0, 3700.0)
HL_FEATURES = ("mj1", "delta_mj", "tau21_j1", "tau21_j2")

PARTICLE_MODEL = {"hidden": 64, "global_dim": 16, "n_layers": 4, "n_steps": 50, "batch_size": 128,
                  "lr_cosine": True, "patience": None}  # fmt: skip
JET_MODEL = {"epochs": 300, "patience": 30, "hidden_features": 64, "n_blocks": 3,
             "batch_size": 256}  # fmt: skip
CATHODE = {"flow": "maf", "n_transforms": 6, "hidden_features": (64, 64), "epochs": 100,
           "batch_size": 512, "patience": 10, "device": "cpu"}  # fmt: skip
CLASSIFIER_PC = {"jet_features": ("log_m", "abs_dphi_jj"), "max_particles": 32, "n_epochs": 30,
                 "patience": 8}  # fmt: skip


def load(raw: list[Path], work: Path, m: int) -> tuple[np.ndarray, np.ndarray, Any]:
    """High-level features (N, 4), m_JJ (N,) and the `PointCloudTable` of all files, aligned."""
    from sideband.events import read_point_clouds
    from sideband.features import extract_features
    from sideband.records import PointCloudTable

    xs, tables = [], []
    for i, path in enumerate(raw):
        folder = work / f"clouds_{i}_{path.stem}_m{m}"
        ft = extract_features(path, point_cloud_dir=folder, max_constituents=m, chunk_size=2000,
                              checkpoint_dir=work / "checkpoints", progress=False)  # fmt: skip
        pc = read_point_clouds(folder)
        order = np.argsort(ft.event_id)
        pos = order[np.searchsorted(ft.event_id, pc.event_id, sorter=order)]
        if not np.array_equal(ft.event_id[pos], pc.event_id):
            msg = f"{path}: the features and the point clouds hold different events"
            raise RuntimeError(msg)
        xs.append(np.column_stack([ft.columns[k][pos] for k in HL_FEATURES]))
        tables.append(PointCloudTable(pc.constituents, pc.mask, pc.jets, pc.mjj,
                                      pc.event_id + 10_000_000 * i, pc.label))  # fmt: skip
    table = PointCloudTable.concatenate(tables)
    return np.concatenate(xs), table.mjj, table


def split(mjj: np.ndarray, label: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    window = (mjj > WINDOW[0]) & (mjj < WINDOW[1])
    sr = (mjj > SR[0]) & (mjj < SR[1])
    qcd = np.flatnonzero(window & (label == 0))
    qcd = qcd[rng.permutation(len(qcd))]
    held, data = qcd[: len(qcd) // 3], qcd[len(qcd) // 3 :]
    sig = np.flatnonzero(label == 1)
    sig = sig[rng.permutation(len(sig))]
    test_sig, pool = sig[: len(sig) // 2], sig[len(sig) // 2 :]
    test = np.concatenate([held[sr[held]], test_sig[sr[test_sig]]])
    return {"data_qcd": data, "pool": pool[window[pool]], "test": test, "sr": sr}


def inject(parts: dict[str, np.ndarray], mjj: np.ndarray, sb: float) -> tuple[np.ndarray, int]:
    sr = parts["sr"]
    b_sr = int(sr[parts["data_qcd"]].sum())
    want = round(sb * np.sqrt(b_sr))
    pool = parts["pool"]
    cum = np.cumsum(sr[pool])
    if want > 0 and (len(cum) == 0 or cum[-1] < want):
        msg = f"S/sqrt(B) = {sb} needs {want} SR signal events; the pool holds {cum[-1]}"
        raise SystemExit(msg)
    n_take = 0 if want == 0 else int(np.searchsorted(cum, want) + 1)
    return np.concatenate([parts["data_qcd"], pool[:n_take]]), want


def metrics(y: np.ndarray, s: np.ndarray, seed: int, n_boot: int = 200) -> dict[str, Any]:
    from sideband.evaluation import band, summary

    keys = ("auc", "sic_at_1e-03", "sic_at_1e-02", "max_sic")
    out = {k: summary(y, s)[k] for k in keys}
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in keys}
    for _ in range(n_boot):
        i = rng.integers(len(y), size=len(y))
        res = summary(y[i], s[i])
        for k in keys:
            rows[k].append(res[k])
    out["bootstrap_p16_p84"] = {}
    for k, values in rows.items():
        v = np.asarray(values, dtype=np.float64)
        # None where the test set cannot reach the point (eps_B below 1 / its background)
        b = band(v) if np.isfinite(v).any() else None
        out["bootstrap_p16_p84"][k] = None if b is None else [b.lo, b.hi]
    return out


def run_cathode(x, mjj, data, test, y_test, seed) -> dict[str, Any]:
    from sideband.background import CathodeTemplate, KDEMassSampler
    from sideband.scoring import HGBEnsemble, score_kfold

    sr = (mjj > SR[0]) & (mjj < SR[1])
    sb = data[~sr[data]]
    d_sr = data[sr[data]]
    t0 = time.perf_counter()
    flow = CathodeTemplate(**CATHODE, seed=seed).fit(x[sb], mjj[sb])
    m_t = KDEMassSampler(seed=seed + 1).fit(mjj[d_sr], low_gev=SR[0], high_gev=SR[1])
    template = flow.sample(m_t.sample(4 * len(d_sr)), seed=seed + 2)
    t_template = time.perf_counter() - t0
    kf = score_kfold(x[d_sr], template, classifier=HGBEnsemble(n_members=5, max_iter=200),
                     n_folds=5, seed=seed)  # fmt: skip
    t_clf = time.perf_counter() - t0 - t_template
    out = metrics(y_test, kf.predict(x[test]), seed)
    out["seconds"] = {"template": round(t_template, 1), "classifier": round(t_clf, 1)}
    return out


def run_point_cloud(table, data, test, y_test, seed, epochs, work, tag) -> dict[str, Any]:
    from sideband.background import KDEMassSampler
    from sideband.background.point_cloud.template import PointCloudTemplate
    from sideband.scoring.point_cloud import (
        PointCloudClassifier,
        flatten_point_clouds,
        score_kfold_point_clouds,
    )

    sr = (table.mjj > SR[0]) & (table.mjj < SR[1])
    sb = table.select(data[~sr[data]])
    d_sr = table.select(data[sr[data]])
    t0 = time.perf_counter()
    template = PointCloudTemplate(
        jet_model=JET_MODEL,
        particle_model={**PARTICLE_MODEL, "epochs": epochs, "warmup_epochs": epochs // 20},
        device="cpu",
        seed=seed,
        progress=True,
        checkpoint_dir=work / f"template_{tag}",
    ).fit(sb)
    t_fit = time.perf_counter() - t0
    sampler = KDEMassSampler(seed=seed + 1).fit(d_sr.mjj, low_gev=SR[0], high_gev=SR[1])
    gen = template.sample(2 * len(d_sr), mass_sampler=sampler, seed=seed + 2)
    t_sample = time.perf_counter() - t0 - t_fit

    def flat(t):
        return flatten_point_clouds(t.constituents, t.mask, t.jets)

    kf = score_kfold_point_clouds(flat(d_sr), flat(gen),
                                  classifier=PointCloudClassifier(**CLASSIFIER_PC, device="cpu"),
                                  n_folds=5, seed=seed)  # fmt: skip
    t_clf = time.perf_counter() - t0 - t_fit - t_sample
    out = metrics(y_test, kf.predict(flat(table.select(test))), seed)
    out["seconds"] = {"fit": round(t_fit, 1), "sample": round(t_sample, 1),
                      "classifier": round(t_clf, 1)}  # fmt: skip
    out["best_epochs_particle_model"] = [int(e) for e in template.particle_model_.best_epochs_]
    # the particle model as fitted: PARTICLE_MODEL over the template's defaults (k, t exponent)
    out["particle_model_params"] = template.particle_model_.get_params()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, nargs="+", default=[SHARED / "events_lhco_like_raw.h5"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/sideband-pc-vs-cathode"))
    parser.add_argument("--sb", type=float, nargs="+", default=[3.0, 6.0])
    parser.add_argument("--max-constituents", type=int, default=64)
    parser.add_argument("--particle-epochs", type=int, default=100)
    parser.add_argument(
        "--particle-size",
        type=int,
        nargs=3,
        metavar=("HIDDEN", "GLOBAL_DIM", "N_LAYERS"),
        default=None,
        help="particle model: hidden, global_dim and n_layers (default 64 16 4; the full "
        "configuration and the quality benchmark's item 9: 128 32 6)",
    )
    parser.add_argument("--methods", nargs="+", default=["cathode", "point_cloud"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/results/point_cloud_vs_cathode.json"))  # fmt: skip
    parser.add_argument("--conditions", default="")
    parser.add_argument("--quick", action="store_true", help="tiny models: check the script runs")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other injections' results already in --out (same inputs and settings)",
    )
    args = parser.parse_args()
    if args.particle_size is not None:
        PARTICLE_MODEL.update(
            zip(("hidden", "global_dim", "n_layers"), args.particle_size, strict=True)
        )
    if args.quick:
        args.particle_epochs = 1
        JET_MODEL.update(epochs=2)
        PARTICLE_MODEL.update(n_steps=2, hidden=16, n_layers=1)
        CATHODE.update(epochs=2)
        CLASSIFIER_PC.update(n_epochs=2, n_best=1)

    args.work.mkdir(parents=True, exist_ok=True)
    x, mjj, table = load(args.raw, args.work, args.max_constituents)
    label = np.asarray(table.label)
    parts = split(mjj, label, args.seed)
    test = parts["test"]
    y_test = label[test].astype(np.int64)
    print(f"{len(label)} events ({int(label.sum())} signal); test: {int((y_test == 0).sum())} "
          f"QCD, {int(y_test.sum())} signal", flush=True)  # fmt: skip
    results: dict[str, Any] = {}
    for sb in args.sb:
        data, _ = inject(parts, mjj, sb)
        sr = parts["sr"]
        row = {"s_over_sqrt_b": sb, "signal_in_sr_data": int(label[data][sr[data]].sum()),
               "qcd_in_sr_data": int((label[data][sr[data]] == 0).sum()),
               "sideband_events": int((~sr[data]).sum())}  # fmt: skip
        if "cathode" in args.methods:
            row["cathode"] = run_cathode(x, mjj, data, test, y_test, args.seed)
            print(f"S/sqrt(B) {sb}: CATHODE {row['cathode']}", flush=True)
        if "point_cloud" in args.methods:
            row["point_cloud"] = run_point_cloud(table, data, test, y_test, args.seed,
                                                 args.particle_epochs, args.work, f"sb{sb:g}")  # fmt: skip
            print(f"S/sqrt(B) {sb}: point cloud {row['point_cloud']}", flush=True)
        row["time"] = time.strftime("%Y-%m-%d %H:%M:%S")
        results[f"sb_{sb:g}"] = row
        record = {
            "what": "point-cloud template + point-cloud classifier (arXiv:2310.06897) against the "
                    "high-level CATHODE on the same LHCO-like events, signal injected",
            "inputs": [str(p) for p in args.raw],
            "n_events": {"all": len(label), "signal": int(label.sum()),
                         "test_qcd": int((y_test == 0).sum()), "test_signal": int(y_test.sum())},
            "settings": {"max_constituents": args.max_constituents,
                         "particle_model": {**PARTICLE_MODEL, "epochs": args.particle_epochs},
                         "jet_model": JET_MODEL, "cathode": CATHODE,
                         "point_cloud_classifier": CLASSIFIER_PC, "seed": args.seed,
                         "window_gev": WINDOW, "sr_gev": SR},
            **environment(args.conditions),
            "results": results,
        }  # fmt: skip
        if args.merge:
            merge_into(args.out, record)
        else:
            write_json(args.out, record)


def merge_into(out: Path, record: dict[str, Any]) -> None:
    """Write `record` to `out`, keeping the results of `out` for other injections.

    Several processes (one per injection) may call this on one file: the read-merge-write runs
    under an exclusive lock (a file in the temporary folder named after `out`'s path, so none is
    left beside the results). The earlier file must hold the same inputs, event
    counts and settings, else its results are not comparable and this raises (nothing written).
    """
    import fcntl  # POSIX only, as the parallel runs this serves

    out.parent.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(str(out.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"sideband-merge-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = dict(record)
        if out.exists():
            earlier = json.loads(out.read_text())
            new = jsonable(record)
            for key in ("inputs", "n_events", "settings"):
                was, now = earlier.get(key), new[key]
                if was != now:
                    if isinstance(was, dict) and isinstance(now, dict):
                        what = sorted(k for k in {*was, *now} if was.get(k) != now.get(k))
                    else:
                        what = f"{was!r} vs {now!r}"
                    raise SystemExit(
                        f"--merge: {out} was written with other {key} (differing: {what}); "
                        "give another --out or leave out --merge"
                    )
            merged["results"] = {**earlier.get("results", {}), **record["results"]}
            # conditions of every run that wrote the file, once each
            parts = [*(earlier.get("conditions") or "").split(" | "), record["conditions"]]
            merged["conditions"] = " | ".join(dict.fromkeys(c for c in parts if c))
        write_json(out, merged)


if __name__ == "__main__":
    main()
