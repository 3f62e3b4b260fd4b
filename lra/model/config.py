"""The model's settings: the schema of ``conf/model/*.yaml``."""

from __future__ import annotations

from dataclasses import dataclass


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
    compile: bool = False  # torch.compile the model

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
        if width % self.num_heads:
            raise ValueError(f"model.qkv_dim ({width}) must be divisible by model.num_heads ({self.num_heads})")

    @property
    def head_dim(self) -> int:
        return (self.qkv_dim or self.d_model) // self.num_heads
