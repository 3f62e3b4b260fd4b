"""Campaigns: the grid of runs that reproduces a table, advanced within a wall-clock budget.

``python -m lra.campaign NAME`` (``conf/campaign/NAME.yaml``); see ``lra/campaign/__main__.py``.
"""
