"""Cost of the background templates at the papers' sizes: CATHODE per SR against SIGMA once.

Usage: python benchmarks/template_cost.py [--device auto] [--epochs 100] [--only cathode|sigma]
       [--quick] [--out benchmarks/results]

Data: ``../shared/data/lhco_like/events_lhco_like.features.h5``, all QCD in the window
2800-5000 GeV plus signal rows until S/sqrt(B) = 2.2 in the SR 3300-3700 GeV; features mj1,
delta_mj, tau21_j1, tau21_j2, delta_r. Measured:

* CATHODE (the paper's flow: 15 MAF transforms, one hidden layer of 128, batch 256, lr 1e-4,
  10-epoch ensemble) trained on the sidebands of the benchmark SR: seconds per epoch, epochs,
  sampling 4 x the SR data. A scan trains one such flow per SR (on nearly the same events), so 10 SRs cost
  10 trainings.
* SIGMA (the paper's network: width 256, 4 blocks, dropout 0.2, batch norm, batch 4096,
  lr 3e-4; exact-NLL selection) trained once on all the data; then for 10 SRs of 400 GeV
  (3000-3400 ... 3900-4300 GeV) `at_region` + sampling 4 x that SR's data, each timed.

A training killed part way (e.g. by a 10-minute limit per command) resumes from its checkpoint
in ``--work`` on the next call, so a full-length training can span several calls. The JSON
records epochs done, seconds per epoch of the last call (its time / epochs it trained) and the
estimated full training time (seconds per epoch x epochs done).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("template_cost")
HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "lhco_like" / "events_lhco_like.features.h5"
FEATURES = ("mj1", "delta_mj", "tau21_j1", "tau21_j2", "delta_r")
WINDOW, SR = (2800.0, 5000.0), (3300.0, 3700.0)
SCAN = [(3000.0 + 100 * k, 3400.0 + 100 * k) for k in range(10)]


def load(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """All window QCD + injected signal (S/sqrt(B) = 2.2 in the SR): X (N, 5), m (N,) GeV."""
    from sideband.events import read_features

    t = read_features(DATA)
    m, x, y = t.mjj, t.x(FEATURES), t.label
    win = (m > WINDOW[0]) & (m < WINDOW[1])
    qcd = np.flatnonzero(win & (y == 0))
    sig = np.random.default_rng(seed).permutation(np.flatnonzero(win & (y == 1)))
    in_sr = (m > SR[0]) & (m < SR[1])
    target = round(2.2 * np.sqrt(in_sr[qcd].sum()))
    n_rows = int(np.searchsorted(np.cumsum(in_sr[sig]), target)) + 1
    rows = np.concatenate([qcd, sig[:n_rows]])
    return x[rows], m[rows]


def write(path: Path, obj: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=1)
    os.replace(tmp, path)


def timed_fit(model: Any, X: np.ndarray, m: np.ndarray, before: dict[str, Any]) -> dict[str, Any]:
    """Fit (resuming from the model's checkpoint) and time it; ``before``: this model's record
    from an earlier call (epochs it had done then)."""
    ckpt = Path(model.checkpoint_dir) / "fit_loop.pt"
    done_before = before.get("epochs_done", 0) if ckpt.exists() else 0
    t0 = time.perf_counter()
    model.fit(X, m)
    seconds = time.perf_counter() - t0
    h = model.history_
    trained_now = int(h.epochs.size) - done_before
    per_epoch = seconds / trained_now if trained_now > 0 else before.get("seconds_per_epoch")
    return {
        "epochs_done": int(h.epochs.size),
        "stopped_early": bool(h.stopped_early),
        "best_epochs": h.best_epochs.tolist(),
        "best_val_loss": float(h.val_loss.min()),
        "seconds_this_call": seconds,
        "epochs_this_call": trained_now,
        "seconds_per_epoch": per_epoch,
        "train_seconds_estimate": None if per_epoch is None else per_epoch * int(h.epochs.size),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=100, help="epochs per training (max)")
    p.add_argument("--quick", action="store_true", help="2 epochs each, 20k events: a smoke run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=Path("runs/template_cost"), help="checkpoints")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--only", choices=["cathode", "sigma"], default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import torch

    import sideband
    from sideband.background import (
        CathodeTemplate,
        HistogramMassSampler,
        KDEMassSampler,
        SigmaTemplate,
    )
    from sideband.background.training import resolve_device

    device = resolve_device(args.device)
    X, m = load(args.seed)
    if args.quick:
        keep = np.random.default_rng(args.seed).permutation(len(m))[:20000]
        X, m = X[keep], m[keep]
    epochs = 2 if args.quick else args.epochs
    in_sr = (m > SR[0]) & (m < SR[1])
    work = args.work / ("quick" if args.quick else device.type)
    out = args.out / f"template_cost_{'quick' if args.quick else device.type}.json"
    args.out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    record.update({
        "what": "training and sampling cost of CATHODE (per SR) and SIGMA (once + per SR)",
        "data": {"file": str(DATA), "features": FEATURES, "window_gev": WINDOW, "sr_gev": SR,
                 "n_events": len(m), "n_sr": int(in_sr.sum()), "quick": args.quick},
        "machine": {"device": str(device), "gpu": torch.cuda.get_device_name(0)
                    if device.type == "cuda" else None, "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "platform": platform.platform()},
        "versions": {"sideband": sideband.__version__, "torch": torch.__version__},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })  # fmt: skip
    n_template = 4 * int(in_sr.sum())

    if args.only in (None, "cathode"):
        cathode = CathodeTemplate(
            n_transforms=15, hidden_features=(128,), epochs=epochs, batch_size=256,
            learning_rate=1e-4, patience=10, n_ensemble=10 if not args.quick else 1,
            device=args.device, seed=args.seed, progress=True, checkpoint_dir=work / "cathode",
        )  # fmt: skip
        fit = timed_fit(cathode, X[~in_sr], m[~in_sr], record.get("cathode", {}))
        t0 = time.perf_counter()
        masses = (
            KDEMassSampler(seed=1).fit(m[in_sr], low_gev=SR[0], high_gev=SR[1]).sample(n_template)
        )
        cathode.sample(masses, seed=2)
        fit["sample_seconds"] = time.perf_counter() - t0
        fit["params"] = cathode.get_params()
        record["cathode"] = fit
        write(out, record)
        log.info("CATHODE: %s", {k: v for k, v in fit.items() if k != "params"})

    if args.only in (None, "sigma"):
        sigma = SigmaTemplate(
            hidden_features=256, n_blocks=4, dropout=0.2, batch_norm=True, batch_size=4096,
            learning_rate=3e-4, epochs=epochs, patience=10, selection="nll", n_val_nll=4096,
            n_ensemble=1, device=args.device, seed=args.seed, progress=True,
            checkpoint_dir=work / "sigma",
        )  # fmt: skip
        fit = timed_fit(sigma, X, m, record.get("sigma", {}))
        scan = []
        for lo, hi in SCAN:
            sel = (m > lo) & (m < hi)
            t0 = time.perf_counter()
            masses = HistogramMassSampler(seed=1).fit(m[sel], low_gev=lo, high_gev=hi)
            sigma.at_region((lo, hi)).sample(4 * int(sel.sum()), mass_sampler=masses, seed=2)
            scan.append({"sr_gev": [lo, hi], "n_template": 4 * int(sel.sum()),
                         "seconds": time.perf_counter() - t0})  # fmt: skip
            log.info("SIGMA scan %s", scan[-1])
        fit["scan"] = scan
        fit["params"] = sigma.get_params()
        record["sigma"] = fit
        write(out, record)
    log.info("wrote %s", out)


if __name__ == "__main__":
    main()
