"""Fused Triton kernels for non-causal efficient TaylorShift attention, forward and backward.

TaylorShift (Nauen et al. 2024, "TaylorShift: Shifting the Complexity of Self-Attention from Squared
to Linear (and Back) using Taylor-Softmax") weights key ``j`` for query ``i`` by the polynomial
``w_ij = a s^2 + b s + c`` of ``s = q_i . k_j`` and returns ``out_i = sum_j w_ij v_j / sum_j w_ij``.
With the features ``phi(x) = [sqrt(a) x (x) x, sqrt(b) x, sqrt(c)]`` this is
``out_i = phi(q_i)^T S / phi(q_i)^T z`` with ``S = sum_j phi(k_j) v_j^T`` and ``z = sum_j phi(k_j)``,
linear in N: O(N d^2 d_v) time, O(d^2 d_v) memory per head beyond the inputs.

The kernels never write the N x d^2 features to device memory. For one (batch, head):

* ``summary``: over tiles of rows, build the row-wise Kronecker tile ``x_j[m-block] (x) x_j[n-block]`` on
  chip and accumulate ``S2[m, n, e] = sigma * sum_j x_jm x_jn y_je`` with the tensor cores, only for blocks
  with m-block <= n-block (S2 is symmetric in m, n; the others are stored mirrored), plus the small parts
  ``S1 = sigma X^T Y``, ``S0 = sigma sum_j y_j`` and the denominator's ``Z2 = sigma X^T diag(t) X``,
  ``Z1 = sigma X^T t``, ``Z0 = sigma sum_j t_j``. Forward: X = k, Y = v, t = 1 on real keys.
* per-row kernels: ``phi(x)^T S`` as ``kron(x, x) @ S2 + x @ S1 + S0`` (and the same for the
  denominator), and the gradient ``d/dx phi(x)^T S y = 2a (kron(x, y) @ S2^T + t Z2 x) + b (S1 y + t Z1)``.

Backward with ``G_i = [dO_i / den_i, -(dO_i . out_i) / den_i]``: dq from the forward summary and G;
the summary of (q, G) gives ``dS``; then ``dv_j = phi(k_j)^T dS_v`` and ``dk_j`` from ``dS`` and ``[v_j, 1]``.
That is six passes of ``2 N d^2 d_v`` multiply-adds over the rows (two of them, the summaries, about
(1 + 16/d) / 2 of that with the mirrored blocks), about ``12 N d^3`` per head in all.

``sigma = 2^-ceil(log2 N)`` scales every summary, exactly (a power of two), so that sums over N rows
stay within the half-precision range when they are cast for the tensor cores; it cancels in
``out = num / den``. Accumulation is always float32; float32 inputs use exact float32 products
(no tf32), half-precision inputs use half-precision products for the d^3 terms and tf32 for the d^2 ones.
Tilings, timings and what limits them: NOTES.md beside this file.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from lra.attention.kernels.runtime import (
    SUPPORTED_DTYPES,
    TRITON_AVAILABLE,
    config_fields,
    config_from_fields,
    float32_precision,
    interpreter_ready,
    launch,
    tile_width,
    tiles,
    tl,
    triton,
)


@dataclass(frozen=True)
class KernelConfig:
    """Tiling of the kernels; ``default_config`` picks one per head dimension.

    The quadratic features of a row are its d x d products ``x_m x_n``; one tensor-core product takes the
    pairs of ``block_m`` values of m and ``block_n`` values of n. The summary kernel chooses its own blocks
    (``summary_*``); ``summary_symmetric`` computes only blocks with m-block <= n-block (square blocks) and
    mirrors them, nearly halving its work. The gradient passes take ``query_grad_block`` (dq) and
    ``key_grad_block`` (dk) values of n per product. Each per-row program reads all of S2 once, so its
    ``rows`` set the arithmetic per byte read from L2.
    """

    rows: int = 64  # rows per program in the per-row kernels
    block_m: int = 4
    block_n: int = 32
    query_grad_block: int = 4
    key_grad_block: int = 2
    warps: int = 4
    summary_rows: int = 64  # rows per step of the summary kernel
    summary_block_m: int = 16
    summary_block_n: int = 16
    summary_symmetric: bool = True
    summary_warps: int = 4
    summary_steps: int = 4  # row tiles per step of the summary's fixed-length inner loop
    stages: int = 2
    half_summary: bool = True  # keep S2 in the inputs' half precision (float32 inputs: float32 always)
    split_rows: int | None = None  # rows per summary program; None: enough programs to fill the GPU

    def check(self, d: int, d_v: int) -> None:
        sizes = ("block_m", "block_n", "query_grad_block", "key_grad_block", "summary_block_m", "summary_block_n")
        for name in sizes:
            size = getattr(self, name)
            if size < 1 or d % size or size & (size - 1):
                raise ValueError(f"KernelConfig.{name}={size} must be a power of two dividing d={d}")
        if self.summary_symmetric and self.summary_block_m != self.summary_block_n:
            raise ValueError("KernelConfig.summary_symmetric needs square blocks (summary_block_m == summary_block_n)")
        if min(self.block_m * self.block_n, self.summary_block_m * self.summary_block_n) < 16:
            raise ValueError("tensor-core products need sizes of at least 16: raise block_m * block_n")
        for name in ("query_grad_block", "key_grad_block"):
            size = getattr(self, name)
            if 2 * size > d or size * d_v < 16:
                raise ValueError(f"KernelConfig.{name}={size} must be at most d / 2 and at least 16 / d_v")
        if min(self.rows, self.summary_rows) < 16:
            raise ValueError("KernelConfig.rows and summary_rows must be at least 16")


def default_config(d: int) -> KernelConfig:
    """Tilings measured fastest on an H100 (lra/attention/kernels/NOTES.md), by head dimension."""
    if d >= 64:
        return KernelConfig(
            rows=128, block_m=1, block_n=d, query_grad_block=1, key_grad_block=1, warps=8,
            summary_block_m=16, summary_block_n=16, summary_warps=8,
        )
    square = min(16, d)
    return KernelConfig(
        rows=64, block_m=max(1, 128 // d), block_n=d, query_grad_block=min(4, d // 2), key_grad_block=2,
        warps=4, summary_block_m=square, summary_block_n=square,
    )


if TRITON_AVAILABLE:

    @triton.jit
    def _load_factors(x_rows, row_ok, m0, n0, BM: tl.constexpr, BN2: tl.constexpr):
        """Columns [m0, m0 + BM) and [n0, n0 + BN2) of a tile of rows."""
        xm = tl.load(x_rows[:, None] + (m0 + tl.arange(0, BM))[None, :], mask=row_ok[:, None], other=0.0)
        xn = tl.load(x_rows[:, None] + (n0 + tl.arange(0, BN2))[None, :], mask=row_ok[:, None], other=0.0)
        return xm, xn

    @triton.jit
    def _kron(xm, xn, BLOCK_N: tl.constexpr, BM: tl.constexpr, BN2: tl.constexpr):
        """Row-wise Kronecker product: (BLOCK_N, BM * BN2) tile of x_m * x_n, m major."""
        return tl.reshape(xm[:, :, None] * xn[:, None, :], (BLOCK_N, BM * BN2))

    @triton.jit(do_not_specialize=["N", "H", "rows_per_program"])
    def _summary_kernel(
        X, Y, T, MASK, PAIRS, S2, LOW,
        N, H, rows_per_program, sigma,
        D: tl.constexpr, E: tl.constexpr, BLOCK_N: tl.constexpr, BM: tl.constexpr, BN2: tl.constexpr,
        NPAIRS: tl.constexpr, SYMMETRIC: tl.constexpr, HAS_MASK: tl.constexpr, HAS_T: tl.constexpr,
        ATOMIC: tl.constexpr, STEPS: tl.constexpr, PREC: tl.constexpr,
    ):
        """Program (block pair, bh, row range): the S2 rows of one (m-block, n-block) pair; the program
        after the last pair computes the small parts S1, Z2, S0, Z1, Z0 instead."""
        block = tl.program_id(0)
        bh = tl.program_id(1).to(tl.int64)
        row_begin = tl.program_id(2) * rows_per_program
        row_end = tl.minimum(N, row_begin + rows_per_program)
        x_base = X + bh * N * D
        y_base = Y + bh * N * E
        e_idx = tl.arange(0, E)
        if block < NPAIRS:
            # the alignment hints let the factor loads be wide and asynchronous
            m0 = tl.multiple_of(tl.load(PAIRS + 2 * block), BM)
            n0 = tl.multiple_of(tl.load(PAIRS + 2 * block + 1), BN2)
            acc = tl.zeros((BM * BN2, E), tl.float32)
            # a loop of run-time length around one of fixed length: with only the former, ptxas makes each
            # tensor-core step wait for the one before (its accumulators are redefined across the back edge)
            for chunk in range(row_begin, row_end, STEPS * BLOCK_N):
                for step in range(STEPS):
                    rows = chunk + step * BLOCK_N + tl.arange(0, BLOCK_N)
                    in_range = rows < row_end
                    valid = in_range
                    if HAS_MASK:
                        valid = valid & (tl.load(MASK + (bh // H) * N + rows, mask=in_range, other=1) == 0)
                    y = tl.load(y_base + rows[:, None] * E + e_idx[None, :], mask=valid[:, None], other=0.0)
                    xm, xn = _load_factors(x_base + rows * D, in_range, m0, n0, BM, BN2)
                    # the transposed tile built from transposed factors: transposing the big tile in
                    # registers would cost shuffles on every step
                    kron_t = tl.reshape(tl.trans(xm)[:, None, :] * tl.trans(xn)[None, :, :], (BM * BN2, BLOCK_N))
                    acc = tl.dot(kron_t, y, acc, input_precision=PREC)
            acc = acc * sigma
            f = tl.arange(0, BM * BN2)
            s2 = S2 + bh * D * D * E
            ptrs = s2 + ((m0 + f // BN2) * D + n0 + f % BN2)[:, None] * E + e_idx[None, :]
            mirrored = s2 + ((n0 + f % BN2) * D + m0 + f // BN2)[:, None] * E + e_idx[None, :]
            if ATOMIC:
                tl.atomic_add(ptrs, acc, sem="relaxed")
                if SYMMETRIC and m0 != n0:
                    tl.atomic_add(mirrored, acc, sem="relaxed")
            else:
                tl.store(ptrs, acc.to(S2.dtype.element_ty))
                if SYMMETRIC and m0 != n0:
                    tl.store(mirrored, acc.to(S2.dtype.element_ty))
        else:
            d_idx = tl.arange(0, D)
            s1 = tl.zeros((D, E), tl.float32)
            z2 = tl.zeros((D, D), tl.float32)
            # column sums accumulate per row and reduce once after the loop
            s0 = tl.zeros((BLOCK_N, E), tl.float32)
            z1 = tl.zeros((BLOCK_N, D), tl.float32)
            z0 = tl.zeros((BLOCK_N,), tl.float32)
            for start in range(row_begin, row_end, BLOCK_N):
                rows = start + tl.arange(0, BLOCK_N)
                in_range = rows < row_end
                valid = in_range
                if HAS_MASK:
                    valid = valid & (tl.load(MASK + (bh // H) * N + rows, mask=in_range, other=1) == 0)
                x = tl.load(x_base + rows[:, None] * D + d_idx[None, :], mask=in_range[:, None], other=0.0)
                y = tl.load(y_base + rows[:, None] * E + e_idx[None, :], mask=valid[:, None], other=0.0)
                if HAS_T:
                    t = tl.load(T + bh * N + rows, mask=valid, other=0.0)
                else:
                    t = valid.to(tl.float32)
                x32 = x.to(tl.float32)
                xt = x32 * t[:, None]
                s1 = tl.dot(tl.trans(x32), y.to(tl.float32), s1, input_precision=PREC)
                z2 = tl.dot(tl.trans(xt), x32, z2, input_precision=PREC)
                s0 += y.to(tl.float32)
                z1 += xt
                z0 += t
            s0 = tl.sum(s0, axis=0)
            z1 = tl.sum(z1, axis=0)
            low = LOW + bh * (D * E + D * D + E + D + 1)
            s1_ptrs = low + d_idx[:, None] * E + e_idx[None, :]
            z2_ptrs = low + D * E + d_idx[:, None] * D + d_idx[None, :]
            s0_ptrs = low + D * E + D * D + e_idx
            z1_ptrs = low + D * E + D * D + E + d_idx
            z0_ptr = low + D * E + D * D + E + D
            z0_total = tl.sum(z0, axis=0) * sigma
            if ATOMIC:
                tl.atomic_add(s1_ptrs, s1 * sigma, sem="relaxed")
                tl.atomic_add(z2_ptrs, z2 * sigma, sem="relaxed")
                tl.atomic_add(s0_ptrs, s0 * sigma, sem="relaxed")
                tl.atomic_add(z1_ptrs, z1 * sigma, sem="relaxed")
                tl.atomic_add(z0_ptr, z0_total, sem="relaxed")
            else:
                tl.store(s1_ptrs, s1 * sigma)
                tl.store(z2_ptrs, z2 * sigma)
                tl.store(s0_ptrs, s0 * sigma)
                tl.store(z1_ptrs, z1 * sigma)
                tl.store(z0_ptr, z0_total)

    @triton.jit
    def _features_times_s2(x_rows, row_ok, s2, D: tl.constexpr, E: tl.constexpr, BLOCK_N: tl.constexpr,
                           BM: tl.constexpr, BN2: tl.constexpr, PREC: tl.constexpr):
        """sum_{m,n} x_m x_n S2[m, n, :] for each row, one (m-block, n-block) pair per tensor-core product."""
        acc = tl.zeros((BLOCK_N, E), tl.float32)
        f = tl.arange(0, BM * BN2)
        e_idx = tl.arange(0, E)
        for mb in range(0, D // BM):
            for nb in range(0, D // BN2):
                xm, xn = _load_factors(x_rows, row_ok, mb * BM, nb * BN2, BM, BN2)
                kron = _kron(xm, xn, BLOCK_N, BM, BN2)
                block = tl.load(s2 + ((mb * BM + f // BN2) * D + nb * BN2 + f % BN2)[:, None] * E + e_idx[None, :])
                acc = tl.dot(kron, block.to(kron.dtype), acc, input_precision=PREC)
        return acc

    @triton.jit
    def _kron_times_s2_transposed(x_rows, row_ok, y, s2, D: tl.constexpr, E: tl.constexpr,
                                  BLOCK_N: tl.constexpr, GB: tl.constexpr, PREC: tl.constexpr):
        """sum_{n,e} x_n y_e S2[m, n, e] for each row and m, GB values of n per tensor-core product."""
        acc = tl.zeros((BLOCK_N, D), tl.float32)
        n_idx = tl.arange(0, GB)
        feat = tl.arange(0, GB * E)
        d_idx = tl.arange(0, D)
        # two n-blocks per step of the outer loop: with a single loop, ptxas builds each step's tile just
        # in time in the registers the previous tensor-core step still reads, and waits for it
        for n_pair in range(0, D, 2 * GB):
            for half in range(2):
                n0 = n_pair + half * GB
                xn = tl.load(x_rows[:, None] + (n0 + n_idx)[None, :], mask=row_ok[:, None], other=0.0)
                kron = _kron(xn, y, BLOCK_N, GB, E)
                block = tl.load(s2 + d_idx[:, None] * (D * E) + (n0 * E + feat)[None, :])
                acc = tl.dot(kron, tl.trans(block).to(y.dtype), acc, input_precision=PREC)
        return acc

    @triton.jit(do_not_specialize=["N"])
    def _forward_kernel(
        Q, S2, LOW, OUT, DEN, N, a, b, c,
        D: tl.constexpr, E: tl.constexpr, BLOCK_N: tl.constexpr, BM: tl.constexpr, BN2: tl.constexpr,
        PREC: tl.constexpr,
    ):
        bh = tl.program_id(1).to(tl.int64)
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        d_idx = tl.arange(0, D)
        e_idx = tl.arange(0, E)
        q_rows = Q + bh * N * D + rows * D
        q32 = tl.load(q_rows[:, None] + d_idx[None, :], mask=row_ok[:, None], other=0.0).to(tl.float32)
        low = LOW + bh * (D * E + D * D + E + D + 1)
        quad = _features_times_s2(q_rows, row_ok, S2 + bh * D * D * E, D, E, BLOCK_N, BM, BN2, PREC)
        s1 = tl.load(low + d_idx[:, None] * E + e_idx[None, :])
        z2 = tl.load(low + D * E + d_idx[:, None] * D + d_idx[None, :])
        s0 = tl.load(low + D * E + D * D + e_idx)
        z1 = tl.load(low + D * E + D * D + E + d_idx)
        z0 = tl.load(low + D * E + D * D + E + D)
        num = a * quad + b * tl.dot(q32, s1, input_precision=PREC) + c * s0[None, :]
        q_z2 = tl.dot(q32, z2, input_precision=PREC)
        den = tl.sum((a * q_z2 + b * z1[None, :]) * q32, axis=1) + c * z0
        out = num / den[:, None]
        tl.store(OUT + bh * N * E + rows[:, None] * E + e_idx[None, :], out.to(OUT.dtype.element_ty),
                 mask=row_ok[:, None])
        tl.store(DEN + bh * N + rows, den, mask=row_ok)

    @triton.jit(do_not_specialize=["N"])
    def _backward_query_kernel(
        Q, DOUT, OUT, DEN, S2, LOW, G, GT, DQ, N, a, b,
        D: tl.constexpr, E: tl.constexpr, BLOCK_N: tl.constexpr, GB: tl.constexpr, PREC: tl.constexpr,
    ):
        """G = [dO / den, -(dO . out) / den] per query, and dq = d/dq phi(q)^T S G."""
        # The row set-up repeats _forward_kernel's on purpose: each kernel addresses its own tiles, and the
        # kernel's GPU tests (tests/attention/test_taylorshift_kernel.py) hold this exact code.
        bh = tl.program_id(1).to(tl.int64)
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        d_idx = tl.arange(0, D)
        e_idx = tl.arange(0, E)
        q_rows = Q + bh * N * D + rows * D
        q32 = tl.load(q_rows[:, None] + d_idx[None, :], mask=row_ok[:, None], other=0.0).to(tl.float32)
        e_offsets = bh * N * E + rows[:, None] * E + e_idx[None, :]
        dout = tl.load(DOUT + e_offsets, mask=row_ok[:, None], other=0.0).to(tl.float32)
        out = tl.load(OUT + e_offsets, mask=row_ok[:, None], other=0.0).to(tl.float32)
        den = tl.load(DEN + bh * N + rows, mask=row_ok, other=1.0)
        g = dout / den[:, None]
        t = -tl.sum(dout * out, axis=1) / den
        g_cast = g.to(G.dtype.element_ty)
        tl.store(G + e_offsets, g_cast, mask=row_ok[:, None])
        tl.store(GT + bh * N + rows, t, mask=row_ok)
        low = LOW + bh * (D * E + D * D + E + D + 1)
        quad = _kron_times_s2_transposed(q_rows, row_ok, g_cast, S2 + bh * D * D * E, D, E, BLOCK_N, GB, PREC)
        s1 = tl.load(low + d_idx[:, None] * E + e_idx[None, :])
        z2 = tl.load(low + D * E + d_idx[:, None] * D + d_idx[None, :])
        z1 = tl.load(low + D * E + D * D + E + d_idx)
        q_z2 = tl.dot(q32, z2, input_precision=PREC)
        g_s1 = tl.dot(g, tl.trans(s1), input_precision=PREC)
        dq = 2 * a * (quad + t[:, None] * q_z2) + b * (g_s1 + t[:, None] * z1[None, :])
        tl.store(DQ + bh * N * D + rows[:, None] * D + d_idx[None, :], dq.to(DQ.dtype.element_ty),
                 mask=row_ok[:, None])

    @triton.jit(do_not_specialize=["N", "H"])
    def _backward_key_kernel(
        K, V, MASK, DS2, DLOW, DK, DV, N, H, a, b, c,
        D: tl.constexpr, E: tl.constexpr, BLOCK_N: tl.constexpr, BM: tl.constexpr, BN2: tl.constexpr,
        GB: tl.constexpr, HAS_MASK: tl.constexpr,
        PREC: tl.constexpr,
    ):
        """dv = phi(k)^T dS_v and dk = d/dk phi(k)^T dS [v, 1]; zero on padded keys."""
        bh = tl.program_id(1).to(tl.int64)
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        valid = row_ok
        if HAS_MASK:
            valid = valid & (tl.load(MASK + (bh // H) * N + rows, mask=row_ok, other=1) == 0)
        d_idx = tl.arange(0, D)
        e_idx = tl.arange(0, E)
        k_rows = K + bh * N * D + rows * D
        k32 = tl.load(k_rows[:, None] + d_idx[None, :], mask=row_ok[:, None], other=0.0).to(tl.float32)
        v = tl.load(V + bh * N * E + rows[:, None] * E + e_idx[None, :], mask=row_ok[:, None], other=0.0)
        ds2 = DS2 + bh * D * D * E
        low = DLOW + bh * (D * E + D * D + E + D + 1)
        quad_v = _features_times_s2(k_rows, row_ok, ds2, D, E, BLOCK_N, BM, BN2, PREC)
        ds1 = tl.load(low + d_idx[:, None] * E + e_idx[None, :])
        ds0 = tl.load(low + D * E + D * D + e_idx)
        dv = a * quad_v + b * tl.dot(k32, ds1, input_precision=PREC) + c * ds0[None, :]
        quad_k = _kron_times_s2_transposed(k_rows, row_ok, v, ds2, D, E, BLOCK_N, GB, PREC)
        dz2 = tl.load(low + D * E + d_idx[:, None] * D + d_idx[None, :])
        dz1 = tl.load(low + D * E + D * D + E + d_idx)
        k_dz2 = tl.dot(k32, dz2, input_precision=PREC)
        v_ds1 = tl.dot(v.to(tl.float32), tl.trans(ds1), input_precision=PREC)
        dk = 2 * a * (quad_k + k_dz2) + b * (v_ds1 + dz1[None, :])
        dv = tl.where(valid[:, None], dv, 0.0)
        dk = tl.where(valid[:, None], dk, 0.0)
        tl.store(DV + bh * N * E + rows[:, None] * E + e_idx[None, :], dv.to(DV.dtype.element_ty),
                 mask=row_ok[:, None])
        tl.store(DK + bh * N * D + rows[:, None] * D + d_idx[None, :], dk.to(DK.dtype.element_ty),
                 mask=row_ok[:, None])


def _low_size(d: int, e: int) -> int:
    return d * e + d * d + e + d + 1


@functools.cache
def _block_pairs(d: int, block_m: int, block_n: int, symmetric: bool, device: torch.device) -> torch.Tensor:
    """(first m, first n) of every block of S2 that the summary computes, as int32 (pairs, 2); cached,
    since a copy from the host would wait for the GPU on every call."""
    pairs = [(m, n) for m in range(0, d, block_m) for n in range(0, d, block_n) if not symmetric or n >= m]
    return torch.tensor(pairs, dtype=torch.int32, device=device)


def _rows_per_summary_program(n: int, bh: int, programs: int, config: KernelConfig, device: torch.device) -> int:
    """All N rows per program unless too few programs would fill the GPU; a multiple of the row step."""
    step = config.summary_rows
    if config.split_rows is not None:
        return max(step, config.split_rows // step * step)
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
    splits = max(1, min(math.ceil(2 * sms / (bh * programs)), n // (8 * step)))
    return math.ceil(math.ceil(n / splits) / step) * step


def _summary(
    x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None, mask: torch.Tensor | None, heads: int,
    sigma: float, config: KernelConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(S2 of shape (BH, d*d, e), the small parts packed (BH, d*e + d*d + e + d + 1) in float32)."""
    bh, n, d = x.shape
    e = y.shape[2]
    pairs = _block_pairs(d, config.summary_block_m, config.summary_block_n, config.summary_symmetric, x.device)
    rows = _rows_per_summary_program(n, bh, len(pairs) + 1, config, x.device)
    splits = math.ceil(n / rows)
    atomic = splits > 1
    s2_dtype = _summary_dtype(x, config)
    alloc = torch.zeros if atomic else torch.empty
    s2 = alloc((bh, d * d, e), device=x.device, dtype=torch.float32 if atomic else s2_dtype)
    low = alloc((bh, _low_size(d, e)), device=x.device, dtype=torch.float32)
    constants = dict(
        D=d, E=e, BLOCK_N=config.summary_rows, BM=config.summary_block_m, BN2=config.summary_block_n,
        NPAIRS=len(pairs), SYMMETRIC=config.summary_symmetric, HAS_MASK=mask is not None, HAS_T=t is not None,
        ATOMIC=atomic, STEPS=config.summary_steps, PREC=float32_precision(x.dtype),
    )
    args = (x, y, t if t is not None else x, mask if mask is not None else x, pairs, s2, low, n, heads, rows, sigma)
    launch(_summary_kernel, (len(pairs) + 1, bh, splits), args, constants, config.summary_warps, config.stages)
    return s2.to(s2_dtype), low


