"""Run records -> the paper's tables, with the published numbers beside ours, and a static report.

``python -m lra.tables`` (settings in ``conf/tables.yaml``) reads ``results/runs/*.json`` (and a wandb project
when asked), builds LRA Table 1 (its cells: ``lra.tables.cells``; its tables: ``lra.tables.accuracy``) and the
speed/memory table in the manner of LRA Table 2 (``lra.tables.efficiency``), and writes ``results/tables/`` and
``results/report.html`` (``lra.tables.build``). It reads records and benchmark CSVs only, through ``lra.results``;
it never imports training code.
"""
