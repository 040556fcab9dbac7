"""nascore's built-in data sets: digits, scaled_digits, cifar10, cifar100, imagefolder, synthetic.

Every split is fixed (a seeded permutation, or the files' own order), so every trial of every run sees the same
data. Nothing is downloaded: digits ships with scikit-learn (scaled_digits is generated from it), CIFAR and image
folders are read from a ``root`` the user gives, synthetic is generated.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nascore import Param, hookimpl
from nascore.training.data import (
    DatasetSpec,
    Splits,
    TensorSplit,
    channel_stats,
    load_pickle,
    stratified_split,
)
from nascore.errors import DataError


def _splits(name: str, x: torch.Tensor, y: torch.Tensor, parts: list[np.ndarray], num_classes: int,
            classes: tuple[str, ...] | None = None) -> Splits:
    """Splits of in-memory ``x``/``y`` by index arrays (train, val, test); normalisation from train."""
    tensors = [TensorSplit(x[torch.as_tensor(p, dtype=torch.long)], y[torch.as_tensor(p, dtype=torch.long)],
                           where=f"dataset {name!r}: {s}") for p, s in zip(parts, ("train", "val", "test"))]
    mean, std = channel_stats(tensors[0].x)
    return Splits(*tensors, input_shape=tuple(x.shape[1:]), num_classes=num_classes, mean=mean, std=std,
                  classes=classes, name=name)


# -- digits ----------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images (1797, 64) float64 0..16, labels (1797,) int64), read once per process.

    The CSV bundled with scikit-learn is read directly: ``import sklearn.datasets`` pulls in scipy and costs ~2 s per
    process (every search worker); the fallback, when the file is not where scikit-learn keeps it, is its loader.
    """
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import (
        load_digits as sk_load_digits,  # pragma: no cover - other layouts
    )

    data = sk_load_digits()  # pragma: no cover
    return data.data, data.target.astype(np.int64)  # pragma: no cover


def load_digits(root: Path | None = None) -> Splits:
    images, target = digits_arrays()
    x = torch.tensor(images / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(target, dtype=torch.int64)
    parts = stratified_split(target, (0.6, 0.2, 0.2), seed=0)
    return _splits("digits", x, y, parts, 10, tuple(str(i) for i in range(10)))


DIGITS = DatasetSpec(
    name="digits", load=load_digits,
    doc="scikit-learn's 8x8 handwritten digits (1797 images, 1x8x8, 10 classes), bundled: no download. Fixed "
        "stratified 60/20/20 train/val/test split (seed 0); pixels scaled to [0, 1].",
)


# -- CIFAR -----------------------------------------------------------------------------------------------------------


def _find_dir(dataset: str, root: Path | None, folder: str, files: list[str]) -> Path:
    """``root`` or ``root/folder``, whichever holds ``files``; a DataError naming the path and what is missing."""
    if root is None:
        raise DataError(f"needs root=: the {folder} folder (python version of the data set) or its parent; nothing "
                        "is downloaded", where=f"dataset {dataset!r}")
    root = Path(root)
    if not root.exists():
        raise DataError(f"not found; expected the {folder} folder or its parent", where=f"{root}")
    if not root.is_dir():
        raise DataError(f"is a file; expected the {folder} folder or its parent", where=f"{root}")
    for base in (root, root / folder):
        if base.is_dir() and all((base / f).is_file() for f in files):
            return base
    base = root / folder if (root / folder).is_dir() else root
    missing = [f for f in files if not (base / f).is_file()]
    raise DataError(f"missing {', '.join(missing)}; expected the {folder} folder (with {', '.join(files)}) "
                    "or its parent", where=str(base))


def _get(d: dict, key: str) -> Any:
    return d[key.encode()] if key.encode() in d else d.get(key)


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = load_pickle(path)
    if not isinstance(d, dict):
        raise DataError(f"holds a {type(d).__name__}, expected a dict with b'data' and b'{label_key}'",
                        where=str(path))
    data, labels = _get(d, "data"), _get(d, label_key)
    if data is None or labels is None:
        keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in d)
        raise DataError(f"has keys {keys}, expected 'data' and {label_key!r}", where=str(path))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                 else type(data).__name__)
        raise DataError(f"'data' is a {found}, expected a uint8 array of shape (N, 3072)", where=str(path))
    try:
        labels = np.asarray(labels)
    except Exception:  # noqa: BLE001
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise DataError(f"{label_key!r} has {labels.shape} of {labels.dtype}, expected {len(data)} integer labels",
                        where=str(path))
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{label_key!r} spans {labels.min()}..{labels.max()}, expected 0..{num_classes - 1}",
                        where=str(path))
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _read_names(path: Path, key: str, num_classes: int) -> tuple[str, ...] | None:
    if not path.is_file():
        return None
    d = load_pickle(path)
    names = _get(d, key) if isinstance(d, dict) else None
    if not isinstance(names, list) or len(names) != num_classes:
        raise DataError(f"expected a dict whose {key!r} lists {num_classes} class names", where=str(path))
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)


