"""Analytic cost model: bytes moved, arithmetic intensity and the roofline bound per layer.

FLOPs come from TVM (``tvm.s_tir.analysis.estimate_tir_flops`` on the legalized PrimFunc of
each call site, see :mod:`aiq_tvm.analysis`); this module only does arithmetic on them, in
pure Python, so the search can evaluate AI for thousands of candidate plans in microseconds.

Bytes moved by one layer at precision ``p`` (what its kernel reads and writes once)::

    weights      weight_elems * p.weight_bytes        (packed int4 = 0.5 byte per value)
    input        in_elems * p.act_bytes               (uint8 when p quantizes activations)
    output       out_elems * 1  if the output is requantized to uint8 in the epilogue
                 out_elems * 4  otherwise (dequantized float32)
    shortcut     residual_elems * 1 when a residual add is fused into the epilogue and the
                 shortcut's producer requantized it to uint8, residual_elems * 4 otherwise
    per-channel  out_channels * 4 for the bias
                 + out_channels * 4 for weight scales          (weight-quantized p)
                 + out_channels * 4 for the int32 zero-point correction and
                   8 for the activation scale and zero point   (activation-quantized p)

An output is requantized in the epilogue only when ``requant_fusion`` is on and every
consumer of the layer's output is a layer running with 8-bit activations, or (with
``requant_residuals``) adds it as its fused residual while at least one such layer takes it
as data (then the producer writes the consumers' uint8 input directly, the way the compiled
kernels do, and the residual epilogues read that uint8 tensor), or when only such layers read
it, all of them as their fused residual (a downsample conv's output: the producer writes it
as uint8 on the shortcut's calibrated range).

Model AI = sum of FLOPs / sum of bytes over all layers (unsupported layers count at fp32).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .schemes import get_precision

__all__ = ["LayerCost", "CostModel", "RooflinePoint"]


@dataclass(frozen=True)
class LayerCost:
    """Static facts about one quantizable layer.

    Parameters
    ----------
    name : str
        Layer name (PyTorch module path when imported with :func:`aiq_tvm.from_torch`).
    op : str
        ``"conv2d"``, ``"depthwise_conv2d"``, ``"grouped_conv2d"``, ``"dense"`` or the op name of
        an unsupported layer.
    flops : int
        FLOPs counted by TVM on the legalized PrimFunc of this call site.
    weight_elems, in_elems, out_elems, out_channels : int
        Element counts of the weight, the input and output activations, and output channels.
    in_shape, weight_shape, out_shape : tuple
        Shapes for reports.
    supported : bool
        False for layers that stay fp32 (``reason`` says why).
    reason : str
        Why an unsupported layer stays fp32.
    consumers : tuple of str or None
        Names of the layers that take this layer's output as their data input, when only
        layers read it (as data or as fused residual); ``None`` when some other op (pooling,
        an unfused add, the model output) reads it too, or no layer reads it as data.
    residual_elems : int
        Elements of the shortcut tensor added in the epilogue (0 if none).
    residual_consumers : tuple of str
        Layers adding this layer's output as their fused residual, when only layers read it
        (``()`` otherwise).
    residual_source : str or None
        The layer whose output is this layer's fused residual, if a layer produced it.
    strides, padding, groups, dilation
        Conv geometry of a supported conv layer (``(sh, sw)``, ``(top, left, bottom,
        right)``, groups, ``(dh, dw)``), as the kernel library's ``ConvSpec`` takes it.
    """

    name: str
    op: str
    flops: int
    weight_elems: int
    in_elems: int
    out_elems: int
    out_channels: int
    in_shape: tuple = ()
    weight_shape: tuple = ()
    out_shape: tuple = ()
    supported: bool = True
    reason: str = ""
    consumers: tuple[str, ...] | None = None
    residual_elems: int = 0
    residual_consumers: tuple[str, ...] = ()
    residual_source: str | None = None
    # Conv geometry (the kernel library's ConvSpec needs it; defaults for dense layers).
    strides: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    groups: int = 1
    dilation: tuple = (1, 1)

    def __post_init__(self) -> None:
        for f in ("flops", "weight_elems", "in_elems", "out_elems", "out_channels"):
            if getattr(self, f) < 0:
                raise ValueError(f"layer {self.name!r}: {f} must be >= 0")

    def nbytes(self, precision: str, out_act_bytes: float = 4.0,
               residual_bytes: float = 4.0) -> float:
        """Bytes moved by this layer's kernel at ``precision`` (see the module docstring)."""
        p = get_precision(precision)
        meta = 4.0 * self.out_channels  # bias
        if p.quantizes_weights:
            meta += 4.0 * self.out_channels
        if p.quantizes_activations:
            meta += 4.0 * self.out_channels + 8.0
        return (
            self.weight_elems * p.weight_bytes
            + self.in_elems * p.act_bytes
            + self.out_elems * out_act_bytes
            + self.residual_elems * residual_bytes
            + meta
        )


@dataclass(frozen=True)
class RooflinePoint:
    """Roofline numbers of one layer at one precision."""

    flops: int
    nbytes: float
    ai: float
    peak_ops: float  # ops/s the layer's arithmetic can reach on the target
    bandwidth: float  # bytes/s
    bound: str  # "memory" or "compute"
    predicted_s: float


