"""Why TaylorShift and Performer stay on the ListOps plateau: the attention of the LRA ListOps model at init.

``python -m lra.campaign.plateau [variants=softmax,taylorshift,...] [batches=3] [batch_size=4] [seed=0] [out=DIR]
[train.py overrides ...]`` builds the model of ``experiment=lra/listops`` (LRA's released ListOps Transformer; other
keys, e.g. ``model.num_layers=2``, are overrides of it) once per variant, with one seed, runs
a few batches of generated ListOps (LRA's generator rules, lengths 500-2000) through it in eval mode (no
dropout) and prints, per variant and layer:

* ``entropy``: the attention's entropy over the real keys, divided by log N (1 = uniform), mean over heads
  and a sample of queries; ``top x N``: the largest weight of a query times N (1 = uniform);
* ``branch/res``: the norm of the attention branch (after the output projection) over the norm of the
  residual stream it is added to, mean over real positions;
* ``noise/signal`` (performer only): the distance of the Performer's output from exact softmax attention on
  the same q, k, v, over the distance of that softmax output from the plain mean of the values (what
  uniform attention returns): above 1, the part of the output that depends on where the query looks is
  mostly estimator noise;

and per variant: ``collapse``, the mean cosine between real positions of the last layer's states (near 1:
every position holds the same sequence summary); ``grad qk/v``, the gradient norm of the query and key
projections over that of the value projection, summed over layers (how much the loss cares about where the
attention looks against what it reads); for TaylorShift the temperature's gradient ``|dL/dtau|`` (mean over
heads and layers) and ``tau sign agree``, the fraction of (layer, head) pairs whose gradient has one sign on
every batch (what Adam needs to move it steadily).

Variants: a backend name and ``+``-joined attention options (``taylorshift+output_normalized=false``; ``tau=X``
is TaylorShift's ``temperature=X``, its initial value).
Writes ``listops_plateau.csv`` under ``out`` (default ``results/probes/``). CPU is enough: the eight default variants
took 95 min on 2 busy cores (the direct TaylorShift forms at N = 2000 dominate).
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from lra.train.run import build_module, prepare_data

CONF = Path(__file__).resolve().parents[2] / "conf"
DEFAULT_VARIANTS = ("softmax", "linear", "taylorshift", "taylorshift+output_normalized=false", "taylorshift+tau=8",
                    "taylorshift+output_normalized=false+tau=8", "performer", "performer+kernel=relu")
QUERY_SAMPLE = 64  # queries per (example, head) whose weights are formed explicitly


def parse_variant(variant: str) -> tuple[str, list[str]]:
    """``taylorshift+output_normalized=false+tau=8`` -> (backend, attention overrides); ``tau`` is TaylorShift's
    ``temperature`` (its initial value)."""
    backend, *options = variant.split("+")
    return backend, [f"attention.{option.replace('tau=', 'temperature=', 1)}" for option in options]


def compose_probe(backend: str, overrides: list[str], num_examples: int):
    task = ["task.source=generate", f"task.num_train={num_examples}", "task.num_val=16", "task.num_test=16"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=["experiment=lra/listops", f"attention={backend}",
                                                       "precision=32", *task, *overrides])


class Capture:
    """Forward hooks on every block: the residual input, the attention branch, the core's q, k, v, output."""

    def __init__(self, blocks):
        self.layers: list[dict[str, torch.Tensor]] = [{} for _ in blocks]
        for index, block in enumerate(blocks):
            block.register_forward_pre_hook(self._saver(index, "residual", lambda args, kwargs, out: args[0]),
                                            with_kwargs=True)
            block.attn.register_forward_hook(self._saver(index, "branch", lambda args, kwargs, out: out),
                                             with_kwargs=True)
            block.attn.core.register_forward_hook(self._core_saver(index), with_kwargs=True)

    def _saver(self, index, key, pick):
        def hook(module, args, kwargs, out=None):
            self.layers[index][key] = pick(args, kwargs, out).detach()
        return hook

    def _core_saver(self, index):
        def hook(module, args, kwargs, out):
            q, k, v = args[:3]
            self.layers[index].update(q=q.detach(), k=k.detach(), v=v.detach(), out=out.detach(),
                                      mask=kwargs.get("key_padding_mask"))
        return hook


