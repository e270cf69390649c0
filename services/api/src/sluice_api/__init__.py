"""Sluice api service."""