@dataclass
class CostModel:
    """Per-layer costs of a model and the arithmetic on plans.

    Parameters
    ----------
    layers : sequence of LayerCost
        All conv/dense layers in program order, unsupported ones included.
    requant_fusion : bool
        Whether producer epilogues write uint8 for consumers with 8-bit activations.
    requant_residuals : bool
        With ``requant_fusion``: also where other layers add the output as their residual
        (``QuantizeAnnotated(requant_residuals=...)``).
    """

    layers: Sequence[LayerCost]
    requant_fusion: bool = True
    requant_residuals: bool = True
    _by_name: dict[str, LayerCost] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.layers = list(self.layers)
        self._by_name = {}
        for lc in self.layers:
            if lc.name in self._by_name:
                raise ValueError(f"duplicate layer name {lc.name!r} in cost model")
            self._by_name[lc.name] = lc

    # ------------------------------------------------------------------ accessors
    @property
    def names(self) -> list[str]:
        return [lc.name for lc in self.layers]

    @property
    def searchable(self) -> list[str]:
        """Layers whose precision can change (supported ones)."""
        return [lc.name for lc in self.layers if lc.supported]

    def __getitem__(self, name: str) -> LayerCost:
        return self._by_name[name]

    def full_assignment(self, assignment: Mapping[str, str]) -> dict[str, str]:
        """Fill missing layers with fp32 and force unsupported layers to fp32."""
        unknown = set(assignment) - set(self._by_name)
        if unknown:
            raise ValueError(f"assignment names unknown layers {sorted(unknown)}")
        return {
            lc.name: (assignment.get(lc.name, "fp32") if lc.supported else "fp32")
            for lc in self.layers
        }

    # ------------------------------------------------------------------ bytes / AI
    def out_act_bytes(self, name: str, assignment: Mapping[str, str]) -> float:
        """Bytes per output value of ``name``: 1 when requantized for its consumers, else 4."""
        lc = self._by_name[name]
        # Data consumers set the grid; without any (``consumers`` None but residual ones),
        # the shortcut's own range: a downsample conv's output, only residual epilogues read.
        readers = lc.consumers or lc.residual_consumers
        if not self.requant_fusion or not readers:
            return 4.0
        if lc.residual_consumers and not self.requant_residuals:
            return 4.0
        ok = all(
            self._by_name[c].supported
            and get_precision(assignment.get(c, "fp32")).quantizes_activations
            for c in readers
        )
        return 1.0 if ok else 4.0

    def layer_bytes(self, name: str, assignment: Mapping[str, str]) -> float:
        lc = self._by_name[name]
        prec = assignment.get(name, "fp32") if lc.supported else "fp32"
        src = lc.residual_source
        res_bytes = 4.0 if src is None else self.out_act_bytes(src, assignment)
        return lc.nbytes(prec, self.out_act_bytes(name, assignment), res_bytes)

    def total_flops(self) -> int:
        return sum(lc.flops for lc in self.layers)

    def total_bytes(self, assignment: Mapping[str, str]) -> float:
        return sum(self.layer_bytes(lc.name, assignment) for lc in self.layers)

    def ai(self, assignment: Mapping[str, str]) -> float:
        """Model arithmetic intensity (FLOPs per byte) of a plan."""
        total = self.total_bytes(assignment)
        return self.total_flops() / total if total else 0.0

    def fp32_ai(self) -> float:
        return self.ai({})

    # ------------------------------------------------------------------ roofline
    def predicted_time(self, assignment: Mapping[str, str], peaks) -> float:
        """Roofline time of all layers in seconds (sum of per-layer max(compute, memory))."""
        return sum(self.roofline(lc.name, assignment, peaks).predicted_s for lc in self.layers)

    def roofline(
        self, name: str, assignment: Mapping[str, str], peaks
    ) -> RooflinePoint:
        """Roofline bound of one layer.

        ``peaks`` is any object with ``peak_gflops_fp32``, ``peak_gops_int8`` and
        ``bandwidth_gbs`` (e.g. a :class:`aiq_tvm.targets.CpuPreset`).  Layers with 8-bit
        activations compute in int8 (VNNI); weight-only layers compute in float32.
        """
        lc = self._by_name[name]
        prec = assignment.get(name, "fp32") if lc.supported else "fp32"
        nbytes = self.layer_bytes(name, assignment)
        int8 = get_precision(prec).quantizes_activations
        peak = (peaks.peak_gops_int8 if int8 else peaks.peak_gflops_fp32) * 1e9
        bw = peaks.bandwidth_gbs * 1e9
        t_compute, t_memory = lc.flops / peak, nbytes / bw
        return RooflinePoint(
            flops=lc.flops,
            nbytes=nbytes,
            ai=lc.flops / nbytes if nbytes else 0.0,
            peak_ops=peak,
            bandwidth=bw,
            bound="memory" if t_memory >= t_compute else "compute",
            predicted_s=max(t_compute, t_memory),
        )
