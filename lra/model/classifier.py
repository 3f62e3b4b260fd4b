"""The LRA model: embedding -> encoder (any attention) -> pooling -> head."""

from __future__ import annotations

import torch
from torch import nn

from lra.attention.packing import PackedSequences
from lra.data.base import TaskSpec
from lra.model.config import ModelConfig
from lra.model.embedding import InputEmbedding, PositionalEncoding
from lra.model.encoder import Block
from lra.model.heads import ClassifierHead, DualHead, pool


class Encoder(nn.Module):
    """Embeds a batch of sequences and runs the pre-norm blocks; returns (states, padding mask)."""

    def __init__(self, spec: TaskSpec, cfg: ModelConfig, attention: str, attention_options: dict):
        super().__init__()
        vocab = spec.vocab_size if cfg.embedding in ("auto", "token") else None
        if cfg.embedding == "token" and vocab is None:
            raise ValueError(f"model.embedding=token needs token inputs, but task {spec.name} gives floats")
        self.use_cls = cfg.pooling == "cls"
        length = spec.max_length + int(self.use_cls)
        self.embed = InputEmbedding(vocab, cfg.d_model, cfg.embedding_init_std)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_model)) if self.use_cls else None
        self.position = PositionalEncoding(cfg.pos_encoding, length, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            Block(cfg.d_model, cfg.num_heads, cfg.qkv_dim or cfg.d_model, cfg.mlp_dim, cfg.dropout,
                  cfg.attention_dropout, attention, attention_options, length, cfg.causal)
            for _ in range(cfg.num_layers)
        )
        self.norm = nn.LayerNorm(cfg.d_model)
        self.unpad = cfg.unpad
        if cfg.unpad is True and not self.blocks[0].attn.core.packs_sequences:
            raise ValueError(f"model.unpad=true: attention {attention!r} cannot attend within packed sequences; "
                             "use model.unpad=auto or false")

    def packs_on(self, device: torch.device) -> bool:
        """Whether padded batches run packed on ``device``: the backend can and ``unpad`` allows it (auto: CUDA)."""
        if not self.blocks[0].attn.core.packs_sequences:
            return False
        return self.unpad is True or (self.unpad == "auto" and device.type == "cuda")

    def _with_cls(self, padding_mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([padding_mask.new_zeros(padding_mask.shape[0], 1), padding_mask], dim=1) \
            if self.use_cls else padding_mask

    def packing_for(self, padding_mask: torch.Tensor) -> PackedSequences:
        """Where the real positions of a ``(batch, length)`` padded batch sit once packed, CLS included. From a
        mask on the host (before the batch's copy to the device) it costs the device no read-back."""
        return PackedSequences.from_padding_mask(self._with_cls(padding_mask))

    def forward(self, inputs: torch.Tensor, padding_mask: torch.Tensor | None,
                packing: PackedSequences | None = None):
        """With ``packing`` (``packing_for(padding_mask)``, made by the caller, on the host where it can) every
        layer runs on the real tokens alone; without it a padded batch runs padded, its attention masked."""
        x = self.embed(inputs)
        if self.use_cls:  # LRA prepends a learned CLS vector, then adds position codes to all positions
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        if padding_mask is not None:
            padding_mask = self._with_cls(padding_mask)
        x = self.position(x)
        if packing is not None:  # every layer on the real tokens alone; padded positions come back as zeros
            x = packing.pack(x)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, padding_mask, packing)
        x = self.norm(x)
        return (packing.unpack(x) if packing is not None else x), padding_mask


class LRAClassifier(nn.Module):
    """Classifies one sequence, or a pair of sequences with a shared encoder (dual tasks)."""

    def __init__(self, spec: TaskSpec, cfg: ModelConfig, attention: str, attention_options: dict | None = None):
        super().__init__()
        self.spec = spec
        self.config = cfg
        self.pooling = cfg.pooling
        self.encoder = Encoder(spec, cfg, attention, dict(attention_options or {}))
        if spec.dual:
            self.head = DualHead(cfg.d_model, cfg.mlp_dim, spec.num_classes, cfg.dual_interaction)
        else:
            self.head = ClassifierHead(cfg.d_model, cfg.mlp_dim, spec.num_classes)

    def encode(self, inputs: torch.Tensor, padding_mask: torch.Tensor | None,
               packing: PackedSequences | None = None) -> torch.Tensor:
        states, mask = self.encoder(inputs, padding_mask, packing)
        return pool(states, mask, self.pooling)

    def packs_on(self, device: torch.device) -> bool:
        """Whether padded batches may run packed on ``device``: the backend can and ``model.unpad`` allows it."""
        return self.spec.pads and self.encoder.packs_on(device)

    def trains_packed(self, device: torch.device, compile_mode: str | None) -> bool:
        """Whether training batches run packed on ``device`` when training is compiled in ``compile_mode``
        (None: eager): where the model may pack and the mode allows it (``ModelConfig.packs_in_training``)."""
        return self.packs_on(device) and self.config.packs_in_training(compile_mode)

    def packing_for(self, padding_mask: torch.Tensor) -> PackedSequences:
        """The packing of a batch with this padding mask, for ``forward``. Made on the host from the batch's
        mask, before its copy to the GPU, it costs the GPU nothing (made there, it reads the token count back)."""
        return self.encoder.packing_for(padding_mask.flatten(0, 1) if self.spec.dual else padding_mask)

    def forward(self, inputs: torch.Tensor, padding_mask: torch.Tensor | None = None,
                packing: PackedSequences | None = None) -> torch.Tensor:
        if not self.spec.dual:
            return self.head(self.encode(inputs, padding_mask, packing))
        batch = inputs.shape[0]  # (B, 2, N): both documents through one encoder pass
        flat_mask = None if padding_mask is None else padding_mask.flatten(0, 1)
        pooled = self.encode(inputs.flatten(0, 1), flat_mask, packing).view(batch, 2, -1)
        return self.head(pooled[:, 0], pooled[:, 1])
