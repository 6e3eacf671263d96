"""The command line's DATA argument: calibration, validation and (optional) test splits.

DATA is one of

* ``fashion-mnist``: the Debian package's files, as :mod:`aiq_tvm.datasets` prepares them
  (3 x 32 x 32); models taking 1 x 28 x 28, 1 x 32 x 32 or 3 x 28 x 28 get the same images
  with one channel and/or without the 2-pixel padding.  Calibration and validation images
  come from the held-out pools of the training split, the test split is the official one;
* ``cifar10:<dir>``: the official python pickle batches (3 x 32 x 32); calibration and
  validation from the training batches, the test split from ``test_batch``;
* a ``.npz`` file with ``x`` (N, C, H, W float32, already normalized) and ``y`` (N integer
  labels), and optionally ``x_test`` / ``y_test``;
* an image folder with one subfolder per class (``torchvision.datasets.ImageFolder``
  conventions), or with ``train/`` and ``test/`` (or ``val/``) folders laid out that way;
  images are resized to the model's input and normalized with ``mean`` / ``std``.

Calibration and validation images are always disjoint: a seeded permutation of the
training images gives the first ``calib`` to calibration and the next ``val`` to validation.
Every check fails with a :class:`~aiq_tvm.sources.SourceError` naming the problem.

Accuracy counts an image right when the model's largest output is its label's index, so the
model's outputs must be DATA's classes.  DATA with more classes than the model has outputs is
an error (those images can never be right); fewer classes is a warning in
``DataSplits.warnings`` (a random-init or ImageNet torchvision model on 10-class data scores
about 0 %, but a model may legitimately have outputs DATA never uses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .sources import SourceError

__all__ = ["DataSplits", "load_data", "check_images", "check_labels", "class_warnings",
           "IMAGE_EXTENSIONS", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DataSplits:
    """Disjoint calibration and validation images, and a test split when DATA has one."""

    spec: str
    calib: np.ndarray
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)
    # load_data's keyword arguments, so a summary can reload exactly these images
    load_args: dict = field(default_factory=dict)
    # DATA's number of classes (class folders, the dataset's, or the labels' range for .npz)
    classes: int | None = None
    # what makes the accuracies doubtful (e.g. more model outputs than classes)
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {"spec": self.spec, "calib_images": len(self.calib),
                "val_images": len(self.val[0]),
                "test_images": 0 if self.test is None else len(self.test[0]),
                "classes": self.classes, "notes": list(self.notes),
                "warnings": list(self.warnings), "load_args": dict(self.load_args)}


def load_data(spec: str, input_shape: tuple[int, ...], *, calib: int = 512, val: int = 1000,
              test: int | None = None, seed: int = 0, num_classes: int | None = None,
              mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None
              ) -> DataSplits:
    """Load DATA ``spec`` for a model taking ``input_shape`` (C, H, W).

    ``test`` caps the test images (None: all of them, 0: none); ``num_classes`` is the
    model's number of outputs, which every label and DATA's number of classes must not
    exceed; fewer classes than outputs gives a warning (see the module docstring).
    """
    for what, n in (("--calib", calib), ("--val", val)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise SourceError(f"{what} must be a positive number of images, got {n!r}")
    if test is not None and (isinstance(test, bool) or not isinstance(test, (int, np.integer))
                             or test < 0):
        raise SourceError(f"--test must be a number of images >= 0, got {test!r}")
    input_shape = tuple(int(d) for d in input_shape)
    if (mean is not None or std is not None) and not _is_image_folder(spec):
        raise SourceError("--mean/--std normalize image folders; other DATA is already "
                          "normalized")
    if spec == "fashion-mnist":
        splits = _fashion_mnist(input_shape, calib, val, test, seed)
    elif spec.startswith("cifar10:"):
        splits = _cifar10(spec, input_shape, calib, val, test, seed)
    elif spec.lower().endswith(".npz"):
        splits = _npz(spec, input_shape, calib, val, test, seed)
    elif _is_image_folder(spec):
        splits = _image_folder(spec, input_shape, calib, val, test, seed, mean, std)
    else:
        raise SourceError(
            f"unknown DATA {spec!r}; give fashion-mnist, cifar10:<dir>, a .npz file with x and "
            "y, or an image folder with one subfolder per class")
    check_images("calibration data", splits.calib, input_shape)
    for name, part in (("validation data", splits.val), ("test data", splits.test)):
        if part is not None:
            check_images(name, part[0], input_shape)
            check_labels(name, part[1], len(part[0]), num_classes)
    if num_classes is not None:
        splits.warnings += class_warnings(splits, num_classes)
    splits.load_args = {"calib": int(calib), "val": int(val),
                        "test": None if test is None else int(test), "seed": int(seed),
                        "mean": None if mean is None else list(mean),
                        "std": None if std is None else list(std)}
    return splits


# ----------------------------------------------------------------------------- checks
def check_images(name: str, x, input_shape: tuple[int, ...]) -> None:
    """Normalized float images of the model's input shape, finite and not all equal."""
    x = np.asarray(x)
    if np.iscomplexobj(x):
        raise SourceError(f"{name} is complex ({x.dtype}); give real float32 images")
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape):
        raise SourceError(f"{name} has shape {_fmt(x.shape)} but the model takes "
                          f"(N, {_fmt(input_shape)[1:-1]})")
    if len(x) == 0:
        raise SourceError(f"{name} holds no images")
    if not np.issubdtype(x.dtype, np.floating):
        raise SourceError(f"{name} is {x.dtype}: raw pixels? give float32 images normalized "
                          "the way the model was trained")
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise SourceError(f"{name} holds {bad} NaN/Inf values")
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        raise SourceError(f"{name} is constant ({lo}); calibration and accuracy need real "
                          "images")
    if lo >= 0 and hi > 20:
        raise SourceError(f"{name} ranges {lo:g}..{hi:g}, like raw 0-255 pixels; normalize "
                          "it the way the model was trained (e.g. (x/255 - mean) / std)")