def _summary_dtype(x: torch.Tensor, config: KernelConfig) -> torch.dtype:
    return x.dtype if config.half_summary else torch.float32


def _scale(n: int) -> float:
    """sigma = 2^-ceil(log2 N), which scales every summary (module docstring)."""
    return 2.0 ** -math.ceil(math.log2(n))


def _forward(q, k, v, mask, heads, a, b, c, config):
    """The forward launches: (out, the denominators, the summary S2 and its small parts), the last three for the
    backward."""
    bh, n, d = q.shape
    e = v.shape[2]
    s2, low = _summary(k, v, None, mask, heads, _scale(n), config)
    out = torch.empty_like(v)
    den = torch.empty((bh, n), device=q.device, dtype=torch.float32)
    constants = dict(D=d, E=e, BLOCK_N=config.rows, BM=config.block_m, BN2=config.block_n,
                     PREC=float32_precision(q.dtype))
    launch(_forward_kernel, (tiles(n, config.rows), bh), (q, s2, low, out, den, n, a, b, c), constants,
           config.warps, config.stages)
    return out, den, s2, low


def _backward(q, k, v, mask, out, den, s2, low, dout, heads, a, b, c, config):
    """The backward launches: (dq, dk, dv)."""
    bh, n, d = q.shape
    e = v.shape[2]
    dout = dout.contiguous()
    prec = float32_precision(q.dtype)
    grid = (tiles(n, config.rows), bh)
    g = torch.empty_like(v)
    g_t = torch.empty((bh, n), device=q.device, dtype=torch.float32)
    dq = torch.empty_like(q)
    constants = dict(D=d, E=e, BLOCK_N=config.rows, GB=config.query_grad_block, PREC=prec)
    launch(_backward_query_kernel, grid, (q, dout, out, den, s2, low, g, g_t, dq, n, a, b), constants,
           config.warps, config.stages)
    ds2, dlow = _summary(q, g, g_t, None, heads, _scale(n), config)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    constants = dict(D=d, E=e, BLOCK_N=config.rows, BM=config.block_m, BN2=config.block_n,
                     GB=config.key_grad_block, HAS_MASK=mask is not None, PREC=prec)
    args = (k, v, mask if mask is not None else k, ds2, dlow, dk, dv, n, heads, a, b, c)
    launch(_backward_key_kernel, grid, args, constants, config.warps, config.stages)
    return dq, dk, dv


