"""Data layer: built-in loaders, user folders/IDX/npz, splits, and the bad-input errors."""

from __future__ import annotations

import gzip
import struct
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from trusttango.data import (
    LabelledDataset,
    load_builtin,
    load_data,
    load_idx,
    load_image_folder,
    load_images,
    load_npz,
    split,
)
from trusttango.errors import InputError


def test_fashion_mnist_full_splits(fmnist):
    assert (len(fmnist.train), len(fmnist.val), len(fmnist.test)) == (55000, 5000, 10000)
    assert fmnist.train.input_shape == (1, 28, 28)
    assert fmnist.class_names[0] == "T-shirt/top" and fmnist.train.num_classes == 10
    assert 0.0 <= float(fmnist.train.x.min()) and float(fmnist.train.x.max()) <= 1.0
    # validation is stratified out of the official training set: 500 per class
    assert (fmnist.val.class_counts() == 500).all()
    assert (fmnist.test.class_counts() == 1000).all()


@pytest.mark.parametrize("name, n, shape", [("mnist-5k", 5000, (1, 28, 28)), ("digits", 1797, (1, 8, 8))])
def test_small_builtins(name, n, shape):
    s = load_builtin(name, seed=0)
    assert len(s.train) + len(s.val) + len(s.test) == n
    assert s.train.input_shape == shape
    assert set(np.unique(s.test.y.numpy())) == set(range(10))


def test_splits_are_deterministic_stratified_and_disjoint():
    a, b, c = load_builtin("digits", 3), load_builtin("digits", 3), load_builtin("digits", 4)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)
    counts = a.train.class_counts() / len(a.train)
    assert np.allclose(counts, 0.1, atol=0.02)
    rows = {tuple(r) for r in a.train.x.flatten(1).numpy().round(4)}
    assert not any(tuple(r) in rows for r in a.test.x.flatten(1).numpy().round(4)[:50] if list(r).count(0) < 60)


def test_unknown_builtin_names_the_choices():
    with pytest.raises(InputError, match="fashion-mnist"):
        load_builtin("cifar-1000")


def _write_folder(root, classes=("cat", "dog"), per_class=4, size=(12, 10), mode="L"):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            shape = size if mode == "L" else (*size, 3)
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / c / f"{i}.png")
    return root


def test_image_folder_mixed_sizes_and_colour(tmp_path):
    root = _write_folder(tmp_path / "imgs")
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8), "RGB").save(root / "dog" / "big.jpg")
    ds = load_image_folder(root)
    assert ds.class_names == ["cat", "dog"] and len(ds) == 9
    assert ds.input_shape == (3, 12, 10)  # colour present -> 3 channels; median size
    assert ds.class_counts().tolist() == [4, 5]


def test_image_folder_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        load_image_folder(tmp_path / "empty")
    root = _write_folder(tmp_path / "withempty")
    (root / "zebra").mkdir()
    with pytest.raises(InputError, match="zebra"):
        load_image_folder(root)


