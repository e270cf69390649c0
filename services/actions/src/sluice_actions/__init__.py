"""Sluice actions service."""
