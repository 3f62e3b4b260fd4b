"""The model's settings: the schema of ``conf/model/*.yaml``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lra.data.base import TaskSpec

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class ModelConfig:
    """A pre-norm Transformer encoder classifier, sized as in LRA's configs.

    ``qkv_dim`` is the total width of queries/keys/values (LRA's ``qkv_dim``), split over ``num_heads``;
    ``mlp_dim`` is both the feed-forward width and the classifier head's hidden width, as in LRA.
    """

    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 2
    qkv_dim: int | None = None  # None: d_model
    mlp_dim: int = 128
    dropout: float = 0.1
    attention_dropout: float = 0.0
    pooling: str = "cls"  # cls | mean
    pos_encoding: str = "sinusoidal"  # sinusoidal | learned | none
    embedding: str = "auto"  # auto (token ids -> lookup table, floats -> linear) | token | linear
    embedding_init_std: float = 1.0  # LRA's nn.Embed init: normal(1.0)
    dual_interaction: str = "nli"  # nli: [u, v, u*v, u-v] (LRA's NLI head) | concat: [u, v]
    # Speed options: neither changes what is learned (outputs agree up to rounding; dropout draws its masks on
    # another layout). unpad: run every layer on real tokens alone, packed, where the attention backend can
    # (softmax) and a batch pads; auto = on CUDA. compile: torch.compile the model for training; auto = mode
    # "reduce-overhead" (with CUDA graphs) on CUDA where every training batch has one shape (tasks that never pad),
    # else eager; a mode name, or true ("default") / false; a failed compilation falls back to eager, with one line.
    unpad: bool | str = "auto"
    compile: bool | str = "auto"
    causal: bool = False  # position i attends to positions <= i only (backends with supports_causal)

    def __post_init__(self) -> None:
        width = self.qkv_dim or self.d_model
        checks = {
            "pooling": (self.pooling, ("cls", "mean")),
            "pos_encoding": (self.pos_encoding, ("sinusoidal", "learned", "none")),
            "embedding": (self.embedding, ("auto", "token", "linear")),
            "dual_interaction": (self.dual_interaction, ("nli", "concat")),
        }
        for key, (value, valid) in checks.items():
            if value not in valid:
                raise ValueError(f"model.{key}={value!r}; valid: {', '.join(valid)}")
        for key in ("unpad", "compile"):
            value = getattr(self, key)
            valid = ("auto",) if key == "unpad" else ("auto", *COMPILE_MODES)
            if not isinstance(value, bool) and value not in valid:
                raise ValueError(f"model.{key}={value!r}; valid: true, false, {', '.join(valid)}")
        if self.causal and self.pooling == "cls":
            raise ValueError("model.causal=true needs model.pooling=mean: the CLS token is prepended at position 0, "
                             "so under causal attention it would see only itself")
        if width % self.num_heads:
            raise ValueError(f"model.qkv_dim ({width}) must be divisible by model.num_heads ({self.num_heads})")

    def compile_mode(self, spec: TaskSpec, device: torch.device) -> str | None:
        """The torch.compile mode ``compile`` asks for when training ``spec`` on ``device``; None: eager."""
        if self.compile == "auto":
            fixed_shape = not spec.pads and spec.fixed_length
            # CUDA graphs too: these models are small enough for the host's launches to bound the step (Image, H200,
            # results/bench/nvidia-h200/loop_fixed_length.md: 80.56 steps/s against 75.93 without graphs)
            return "reduce-overhead" if device.type == "cuda" and fixed_shape else None
        if self.compile is True:
            return "default"
        return self.compile or None

    @property
    def head_dim(self) -> int:
        return (self.qkv_dim or self.d_model) // self.num_heads
