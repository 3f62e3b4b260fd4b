"""A data learnability probe: does a small CNN learn an image-like task's prepared data?

``python -m lra.probe task=pathfinder ...`` (settings: ``conf/probe.yaml``) prepares the task's cache
through ``lra.data`` and trains ``lra.probe.cnn.ProbeCNN`` on it: a check of the data, not an LRA result.
Above the data and beside training in the layers: it trains, but no LRA model.
"""
