"""Sluice parser service."""
