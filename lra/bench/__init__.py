"""Efficiency benchmark: speed and memory of attention backends against sequence length.

``python -m lra.bench`` (settings in ``conf/bench.yaml``) sweeps series (a backend with options) x head
dim x dtype x length at one of four levels: ``core`` (the attention core), ``layer`` (one encoder
block), ``model`` (a whole-model training step, LRA Table 2's setting) or ``loop`` (a bare PyTorch
training loop against Lightning on LRA's ListOps settings). It writes a CSV of every point, PNG plots
and a markdown summary under ``results/bench/<device>/`` and logs the same to wandb.

Modules: ``series`` (what is measured), ``workloads`` (the units), ``measure`` (timing, memory,
failures), ``analytic`` (the TaylorShift paper's cost model), ``crossover`` (crossovers read off a
sweep), ``reference`` (published figures), ``report`` and ``plots`` (outputs), ``tracking`` (wandb),
``loop`` (training-loop overhead), ``run`` (the whole run). Two levels answer one question each:
``softmax_padding`` (the padded-softmax paths) and ``taylorshift_kernels`` (the fused kernels' checks and tilings).
"""
