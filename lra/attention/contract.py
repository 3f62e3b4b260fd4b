"""The contract of ``AttentionBackend``, as checks that name the case that fails.

One function a part of the contract; ``tests/attention`` and ``python -m lra.attention check`` run the same
functions. Each takes a ``Factory`` (keyword arguments ``num_heads``, ``head_dim``, ``max_length``,
``dropout``, ``causal`` -> a backend in ``eval`` mode, float32, on the CPU) and raises ``ContractViolation``
with the failing case, or returns. ``check_all`` runs every part that the class's capability flags call for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from lra.attention.base import AttentionBackend
from lra.attention.registry import backend_class, check_options, create

Factory = Callable[..., AttentionBackend]


class ContractViolation(AssertionError):
    """A part of the contract that a backend does not hold; the message names the case."""


def factory(name: str, options: dict[str, Any] | None = None) -> Factory:
    """Builds ``name`` (registered, entry point or ``module:Class``) with ``options``, seeded, in eval mode."""

    def build(*, num_heads: int = 2, head_dim: int = 8, max_length: int = 64, dropout: float = 0.0,
              causal: bool = False) -> AttentionBackend:
        torch.manual_seed(0)
        return create(name, num_heads=num_heads, head_dim=head_dim, max_length=max_length, dropout=dropout,
                      causal=causal, **(options or {})).eval()

    return build


def random_qkv(batch: int, heads: int, length: int, head_dim: int, dtype: torch.dtype = torch.float32,
               generator: torch.Generator | None = None, requires_grad: bool = False) -> list[torch.Tensor]:
    """Fresh standard-normal q, k, v of shape (B, H, N, d)."""
    tensors = [torch.randn(batch, heads, length, head_dim, generator=generator, dtype=dtype) for _ in range(3)]
    return [t.requires_grad_(requires_grad) for t in tensors]


def suffix_padding(lengths: list[int], total: int) -> torch.Tensor:
    """(B, total) mask, True after each example's ``lengths[b]`` real tokens."""
    return torch.arange(total)[None, :] >= torch.tensor(lengths)[:, None]


def _close(actual: torch.Tensor, expected: torch.Tensor, case: str, tolerance: float,
           absolute: float | None = None) -> None:
    try:
        torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance if absolute is None else absolute)
    except AssertionError as error:
        detail = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        raise ContractViolation(f"{case}: {detail}") from None


def _finite(tensor: torch.Tensor | None, case: str) -> None:
    if tensor is None:
        raise ContractViolation(f"{case}: no gradient")
    if not torch.isfinite(tensor).all():
        raise ContractViolation(f"{case}: {int((~torch.isfinite(tensor)).sum())} NaN/Inf values")


def check_shapes(make: Factory) -> None:
    """(B, H, N, d) in, (B, H, N, d) out and finite, for several sizes (one token, odd lengths, one head)."""
    for batch, heads, length, head_dim in ((2, 3, 37, 8), (1, 1, 1, 4), (3, 2, 16, 16)):
        backend = make(num_heads=heads, head_dim=head_dim, max_length=max(length, 40))
        q, k, v = random_qkv(batch, heads, length, head_dim)
        mask = suffix_padding([length] + [max(1, length - 7)] * (batch - 1), length)
        case = f"batch {batch}, heads {heads}, length {length}, head_dim {head_dim}"
        with torch.no_grad():
            out = backend(q, k, v, key_padding_mask=mask)
        if tuple(out.shape) != tuple(q.shape):
            raise ContractViolation(f"{case}: output of shape {tuple(out.shape)}, expected {tuple(q.shape)}")
        _finite(out, f"{case}: output")


def check_dtype(make: Factory) -> None:
    """The output has the dtype of ``v``: float64 weights and inputs, and bf16 inputs under CPU autocast."""
    backend = make(max_length=24).to(torch.float64)
    q, k, v = random_qkv(2, 2, 24, 8, dtype=torch.float64)
    with torch.no_grad():
        out = backend(q, k, v, key_padding_mask=suffix_padding([24, 17], 24))
    if out.dtype != torch.float64:
        raise ContractViolation(f"float64 weights and inputs: output is {out.dtype}")
    backend = make(max_length=24)
    for values in (torch.float32, torch.bfloat16):
        q, k, v = random_qkv(2, 2, 24, 8, dtype=values)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = backend(q, k, v, key_padding_mask=suffix_padding([24, 17], 24))
        if out.dtype != values:
            raise ContractViolation(f"{values} inputs under bf16 autocast: output is {out.dtype}, not {values}")
        _finite(out, f"{values} inputs under bf16 autocast: output")


