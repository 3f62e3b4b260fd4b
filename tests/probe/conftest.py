"""Fixtures of the probe tests: the data tests' private Hugging Face home."""

from tests.data.conftest import hf_home  # noqa: F401 -- a fixture, used by name
