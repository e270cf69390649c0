"""Sluice shared library."""