def check_labels(name: str, y, n: int, num_classes: int | None) -> None:
    """Integer labels, one per image, in [0, num_classes)."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise SourceError(f"{name} has {n} images but labels of shape {_fmt(y.shape)}")
    if not np.issubdtype(y.dtype, np.integer):
        raise SourceError(f"{name} labels are {y.dtype}; give integer class indices")
    if y.min() < 0:
        raise SourceError(f"{name} has negative labels (min {int(y.min())})")
    if num_classes is not None and y.max() >= num_classes:
        raise SourceError(f"{name} has label {int(y.max())} but the model has only "
                          f"{num_classes} outputs (classes 0..{num_classes - 1}): such images "
                          f"can never be predicted right; {_use_trained(int(y.max()) + 1)}")


def class_warnings(splits: DataSplits, num_outputs: int) -> list[str]:
    """Check DATA's classes against the model's outputs: more classes is a
    :class:`SourceError`, fewer gives a warning (returned)."""
    k = splits.classes
    if k is None or k == num_outputs:
        return []
    what = (f"{splits.spec} has {k} classes" if not splits.spec.lower().endswith(".npz")
            else f"the labels of {splits.spec} go up to {k - 1} ({k} classes)")
    if k > num_outputs:
        raise SourceError(f"{what} but the model has only {num_outputs} outputs: images of "
                          f"classes {num_outputs}..{k - 1} can never be predicted right; "
                          f"{_use_trained(k)}")
    return [f"the model has {num_outputs} outputs but {what}: an image counts as right only "
            f"when the model's largest output is its label's index, so unless outputs "
            f"0..{k - 1} were trained as these classes (a random-init or ImageNet model was "
            f"not) accuracies are near 0 %; {_use_trained(k)}"]


def _use_trained(k: int) -> str:
    return (f"use a model trained on these {k} classes ({k} outputs): --weights file.pt for "
            "shipped and torchvision models, or a .pt2/.onnx exported from one")


def _fmt(shape) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def _split(n_total: int, calib: int, val: int, seed: int, what: str) -> tuple:
    if calib + val > n_total:
        raise SourceError(f"{what} has {n_total} training images; --calib {calib} + --val "
                          f"{val} = {calib + val} (they must be disjoint)")
    perm = np.random.default_rng(seed).permutation(n_total)
    return perm[:calib], perm[calib:calib + val]


def _cap(part, test: int | None):
    if part is None or test == 0:
        return None
    x, y = part
    return (x, y) if test is None else (x[:test], y[:test])


# ----------------------------------------------------------------------------- forms
_FMNIST_SHAPES = {(3, 32, 32), (1, 32, 32), (3, 28, 28), (1, 28, 28)}


def _fmnist_view(x: np.ndarray, shape: tuple) -> np.ndarray:
    """Fashion-MNIST as prepared by aiq_tvm.datasets (3 x 32 x 32) in another layout."""
    c, h, _ = shape
    x = x[:, :c]
    if h == 28:
        x = x[:, :, 2:30, 2:30]
    return np.ascontiguousarray(x)


def _fashion_mnist(shape, calib, val, test, seed) -> DataSplits:
    from . import datasets

    if shape not in _FMNIST_SHAPES:
        raise SourceError(f"fashion-mnist gives 28x28 grayscale images (as 1x28x28, 1x32x32, "
                          f"3x28x28 or 3x32x32); the model takes {_fmt(shape)}: pass "
                          "--input-shape for a model that accepts one of those")
    try:
        xc, _ = datasets.calibration_set(calib, seed=seed)
        xv, yv = datasets.validation_set(val, seed=seed)
        part = datasets.fashion_mnist("test") if test != 0 else None
    except (TypeError, ValueError, FileNotFoundError) as err:
        raise SourceError(f"fashion-mnist: {err}") from None
    part = None if part is None else (_fmnist_view(part[0], shape), part[1])
    return DataSplits("fashion-mnist", _fmnist_view(xc, shape), (_fmnist_view(xv, shape), yv),
                      _cap(part, test), notes=[
                          "calibration/validation: disjoint held-out pools of the training "
                          "split; test: the official test split"], classes=10)


def _cifar10(spec, shape, calib, val, test, seed) -> DataSplits:
    from . import datasets

    root = spec.split(":", 1)[1]
    if shape != (3, 32, 32):
        raise SourceError(f"CIFAR-10 images are 3x32x32; the model takes {_fmt(shape)}")
    try:
        x, y = datasets.cifar10(root, "train")
        part = datasets.cifar10(root, "test") if test != 0 else None
    except (ValueError, FileNotFoundError) as err:
        raise SourceError(str(err)) from None
    ic, iv = _split(len(x), calib, val, seed, spec)
    return DataSplits(spec, x[ic], (x[iv], y[iv]), _cap(part, test),
                      notes=["calibration/validation: disjoint subsets of the training batches"],
                      classes=10)


def _npz(spec, shape, calib, val, test, seed) -> DataSplits:
    path = Path(spec)
    if not path.is_file():
        raise SourceError(f"data file {spec!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as err:  # noqa: BLE001 - zip/format errors of many kinds
        raise SourceError(f"{spec} is not a readable .npz file ({type(err).__name__}: "
                          f"{err})") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise SourceError(f"{spec} lacks {' and '.join(missing)}: it needs x (N, C, H, W "
                          f"float32, normalized) and y (N integer labels); it has "
                          f"{sorted(arrays)}")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise SourceError(f"{spec} has only one of x_test and y_test; give both or neither")
    x, y = arrays["x"], arrays["y"]
    check_images(f"{spec} x", x, shape)
    check_labels(f"{spec} y", y, len(x), None)
    ic, iv = _split(len(x), calib, val, seed, spec)
    part = (arrays["x_test"], arrays["y_test"]) if "x_test" in arrays else None
    notes = ["calibration/validation: disjoint subsets of x"]
    if part is not None:
        check_images(f"{spec} x_test", part[0], shape)
        check_labels(f"{spec} y_test", part[1], len(part[0]), None)
        notes.append("test: x_test/y_test")
    labels_max = max(int(y.max()), -1 if part is None else int(part[1].max()))
    return DataSplits(spec, x[ic].astype(np.float32), (x[iv].astype(np.float32), y[iv]),
                      _cap(None if part is None else (part[0].astype(np.float32), part[1]),
                           test), notes=notes, classes=labels_max + 1)


# ----------------------------------------------------------------------------- image folders
def _is_image_folder(spec: str) -> bool:
    return Path(spec).is_dir()


def _class_files(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = []
    for k, c in enumerate(classes):
        files += [(f, k) for f in sorted((root / c).rglob("*"))
                  if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()]
    return classes, files


def _image_folder(spec, shape, calib, val, test, seed, mean, std) -> DataSplits:
    root = Path(spec)
    c = shape[0]
    if len(shape) != 3 or c not in (1, 3):
        raise SourceError(f"image folders give 1- or 3-channel images; the model takes "
                          f"{_fmt(shape)}")
    mean = tuple(mean) if mean is not None else (IMAGENET_MEAN if c == 3 else (0.449,))
    std = tuple(std) if std is not None else (IMAGENET_STD if c == 3 else (0.226,))
    for what, v in (("--mean", mean), ("--std", std)):
        if len(v) not in (1, c):
            raise SourceError(f"{what} needs 1 or {c} values for {c}-channel input, got {v}")
    if any(s <= 0 for s in std):
        raise SourceError(f"--std values must be positive, got {std}")
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    train_dir = root / "train" if test_dir is not None and (root / "train").is_dir() else root
    if train_dir == root:
        test_dir = None
    classes, files = _class_files(train_dir)
    if not files:
        raise SourceError(f"{spec} holds no images: expected one subfolder per class with "
                          f"{', '.join(IMAGE_EXTENSIONS)} files (or train/ and test/ folders "
                          "laid out that way)")
    ic, iv = _split(len(files), calib, val, seed, spec)
    load = _ImageLoader(shape, mean, std)
    xc = load([files[i][0] for i in ic])
    xv = load([files[i][0] for i in iv])
    yv = np.array([files[i][1] for i in iv], np.int64)
    notes = [f"{len(classes)} classes {classes[:10]}{'...' if len(classes) > 10 else ''}; "
             f"resized to {shape[1]}x{shape[2]}, normalized with mean {mean} std {std}",
             f"calibration/validation: disjoint subsets of {train_dir}"]
    part = None
    if test_dir is not None and test != 0:
        test_classes, test_files = _class_files(test_dir)
        if test_classes != classes:
            raise SourceError(f"{test_dir} has classes {test_classes}, {train_dir} has "
                              f"{classes}; they must match")
        test_files = test_files if test is None else [
            test_files[i] for i in np.random.default_rng(seed).permutation(len(test_files))[:test]]
        part = (load([f for f, _ in test_files]),
                np.array([k for _, k in test_files], np.int64))
        notes.append(f"test: {test_dir}")
    return DataSplits(spec, xc, (xv, yv), part, notes=notes, classes=len(classes))


class _ImageLoader:
    """Files -> (N, C, H, W) float32: resized (bilinear), scaled to [0, 1], normalized."""

    def __init__(self, shape, mean, std):
        self.c, self.h, self.w = shape
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(-1, 1, 1)

    def __call__(self, paths) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        out = np.empty((len(paths), self.c, self.h, self.w), np.float32)
        for i, p in enumerate(paths):
            try:
                with Image.open(p) as img:
                    img = img.convert("RGB" if self.c == 3 else "L").resize(
                        (self.w, self.h), Image.BILINEAR)
                    arr = np.asarray(img, np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as err:
                raise SourceError(f"{p} is not a readable image ({err})") from None
            arr = arr.reshape(self.h, self.w, -1).transpose(2, 0, 1)
            out[i] = (arr - self.mean) / self.std
        return out
