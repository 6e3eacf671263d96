"""AArch64 NEON int8 intrinsics: cross-built here, their instructions checked in the assembly
(numerics run on the emulated board: tests/test_arm_emulated.py, ``make test-arm``)."""

import re

import pytest
import tvm

from aiq_tvm.targets.arm import neon

BASE = {"kind": "llvm", "mtriple": "aarch64-linux-gnu"}
NEON = {**BASE, "mattr": ["+neon"]}
DOTPROD = {**BASE, "mattr": ["+neon", "+dotprod"]}
I8MM = {**BASE, "mattr": ["+neon", "+dotprod", "+i8mm"]}


def asm_of(intrin: str, target: dict) -> str:
    func = neon.dot_kernel(3, 16, 8, intrin)
    lib = tvm.compile(tvm.IRModule({"main": func}), target=tvm.target.Target(target))
    return lib.mod.inspect_source("asm")


def count(asm: str, mnemonic: str) -> int:
    return len(re.findall(rf"^\s+{mnemonic}\s+v\d+\.", asm, flags=re.M))


@pytest.mark.parametrize("target, intrin", [(NEON, neon.NEON_SMULL),
                                            (DOTPROD, neon.NEON_SDOT),
                                            (I8MM, neon.NEON_USDOT)])
def test_each_level_gets_its_intrinsic(target, intrin):
    assert neon.intrinsic_for(tvm.target.Target(target)) == intrin


def test_intrinsic_for_rejects_x86():
    with pytest.raises(ValueError, match="aarch64"):
        neon.intrinsic_for(tvm.target.Target({"kind": "llvm", "mcpu": "haswell"}))


# 3 rows x 2 blocks of 4 output channels x 4 groups of 4 input channels = 24 blocks. The
# weight-only correction term of sdot/smull costs the same instructions again, at most once per
# block (LLVM shares it between blocks of the same weights where the loop order lets it).
BLOCKS = 24
def test_usdot_block_is_one_usdot():
    asm = asm_of(neon.NEON_USDOT, I8MM)
    assert count(asm, "usdot") == BLOCKS
    assert count(asm, "sdot") == 0 and count(asm, "smull") == 0


def test_sdot_block_flips_activations_and_corrects_with_the_weights():
    asm = asm_of(neon.NEON_SDOT, DOTPROD)
    assert BLOCKS < count(asm, "sdot") <= 2 * BLOCKS
    # the XOR 0x80 flip of the activations (on the 4 bytes, or on their broadcast vector)
    assert re.search(r"^\s+eor\s+[wv]\d+", asm, flags=re.M)
    assert count(asm, "usdot") == 0 and count(asm, "smull") == 0


def test_smull_block_without_dot_product_instructions():
    asm = asm_of(neon.NEON_SMULL, NEON)
    blocks = count(asm, "addp")  # one addp per block and per correction term
    assert BLOCKS < blocks <= 2 * BLOCKS
    assert count(asm, "smull") == 2 * blocks  # smull of the low and the high 8 bytes
    assert count(asm, "saddlp") + count(asm, "sadalp") == blocks
    assert count(asm, "sdot") == 0 and count(asm, "usdot") == 0


def test_dot_kernel_rejects_ragged_shapes():
    with pytest.raises(ValueError, match="multiples of 4"):
        neon.dot_kernel(1, 6, 8, neon.NEON_SDOT)
