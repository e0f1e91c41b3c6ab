"""Saving and loading template models: one file per model, the same layout for every model.

A saved template holds its format name and version, the library versions, its constructor
parameters, the number of features, the preprocessing state, the training history, the state
dicts of its epoch ensemble (under ``states_key``) and model-specific entries (e.g. the mass
scaling). Files are written atomically (`save_atomic`) and read with ``weights_only=True``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import zuko

from sideband.background.training import TrainingHistory, load_saved, resolve_device, save_atomic
from sideband.background.transforms import PreprocessingPipeline
from sideband.errors import CheckpointError, InputError

__all__ = ["frozen_modules", "load_template", "save_template"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


def save_template(
    model: Any,
    path: str | os.PathLike[str],
    *,
    fmt: str,
    version: int,
    states_key: str,
    modules: Sequence[torch.nn.Module],
    extra: dict[str, Any],
) -> None:
    """Write ``model`` (fitted; ``preprocessing_``, ``history_``, ``n_features_in_``) to ``path``."""
    import sideband

    steps = [
        {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in s.items()}
        for s in model.preprocessing_.get_state()["steps"]
    ]
    payload = {
        "format": fmt,
        "format_version": version,
        "versions": {
            "sideband": sideband.__version__,
            "torch": str(torch.__version__),
            "zuko": str(zuko.__version__),
        },
        "params": model.get_params(),
        "n_features_in": int(model.n_features_in_),
        "preprocessing": {"steps": steps},
        states_key: [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in modules],
        "history": model.history_.as_dict(),
        **extra,
    }
    save_atomic(payload, path)


def load_template(
    cls: Callable[..., T],
    path: str | os.PathLike[str],
    device: str,
    *,
    fmt: str,
    version: int,
    what: str,
    restore: Callable[[T, dict[str, Any]], None],
    fix_params: Callable[[dict[str, Any]], None] | None = None,
) -> T:
    """Read a file written by `save_template` into a new ``cls`` on ``device``.

    ``fix_params`` adapts the saved parameters (e.g. defaults of older files); ``restore`` sets
    the model-specific fitted state from the payload (its mass scaling, its networks from the
    state dicts). Raises `CheckpointError` for a missing, corrupt, foreign or mismatched file.
    """
    path = Path(path)
    name = getattr(cls, "__name__", str(cls))
    payload = load_saved(path, cls_name=name, what=what, fmt=fmt, version=version,
                         fix="retrain and save")  # fmt: skip
    saved_zuko = payload.get("versions", {}).get("zuko")
    if saved_zuko != zuko.__version__:
        logger.warning("%s was saved with zuko %s; this is zuko %s", path, saved_zuko,
                       zuko.__version__)  # fmt: skip
    try:
        params = dict(payload["params"])
        params["device"] = device
        if fix_params is not None:
            fix_params(params)
        obj = cls(**params)
        obj._check_params()  # type: ignore[attr-defined]
        obj.n_features_in_ = int(payload["n_features_in"])  # type: ignore[attr-defined]
        pre = PreprocessingPipeline.from_state(payload["preprocessing"])
        if pre.n_features_in_ != obj.n_features_in_:  # type: ignore[attr-defined]
            msg = "preprocessing and network disagree on the number of features"
            raise InputError(msg)
        obj.preprocessing_ = pre  # type: ignore[attr-defined]
        obj.history_ = TrainingHistory.from_dict(payload["history"])  # type: ignore[attr-defined]
        obj.best_epochs_ = obj.history_.best_epochs  # type: ignore[attr-defined]
        obj.device_ = resolve_device(device)  # type: ignore[attr-defined]
        restore(obj, payload)
    except (KeyError, TypeError, ValueError, RuntimeError, InputError) as err:
        msg = (
            f"{path} does not match a {name} of this version ({type(err).__name__}: "
            f"{str(err)[:200]}); retrain and save"
        )
        raise CheckpointError(msg) from err
    return obj


def frozen_modules(
    build: Callable[[], torch.nn.Module],
    states: Sequence[dict[str, torch.Tensor]],
    device: torch.device,
) -> list[torch.nn.Module]:
    """One module per state dict (an epoch ensemble), built by ``build``, on ``device`` in eval
    mode with gradients off: the fitted state of a template model."""
    out = []
    for state in states:
        module = build()
        module.load_state_dict(state)
        module.to(device).eval()
        for p in module.parameters():
            p.requires_grad_(False)
        out.append(module)
    return out
