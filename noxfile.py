# /// script
# dependencies = ["nox>=2024.4"]
# ///
"""Developer sessions: `nox` runs lint and tests; `nox -s slow`, `analysis`, `benchmarks` on request."""

from __future__ import annotations

import nox

nox.needs_version = ">=2024.4"
nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"

CONSTRAINTS = ("-c", ".ci/constraints.txt")


def _install(session: nox.Session) -> None:
    session.install(*CONSTRAINTS, "torch==2.13.0")
    session.install(
        *CONSTRAINTS,
        "-e",
        ".[generator,onnx,hepdata]",
        "pytest",
        "hypothesis",
        "cabinetry",
        "-r",
        "docs/requirements.txt",
    )


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "noxfile.py")


@nox.session
def tests(session: nox.Session) -> None:
    """The default test suite (what CI runs)."""
    _install(session)
    session.run("pytest", "-m", "not slow", *session.posargs)


@nox.session(default=False)
def slow(session: nox.Session) -> None:
    """The slow tests (full pipeline on the bundled data, statistical calibration)."""
    _install(session)
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session(default=False)
def analysis(session: nox.Session) -> None:
    """The default analysis on the bundled data, then its background-only twin."""
    _install(session)
    session.run("sideband", "run", "analysis/default.yaml")
    session.run("sideband", "run", "analysis/default.yaml", "--remove-signal",
                "-o", "runs/default_background_only")  # fmt: skip


@nox.session(default=False)
def benchmarks(session: nox.Session) -> None:
    """Benchmarks writing JSON into benchmarks/results/."""
    _install(session)
    session.run("python", "benchmarks/run_pipeline.py", *session.posargs)
    for method in ("cathode", "lacathode"):
        session.run("python", "benchmarks/background_only_calibration.py", "--method", method)
    # Classifier benchmarks on the real LHCO R&D signal region (../shared/data/lhco_rnd).
    for clf in ("hgb", "mlp"):
        session.run("python", "benchmarks/lhco_rnd_evaluation.py", "--classifier", clf)
    session.run("python", "benchmarks/lhco_rnd_injection.py")
    # Background templates (CATHODE, LaCATHODE, SIGMA) vs the IAD on the LHCO-like sample
    # (../shared/data/lhco_like), at S/sqrt(B) = 2.2 and 4 in the SR.
    session.run("python", "benchmarks/lhco_like_templates.py", "--sb", "2.2",
                "--scan-events", "20000")  # fmt: skip
    session.run("python", "benchmarks/lhco_like_templates.py", "--sb", "4", "--no-scan")


@nox.session(default=False)
def docs(session: nox.Session) -> None:
    """The documentation (Sphinx, warnings are errors) into docs/_build/html."""
    session.install(*CONSTRAINTS, "torch==2.13.0")
    session.install(*CONSTRAINTS, "-e", ".", "-r", "docs/requirements.txt")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html",
                *session.posargs)  # fmt: skip
