"""Structured-config schemas in Hydra's ConfigStore, and config -> dataclass conversion.

The schemas are the components' own dataclasses, so a misspelt key or a wrong type in a YAML
file or an override fails at composition with the key's name, instead of being ignored.
"""

from __future__ import annotations

import logging
import sys

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from noamt import schedules
from noamt.pipeline import TrainConfig

log = logging.getLogger(__name__)


def _noam_peak(d_model: int, warmup_steps: int, factor: float = 1.0) -> float:
    """``${noam_peak:d_model,warmup_steps[,factor]}``: the Noam schedule's peak lr."""
    return schedules.peak_lr("noam", d_model=d_model, warmup_steps=warmup_steps, factor=factor)


def register_configs() -> None:
    """Store the schemas and resolvers (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for name, schema in schedules.CONFIGS.items():
        cs.store(group="schema/schedule", name=name, node=schema)
    if not OmegaConf.has_resolver("noam_peak"):
        OmegaConf.register_new_resolver("noam_peak", _noam_peak)


def to_train_config(cfg: DictConfig) -> TrainConfig:
    """The composed config as dataclasses (interpolations resolved)."""
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, TrainConfig):
        raise TypeError("the composed config is not a TrainConfig (is train_schema first in its defaults?)")
    return obj


def require(cfg: DictConfig, key: str, program: str, what: str) -> None:
    """Exit with one line when a mandatory key (``???`` in the YAML) was not given."""
    if OmegaConf.is_missing(cfg, key):
        sys.exit(f"{program}: {key}=... is required ({what})")