class _FusedTaylorShift(torch.autograd.Function):
    """The eager path: an autograd.Function costs the host less per call than the custom op (``_efficient_op``)."""

    @staticmethod
    def forward(ctx, q, k, v, mask, heads, a, b, c, config):
        out, den, s2, low = _forward(q, k, v, mask, heads, a, b, c, config)
        ctx.save_for_backward(q, k, v, mask, out, den, s2, low)
        ctx.constants = (heads, a, b, c, config)
        return out

    @staticmethod
    def backward(ctx, dout):
        return *_backward(*ctx.saved_tensors, dout, *ctx.constants), None, None, None, None, None, None


# The compiled path, as in taylorshift_direct.py: custom ops that torch.compile keeps whole in its graph, so that
# CUDA graphs capture the kernels with the rest of the step.
@torch.library.custom_op("lra::taylorshift_efficient", mutates_args=())
def _efficient_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, heads: int,
                  a: float, b: float, c: float,
                  config: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _forward(q, k, v, mask, heads, a, b, c, config_from_fields(KernelConfig, config))


@_efficient_op.register_fake
def _(q, k, v, mask, heads, a, b, c, config):
    bh, n, d = q.shape
    s2_dtype = _summary_dtype(k, config_from_fields(KernelConfig, config))
    return (torch.empty_like(v), q.new_empty((bh, n), dtype=torch.float32),
            q.new_empty((bh, d * d, v.shape[2]), dtype=s2_dtype), q.new_empty((bh, _low_size(d, v.shape[2])),
                                                                              dtype=torch.float32))


