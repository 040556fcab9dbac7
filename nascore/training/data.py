"""Data sets for search and training: plugins provide :class:`DatasetSpec`; :func:`load_dataset` gives :class:`Splits`.

A data set is a plugin like a block (hook ``nascore_datasets``). Its ``load(root=None, **params)`` returns fixed
train / val / test splits: every trial of every run must see the same split, so splits are never drawn from the
global RNG. In-memory sets use :class:`TensorSplit` (``x`` uint8 or float, ``y`` int64), which the trainer batches
by slicing, without a DataLoader.

Pixel scale: uint8 ``x`` means 0..255 and is divided by 255; float ``x`` is used as stored. ``Splits.mean`` and
``Splits.std`` are per channel, in that scaled unit.
"""

from __future__ import annotations

import importlib
import io
import math
import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from nascore.errors import DataError, NascoreError, RunError, suggest
from nascore.ext.registry import Registry
from nascore.blocks.spec import Param
from nascore.io.yamlio import read_bytes

if TYPE_CHECKING:
    from nascore.graph.core import Graph


class TensorSplit(Dataset):
    """One split held in memory: ``x`` (N, C, H, W) uint8 or float, ``y`` (N,) int64 class indices."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, where: str = "split"):
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise DataError(f"expected tensors x and y, got {type(x).__name__} and {type(y).__name__}", where=where)
        if x.dtype != torch.uint8 and not x.is_floating_point():
            raise DataError(f"x has dtype {x.dtype}, expected uint8 or a float dtype", where=where)
        if x.ndim != 4:
            raise DataError(f"x has shape {tuple(x.shape)}, expected (N, C, H, W)", where=where)
        if y.dtype != torch.int64 or y.ndim != 1:
            raise DataError(f"y has dtype {y.dtype} and shape {tuple(y.shape)}, expected int64 (N,)", where=where)
        if len(x) != len(y):
            raise DataError(f"x has {len(x)} samples but y has {len(y)} labels, expected as many", where=where)
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index):
        return self.x[index], self.y[index]

    @property
    def scale(self) -> float:
        """Factor from the stored values to the unit of ``mean``/``std`` (1/255 for uint8)."""
        return 1.0 / 255.0 if self.x.dtype == torch.uint8 else 1.0

    def __repr__(self) -> str:
        return f"TensorSplit(n={len(self)}, x={tuple(self.x.shape[1:])} {self.x.dtype})"


@dataclass
class Splits:
    """Fixed train / val / test splits of one data set, with what a model needs to know about them."""

    train: Dataset
    val: Dataset
    test: Dataset
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] | None = None  # class names, where known
    name: str = ""

    def __post_init__(self) -> None:
        where = f"dataset {self.name!r}" if self.name else "dataset"
        shape = tuple(self.input_shape)
        if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
            raise DataError(f"input_shape is {self.input_shape!r}, expected three positive ints (C, H, W)",
                            where=where)
        self.input_shape = shape  # type: ignore[assignment]
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise DataError(f"num_classes is {self.num_classes!r}, expected an int >= 2", where=where)
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if len(self.mean) != shape[0] or len(self.std) != shape[0]:
            raise DataError(f"mean/std have {len(self.mean)}/{len(self.std)} values, expected one per channel "
                            f"({shape[0]})", where=where)
        if not all(math.isfinite(s) and s > 0 for s in self.std) or not all(map(math.isfinite, self.mean)):
            raise DataError(f"std is {self.std}, mean {self.mean}: expected finite values, std > 0", where=where)
        if self.classes is not None:
            self.classes = tuple(self.classes)
            if len(self.classes) != self.num_classes:
                raise DataError(f"{len(self.classes)} class names for {self.num_classes} classes", where=where)
        for split in ("train", "val", "test"):
            data = getattr(self, split)
            if not isinstance(data, Dataset):
                raise DataError(f"{split} is a {type(data).__name__}, expected a torch Dataset", where=where)
            if isinstance(data, TensorSplit):
                if tuple(data.x.shape[1:]) != shape:
                    raise DataError(f"{split} samples have shape {tuple(data.x.shape[1:])}, expected {shape}",
                                    where=where)
                if len(data) and (int(data.y.min()) < 0 or int(data.y.max()) >= self.num_classes):
                    raise DataError(f"{split} labels span {int(data.y.min())}..{int(data.y.max())}, expected "
                                    f"0..{self.num_classes - 1}", where=where)
        if len(self.train) < 2 or len(self.val) < 1 or len(self.test) < 1:  # type: ignore[arg-type]
            raise DataError(f"splits have {len(self.train)}/{len(self.val)}/{len(self.test)} samples "  # type: ignore
                            "(train/val/test), expected at least 2/1/1", where=where)

    def sizes(self) -> dict[str, int]:
        return {s: len(getattr(self, s)) for s in ("train", "val", "test")}


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: ``load(root=None, **params)`` returns its :class:`Splits`; ``params`` is its schema."""

    name: str
    load: Callable[..., Splits]
    doc: str = ""
    params: tuple[Param, ...] = ()

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset {self.name!r} declares a parameter twice")
        if "root" in names:
            raise ValueError(f"dataset {self.name!r}: 'root' is not a parameter, it is passed to load()")

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``given`` against the schema and fill defaults; DataError names the parameter."""
        where = f"dataset {self.name!r}"
        known = [p.name for p in self.params]
        for key in given:
            if key not in known:
                raise DataError(f"unknown parameter {key!r}{suggest(key, known)}; expected one of: "
                                f"{', '.join(known) or 'none'}", where=where)
        resolved = {}
        for p in self.params:
            if p.name not in given:
                if p.required:
                    raise DataError(f"parameter {p.name!r} is missing; expected {p.describe()} ({p.doc})",
                                    where=where)
                resolved[p.name] = p.default
                continue
            try:
                resolved[p.name] = p.check(given[p.name])
            except NascoreError as err:
                raise DataError(str(err), where=where) from None
        return resolved

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


DATASETS: Registry[DatasetSpec] = Registry("dataset", "nascore_datasets", DatasetSpec, DataError)


def load_dataset(name: str, root: str | Path | None = None, **params: Any) -> Splits:
    """Load data set ``name`` (a plugin's) with its ``params``; every problem is a DataError naming what and where."""
    spec = DATASETS.get(name)
    resolved = spec.resolve(params)
    try:
        splits = spec.load(root=None if root is None else Path(root), **resolved)
    except NascoreError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError, RuntimeError, pickle.UnpicklingError,
            EOFError) as exc:
        at = f" from {str(root)!r}" if root is not None else ""
        raise DataError(f"loading{at} failed: {type(exc).__name__}: {exc}", where=f"dataset {name!r}") from exc
    if not isinstance(splits, Splits):
        raise DataError(f"load() returned {type(splits).__name__}, expected nascore.training.data.Splits "
                        f"(plugin {DATASETS.owner(name)!r})", where=f"dataset {name!r}")
    if not splits.name:
        splits.name = name
    return splits


