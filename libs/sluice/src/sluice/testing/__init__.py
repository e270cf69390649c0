"""Test support: fixtures (a pytest plugin) and a whole-stack runner."""
