"""The results of runs and benchmarks as files: the bottom layer that training, the benchmarks, the probe, the
campaign and the tables share.

- ``records``: the run-record schema, the store (``results/runs/``, ``results/evals/``), the one record reader
  and the task facts the tables need (``sequence_length``, ``table_column``);
- ``bench``: the benchmark row schema (the CSV columns of ``lra.bench``) and its reader;
- ``keys``: the one list of config keys that leave a run's identity as it is;
- ``files``: the one atomic writer (bytes, text, strict JSON, CSV);
- ``environment``: the one description of where a run ran (device, versions, commit);
- ``table``: a table as plain data and its Markdown.

It imports nothing of lra (only the standard library; torch and lightning inside ``environment()``).
"""
