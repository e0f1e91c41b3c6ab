"""Events per second when scoring many events with a large `HGBEnsemble`; write JSON.

Usage:
    python benchmarks/scoring_throughput.py [--n-events 1000000] [--n-members 50]
        [--train-rows 40000] [--device cpu|cuda] [--threads N] [--train-threads 1]
        [--time-limit-s 300]
        [--methods NAME ...] [--model-cache FILE.pkl] [--conditions TEXT] [--out DIR]

Model: an `HGBEnsemble` of ``--n-members`` members (default 50), ``max_iter=200`` and the
package's default early stopping (20% validation split per member, 10 rounds without
improvement), trained on ``--train-rows`` rows of the LHCO-like features file
``../shared/data/lhco_like/events_lhco_like.features.h5`` (half signal, half QCD, all m_JJ;
features `sideband.evaluate.DEFAULT_FEATURES`: mj1, delta_mj, tau21_j1, tau21_j2 in GeV / 1).
Training time is recorded but is not the benchmark. ``--data synthetic`` (or a missing file)
uses a seeded Gaussian toy of the same shape instead; the JSON says which. ``--model-cache``
pickles the trained ensemble to that path (outside the repository) and loads it on later runs
with the same settings (only load caches you wrote yourself: pickle runs code).

Events scored: ``--n-events`` rows drawn with replacement from the whole file (seeded).

Methods (``--methods``, default all that apply):

* ``sklearn_1t`` / ``sklearn_all``: ``HGBEnsemble.predict_proba`` with 1 / all OpenMP threads;
* ``compiled_bitvector_1t`` / ``_all``: `sideband.scoring.compiled.CompiledTrees`, bit-vector
  strategy, float64, ``score(X, n_threads=1 / all)`` (batches spread over Python threads, torch
  intra-op threads 1);
* ``compiled_bitvector_intraop_all``: the same, one batch at a time with
  ``torch.set_num_threads(all)`` (torch's own parallelism inside each operation);
* ``compiled_traversal_1t`` / ``_all``: as ``compiled_bitvector``, gather-based tree traversal;
* ``onnxruntime_1t`` / ``_all``: `sideband.scoring.onnx_scorer.export_onnx` + `OnnxScorer`,
  batches of 65,536 events (skipped with a note when that module is absent);
* with ``--device cuda``: ``cuda_bitvector_f64``, ``cuda_bitvector_f32``,
  ``cuda_traversal_f64`` (numpy in, numpy out: host-device copies included).

"All" threads = ``--threads`` (default ``os.cpu_count()``), set explicitly (threadpoolctl for
scikit-learn, ``torch.set_num_threads``, onnxruntime ``intra_op_num_threads``), so the result
does not depend on OMP_NUM_THREADS, which is recorded. Each method scores the events in chunks
of 65,536 (1,048,576 on CUDA) after an untimed warm-up on 4,096 events, and stops after the
chunk that passes ``--time-limit-s``; events/s is over the events it scored (``events_scored``). Every
method's scores are compared with scikit-learn's on the common events (max |difference|). The
load average before and after each method is recorded: the dev machine is shared.

Writes ``scoring_throughput_cpu.json`` (``_gpu.json`` with ``--device cuda``) into ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sideband.evaluate import DEFAULT_FEATURES
from sideband.report import environment, package_versions, write_json
from sideband.scoring import HGBEnsemble
from sideband.scoring.compiled import CompiledTrees

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lhco_like"
FEATURES_FILE = SHARED / "events_lhco_like.features.h5"
CPU_METHODS = (
    "sklearn_1t",
    "sklearn_all",
    "compiled_bitvector_1t",
    "compiled_bitvector_all",
    "compiled_bitvector_intraop_all",
    "compiled_traversal_1t",
    "compiled_traversal_all",
    "onnxruntime_1t",
    "onnxruntime_all",
)
CUDA_METHODS = ("cuda_bitvector_f64", "cuda_bitvector_f32", "cuda_traversal_f64")


def load_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(X_train, y_train, X_score, description)."""
    rng = np.random.default_rng(args.seed)
    half = args.train_rows // 2
    if args.data == "lhco_like" and FEATURES_FILE.exists():
        from sideband.events import read_features

        table = read_features(FEATURES_FILE)
        X = table.x(list(DEFAULT_FEATURES))
        y = np.asarray(table.label, dtype=np.int64)
        rows = np.concatenate(
            [
                rng.choice(np.flatnonzero(y == 1), half, replace=False),
                rng.choice(np.flatnonzero(y == 0), args.train_rows - half, replace=False),
            ]
        )
        X_score = X[rng.integers(0, len(X), args.n_events)]
        what = (
            f"{FEATURES_FILE.name}: training {half} signal + {args.train_rows - half} QCD rows "
            f"(all m_JJ), features {list(DEFAULT_FEATURES)}; scored {args.n_events} rows drawn "
            f"with replacement from all {len(X)} rows"
        )
        return X[rows], y[rows], X_score, what
    d = len(DEFAULT_FEATURES)
    y = np.r_[np.ones(half), np.zeros(args.train_rows - half)].astype(np.int64)
    shift = np.where(y[:, None] == 1, 0.5, 0.0)
    X = rng.normal(size=(args.train_rows, d)) * (1 + shift) + shift
    X_score = rng.normal(size=(args.n_events, d)) * 1.2 + 0.2
    reason = "--data synthetic" if args.data == "synthetic" else f"{FEATURES_FILE} is absent"
    what = f"synthetic Gaussian toy ({reason}): {args.train_rows} rows, {d} features"
    return X, y, X_score, what


