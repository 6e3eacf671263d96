"""Error-compensating weight rounding (GPTQ, Frantar et al. 2023) for conv and dense layers.

Pure numpy.  Rounding-to-nearest makes every weight's error independent; GPTQ rounds the
columns of a layer's weight one after another and moves each column's rounding error onto the
columns not yet rounded, in the proportions that least change the layer's output on the
calibration inputs (the second moment ``H = E[p p^T]`` of the input patches ``p``).  With
correlated inputs (neighbouring pixels, channels that move together, the shared mean of
post-ReLU activations) much of the error cancels.

The scale stays the kernels' own symmetric per-output-channel max-abs scale: the result is
handed to the kernel as the float weight ``codes * scale``, which its quantizer maps back to
the same codes (a row whose codes no longer reach ``qmax`` keeps round-to-nearest, so its
max-abs scale is unchanged).
"""

from __future__ import annotations

import numpy as np

from .quant import conv_out_hw

__all__ = ["MAX_HESSIAN_BYTES", "HessianCollector", "conv_patches", "gptq_round"]

# A layer's second moments take groups * K**2 * 8 bytes in float64 (K: its patch length), the
# precision of the copy its Cholesky factorization works in.  Above 1 GiB (a dense layer with
# K > 11585, e.g. VGG's 25088-input classifier: 5 GiB, minutes of O(K**3) work) the layer
# rounds to nearest.
MAX_HESSIAN_BYTES = 1 << 30


