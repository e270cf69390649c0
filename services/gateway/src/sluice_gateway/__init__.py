"""Sluice gateway service."""
