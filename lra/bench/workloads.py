"""The measured units, from small to large: the attention core, one encoder layer, a model training step.

``core``: q, k, v of shape (B, H, N, d) in the benchmark dtype -> backend -> output; ``fwd_bwd`` adds
the backward pass from a fixed random output gradient (gradients of q, k, v and of the backend's own
parameters). ``layer``: one ``lra.model.encoder.Block`` of width H*d on (B, N, H*d) inputs; ``fwd_bwd``
adds the backward pass into its parameters. ``model``: an ``LRAClassifier`` of width H*d on random
token ids: forward (``fwd``, no gradients) or a full training step (``fwd_bwd``: forward, cross-entropy,
backward, AdamW step). Parameters stay float32; bf16/fp16 run under autocast, as training does. With
``bench.model.compile`` the model runs through ``torch.compile`` in that mode, as ``train.py`` compiles it
(``reduce-overhead``: CUDA graphs, its choice on CUDA where every batch has one shape); the optimizer step stays eager.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lra import attention
from lra.bench.measure import Workload
from lra.bench.series import Series
from lra.data.base import TaskSpec
from lra.model import LRAClassifier, ModelConfig
from lra.model.config import COMPILE_MODES
from lra.model.encoder import Block
from lra.results.bench import Point

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
LEVELS = ("core", "layer", "model")
MODES = ("fwd", "fwd_bwd")


@dataclass(frozen=True)
class ModelShape:
    """Everything but the attention width of the layer/model levels (LRA Text's released settings)."""

    layers: int = 4
    mlp_dim: int = 1024
    dropout: float = 0.1
    vocab_size: int = 256
    num_classes: int = 2
    compile: bool | str = False  # model level: torch.compile mode (true: its default mode); false: eager

    def __post_init__(self) -> None:
        if not isinstance(self.compile, bool) and self.compile not in COMPILE_MODES:
            raise ValueError(f"bench.model.compile={self.compile!r}; valid: true, false, {', '.join(COMPILE_MODES)}")


def compiled(model: torch.nn.Module, mode: bool | str) -> torch.nn.Module:
    """``model`` through torch.compile in ``mode`` (true: the default mode), or itself when ``mode`` is false.
    Dynamo's caches are reset first: every point builds a new model, and the recompilations of one forward would
    otherwise reach Dynamo's limit and leave the later points eager."""
    if mode is False:
        return model
    torch._dynamo.reset()
    return torch.compile(model, mode=None if mode is True else mode)


def build(point: Point, series: Series, device: torch.device, shape: ModelShape) -> Workload:
    """The workload of one point; raises whatever the backend raises (the caller records it)."""
    if point.level == "core":
        return _core(point, series, device)
    if point.level == "layer":
        return _layer(point, series, device, shape)
    if point.level == "model":
        return _model(point, series, device, shape)
    raise ValueError(f"bench.level must be one of {', '.join(LEVELS)} (or loop), not {point.level!r}")


def precision(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """Autocast for half precisions; nothing for fp32."""
    if DTYPES[dtype] == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def _core(point: Point, series: Series, device: torch.device) -> Workload:
    core = attention.create(series.backend, num_heads=point.heads, head_dim=point.head_dim,
                            max_length=point.length, **series.options).to(device)
    training = point.mode == "fwd_bwd"
    core.train(training)
    shape = (point.batch, point.heads, point.length, point.head_dim)
    q, k, v = (torch.randn(shape, device=device, dtype=DTYPES[point.dtype], requires_grad=training)
               for _ in range(3))
    if not training:
        def forward() -> None:
            with torch.no_grad(), precision(device, point.dtype):
                core(q, k, v)
        return Workload(forward)
    output_grad: list[torch.Tensor] = []

    def forward_backward() -> None:
        with precision(device, point.dtype):
            out = core(q, k, v)
        if not output_grad:  # made once, in the output's dtype, before any peak is taken
            output_grad.append(torch.randn_like(out))
        out.backward(output_grad[0])
        # gradients are dropped after the step, so the next step allocates them again (and they count)
        q.grad = k.grad = v.grad = None
        core.zero_grad(set_to_none=True)
    return Workload(forward_backward)


def _layer(point: Point, series: Series, device: torch.device, shape: ModelShape) -> Workload:
    width = point.heads * point.head_dim
    block = Block(width, point.heads, width, shape.mlp_dim, shape.dropout, 0.0, series.backend,
                  dict(series.options), point.length).to(device)
    training = point.mode == "fwd_bwd"
    block.train(training)
    x = torch.randn(point.batch, point.length, width, device=device)
    if not training:
        def forward() -> None:
            with torch.no_grad(), precision(device, point.dtype):
                block(x, None)
        return Workload(forward)
    output_grad = torch.randn_like(x)

    def forward_backward() -> None:
        with precision(device, point.dtype):
            out = block(x, None)
        out.backward(output_grad.to(out.dtype))
        block.zero_grad(set_to_none=True)
    return Workload(forward_backward)


def _model(point: Point, series: Series, device: torch.device, shape: ModelShape) -> Workload:
    width = point.heads * point.head_dim
    spec = TaskSpec(name="bench", num_classes=shape.num_classes, max_length=point.length,
                    vocab_size=shape.vocab_size)
    config = ModelConfig(d_model=width, num_layers=shape.layers, num_heads=point.heads, mlp_dim=shape.mlp_dim,
                         dropout=shape.dropout)
    model = LRAClassifier(spec, config, series.backend, dict(series.options)).to(device)
    forward = compiled(model, shape.compile)
    tokens = torch.randint(1, shape.vocab_size, (point.batch, point.length), device=device)
    labels = torch.randint(0, shape.num_classes, (point.batch,), device=device)
    if point.mode == "fwd":
        model.eval()

        def inference() -> None:
            with torch.no_grad(), precision(device, point.dtype):
                forward(tokens)
        return Workload(inference, counts_setup=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")

    def train_step() -> None:
        with precision(device, point.dtype):
            logits = forward(tokens)
        F.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return Workload(train_step, counts_setup=True)