@torch.no_grad()
def explicit_weights(core, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
    """Attention weights (B, H, Q, N) of the sampled queries ``q`` over all keys, for backends that define them."""
    kind = type(core).__name__
    pad = mask[:, None, None, :]
    if kind == "SoftmaxAttention":
        logits = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        return logits.masked_fill(pad, -torch.inf).softmax(-1)
    if kind == "TaylorShiftAttention":
        s = (F.normalize(q, dim=-1) * core.temperature) @ F.normalize(k, dim=-1).transpose(-1, -2)
        w = (core.a * s * s + core.b * s + core.c).masked_fill(pad, 0.0)
        return w / w.sum(-1, keepdim=True)
    if kind == "PerformerAttention":
        key_shift = core._project(k).masked_fill(mask[:, None, :, None], -torch.inf).amax((-1, -2), keepdim=True)
        phi_k = core._features(k, core._project(k), key_shift).masked_fill(mask[:, None, :, None], 0.0)
        phi_q = core._features(q, core._project(q), None)
        w = phi_q @ phi_k.transpose(-1, -2)
        return w / w.sum(-1, keepdim=True)
    return None


def softmax_output(q, k, v, mask) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=~mask[:, None, None, :])


def layer_metrics(core, saved: dict[str, torch.Tensor], queries: torch.Tensor) -> dict[str, float]:
    mask, real = saved["mask"], ~saved["mask"]
    n_real = real.sum(-1).float()[:, None, None]
    metrics = {"branch/res": float((saved["branch"].norm(dim=-1) / saved["residual"].norm(dim=-1))[real].mean())}
    weights = explicit_weights(core, saved["q"][:, :, queries], saved["k"], mask)
    if weights is not None:
        entropy = -(weights * weights.clamp_min(1e-30).log()).sum(-1) / n_real.log()
        metrics["entropy"] = float(entropy.mean())
        metrics["top x N"] = float((weights.amax(-1) * n_real).mean())
    if type(core).__name__ == "PerformerAttention":
        q, k, v = saved["q"], saved["k"], saved["v"]
        exact = softmax_output(q, k, v, mask)
        uniform = (v * real[:, None, :, None]).sum(-2, keepdim=True) / n_real[..., None]
        noise = (saved["out"] - exact).norm(dim=-1)
        signal = (exact - uniform).norm(dim=-1)
        metrics["noise/signal"] = float((noise / signal)[real[:, None, :].expand_as(noise)].mean())
    return metrics