@torch.library.custom_op("lra::taylorshift_efficient_backward", mutates_args=())
def _efficient_backward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                           out: torch.Tensor, den: torch.Tensor, s2: torch.Tensor, low: torch.Tensor,
                           dout: torch.Tensor, heads: int, a: float, b: float, c: float,
                           config: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _backward(q, k, v, mask, out, den, s2, low, dout, heads, a, b, c, config_from_fields(KernelConfig, config))


@_efficient_backward_op.register_fake
def _(q, k, v, mask, out, den, s2, low, dout, heads, a, b, c, config):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _efficient_op_context(ctx, inputs, output) -> None:
    q, k, v, mask, heads, a, b, c, config = inputs
    out, den, s2, low = output
    ctx.mark_non_differentiable(den, s2, low)
    ctx.save_for_backward(q, k, v, mask, out, den, s2, low)
    ctx.constants = (heads, a, b, c, config)


def _efficient_op_backward(ctx, dout, *_):
    return *_efficient_backward_op(*ctx.saved_tensors, dout, *ctx.constants), None, None, None, None, None, None


_efficient_op.register_autograd(_efficient_op_backward, setup_context=_efficient_op_context)


def _as_rows(x: torch.Tensor, width: int) -> torch.Tensor:
    """(B, H, N, w) -> contiguous (B*H, N, width), zero-padded on the last axis (exact: zeros add nothing)."""
    b, h, n, w = x.shape
    if width != w:
        x = torch.nn.functional.pad(x, (0, width - w))
    return x.reshape(b * h, n, width).contiguous()


