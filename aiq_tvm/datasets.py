"""Image-classification data sets in the CIFAR-10 input format (N x 3 x 32 x 32, float32).

The AIQ paper evaluates on CIFAR-10, which cannot be downloaded here, so the models shipped
with :mod:`aiq_tvm.models` are trained on Fashion-MNIST reshaped to CIFAR-10's input shape:
each 28 x 28 image is zero-padded by 2 pixels per side to 32 x 32, normalised with the
Fashion-MNIST mean/std and replicated to 3 channels. A CIFAR-10 loader for the official
python pickle batches is provided as well.

Data splits
-----------
* The official 10,000-image Fashion-MNIST test split is the final test set.
* A fixed held-out pool of ``HELDOUT_SIZE`` images of the *training* split (seeded permutation,
  seed ``HELDOUT_SEED``) is never used for training (see :func:`train_indices`). Its first half
  is the calibration pool (:func:`calibration_set`), its second half the validation pool
  (:func:`validation_set`), so calibration and validation images are disjoint for any sizes and
  seeds.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DEFAULT_FASHION_MNIST_ROOT",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "HELDOUT_SEED",
    "HELDOUT_SIZE",
    "CALIBRATION_POOL_SIZE",
    "VALIDATION_POOL_SIZE",
    "calibration_set",
    "cifar10",
    "fashion_mnist",
    "heldout_indices",
    "train_indices",
    "validation_set",
]

DEFAULT_FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")

# Mean / std of all pixels of the 60,000 28x28 Fashion-MNIST training images scaled to [0, 1]
# (computed in float64 before the 2-pixel padding; the padding would bias them towards 0).
FASHION_MNIST_MEAN = 0.2860405969887955
FASHION_MNIST_STD = 0.35302424451492254

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# Per-channel (R, G, B) mean / std of the 50,000 CIFAR-10 training images scaled to [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

HELDOUT_SEED = 0
HELDOUT_SIZE = 5000
CALIBRATION_POOL_SIZE = HELDOUT_SIZE // 2
VALIDATION_POOL_SIZE = HELDOUT_SIZE - CALIBRATION_POOL_SIZE

_FMNIST_TRAIN_SIZE = 60000
_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension
_FMNIST_HINT = (
    "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
    "or pass root=... pointing to a directory with the Fashion-MNIST IDX files"
)

_CIFAR10_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_CIFAR10_HINT = (
    "pass root=... (aiq-tvm: --data cifar10:<dir>) pointing to the extracted official "
    "CIFAR-10 python version "
    "(cifar-10-python.tar.gz, directory cifar-10-batches-py)"
)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------------------------


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def _resolve_root(root: str | os.PathLike[str] | None) -> Path:
    return DEFAULT_FASHION_MNIST_ROOT if root is None else Path(root)


def _find_idx_file(root: Path, name: str) -> Path:
    """Return ``root/name.gz`` or, failing that, the uncompressed ``root/name``."""
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {name}.gz (or uncompressed {name}) not found in {root}: "
        + _FMNIST_HINT
    )


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Decode one unsigned-byte IDX file and validate its header against its length.

    Parameters
    ----------
    path : Path
        ``.gz`` or uncompressed IDX file.
    magic : int
        Expected magic number (2051 for images, 2049 for labels).

    Returns
    -------
    np.ndarray
        Read-only uint8 array with the shape stored in the header.

    Raises
    ------
    ValueError
        If the file is not valid gzip, has the wrong magic number or is truncated.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; a truncated stream raises EOFError.
        raise ValueError(
            f"cannot decompress Fashion-MNIST file {path} ({exc}); the file is corrupt or "
            f"truncated: reinstall it ({_FMNIST_HINT})"
        ) from exc
    if len(raw) < 4:
        raise ValueError(
            f"Fashion-MNIST file {path} is truncated ({len(raw)} bytes): {_FMNIST_HINT}"
        )
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(
            f"Fashion-MNIST file {path} has IDX magic number {found:#010x}, expected "
            f"{magic:#010x}; it is not the expected IDX file: {_FMNIST_HINT}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"Fashion-MNIST file {path} is truncated inside its header: {_FMNIST_HINT}"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise ValueError(
            f"Fashion-MNIST file {path} has {len(raw)} bytes but its header {shape} implies "
            f"{expected}; the file is truncated or corrupt: {_FMNIST_HINT}"
        )
    arr = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    arr.flags.writeable = False  # frombuffer over bytes is read-only already; make it explicit
    return arr


@functools.lru_cache(maxsize=8)
def _fashion_mnist_raw(split: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decoded, validated, read-only uint8 images (N x 28 x 28) and labels (N,)."""
    image_name, label_name = _FMNIST_FILES[split]
    image_path = _find_idx_file(root, image_name)
    label_path = _find_idx_file(root, label_name)
    images = _read_idx(image_path, _IDX_IMAGES_MAGIC)
    labels = _read_idx(label_path, _IDX_LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise ValueError(
            f"Fashion-MNIST file {image_path} holds {images.shape[1:]} images, expected 28x28: "
            + _FMNIST_HINT
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Fashion-MNIST image/label count mismatch: {image_path} has {images.shape[0]} "
            f"images but {label_path} has {labels.shape[0]} labels: {_FMNIST_HINT}"
        )
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(
            f"Fashion-MNIST file {label_path} holds label {int(labels.max())}, expected 0..9: "
            + _FMNIST_HINT
        )
    return images, labels


def _preprocess_fashion_mnist(images: np.ndarray) -> np.ndarray:
    """uint8 N x 28 x 28 -> normalised float32 N x 3 x 32 x 32 (a new, writable array)."""
    # Pad in pixel space first so the border gets the value of a black background pixel.
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    x = padded.astype(np.float32) / np.float32(255.0)
    x -= np.float32(FASHION_MNIST_MEAN)
    x /= np.float32(FASHION_MNIST_STD)
    return np.ascontiguousarray(np.repeat(x[:, None], 3, axis=1))


def fashion_mnist(
    split: str, root: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load a Fashion-MNIST split in CIFAR-10 input format.

    Parameters
    ----------
    split : {"train", "test"}
        ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
    root : path-like, optional
        Directory with ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` (uncompressed files
        without ``.gz`` are accepted too). Defaults to ``/usr/share/datasets/fashion-mnist``,
        where the Debian package ``dataset-fashion-mnist`` installs them.

    Returns
    -------
    x : np.ndarray
        float32, shape (N, 3, 32, 32): each image zero-padded by 2 pixels per side, scaled to
        [0, 1], normalised with ``FASHION_MNIST_MEAN`` / ``FASHION_MNIST_STD`` and replicated
        to 3 channels. A fresh array owned by the caller.
    y : np.ndarray
        int64, shape (N,), class indices 0..9 (see ``FASHION_MNIST_CLASSES``).

    Raises
    ------
    FileNotFoundError
        If a file is missing.
    ValueError
        If a file is corrupt, truncated, not the expected IDX file, or images and labels
        disagree in count; or if ``split`` is invalid.

    Notes
    -----
    The decoded uint8 files are cached in memory (read-only); the float arrays are rebuilt on
    each call, so callers may modify them freely.
    """
    _check_split(split)
    images, labels = _fashion_mnist_raw(split, _resolve_root(root))
    return _preprocess_fashion_mnist(images), labels.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _heldout_permutation() -> np.ndarray:
    perm = np.random.default_rng(HELDOUT_SEED).permutation(_FMNIST_TRAIN_SIZE)
    perm.flags.writeable = False
    return perm


def heldout_indices() -> np.ndarray:
    """Indices (into the training split) of the fixed held-out pool.

    Returns
    -------
    np.ndarray
        int64, shape (``HELDOUT_SIZE``,): the first ``HELDOUT_SIZE`` entries of a permutation
        of ``range(60000)`` drawn with seed ``HELDOUT_SEED``. Its first
        ``CALIBRATION_POOL_SIZE`` entries form the calibration pool, the rest the validation
        pool.
    """
    return _heldout_permutation()[:HELDOUT_SIZE].copy()


def train_indices(seed: int | None = None) -> np.ndarray:
    """Indices of the training split used for training: everything outside the held-out pool.

    Parameters
    ----------
    seed : int, optional
        If given, the indices are shuffled with this seed (e.g. a per-epoch data order);
        otherwise they are sorted ascending. The set is the same either way.

    Returns
    -------
    np.ndarray
        int64, shape (60000 - ``HELDOUT_SIZE``,).
    """
    idx = np.sort(_heldout_permutation()[HELDOUT_SIZE:]).astype(np.int64)
    if seed is not None:
        idx = np.random.default_rng(seed).permutation(idx)
    return idx


def _check_n(n: int, limit: int, what: str) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{what} size n must be an int, got {type(n).__name__}")
    if not 1 <= n <= limit:
        raise ValueError(
            f"{what} size n must be between 1 and {limit} (the {what} part of the "
            f"{HELDOUT_SIZE}-image held-out pool), got {n}"
        )


def _pool_subset(
    pool: np.ndarray, n: int, seed: int, root: str | os.PathLike[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    chosen = np.random.default_rng(seed).permutation(pool)[:n]
    images, labels = _fashion_mnist_raw("train", _resolve_root(root))
    return _preprocess_fashion_mnist(images[chosen]), labels[chosen].astype(np.int64)


def calibration_set(
    n: int = 512, seed: int = 0, root: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded calibration subset of the Fashion-MNIST training split (held-out pool).

    Parameters
    ----------
    n : int, default 512
        Number of images, 1..``CALIBRATION_POOL_SIZE`` (2,500).
    seed : int, default 0
        Selects which images of the calibration pool are returned (and their order).
    root : path-like, optional
        As for :func:`fashion_mnist`.

    Returns
    -------
    x, y : np.ndarray
        As for :func:`fashion_mnist`. Never overlaps :func:`validation_set` (any ``n``, any
        seeds), the images used for training, or the test split.

    Raises
    ------
    ValueError
        If ``n`` is out of range.
    """
    _check_n(n, CALIBRATION_POOL_SIZE, "calibration")
    return _pool_subset(heldout_indices()[:CALIBRATION_POOL_SIZE], n, seed, root)


def validation_set(
    n: int = 1000, seed: int = 0, root: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded validation subset of the Fashion-MNIST training split (held-out pool).

    Like :func:`calibration_set` (same parameters, ``n`` in 1..``VALIDATION_POOL_SIZE``),
    from the validation pool: never overlaps :func:`calibration_set` (any ``n``, any seeds),
    the images used for training, or the test split.
    """
    _check_n(n, VALIDATION_POOL_SIZE, "validation")
    return _pool_subset(heldout_indices()[CALIBRATION_POOL_SIZE:], n, seed, root)


# --------------------------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only reconstructs numpy arrays, so a hostile file cannot run code."""

    _ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Protocol-2 pickles written by Python 3 encode bytes objects via _codecs.encode.
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        # The official batches (and numpy < 2) name the module numpy.core.multiarray.
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray"
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one CIFAR-10 python batch -> (uint8 N x 3072, int64 N)."""
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, ImportError) as exc:
        raise ValueError(
            f"{path} is not a readable CIFAR-10 python batch ({type(exc).__name__}: {exc}); "
            f"it is truncated or corrupt: {_CIFAR10_HINT}"
        ) from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(
            f"{path} is not a CIFAR-10 batch: expected a dict with keys b'data' and b'labels' "
            f"(CIFAR-100 and other pickles are not supported): {_CIFAR10_HINT}"
        )
    data = np.asarray(batch[b"data"])
    try:
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: b'labels' is not a list of integers: {_CIFAR10_HINT}") from exc
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{path}: b'data' must be a uint8 array of shape (N, 3072), got "
            f"{data.dtype} {data.shape}: {_CIFAR10_HINT}"
        )
    if labels.shape != (data.shape[0],):
        raise ValueError(
            f"{path}: {data.shape[0]} images but {labels.size} labels: {_CIFAR10_HINT}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels must lie in 0..9: {_CIFAR10_HINT}")
    return data, labels


def cifar10(root: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a CIFAR-10 split from the official python pickle batches.

    Parameters
    ----------
    root : path-like
        Directory holding ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` (the
        extracted ``cifar-10-batches-py``), or its parent directory.
    split : {"train", "test"}
        ``"train"`` reads the five data batches in order, ``"test"`` reads ``test_batch``.

    Returns
    -------
    x : np.ndarray
        float32, shape (N, 3, 32, 32), RGB, scaled to [0, 1] and normalised per channel with
        ``CIFAR10_MEAN`` / ``CIFAR10_STD``.
    y : np.ndarray
        int64, shape (N,), class indices 0..9.

    Raises
    ------
    FileNotFoundError
        If a batch file is missing.
    ValueError
        If a file is not a valid CIFAR-10 batch, or ``split`` is invalid.

    Notes
    -----
    Batches are unpickled with an unpickler that only admits numpy arrays.
    """
    _check_split(split)
    root = Path(root)
    if not (root / _CIFAR10_FILES["test"][0]).exists() and (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    paths = [root / name for name in _CIFAR10_FILES[split]]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"CIFAR-10 batch file {path} not found: {_CIFAR10_HINT}")
    # Validate every batch before building the output, so nothing half-loaded escapes.
    batches = [_load_cifar_batch(path) for path in paths]
    data = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    # Each row stores the R, G and B 32x32 planes one after another, rows in row-major order.
    x = data.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255.0)
    x -= np.asarray(CIFAR10_MEAN, dtype=np.float32)[:, None, None]
    x /= np.asarray(CIFAR10_STD, dtype=np.float32)[:, None, None]
    return x, labels
