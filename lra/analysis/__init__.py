"""Analyses that read the model code and write ``results/analysis/``: ``python -m lra.analysis sparse``.

* ``construction``, ``targets``, ``errors``, ``learned``, ``sweep``: a fixed softmax attention approximating
  sparse matrices through its inputs (Likhosherstov et al. 2021), measured against d and L.
* ``weights``, ``sparsity``: how sparse trained checkpoints' attention is, per layer and head.

Data flow: this package imports ``lra.attention``, ``lra.model``, ``lra.data`` and ``lra.train``; nothing in
them imports it. The report (``lra.tables``) reads the CSV and PNG files it writes, never this code.
"""