def check_gradients(make: Factory, causal: bool = False) -> None:
    """Training mode, padded batch: the loss on real outputs gives finite gradients to q, k, v and every
    parameter, and non-zero ones to q, k and v. Causal: padding at the start of an example as well."""
    backend = make(num_heads=3, head_dim=8, max_length=40, causal=causal).train()
    torch.manual_seed(0)
    q, k, v = random_qkv(2, 3, 37, 8, requires_grad=True)
    mask = suffix_padding([37, 30], 37)
    if causal:
        mask[1, :9] = True  # example 1: padding first, then real tokens
    form = "causal, padding before and after" if causal else "padded batch (37 and 30 real tokens)"
    out = backend(q, k, v, key_padding_mask=mask)
    _finite(out, f"{form}: output")
    (out[~mask[:, None, :, None].expand_as(out)] ** 2).sum().backward()
    for label, tensor in (("q", q), ("k", k), ("v", v), *backend.named_parameters()):
        _finite(tensor.grad, f"{form}: gradient of {label}")
    for label, tensor in (("q", q), ("k", k), ("v", v)):
        if tensor.grad.abs().sum() == 0:
            raise ContractViolation(f"{form}: the gradient of {label} is zero")


def check_padding_invariance(make: Factory, tolerance: float = 1e-6) -> None:
    """Each example of a padded batch gives what it gives alone, unpadded (float32); padded positions get
    large, varied values, which a leak would show."""
    lengths, total = [29, 18], 40
    backend = make(num_heads=2, head_dim=8, max_length=total)
    torch.manual_seed(1)
    q, k, v = random_qkv(2, 2, total, 8)
    mask = suffix_padding(lengths, total)
    with torch.no_grad():
        for t in (q, k, v):
            t.masked_fill_(mask[:, None, :, None], 0.0)
            t.add_(1e3 * torch.randn_like(t) * mask[:, None, :, None])
        padded = backend(q, k, v, key_padding_mask=mask)
        _finite(padded, f"batch of {total} with {lengths} real tokens: output (padded positions included)")
        for b, length in enumerate(lengths):
            alone = backend(q[b:b + 1, :, :length], k[b:b + 1, :, :length], v[b:b + 1, :, :length])
            _close(padded[b:b + 1, :, :length], alone,
                   f"example {b} ({length} of {total} tokens real) against itself unpadded", tolerance)


def is_permutation_equivariant(make: Factory) -> bool:
    """Whether permuting the tokens permutes the real outputs (float64, to 1e-9)."""
    backend = make(max_length=24).to(torch.float64)
    torch.manual_seed(2)
    q, k, v = random_qkv(2, 2, 24, 8, dtype=torch.float64)
    mask = suffix_padding([24, 19], 24)
    order = torch.randperm(24)
    with torch.no_grad():
        out = backend(q, k, v, key_padding_mask=mask)
        shuffled = backend(q[:, :, order], k[:, :, order], v[:, :, order], key_padding_mask=mask[:, order])
    real = ~mask[:, order][:, None, :, None].expand_as(out)
    return torch.allclose(shuffled[real], out[:, :, order][real], rtol=1e-9, atol=1e-9)


def check_permutation_equivariance(make: Factory, claimed: bool) -> None:
    """The class's ``permutation_equivariant`` flag says what the backend does."""
    found = is_permutation_equivariant(make)
    if found != claimed:
        raise ContractViolation(f"permutation_equivariant is {claimed}, but permuting the 24 tokens of a float64 "
                                f"batch {'does' if found else 'does not'} permute the real outputs")


def check_causal_refused(make: Factory) -> None:
    """A backend without a causal form refuses ``causal=True`` when built."""
    try:
        make(causal=True)
    except ValueError:
        return
    raise ContractViolation("supports_causal is False, but causal=True was accepted (it must raise ValueError)")


def causal_twins(make: Factory, length: int) -> tuple[AttentionBackend, AttentionBackend]:
    """The backend built causal and not, float64, with the same parameters and buffers."""
    causal = make(max_length=length, causal=True).to(torch.float64)
    plain = make(max_length=length).to(torch.float64)
    plain.load_state_dict(causal.state_dict())
    return causal, plain


