"""Fixtures of the work-chain tests: the calculation fixtures are shared."""

from tests.calculations.conftest import aluminium_dataset, tiny_model_file, tiny_potential, tiny_training  # noqa: F401
