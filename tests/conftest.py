"""Shared fixtures. Paths and markers live in tests/helpers.py."""