def check_causal_prefix(make: Factory, tolerance: float = 1e-10) -> None:
    """Padded batch, causal: each real position equals the non-causal backend on that example's prefix."""
    lengths, total = [70, 23], 70  # past one block of the chunked causal sums (64 tokens)
    causal, plain = causal_twins(make, total)
    mask = suffix_padding(lengths, total)
    torch.manual_seed(3)
    q, k, v = random_qkv(2, 2, total, 8, dtype=torch.float64)
    with torch.no_grad():
        out = causal(q, k, v, key_padding_mask=mask)
        for b, length in enumerate(lengths):
            for i in (0, 1, 5, 15, 16, 22, 40, 63, 64, 69):
                if i < length:
                    prefix = plain(q[b:b + 1, :, :i + 1], k[b:b + 1, :, :i + 1], v[b:b + 1, :, :i + 1])
                    _close(out[b, :, i], prefix[0, :, i], f"example {b} ({length} real tokens), position {i}: "
                           "causal output against the non-causal output on the prefix", tolerance)


def check_later_tokens_have_no_influence(make: Factory) -> None:
    """Float32, causal: large later keys and values (which could overflow a shared stabiliser) leave the
    earlier outputs as they are."""
    backend = make(max_length=80, causal=True)
    torch.manual_seed(3)
    q, k, v = random_qkv(1, 2, 80, 8)
    with torch.no_grad():
        before = backend(q, k, v)
        for t in (q, k, v):
            t[:, :, 50:] = 1e3 * torch.randn_like(t[:, :, 50:])
        after = backend(q, k, v)
    _close(after[:, :, :50], before[:, :, :50], "positions 0-49 when tokens 50-79 change (float32)", 1.3e-6,
           absolute=1e-5)


def check_recurrent_steps(make: Factory, tolerance: float = 1e-6) -> None:
    """``init_state`` then one token at a time gives the causal forward's outputs (float64)."""
    length = 70
    backend, _ = causal_twins(make, length)
    torch.manual_seed(4)
    q, k, v = random_qkv(2, 2, length, 8, dtype=torch.float64)
    with torch.no_grad():
        parallel = backend(q, k, v)
        state = backend.init_state(2, dtype=torch.float64)
        outputs = []
        for t in range(length):
            out, state = backend.step(state, q[:, :, t], k[:, :, t], v[:, :, t])
            outputs.append(out)
    _close(torch.stack(outputs, dim=2), parallel, f"{length} recurrent steps against the causal forward", tolerance)


@dataclass(frozen=True)
class Outcome:
    part: str
    status: str  # passed | failed | skipped
    detail: str = ""


def check_all(name: str, options: dict[str, Any] | None = None) -> list[Outcome]:
    """Every part of the contract for the backend ``name`` with ``options``: the parts its flags call for,
    the others reported skipped with the reason."""
    cls = backend_class(name)
    check_options(name, options or {})
    make = factory(name, options)
    parts: list[tuple[str, Callable[[], None] | str]] = [
        ("construction", lambda: make()),
        ("shapes", lambda: check_shapes(make)),
        ("dtype", lambda: check_dtype(make)),
        ("gradients", lambda: check_gradients(make)),
        ("padding invariance", lambda: check_padding_invariance(make)),
    ]
    claimed = getattr(cls, "permutation_equivariant", None)
    parts.append(("permutation equivariance", "permutation_equivariant is not stated" if claimed is None
                  else lambda: check_permutation_equivariance(make, claimed)))
    if cls.supports_causal:
        parts += [("causal masking", lambda: check_causal_prefix(make)),
                  ("causal: later tokens change nothing", lambda: check_later_tokens_have_no_influence(make)),
                  ("causal gradients", lambda: check_gradients(make, causal=True))]
    else:
        parts.append(("causal refused", lambda: check_causal_refused(make)))
    parts.append(("recurrent steps", (lambda: check_recurrent_steps(make)) if _steps(cls, make)
                  else "supports_recurrent is False (or these options have no recurrent form)"))
    return [_outcome(part, check) for part, check in parts]


def _steps(cls: type[AttentionBackend], make: Factory) -> bool:
    """Whether the backend, with these options, has the recurrent form to check."""
    if not (cls.supports_causal and cls.supports_recurrent):
        return False
    try:
        return make(causal=True).recurrent_unavailable() is None
    except Exception:  # construction fails: the construction part reports it
        return False


def _outcome(part: str, check: Callable[[], None] | str) -> Outcome:
    if isinstance(check, str):
        return Outcome(part, "skipped", check)
    try:
        check()
    except ContractViolation as violation:
        return Outcome(part, "failed", str(violation))
    except Exception as error:  # the backend itself raised: that is the failing case
        return Outcome(part, "failed", f"raised {type(error).__name__}: {error}")
    return Outcome(part, "passed")
