"""Make sideband's bundled LHCO-like dataset (``data/``) with Pythia 8.

The defaults are the exact recipe of the committed files; every number is an option. Steps:

1. Generate QCD dijets in chunks of ``--chunk-size`` triggered events (chunk ``i`` uses the seed
   ``SeedSequence(qcd_seed, spawn_key=(i,))``) and the W' -> X Y -> qqqq signal the same way,
   each chunk saved as ``.npz`` under ``--work-dir``. Existing chunks with the same settings are
   reused, so an interrupted run resumes where it stopped.
2. Assemble whatever chunks exist (``--assemble-only`` skips step 1): recluster every event with
   `sideband.features.substructure.cluster_dijets`, inject signal into the QCD until the signal
   region (``--sr-low``..``--sr-high`` GeV in m_JJ) holds ``--s-over-b`` times the QCD count
   there, shuffle with ``--shuffle-seed`` and write, in LHCO formats:

   - ``lhco_like_default.features.h5``: the mixture, label 1 = signal, 0 = QCD;
   - ``lhco_like_signal.features.h5``: the signal events not injected (for evaluation);
   - ``lhco_like_default_raw_small.h5``: particles of the first ``--n-raw-small`` mixture rows;
   - ``MANIFEST.json``: command, seeds, versions, counts, signal-region S/B, sha256, CPU time.

Run it with ``python data/make_default_dataset.py`` (about 40 CPU-minutes for the defaults on
one core; ``--workers`` splits each chunk over processes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

log = logging.getLogger("make_default_dataset")

FILES = {
    "mixture": "lhco_like_default.features.h5",
    "signal": "lhco_like_signal.features.h5",
    "raw_small": "lhco_like_default_raw_small.h5",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", type=Path, default=here, help="final files go here (data/)")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/sideband_gen"), help="chunk files")
    p.add_argument("--n-qcd", type=int, default=60_000, help="triggered QCD events")
    p.add_argument("--qcd-seed", type=int, default=1)
    p.add_argument("--n-signal", type=int, default=3_000, help="triggered signal events")
    p.add_argument("--signal-seed", type=int, default=2)
    p.add_argument("--chunk-size", type=int, default=5_000, help="triggered events per chunk")
    p.add_argument("--workers", type=int, default=1, help="Pythia processes per chunk")
    p.add_argument("--pthat-min-gev", type=float, default=1000.0)
    p.add_argument("--mass-wprime-gev", type=float, default=3500.0)
    p.add_argument("--mass-x-gev", type=float, default=500.0)
    p.add_argument("--mass-y-gev", type=float, default=100.0)
    p.add_argument("--trigger-pt-gev", type=float, default=1200.0)
    p.add_argument("--trigger-eta", type=float, default=2.5)
    p.add_argument("--sr-low-gev", type=float, default=3300.0)
    p.add_argument("--sr-high-gev", type=float, default=3700.0)
    p.add_argument("--s-over-b", type=float, default=0.05, help="injected S/B in the SR")
    p.add_argument("--shuffle-seed", type=int, default=3, help="seed of injection and shuffle")
    p.add_argument("--n-raw-small", type=int, default=300, help="mixture rows in the raw file")
    p.add_argument("--max-particles", type=int, default=700, help="particles per raw row")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--assemble-only", action="store_true", help="use existing chunks only")
    mode.add_argument("--generate-only", action="store_true", help="make chunks, no assembly")
    p.add_argument("--progress", action="store_true", help="show tqdm bars")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------
# chunks


def chunk_seed(base_seed: int, index: int) -> int:
    """Seed of chunk `index`: independent of how many chunks are made."""
    child = np.random.SeedSequence(base_seed, spawn_key=(index,))
    return int(child.generate_state(1, dtype=np.uint32)[0])


def chunk_plan(args: argparse.Namespace, process: str) -> list[dict[str, Any]]:
    """Chunks of one process: index, seed, size and file path (keyed by a settings hash)."""
    n_total = args.n_qcd if process == "qcd" else args.n_signal
    base = args.qcd_seed if process == "qcd" else args.signal_seed
    gen_kwargs = generator_kwargs(args)
    plan = []
    for i, start in enumerate(range(0, n_total, args.chunk_size)):
        size = min(args.chunk_size, n_total - start)
        seed = chunk_seed(base, i)
        key = {"process": process, "size": size, "seed": seed, "workers": args.workers}
        key.update(gen_kwargs if process == "signal" else _qcd_only(gen_kwargs))
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
        path = args.work_dir / f"{process}_s{base}_c{i:03d}_n{size}_{digest}.npz"
        plan.append({"index": i, "seed": seed, "size": size, "path": path})
    return plan


def generator_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "pthat_min_gev": args.pthat_min_gev,
        "mass_wprime_gev": args.mass_wprime_gev,
        "mass_x_gev": args.mass_x_gev,
        "mass_y_gev": args.mass_y_gev,
        "trigger_pt_gev": args.trigger_pt_gev,
        "trigger_eta": args.trigger_eta,
    }


def _qcd_only(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if not k.startswith("mass_")}


def generate_chunks(args: argparse.Namespace, process: str) -> None:
    from sideband.generate import generate_events

    args.work_dir.mkdir(parents=True, exist_ok=True)
    for chunk in chunk_plan(args, process):
        if chunk["path"].exists():
            log.info("%s chunk %d exists: %s", process, chunk["index"], chunk["path"].name)
            continue
        log.info(
            "%s chunk %d: %d events, seed %d", process, chunk["index"], chunk["size"], chunk["seed"]
        )
        kwargs = generator_kwargs(args)
        if process == "qcd":  # the masses do not apply
            kwargs = _qcd_only(kwargs)
        events = generate_events(
            process,
            chunk["size"],
            seed=chunk["seed"],
            workers=args.workers,
            progress=args.progress,
            **kwargs,
        )
        save_chunk(chunk["path"], events)
        log.info(
            "%s chunk %d done: %d tried, efficiency %.3f, %.0f CPU s",
            process,
            chunk["index"],
            events.n_tried,
            events.efficiency,
            events.settings["cpu_seconds"],
        )


def save_chunk(path: Path, events: Any) -> None:
    """Particles (flat + counts), n_tried and settings of one chunk, written atomically."""
    particles = events.particles
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    os.close(fd)
    with open(tmp, "wb") as f:
        np.savez(
            f,
            counts=ak.to_numpy(ak.num(particles)).astype(np.int64),
            pt=ak.to_numpy(ak.flatten(particles.pt)),
            eta=ak.to_numpy(ak.flatten(particles.eta)),
            phi=ak.to_numpy(ak.flatten(particles.phi)),
            label=events.label,
            n_tried=np.int64(events.n_tried),
            settings=np.array(json.dumps(events.settings)),
        )
    os.replace(tmp, path)


def load_chunks(args: argparse.Namespace, process: str) -> dict[str, Any] | None:
    """Concatenate the existing chunks of a process (in chunk order); None when there are none."""
    parts = [c for c in chunk_plan(args, process) if c["path"].exists()]
    missing = [c["index"] for c in chunk_plan(args, process) if not c["path"].exists()]
    if missing:
        log.warning("%s: chunks %s missing; assembling %d chunk(s)", process, missing, len(parts))
    if not parts:
        return None
    counts, flat, labels, settings = [], {"pt": [], "eta": [], "phi": []}, [], []
    n_tried = 0
    for c in parts:
        with np.load(c["path"]) as z:
            counts.append(z["counts"])
            for k, values in flat.items():
                values.append(z[k])
            labels.append(z["label"])
            n_tried += int(z["n_tried"])
            settings.append(
                {"chunk": c["index"], "file": c["path"].name, **json.loads(str(z["settings"]))}
            )
    counts_all = np.concatenate(counts)
    particles = ak.unflatten(ak.zip({k: np.concatenate(v) for k, v in flat.items()}), counts_all)
    return {
        "particles": particles,
        "label": np.concatenate(labels).astype(np.int8),
        "n_tried": n_tried,
        "chunks": settings,
    }


# --------------------------------------------------------------------------------------------
# assembly


def mjj_of(jets: dict[str, np.ndarray]) -> np.ndarray:
    e = jets["ej1"] + jets["ej2"]
    p2 = sum((jets[f"p{c}j1"] + jets[f"p{c}j2"]) ** 2 for c in "xyz")
    return np.sqrt(np.maximum(e**2 - p2, 0.0))


def cluster(particles: ak.Array, batch: int = 2000) -> dict[str, np.ndarray]:
    from sideband.features.substructure import cluster_dijets

    parts = [cluster_dijets(particles[i : i + batch]) for i in range(0, len(particles), batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def assemble(args: argparse.Namespace, cpu_generation: float) -> dict[str, Any]:
    from sideband.events import write_lhco_features, write_lhco_raw

    qcd = load_chunks(args, "qcd")
    sig = load_chunks(args, "signal")
    if qcd is None or sig is None:
        msg = f"no QCD or no signal chunks under {args.work_dir}; generate them first"
        raise SystemExit(msg)
    cpu0 = time.process_time()
    qcd_jets = cluster(qcd["particles"])
    sig_jets = cluster(sig["particles"])
    for name, jets in (("qcd", qcd_jets), ("signal", sig_jets)):
        passed = jets["has_dijet"] & (
            ((jets["ptj1"] > args.trigger_pt_gev) & (np.abs(jets["etaj1"]) < args.trigger_eta))
            | ((jets["ptj2"] > args.trigger_pt_gev) & (np.abs(jets["etaj2"]) < args.trigger_eta))
        )
        if not passed.all():
            msg = f"{name}: {int((~passed).sum())} stored events fail the trigger on reclustering"
            raise SystemExit(msg)

    lo, hi = args.sr_low_gev, args.sr_high_gev
    qcd_mjj, sig_mjj = mjj_of(qcd_jets), mjj_of(sig_jets)
    qcd_in_sr = (qcd_mjj > lo) & (qcd_mjj < hi)
    sig_in_sr = (sig_mjj > lo) & (sig_mjj < hi)
    n_b_sr = int(qcd_in_sr.sum())
    target_s_sr = round(args.s_over_b * n_b_sr)

    rng = np.random.default_rng(args.shuffle_seed)
    sig_order = rng.permutation(len(sig_mjj))
    cum_sr = np.cumsum(sig_in_sr[sig_order])
    if target_s_sr == 0:
        n_inject = 0
    elif cum_sr[-1] < target_s_sr:
        msg = (
            f"S/B = {args.s_over_b} needs {target_s_sr} signal events in the SR but only "
            f"{int(cum_sr[-1])} were generated; generate more signal (--n-signal)"
        )
        raise SystemExit(msg)
    else:
        n_inject = int(np.searchsorted(cum_sr, target_s_sr) + 1)
    inject, extra = sig_order[:n_inject], np.sort(sig_order[n_inject:])

    n_qcd = len(qcd_mjj)
    mix_order = rng.permutation(n_qcd + n_inject)  # rows of concat(QCD, injected signal)
    mix_jets = {k: np.concatenate([qcd_jets[k], sig_jets[k][inject]])[mix_order] for k in qcd_jets}
    mix_label = np.concatenate([qcd["label"], sig["label"][inject]])[mix_order]
    raw_rows = mix_order[: args.n_raw_small]
    raw_particles = ak.concatenate([qcd["particles"], sig["particles"][inject]])[raw_rows]
    extra_jets = {k: v[extra] for k, v in sig_jets.items()}

    args.out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: args.out_dir / f for name, f in FILES.items()}
    write_lhco_features(paths["mixture"], mix_jets, mix_label)
    write_lhco_features(paths["signal"], extra_jets, sig["label"][extra])
    write_lhco_raw(
        paths["raw_small"],
        raw_particles.pt,
        raw_particles.eta,
        raw_particles.phi,
        mix_label[: args.n_raw_small],
        max_particles=args.max_particles,
    )
    for path in paths.values():
        path.chmod(0o644)  # the writers' temp files are private; these are for everyone
    cpu_assembly = time.process_time() - cpu0

    n_part = ak.to_numpy(ak.num(raw_particles))
    n_s_sr = int(sig_in_sr[inject].sum())
    mix_mjj = mjj_of(mix_jets)
    return {
        "qcd_generated": n_qcd,
        "qcd_tried": qcd["n_tried"],
        "qcd_trigger_efficiency": n_qcd / qcd["n_tried"],
        "signal_generated": len(sig_mjj),
        "signal_tried": sig["n_tried"],
        "signal_trigger_efficiency": len(sig_mjj) / sig["n_tried"],
        "signal_injected": n_inject,
        "signal_extra_file": len(extra),
        "mixture_rows": n_qcd + n_inject,
        "raw_small_rows": len(raw_rows),
        "raw_small_events_truncated": int((n_part > args.max_particles).sum()),
        "signal_region_gev": [lo, hi],
        "sr_qcd": n_b_sr,
        "sr_signal_injected": n_s_sr,
        "sr_mixture_rows": int(((mix_mjj > lo) & (mix_mjj < hi)).sum()),
        "sr_signal_fraction_of_signal": float(sig_in_sr.mean()),
        "sr_s_over_b": n_s_sr / n_b_sr if n_b_sr else float("nan"),
        "sr_s_over_sqrt_b": n_s_sr / np.sqrt(n_b_sr) if n_b_sr else float("nan"),
        "qcd_mjj_quantiles_gev": {
            q: float(np.quantile(qcd_mjj, float(q))) for q in ("0.01", "0.5", "0.99")
        },
        "cpu_seconds_generation": cpu_generation,
        "cpu_seconds_assembly": cpu_assembly,
        "_chunks": {"qcd": qcd["chunks"], "signal": sig["chunks"]},
        "_paths": paths,
    }


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(args: argparse.Namespace, summary: dict[str, Any]) -> Path:
    chunks = summary.pop("_chunks")
    paths = summary.pop("_paths")
    versions = {"python": platform.python_version()}
    for dist in ("pythia8mc", "fastjet", "awkward", "numpy", "pandas", "tables", "sideband"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    manifest = {
        "description": "sideband's bundled LHCO-like dataset (Pythia 8, no detector simulation)",
        "command": " ".join(["python", "data/make_default_dataset.py", *sys.argv[1:]]),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "seeds": {
            "qcd_seed": args.qcd_seed,
            "signal_seed": args.signal_seed,
            "shuffle_seed": args.shuffle_seed,
            "chunk_seed_rule": "SeedSequence(base_seed, spawn_key=(chunk_index,)).generate_state(1)",
            "qcd_chunks": [
                {
                    k: c[k]
                    for k in ("chunk", "seed", "worker_seeds", "n_events", "n_tried", "cpu_seconds")
                }
                for c in chunks["qcd"]
            ],
            "signal_chunks": [
                {
                    k: c[k]
                    for k in ("chunk", "seed", "worker_seeds", "n_events", "n_tried", "cpu_seconds")
                }
                for c in chunks["signal"]
            ],
        },
        "pythia_settings": {
            "qcd": chunks["qcd"][0]["pythia"],
            "signal": chunks["signal"][0]["pythia"],
        },
        "trigger": chunks["qcd"][0]["trigger"],
        "particles": chunks["qcd"][0]["particles"],
        "versions": versions,
        "generation_versions": chunks["qcd"][0]["versions"],
        "counts": summary,
        "units": "GeV (momenta, masses, pT); eta, phi dimensionless",
        "files": {p.name: {"sha256": sha256(p), "bytes": p.stat().st_size} for p in paths.values()},
    }
    out = args.out_dir / "MANIFEST.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not args.assemble_only:
        generate_chunks(args, "signal")
        generate_chunks(args, "qcd")
    if args.generate_only:
        return
    cpu_generation = 0.0
    for process in ("qcd", "signal"):
        for c in chunk_plan(args, process):
            if c["path"].exists():
                with np.load(c["path"]) as z:
                    cpu_generation += json.loads(str(z["settings"]))["cpu_seconds"]
    summary = assemble(args, cpu_generation)
    path = write_manifest(args, summary)
    log.info("wrote %s: %s", path, json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
