"""The evaluator shared by search and retraining: train a candidate on fixed splits, report accuracy, resume.

In-memory splits (:class:`nascore.training.data.TensorSplit`) are batched by slicing tensors that live on the training
device, without a DataLoader: on the 8x8 digits a tiny network trains an epoch in a few hundredths of a second on
one CPU core. Everything random (weights when built through :meth:`Trainer.from_graph`, shuffling, augmentation,
drop path) follows ``TrainConfig.seed``; :meth:`Trainer.state_dict` holds the whole training state, RNGs included,
so a resumed run continues exactly as an uninterrupted one.

A candidate that cannot be trained (non-finite loss, out of memory) raises :class:`~nascore.errors.TrialFailed`,
which a search records as a failed trial and goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import re
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nascore.blocks.spec import Param
from nascore.errors import DataError, NascoreError, ParamError, RunError, ShapeError, TrialFailed
from nascore.graph.compile import set_drop_path
from nascore.io.atomic import atomic_write
from nascore.io.settings import check_keys, check_settings, schema_of, setting
from nascore.training.data import Splits, TensorSplit


# -- configuration ---------------------------------------------------------------------------------------------------

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass
class TrainConfig:
    """How a candidate is trained. Checked on construction: a bad value raises ParamError naming the key."""

    epochs: int = setting(int, 10, "training epochs", low=1)
    batch_size: int = setting(int, 64, "training batch size", low=1)
    optimizer: str = setting(str, "sgd", "optimiser", choices=("sgd", "adamw"))
    lr: float = setting(float, 0.05, "peak learning rate (after warm-up; cosine decay to 0 per step)", low=0)
    momentum: float = setting(float, 0.9, "SGD momentum (unused by adamw)", low=0, high=1)
    weight_decay: float = setting(float, 5e-4, "weight decay of weights (not of biases and norms)", low=0)
    warmup_epochs: float = setting(float, 1.0, "linear warm-up, in epochs", low=0)
    label_smoothing: float = setting(float, 0.1, "label smoothing of the cross entropy", low=0, high=0.99)
    drop_path: float = setting(float, 0.0, "max drop-path rate; grows linearly over training (ScheduledDropPath)",
                               low=0, high=0.99)
    amp: bool = setting(bool, True, "mixed precision (CUDA only): bfloat16 where supported, else float16")
    channels_last: bool = setting(bool, True, "channels-last memory format (CUDA and CPU: on the CPU an epoch of an "
                                  "mbconv network runs 1.2-1.7x faster; benchmarks/bench_memory_format.py)")
    seed: int = setting(int, 0, "seed of weights, shuffling, augmentation, drop path", low=0)
    device: str = setting(str, "auto", "auto, cpu, cuda, cuda:N or mps")
    grad_clip: float | None = setting(float, None, "clip the gradient norm to this (none: no clipping)", low=0)
    augment: bool = setting(bool, False, "random crop (padding 1/8 of the side) and horizontal flip; images >= 16 px")
    threads: int | None = setting(int, None, "torch CPU threads (none: leave torch's setting)", low=1)

    def __post_init__(self) -> None:
        check_settings(self)
        if not _DEVICE.match(self.device):
            raise ParamError(f"got {self.device!r}, expected auto, cpu, cuda, cuda:N or mps",
                             where="parameter 'device'")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, where: str = "train config") -> "TrainConfig":
        """A config from a document's mapping; unknown keys and bad values raise ParamError naming ``where`` + key."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ParamError(f"got {type(d).__name__}, expected a mapping of training settings", where=where)
        check_keys(d, cls, where)
        try:
            return cls(**dict(d))
        except ParamError as err:
            raise err.located(where) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def schema(cls) -> tuple[Param, ...]:
        """The settings with types, ranges and docs (for listings and search spaces)."""
        return schema_of(cls)


# -- devices ---------------------------------------------------------------------------------------------------------


