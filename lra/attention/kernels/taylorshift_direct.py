"""Fused direct TaylorShift: FlashAttention's tiles with the polynomial in place of exp, for short sequences.

For one (batch, head), with ``q^_i = tau q_i / |q_i|`` and ``k^_j = k_j / |k_j|`` (normalised here, on the tiles,
so that the caller pays no pass of its own), ``s_ij = q^_i . k^_j`` and ``w_ij = a s^2 + b s + c``:

    out_i = r sum_j w_ij m_ij v_j / l_i,    l_i = sum_j w_ij,    r = sqrt(N_real / d) (or 1)

over the real keys ``j``; ``m_ij`` is the dropout mask scaled by ``1 / (1 - p)`` (or 1), applied to the normalised
weights as the PyTorch direct form does. ``|s| <= tau``, so the weights are bounded: unlike softmax they need no
running maximum and no rescaling, one pass accumulates ``l`` and the weighted values. Time O(N^2 d) like
FlashAttention, memory O(N d); each weight costs two fused multiply-adds where softmax pays an exponential, and
at small d the exponential unit, not the tensor cores, is what limits FlashAttention on Hopper.

Backward, recomputing ``w`` from q and k, with ``L_i = l_i / r`` and ``D_i = (dO_i . out_i) / r``:

    dv_j = sum_i w_ij m_ij dO_i / L_i
    ds_ij = (m_ij dO_i . v_j - D_i) (b + 2 a s_ij) / L_i
    g_i = sum_j ds_ij k^_j = dLoss/dq^_i,    h_j = sum_i ds_ij q^_i = dLoss/dk^_j

and through the normalisation, with ``u_i = q_i / |q_i|``: ``dq_i = tau (g_i - u_i (u_i . g_i)) / |q_i|``,
``dtau = sum_i u_i . g_i``, ``dk_j = (h_j - k^_j (k^_j . h_j)) / |k_j|``. Two kernels: one per query tile (dq,
``D`` and the tile's share of dtau), then one per key tile (dk, dv); or (``atomic_query_grad``) the key kernel
also adds each tile's part of every ``g_i`` into a float32 buffer, which a last pass turns into dq. Inputs are read
through their strides (the model's q, k, v are views of one projection) and the output is written in (B, N, H, d_v)
order, the layout the model's output projection reads, so no copy is made on either side.
"""

from __future__ import annotations

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
class DirectConfig:
    """Tiles (queries x keys) and warps of the three kernels; ``direct_config`` picks them per head dimension."""

    forward_queries: int = 128
    forward_keys: int = 64
    forward_warps: int = 4
    query_grad_queries: int = 128  # dq kernel: queries per program, keys per step
    query_grad_keys: int = 32
    key_grad_keys: int = 64  # dk, dv kernel: keys per program, queries per step
    key_grad_queries: int = 32
    backward_warps: int = 4
    stages: int = 3
    # dq accumulated by the key kernel with atomic adds: 5 matrix products per tile pair instead of 7, in an order
    # that varies from run to run (off under torch.use_deterministic_algorithms)
    atomic_query_grad: bool = False

    def check(self) -> None:
        for name, size in vars(self).items():
            if name.endswith(("queries", "keys")) and (size < 16 or size & (size - 1)):
                raise ValueError(f"DirectConfig.{name}={size} must be a power of two of at least 16")


def direct_config(d: int) -> DirectConfig:
    """The default tiling at head dimension ``d``: the fastest of a sweep on an H200 at d = 32 and 64, N = 1024
    and 4096 (lra/attention/kernels/NOTES.md); beyond d = 64, not measured, twice the warps for the larger tiles."""
    if d > 64:
        return DirectConfig(forward_warps=8, backward_warps=8)
    return DirectConfig()


