"""Structured-config schemas in Hydra's ConfigStore, config -> dataclass conversion, and the
``--help`` of the commands: ``noamt-train``'s settings listing, the others' docstring and config.

The schemas are the components' own dataclasses, so a misspelt key or a wrong type in a YAML
file or an override fails at composition with the key's name, instead of being ignored. A
group option states only what differs from its dataclass; derived defaults (a schedule's
d_model, total_steps, peak_lr left at None) are filled in by ``TrainConfig.resolved``.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import logging
import sys
import textwrap
from collections.abc import Sequence
from typing import TypeVar

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf

from noamt import schedules
from noamt.pipeline import TrainConfig

T = TypeVar("T")

log = logging.getLogger(__name__)

HELP_CONFIG = "noamt_train"


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass ``cls`` (and of its dataclass bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        declaration = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0]
        if not isinstance(declaration, ast.ClassDef):
            continue
        body = declaration.body
        for node, after in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _as_yaml(value: object) -> str:
    plain = list(value) if isinstance(value, tuple) else value
    return yaml.safe_dump(plain, default_flow_style=True, width=1_000_000).removesuffix("...\n").strip()


def settings_help() -> str:
    """Every group's keys with their defaults and the docstring of their field."""
    groups = [(f.name, f.default_factory) for f in dataclasses.fields(TrainConfig) if f.name != "schedule"]
    groups += [(f"schedule (schedule={name})", cls) for name, cls in schedules.CONFIGS.items()]
    lines: list[str] = []
    for title, cls in groups:
        if not dataclasses.is_dataclass(cls):
            continue
        docs, default = field_docs(cls), cls()
        lines.append(title)
        for f in dataclasses.fields(cls):
            lines.append(f"  {f.name} = {_as_yaml(getattr(default, f.name))}")
            if f.name in docs:
                lines.append(f"      {docs[f.name]}")
    return "\n".join(lines)


def register_configs() -> None:
    """Store the schemas and the help of noamt-train (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for name, schema in schedules.CONFIGS.items():
        cs.store(group="schema/schedule", name=name, node=schema)
    template = (
        "noamt-train: train an encoder-decoder Transformer. Choose an option of a group (group=option),\n"
        "override any key (group.key=value).\n\n"
        "== Groups ==\n$APP_CONFIG_GROUPS\n\n"
        "== Settings: key = default, then its meaning; an option sets only the keys it changes ==\n"
        + settings_help().replace("$", "$$")
        + "\n\n== This config ==\n$CONFIG\n"
    )
    cs.store(group="hydra/help", name=HELP_CONFIG, node={"app_name": "noamt-train", "template": template})


def register_command_help(app_name: str, doc: str) -> str:
    """Store ``<app_name> --help`` (the command's module docstring ``doc``, then its composed
    config) as the hydra/help option it returns; the command's YAML selects it."""
    name = app_name.replace("-", "_")
    template = doc.strip().replace("$", "$$") + "\n\n== Settings: override any with key=value ==\n$CONFIG\n"
    ConfigStore.instance().store(group="hydra/help", name=name, node={"app_name": app_name, "template": template})
    return name


def to_dataclass(cfg: DictConfig | ListConfig, kind: type[T]) -> T:
    """The composed config as the dataclass ``kind`` its schema declares (interpolations resolved,
    derived defaults still None); each dataclass checks its values as it is made, a setting out of
    bounds a one-line ValueError naming its key."""
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, kind):
        raise TypeError(f"the composed config is not a {kind.__name__} (is its schema first in its defaults?)")
    return obj


def to_train_config(cfg: DictConfig) -> TrainConfig:
    """The composed training config as dataclasses (:func:`to_dataclass`)."""
    return to_dataclass(cfg, TrainConfig)


def saved_train_config(saved: DictConfig) -> TrainConfig:
    """A run's saved config (its ``.hydra/config.yaml``) as dataclasses: the schema of the
    composed config, with the schedule's kind named by ``schedule.name``."""
    schema = OmegaConf.structured(TrainConfig)
    schema.schedule = OmegaConf.structured(schedules.CONFIGS[saved.schedule.name])
    return to_dataclass(OmegaConf.merge(schema, saved), TrainConfig)


def resolved_settings(cfg: TrainConfig) -> dict:
    """The run's settings after resolution (``TrainConfig.resolved``) as plain containers."""
    settings = OmegaConf.to_container(OmegaConf.structured(cfg.resolved()))
    if not isinstance(settings, dict):
        raise TypeError("a TrainConfig's settings are a mapping")
    return settings


def require(cfg: DictConfig, key: str, program: str, what: str) -> None:
    """Exit with one line when a mandatory key (``???`` in the YAML) was not given."""
    if OmegaConf.is_missing(cfg, key):
        sys.exit(f"{program}: {key}=... is required ({what})")


def group_keys() -> dict[str, list[str]]:
    """Each config group of ``noamt-train`` and the keys its dataclass declares (``schedule``: the
    keys of every schedule kind)."""
    defaults = TrainConfig()
    parts = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
    groups = {
        name: [k.name for k in dataclasses.fields(part)]
        for name, part in parts.items()
        if dataclasses.is_dataclass(part)
    }
    groups["schedule"] = sorted({k.name for cls in schedules.CONFIGS.values() for k in dataclasses.fields(cls)})
    return groups


def misspelt_key(overrides: Sequence[str]) -> str | None:
    """The first ``group.key=value`` override whose key its group does not declare, with the
    nearest declared key (``trainer.max_step: no such key; did you mean trainer.max_steps?``);
    None when every such key exists. Appended (``+``), deleted (``~``) and Hydra's own keys, and
    options (``-m``) are left to Hydra."""
    groups = group_keys()
    for override in overrides:
        key = override.split("=", 1)[0]
        group, _, name = key.partition(".")
        if (
            "=" not in override
            or override.startswith(("+", "~", "-"))
            or group not in groups
            or not name
            or "." in name
        ):
            continue
        if name not in groups[group]:
            close = difflib.get_close_matches(name, groups[group], n=1)
            hint = f"did you mean {group}.{close[0]}?" if close else f"{group}'s keys: {', '.join(groups[group])}"
            return f"{key}: no such key; {hint}"
    return None