def conv_patches(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int, int, int], groups: int, positions: np.ndarray,
                 dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Zero-padded input patches of an NCHW conv at flat output ``positions`` (over
    ``N * OH * OW``): ``[groups, len(positions), C/groups * KH * KW]`` in OIHW order."""
    p = _windows(x, kernel, stride, padding, positions, dilation)  # [M, KH, KW, C]
    p = p.transpose(0, 3, 1, 2)  # [M, C, KH, KW]: the weights' OIHW order
    return p.reshape(len(positions), groups, -1).transpose(1, 0, 2)


def _windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
             padding: tuple[int, int, int, int], positions: np.ndarray,
             dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """The zero-padded windows ``[M, KH, KW, C]`` of an NCHW conv input at flat output
    ``positions``.

    Only the sampled windows are gathered, each tap reading its C channels in one run when
    ``x`` is an NCHW view of channels-last memory (a calibration run's activations): no
    padded copy, no transpose of the whole tensor."""
    n, c, h, w = x.shape
    kh, kw = kernel
    oh, ow = conv_out_hw(x.shape[2], x.shape[3], *kernel, stride, padding, dilation)
    b, rem = np.divmod(np.asarray(positions), oh * ow)
    r, q = np.divmod(rem, ow)
    rows = (r * stride[0] - padding[0])[:, None] + np.arange(kh) * dilation[0]  # [M, KH]
    cols = (q * stride[1] - padding[1])[:, None] + np.arange(kw) * dilation[1]  # [M, KW]
    xh = np.moveaxis(x, 1, -1)  # [N, H, W, C]
    p = xh[b[:, None, None], np.clip(rows, 0, h - 1)[:, :, None],
           np.clip(cols, 0, w - 1)[:, None, :]]  # [M, KH, KW, C]
    outside = ~(((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :])
    p[outside] = 0
    return p


def _tap_major_patches(x, kernel, stride, padding, groups, positions,
                       dilation=(1, 1)) -> np.ndarray:  # fmt: skip
    """:func:`conv_patches` with each group's patch in (KH, KW, C/groups) order instead of
    OIHW's (C/groups, KH, KW): for one group, the gathered windows themselves (the OIHW
    order costs a transposed copy of every batch's patches, 3 s of a ResNet-50 build).
    :func:`_oihw_order` maps the second moments back."""
    p = _windows(x, kernel, stride, padding, positions, dilation)
    m, kh, kw, c = p.shape
    if groups == 1:
        return p.reshape(1, m, -1)
    p = p.reshape(m, kh, kw, groups, c // groups).transpose(3, 0, 1, 2, 4)
    return p.reshape(groups, m, -1)


def _oihw_order(kernel: tuple[int, int], cpg: int) -> np.ndarray | None:
    """Index of each OIHW-ordered patch entry (c, kh, kw) in the tap-major order (kh, kw, c),
    or None where the two orders coincide (1x1 kernels, one channel per group)."""
    kh, kw = kernel
    if kh * kw == 1 or cpg == 1:
        return None
    return np.arange(kh * kw * cpg).reshape(kh, kw, cpg).transpose(2, 0, 1).ravel()


class HessianCollector:
    """``E[p p^T]`` of every layer's input patches, accumulated batch by batch.

    Parameters
    ----------
    geometry : mapping of str to tuple
        Layer name -> ``(op, kernel, stride, padding, groups[, dilation])`` (``op``
        ``"dense"`` or a conv kind; the other fields are ignored for dense layers; dilation 1
        where absent).
    per_update : int
        Patch positions sampled per layer per batch (all of them when fewer).
    max_bytes : int
        Layers whose second moments in float64 would take more are not collected (they round to
        nearest); :attr:`too_large` maps them to their patch length.
    """

    def __init__(self, geometry, per_update: int = 4096, seed: int = 0,
                 max_bytes: int = MAX_HESSIAN_BYTES):
        self.geometry = dict(geometry)
        self.per_update = int(per_update)
        self.max_bytes = int(max_bytes)
        self.rng = np.random.default_rng(seed)
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, int] = {}
        self.too_large: dict[str, int] = {}
        self.final = False  # hessians() turned the sums into the moments
        self.orders: dict[str, np.ndarray | None] = {}  # see _oihw_order

    def update(self, name: str, x: np.ndarray) -> None:
        if self.final:
            raise RuntimeError("HessianCollector.update after hessians(): the sums are spent")
        # (dilation, the sixth field, is optional: 1 where absent)
        op, kernel, stride, padding, groups, *dil = self.geometry[name]
        dilation = tuple(dil[0]) if dil else (1, 1)
        k = x.shape[-1] if op == "dense" else x.shape[1] // groups * kernel[0] * kernel[1]
        if (1 if op == "dense" else groups) * k * k * 8 > self.max_bytes:
            self.too_large[name] = k
            return
        x = np.asarray(x, np.float32)
        if op == "dense":
            p = x.reshape(1, -1, x.shape[-1])
        else:
            oh, ow = conv_out_hw(x.shape[2], x.shape[3], *kernel, stride, padding, dilation)
            total = x.shape[0] * oh * ow
            pos = np.arange(total) if total <= self.per_update else np.sort(
                self.rng.choice(total, self.per_update, replace=False))
            p = _tap_major_patches(x, kernel, stride, padding, groups, pos, dilation)
            self.orders[name] = _oihw_order(kernel, x.shape[1] // groups)
        p = np.ascontiguousarray(p, np.float32)
        acc = self.sums.get(name)
        if acc is None:
            acc = self.sums[name] = np.zeros((p.shape[0], k, k), np.float32)
        _add_gram(acc, p)
        self.counts[name] = self.counts.get(name, 0) + p.shape[1]

    def hessians(self) -> dict[str, np.ndarray]:
        """Layer -> ``[groups, K, K]`` float32 second moments, exactly symmetric (a saved
        calibration keeps one triangle).  The sums become the moments in place (a ResNet-50
        holds 0.5 GB of them), so the collector takes no updates after this call."""
        if not self.final:
            for n, s in self.sums.items():
                s /= np.float32(self.counts[n])
                for g in s:
                    _mirror_upper(g.T)  # the sums are exact in their lower triangles
                order = self.orders.get(n)
                if order is not None:  # tap-major patches: rows and columns to OIHW order
                    self.sums[n] = s[:, order][:, :, order]
            self.final = True
        return dict(self.sums)


# Below this patch length a layer's products are small: one batched matmul over its groups
# beats a BLAS call per group (depthwise convs have one group per channel, K = 9).
_SYRK_MIN_K = 128


def _add_gram(acc: np.ndarray, p: np.ndarray) -> None:
    """``acc[g] += p[g]^T p[g]`` for each group of ``p [groups, M, K]``, in float32 and in
    place, exact in the lower triangle of each ``acc[g]`` (the upper may hold anything).

    Long patches take BLAS ``ssyrk``, which computes one triangle: half the products of a
    matmul, the bulk of calibrating a ResNet-50, and no temporary: fresh memory is slow to
    fault in on some virtual machines (a 170 MB array took up to 1.2 s to first touch)."""
    if p.shape[2] < _SYRK_MIN_K:
        acc += np.matmul(p.transpose(0, 2, 1), p)
        return
    from scipy.linalg.blas import ssyrk

    for g in range(p.shape[0]):
        # Fortran-order views: p[g].T is [K, M], acc[g].T's upper triangle is acc[g]'s lower.
        c = acc[g].T
        out = ssyrk(1.0, p[g].T, beta=1.0, c=c, trans=0, lower=0, overwrite_c=1)
        if not np.shares_memory(out, c):  # BLAS wrappers may hand back a copy
            c[...] = out


def _mirror_upper(m: np.ndarray, block: int = 256) -> None:
    """Copy the upper triangle of the square ``m`` onto its lower one, in place, a strip of
    columns at a time (one whole transposed copy of a K = 4608 matrix took seconds)."""
    k = len(m)
    for a in range(0, k, block):
        b = min(a + block, k)
        m[b:, a:b] = m[a:b, b:].T
        d = m[a:b, a:b]
        low = np.tril_indices(b - a, -1)
        d[low] = d.T[low]


def _error_feedback(h: np.ndarray, damp: float) -> tuple[np.ndarray, np.ndarray]:
    """GPTQ's error feedback ``A`` (strictly upper) of the damped ``H``, and the dead columns.

    GPTQ rounds column ``k`` at ``W_k + sum_{i<k} (W_i - Q_i) A_ik``: the rounding errors of the
    columns before it, against the *original* weights, fed forward (QuIP's LDLQ form, Chee et
    al. 2023, Theorem 1).  With the upper factor ``R`` of ``H = R R^T`` (the lower Cholesky
    factor of ``H`` with rows and columns reversed), ``A = R diag(R)^-1 - I``.  This is the
    same arithmetic as GPTQ's usual form (updates by the upper Cholesky factor of ``H^-1``,
    which is ``R^-1``) without inverting ``R``: one factorization instead of two
    (K = 4608: 1.4 s against 4.5 s, the same codes).

    One float64 copy of ``H`` (170 MB at K = 4608), reversed and in Fortran order, is
    factorized in place by LAPACK's ``dpotrf``: the factor numpy's ``cholesky`` computes,
    without its two further copies."""
    from scipy.linalg.lapack import dpotrf

    diag = np.diag(h).astype(np.float64)
    dead = diag == 0
    diag[dead] = 1.0
    a = np.array(h[::-1, ::-1], np.float64, order="F")
    np.fill_diagonal(a, diag[::-1] + damp * np.mean(diag))
    low, info = dpotrf(a, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(
            f"GPTQ: the damped second moments are not positive definite (LAPACK dpotrf info "
            f"{info}); build with weight_correction='bias' (no GPTQ) for this model")
    r = low[::-1, ::-1]  # upper: the strict lower triangle is unused (clean=0 left it as is)
    r /= np.diag(r).copy()[None, :]
    return r, dead  # its diagonal (ones) is never read


def _gptq_rows(w: np.ndarray, h: np.ndarray, scale: np.ndarray, qmax: int, damp: float,
               block: int = 128) -> np.ndarray:
    """GPTQ codes of ``w [R, K]`` (rows share ``h [K, K]``) with per-row ``scale``."""
    fb, dead = _error_feedback(h, damp)
    # Worked on transposed, [K, R]: each step reads and updates whole columns of ``w``, which
    # are then contiguous rows.  Feedback within a block goes column by column; to the
    # columns after it, once per block as one matrix product.
    w0 = np.array(w, np.float64).T.copy()
    w0[dead] = 0.0
    wt = w0.copy()
    s = scale.astype(np.float64)
    q = np.zeros_like(wt)
    k = wt.shape[0]
    for a in range(0, k, block):
        b = min(a + block, k)
        err = np.empty((b - a, wt.shape[1]))
        for i in range(a, b):
            q[i] = np.clip(np.rint(wt[i] / s), -qmax, qmax)
            err[i - a] = w0[i] - q[i] * s
            wt[i + 1:b] += fb[i, i + 1:b, None] * err[i - a]
        wt[b:] += fb[a:b, b:].T @ err
    return q.T


def gptq_round(w: np.ndarray, hessian: np.ndarray, qmax: int, damp: float = 0.01
               ) -> np.ndarray:
    """The float weight (``codes * scale``, shape and dtype float32 of ``w``) whose
    symmetric per-output-channel quantization at ``qmax`` gives GPTQ's codes.

    ``w``: ``[O, C/groups, KH, KW]`` or ``[O, K]``; ``hessian``: ``[groups, K, K]`` in the
    order of :func:`conv_patches`.  Rows whose GPTQ codes do not reach ``qmax`` (their max-abs
    scale would change) keep round-to-nearest.
    """
    from .quant import quantize_weight_symmetric

    w = np.asarray(w, np.float32)
    groups = hessian.shape[0]
    o = w.shape[0]
    w2 = w.reshape(o, -1)
    rtn, scale = quantize_weight_symmetric(w2, qmax)
    codes = rtn.astype(np.float64)
    per = o // groups
    for g in range(groups):
        rows = slice(g * per, (g + 1) * per)
        codes[rows] = _gptq_rows(w2[rows], hessian[g], scale[rows], qmax, damp)
    short = np.abs(codes).max(axis=1) < qmax
    codes[short] = rtn[short]
    out = (codes * scale.astype(np.float64)[:, None]).astype(np.float32)
    return out.reshape(w.shape)