def train(args: argparse.Namespace, X: np.ndarray, y: np.ndarray, what: str) -> tuple[Any, dict]:
    """The ensemble (trained, or loaded from --model-cache when its settings match)."""
    key = hashlib.sha256(
        json.dumps([what, args.n_members, args.seed, X.shape, float(X.sum())]).encode()
    ).hexdigest()[:16]
    cache = Path(args.model_cache) if args.model_cache else None
    if cache is not None and cache.exists():
        with cache.open("rb") as handle:
            stored = pickle.load(handle)
        if stored.get("key") == key:
            return stored["model"], {**stored["info"], "loaded_from_cache": str(cache)}
    model = HGBEnsemble(n_members=args.n_members, max_iter=200, random_state=args.seed)
    model.n_threads = args.train_threads
    start = time.perf_counter()
    model.fit(X, y)
    info = {
        "training_s": round(time.perf_counter() - start, 1),
        "training_threads": args.train_threads,
    }
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with cache.open("wb") as handle:
            pickle.dump({"key": key, "model": model, "info": info}, handle)
    return model, info


def ensemble_stats(model: HGBEnsemble) -> dict[str, Any]:
    iters = [int(m.n_iter_) for m in model.members_]
    trees = [p for m in model.members_ for (p,) in m._predictors]
    depth = [p.get_max_depth() for p in trees]
    leaves = [p.get_n_leaf_nodes() for p in trees]
    return {
        "n_members": len(iters),
        "max_iter": model.max_iter,
        "early_stopping": model.early_stopping,
        "iterations_per_member": {
            "min": min(iters),
            "mean": float(np.mean(iters)),
            "max": max(iters),
        },
        "n_trees": len(trees),
        "tree_depth": {"mean": float(np.mean(depth)), "max": max(depth)},
        "leaves_per_tree": {"mean": float(np.mean(leaves)), "max": max(leaves)},
    }


def timed(
    fn: Callable[[np.ndarray], np.ndarray], X: np.ndarray, chunk: int, limit_s: float
) -> tuple[np.ndarray, float, int]:
    """(scores of the events scored, seconds, events scored) after an untimed warm-up."""
    fn(X[: min(4096, len(X))])
    out = []
    done = 0
    start = time.perf_counter()
    while done < len(X):
        out.append(fn(X[done : done + chunk]))
        done += len(out[-1])
        if time.perf_counter() - start > limit_s:
            break
    return np.concatenate(out), time.perf_counter() - start, done


def _compiled_cpu(
    name: str, model: HGBEnsemble, n_thr: int, info: dict[str, Any]
) -> Callable[[np.ndarray], np.ndarray]:
    strategy = name.split("_")[1]
    start = time.perf_counter()
    compiled = CompiledTrees.from_hgb(model, device="cpu", strategy=strategy)
    info |= {
        "threads": n_thr,
        "compile_s": round(time.perf_counter() - start, 2),
        "compiled_mb": round(compiled.memory_bytes() / 1e6, 1),
    }
    if "intraop" in name:
        torch.set_num_threads(n_thr)
        info |= {"parallelism": "torch intra-op", "batch_size": compiled._auto_batch()}
        return compiled.score
    info |= {"parallelism": "batches over threads", "batch_size": compiled._auto_batch(1)}
    return lambda x: compiled.score(x, n_threads=n_thr)