if TRITON_AVAILABLE:

    @triton.jit
    def _rows(X, batch, head, s_b, s_h, s_n, rows, row_ok, cols, WIDTH: tl.constexpr):
        """A tile of rows (float32), columns ``cols`` of ``WIDTH`` real ones (the rest read as zeros)."""
        ptrs = X + batch * s_b + head * s_h + rows[:, None].to(tl.int64) * s_n + cols[None, :]
        return tl.load(ptrs, mask=row_ok[:, None] & (cols < WIDTH)[None, :], other=0.0).to(tl.float32)

    @triton.jit
    def _norms(x):
        """The norms of the rows of ``x``, at least 1e-12 (as F.normalize)."""
        return tl.maximum(tl.sqrt(tl.sum(x * x, axis=1)), 1e-12)

    @triton.jit
    def _unit(x):
        """The rows of ``x`` over their norms."""
        return x / _norms(x)[:, None]

    @triton.jit
    def _keys_ok(MASK, batch, cols, N, HAS_MASK: tl.constexpr):
        ok = cols < N
        if HAS_MASK:
            ok = ok & (tl.load(MASK + batch * N + cols, mask=ok, other=1) == 0)
        return ok

    @triton.jit
    def _kept(SEED, bh, queries, keys, N, p):
        """The dropout mask of weights (query, key), the same in every kernel: Philox on (seed + bh, i N + j)."""
        seed = tl.load(SEED) + bh
        return tl.rand(seed, queries * N + keys) >= p

    @triton.jit
    def _key_tile(KN, V, MASK, bh, batch, head, start, s_vb, s_vh, s_vn, N, BD: tl.constexpr, E: tl.constexpr,
                  BE: tl.constexpr, BLOCK_N: tl.constexpr, HAS_MASK: tl.constexpr):
        """The tile of keys from ``start``: their indices, which are real keys, k^ and v (in k^'s dtype)."""
        cols = start + tl.arange(0, BLOCK_N)
        col_ok = cols < N
        k = _unit_rows(KN, bh, cols, col_ok, N, BD)
        v = _rows(V, batch, head, s_vb, s_vh, s_vn, cols, col_ok, tl.arange(0, BE), E).to(KN.dtype.element_ty)
        return cols, _keys_ok(MASK, batch, cols, N, HAS_MASK), k, v

    @triton.jit(do_not_specialize=["N", "H"])
    def _normalize_kernel(
        Q, K, TAU, QN, KN, s_qb, s_qh, s_qn, s_kb, s_kh, s_kn, N, H,
        D: tl.constexpr, BD: tl.constexpr, BLOCK: tl.constexpr,
    ):
        """q^ = tau q / |q| and k^ = k / |k| as (B H, N, BD) tiles, zero beyond d: the other kernels then stream
        them into shared memory as they are, where normalising each tile there would hold it in registers."""
        bh = tl.program_id(1)
        batch = (bh // H).to(tl.int64)
        head = bh % H
        rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        row_ok = rows < N
        d_idx = tl.arange(0, BD)
        q = _unit(_rows(Q, batch, head, s_qb, s_qh, s_qn, rows, row_ok, d_idx, D)) * tl.load(TAU + head).to(tl.float32)
        k = _unit(_rows(K, batch, head, s_kb, s_kh, s_kn, rows, row_ok, d_idx, D))
        offsets = (bh.to(tl.int64) * N + rows[:, None]) * BD + d_idx[None, :]
        tl.store(QN + offsets, q.to(QN.dtype.element_ty), mask=row_ok[:, None])
        tl.store(KN + offsets, k.to(KN.dtype.element_ty), mask=row_ok[:, None])

    @triton.jit
    def _unit_rows(XN, bh, rows, row_ok, N, BD: tl.constexpr):
        """A tile of the normalised rows written by _normalize_kernel."""
        offsets = (bh.to(tl.int64) * N + rows[:, None]) * BD + tl.arange(0, BD)[None, :]
        return tl.load(XN + offsets, mask=row_ok[:, None], other=0.0)

    @triton.jit(do_not_specialize=["N", "H"])
    def _forward_kernel(
        QN, KN, V, MASK, SEED, OUT, INV_L, RSCALE, s_vb, s_vh, s_vn, s_ob, s_oh, s_on,
        N, H, a, b, c, p, keep_scale, out_factor,
        D: tl.constexpr, BD: tl.constexpr, E: tl.constexpr, BE: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        HAS_MASK: tl.constexpr, DROPOUT: tl.constexpr, NORMALIZED: tl.constexpr, PREC: tl.constexpr,
    ):
        bh = tl.program_id(1)
        batch = (bh // H).to(tl.int64)  # batch offsets can pass 2^31 elements
        head = bh % H
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < N
        e_idx = tl.arange(0, BE)
        dtype = QN.dtype.element_ty
        q = _unit_rows(QN, bh, rows, row_ok, N, BD)
        acc = tl.zeros((BLOCK_M, BE), tl.float32)
        total = tl.zeros((BLOCK_M,), tl.float32)
        real = tl.zeros((BLOCK_N,), tl.float32)
        for start in range(0, N, BLOCK_N):
            cols, key_ok, k, v = _key_tile(KN, V, MASK, bh, batch, head, start, s_vb, s_vh, s_vn, N, BD, E, BE,
                                           BLOCK_N, HAS_MASK)
            s = tl.dot(q, tl.trans(k), input_precision=PREC)
            w = tl.where(key_ok[None, :], c + s * (b + a * s), 0.0)
            total += tl.sum(w, axis=1)
            if DROPOUT:
                w = tl.where(_kept(SEED, bh, rows[:, None], cols[None, :], N, p), w * keep_scale, 0.0)
            acc = tl.dot(w.to(dtype), v, acc, input_precision=PREC)
            real += key_ok.to(tl.float32)
        r = tl.full((BLOCK_M,), 1.0, tl.float32)
        if NORMALIZED:
            r = r * tl.sqrt(tl.sum(real, axis=0) * out_factor)
        out = acc * (r / total)[:, None]
        ptrs = OUT + batch * s_ob + head * s_oh + rows[:, None].to(tl.int64) * s_on + e_idx[None, :]
        tl.store(ptrs, out.to(OUT.dtype.element_ty), mask=row_ok[:, None] & (e_idx < E)[None, :])
        tl.store(INV_L + bh * N + rows, r / total, mask=row_ok)
        tl.store(RSCALE + bh * N + rows, r, mask=row_ok)

    @triton.jit(do_not_specialize=["N", "H"])
    def _query_grad_kernel(
        Q, QN, KN, V, TAU, MASK, SEED, OUT, DOUT, INV_L, RSCALE, DQ, DELTA, DTAU, G,
        s_qb, s_qh, s_qn, s_vb, s_vh, s_vn, s_ob, s_oh, s_on, s_gb, s_gh, s_gn, s_dqb, s_dqh, s_dqn,
        N, H, a, b, c, p, keep_scale,
        D: tl.constexpr, BD: tl.constexpr, E: tl.constexpr, BE: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        HAS_MASK: tl.constexpr, DROPOUT: tl.constexpr, PREC: tl.constexpr, PHASE: tl.constexpr,
    ):
        """dq, ``D`` for the key kernel, and this tile's share of dtau. PHASE 0: all of it, looping over the keys;
        with the key kernel accumulating ``g`` (atomic), PHASE 1 writes ``D`` only and PHASE 2 turns ``G`` into dq."""
        bh = tl.program_id(1)
        batch = (bh // H).to(tl.int64)  # batch offsets can pass 2^31 elements
        head = bh % H
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < N
        d_idx = tl.arange(0, BD)
        e_idx = tl.arange(0, BE)
        dtype = QN.dtype.element_ty
        if PHASE != 2:
            dout = _rows(DOUT, batch, head, s_gb, s_gh, s_gn, rows, row_ok, e_idx, E)
            out = _rows(OUT, batch, head, s_ob, s_oh, s_on, rows, row_ok, e_idx, E)
            delta = tl.sum(dout * out, axis=1) / tl.load(RSCALE + bh * N + rows, mask=row_ok, other=1.0)
            tl.store(DELTA + bh * N + rows, delta, mask=row_ok)
        if PHASE == 0:
            q = _unit_rows(QN, bh, rows, row_ok, N, BD)
            inv_l = tl.load(INV_L + bh * N + rows, mask=row_ok, other=1.0)
            dout = dout.to(dtype)
            g = tl.zeros((BLOCK_M, BD), tl.float32)
            for start in range(0, N, BLOCK_N):
                cols, key_ok, k, v = _key_tile(KN, V, MASK, bh, batch, head, start, s_vb, s_vh, s_vn, N, BD, E, BE,
                                               BLOCK_N, HAS_MASK)
                s = tl.dot(q, tl.trans(k), input_precision=PREC)
                dp = tl.dot(dout, tl.trans(v), input_precision=PREC)
                if DROPOUT:
                    dp = tl.where(_kept(SEED, bh, rows[:, None], cols[None, :], N, p), dp * keep_scale, 0.0)
                ds = (dp - delta[:, None]) * inv_l[:, None] * (b + 2 * a * s)
                ds = tl.where(key_ok[None, :], ds, 0.0)
                g = tl.dot(ds.to(dtype), k, g, input_precision=PREC)
            _store_query_gradient(Q, TAU, DQ, DTAU, g, bh, batch, head, rows, row_ok, s_qb, s_qh, s_qn, s_dqb,
                                  s_dqh, s_dqn, D, BD)
        if PHASE == 2:
            g = tl.load(G + (bh.to(tl.int64) * N + rows[:, None]) * BD + d_idx[None, :], mask=row_ok[:, None],
                        other=0.0)
            _store_query_gradient(Q, TAU, DQ, DTAU, g, bh, batch, head, rows, row_ok, s_qb, s_qh, s_qn, s_dqb,
                                  s_dqh, s_dqn, D, BD)

    @triton.jit
    def _store_query_gradient(Q, TAU, DQ, DTAU, g, bh, batch, head, rows, row_ok, s_qb, s_qh, s_qn, s_dqb, s_dqh,
                              s_dqn, D: tl.constexpr, BD: tl.constexpr):
        """dq from g through the normalisation and the temperature, and the tile's share of dtau."""
        d_idx = tl.arange(0, BD)
        # the rows are read again rather than held through the loop, where their registers are short
        raw = _rows(Q, batch, head, s_qb, s_qh, s_qn, rows, row_ok, d_idx, D)
        norm = _norms(raw)
        u = raw / norm[:, None]
        tau = tl.load(TAU + head).to(tl.float32)
        along = tl.sum(u * g, axis=1)
        radial = tl.where(norm > 1e-12, along, 0.0)  # below 1e-12 F.normalize divides by 1e-12: no radial part
        dq = tau * (g - u * radial[:, None]) / norm[:, None]
        ptrs = DQ + batch * s_dqb + head * s_dqh + rows[:, None].to(tl.int64) * s_dqn + d_idx[None, :]
        tl.store(ptrs, dq.to(DQ.dtype.element_ty), mask=row_ok[:, None] & (d_idx < D)[None, :])
        tl.store(DTAU + bh * tl.num_programs(0) + tl.program_id(0), tl.sum(tl.where(row_ok, along, 0.0), axis=0))

    @triton.jit(do_not_specialize=["N", "H"])
    def _key_grad_kernel(
        K, QN, KN, V, MASK, SEED, DOUT, INV_L, DELTA, DK, DV, G,
        s_kb, s_kh, s_kn, s_vb, s_vh, s_vn, s_gb, s_gh, s_gn, s_dkb, s_dkh, s_dkn, s_dvb, s_dvh, s_dvn,
        N, H, a, b, c, p, keep_scale,
        D: tl.constexpr, BD: tl.constexpr, E: tl.constexpr, BE: tl.constexpr,
        BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
        HAS_MASK: tl.constexpr, DROPOUT: tl.constexpr, PREC: tl.constexpr, ATOMIC_DQ: tl.constexpr,
    ):
        """dk and dv of one tile of keys, zero on padded keys; with ATOMIC_DQ also this tile's part of every
        query's g, added to G."""
        bh = tl.program_id(1)
        batch = (bh // H).to(tl.int64)  # batch offsets can pass 2^31 elements
        head = bh % H
        cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        col_ok = cols < N
        key_ok = _keys_ok(MASK, batch, cols, N, HAS_MASK)
        d_idx = tl.arange(0, BD)
        e_idx = tl.arange(0, BE)
        dtype = QN.dtype.element_ty
        k = _unit_rows(KN, bh, cols, col_ok, N, BD)
        v = _rows(V, batch, head, s_vb, s_vh, s_vn, cols, col_ok, e_idx, E).to(dtype)
        dv = tl.zeros((BLOCK_N, BE), tl.float32)
        h = tl.zeros((BLOCK_N, BD), tl.float32)
        for start in range(0, N, BLOCK_M):
            rows = start + tl.arange(0, BLOCK_M)
            row_ok = rows < N
            q = _unit_rows(QN, bh, rows, row_ok, N, BD)
            dout = _rows(DOUT, batch, head, s_gb, s_gh, s_gn, rows, row_ok, e_idx, E).to(dtype)
            inv_l = tl.load(INV_L + bh * N + rows, mask=row_ok, other=1.0)
            delta = tl.load(DELTA + bh * N + rows, mask=row_ok, other=0.0)
            s = tl.dot(k, tl.trans(q), input_precision=PREC)  # (keys, queries)
            w = c + s * (b + a * s)
            dp = tl.dot(v, tl.trans(dout), input_precision=PREC)
            if DROPOUT:
                kept = _kept(SEED, bh, rows[None, :], cols[:, None], N, p)
                w = tl.where(kept, w * keep_scale, 0.0)
                dp = tl.where(kept, dp * keep_scale, 0.0)
            dv = tl.dot((w * inv_l[None, :]).to(dtype), dout, dv, input_precision=PREC)
            ds = (dp - delta[None, :]) * inv_l[None, :] * (b + 2 * a * s)
            if ATOMIC_DQ:
                ds = tl.where(key_ok[:, None], ds, 0.0)
                part = tl.dot(tl.trans(ds.to(dtype)), k, input_precision=PREC)
                tl.atomic_add(G + (bh.to(tl.int64) * N + rows[:, None]) * BD + d_idx[None, :], part,
                              mask=row_ok[:, None], sem="relaxed")
            h = tl.dot(ds.to(dtype), q, h, input_precision=PREC)
        raw = _rows(K, batch, head, s_kb, s_kh, s_kn, cols, col_ok, d_idx, D)  # read again, as in _query_grad_kernel
        norm = _norms(raw)
        u = raw / norm[:, None]
        radial = tl.where(norm > 1e-12, tl.sum(u * h, axis=1), 0.0)
        dk = tl.where(key_ok[:, None], (h - u * radial[:, None]) / norm[:, None], 0.0)
        dv = tl.where(key_ok[:, None], dv, 0.0)
        ptrs = DK + batch * s_dkb + head * s_dkh + cols[:, None].to(tl.int64) * s_dkn + d_idx[None, :]
        tl.store(ptrs, dk.to(DK.dtype.element_ty), mask=col_ok[:, None] & (d_idx < D)[None, :])
        ptrs = DV + batch * s_dvb + head * s_dvh + cols[:, None].to(tl.int64) * s_dvn + e_idx[None, :]
        tl.store(ptrs, dv.to(DV.dtype.element_ty), mask=col_ok[:, None] & (e_idx < E)[None, :])


def _strides(x: torch.Tensor) -> tuple[int, int, int]:
    """Batch, head and row strides of a (B, H, N, w) tensor whose last axis is contiguous."""
    return x.stride(0), x.stride(1), x.stride(2)


def _sizes(q: torch.Tensor, v: torch.Tensor) -> dict:
    d, e = q.shape[-1], v.shape[-1]
    return dict(D=d, BD=tile_width(d), E=e, BE=tile_width(e), PREC=float32_precision(q.dtype))


NORMALIZE_ROWS = 64  # rows per program of _normalize_kernel


def _normalized(q: torch.Tensor, k: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q^, k^) as (B H, N, tile width) in q's dtype, zero beyond d; recomputed in the backward pass rather
    than kept, so that the kernels hold no more memory than FlashAttention."""
    batch, heads, n, d = q.shape
    width = tile_width(d)
    qn = torch.empty(batch * heads, n, width, dtype=q.dtype, device=q.device)
    kn = torch.empty_like(qn)
    launch(_normalize_kernel, (tiles(n, NORMALIZE_ROWS), batch * heads),
           (q, k, tau, qn, kn, *_strides(q), *_strides(k), n, heads), dict(D=d, BD=width, BLOCK=NORMALIZE_ROWS),
           4, 1)
    return qn, kn


def _forward(q, k, v, tau, mask, seed, a, b, c, p, normalized, config):
    """The forward launches: (out, the row sums' reciprocals, the output factors), the last two for the backward."""
    batch, heads, n, _ = q.shape
    qn, kn = _normalized(q, k, tau)
    out, inv_l, rscale = _forward_outputs(q, v)
    constants = dict(**_sizes(q, v), BLOCK_M=config.forward_queries, BLOCK_N=config.forward_keys,
                     HAS_MASK=mask is not None, DROPOUT=p > 0, NORMALIZED=normalized)
    args = (qn, kn, v, _or(mask, q), _or(seed, q), out, inv_l, rscale, *_strides(v), *_strides(out),
            n, heads, a, b, c, p, 1 / (1 - p), 1.0 / q.shape[-1])
    grid = (tiles(n, config.forward_queries), batch * heads)
    launch(_forward_kernel, grid, args, constants, config.forward_warps, config.stages)
    return out, inv_l, rscale


def _forward_outputs(q: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The forward's outputs, unfilled: out as a (B, H, N, d_v) view of (B, N, H, d_v) memory, two (B H, N)."""
    batch, heads, n, _ = q.shape
    out = torch.empty(batch, n, heads, v.shape[-1], dtype=v.dtype, device=v.device).transpose(1, 2)
    inv_l = torch.empty(batch * heads, n, dtype=torch.float32, device=q.device)
    return out, inv_l, torch.empty_like(inv_l)


def _backward(q, k, v, tau, mask, seed, out, inv_l, rscale, dout, a, b, c, p, config):
    """The backward launches: (dq, dk, dv, dtau)."""
    batch, heads, n, _ = q.shape
    if dout.stride(-1) != 1:
        dout = dout.contiguous()
    qn, kn = _normalized(q, k, tau)
    common = dict(**_sizes(q, v), HAS_MASK=mask is not None, DROPOUT=p > 0)
    dq, dk, dv, _ = _backward_outputs(q, k, v, tau)
    delta = torch.empty_like(inv_l)
    query_tiles = tiles(n, config.query_grad_queries)
    dtau = torch.empty(batch * heads, query_tiles, dtype=torch.float32, device=q.device)
    masked, seeded = _or(mask, q), _or(seed, q)
    atomic = config.atomic_query_grad and not torch.are_deterministic_algorithms_enabled()
    g = torch.zeros(batch * heads, n, qn.shape[-1], dtype=torch.float32, device=q.device) if atomic else qn
    query_args = (q, qn, kn, v, tau, masked, seeded, out, dout, inv_l, rscale, dq, delta, dtau, g,
                  *_strides(q), *_strides(v), *_strides(out), *_strides(dout), *_strides(dq),
                  n, heads, a, b, c, p, 1 / (1 - p))
    query_constants = dict(common, BLOCK_M=config.query_grad_queries, BLOCK_N=config.query_grad_keys)
    launch(_query_grad_kernel, (query_tiles, batch * heads), query_args, dict(query_constants, PHASE=int(atomic)),
           config.backward_warps, config.stages)
    args = (k, qn, kn, v, masked, seeded, dout, inv_l, delta, dk, dv, g,
            *_strides(k), *_strides(v), *_strides(dout), *_strides(dk), *_strides(dv),
            n, heads, a, b, c, p, 1 / (1 - p))
    launch(_key_grad_kernel, (tiles(n, config.key_grad_keys), batch * heads), args,
           dict(common, BLOCK_N=config.key_grad_keys, BLOCK_M=config.key_grad_queries, ATOMIC_DQ=atomic),
           config.backward_warps, config.stages)
    if atomic:
        launch(_query_grad_kernel, (query_tiles, batch * heads), query_args, dict(query_constants, PHASE=2),
               config.backward_warps, config.stages)
    return dq, dk, dv, dtau.view(batch, heads, query_tiles).sum((0, 2)).to(tau.dtype)


def _backward_outputs(q, k, v, tau) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The backward's outputs, unfilled: gradients shaped (and strided) as q, k, v and tau."""
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(tau)


class _FusedDirect(torch.autograd.Function):
    """The eager path: an autograd.Function costs the host less per call than the custom op (``_direct_op``)."""

    @staticmethod
    def forward(ctx, q, k, v, tau, mask, seed, a, b, c, p, normalized, config):
        out, inv_l, rscale = _forward(q, k, v, tau, mask, seed, a, b, c, p, normalized, config)
        ctx.save_for_backward(q, k, v, tau, mask, seed, out, inv_l, rscale)
        ctx.constants = (a, b, c, p, config)
        return out

    @staticmethod
    def backward(ctx, dout):
        gradients = _backward(*ctx.saved_tensors, dout, *ctx.constants)
        return *gradients, None, None, None, None, None, None, None, None


# The compiled path: custom ops, which torch.compile keeps whole in its graph (it cannot trace an autograd.Function
# that launches Triton kernels through ``launch``, and would break the graph there), so that CUDA graphs
# (model.compile=reduce-overhead) capture the kernels with the rest of the step. The tiling travels as ints.
@torch.library.custom_op("lra::taylorshift_direct", mutates_args=())
def _direct_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tau: torch.Tensor, mask: torch.Tensor | None,
               seed: torch.Tensor | None, a: float, b: float, c: float, p: float, normalized: bool,
               config: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _forward(q, k, v, tau, mask, seed, a, b, c, p, normalized, config_from_fields(DirectConfig, config))


@_direct_op.register_fake
def _(q, k, v, tau, mask, seed, a, b, c, p, normalized, config):
    return _forward_outputs(q, v)


@torch.library.custom_op("lra::taylorshift_direct_backward", mutates_args=())
def _direct_backward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tau: torch.Tensor,
                        mask: torch.Tensor | None, seed: torch.Tensor | None, out: torch.Tensor, inv_l: torch.Tensor,
                        rscale: torch.Tensor, dout: torch.Tensor, a: float, b: float, c: float, p: float,
                        config: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _backward(q, k, v, tau, mask, seed, out, inv_l, rscale, dout, a, b, c, p,
                     config_from_fields(DirectConfig, config))


@_direct_backward_op.register_fake
def _(q, k, v, tau, mask, seed, out, inv_l, rscale, dout, a, b, c, p, config):
    return _backward_outputs(q, k, v, tau)


def _direct_op_context(ctx, inputs, output) -> None:
    q, k, v, tau, mask, seed, a, b, c, p, _, config = inputs
    out, inv_l, rscale = output
    ctx.mark_non_differentiable(inv_l, rscale)
    ctx.save_for_backward(q, k, v, tau, mask, seed, out, inv_l, rscale)
    ctx.constants = (a, b, c, p, config)


def _direct_op_backward(ctx, dout, *_):
    gradients = _direct_backward_op(*ctx.saved_tensors, dout, *ctx.constants)
    return *gradients, None, None, None, None, None, None, None, None


_direct_op.register_autograd(_direct_op_backward, setup_context=_direct_op_context)


def _or(tensor: torch.Tensor | None, placeholder: torch.Tensor) -> torch.Tensor:
    """An absent optional tensor is passed as any pointer: the kernel's constexpr flag keeps it unread."""
    return placeholder if tensor is None else tensor


def fused_direct_taylorshift(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    temperature: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    a: float = 0.5,
    b: float = 1.0,
    c: float = 1.0,
    *,
    dropout: float = 0.0,
    output_normalized: bool = True,
    config: DirectConfig | None = None,
) -> torch.Tensor:
    """TaylorShift attention from the raw q, k, v in one fused pass (the module docstring gives the function).

    Args:
        q, k: (B, H, N, d) queries and keys *before* normalisation; v: (B, H, N, d_v). One dtype among float16,
            bfloat16, float32; any strides with a contiguous last axis (views of a packed projection are read
            in place).
        temperature: (H,) per-head temperature tau (any shape with H elements), differentiable.
        key_padding_mask: (B, N) bool, True on padding keys, which get no weight and no gradient.
        a, b, c: the polynomial's coefficients (constants).
        dropout: probability of dropping each normalised weight (training); Philox masks drawn from torch's
            CUDA generator, so runs are reproducible under ``torch.manual_seed``.
        output_normalized: multiply by ``sqrt(N_real / d)``, N_real the example's real keys.
        config: tiles; None picks ``direct_config(d)``.

    Returns:
        (B, H, N, d_v) in v's dtype, a transposed view of (B, N, H, d_v) memory.
    """
    if not TRITON_AVAILABLE:
        raise RuntimeError("fused_direct_taylorshift needs Triton: pip install triton (it comes with torch on CUDA)")
    _check(q, k, v, temperature, key_padding_mask)
    if q.device.type != "cuda" and not interpreter_ready():
        raise RuntimeError(
            "fused_direct_taylorshift runs on CUDA tensors; on CPU tensors only in Triton's interpreter, which must "
            "be chosen before triton is first imported: set TRITON_INTERPRET=1 in the environment"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"fused_direct_taylorshift dropout must be in [0, 1), got {dropout}")
    if config is None:
        config = direct_config(q.shape[-1])  # the defaults are known to be valid: no check on every call
    else:
        config.check()
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    mask = None
    if key_padding_mask is not None:
        mask = key_padding_mask.to(q.device).contiguous().view(torch.uint8)  # a bool is a byte: no copy
    seed = None
    if dropout > 0:
        seed = torch.randint(0, 2**30, (1,), device=q.device, dtype=torch.int64)
    args = (q, k, v, temperature.reshape(-1), mask, seed, float(a), float(b), float(c), float(dropout),
            output_normalized)
    if torch.compiler.is_compiling():
        return _direct_op(*args, config_fields(config))[0]
    return _FusedDirect.apply(*args, config)


def _check(q, k, v, temperature, mask) -> None:
    if q.dim() != 4 or q.shape != k.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            "fused_direct_taylorshift expects q and k of one shape (B, H, N, d) and v of shape (B, H, N, d_v); "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"fused_direct_taylorshift needs q, k, v of one dtype among float16, bfloat16, float32; "
                         f"got {q.dtype}, {k.dtype}, {v.dtype}")
    if temperature.numel() != q.shape[1]:
        raise ValueError(f"temperature needs one value per head ({q.shape[1]}), got {temperature.numel()}")
    if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != (q.shape[0], q.shape[2])):
        raise ValueError(f"key_padding_mask must be a bool tensor of shape (B, N) = {(q.shape[0], q.shape[2])}, "
                         f"True on padding; got {mask.dtype} {tuple(mask.shape)}")