class DataShape(Protocol):
    """What a model must fit of a data set: :class:`Splits` has it, and so does any object with these attributes
    (a search keeps only these once it has loaded the data set)."""

    @property
    def name(self) -> str: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    @property
    def num_classes(self) -> int: ...


def check_fits(graph: Graph, dataset: DataShape, where: str | None = None) -> None:
    """``graph`` must take the data set's channels and output one logit per class (other input sides are resized).

    A RunError prefixed by ``where`` (when given) says what to change otherwise.
    """
    channels, classes = dataset.input_shape[0], dataset.num_classes
    if graph.input_shape[0] != channels:
        raise RunError(f"graph {graph.name!r} takes {graph.input_shape[0]} input channels but data set "
                       f"{dataset.name!r} has {channels}; expected the same (set the graph's input to "
                       f"[{channels}, H, W])", where=where)
    outs = list(graph.analyse().outputs.values())
    if len(outs) != 1 or tuple(outs[0]) != (classes,):
        shown = ", ".join(str(list(o)) for o in outs)
        raise RunError(f"graph {graph.name!r} outputs {shown} but data set {dataset.name!r} has {classes} classes; "
                       f"expected one output of shape [{classes}] (end the graph with a linear layer of out: "
                       f"{classes})", where=where)


# -- helpers for data-set plugins ---------------------------------------------------------------------------------


