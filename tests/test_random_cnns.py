"""A fixed sample of random CNNs (tests/random_cnns.py) through import -> build -> run.

The sample covers what the generator draws: odd channel counts, kernels 1/3/5/7, strides,
dilation, grouped and depthwise convs, residual adds (identity and 1x1-conv shortcuts), concat,
max/avg/adaptive pooling (ragged
adaptive max windows too), ten activations, non-square inputs and batches 1, 3 and 7; and
four networks of the "modern" profile (transposed convs, resizes, norms, ConvNeXt blocks,
attention, squeeze-and-excitation, channel shuffle).
``scripts/fuzz_models.py`` runs hundreds of seeds (results in docs/reliability.md).
"""

import numpy as np
import pytest
import torch
from random_cnns import FP32_TOL, INT8_TOL, Profile, build_and_compare, random_cnn

# seed: what it draws.  max_blocks=3 and four seeds keep this module near 2 minutes of CPU
# (each network is imported and compiled three times: fp32, int8 calibration, int8).
SAMPLE = {
    26: "batch 7; depthwise + grouped convs, concat, residual, dilation",
    36: "batch 1, 11x15; concat, dilation, adaptive max pool, flatten head",
    32: "batch 7, 11x22; adaptive avg pool, two concats, depthwise over 31 channels",
    19: "batch 3, 15x14; ragged adaptive max pool (15 -> 7), 1x1-conv shortcut, dilation",
}


@pytest.mark.parametrize("seed", list(SAMPLE))
def test_random_cnn_matches_torch(seed):
    case = random_cnn(seed, max_blocks=3)
    errors = build_and_compare(case)
    assert errors["fp32"] < FP32_TOL, f"{case.describe()}: fp32 relative error {errors}"
    assert errors["int8"] < INT8_TOL, f"{case.describe()}: int8 relative error {errors}"


# The "modern" profile (max_blocks=6): blocks of networks after ResNet.
MODERN_SAMPLE = {
    1: "transposed conv 4x4/2, pyramid (nearest resize + concat), softplus, GELU-tanh",
    48: "instance norm, ConvNeXt block, SDPA attention over 60 positions, Mish",
    64: "pyramid (bilinear), ConvNeXt block, nn.MultiheadAttention, LogSigmoid",
    66: "pyramid, group norm, squeeze-and-excitation, channel shuffle",
}


@pytest.mark.parametrize("seed", list(MODERN_SAMPLE))
def test_modern_random_cnn_matches_torch(seed):
    case = random_cnn(seed, max_blocks=6, profile="modern")
    errors = build_and_compare(case)
    assert errors["fp32"] < FP32_TOL, f"{case.describe()}: fp32 relative error {errors}"
    assert errors["int8"] < INT8_TOL, f"{case.describe()}: int8 relative error {errors}"


def test_a_seed_draws_the_same_weights_every_time():
    # Layers take their initial weights from torch's global generator as they are built; a
    # failure is only reproducible from its seed if that draw is seeded too.
    first, second = random_cnn(5), random_cnn(5)
    a, b = first.model.state_dict(), second.model.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert np.array_equal(first.x, second.x)


def test_wide_profile_draws_real_network_sizes_and_rejects_unknown_names():
    case = random_cnn(3, profile="wide")
    n, c, h, w = case.x.shape
    assert c == 3 and 32 <= min(h, w) and max(h, w) < 97 and n in (1, 2, 8)
    convs = [m for m in case.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.out_channels >= 16 for m in convs if m.in_channels > 3), case.describe()
    with pytest.raises(ValueError, match="unknown profile 'huge'.*'modern', 'small', 'wide'"):
        random_cnn(3, profile="huge")


def test_profiles_reject_unknown_blocks_and_activations_by_name():
    with pytest.raises(ValueError, match=r"unknown blocks \['warp'\]; choose from .*'attention'"):
        Profile(blocks=("conv", "warp"))
    with pytest.raises(ValueError, match=r"unknown activations \['swish'\]; choose from .*'mish'"):
        Profile(activations=("relu", "swish"))