def pick_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto``: CUDA if available, else CPU; ``cpu``, ``cuda``, ``cuda:N``, ``mps`` are checked to exist."""
    text = "auto" if spec is None else str(spec)
    if not _DEVICE.match(text):
        raise ParamError(f"got {text!r}, expected auto, cpu, cuda, cuda:N or mps", where="parameter 'device'")
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ParamError(f"got {text!r} but CUDA is not available (torch {torch.__version__}); expected cpu or "
                             "auto", where="parameter 'device'")
        count = torch.cuda.device_count()
        index = int(text.partition(":")[2] or torch.cuda.current_device())
        if index >= count:
            raise ParamError(f"got {text!r} but there {'is' if count == 1 else 'are'} {count} CUDA device(s); "
                             f"expected cuda:0..cuda:{count - 1}", where="parameter 'device'")
        return torch.device("cuda", index)
    if text == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ParamError("got 'mps' but MPS is not available; expected cpu or auto", where="parameter 'device'")
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's (all devices') global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _is_ddp(model: nn.Module) -> bool:
    return isinstance(model, nn.parallel.DistributedDataParallel)


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- data on the device ----------------------------------------------------------------------------------------------


def _as_tensors(data: Any, where: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(x, y, scale) of a split; a Dataset that is not a TensorSplit is read once into memory."""
    if not isinstance(data, TensorSplit):
        try:
            items = [data[i] for i in range(len(data))]
            x = torch.stack([torch.as_tensor(item[0]) for item in items])
            y = torch.tensor([int(item[1]) for item in items], dtype=torch.int64)
        except NascoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a user's Dataset is a data problem
            raise DataError(f"cannot read its samples as (image tensor, class index) pairs ({type(exc).__name__}: "
                            f"{exc})", where=where) from None
        data = TensorSplit(x, y, where=where)
    return data.x, data.y, data.scale


def _model_input(model: nn.Module) -> tuple[int, ...] | None:
    meta = getattr(model, "meta", None)
    info = meta.get("nascore") if isinstance(meta, dict) else None
    return tuple(info["input"]) if isinstance(info, dict) and "input" in info else None


class Resize(nn.Module):
    """Feed a graph whose input side differs from the data (compound scaling searches resolution)."""

    def __init__(self, model: nn.Module, size: tuple[int, int]):
        super().__init__()
        self.model = model
        self.size = size

    def forward(self, x: torch.Tensor):
        return self.model(F.interpolate(x, size=self.size, mode="bilinear", align_corners=False))