def _cifar(dataset: str, base: Path, train_files: list[str], test_file: str, label_key: str, num_classes: int,
           val: int, classes: tuple[str, ...] | None) -> Splits:
    batches = [_read_batch(base / f, label_key, num_classes) for f in train_files]
    x = torch.from_numpy(np.concatenate([b[0] for b in batches]))
    y = torch.from_numpy(np.concatenate([b[1] for b in batches]))
    if val >= len(y) - 1:
        raise DataError(f"parameter 'val' is {val} but the training files hold {len(y)} images; expected fewer "
                        "(val is the last `val` training images)", where=f"dataset {dataset!r}")
    tx, ty = _read_batch(base / test_file, label_key, num_classes)
    cut = len(y) - val
    train = TensorSplit(x[:cut].contiguous(), y[:cut].contiguous(), where=f"dataset {dataset!r}: train")
    valid = TensorSplit(x[cut:].contiguous(), y[cut:].contiguous(), where=f"dataset {dataset!r}: val")
    test = TensorSplit(torch.from_numpy(tx.copy()), torch.from_numpy(ty), where=f"dataset {dataset!r}: test")
    mean, std = channel_stats(train.x)
    return Splits(train, valid, test, input_shape=(3, 32, 32), num_classes=num_classes, mean=mean, std=std,
                  classes=classes, name=dataset)


_VAL = Param("val", int, 5000, "validation images: the last `val` of the training files (fixed)", low=1)


def load_cifar10(root: Path | None = None, val: int = 5000) -> Splits:
    train_files = [f"data_batch_{i}" for i in range(1, 6)]
    base = _find_dir("cifar10", root, "cifar-10-batches-py", train_files + ["test_batch"])
    classes = _read_names(base / "batches.meta", "label_names", 10)
    return _cifar("cifar10", base, train_files, "test_batch", "labels", 10, val, classes)


def load_cifar100(root: Path | None = None, val: int = 5000, labels: str = "fine") -> Splits:
    base = _find_dir("cifar100", root, "cifar-100-python", ["train", "test"])
    num_classes = 100 if labels == "fine" else 20
    classes = _read_names(base / "meta", f"{labels}_label_names", num_classes)
    return _cifar("cifar100", base, ["train"], "test", f"{labels}_labels", num_classes, val, classes)


CIFAR10 = DatasetSpec(
    name="cifar10", load=load_cifar10, params=(_VAL,),
    doc="CIFAR-10 from its python batches (root: cifar-10-batches-py or its parent; data_batch_1..5, test_batch). "
        "val = the last 5000 training images; read with a restricted unpickler.",
)
CIFAR100 = DatasetSpec(
    name="cifar100", load=load_cifar100,
    params=(_VAL, Param("labels", str, "fine", "label set: 100 fine classes or 20 coarse superclasses",
                        choices=("fine", "coarse"))),
    doc="CIFAR-100 from its python files (root: cifar-100-python or its parent; train, test). val = the last "
        "5000 training images; read with a restricted unpickler.",
)


