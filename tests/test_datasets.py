"""Tests for aiq_tvm.datasets: Fashion-MNIST (real files), held-out subsets, CIFAR-10, bad input."""

from __future__ import annotations

import gzip
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from aiq_tvm import datasets as ds

FMNIST_ROOT = ds.DEFAULT_FASHION_MNIST_ROOT
HINT = "apt-get install dataset-fashion-mnist"


# --------------------------------------------------------------------------------------------
# Helpers writing small files in the official formats
# --------------------------------------------------------------------------------------------


def _idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    """Serialise a uint8 array as an IDX file (big-endian header, as in the official files)."""
    if magic is None:
        magic = 0x0800 | arr.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def _write_fmnist(
    root: Path,
    split: str = "test",
    n: int = 6,
    n_labels: int | None = None,
    gz: bool = True,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Write a tiny Fashion-MNIST split into ``root``; return the raw images and labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n if n_labels is None else n_labels,), dtype=np.uint8)
    prefix = "t10k" if split == "test" else "train"
    for name, arr in (
        (f"{prefix}-images-idx3-ubyte", images),
        (f"{prefix}-labels-idx1-ubyte", labels),
    ):
        data = _idx_bytes(arr)
        if gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)
    return images, labels


def _write_cifar_batch(path: Path, data: np.ndarray, labels: list[int], label: bytes) -> None:
    """Write one batch exactly like the official CIFAR-10 python version (protocol 2)."""
    batch = {
        b"batch_label": label,
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(labels))],
    }
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def _write_cifar(root: Path, n: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Write 5 train batches and a test batch of ``n`` images each; return the raw data."""
    rng = np.random.default_rng(seed)
    raw = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        _write_cifar_batch(root / name, data, labels, f"batch {k + 1} of 6".encode())
        raw[name] = data
        raw[name + "_labels"] = np.asarray(labels)
    return raw


def _expected_fmnist(images: np.ndarray) -> np.ndarray:
    """Reference preprocessing written independently of the implementation."""
    out = np.full((len(images), 32, 32), 0.0, dtype=np.float64)
    out[:, 2:30, 2:30] = images / 255.0
    out = (out - ds.FASHION_MNIST_MEAN) / ds.FASHION_MNIST_STD
    return np.stack([out] * 3, axis=1)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST on the real files
# --------------------------------------------------------------------------------------------


def test_normalization_constants_match_train_set() -> None:
    images, _ = ds._fashion_mnist_raw("train", FMNIST_ROOT)
    pixels = images.astype(np.float64) / 255.0
    assert pixels.mean() == pytest.approx(ds.FASHION_MNIST_MEAN, abs=1e-9)
    assert pixels.std() == pytest.approx(ds.FASHION_MNIST_STD, abs=1e-9)
    assert ds.FASHION_MNIST_MEAN == pytest.approx(0.2860, abs=1e-4)
    assert ds.FASHION_MNIST_STD == pytest.approx(0.3530, abs=1e-4)


@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_fashion_mnist_shapes_and_normalization(split: str, n: int) -> None:
    x, y = ds.fashion_mnist(split)
    assert x.shape == (n, 3, 32, 32) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10))
    assert np.bincount(y).tolist() == [n // 10] * 10  # Fashion-MNIST is exactly balanced
    # Three identical channels.
    assert np.array_equal(x[:, 0], x[:, 1]) and np.array_equal(x[:, 0], x[:, 2])
    # The 2-pixel border is a black pixel normalised like any other.
    background = np.float32(-ds.FASHION_MNIST_MEAN / ds.FASHION_MNIST_STD)
    border = np.concatenate([x[..., :2, :].ravel(), x[..., -2:, :].ravel(),
                             x[..., :, :2].ravel(), x[..., :, -2:].ravel()])
    assert np.allclose(border, background, atol=1e-6)
    # Value range: [0, 1] mapped through the normalisation.
    assert x.min() == pytest.approx(background, abs=1e-5)
    assert x.max() == pytest.approx((1 - ds.FASHION_MNIST_MEAN) / ds.FASHION_MNIST_STD, abs=1e-5)
    if split == "train":
        # Over the un-padded 28x28 area the train set is standardised.
        inner = x[:, 0, 2:30, 2:30].astype(np.float64)
        assert inner.mean() == pytest.approx(0.0, abs=1e-4)
        assert inner.std() == pytest.approx(1.0, abs=1e-4)


def test_fashion_mnist_matches_reference_preprocessing() -> None:
    x, y = ds.fashion_mnist("test")
    with gzip.open(FMNIST_ROOT / "t10k-images-idx3-ubyte.gz", "rb") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FMNIST_ROOT / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    np.testing.assert_allclose(x[:50], _expected_fmnist(raw[:50]), atol=1e-5)
    assert np.array_equal(y, labels)
    assert y[:5].tolist() == [9, 2, 1, 1, 6]  # first official test labels


def test_fashion_mnist_cache_cannot_be_corrupted() -> None:
    x1, y1 = ds.fashion_mnist("test")
    x1[:] = 123.0
    y1[:] = 7
    x2, y2 = ds.fashion_mnist("test")
    assert not np.shares_memory(x1, x2) and not np.shares_memory(y1, y2)
    assert x2[0, 0, 0, 0] != 123.0 and (y2 != 7).any()
    images, labels = ds._fashion_mnist_raw("test", FMNIST_ROOT)
    assert not images.flags.writeable and not labels.flags.writeable
    assert ds._fashion_mnist_raw("test", FMNIST_ROOT)[0] is images  # cached


def test_fashion_mnist_accepts_uncompressed_files(tmp_path: Path) -> None:
    images, labels = _write_fmnist(tmp_path, "test", n=5, gz=False)
    x, y = ds.fashion_mnist("test", root=tmp_path)
    np.testing.assert_allclose(x, _expected_fmnist(images), atol=1e-5)
    assert y.tolist() == labels.tolist()


def test_fashion_mnist_bad_split() -> None:
    with pytest.raises(ValueError, match="split"):
        ds.fashion_mnist("val")


# --------------------------------------------------------------------------------------------
# Held-out pool, calibration and validation subsets
# --------------------------------------------------------------------------------------------


def test_heldout_pool_and_train_indices_partition_train_split() -> None:
    pool = ds.heldout_indices()
    train = ds.train_indices()
    assert pool.shape == (ds.HELDOUT_SIZE,) and len(np.unique(pool)) == ds.HELDOUT_SIZE
    assert train.shape == (60000 - ds.HELDOUT_SIZE,)
    assert np.array_equal(train, np.sort(train))
    assert np.intersect1d(pool, train).size == 0
    assert np.array_equal(np.sort(np.concatenate([pool, train])), np.arange(60000))
    # Fixed: the pool depends on no argument and is the seed-0 permutation prefix.
    expected = np.random.default_rng(ds.HELDOUT_SEED).permutation(60000)[: ds.HELDOUT_SIZE]
    assert np.array_equal(pool, expected)
    shuffled = ds.train_indices(seed=3)
    assert not np.array_equal(shuffled, train)
    assert np.array_equal(np.sort(shuffled), train)
    assert np.array_equal(shuffled, ds.train_indices(seed=3))


@pytest.fixture
def index_encoded_train(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the training images by images whose first pixels spell their own index."""
    idx = np.arange(60000)
    images = np.zeros((60000, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = idx % 256
    images[:, 0, 1] = idx // 256
    labels = (idx % 10).astype(np.uint8)
    monkeypatch.setattr(ds, "_fashion_mnist_raw", lambda split, root: (images, labels))


def _decode_indices(x: np.ndarray) -> np.ndarray:
    """Invert the normalisation of the two index pixels (which sit at 2,2 and 2,3 after padding)."""
    raw = np.rint((x[:, 0, 2, 2:4] * ds.FASHION_MNIST_STD + ds.FASHION_MNIST_MEAN) * 255)
    return raw[:, 0].astype(np.int64) + 256 * raw[:, 1].astype(np.int64)


@pytest.mark.usefixtures("index_encoded_train")
def test_subsets_come_from_the_pool_and_are_disjoint() -> None:
    pool = ds.heldout_indices()
    train = ds.train_indices()
    for seed_c, seed_v in ((0, 0), (0, 5), (7, 3)):
        xc, yc = ds.calibration_set(n=ds.CALIBRATION_POOL_SIZE, seed=seed_c)
        xv, yv = ds.validation_set(n=ds.VALIDATION_POOL_SIZE, seed=seed_v)
        calib, val = _decode_indices(xc), _decode_indices(xv)
        assert np.array_equal(yc, calib % 10) and np.array_equal(yv, val % 10)
        assert len(np.unique(calib)) == ds.CALIBRATION_POOL_SIZE
        assert len(np.unique(val)) == ds.VALIDATION_POOL_SIZE
        # Whole calibration and validation pools, for any pair of seeds: disjoint, together
        # exactly the held-out pool, hence never a training image (the test split is separate).
        assert np.intersect1d(calib, val).size == 0
        assert np.array_equal(np.sort(np.concatenate([calib, val])), np.sort(pool))
        assert np.intersect1d(calib, train).size == 0 and np.intersect1d(val, train).size == 0
    # Small subsets are prefixes of the seeded order, so they are disjoint too.
    small_c = _decode_indices(ds.calibration_set(n=512, seed=1)[0])
    small_v = _decode_indices(ds.validation_set(n=1000, seed=1)[0])
    assert np.intersect1d(small_c, small_v).size == 0
    assert np.isin(small_c, pool).all() and np.isin(small_v, pool).all()


def test_subsets_are_deterministic_and_seeded() -> None:
    xc, yc = ds.calibration_set()
    xv, yv = ds.validation_set()
    assert xc.shape == (512, 3, 32, 32) and xc.dtype == np.float32 and yc.dtype == np.int64
    assert xv.shape == (1000, 3, 32, 32) and yv.shape == (1000,)
    xc2, yc2 = ds.calibration_set(n=512, seed=0)
    assert np.array_equal(xc, xc2) and np.array_equal(yc, yc2)
    xc3, _ = ds.calibration_set(n=512, seed=1)
    assert not np.array_equal(xc, xc3)
    # Labels match the training split at the same images.
    x_train, y_train = ds.fashion_mnist("train")
    pool = ds.heldout_indices()[: ds.CALIBRATION_POOL_SIZE]
    chosen = np.random.default_rng(0).permutation(pool)[:512]
    assert np.array_equal(xc, x_train[chosen]) and np.array_equal(yc, y_train[chosen])
    # A smaller subset with the same seed is a prefix of the larger one.
    xs, _ = ds.validation_set(n=10, seed=0)
    assert np.array_equal(xs, xv[:10])


@pytest.mark.parametrize("fn", [ds.calibration_set, ds.validation_set])
@pytest.mark.parametrize("n", [0, -1, 2501, 60000])
def test_subset_size_validation(fn, n: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 2500"):
        fn(n=n)


def test_subset_size_must_be_int() -> None:
    with pytest.raises(TypeError):
        ds.calibration_set(n=10.5)


# --------------------------------------------------------------------------------------------
# CIFAR-10 on synthetic official-format files
# --------------------------------------------------------------------------------------------


def test_cifar10_loads_official_format(tmp_path: Path) -> None:
    raw = _write_cifar(tmp_path, n=4)
    x, y = ds.cifar10(tmp_path, "train")
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.float32
    assert y.shape == (20,) and y.dtype == np.int64
    data = np.concatenate([raw[f"data_batch_{i}"] for i in range(1, 6)])
    labels = np.concatenate([raw[f"data_batch_{i}_labels"] for i in range(1, 6)])
    assert y.tolist() == labels.tolist()
    # Row layout: 1024 red values, 1024 green, 1024 blue, each plane row-major.
    for c in range(3):
        for r, col in ((0, 0), (5, 17), (31, 31)):
            pixel = data[7, c * 1024 + r * 32 + col] / 255.0
            expected = (pixel - ds.CIFAR10_MEAN[c]) / ds.CIFAR10_STD[c]
            assert x[7, c, r, col] == pytest.approx(expected, abs=1e-5)
    xt, yt = ds.cifar10(tmp_path, "test")
    assert xt.shape == (4, 3, 32, 32) and yt.tolist() == raw["test_batch_labels"].tolist()


def test_cifar10_loads_numpy1_style_pickle(tmp_path: Path) -> None:
    # The official files were written with numpy 1, whose arrays reference
    # numpy.core.multiarray; numpy 2 renamed it to numpy._core.multiarray.
    raw = _write_cifar(tmp_path, n=3)
    path = tmp_path / "test_batch"
    blob = path.read_bytes()
    assert b"numpy._core.multiarray" in blob
    path.write_bytes(blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    x, y = ds.cifar10(tmp_path, "test")
    assert y.tolist() == raw["test_batch_labels"].tolist()
    expected = (raw["test_batch"][0, :1024] / 255.0 - ds.CIFAR10_MEAN[0]) / ds.CIFAR10_STD[0]
    np.testing.assert_allclose(x[0, 0].ravel(), expected, atol=1e-5)


def test_cifar10_accepts_parent_directory(tmp_path: Path) -> None:
    sub = tmp_path / "cifar-10-batches-py"
    sub.mkdir()
    raw = _write_cifar(sub, n=2)
    _, y = ds.cifar10(tmp_path, "test")
    assert y.tolist() == raw["test_batch_labels"].tolist()


def test_cifar10_normalization_constants() -> None:
    # A mid-grey image maps close to zero; white and black span a few standard deviations.
    assert all(0.44 < m < 0.50 for m in ds.CIFAR10_MEAN)
    assert all(0.24 < s < 0.27 for s in ds.CIFAR10_STD)


def test_cifar10_missing_batch(tmp_path: Path) -> None:
    _write_cifar(tmp_path, n=2)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        ds.cifar10(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="test_batch"):
        ds.cifar10(tmp_path / "nowhere", "test")


def test_cifar10_truncated_batch(tmp_path: Path) -> None:
    _write_cifar(tmp_path, n=2)
    path = tmp_path / "data_batch_5"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="data_batch_5.*truncated or corrupt"):
        ds.cifar10(tmp_path, "train")


@pytest.mark.parametrize(
    "payload, message",
    [
        ({b"fine_labels": [1], b"data": np.zeros((1, 3072), np.uint8)}, "not a CIFAR-10 batch"),
        ([1, 2, 3], "not a CIFAR-10 batch"),
        ({b"labels": [1, 2], b"data": np.zeros((2, 784), np.uint8)}, r"shape \(N, 3072\)"),
        ({b"labels": [1, 2, 3], b"data": np.zeros((2, 3072), np.uint8)}, "2 images but 3 labels"),
        ({b"labels": [1, 12], b"data": np.zeros((2, 3072), np.uint8)}, "0..9"),
    ],
)
def test_cifar10_not_a_batch(tmp_path: Path, payload: object, message: str) -> None:
    _write_cifar(tmp_path, n=2)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump(payload, f, protocol=2)
    with pytest.raises(ValueError, match=message) as info:
        ds.cifar10(tmp_path, "test")
    assert "test_batch" in str(info.value)


def test_cifar10_refuses_code_in_pickle(tmp_path: Path) -> None:
    _write_cifar(tmp_path, n=2)
    marker = tmp_path / "pwned"
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump(_Evil(str(marker)), f, protocol=2)
    with pytest.raises(ValueError, match="test_batch"):
        ds.cifar10(tmp_path, "test")
    assert not marker.exists()


class _Evil:
    """Pickles to a call of shutil.copy: a loader that ran it would create ``target``."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (shutil.copy, (__file__, self.target))


# --------------------------------------------------------------------------------------------
# Fashion-MNIST bad input
# --------------------------------------------------------------------------------------------


def test_fmnist_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"t10k-images-idx3-ubyte.*{HINT}.*root="):
        ds.fashion_mnist("test", root=tmp_path)
    _write_fmnist(tmp_path, "test")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        ds.fashion_mnist("test", root=tmp_path)


def test_fmnist_truncated_gzip(tmp_path: Path) -> None:
    _write_fmnist(tmp_path, "test")
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(ValueError, match=f"t10k-images-idx3-ubyte.gz.*{HINT}"):
        ds.fashion_mnist("test", root=tmp_path)


def test_fmnist_not_gzip(tmp_path: Path) -> None:
    _write_fmnist(tmp_path, "test")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip data at all")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz.*corrupt"):
        ds.fashion_mnist("test", root=tmp_path)


def test_fmnist_truncated_payload(tmp_path: Path) -> None:
    # Valid gzip around an IDX file that is missing its last bytes.
    images, _ = _write_fmnist(tmp_path, "test", gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(_idx_bytes(images)[:-10])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte has .* bytes.*truncated"):
        ds.fashion_mnist("test", root=tmp_path)
    path.write_bytes(_idx_bytes(images)[:10])
    with pytest.raises(ValueError, match="truncated inside its header"):
        ds.fashion_mnist("test", root=tmp_path)


def test_fmnist_wrong_magic(tmp_path: Path) -> None:
    images, labels = _write_fmnist(tmp_path, "test")
    # Labels where images are expected: magic 2049 instead of 2051.
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
    with pytest.raises(ValueError, match="images-idx3-ubyte.gz has IDX magic number 0x00000801"):
        ds.fashion_mnist("test", root=tmp_path)


def test_fmnist_count_mismatch(tmp_path: Path) -> None:
    _write_fmnist(tmp_path, "test", n=6, n_labels=5)
    with pytest.raises(ValueError, match="6 images but .* 5 labels"):
        ds.fashion_mnist("test", root=tmp_path)


def test_fmnist_failure_is_not_cached(tmp_path: Path) -> None:
    # A failed load caches nothing: once the file is fixed, the same root loads correctly.
    _write_fmnist(tmp_path, "test", n=6, n_labels=5)
    with pytest.raises(ValueError):
        ds.fashion_mnist("test", root=tmp_path)
    images, labels = _write_fmnist(tmp_path, "test", n=6, seed=1)
    x, y = ds.fashion_mnist("test", root=tmp_path)
    assert y.tolist() == labels.tolist()
    np.testing.assert_allclose(x, _expected_fmnist(images), atol=1e-5)
