"""MODEL and DATA forms of the command line (aiq_tvm.sources, aiq_tvm.datasources)."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from aiq_tvm.datasources import load_data
from aiq_tvm.sources import SourceError, load_model, parse_shape


class GrayNet(nn.Module):
    """A CNN not in the repository: 1 x 28 x 28 input, 10 classes."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.fc(torch.relu(self.conv2(x)).mean((2, 3)))


class FlatNet(GrayNet):
    """GrayNet with a flattening classifier: learns Fashion-MNIST in seconds."""

    def __init__(self, classes=10):
        super().__init__(classes)
        self.fc = nn.Linear(16 * 14 * 14, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.fc(torch.flatten(torch.relu(self.conv2(x)), 1))


class TwoHeads(GrayNet):
    def forward(self, x):
        y = super().forward(x)
        return y, y * 2


@pytest.fixture(scope="module")
def gray_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gray")
    torch.manual_seed(0)
    net = GrayNet().eval()
    x = torch.randn(2, 1, 28, 28)
    torch.export.save(torch.export.export(net, (x,)), d / "gray.pt2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(d / "gray.onnx"), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}})
    torch.save(net.state_dict(), d / "gray_state.pt")
    return d


# ----------------------------------------------------------------------------- MODEL
@pytest.mark.parametrize("name", ["gray.pt2", "gray.onnx"])
def test_pt2_and_onnx_files(gray_files, name):
    m = load_model(str(gray_files / name))
    assert m.kind == name.split(".")[1] and m.input_shape == (1, 28, 28)
    assert m.num_outputs == 10 and m.name == "gray"
    assert {"conv1.weight", "conv2.weight", "fc.weight"} <= set(m.params)
    assert not any("bn1" in k for k in m.params)  # folded into conv1


def test_pt2_static_batch_is_made_dynamic(gray_files):
    from aiq_tvm.frontend import batch_var

    assert batch_var(load_model(str(gray_files / "gray.pt2")).mod) is not None


def test_shipped_and_torchvision():
    m = load_model("resnet20")
    assert m.kind == "shipped" and m.input_shape == (3, 32, 32) and m.num_outputs == 10
    tv = load_model("torchvision:mobilenet_v2", input_shape=(3, 32, 32))
    assert tv.num_outputs == 1000 and "features.0.0.weight" in tv.params
    assert "random initialization" in tv.notes[0]


@pytest.mark.parametrize("spec, kwargs, message", [
    ("resnet99", {}, "unknown MODEL 'resnet99'; give a shipped name"),
    ("torchvision:resnet_9000", {}, "unknown torchvision classifier 'resnet_9000'; valid: "),
    ("nothere.onnx", {}, "model file 'nothere.onnx' does not exist"),
    ("resnet20", {"input_shape": (3, 64, 64)}, "trained on 3x32x32 inputs"),
])
def test_bad_models(spec, kwargs, message):
    with pytest.raises(SourceError, match=message):
        load_model(spec, **kwargs)


def test_bad_model_files(gray_files, tmp_path):
    with pytest.raises(SourceError, match="--weights applies to shipped and torchvision"):
        load_model(str(gray_files / "gray.onnx"), weights=str(gray_files / "gray_state.pt"))
    with pytest.raises(SourceError, match="does not fit resnet20"):
        load_model("resnet20", weights=str(gray_files / "gray_state.pt"))
    with pytest.raises(SourceError, match=r"exported for inputs 1x28x28; --input-shape 3x28x28"):
        load_model(str(gray_files / "gray.pt2"), input_shape=(3, 28, 28))
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    with pytest.raises(SourceError, match="is not a torch.export program"):
        load_model(str(tmp_path / "junk.pt2"))
    torch.export.save(torch.export.export(TwoHeads().eval(), (torch.randn(2, 1, 28, 28),)),
                      tmp_path / "two.pt2")
    with pytest.raises(SourceError, match="returns 2 outputs"):
        load_model(str(tmp_path / "two.pt2"))


def test_weights_of_another_network_give_one_short_line(tmp_path):
    """torch's load_state_dict error lists every key: `aiq-tvm search torchvision:resnet18
    --weights mobilenet_v2_fmnist.pt` printed a 13,235-character line (docs/cli.md run)."""
    import torchvision

    from aiq_tvm.sources import torch_module

    torch.save(torchvision.models.mobilenet_v2(num_classes=10).state_dict(), tmp_path / "m.pt")
    with pytest.raises(SourceError) as err:
        torch_module("torchvision:resnet18", str(tmp_path / "m.pt"))
    line = str(err.value)
    assert "\n" not in line and len(line) < 500, line
    assert "does not fit torchvision:resnet18: 122 of the model's 122 keys missing " \
        "('conv1.weight', 'bn1.weight', 'bn1.bias', ...); 314 keys the model does not have " \
        "('features.0.0.weight', 'features.0.1.weight', 'features.0.1.bias', ...)" in line
    state = GrayNet(classes=10).state_dict()
    state["conv2.weight"] = torch.zeros(4, 8, 3, 3)
    torch.save(state, tmp_path / "g.pt")
    with pytest.raises(SourceError, match=r"does not fit resnet20: .*missing"):
        torch_module("resnet20", str(tmp_path / "g.pt"))


def test_resized_weights_are_named_with_both_shapes(tmp_path):
    import torchvision

    from aiq_tvm.sources import torch_module

    state = torchvision.models.resnet18(num_classes=10).state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, tmp_path / "r.pt")
    with pytest.raises(SourceError, match=r"r\.pt does not fit torchvision:resnet18: "
                       r"'layer1.0.conv1.weight' is \(64, 64, 1, 1\) in the file but "
                       r"\(64, 64, 3, 3\) in the model$"):
        torch_module("torchvision:resnet18", str(tmp_path / "r.pt"))


def test_failed_torch_import_prints_no_warning_before_its_error():
    """A 1-channel shape for a 3-channel torchvision model: the dynamic-batch export's warning
    used to print above the error line, so the CLI's output was not one line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SourceError, match=r"cannot be imported with input shape 1x32x32: "
                           r".*expected input\[2, 1, 32, 32\] to have 3 channels"):
            load_model("torchvision:resnet18", input_shape=(1, 32, 32))
    assert [str(w.message) for w in caught] == []


def test_parse_shape():
    assert parse_shape("3,224,224") == (3, 224, 224) == parse_shape("3x224x224")
    with pytest.raises(SourceError, match="positive integers like 3,224,224"):
        parse_shape("3,-1,2")
    for bad in ("3,x", "3,,28", "", "3x"):
        with pytest.raises(SourceError, match="positive integers like 3,224,224"):
            parse_shape(bad)


# ----------------------------------------------------------------------------- DATA
def _npz(path, n=40, shape=(1, 28, 28), test=True, **override):
    rng = np.random.default_rng(0)
    arrays = {"x": rng.standard_normal((n, *shape)).astype(np.float32),
              "y": rng.integers(0, 10, n)}
    if test:
        arrays.update(x_test=rng.standard_normal((7, *shape)).astype(np.float32),
                      y_test=rng.integers(0, 10, 7))
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return str(path)


def test_npz_splits_are_disjoint(tmp_path):
    path = _npz(tmp_path / "d.npz")
    d = load_data(path, (1, 28, 28), calib=10, val=25, num_classes=10)
    assert d.calib.shape == (10, 1, 28, 28) and d.val[0].shape == (25, 1, 28, 28)
    assert d.test[0].shape == (7, 1, 28, 28)
    src = np.load(path)["x"]
    rows = {src[i].tobytes(): i for i in range(len(src))}
    ic = {rows[r.tobytes()] for r in d.calib}
    iv = {rows[r.tobytes()] for r in d.val[0]}
    assert len(ic) == 10 and len(iv) == 25 and not ic & iv
    assert load_data(path, (1, 28, 28), calib=10, val=25, test=0).test is None


@pytest.mark.parametrize("override, message", [
    ({"y": None}, r"lacks y: it needs x \(N, C, H, W"),
    ({"x": np.zeros((40, 3, 28, 28), np.float32)}, r"has shape \(40, 3, 28, 28\) but the model "
     r"takes \(N, 1, 28, 28\)"),
    ({"x": np.random.default_rng(0).integers(0, 255, (40, 1, 28, 28)).astype(np.uint8)},
     "is uint8: raw pixels"),
    ({"x": np.random.default_rng(0).uniform(0, 255, (40, 1, 28, 28)).astype(np.float32)},
     "like raw 0-255 pixels"),
    ({"x": np.full((40, 1, 28, 28), np.nan, np.float32)}, "holds 31360 NaN/Inf values"),
    ({"x": np.zeros((40, 1, 28, 28), np.float32)}, r"is constant \(0.0\)"),
    ({"y": np.full(40, 12)}, "has label 12 but the model has only 10 outputs"),
    ({"y": np.full(40, -1)}, "has negative labels"),
    ({"y": np.zeros(39, np.int64)}, r"has 40 images but labels of shape \(39\)"),
    ({"y": np.zeros(40, np.float32)}, "labels are float32"),
    ({"y_test": None}, "has only one of x_test and y_test"),
])
def test_npz_errors(tmp_path, override, message):
    path = _npz(tmp_path / "d.npz", **override)
    with pytest.raises(SourceError, match=message):
        load_data(path, (1, 28, 28), calib=5, val=5, num_classes=10)


def test_more_outputs_than_classes_is_a_warning_naming_both_and_the_fix(tmp_path):
    """A 1000-output model on 10-class data scores about 0 %: said, not silent (issue 10)."""
    path = _npz(tmp_path / "d.npz")
    d = load_data(path, (1, 28, 28), calib=5, val=5, num_classes=1000)
    assert d.classes == 10 and len(d.warnings) == 1
    w = d.warnings[0]
    assert w.startswith(f"the model has 1000 outputs but the labels of {path} go up to 9 "
                        "(10 classes)")
    assert "near 0 %" in w and "--weights file.pt" in w and "trained on these 10 classes" in w
    assert d.describe()["warnings"] == d.warnings and d.describe()["classes"] == 10
    assert load_data(path, (1, 28, 28), calib=5, val=5, num_classes=10).warnings == []
    assert load_data(path, (1, 28, 28), calib=5, val=5).warnings == []  # outputs unknown
    _image_folder(tmp_path / "f")
    d = load_data(str(tmp_path / "f"), (3, 8, 8), calib=2, val=3, num_classes=1000)
    assert d.classes == 3 and d.warnings[0].startswith(
        f"the model has 1000 outputs but {tmp_path / 'f'} has 3 classes:")


def test_more_classes_than_outputs_is_an_error_even_when_the_splits_miss_them(tmp_path):
    # Labels 0..4 in x/y, 0..9 in the test split that --test 0 leaves out: DATA still has 10
    # classes, and images of classes 5..9 could never be right with 5 outputs.
    rng = np.random.default_rng(0)
    path = _npz(tmp_path / "d.npz", y=rng.integers(0, 5, 40))
    with pytest.raises(SourceError, match=r"go up to 9 \(10 classes\) but the model has only 5 "
                       r"outputs: images of classes 5..9 can never be predicted right; use a "
                       r"model trained on these 10 classes \(10 outputs\): --weights file.pt"):
        load_data(path, (1, 28, 28), calib=5, val=5, test=0, num_classes=5)
    with pytest.raises(SourceError, match=r"has label 9 but the model has only 5 outputs .*"
                       r"can never be predicted right; use a model trained on these 10 classes"):
        load_data(path, (1, 28, 28), calib=5, val=5, num_classes=5)  # the test split has it


def test_data_errors(tmp_path):
    path = _npz(tmp_path / "d.npz")
    with pytest.raises(SourceError, match=r"--calib 30 \+ --val 20 = 50 \(they must be disj"):
        load_data(path, (1, 28, 28), calib=30, val=20)
    with pytest.raises(SourceError, match="--test must be a number of images >= 0, got -9990"):
        load_data(path, (1, 28, 28), test=-9990)
    with pytest.raises(SourceError, match="--mean/--std normalize image folders"):
        load_data(path, (1, 28, 28), calib=5, val=5, mean=(0.5,))
    with pytest.raises(SourceError, match="unknown DATA 'imagenet'"):
        load_data("imagenet", (3, 32, 32))
    with pytest.raises(SourceError, match="fashion-mnist gives 28x28 grayscale images"):
        load_data("fashion-mnist", (3, 224, 224))


def test_fashion_mnist_views():
    d = load_data("fashion-mnist", (1, 28, 28), calib=8, val=16, test=20)
    full = load_data("fashion-mnist", (3, 32, 32), calib=8, val=16, test=20)
    assert d.calib.shape == (8, 1, 28, 28) and d.test[0].shape == (20, 1, 28, 28)
    np.testing.assert_array_equal(d.val[0], full.val[0][:, :1, 2:30, 2:30])
    np.testing.assert_array_equal(d.val[1], full.val[1])


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", 6) for i in range(1, 6)), ("test_batch", 4)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
                 b"labels": list(rng.integers(0, 10, n))}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    d = load_data(f"cifar10:{tmp_path}", (3, 32, 32), calib=10, val=12, num_classes=10)
    assert len(d.calib) == 10 and len(d.val[0]) == 12 and len(d.test[0]) == 4
    with pytest.raises(SourceError, match="CIFAR-10 images are 3x32x32"):
        load_data(f"cifar10:{tmp_path}", (1, 28, 28))
    with pytest.raises(SourceError, match="not found"):
        load_data(f"cifar10:{tmp_path / 'nope'}", (3, 32, 32))


def _image_folder(root, classes=("cat", "dog", "fish"), per_class=5, size=(40, 30)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (*size[::-1], 3)).astype(np.uint8)
            Image.fromarray(img).save(root / c / f"{i}.png")
    return root


def test_image_folder_with_test_split(tmp_path):
    _image_folder(tmp_path / "train")
    _image_folder(tmp_path / "test", per_class=2)
    d = load_data(str(tmp_path), (3, 24, 24), calib=4, val=8, num_classes=3)
    assert d.calib.shape == (4, 3, 24, 24) and d.val[0].shape == (8, 3, 24, 24)
    assert d.test[0].shape == (6, 3, 24, 24) and sorted(set(d.test[1])) == [0, 1, 2]
    assert -2.2 < d.val[0].min() and d.val[0].max() < 2.7  # ImageNet-normalized pixels
    gray = load_data(str(tmp_path / "train"), (1, 24, 24), calib=4, val=8,
                     mean=(0.5,), std=(0.25,))
    assert gray.test is None and gray.calib.shape == (4, 1, 24, 24)
    assert gray.val[0].min() >= -2.0 - 1e-6 and gray.val[0].max() <= 2.0 + 1e-6
    # summary.json records load_args: the same images come back (scripts/check_so_accuracy.py)
    args = gray.describe()["load_args"]
    assert args == {"calib": 4, "val": 8, "test": None, "seed": 0, "mean": [0.5],
                    "std": [0.25]}
    again = load_data(gray.spec, (1, 24, 24), **args)
    np.testing.assert_array_equal(again.val[0], gray.val[0])


def test_image_folder_errors(tmp_path):
    _image_folder(tmp_path / "f", classes=("a", "b"), per_class=2)
    with pytest.raises(SourceError, match=r"has label 1 but the model has only 1 outputs"):
        load_data(str(tmp_path / "f"), (3, 8, 8), calib=1, val=3, num_classes=1)
    with pytest.raises(SourceError, match="--std values must be positive"):
        load_data(str(tmp_path / "f"), (3, 8, 8), calib=1, val=1, std=(0.0,))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(SourceError, match="holds no images"):
        load_data(str(tmp_path / "empty"), (3, 8, 8), calib=1, val=1)
    (tmp_path / "f" / "a" / "broken.png").write_bytes(b"nope")
    with pytest.raises(SourceError, match="broken.png is not a readable image"):
        load_data(str(tmp_path / "f"), (3, 8, 8), calib=2, val=3)