# -- image folders ---------------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def _scan(folder: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files, for each sub-folder of ``folder`` (sorted)."""
    return {d.name: sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")}


def _read_images(files: list[Path], size: int, channels: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(files), size, size, channels), dtype=np.uint8)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as im:
                im = im.convert("RGB" if channels == 3 else "L").resize((size, size), Image.Resampling.BILINEAR)
                out[i] = np.asarray(im, dtype=np.uint8).reshape(size, size, channels)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DataError(f"cannot read as an image ({type(exc).__name__}: {exc}); expected a PNG/JPEG/... file",
                            where=str(path)) from None
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _folder_split(folder: Path, classes: list[str], size: int, channels: int, required: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    scanned = _scan(folder)
    unknown = sorted(set(scanned) - set(classes))
    if unknown:
        raise DataError(f"has class folders {unknown} that train/ does not have; expected a subset of {classes}",
                        where=str(folder))
    files, labels = [], []
    for label, cls in enumerate(classes):
        files += scanned.get(cls, [])
        labels += [label] * len(scanned.get(cls, []))
    if required and not files:
        raise DataError("holds no images; expected <class>/*.png|jpg sub-folders", where=str(folder))
    return _read_images(files, size, channels), torch.tensor(labels, dtype=torch.int64)


def load_imagefolder(root: Path | None = None, size: int = 32, channels: int = 3, val_fraction: float = 0.2,
                     test_fraction: float = 0.2) -> Splits:
    if root is None:
        raise DataError("needs root=: a folder with train/<class>/ and val/<class>/ (optional test/), or a folder "
                        "of <class>/ sub-folders", where="dataset 'imagefolder'")
    root = Path(root)
    if not root.is_dir():
        raise DataError("not found or not a folder; expected train/<class>/ and val/<class>/ sub-folders, or "
                        "<class>/ sub-folders of images", where=str(root))
    if (root / "train").is_dir():
        if not (root / "val").is_dir():
            raise DataError("has train/ but no val/; expected val/<class>/ images beside train/", where=str(root))
        scanned = _scan(root / "train")
        if not scanned:
            raise DataError("has no class sub-folders; expected train/<class>/*.png|jpg", where=str(root / "train"))
        empty = [c for c, files in scanned.items() if not files]
        if empty:
            raise DataError(f"class folder(s) {empty} hold no images; expected *.png|jpg|... files",
                            where=str(root / "train"))
        classes = list(scanned)
        if len(classes) < 2:
            raise DataError(f"has one class folder {classes}, expected at least 2", where=str(root / "train"))
        train = _folder_split(root / "train", classes, size, channels)
        val = _folder_split(root / "val", classes, size, channels)
        test = _folder_split(root / "test", classes, size, channels) if (root / "test").is_dir() else val
        splits = [TensorSplit(*t, where=f"{root / s}") for t, s in zip((train, val, test), ("train", "val", "test"))]
        mean, std = channel_stats(splits[0].x)
        return Splits(*splits, input_shape=(channels, size, size), num_classes=len(classes), mean=mean, std=std,
                      classes=tuple(classes), name="imagefolder")
    scanned = {c: f for c, f in _scan(root).items() if f}
    if len(scanned) < 2:
        raise DataError(f"found {len(scanned)} class folder(s) with images; expected train/ and val/ sub-folders, "
                        "or at least 2 <class>/ sub-folders of *.png|jpg images", where=str(root))
    if val_fraction + test_fraction >= 1:
        raise DataError(f"val_fraction + test_fraction is {val_fraction + test_fraction:g}, expected < 1",
                        where="dataset 'imagefolder'")
    classes = list(scanned)
    x, y = _folder_split(root, classes, size, channels)
    parts = stratified_split(y.numpy(), (1 - val_fraction - test_fraction, val_fraction, test_fraction), seed=0)
    return _splits("imagefolder", x, y, parts, len(classes), tuple(classes))


IMAGEFOLDER = DatasetSpec(
    name="imagefolder", load=load_imagefolder,
    params=(Param("size", int, 32, "side the images are resized to (square)", low=1, high=4096),
            Param("channels", int, 3, "3: RGB, 1: greyscale", choices=(1, 3)),
            Param("val_fraction", float, 0.2, "single-folder layout: fraction for val (fixed seed 0)", low=0, high=1),
            Param("test_fraction", float, 0.2, "single-folder layout: fraction for test", low=0, high=1)),
    doc="Images in class folders, loaded into memory as uint8: root/train/<class>/*.png|jpg and root/val/<class>/ "
        "(optional test/; without it the test split is val), or root/<class>/ split stratified by seed 0.",
)


# -- synthetic -------------------------------------------------------------------------------------------------------


def load_synthetic(root: Path | None = None, n: int = 1024, classes: int = 10, shape: tuple[int, ...] = (3, 32, 32),
                   seed: int = 0, noise: float = 0.25) -> Splits:
    if len(shape) != 3:
        raise DataError(f"parameter 'shape' is {list(shape)}, expected [C, H, W]", where="dataset 'synthetic'")
    if n < 5 * classes:
        raise DataError(f"parameter 'n' is {n}, expected at least 5 x classes ({5 * classes}) so that every split "
                        "holds every class", where="dataset 'synthetic'")
    c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    # each class: a smooth random pattern (low-resolution noise, upsampled) and its own channel colour
    low = torch.rand(classes, c, max(2, (h + 3) // 4), max(2, (w + 3) // 4), generator=g)
    protos = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False) - 0.5
    colour = (torch.rand(classes, c, 1, 1, generator=g) - 0.5) * 0.5
    y = (torch.arange(n) % classes)[torch.randperm(n, generator=g)]
    amp = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
    x = 0.5 + amp * protos[y] * 0.8 + colour[y] + noise * torch.randn(n, c, h, w, generator=g)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    parts = stratified_split(y.numpy(), (0.6, 0.2, 0.2), seed=seed)
    return _splits("synthetic", x, y, parts, classes, tuple(f"class{i}" for i in range(classes)))


SYNTHETIC = DatasetSpec(
    name="synthetic", load=load_synthetic,
    params=(Param("n", int, 1024, "samples in all (split 60/20/20)", low=10),
            Param("classes", int, 10, "number of classes", low=2, high=10000),
            Param("shape", "ints", (3, 32, 32), "[C, H, W] of one sample", low=1, high=4096),
            Param("seed", int, 0, "generator seed (same seed: same data)"),
            Param("noise", float, 0.25, "std of the pixel noise (0..1 scale)", low=0, high=10)),
    doc="Generated, learnable images: a smooth pattern and a colour per class, random contrast, Gaussian noise. "
        "Deterministic per seed; for tests and smoke runs.",
)


# -- scaled digits ---------------------------------------------------------------------------------------------------


def place_digits(images: np.ndarray, sizes: np.ndarray, corners: np.ndarray, canvas: int) -> torch.Tensor:
    """Each 8x8 digit (``images`` (N, 64), 0..16) resized bilinearly to its side in ``sizes`` and pasted on a black
    ``canvas`` x ``canvas`` at its ``corners`` (row, column); uint8 (N, 1, canvas, canvas)."""
    out = np.zeros((len(images), 1, canvas, canvas), dtype=np.uint8)
    for side in np.unique(sizes).tolist():          # one resize per side, then one paste per digit
        index = np.flatnonzero(sizes == side)
        resized = F.interpolate(torch.from_numpy(images[index] / 16.0).float().reshape(-1, 1, 8, 8),
                                size=(side, side), mode="bilinear", align_corners=False)
        tiles = (resized.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        for i, tile in zip(index.tolist(), tiles):
            r, c = corners[i].tolist()
            out[i, :, r:r + side, c:c + side] = tile
    return torch.from_numpy(out)


def load_scaled_digits(root: Path | None = None, canvas: int = 32, min_size: int = 8, max_size: int = 28,
                       copies: int = 2, seed: int = 0) -> Splits:
    if not min_size <= max_size <= canvas:
        raise DataError(f"parameters min_size={min_size}, max_size={max_size}, canvas={canvas}: expected "
                        "min_size <= max_size <= canvas", where="dataset 'scaled_digits'")
    images, target = digits_arrays()
    # split the source digits first, so no handwritten digit appears in two splits at different scales
    parts = stratified_split(target, (0.6, 0.2, 0.2), seed=0)
    source = np.concatenate([np.repeat(p, copies) for p in parts])
    rng = np.random.default_rng(seed)
    sizes = rng.integers(min_size, max_size + 1, size=len(source))
    corners = (rng.random((len(source), 2)) * (canvas - sizes + 1)[:, None]).astype(np.int64)
    x = place_digits(images[source], sizes, corners, canvas)
    y = torch.tensor(target[source], dtype=torch.int64)
    bounds = np.cumsum([0] + [len(p) * copies for p in parts])
    return _splits("scaled_digits", x, y, [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])], 10,
                   tuple(str(i) for i in range(10)))


SCALED_DIGITS = DatasetSpec(
    name="scaled_digits", load=load_scaled_digits,
    params=(Param("canvas", int, 32, "side of the square black canvas", low=8, high=512),
            Param("min_size", int, 8, "smallest side a digit is resized to", low=2, high=512),
            Param("max_size", int, 28, "largest side a digit is resized to (at most canvas)", low=2, high=512),
            Param("copies", int, 2, "placements of each source digit (each at its own scale and position)", low=1,
                  high=100),
            Param("seed", int, 0, "generator seed of the scales and positions (same seed: same data)")),
    doc="Multi-scale digits, generated from scikit-learn's bundled 8x8 digits: each resized to a random side in "
        "[min_size, max_size] and placed at a random position on a 1 x canvas x canvas black image; 10 classes. The "
        "source digits are split 60/20/20 (stratified, seed 0) before placing, so splits share no handwriting. For "
        "pyramid necks: a digit's scale decides which level sees it best.",
)


@hookimpl
def nascore_datasets():
    return [DIGITS, SCALED_DIGITS, CIFAR10, CIFAR100, IMAGEFOLDER, SYNTHETIC]
