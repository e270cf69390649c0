"""Fixtures for every suite in the repository live in sluice.testing.fixtures."""

pytest_plugins = ["sluice.testing.fixtures"]
