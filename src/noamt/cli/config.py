"""Structured-config schemas in Hydra's ConfigStore, config -> dataclass conversion, and the
``--help`` of the commands: ``noamt-train``'s settings listing, the others' docstring and config.

The schemas are the components' own dataclasses, so a misspelt key or a wrong type in a YAML
file or an override fails at composition with the key's name, instead of being ignored. A
group option states only what differs from its dataclass; derived defaults (a schedule's
d_model, total_steps, peak_lr left at None) are filled in by ``TrainConfig.resolved``.

YAML that a run or a user supplies is read with bounds (:mod:`noamt.yaml_files`).
:func:`refuse_unsafe_options` runs before Hydra parses a command line: it refuses
``--experimental-rerun`` (Hydra would unpickle the file) and checks the YAML files of a
``--config-dir`` / ``--config-path`` with those bounds, each in one line.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import inspect
import logging
import sys
import textwrap
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf._utils import get_yaml_loader

from noamt import schedules
from noamt.pipeline import TrainConfig
from noamt.yaml_files import YamlRefused, load_yaml

T = TypeVar("T")

log = logging.getLogger(__name__)

HELP_CONFIG = "noamt_train"
MAX_CONFIG_DIR_FILES = 1000  # the YAML files of a --config-dir checked before Hydra reads any
RERUN_OPTION = "--experimental-rerun"


def read_yaml_config(path: Path) -> DictConfig | ListConfig:
    """A YAML config file (a run's ``.hydra/config.yaml``) as OmegaConf reads it (:func:`load_yaml`)."""
    obj = load_yaml(path, get_yaml_loader())  # what OmegaConf.load reads, with duplicate keys refused
    if obj is None:
        return OmegaConf.create()
    if not isinstance(obj, dict | list):  # OmegaConf would parse a string again, unchecked
        raise YamlRefused(str(path), f"holds a {type(obj).__name__}, not a mapping or a list of settings")
    return OmegaConf.create(obj)


SUBMITIT_LAUNCHERS = ("slurm", "local")  # configs/hydra/launcher/: both need Hydra's submitit plugin
SUBMITIT_PLUGIN = "hydra_plugins.hydra_submitit_launcher"


def missing_launcher(overrides: Sequence[str]) -> str | None:
    """One line when ``hydra/launcher=slurm`` (or ``local``) is asked for but Hydra's submitit
    plugin, the ``slurm`` extra, is not installed; None otherwise."""
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") == "hydra/launcher" and value in SUBMITIT_LAUNCHERS:
            if importlib.util.find_spec(SUBMITIT_PLUGIN) is None:
                return f"{override} needs Hydra's submitit launcher: pip install 'noamt[slurm]'"
    return None


def check_command_line(program: str, schema: type, argv: Sequence[str] | None = None) -> None:
    """What every command refuses before Hydra parses its command line, each in one line
    ``<program>: <problem>`` (SystemExit): the options Hydra must not act on
    (:func:`refuse_unsafe_options`), a key its group does not declare (:func:`misspelt_key`), a
    number key given a value of another type (:func:`mistyped_value`) and a launcher whose extra
    is not installed (:func:`missing_launcher`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    refuse_unsafe_options(program, args)
    problem = misspelt_key(args, schema) or mistyped_value(args, schema) or missing_launcher(args)
    if problem:
        sys.exit(f"{program}: {problem}")


def _option_values(argv: Sequence[str], long: str, short: str) -> list[str | None]:
    """The values given to a Hydra option in ``argv`` as argparse reads them: ``--long value``,
    ``--long=value``, ``-short value``, or a long form cut short to a prefix that is still only its
    own (``--experimental`` for ``--experimental-rerun``); None for an option without its value."""
    unique = {"--experimental-rerun": "--e", "--config-dir": "--config-d", "--config-path": "--config-p"}[long]
    values: list[str | None] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        name, eq, value = arg.partition("=")
        if name == short or (name.startswith(unique) and long.startswith(name)):
            values.append(value if eq else (argv[i + 1] if i + 1 < len(argv) else None))
    return values


def refuse_unsafe_options(program: str, argv: Sequence[str] | None = None) -> None:
    """Exit with one line, before Hydra parses ``argv`` (default: the command line), when it asks
    Hydra to unpickle a file (``--experimental-rerun``), or names a ``--config-dir`` or
    ``--config-path`` whose YAML files :func:`read_yaml_config` refuses (a ``!!python`` tag, an
    alias bomb, a file too large): Hydra would print a traceback, or never end."""
    args = list(sys.argv[1:] if argv is None else argv)
    if _option_values(args, RERUN_OPTION, ""):
        sys.exit(
            f"{program}: {RERUN_OPTION} is not supported: it would load a pickle, which can run code; give the "
            "settings as overrides instead (a training run's are in its .hydra/overrides.yaml)"
        )
    for option, short in (("--config-dir", "-cd"), ("--config-path", "-cp")):
        for value in _option_values(args, option, short):
            folder = Path(value.removeprefix("file://")) if value and not value.startswith("pkg://") else None
            if folder is None or not folder.is_dir():
                continue  # Hydra says what is wrong with it
            for path in sorted(folder.rglob("*.yaml"))[:MAX_CONFIG_DIR_FILES]:
                try:
                    read_yaml_config(path)
                except (OSError, YamlRefused) as err:
                    sys.exit(f"{program}: {option} {value}: {err}")


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


def group_classes(schema: type = TrainConfig) -> dict[str, list[type]]:
    """Each config group of a command's schema (``noamt-train``'s: TrainConfig) -> the dataclasses
    its keys come from (``schedule``: every schedule kind)."""
    hints = typing.get_type_hints(schema)
    groups: dict[str, list[type]] = {
        name: [kind] for name, kind in hints.items() if isinstance(kind, type) and dataclasses.is_dataclass(kind)
    }
    if schema is TrainConfig:
        groups["schedule"] = list(schedules.CONFIGS.values())
    return groups


def group_keys(schema: type = TrainConfig) -> dict[str, list[str]]:
    """Each config group of ``schema`` and the keys its dataclass declares, in their order (a group
    of several kinds, ``schedule``: the keys of them all, sorted)."""
    return {
        group: [f.name for f in dataclasses.fields(classes[0])]
        if len(classes) == 1
        else sorted({f.name for cls in classes for f in dataclasses.fields(cls)})
        for group, classes in group_classes(schema).items()
    }


def misspelt_key(overrides: Sequence[str], schema: type = TrainConfig) -> str | None:
    """The first ``group.key=value`` override whose key its group does not declare, with the
    nearest declared key (``trainer.max_step: no such key; did you mean trainer.max_steps?``);
    None when every such key exists. Appended (``+``), deleted (``~``) and Hydra's own keys, and
    options (``-m``) are left to Hydra."""
    groups = group_keys(schema)
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


def _group_field_types(schema: type) -> dict[str, dict[str, str]]:
    """Each group of ``schema`` -> its keys -> the type its dataclass declares, as written
    (``"int"``, ``"float | None"``)."""
    types: dict[str, dict[str, str]] = {}
    for group, classes in group_classes(schema).items():
        for cls in classes:
            for f in dataclasses.fields(cls):
                types.setdefault(group, {}).setdefault(f.name, str(f.type))
    return types


def _numeric_kind(declared: str) -> tuple[str, bool] | None:
    """("int" or "float", whether null is allowed) for a declared type of a number, else None."""
    names = {part.strip() for part in declared.replace("Optional[", "").rstrip("]").split("|")}
    for kind in ("int", "float"):
        if names in ({kind}, {kind, "None"}):
            return kind, "None" in names
    return None


def mistyped_value(overrides: Sequence[str], schema: type = TrainConfig) -> str | None:
    """The first ``group.key=value`` override that gives a number key a value OmegaConf cannot
    convert to its type (``tokenizer.vocab_size=nan: must be an integer``), in one line; None when
    there is none. Values Hydra cannot parse, sweeps and interpolations are left to Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    types = _group_field_types(schema)
    parser = OverridesParser.create()
    for override in overrides:
        key, eq, text = override.partition("=")
        group, _, name = key.partition(".")
        kind = _numeric_kind(types.get(group, {}).get(name, ""))
        if kind is None or not eq or override.startswith(("+", "~", "-")):
            continue
        try:
            parsed = parser.parse_override(override)
        except Exception:  # Hydra's grammar: Hydra says what is wrong
            continue
        if parsed.is_sweep_override():
            continue
        value = parsed.value()
        if not _converts(value, *kind):
            expected = ("an integer" if kind[0] == "int" else "a number") + (" or null" if kind[1] else "")
            return f"{key}={text}: must be {expected}"
    return None


def _converts(value: object, kind: str, nullable: bool) -> bool:
    """Whether OmegaConf turns ``value`` (as Hydra parsed it) into a number of ``kind``."""
    if value is None:
        return nullable
    if isinstance(value, str):
        if "${" in value:
            return True  # an interpolation, resolved later
        try:
            int(value) if kind == "int" else float(value)
        except ValueError:
            return False
        return True
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (kind == "float" and isinstance(value, float))