def stratified_split(labels: Iterable[int], fractions: tuple[float, ...], seed: int = 0) -> list[np.ndarray]:
    """Split indices into ``len(fractions)`` disjoint sorted parts, class by class, by a fixed seed.

    Every class is cut in the same proportions (largest remainders go to the first parts); the result depends only
    on the labels, the fractions and the seed, never on global RNG state.
    """
    labels = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels)
    if not fractions or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise DataError(f"split fractions {fractions} are not non-negative numbers summing to 1")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for k, cls in enumerate(np.unique(labels)):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        counts = [int(math.floor(f * len(idx))) for f in fractions]
        # rounding left-overs go to the parts with the largest remainders; ties rotate with the class, so that
        # no part collects every class's extra sample
        rem = sorted(range(len(fractions)),
                     key=lambda i: (-round(fractions[i] * len(idx) - counts[i], 9), (i - k) % len(fractions)))
        for i in rem[: len(idx) - sum(counts)]:
            counts[i] += 1
        start = 0
        for part, n in zip(parts, counts):
            part.append(idx[start:start + n])
            start += n
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of (N, C, H, W) data in the scaled unit (uint8 / 255); std never below 1e-3."""
    scale = 1.0 / 255.0 if x.dtype == torch.uint8 else 1.0
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for chunk in torch.split(x, 4096):
        v = chunk.to(torch.float64).transpose(0, 1).reshape(c, -1) * scale
        total += v.sum(1)
        total_sq += (v * v).sum(1)
        count += v.shape[1]
    mean = total / max(count, 1)
    std = (total_sq / max(count, 1) - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())


# -- safe unpickling -------------------------------------------------------------------------------------------------

def _numpy_global(module: str, name: str) -> Any:
    """numpy's own pickling helpers, found under numpy 1's (numpy.core) or numpy 2's (numpy._core) module name."""
    tail = module.split(".", 2)[-1] if module.startswith(("numpy.core.", "numpy._core.")) else None
    if tail is None:
        return getattr(np, name)
    for base in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{base}.{tail}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {module}.{name}")


# What numpy arrays and Python 2 byte strings need, and nothing that can run code or touch the system.
SAFE_PICKLE_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
    ("builtins", "bytearray"), ("builtins", "bytes"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "int"), ("builtins", "float"),
    ("builtins", "complex"), ("builtins", "str"),
})


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: str, **kwargs):
        super().__init__(file, **kwargs)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in SAFE_PICKLE_GLOBALS:
            raise DataError(f"pickle refers to {module}.{name}, which is not allowed; expected only numpy arrays "
                            "and plain Python values (refusing to run code from a data file)", where=self._path)
        if module.startswith("numpy"):
            return _numpy_global(module, name)
        return super().find_class(module, name)


MAX_PICKLE_BYTES = 1 << 30  # CIFAR's batches are 30-160 MB


def load_pickle(path: str | Path, encoding: str = "bytes") -> Any:
    """Unpickle a data file allowing only numpy arrays and plain values (never ``pickle.load`` on a user file).

    ``encoding="bytes"`` reads Python 2 pickles (CIFAR's) with their strings as bytes. Any problem is a DataError
    naming the path.
    """
    path = Path(path)
    raw = read_bytes(path, DataError, MAX_PICKLE_BYTES, "pickled data batch")
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), str(path), encoding=encoding).load()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a truncated or garbage pickle fails in many ways, all are bad data
        raise DataError(f"not a readable pickle ({type(exc).__name__}: {exc}); expected a python-pickled data "
                        "batch", where=str(path)) from None


__all__ = ["DATASETS", "DataShape", "DatasetSpec", "SAFE_PICKLE_GLOBALS", "Splits", "TensorSplit", "channel_stats",
           "check_fits", "load_dataset", "load_pickle", "stratified_split"]
