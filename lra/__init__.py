"""lra: the Long Range Arena benchmark with any attention mechanism.

Data flows one way: config -> ``lra.data`` (tasks) -> ``lra.model`` (with ``lra.attention`` inside)
-> ``lra.train`` (Lightning module, callbacks, results store) -> ``lra.tables`` / ``lra.bench``.
"""

__version__ = "0.1.0"