def collapse(states: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean cosine between distinct real positions of each example."""
    values = []
    for example, pad in zip(states, mask, strict=True):
        x = F.normalize(example[~pad], dim=-1)
        n = x.shape[0]
        values.append(float(((x @ x.T).sum() - n) / (n * (n - 1))))
    return sum(values) / len(values)


def probe_variant(variant: str, batches: list[dict[str, torch.Tensor]], extra: list[str], num_examples: int,
                  seed: int) -> tuple[list[dict], dict]:
    backend, overrides = parse_variant(variant)
    cfg = compose_probe(backend, [*extra, *overrides], num_examples)
    torch.manual_seed(seed)
    module = build_module(cfg, prepare_data(cfg).spec).eval()
    model = module.model
    blocks = model.encoder.blocks
    capture = Capture(blocks)
    final: dict[str, torch.Tensor] = {}
    model.encoder.norm.register_forward_hook(lambda m, a, out: final.update(states=out.detach()))
    per_layer: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    summary: dict[str, list[float]] = defaultdict(list)
    tau_grads = []
    generator = torch.Generator().manual_seed(seed)
    for batch in batches:
        module.zero_grad()
        loss, _ = module._step(batch)
        loss.backward()
        length = batch["inputs"].shape[1] + int(model.encoder.use_cls)
        queries = torch.randperm(length, generator=generator)[:QUERY_SAMPLE]
        for index, block in enumerate(blocks):
            for key, value in layer_metrics(block.attn.core, capture.layers[index], queries).items():
                per_layer[index][key].append(value)
        summary["loss"].append(loss.item())
        summary["collapse"].append(collapse(final["states"], capture.layers[0]["mask"]))
        summary["grad qk/v"].append(_qk_over_v(blocks))
        if hasattr(blocks[0].attn.core, "temperature"):
            tau_grads.append(torch.cat([b.attn.core.temperature.grad.flatten() for b in blocks]))
    rows = [{"variant": variant, "layer": index + 1, **{k: sum(v) / len(v) for k, v in metrics.items()}}
            for index, metrics in sorted(per_layer.items())]
    totals = {"variant": variant, **{k: sum(v) / len(v) for k, v in summary.items()}}
    if tau_grads:
        grads = torch.stack(tau_grads)
        totals["|dL/dtau|"] = float(grads.abs().mean())
        totals["tau sign agree"] = float(((grads > 0).all(0) | (grads < 0).all(0)).float().mean())
    return rows, totals


def _qk_over_v(blocks) -> float:
    qk = v = 0.0
    for block in blocks:
        wq, wk, wv = block.attn.qkv.weight.grad.chunk(3)
        qk += float(wq.norm() + wk.norm())
        v += float(wv.norm())
    return qk / v


def load_batches(extra: list[str], count: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    cfg = compose_probe("softmax", [*extra, f"task.batch_size={batch_size}"], max(64, count * batch_size))
    loader = iter(prepare_data(cfg).train_dataloader())
    return [next(loader) for _ in range(count)]


def table(rows: list[dict], keys: list[str]) -> str:
    def cell(row, key):
        value = row.get(key)
        return f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))
    lines = [" | ".join(keys), " | ".join("---" for _ in keys)]
    lines += [" | ".join(cell(row, key) for key in keys) for row in rows]
    return "\n".join(lines)


PROBE_KEYS = ("variants", "batches", "batch_size", "seed", "out")


def main(argv: list[str]) -> None:
    args = dict(arg.split("=", 1) for arg in argv if arg.split("=", 1)[0] in PROBE_KEYS)
    extra = [arg for arg in argv if arg.split("=", 1)[0] not in PROBE_KEYS]
    variants = args["variants"].split(",") if "variants" in args else list(DEFAULT_VARIANTS)
    count, batch_size, seed = int(args.get("batches", 3)), int(args.get("batch_size", 4)), int(args.get("seed", 0))
    out = Path(args.get("out", "results/probes"))
    started = time.perf_counter()
    batches = load_batches(extra, count, batch_size)
    layer_rows, totals = [], []
    for variant in variants:
        rows, summary = probe_variant(variant, batches, extra, max(64, count * batch_size), seed)
        layer_rows += rows
        totals.append(summary)
        print(f"{variant}: done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    layer_keys = ["variant", "layer", "entropy", "top x N", "branch/res", "noise/signal"]
    total_keys = ["variant", "loss", "collapse", "grad qk/v", "|dL/dtau|", "tau sign agree"]
    print(f"LRA ListOps model at init{' (' + ' '.join(extra) + ')' if extra else ''}, {count} batches of "
          f"{batch_size} generated examples, seed {seed}\n")
    print(table(layer_rows, layer_keys) + "\n\n" + table(totals, total_keys))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "listops_plateau.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*layer_keys, *total_keys[2:], "loss"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(layer_rows)
        writer.writerows({**row, "layer": "all"} for row in totals)
    print(f"\nwrote {out / 'listops_plateau.csv'}")


if __name__ == "__main__":
    main(sys.argv[1:])
