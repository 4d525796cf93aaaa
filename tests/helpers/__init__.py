"""Helpers shared by the tests: synthetic data, crafted checkpoints."""
