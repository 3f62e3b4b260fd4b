"""Generators for the synthetic LRA tasks."""
