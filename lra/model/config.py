"""The model's settings: the schema of ``conf/model/*.yaml``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lra.data.base import TaskSpec, TrainingShape

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
GRAPH_MODES = ("reduce-overhead", "max-autotune")  # the modes that replay CUDA graphs
PADDED_GRAPHS_FILL = 0.8  # compile=auto: padded batches this full train in CUDA graphs (compile_mode)


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
    # "reduce-overhead" (with CUDA graphs) on CUDA where every training batch has one shape (tasks that never pad,
    # and padded batches of one width at least 80% real, which then train padded: compile_mode), else eager; a
    # mode name, or true ("default") / false; a failed compilation falls back to eager (and packing), with one line.
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

    def compile_mode(self, spec: TaskSpec, device: torch.device, shape: TrainingShape | None = None) -> str | None:
        """The torch.compile mode ``compile`` asks for when training ``spec`` on ``device``; None: eager.

        auto: CUDA graphs ("reduce-overhead") on CUDA where every training batch has one shape: tasks that never
        pad, and padded tasks whose batches have one width and are at least ``PADDED_GRAPHS_FILL`` real tokens
        (unless ``unpad=true``), which then train padded, masked, in graphs rather than packed and eager (the
        model is small enough for the host's launches to bound an eager step). Measured on an H200,
        results/bench/nvidia-h200/loop_compile_padded.md: Text at 1000 bytes (fill 0.84) 130.2 steps/s padded
        in graphs against 60.4 packed eager; Image 80.56 against 75.93 without graphs (loop_fixed_length.md).
        Where half the positions or more pad (ListOps 0.51, Text at 4000 bytes 0.32), packing wins."""
        if self.compile == "auto":
            if device.type != "cuda":
                return None
            if not spec.pads:
                return "reduce-overhead" if spec.fixed_length else None
            full = shape is not None and shape.fixed_width and shape.fill >= PADDED_GRAPHS_FILL
            return "reduce-overhead" if full and self.unpad is not True else None
        if self.compile is True:
            return "default"
        return self.compile or None

    def packs_in_training(self, mode: str | None) -> bool:
        """Whether training may pack its batches under compile ``mode``: not in CUDA graphs (a packed batch's
        token count changes every step), unless ``unpad=true`` asks for packing regardless."""
        return mode not in GRAPH_MODES or self.unpad is True

    @property
    def head_dim(self) -> int:
        return (self.qkv_dim or self.d_model) // self.num_heads
