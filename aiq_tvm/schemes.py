"""Precision schemes a layer can be assigned, in a named registry.

The registry keys double as the plan vocabulary and the CLI choices
(``aiq-tvm run --precisions fp32,int8,int4``).  Pure Python: no TVM import, so the
search and cost model can use it in millisecond tests.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PrecisionScheme", "PRECISIONS", "get_precision", "precision_names"]


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


def get_precision(name: str) -> PrecisionScheme:
    """Look up a scheme by name.

    Raises
    ------
    ValueError
        If ``name`` is not a registered precision; the message lists the valid names.
    """
    try:
        return PRECISIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown precision {name!r}; valid precisions: {', '.join(PRECISIONS)}"
        ) from None
