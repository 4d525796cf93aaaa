"""Command-line entry points: the only modules that read Hydra configs."""
