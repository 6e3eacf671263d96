"""Precision schemes a layer can be assigned, in a named registry.

The registry keys double as the plan vocabulary and the CLI choices
(``aiq-tvm run --precisions fp32,int8,int4``).  Every part of the project that needs to know
what a precision *is* asks its :class:`PrecisionScheme`: its bits, how its weights are
quantized (:meth:`PrecisionScheme.quantize_weight`, the one place a quantizer is chosen), which
epilogue turns the accumulator into the output, and the names of the constants its kernels
take.  Pure Python and numpy: no TVM import, so the search and cost model can use it in
millisecond tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "EPILOGUES",
    "FULL_INT8_QMAX",
    "PrecisionScheme",
    "PRECISIONS",
    "get_precision",
    "precision_names",
]

# Constants each epilogue kind reads after the packed weight (kernel parameter order):
# "int": float32(acc - corr[o]) * comb[o] + bias[o]  (uint8 x int weights, int32 accumulator)
# "scale": acc * scale[o] + bias[o]                   (weight-only: float accumulator)
# "float": acc + bias[o]                              (fp32)
EPILOGUES = {
    "int": ("corr", "comb", "bias"),
    "scale": ("scale", "bias"),
    "float": ("bias",),
}
# Largest |code| of 8-bit weights when the target's int8 dot product is exact for full int8.
FULL_INT8_QMAX = 127


@dataclass(frozen=True)
class PrecisionScheme:
    """How one conv/dense layer is computed.

    Parameters
    ----------
    name : str
        Registry key (``"fp32"``, ``"int8"``, ...).
    weight_bits : int
        Storage bits per weight: 32 (float32), 8 (int8, symmetric per output channel) or
        4 (int4, symmetric per output channel, two values packed per byte).
    act_bits : int
        Bits of the layer's input activations: 32 (float32) or 8 (uint8, per-tensor affine,
        calibrated).  With 8-bit activations the kernel accumulates in int32.
    description : str
        One line for reports and ``--help``.
    """

    name: str
    weight_bits: int
    act_bits: int
    description: str

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"precision name must be a non-empty identifier, got {self.name!r}")
        if self.weight_bits not in (4, 8, 32):
            raise ValueError(
                f"precision {self.name!r}: weight_bits must be 4, 8 or 32, got {self.weight_bits}"
            )
        if self.act_bits not in (8, 32):
            raise ValueError(
                f"precision {self.name!r}: act_bits must be 8 or 32, got {self.act_bits}"
            )
        if self.act_bits == 8 and self.weight_bits == 32:
            raise ValueError(
                f"precision {self.name!r}: 8-bit activations need integer weights "
                "(int32 accumulation), got weight_bits=32"
            )

    @property
    def weight_bytes(self) -> float:
        """Bytes stored per weight value (0.5 for packed int4)."""
        return self.weight_bits / 8

    @property
    def act_bytes(self) -> float:
        """Bytes read per input-activation value."""
        return self.act_bits / 8

    @property
    def quantizes_weights(self) -> bool:
        return self.weight_bits < 32

    @property
    def quantizes_activations(self) -> bool:
        """True when the kernel reads uint8 activations and accumulates in int32."""
        return self.act_bits < 32

    @property
    def epilogue(self) -> str:
        """Epilogue kind (a key of :data:`EPILOGUES`): ``"int"`` for integer dot products,
        ``"scale"`` for weight-only schemes, ``"float"`` for fp32."""
        if self.quantizes_activations:
            return "int"
        return "scale" if self.quantizes_weights else "float"

    def const_names(self, requant: bool = False) -> list[str]:
        """Kernel constants after the input, in parameter order: the packed weight, the
        epilogue's constants, and ``out_q`` when the kernel requantizes its output."""
        return ["weight", *EPILOGUES[self.epilogue]] + (["out_q"] if requant else [])

    def weight_qmax(self, int8_qmax: int = FULL_INT8_QMAX) -> int | None:
        """Largest |code| of the symmetric weight codes (``None`` for float weights).

        ``int8_qmax`` is what the numerics target's int8 dot product allows for 8-bit codes
        (:attr:`aiq_tvm.targets.TargetCaps.int8_weight_qmax`: 127, or 63 where ``vpmaddubsw``
        would saturate its int16 pair sums). It only limits schemes whose weights meet uint8
        activations in that dot product; weight-only schemes compute in float32.
        """
        if not self.quantizes_weights:
            return None
        full = 2 ** (self.weight_bits - 1) - 1
        if not 1 <= int8_qmax <= FULL_INT8_QMAX:
            raise ValueError(f"int8_qmax must be in [1, {FULL_INT8_QMAX}], got {int8_qmax}")
        return min(full, int8_qmax) if self.quantizes_activations else full

    def quantize_weight(
        self, w: np.ndarray, int8_qmax: int = FULL_INT8_QMAX
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """This scheme's weights: ``(codes, per-channel scale)``, or ``(float32 w, None)``.

        Symmetric per-output-channel codes in ``[-qmax, qmax]`` (see :meth:`weight_qmax`),
        unpacked int8; kernels pack them in their own layout.

        Parameters
        ----------
        w : np.ndarray
            Float weight with the output channel on axis 0 (OIHW conv or [O, K] dense).
        int8_qmax : int
            See :meth:`weight_qmax`.
        """
        qmax = self.weight_qmax(int8_qmax)
        if qmax is None:
            return np.asarray(w, np.float32), None
        from .quant import quantize_weight_symmetric

        return quantize_weight_symmetric(w, qmax)


PRECISIONS: dict[str, PrecisionScheme] = {
    s.name: s
    for s in (
        PrecisionScheme("fp32", 32, 32, "float32 weights and activations"),
        PrecisionScheme(
            "int8", 8, 8, "int8 weights x uint8 activations, int32 accumulation (W8A8)"
        ),
        PrecisionScheme(
            "int4", 4, 8, "int4 weights (2 per byte) x uint8 activations, int32 accumulation"
        ),
        PrecisionScheme("w8", 8, 32, "int8 weights dequantized in registers, float32 activations"),
        PrecisionScheme("w4", 4, 32, "int4 weights dequantized in registers, float32 activations"),
    )
}


def precision_names() -> list[str]:
    """Registry keys in a stable order (highest precision first)."""
    return list(PRECISIONS)


def get_precision(name: str | PrecisionScheme) -> PrecisionScheme:
    """Look up a scheme by name (a :class:`PrecisionScheme` is returned as is).

    Raises
    ------
    ValueError
        If ``name`` is not a registered precision; the message lists the valid names.
    """
    if isinstance(name, PrecisionScheme):
        return name
    try:
        return PRECISIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown precision {name!r}; valid precisions: {', '.join(PRECISIONS)}"
        ) from None