def test_corrupt_image_named_or_skipped(tmp_path):
    root = _write_folder(tmp_path / "c")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match="broken.png"):
        load_image_folder(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_image_folder(root, skip_corrupt=True)
    assert len(ds) == 8 and any("skipped 1 corrupt" in str(w.message) for w in caught)


def _write_idx(path, array):
    codes = {np.dtype(np.uint8): 0x08}
    header = struct.pack(">HBB", 0, codes[array.dtype], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.tobytes())


def test_idx_roundtrip_and_truncation(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (6, 5, 4), dtype=np.uint8)
    _write_idx(tmp_path / "my-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "my-labels-idx1-ubyte.gz", np.array([0, 1, 2, 0, 1, 2], np.uint8))
    ds = load_idx(tmp_path / "my-images-idx3-ubyte.gz")
    assert ds.input_shape == (1, 5, 4) and ds.num_classes == 3
    assert torch.allclose(ds.x[2, 0], torch.from_numpy(imgs[2]).float() / 255)
    raw = gzip.open(tmp_path / "my-images-idx3-ubyte.gz").read()
    with gzip.open(tmp_path / "bad-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(raw[:-7])
    with pytest.raises(InputError, match="truncated"):
        load_idx(tmp_path / "bad-images-idx3-ubyte.gz", tmp_path / "my-labels-idx1-ubyte.gz")


def test_npz_and_its_errors(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ok.npz", x=rng.random((30, 8, 8)).astype(np.float32), y=np.arange(30) % 3)
    ds = load_npz(tmp_path / "ok.npz")
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 3
    np.savez(tmp_path / "short.npz", x=rng.random((30, 8, 8)), y=np.arange(29) % 3)
    with pytest.raises(InputError, match="30 rows but y has 29"):
        load_npz(tmp_path / "short.npz")
    np.savez(tmp_path / "nox.npz", y=np.arange(3))
    with pytest.raises(InputError, match="missing array 'x'"):
        load_npz(tmp_path / "nox.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(InputError, match="junk.npz"):
        load_npz(tmp_path / "junk.npz")


def test_labels_out_of_range_and_nan_rejected():
    with pytest.raises(InputError, match=r"labels must lie in \[0, 1\]"):
        LabelledDataset(torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 5]), ["a", "b"])
    with pytest.raises(InputError, match="NaN"):
        LabelledDataset(torch.full((2, 1, 2, 2), float("nan")), torch.tensor([0, 1]), ["a", "b"])


def test_load_data_dispatch(tmp_path):
    root = _write_folder(tmp_path / "f", per_class=10)
    s = load_data(str(root), seed=1)
    assert len(s.train) + len(s.val) + len(s.test) == 20
    with pytest.raises(InputError, match="no such file"):
        load_data(str(tmp_path / "nothing"))
    extra = split(s.train, 0.2, 0.2, 0)
    assert len(extra.val) > 0


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    """A 16-bit grey PNG at half range reads as 0.5 (Pillow's 8-bit conversion clipped it to white)."""
    levels = {"dark": 1000, "half": 32768}
    for name, level in levels.items():
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((6, 5), level, dtype=np.uint16)).save(tmp_path / name / "a.png")
    ds = load_image_folder(tmp_path)
    assert ds.x.shape == (2, 1, 6, 5)
    for label, level in enumerate(levels.values()):
        assert torch.allclose(ds.x[ds.y == label], torch.tensor(level / 65535), atol=1e-4)
    assert torch.allclose(load_images([tmp_path / "half" / "a.png"], (1, 6, 5)), torch.tensor(0.5), atol=1e-4)


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    from trusttango.data.files import MAX_PIXELS

    side = int(MAX_PIXELS**0.5) + 1
    Image.new("1", (side, side)).save(tmp_path / "bomb.png")  # a small file that decodes to > MAX_PIXELS
    assert (tmp_path / "bomb.png").stat().st_size < 2_000_000
    with pytest.raises(InputError, match=rf"bomb.png: {side} x {side} pixels is over the limit .*MAX_PIXELS"):
        load_images([tmp_path / "bomb.png"], (1, 8, 8))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((2, 4)), "y": np.array([0, 10**9])}, r"label 1000000000 is at or above the limit of 10000"),
        ({"x": np.zeros((2, 4)), "y": np.array([0, -1])}, r"label -1 is negative"),
        ({"x": np.array(["a", "b"]), "y": np.array([0, 1])}, r"x must be a numeric array .* got <U1 of 1"),
        ({"x": np.array(3.0), "y": np.array([0])}, r"x must be a numeric array .* of 0"),
        ({"x": np.zeros((2, 4)), "y": np.zeros((2, 1), dtype=int)}, r"y must be one label per row"),
        ({"x": np.zeros((2, 4)), "y": np.array([0, 2]), "class_names": np.array(["a", "b"])}, r"label 2 but only 2"),
    ],
    ids=["huge-label", "negative", "strings", "scalar", "y-2d", "names"],
)
def test_npz_arrays_are_checked_before_use(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputError, match=message):
        load_npz(tmp_path / "d.npz")


def test_a_zero_byte_npz_is_refused(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"")
    with pytest.raises(InputError, match=r"d.npz: not a readable .npz archive"):
        load_npz(tmp_path / "d.npz")
