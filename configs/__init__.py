"""Hydra configs of noamt, installed as the package noamt.configs."""
