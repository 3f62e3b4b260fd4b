"""The contract every attention backend fulfils."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn

State = dict[str, torch.Tensor]


class AttentionBackend(nn.Module):
    """Multi-head attention core: ``forward(q, k, v, key_padding_mask=None) -> out``.

    Shapes: ``q``, ``k``, ``v`` and the output are ``(batch, heads, length, head_dim)``;
    ``key_padding_mask`` is ``(batch, length)``, ``True`` where the key is padding. A padded key
    must have no influence on any real query. Outputs at padded query positions are unspecified
    (finite, but nothing downstream may read them).
    The output has the dtype of ``v``: under autocast some backends compute in float32, and the base
    class casts their result back, so the next layer sees what it would see from softmax.

    The projections around the core (q/k/v/out linear layers) belong to the encoder block, so every
    backend is compared on the same parameters. Each subclass documents its formula, its paper and
    its time and memory complexity in its docstring.

    Causal attention is a constructor argument (``causal=True``), not a forward argument: whether a model
    is autoregressive is fixed when it is built, and a backend without a causal form refuses then, before
    any work. Causal means that the output at position i is what the non-causal backend gives at i on the
    sequence cut after i: keys j > i have no influence, and whatever a backend derives from all the keys
    (a normalisation by the key count, a stabilising shift) comes from the keys j <= i. Padding applies as
    well (padded keys are never attended).

    Recurrent form (backends with ``supports_recurrent``): ``state = init_state(batch)``, then
    ``out_t, state = step(state, q_t, k_t, v_t)`` once per token, with ``q_t``, ``k_t``, ``v_t`` and
    ``out_t`` of shape ``(batch, heads, head_dim)``; ``out_t`` equals the causal forward's output at
    position t (to rounding), in time and memory independent of t. ``step`` returns a new state and leaves
    the one given unchanged; it has no padding (every token stepped is real), and it needs ``causal=True``
    (a model trained non-causally has no recurrent form).

    Capability flags (class attributes, so that tests and tables can enumerate them from the registry):

    * ``supports_causal``: has a causal form; ``causal=True`` on a backend without one raises ValueError.
    * ``supports_recurrent``: has the recurrent step above (implies ``supports_causal``).
    * ``padding_protocol``: how padding enters the function, as run records state it (``protocol.
      attention_padding``).
    * ``permutation_equivariant``: permuting the tokens permutes the outputs (the output at a token depends on
      the others only as a set); None: not stated (the contract check then skips it).
    * ``complexity``: time of the default form in N (tokens), d (head_dim) and the backend's own sizes, e.g.
      ``"O(N^2 d)"``; ``complexity_of(options)`` gives it for other options. A form whose complexity has no
      ``N^2`` term never builds an N x N tensor (``tests/attention/test_memory.py`` checks each).
    * ``needs_max_length``: sizes parameters by ``max_length``, so building it without one raises ValueError.
    * ``forms_attention_matrix``: has attention weights that dropout can act on; False: ``dropout > 0``
      warns that it does not apply.
    * ``gpu_paths``: the options of paths that run on CUDA only, by name (``{"triton": {"impl": "triton"}}``):
      the CPU tests cannot reach them, ``tests/attention/test_gpu.py`` runs each.
    * ``compiles_per_shape``: compiles a kernel for each input shape on CUDA (the benchmark runs it last).
    * ``bench_forms``: the forms ``python -m lra.bench`` compares by default, by label suffix (``""``: the
      backend's name alone) -> options.

    A backend is one module in this package (``@register("NAME")`` on the class; the package imports every
    module it holds) and one ``conf/attention/NAME.yaml`` with its own options, or a class of your own
    anywhere (``attention=custom attention.target=module:Class``). The constructor takes its own keyword
    options and passes the shared ones on: ``def __init__(self, *, window: int = 5, **common): super().__init__(
    **common)``; after that they are attributes (``self.num_heads``, ``self.max_length``, ...).

    ``lra.attention.contract`` checks all of this (``python -m lra.attention check module:Class``).

    Args shared by every backend (given by ``lra.attention.create``):
        num_heads: heads H.
        head_dim: per-head width d.
        max_length: the longest sequence the model will see (needed by backends with fixed-size
            projections, e.g. Linformer; others ignore it).
        dropout: dropout on the attention weights, for backends that form them; the others say in
            their docstring that they have no attention matrix to drop from.
        causal: position i attends to positions j <= i only (see above).
    """

    # Whether ``forward_packed(q, k, v, packing)`` attends within packed sequences (``lra.attention.packing``):
    # q, k, v of shape (tokens, heads, head_dim), every sequence's real tokens end to end. The encoder then
    # runs every layer on real tokens alone instead of padded batches.
    packs_sequences: bool = False

    supports_causal: ClassVar[bool] = False
    supports_recurrent: ClassVar[bool] = False
    padding_protocol: ClassVar[str] = "padded keys masked: each example's real outputs are its unpadded sequence's"
    permutation_equivariant: ClassVar[bool | None] = None
    complexity: ClassVar[str] = "not stated"
    needs_max_length: ClassVar[bool] = False
    forms_attention_matrix: ClassVar[bool] = True
    gpu_paths: ClassVar[dict[str, dict[str, object]]] = {}
    compiles_per_shape: ClassVar[bool] = False
    bench_forms: ClassVar[dict[str, dict[str, object]]] = {"": {}}

    def __init__(self, *, num_heads: int, head_dim: int, max_length: int | None = None, dropout: float = 0.0,
                 causal: bool = False):
        super().__init__()
        if num_heads < 1 or head_dim < 1:
            raise ValueError(f"num_heads and head_dim must be positive, got {num_heads} and {head_dim}")
        if causal and not self.supports_causal:
            raise ValueError(f"attention backend {_name_of(self)!r} has no causal form (its docstring says why); "
                             f"backends that can be causal: {', '.join(_causal_backends())}")
        if self.needs_max_length and (max_length is None or max_length < 1):
            raise ValueError(f"{_name_of(self)} needs max_length (the longest sequence, CLS included) to size its "
                             f"parameters; got {max_length}")
        if dropout > 0 and not self.forms_attention_matrix:
            warnings.warn(f"{_name_of(self)}: attention dropout {dropout} does not apply (no attention matrix)",
                          stacklevel=3)
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.max_length = max_length
        self.dropout = dropout
        self.causal = causal
        self.register_forward_hook(_in_the_dtype_of_values, with_kwargs=True)

    @classmethod
    def complexity_of(cls, options: Mapping[str, object]) -> str:
        """The time complexity of the form these options choose (default: ``complexity``)."""
        return cls.complexity

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, head_dim={self.head_dim}" + (", causal" if self.causal else "")

    def form_description(self, length: int, device: torch.device) -> str | None:
        """Which of its forms this backend runs at ``length`` tokens on ``device``, as run records state it
        (``efficiency.speed.attention_form``); None where it has one form."""
        return None

    def recurrent_unavailable(self) -> str | None:
        """Why this backend, as configured, cannot ``step`` (``None`` when it can)."""
        if not self.supports_recurrent:
            return f"attention backend {_name_of(self)!r} has no recurrent form (supports_recurrent is False)"
        if not self.causal:
            return (f"attention backend {_name_of(self)!r} was built with causal=False; the recurrent step is the "
                    "causal form's, so build it with causal=True (model.causal=true)")
        return None

    def init_state(self, batch: int, *, dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> State:
        """The state before the first token: every sum empty. The state keeps at least float32."""
        reason = self.recurrent_unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        if batch < 1:
            raise ValueError(f"init_state needs a positive batch size, got {batch}")
        return self._initial_state(batch, torch.promote_types(dtype, torch.float32), device)

    def step(self, state: State, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, State]:
        """One token: ``q``, ``k``, ``v`` of shape ``(batch, heads, head_dim)`` -> ``(out, new state)``."""
        reason = self.recurrent_unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        expected = (self.num_heads, self.head_dim)
        for label, x in (("q", q), ("k", k), ("v", v)):
            if x.dim() != 3 or tuple(x.shape[1:]) != expected:
                raise ValueError(f"step takes one token, {label} of shape (batch, {expected[0]}, {expected[1]}); "
                                 f"got {tuple(x.shape)}")
        dtype = next(iter(state.values())).dtype  # the state's precision, at least float32
        out, state = self._step(state, q.to(dtype), k.to(dtype), v.to(dtype))
        return out.to(v.dtype), state

    def _initial_state(self, batch: int, dtype: torch.dtype, device: torch.device | str | None) -> State:
        raise NotImplementedError

    def _step(self, state: State, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, State]:
        raise NotImplementedError


def _name_of(backend: AttentionBackend) -> str:
    """The registered name (``attention=NAME``), or the class name of an unregistered backend."""
    return getattr(type(backend), "backend_name", type(backend).__name__)


def _causal_backends() -> list[str]:
    from lra.attention.registry import available, backend_class  # the registry imports this module

    return [name for name in available() if backend_class(name).supports_causal]


def causal_mask(length: int, device: torch.device) -> torch.Tensor:
    """(N, N) boolean, True where key j comes after query i (what causal attention may not see)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


def _in_the_dtype_of_values(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor:
    values = args[2] if len(args) > 2 else kwargs["v"]
    return output.to(values.dtype)
