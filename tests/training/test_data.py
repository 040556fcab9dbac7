"""Data sets: fixed splits, the CIFAR reader (real format, restricted unpickler), image folders, synthetic data."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from nascore.training.data import (DATASETS, DatasetSpec, Splits, TensorSplit, channel_stats, load_dataset, load_pickle,
                          stratified_split)
from nascore.errors import DataError

# -- registry and parameters ------------------------------------------------------------------------------------------


def test_builtin_datasets_are_registered():
    assert {"digits", "cifar10", "cifar100", "imagefolder", "synthetic"} <= set(DATASETS.names())
    assert DATASETS.owner("digits") == "nascore.datasets"
    assert all(isinstance(spec, DatasetSpec) and spec.summary for _, spec in DATASETS.items())


def test_unknown_dataset_and_parameters_are_data_errors():
    with pytest.raises(DataError, match=r"unknown dataset 'digitz'.*did you mean 'digits'"):
        load_dataset("digitz")
    with pytest.raises(DataError, match=r"dataset 'synthetic': unknown parameter 'classez'.*did you mean 'classes'"):
        load_dataset("synthetic", classez=3)
    with pytest.raises(DataError, match=r"dataset 'synthetic'.*parameter 'n'.*got 'many'.*expected int"):
        load_dataset("synthetic", n="many")
    with pytest.raises(DataError, match=r"dataset 'synthetic'.*parameter 'shape'.*\[3, 8\].*expected \[C, H, W\]"):
        load_dataset("synthetic", shape=[3, 8])
    with pytest.raises(DataError, match=r"dataset 'cifar100'.*parameter 'labels'.*expected one of"):
        load_dataset("cifar100", root="/nowhere", labels="medium")


# -- digits ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> Splits:
    return load_dataset("digits")


def test_digits_shape_and_sizes(digits):
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.sizes() == {"train": 1078, "val": 360, "test": 359}
    for split in (digits.train, digits.val, digits.test):
        assert isinstance(split, TensorSplit) and split.x.dtype == torch.float32
        assert 0.0 <= float(split.x.min()) and float(split.x.max()) <= 1.0
        assert set(split.y.tolist()) == set(range(10))  # stratified: every class in every split
    mean, std = channel_stats(digits.train.x)
    assert digits.mean == pytest.approx(mean) and digits.std == pytest.approx(std)


def test_digits_split_is_fixed_and_disjoint(digits):
    from nascore_plugins.datasets import digits_arrays

    images, labels = digits_arrays()
    parts = stratified_split(labels, (0.6, 0.2, 0.2), seed=0)
    ids = [set(p.tolist()) for p in parts]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert ids[0] | ids[1] | ids[2] == set(range(len(labels)))
    expected = torch.tensor(images / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    for split, part in zip((digits.train, digits.val, digits.test), parts):
        assert torch.equal(split.x, expected[part]) and split.y.tolist() == labels[part].tolist()
    # the same split whatever the global RNG state
    np.random.seed(123)
    torch.manual_seed(123)
    again = load_dataset("digits")
    for a, b in ((digits.train, again.train), (digits.val, again.val), (digits.test, again.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_digits_fast_reader_matches_scikit_learn():
    from sklearn.datasets import load_digits

    from nascore_plugins.datasets import digits_arrays

    images, labels = digits_arrays()
    reference = load_digits()
    assert np.array_equal(images, reference.data) and np.array_equal(labels, reference.target)


def test_stratified_split_proportions_and_errors():
    labels = np.repeat(np.arange(3), [10, 5, 3])
    train, val, test = stratified_split(labels, (0.6, 0.2, 0.2), seed=7)
    assert len(train) + len(val) + len(test) == 18
    assert np.bincount(labels[train]).tolist() == [6, 3, 2]
    assert set(labels[val]) | set(labels[test]) == {0, 1, 2}
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), stratified_split(labels, (0.6, 0.2, 0.2), 7)))
    with pytest.raises(DataError, match="summing to 1"):
        stratified_split(labels, (0.5, 0.2))


# -- CIFAR -----------------------------------------------------------------------------------------------------------


def _write_batch(path, n, seed, label_key=b"labels", num_classes=10, protocol=2, extra=None):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, num_classes, n)]
    d = {b"batch_label": b"fake batch", b"data": data, label_key: labels, b"filenames": [b"x.png"] * n}
    d.update(extra or {})
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=protocol)
    return data, labels


@pytest.fixture
def fake_cifar10(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = [_write_batch(folder / f"data_batch_{i}", 6, i, protocol=2 if i % 2 else 5) for i in range(1, 6)]
    test = _write_batch(folder / "test_batch", 4, 99)
    names = [n.encode() for n in ("airplane automobile bird cat deer dog frog horse ship truck".split())]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=2)
    return folder, batches, test


def test_cifar10_reads_the_python_batches(fake_cifar10):
    folder, batches, (test_data, test_labels) = fake_cifar10
    # the real files were written by numpy 1 (module numpy.core), these by numpy 2 (numpy._core): read both
    raw = (folder / "data_batch_1").read_bytes()
    assert b"numpy._core.multiarray\n_reconstruct" in raw
    (folder / "data_batch_1").write_bytes(raw.replace(b"numpy._core.", b"numpy.core."))
    for root in (folder.parent, folder):  # the folder itself or its parent
        s = load_dataset("cifar10", root=root, val=5)
        assert s.input_shape == (3, 32, 32) and s.num_classes == 10 and s.classes[0] == "airplane"
        assert s.sizes() == {"train": 25, "val": 5, "test": 4}
        data = np.concatenate([b[0] for b in batches]).reshape(-1, 3, 32, 32)
        labels = sum((b[1] for b in batches), [])
        assert s.train.x.dtype == torch.uint8
        assert np.array_equal(s.train.x.numpy(), data[:25]) and s.train.y.tolist() == labels[:25]
        assert np.array_equal(s.val.x.numpy(), data[25:]) and s.val.y.tolist() == labels[25:]  # val: the last ones
        assert np.array_equal(s.test.x.numpy(), test_data.reshape(-1, 3, 32, 32)) and s.test.y.tolist() == test_labels
        assert len(s.mean) == 3 and all(0.3 < m < 0.7 for m in s.mean)


def test_cifar100_fine_and_coarse(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 12), ("test", 3)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": list(range(n)), b"coarse_labels": [i % 20 for i in range(n)]},
                        f, protocol=2)
    fine = load_dataset("cifar100", root=tmp_path, val=2)
    assert fine.num_classes == 100 and fine.sizes() == {"train": 10, "val": 2, "test": 3}
    assert fine.val.y.tolist() == [10, 11] and fine.classes is None
    coarse = load_dataset("cifar100", root=folder, val=2, labels="coarse")
    assert coarse.num_classes == 20 and coarse.val.y.tolist() == [10, 11]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused(fake_cifar10, tmp_path):
    folder, _, _ = fake_cifar10
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": _Evil(marker), b"labels": []}, f, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_3: pickle refers to (posix|os|nt)\.system, which is not allowed"):
        load_dataset("cifar10", root=tmp_path, val=5)
    assert not marker.exists()
    with open(folder / "data_batch_3", "wb") as f:
        f.write(b"cbuiltins\neval\n(V__import__('os').system('touch " + str(marker).encode() + b"')\ntR.")
    with pytest.raises(DataError, match=r"builtins\.eval, which is not allowed"):
        load_pickle(folder / "data_batch_3")
    assert not marker.exists()


def test_cifar_missing_and_malformed_files(fake_cifar10, tmp_path):
    folder, _, _ = fake_cifar10
    with pytest.raises(DataError, match=r"needs root="):
        load_dataset("cifar10")
    with pytest.raises(DataError, match=rf"{tmp_path / 'nope'}: not found; expected the cifar-10-batches-py folder"):
        load_dataset("cifar10", root=tmp_path / "nope")
    (folder / "data_batch_4").unlink()
    with pytest.raises(DataError, match=rf"{folder}: missing data_batch_4; expected the cifar-10-batches-py folder"):
        load_dataset("cifar10", root=tmp_path)
    _write_batch(folder / "data_batch_4", 6, 4)

    def refused(content, pattern):
        (folder / "data_batch_2").write_bytes(content)
        with pytest.raises(DataError, match=pattern) as info:
            load_dataset("cifar10", root=tmp_path, val=5)
        assert str(folder / "data_batch_2") in str(info.value)

    refused(pickle.dumps([1, 2, 3], protocol=2), r"holds a list, expected a dict")
    refused(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2), r"has keys \['data'\], expected")
    refused(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2),
            r"uint8 array of shape \(2, 100\), expected a uint8 array of shape \(N, 3072\)")
    refused(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, protocol=2),
            r"expected 2 integer labels")
    refused(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, protocol=2),
            r"spans 0\.\.10, expected 0\.\.9")
    refused(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=2)[:40],
            r"not a readable pickle")
    _write_batch(folder / "data_batch_2", 6, 2)
    with pytest.raises(DataError, match=r"parameter 'val' is 30 but the training files hold 30 images"):
        load_dataset("cifar10", root=tmp_path, val=30)


# -- image folders ---------------------------------------------------------------------------------------------------


def _png(path, colour, size=(12, 10)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_imagefolder_with_train_val_test(tmp_path):
    for split, count in (("train", 3), ("val", 2), ("test", 1)):
        for cls, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            for i in range(count):
                _png(tmp_path / split / cls / f"{i}.png", colour)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    s = load_dataset("imagefolder", root=tmp_path, size=8)
    assert s.input_shape == (3, 8, 8) and s.classes == ("cat", "dog") and s.num_classes == 2
    assert s.sizes() == {"train": 6, "val": 4, "test": 2}
    assert s.train.x.dtype == torch.uint8 and s.train.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert s.train.x[0, :, 0, 0].tolist() == [255, 0, 0] and s.train.x[-1, :, 0, 0].tolist() == [0, 0, 255]
    grey = load_dataset("imagefolder", root=tmp_path, size=4, channels=1)
    assert grey.input_shape == (1, 4, 4) and len(grey.mean) == 1
    # without test/, the test split is the val split
    for path in (tmp_path / "test").rglob("*.png"):
        path.unlink()
    for folder in sorted((tmp_path / "test").rglob("*"), reverse=True):
        folder.rmdir()
    (tmp_path / "test").rmdir()
    assert load_dataset("imagefolder", root=tmp_path, size=8).sizes()["test"] == 4


def test_imagefolder_single_folder_is_split_by_a_fixed_seed(tmp_path):
    for cls, colour in (("a", (10, 10, 10)), ("b", (200, 200, 200))):
        for i in range(10):
            _png(tmp_path / cls / f"{i}.jpg", colour)
    s = load_dataset("imagefolder", root=tmp_path, size=8)
    assert s.sizes() == {"train": 12, "val": 4, "test": 4}
    assert sorted(s.val.y.tolist()) == [0, 0, 1, 1]
    again = load_dataset("imagefolder", root=tmp_path, size=8)
    assert torch.equal(s.train.y, again.train.y) and torch.equal(s.test.x, again.test.x)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match=rf"{tmp_path / 'missing'}: not found or not a folder"):
        load_dataset("imagefolder", root=tmp_path / "missing")
    with pytest.raises(DataError, match=rf"{tmp_path}: found 0 class folder\(s\) with images"):
        load_dataset("imagefolder", root=tmp_path)
    _png(tmp_path / "train" / "cat" / "0.png", (1, 2, 3))
    _png(tmp_path / "train" / "dog" / "0.png", (1, 2, 3))
    with pytest.raises(DataError, match=rf"{tmp_path}: has train/ but no val/"):
        load_dataset("imagefolder", root=tmp_path)
    _png(tmp_path / "val" / "bird" / "0.png", (1, 2, 3))
    with pytest.raises(DataError, match=r"val: has class folders \['bird'\] that train/ does not have"):
        load_dataset("imagefolder", root=tmp_path)
    (tmp_path / "val" / "bird" / "0.png").rename(tmp_path / "val" / "bird" / "0.txt")
    (tmp_path / "val" / "bird").rename(tmp_path / "val" / "cat")
    with pytest.raises(DataError, match=r"val: holds no images"):
        load_dataset("imagefolder", root=tmp_path)
    (tmp_path / "val" / "cat" / "1.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"1\.png: cannot read as an image"):
        load_dataset("imagefolder", root=tmp_path)
    with pytest.raises(DataError, match=r"needs root="):
        load_dataset("imagefolder")


# -- synthetic and Splits checks -------------------------------------------------------------------------------------


def test_synthetic_is_deterministic_and_shaped():
    a = load_dataset("synthetic", n=200, classes=4, shape=[2, 12, 10], seed=3)
    b = load_dataset("synthetic", n=200, classes=4, shape=[2, 12, 10], seed=3)
    c = load_dataset("synthetic", n=200, classes=4, shape=[2, 12, 10], seed=4)
    assert a.input_shape == (2, 12, 10) and a.num_classes == 4 and a.sizes() == {"train": 120, "val": 40, "test": 40}
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)
    with pytest.raises(DataError, match=r"parameter 'n' is 20, expected at least 5 x classes"):
        load_dataset("synthetic", n=20, classes=10)


def test_splits_are_checked():
    x, y = torch.zeros(4, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 0, 1])
    split = TensorSplit(x, y)
    with pytest.raises(DataError, match=r"mean/std have 1/1 values, expected one per channel \(3\)"):
        Splits(split, split, split, (3, 4, 4), 2, (0.5,), (0.2,))
    with pytest.raises(DataError, match=r"train labels span 0\.\.1, expected 0\.\.0|num_classes is 1"):
        Splits(split, split, split, (3, 4, 4), 1, (0.5,) * 3, (0.2,) * 3)
    with pytest.raises(DataError, match=r"train samples have shape \(3, 4, 4\), expected \(3, 8, 8\)"):
        Splits(split, split, split, (3, 8, 8), 2, (0.5,) * 3, (0.2,) * 3)
    with pytest.raises(DataError, match=r"x has dtype torch.int32, expected uint8 or a float dtype"):
        TensorSplit(x.int(), y)
    with pytest.raises(DataError, match=r"x has 4 samples but y has 3 labels"):
        TensorSplit(x, y[:3])
