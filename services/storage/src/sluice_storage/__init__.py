"""Sluice storage service."""
