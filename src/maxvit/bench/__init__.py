"""Benchmarks: model speed/memory/FLOPs (`model`), cost against resolution (`scaling`), data."""