def make_method(
    name: str, model: HGBEnsemble, threads: int, tmp: Path, info: dict[str, Any]
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The scoring function of method `name` (None when it cannot run here; `info` says why)."""
    n_thr = 1 if name.endswith("_1t") else threads
    if name.startswith("sklearn"):
        model.n_threads = n_thr
        info["threads"] = n_thr
        return lambda x: model.predict_proba(x)[:, 1]
    if name.startswith("compiled"):
        return _compiled_cpu(name, model, n_thr, info)
    if name.startswith("onnxruntime"):
        try:
            from sideband.scoring.onnx_scorer import OnnxScorer, export_onnx
        except ImportError as err:
            info["skipped"] = f"sideband.scoring.onnx_scorer not importable: {err}"
            return None
        path = tmp / "model.onnx"
        if not path.exists():
            start = time.perf_counter()
            export_onnx(model, path, feature_names=list(DEFAULT_FEATURES))
            info["export_s"] = round(time.perf_counter() - start, 2)
        scorer = OnnxScorer.load(path, n_threads=n_thr)
        info |= {"threads": n_thr, "batch_size": 65536}
        names = list(DEFAULT_FEATURES)
        return lambda x: scorer.score(x, feature_names=names, check_units=False)
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            info["skipped"] = "CUDA is not available"
            return None
        _, strategy, prec = name.split("_")
        dtype = torch.float64 if prec == "f64" else torch.float32
        start = time.perf_counter()
        compiled = CompiledTrees.from_hgb(model, device="cuda", strategy=strategy, dtype=dtype)
        info |= {
            "compile_s": round(time.perf_counter() - start, 2),
            "compiled_mb": round(compiled.memory_bytes() / 1e6, 1),
            "batch_size": compiled._auto_batch(),
            "gpu": torch.cuda.get_device_name(0),
        }
        return compiled.score
    msg = f"unknown method {name!r}"
    raise SystemExit(msg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-events", type=int, default=1_000_000)
    parser.add_argument("--n-members", type=int, default=50)
    parser.add_argument("--train-rows", type=int, default=40_000)
    parser.add_argument("--data", choices=("lhco_like", "synthetic"), default="lhco_like")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--train-threads", type=int, default=1)
    parser.add_argument("--time-limit-s", type=float, default=300.0)
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--model-cache", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conditions", default="")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    methods = args.methods or [*CPU_METHODS, *(CUDA_METHODS if args.device == "cuda" else ())]
    X_train, y_train, X_score, what = load_data(args)
    model, train_info = train(args, X_train, y_train, what)
    result: dict[str, Any] = {
        "benchmark": "scoring_throughput",
        "data": what,
        "n_events": args.n_events,
        "time_limit_s_per_method": args.time_limit_s,
        "model": {**ensemble_stats(model), **train_info},
        "torch_threads_default": torch.get_num_threads(),
        "all_threads": args.threads,
        "methods": {},
        "environment": environment(args.conditions),
        "extra_versions": {
            **package_versions(["onnx", "onnxruntime"]),
            "torch_cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
    }
    out = Path(args.out) / f"scoring_throughput_{'gpu' if args.device == 'cuda' else 'cpu'}.json"
    reference: np.ndarray | None = None
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"scoring_throughput_{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    for name in methods:
        info: dict[str, Any] = {}
        fn = make_method(name, model, args.threads, tmp, info)
        if fn is None:
            print(f"{name}: skipped ({info['skipped']})")
            result["methods"][name] = info
            continue
        chunk = 1 << 20 if name.startswith("cuda") else 1 << 16
        load_before = os.getloadavg()
        scores, seconds, done = timed(fn, X_score, chunk, args.time_limit_s)
        info |= {
            "events_scored": done,
            "seconds": round(seconds, 2),
            "events_per_s": round(done / seconds),
            "load_avg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        }
        if name.startswith("sklearn") and (reference is None or done > len(reference)):
            reference = scores
        if reference is not None:
            n = min(len(reference), done)
            info["max_abs_diff_vs_sklearn"] = float(np.max(np.abs(scores[:n] - reference[:n])))
            info["compared_events"] = n
        result["methods"][name] = info
        print(f"{name}: {info}", flush=True)
        write_json(out, result)
    speed = {k: v["events_per_s"] for k, v in result["methods"].items() if "events_per_s" in v}
    if "sklearn_1t" in speed:
        result["speedup_vs_sklearn_1t"] = {
            k: round(v / speed["sklearn_1t"], 2) for k, v in speed.items()
        }
    if "sklearn_all" in speed:
        result["speedup_vs_sklearn_all"] = {
            k: round(v / speed["sklearn_all"], 2) for k, v in speed.items()
        }
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