def fused_taylorshift(
    q_hat: torch.Tensor,
    k_hat: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    a: float = 0.5,
    b: float = 1.0,
    c: float = 1.0,
    *,
    config: KernelConfig | None = None,
) -> torch.Tensor:
    """Non-causal efficient TaylorShift, ``out_i = sum_j w_ij v_j / sum_j w_ij``, ``w_ij = a s^2 + b s + c``.

    Args:
        q_hat, k_hat: (B, H, N, d) normalised queries (with any temperature folded in) and keys.
        v: (B, H, N, d_v) values, same dtype as q_hat and k_hat (float16, bfloat16 or float32).
        key_padding_mask: (B, N) bool, True on padding keys, which get no weight; None for none.
            A row whose keys are all padding has no defined output (0 / 0).
        a, b, c: the polynomial's coefficients (constants, no gradient). The weights are positive,
            as the normalisation needs, when a > 0 and c >= b^2 / (4a); the default is the Taylor
            expansion of exp, 1 + s + s^2 / 2.
        config: tile sizes; None picks them from the head dimension.

    Returns:
        (B, H, N, d_v) in v's dtype; differentiable in q_hat, k_hat and v by fused backward kernels.
    """
    if not TRITON_AVAILABLE:
        raise RuntimeError("fused_taylorshift needs Triton: pip install triton (it comes with torch on CUDA)")
    _check_inputs(q_hat, k_hat, v, key_padding_mask)
    batch, heads, n, d = q_hat.shape
    d_v = v.shape[3]
    width, width_v = tile_width(d), tile_width(d_v)
    config = config or default_config(width)
    config.check(width, width_v)
    if q_hat.device.type != "cuda" and not interpreter_ready():
        raise RuntimeError(
            "fused_taylorshift runs on CUDA tensors; on CPU tensors only in Triton's interpreter, which must be "
            "chosen before triton is first imported: set TRITON_INTERPRET=1 in the environment"
        )
    mask = None
    if key_padding_mask is not None:
        mask = key_padding_mask.to(device=q_hat.device, dtype=torch.uint8).contiguous()
    args = (_as_rows(q_hat, width), _as_rows(k_hat, width), _as_rows(v, width_v), mask, heads,
            float(a), float(b), float(c))
    if torch.compiler.is_compiling():
        out = _efficient_op(*args, config_fields(config))[0]
    else:
        out = _FusedTaylorShift.apply(*args, config)
    return out.reshape(batch, heads, n, width_v)[..., :d_v]


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> None:
    if q.dim() != 4 or q.shape != k.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            "fused_taylorshift expects q_hat and k_hat of one shape (B, H, N, d) and v of shape (B, H, N, d_v); "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in SUPPORTED_DTYPES:
        raise ValueError(
            f"fused_taylorshift needs q_hat, k_hat and v of one dtype among float16, bfloat16, float32; "
            f"got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    if not (q.device == k.device == v.device):
        raise ValueError(f"q_hat, k_hat and v must be on one device; got {q.device}, {k.device}, {v.device}")
    if q.shape[2] == 0:
        raise ValueError("fused_taylorshift needs at least one position (N >= 1)")
    if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != (q.shape[0], q.shape[2])):
        raise ValueError(
            f"key_padding_mask must be a bool tensor of shape (B, N) = {(q.shape[0], q.shape[2])}, "
            f"True on padding; got {mask.dtype} {tuple(mask.shape)}"
        )
