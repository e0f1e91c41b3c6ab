"""One training loop for every torch model in sideband (flows, flow matching, classifiers).

`fit_loop` runs minibatch Adam (AdamW, so ``weight_decay`` is decoupled) on a loss function you
give it, keeps per-epoch train and validation losses with an explicit epoch array (epoch 0 is the
first *trained* epoch; the validation loss of epoch e is measured after epoch e's updates),
stops early when the validation loss has not improved for ``patience`` epochs, and keeps the
state dicts of the ``n_ensemble`` epochs with the lowest validation loss (sorted with `argsort`,
best first). The model ends with the best epoch's weights loaded.

A non-finite loss raises `TrainingError` naming the epoch and batch. With ``checkpoint_dir`` the
whole loop state is written atomically after every epoch (``torch.save`` to a temporary file,
then ``os.replace``) and a later call with the same directory resumes from it.

Shuffling is reproducible without global seeding: epoch e uses
``numpy.random.default_rng([base_seed, e])``, so a resumed run shuffles exactly like an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from sideband.errors import CheckpointError, InputError, TrainingError
from sideband.report import new_file_mode

__all__ = [
    "FitResult",
    "TrainingHistory",
    "check_n_threads",
    "fit_loop",
    "resolve_device",
    "save_atomic",
    "torch_threads",
    "uses_n_threads",
]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "fit_loop.pt"
_CHECKPOINT_FORMAT = "sideband.fit_loop"

LossFn = Callable[..., torch.Tensor]
F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run under ``torch.set_num_threads(n)``, restoring the previous count after (None: as is).

    torch's thread count is process-wide; on a shared or busy machine more threads than free
    cores can make training many times slower, so the models take ``n_threads``.
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_n_threads(n_threads: object) -> None:
    """`InputError` unless ``n_threads`` is None or a positive integer."""
    if n_threads is not None and (
        isinstance(n_threads, bool) or not isinstance(n_threads, int | np.integer) or n_threads < 1
    ):
        msg = f"n_threads must be None or a positive integer; got {n_threads!r}"
        raise InputError(msg)


def uses_n_threads(method: F) -> F:
    """Method decorator: run under ``torch_threads(self.n_threads)``."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        check_n_threads(self.n_threads)
        with torch_threads(self.n_threads):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class TrainingHistory:
    """Losses per trained epoch.

    Attributes
    ----------
    epochs
        int64 (E,): 0, 1, ..., E-1; epoch 0 is the first trained epoch.
    train_loss
        float64 (E,): mean training loss over the epoch's minibatches (weighted by batch size).
    val_loss
        float64 (E,): validation loss after that epoch's updates.
    best_epochs
        int64 (k,): the ``n_ensemble`` epochs with the lowest validation loss, best first.
    stopped_early
        True when training stopped because of ``patience``.
    """

    epochs: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    best_epochs: np.ndarray
    stopped_early: bool

    def as_dict(self) -> dict[str, object]:
        """Plain dict (tensors for arrays) that `torch.load(weights_only=True)` can read back."""
        return {
            "epochs": torch.as_tensor(self.epochs, dtype=torch.int64),
            "train_loss": torch.as_tensor(self.train_loss, dtype=torch.float64),
            "val_loss": torch.as_tensor(self.val_loss, dtype=torch.float64),
            "best_epochs": torch.as_tensor(self.best_epochs, dtype=torch.int64),
            "stopped_early": bool(self.stopped_early),
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> TrainingHistory:
        return cls(
            epochs=np.asarray(d["epochs"], dtype=np.int64),
            train_loss=np.asarray(d["train_loss"], dtype=np.float64),
            val_loss=np.asarray(d["val_loss"], dtype=np.float64),
            best_epochs=np.asarray(d["best_epochs"], dtype=np.int64),
            stopped_early=bool(d["stopped_early"]),
        )


@dataclass(frozen=True)
class FitResult:
    """What `fit_loop` returns: the history and the best epochs' state dicts (CPU tensors).

    ``best_states[i]`` belongs to ``history.best_epochs[i]`` (best first).
    """

    history: TrainingHistory
    best_states: list[dict[str, torch.Tensor]]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as `torch.device`."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        msg = f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'"
        raise InputError(msg) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        msg = f"device {device!r} asked for, but CUDA is not available; use device='auto' or 'cpu'"
        raise InputError(msg)
    return dev


def _to_tensors(
    data: Sequence[np.ndarray | torch.Tensor], what: str, device: torch.device
) -> list[torch.Tensor]:
    if isinstance(data, np.ndarray | torch.Tensor):
        data = [data]
    if len(data) == 0:
        msg = f"{what} is empty: pass a sequence of arrays with the same first dimension"
        raise InputError(msg)
    out = [torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a) for a in data]
    out = [
        t.to(device=device, dtype=torch.float32) if t.is_floating_point() else t.to(device)
        for t in out
    ]
    n = out[0].shape[0]
    if any(t.shape[0] != n for t in out):
        shapes = [tuple(t.shape) for t in out]
        msg = f"the arrays of {what} have different numbers of rows: {shapes}"
        raise InputError(msg)
    return out


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save_atomic(obj: object, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj)`` to a temporary file in the target folder, then ``os.replace``.

    A crash mid-write leaves the previous file intact. Save only state dicts, tensors and plain
    Python values (never modules), so that ``torch.load(..., weights_only=True)`` reads it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clip(text: str, limit: int = 160) -> str:
    """`text` on one line, cut at a word boundary after at most `limit` characters."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return flat[:limit].rsplit(" ", 1)[0] + " ..."


def load_saved(path: Path, *, what: str, cls_name: str, fmt: str, version: int, fix: str) -> dict:
    """Read a file written with `save_atomic` and check its ``format``/``format_version`` keys.

    ``what`` names the object in messages (e.g. "CATHODE template"), ``cls_name`` its class,
    ``fix`` says what to do
    (e.g. "retrain and save"). Raises `CheckpointError` for a missing, unreadable, foreign or
    other-version file.
    """
    from sideband.errors import CheckpointError

    if not path.is_file():
        msg = f"no saved {what} at {path}; fit one and call save(path) first"
        raise CheckpointError(msg)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        msg = (
            f"{path} cannot be read as a saved {what} ({type(err).__name__}: "
            f"{_clip(str(err))}); the file is corrupt or of another kind: {fix}"
        )
        raise CheckpointError(msg) from err
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        msg = f"{path} is not a saved sideband {cls_name}; {fix}"
        raise CheckpointError(msg)
    if payload.get("format_version") != version:
        msg = (
            f"{path} has format version {payload.get('format_version')}, this sideband "
            f"reads version {version}; {fix} with this version"
        )
        raise CheckpointError(msg)
    return payload


def _data_hash(tensors: Sequence[torch.Tensor]) -> str:
    """SHA-1 of the training and validation arrays, so a checkpoint resumes only on its data."""
    h = hashlib.sha1(usedforsecurity=False)
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _fingerprint(model: torch.nn.Module, settings: dict[str, object]) -> dict[str, object]:
    return {
        "params": [[k, list(v.shape)] for k, v in model.state_dict().items()],
        **settings,
    }


def cosine_factor(epoch: float, epochs: int, warmup_epochs: int = 0) -> float:
    """Learning-rate factor at (fractional) `epoch`: linear warm-up, then cosine to 0 at `epochs`."""
    if epoch < warmup_epochs:
        return (epoch + 1e-3) / warmup_epochs
    span = max(epochs - warmup_epochs, 1e-12)
    return 0.5 * (1.0 + math.cos(math.pi * min((epoch - warmup_epochs) / span, 1.0)))


def fit_loop(
    model: torch.nn.Module,
    loss_fn: LossFn,
    train_data: Sequence[np.ndarray | torch.Tensor],
    val_data: Sequence[np.ndarray | torch.Tensor] | None = None,
    *,
    epochs: int = 100,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.0,
    patience: int | None = 10,
    val_fraction: float = 0.2,
    n_ensemble: int = 1,
    drop_last: bool = True,
    seed: int | np.random.Generator | None = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    val_batch_size: int = 8192,
    val_loss_fn: LossFn | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
    lr_patience: int | None = None,
    lr_factor: float = 0.3,
    lr_cosine: bool = False,
    warmup_epochs: int = 0,
) -> FitResult:
    """Train ``model`` by minimising ``loss_fn(model, *batch)`` (a scalar mean over the batch).

    Parameters
    ----------
    model
        Any `torch.nn.Module`; moved to ``device``; ends with the best epoch's weights.
    loss_fn
        ``loss_fn(model, *tensors) -> scalar tensor``, the mean loss of a minibatch; the tensors
        are the rows of ``train_data`` (floats as float32) on ``device``.
    train_data, val_data
        Sequences of arrays with the same number of rows (e.g. ``(x, context)``). Without
        ``val_data``, a random ``val_fraction`` of the training rows is held out for validation.
    epochs, batch_size, learning_rate, weight_decay
        Adam(W) settings; at most ``epochs`` epochs.
    patience
        Stop after this many epochs without a new lowest validation loss (None: never).
    n_ensemble
        How many best epochs' state dicts to keep (CATHODE samples from an epoch ensemble).
    drop_last
        Drop the last, partial minibatch of each epoch when there is at least one full one.
    seed
        Seed or Generator for the validation split and the shuffling.
    device
        "auto" (CUDA when available), "cpu", "cuda", ...
    progress
        Show a tqdm bar over epochs.
    val_batch_size
        Rows per validation batch.
    val_loss_fn
        Loss for the validation data when it differs from ``loss_fn`` (e.g. a fixed-noise
        flow-matching loss, or an exact negative log-likelihood), same signature; the epochs
        kept (``n_ensemble``) and early stopping follow it. ``val_data`` may then hold other
        arrays than ``train_data``.
    lr_patience, lr_factor
        Multiply the learning rate by ``lr_factor`` when the validation loss has not improved
        for ``lr_patience`` epochs (torch's ReduceLROnPlateau; SIGMA's schedule); None: constant.
    lr_cosine, warmup_epochs
        Cosine annealing of the learning rate, per minibatch, from ``learning_rate`` to zero
        at the end of ``epochs`` (Loshchilov & Hutter; the full-phase-space study's schedule),
        after a linear warm-up over ``warmup_epochs`` epochs (0: none). Not together with
        ``lr_patience``.
    on_epoch_start
        Called with the epoch number before each trained epoch (also after a resume), e.g. to
        reseed a loss function's noise so that a resumed run draws what an uninterrupted one would.
    checkpoint_dir
        Write ``fit_loop.pt`` there after every epoch and resume from it when it exists. The
        model's parameter shapes, the loop settings and the data (SHA-1 of the train and
        validation arrays) must match, else `CheckpointError`; pass a fixed ``seed`` so that a
        rerun draws the same validation split and shuffles.

    Returns
    -------
    FitResult with the `TrainingHistory` and the best state dicts (CPU), best first.

    Raises
    ------
    TrainingError
        The loss is NaN/inf (names epoch and batch) or there are too few rows to train.
    """
    if epochs < 1 or batch_size < 1 or n_ensemble < 1:
        msg = (
            f"epochs ({epochs}), batch_size ({batch_size}) and n_ensemble ({n_ensemble}) must "
            "all be at least 1"
        )
        raise InputError(msg)
    if patience is not None and patience < 1:
        msg = f"patience must be at least 1 epoch, or None for no early stopping; got {patience}"
        raise InputError(msg)
    if not learning_rate > 0:
        msg = f"learning_rate must be positive; got {learning_rate}"
        raise InputError(msg)
    dev = resolve_device(device)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    base_seed = int(rng.integers(2**62))

    train = _to_tensors(train_data, "train_data", dev)
    if val_data is None:
        if not 0 < val_fraction < 1:
            msg = f"val_fraction must be in (0, 1) when no val_data is given; got {val_fraction}"
            raise InputError(msg)
        n_all = train[0].shape[0]
        n_val = round(val_fraction * n_all)
        if n_val < 1 or n_all - n_val < 1:
            msg = f"{n_all} rows cannot be split into training and validation; pass more events"
            raise TrainingError(msg)
        perm = torch.as_tensor(rng.permutation(n_all), device=dev)
        val = [t[perm[:n_val]] for t in train]
        train = [t[perm[n_val:]] for t in train]
    else:
        val = _to_tensors(val_data, "val_data", dev)
        if val_loss_fn is None and len(val) != len(train):
            msg = f"val_data has {len(val)} arrays but train_data has {len(train)}; match them"
            raise InputError(msg)
    n_train, n_val = train[0].shape[0], val[0].shape[0]
    if n_train < 1 or n_val < 1:
        msg = f"need at least one training and one validation row; got {n_train} and {n_val}"
        raise TrainingError(msg)

    model.to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    if lr_patience is not None and (lr_patience < 1 or not 0 < lr_factor < 1):
        msg = f"need lr_patience >= 1 and 0 < lr_factor < 1; got {lr_patience} and {lr_factor}"
        raise InputError(msg)
    if lr_cosine and lr_patience is not None:
        msg = "choose one learning-rate schedule: lr_cosine=True or lr_patience, not both"
        raise InputError(msg)
    if warmup_epochs < 0 or (warmup_epochs and not lr_cosine) or warmup_epochs >= max(epochs, 1):
        msg = (
            f"warmup_epochs must be >= 0, below epochs ({epochs}), and is used only with "
            f"lr_cosine=True; got {warmup_epochs}"
        )
        raise InputError(msg)
    scheduler = (
        None
        if lr_patience is None
        else torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=lr_factor, patience=lr_patience
        )
    )

    settings: dict[str, object] = {
        "batch_size": batch_size,
        "learning_rate": float(learning_rate),
        "weight_decay": float(weight_decay),
        "n_train": n_train,
        "n_val": n_val,
        "n_ensemble": n_ensemble,
        "data_sha1": _data_hash(train + val),
    }
    if lr_patience is not None:  # only then, so older checkpoints keep matching
        settings["lr_plateau"] = [int(lr_patience), float(lr_factor)]
    if lr_cosine:
        settings["lr_cosine"] = [int(epochs), int(warmup_epochs)]
    fingerprint = _fingerprint(model, settings)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None

    train_losses: list[float] = []
    val_losses: list[float] = []
    best: list[tuple[float, int, dict[str, torch.Tensor]]] = []  # (val loss, epoch, state)
    since_best = 0
    stopped_early = False
    start = 0

    if ckpt_path is not None and ckpt_path.exists():
        state = _load_checkpoint(ckpt_path, fingerprint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        train_losses = [float(v) for v in state["train_loss"]]
        val_losses = [float(v) for v in state["val_loss"]]
        best = [(float(v), int(e), s) for v, e, s in state["best"]]
        since_best = int(state["since_best"])
        stopped_early = bool(state["stopped_early"])
        base_seed = int(state["base_seed"])
        start = len(train_losses)
        logger.info("fit_loop: resuming from %s after epoch %d", ckpt_path, start - 1)

    def evaluate(epoch: int) -> float:
        model.eval()
        total = 0.0
        with torch.no_grad():
            for b, i in enumerate(range(0, n_val, val_batch_size)):
                batch = [t[i : i + val_batch_size] for t in val]
                loss = (val_loss_fn or loss_fn)(model, *batch)
                if not torch.isfinite(loss):
                    msg = (
                        f"non-finite validation loss ({loss.item()}) at epoch {epoch}, validation "
                        f"batch {b}: lower the learning rate / check inputs for NaN"
                    )
                    raise TrainingError(msg)
                total += float(loss) * batch[0].shape[0]
        return total / n_val

    finished = stopped_early or start >= epochs
    bar = tqdm(
        range(start, epochs) if not finished else range(0),
        disable=not progress or finished,
        desc="training",
        unit="epoch",
    )
    for epoch in bar:
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        model.train()
        gen = np.random.default_rng([base_seed, epoch])
        order = torch.as_tensor(gen.permutation(n_train), device=dev)
        n_batches = (
            n_train // batch_size
            if drop_last and n_train >= batch_size
            else -(-n_train // batch_size)
        )
        total, seen = 0.0, 0
        for b in range(n_batches):
            if lr_cosine:
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate * cosine_factor(
                        epoch + b / n_batches, epochs, warmup_epochs
                    )
            idx = order[b * batch_size : (b + 1) * batch_size]
            batch = [t[idx] for t in train]
            loss = loss_fn(model, *batch)
            if not torch.isfinite(loss):
                msg = (
                    f"non-finite training loss ({loss.item()}) at epoch {epoch}, batch {b}: lower "
                    "the learning rate / check inputs for NaN"
                )
                raise TrainingError(msg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * idx.shape[0]
            seen += idx.shape[0]
        train_losses.append(total / seen)
        v = evaluate(epoch)
        val_losses.append(v)
        if scheduler is not None:
            scheduler.step(v)

        if not best or v < min(b_[0] for b_ in best):
            since_best = 0
        else:
            since_best += 1
        if len(best) < n_ensemble or v < best[-1][0]:
            best.append((v, epoch, _cpu_state(model)))
            best.sort(key=lambda t: (t[0], t[1]))
            del best[n_ensemble:]
        if progress:
            bar.set_postfix(train=f"{train_losses[-1]:.4f}", val=f"{v:.4f}")
        stopped_early = patience is not None and since_best >= patience
        if ckpt_path is not None:
            save_atomic(
                {
                    "format": _CHECKPOINT_FORMAT,
                    "fingerprint": fingerprint,
                    "model": _cpu_state(model),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": None if scheduler is None else scheduler.state_dict(),
                    "train_loss": train_losses,
                    "val_loss": val_losses,
                    "best": [[v_, e_, s_] for v_, e_, s_ in best],
                    "since_best": since_best,
                    "stopped_early": stopped_early,
                    "base_seed": base_seed,
                },
                ckpt_path,
            )
        if stopped_early:
            logger.info(
                "fit_loop: early stop after epoch %d (best epoch %d, val loss %.5g)",
                epoch,
                best[0][1],
                best[0][0],
            )
            break
    bar.close()

    if not best:
        msg = "no epoch was trained (epochs < 1?)"
        raise TrainingError(msg)
    model.load_state_dict(best[0][2])
    n_done = len(train_losses)
    history = TrainingHistory(
        epochs=np.arange(n_done, dtype=np.int64),
        train_loss=np.asarray(train_losses, dtype=np.float64),
        val_loss=np.asarray(val_losses, dtype=np.float64),
        best_epochs=np.asarray([e for _, e, _ in best], dtype=np.int64),
        stopped_early=stopped_early,
    )
    return FitResult(history=history, best_states=[s for _, _, s in best])


def _load_checkpoint(path: Path, fingerprint: dict[str, object]) -> dict[str, object]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        msg = (
            f"checkpoint {path} cannot be read ({type(err).__name__}); it is corrupt or not a "
            "sideband fit_loop checkpoint: delete it to train from scratch"
        )
        raise CheckpointError(msg) from err
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        msg = f"{path} is not a sideband fit_loop checkpoint; delete it or use another directory"
        raise CheckpointError(msg)
    old = state.get("fingerprint")
    if old != fingerprint:
        old = old if isinstance(old, dict) else {}
        differ = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
        msg = (
            f"checkpoint {path} was written for a different model or settings (differing: "
            f"{differ}); use a new checkpoint_dir or delete the file to train from scratch"
        )
        raise CheckpointError(msg)
    return state