class Trainer:
    """Trains ``model`` on ``splits`` as ``config`` says; the unit of work of one search trial.

    ``train_epoch()`` runs one epoch and returns its record; ``fit()`` runs the rest; ``evaluate(split)`` is top-1
    accuracy. ``state_dict()`` / ``load_state_dict()`` (and ``save`` / ``load``) checkpoint everything.
    """

    def __init__(self, model: nn.Module, splits: Splits, config: TrainConfig | None = None,
                 device: str | torch.device | None = None, shard: tuple[int, int] = (0, 1)):
        """``shard`` = (rank, world size) of data-parallel training: every rank draws the same global batches and
        trains on its share of each (``model`` is then the DistributedDataParallel wrapper)."""
        if not isinstance(splits, Splits):
            raise DataError(f"got {type(splits).__name__}, expected nascore.training.data.Splits (from load_dataset)")
        self.config = config = config if config is not None else TrainConfig()
        if not isinstance(config, TrainConfig):
            raise ParamError(f"got {type(config).__name__}, expected a TrainConfig", where="config")
        self.splits = splits
        self.device = pick_device(config.device if device is None else device)
        if config.threads:
            torch.set_num_threads(config.threads)
        seed_everything(config.seed)
        expected = _model_input(model)
        if expected is not None and expected != tuple(splits.input_shape):
            raise ShapeError(f"model takes input {list(expected)} but dataset {splits.name!r} has samples of shape "
                             f"{list(splits.input_shape)}; expected the same (C, H, W)")
        cuda = self.device.type == "cuda"
        self.amp_dtype = None
        if cuda and config.amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.channels_last = config.channels_last and self.device.type in ("cuda", "cpu")
        try:
            self.model = model.to(self.device)
            if self.channels_last:
                self.model = self.model.to(memory_format=torch.channels_last)
        except Exception as exc:
            if _is_oom(exc):
                self._out_of_memory(exc, f"setup (moving the model to {self.device})")
            raise
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        self._data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._scale: dict[str, float] = {}
        for split in ("train", "val", "test"):
            where = f"dataset {splits.name!r}: {split}"
            x, y, scale = _as_tensors(getattr(splits, split), where)
            if tuple(x.shape[1:]) != tuple(splits.input_shape):
                raise DataError(f"samples have shape {list(x.shape[1:])}, expected {list(splits.input_shape)}",
                                where=where)
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= splits.num_classes):
                raise DataError(f"labels span {int(y.min())}..{int(y.max())}, expected 0..{splits.num_classes - 1}",
                                where=where)
            try:
                self._data[split] = (x.to(self.device), y.to(self.device))
            except Exception as exc:
                if _is_oom(exc):
                    self._out_of_memory(exc, f"setup (moving the {split} split to {self.device})")
                raise
            self._scale[split] = scale
        c = splits.input_shape[0]
        std = torch.tensor(splits.std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        mean = torch.tensor(splits.mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self._gain = {split: scale / std for split, scale in self._scale.items()}  # (x * scale - mean) / std
        self._shift = -mean / std
        self.generator = torch.Generator().manual_seed(config.seed)  # shuffling and augmentation, on the CPU
        self.rank, self.world = int(shard[0]), int(shard[1])
        if not 0 <= self.rank < self.world:
            raise ParamError(f"got {tuple(shard)!r}, expected (rank, world size) with 0 <= rank < world size",
                             where="parameter 'shard'")

        n = len(self._data["train"][1])
        self.batch_size = min(config.batch_size, n)
        if self.batch_size < 2 * self.world:
            raise ParamError(f"got batch_size {self.batch_size} for {self.world} data-parallel workers; expected at "
                             f"least 2 samples per worker (batch norm)", where="parameter 'batch_size'")
        full, rest = divmod(n, self.batch_size)
        # a lone sample (per worker) cannot train batch norm: such a last batch is dropped
        self.steps_per_epoch = full + (1 if rest >= 2 * self.world else 0)
        self.total_steps = config.epochs * self.steps_per_epoch
        self.warmup_steps = round(config.warmup_epochs * self.steps_per_epoch)
        self.eval_batch_size = max(config.batch_size, 256)

        self.optimizer = self._make_optimizer()
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.epoch = 0  # completed epochs
        self.step = 0   # completed optimiser steps
        self.history: list[dict[str, float]] = []

    @classmethod
    def from_graph(cls, graph: Any, splits: Splits, config: TrainConfig | None = None,
                   device: str | torch.device | None = None) -> "Trainer":
        """A trainer of ``graph`` built with ``config``'s seed (same seed: same initial weights) and drop-path rate."""
        config = config if config is not None else TrainConfig()
        if tuple(graph.input_shape) != tuple(splits.input_shape):
            raise ShapeError(f"graph {graph.name!r} takes input {list(graph.input_shape)} but dataset "
                             f"{splits.name!r} has samples of shape {list(splits.input_shape)}; expected the same "
                             "(C, H, W)")
        seed_everything(config.seed)
        model = graph.build(drop_path_rate=config.drop_path if config.drop_path > 0 else None)
        return cls(model, splits, config, device)

    @property
    def module(self) -> nn.Module:
        """The model trained, without a DistributedDataParallel wrapper: what checkpoints hold."""
        return getattr(self.model, "module", self.model) if _is_ddp(self.model) else self.model

    def batches(self, split: str, count: int, batch_size: int | None = None, seed: int = 0):
        """``count`` prepared input batches (normalised, no augmentation) of ``split``, drawn without replacement
        in a seeded order: what batch-norm recalibration and zero-cost proxies read."""
        x, _ = self._data[split]
        size = min(batch_size or self.batch_size, len(x))
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).to(x.device)
        for i in range(min(count, len(x) // size)):
            yield self._prepare(x[order[i * size:(i + 1) * size]], split)

    # pieces --------------------------------------------------------------------------------------------------------

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise TrialFailed("model has no trainable parameters; expected at least one", reason="no parameters")
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups = [g for g in ({"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=cfg.lr)
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)

    def lr_at(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then cosine decay to 0."""
        lr, warm = self.config.lr, self.warmup_steps
        if step < warm:
            return lr * (step + 1) / warm
        t = (step - warm) / max(1, self.total_steps - warm)
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def _prepare(self, x: torch.Tensor, split: str, augment: bool = False) -> torch.Tensor:
        # one fused op, never in place: x may be a view of the stored split
        x = torch.addcmul(self._shift, x.float(), self._gain[split])
        if augment:
            x = self._augment(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        """Random crop (zero padding = the mean colour, 1/8 of the side) and horizontal flip, per sample."""
        n, _, h, w = x.shape
        if h < 16 or w < 16:
            return x
        pad = max(1, round(min(h, w) / 8))
        shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=self.generator).to(x.device)
        flips = (torch.rand(n, generator=self.generator) < 0.5).to(x.device)
        padded = F.pad(x, (pad, pad, pad, pad))
        rows = torch.arange(h, device=x.device)[None, :] + shifts[:, :1]
        cols = torch.arange(w, device=x.device)[None, :] + shifts[:, 1:]
        cols = torch.where(flips[:, None], cols.flip(1), cols)
        batch = torch.arange(n, device=x.device)[:, None, None]
        return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()

    def _check_output(self, out: Any) -> None:
        k = self.splits.num_classes
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] != k:
            found = f"shape {list(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
            raise ShapeError(f"model output is {found}; expected logits of shape [batch, {k}] for the {k} classes of "
                             f"dataset {self.splits.name!r}")

    # training ------------------------------------------------------------------------------------------------------

    def train_epoch(self) -> dict[str, float]:
        """Train one epoch; return ``{epoch, loss, train_acc, val_acc, lr, drop_path, seconds}`` (epoch counts from 1;
        ``lr`` the last step's learning rate, ``drop_path`` the epoch's drop-path rate of the deepest block, which the
        others' grow linearly to; 0 when off)."""
        cfg = self.config
        if self.epoch >= cfg.epochs:
            raise ParamError(f"all {cfg.epochs} epochs are trained; expected no further train_epoch() (raise "
                             "'epochs' and train afresh to train longer)", where="parameter 'epochs'")
        start = time.perf_counter()
        epoch = self.epoch + 1
        drop_rate = cfg.drop_path * self.epoch / cfg.epochs   # ScheduledDropPath: 0 in the first epoch
        if cfg.drop_path > 0:
            set_drop_path(self.model, self.epoch / cfg.epochs)
        self.model.train()
        x, y = self._data["train"]
        n, bs = len(y), self.batch_size
        perm = torch.randperm(n, generator=self.generator).to(self.device)
        cuda = self.device.type == "cuda"
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        bad_step = torch.full((), -1, dtype=torch.int64, device=self.device)
        seen, lr, s = 0, self.lr_at(self.step), 0
        try:
            for s in range(self.steps_per_epoch):
                idx = perm[s * bs:(s + 1) * bs][self.rank::self.world]
                xb, yb = self._prepare(x[idx], "train", cfg.augment), y[idx]
                lr = self.lr_at(self.step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                with self._autocast():
                    out = self.model(xb)
                if s == 0:
                    self._check_output(out)
                loss = self.loss_fn(out.float(), yb)
                if cuda:  # no host sync per step: remember the first bad step, look every 50 steps
                    finite = torch.isfinite(loss)
                    bad_step = torch.where((bad_step < 0) & ~finite, s, bad_step)
                    if s % 50 == 49 and int(bad_step) >= 0:
                        self._non_finite(epoch, int(bad_step))
                elif not math.isfinite(loss.item()):
                    self._non_finite(epoch, s)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if cfg.grad_clip is not None:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.step += 1
                loss_sum += loss.detach() * len(yb)
                correct += (out.detach().argmax(1) == yb).sum()
                seen += len(yb)
            if cuda and int(bad_step) >= 0:
                self._non_finite(epoch, int(bad_step))
        except Exception as exc:
            if _is_oom(exc):
                self._out_of_memory(exc, f"epoch {epoch} step {s + 1}")
            raise
        self.epoch = epoch
        record = {"epoch": epoch, "loss": loss_sum.item() / seen, "train_acc": correct.item() / seen,
                  "val_acc": self.evaluate("val"), "lr": lr, "drop_path": drop_rate, "seconds": 0.0}
        record["seconds"] = time.perf_counter() - start
        self.history.append(record)
        return record

    def fit(self, callback: Callable[[dict[str, float]], bool | None] | None = None) -> list[dict[str, float]]:
        """Train the remaining epochs; ``callback(record)`` after each may return True to stop (pruning)."""
        records = []
        while self.epoch < self.config.epochs:
            records.append(self.train_epoch())
            if callback is not None and callback(records[-1]):
                break
        return records

    def _non_finite(self, epoch: int, step: int) -> None:
        raise TrialFailed(f"non-finite loss at epoch {epoch} step {step + 1} (lr {self.lr_at(self.step):.3g}); "
                          "expected a finite loss: lower the learning rate or clip gradients",
                          reason="non-finite", epoch=epoch, step=step + 1)

    def _out_of_memory(self, exc: BaseException, when: str) -> None:
        if hasattr(self, "optimizer"):
            self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        batch = f"batch size {self.batch_size} on " if hasattr(self, "batch_size") else ""
        raise TrialFailed(f"out of memory at {when} ({batch}{self.device}): {first:.200}",
                          reason="out of memory") from None

    @torch.no_grad()
    def evaluate(self, split: str = "val", model: nn.Module | None = None) -> float:
        """Top-1 accuracy on ``split`` (train, val or test), in eval mode, of the trained model or of ``model``
        (another module on the same data: a subnet scored during supernet training)."""
        if split not in self._data:
            raise ParamError(f"got {split!r}, expected one of {list(self._data)}", where="parameter 'split'")
        model = self.model if model is None else model
        x, y = self._data[split]
        was_training = model.training
        model.eval()
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        try:
            for i in range(0, len(y), self.eval_batch_size):
                with self._autocast():
                    out = model(self._prepare(x[i:i + self.eval_batch_size], split))
                if i == 0:
                    self._check_output(out)
                correct += (out.argmax(1) == y[i:i + self.eval_batch_size]).sum()
        except Exception as exc:
            if _is_oom(exc):
                self._out_of_memory(exc, f"evaluation on {split}")
            raise
        finally:
            model.train(was_training)
        return correct.item() / len(y)

    # checkpoints ---------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The whole training state: model, optimiser, schedule position, epoch, history, config and every RNG.

        Holds only tensors and plain values (``torch.load(weights_only=True)`` reads it). Tensors are references to
        the live ones, as with ``nn.Module.state_dict``: save or deep-copy it before training on.
        """
        np_state = np.random.get_state()
        rng = {"generator": self.generator.get_state(), "torch": torch.get_rng_state(),
               "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                         "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
               "python": random.getstate()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": {"step": self.step, "steps_per_epoch": self.steps_per_epoch,
                              "total_steps": self.total_steps, "warmup_steps": self.warmup_steps},
                "scaler": self.scaler.state_dict(), "epoch": self.epoch, "history": [dict(h) for h in self.history],
                "config": self.config.to_dict(), "rng": rng}

    def load_state_dict(self, state: Mapping[str, Any], where: str = "checkpoint") -> None:
        """Restore :meth:`state_dict`'s output; training then continues exactly where it stopped."""
        missing = [k for k in ("model", "optimizer", "scheduler", "epoch", "rng") if k not in state]
        if missing:
            raise RunError(f"lacks {missing}; expected a Trainer.state_dict()", where=where)
        sched = state["scheduler"]
        mine = {"steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps}
        theirs = {k: sched.get(k) for k in mine}
        if theirs != mine:
            raise RunError(f"was trained with schedule {theirs}, this trainer has {mine}; expected the same epochs, "
                           "batch size and data", where=where)
        try:
            self.module.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise RunError(f"does not fit this model: {str(exc).strip().splitlines()[0]:.300}", where=where) from None
        if "scaler" in state and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(sched["step"])
        self.epoch = int(state["epoch"])
        self.history = [dict(h) for h in state.get("history", [])]
        rng = state["rng"]
        try:  # RNG states are CPU tensors, whatever map_location the caller used
            self.generator.set_state(rng["generator"].cpu())
            torch.set_rng_state(rng["torch"].cpu())
            npr = rng["numpy"]
            np.random.set_state((npr["name"], npr["keys"].cpu().numpy().astype(np.uint32), int(npr["pos"]),
                                 int(npr["has_gauss"]), float(npr["cached"])))
            py = rng["python"]
            random.setstate((py[0], tuple(py[1]), py[2]))
            if "cuda" in rng and self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            raise RunError(f"has a malformed RNG state ({type(exc).__name__}: {exc})", where=where) from None

    def save(self, path: str | Path) -> None:
        """Write the state to ``path`` atomically (a temporary file, then a rename)."""
        write_checkpoint(path, self.state_dict())

    def load(self, path: str | Path) -> None:
        """Resume from a file written by :meth:`save` (read with ``weights_only=True``: no code runs)."""
        self.load_state_dict(read_checkpoint(path), where=str(path))


def write_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` (a :meth:`Trainer.state_dict`, perhaps with more) to ``path`` atomically."""
    atomic_write(path, lambda fh: torch.save(dict(state), fh))


def read_checkpoint(path: str | Path, advice: str = "") -> dict[str, Any]:
    """The mapping a checkpoint file holds (a :meth:`Trainer.state_dict`, perhaps with more), read with
    ``weights_only=True``: no code runs. A RunError naming the file when it is missing, unreadable (truncated,
    foreign, tampered) or not a mapping; ``advice`` (``"; delete it or ..."``) ends its message."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"checkpoint not found; expected a file written by Trainer.save{advice}", where=str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, the user hears the same
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RunError(f"not a readable checkpoint ({type(exc).__name__}: {first:.200}){advice}",
                       where=str(path)) from None
    if not isinstance(state, Mapping):
        raise RunError(f"holds a {type(state).__name__}, expected a Trainer.state_dict(){advice}", where=str(path))
    return dict(state)


# -- latency ---------------------------------------------------------------------------------------------------------


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], device: str | torch.device | None = "auto",
                    batch: int = 1, repeats: int = 20, warmup: int = 5) -> float:
    """Median seconds of one forward pass of a ``batch`` (eval mode, no grad; CUDA synchronised around each).

    The model is moved to ``device`` and left there, in the training mode it had.
    """
    for name, value, low in (("batch", batch, 1), ("repeats", repeats, 1), ("warmup", warmup, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ParamError(f"got {value!r}, expected an int >= {low}", where=f"parameter {name!r}")
    shape = tuple(int(d) for d in input_shape)
    dev = pick_device(device)
    model = model.to(dev)
    x = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(0)).to(dev)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(warmup + repeats):
                _sync(dev)
                start = time.perf_counter()
                model(x)
                _sync(dev)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return statistics.median(times)


__all__ = ["TrainConfig", "Trainer", "measure_latency", "pick_device", "read_checkpoint", "seed_everything",
           "write_checkpoint"]
