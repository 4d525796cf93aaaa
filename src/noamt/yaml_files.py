"""YAML files read with bounds, so that a crafted file cannot hang or exhaust a command: at most
``MAX_YAML_BYTES`` (1 MiB; a run's config.yaml has about 3 KB), ``MAX_YAML_ALIASES`` (100)
aliases and ``MAX_YAML_NODES`` (100,000) nodes once its aliases are expanded (a "billion laughs"
of a few KB would otherwise grow to 10^9 nodes), loaded with a safe loader, which builds no
Python object from a tag. Each refusal is one line naming the file and the line."""

from __future__ import annotations

from pathlib import Path

import yaml

MAX_YAML_BYTES = 1 << 20  # a YAML config larger than this is refused
MAX_YAML_ALIASES = 100  # ... and one with more aliases (OmegaConf and Hydra write none)
MAX_YAML_NODES = 100_000  # ... and one that has more nodes once its aliases are expanded


class YamlRefused(ValueError):
    """A YAML file refused: too large, too many aliases, or not loadable; one line,
    ``<origin>: <reason>``."""

    def __init__(self, origin: str, reason: str):
        super().__init__(f"{origin}: {reason}")
        self.reason = reason


def check_yaml_text(text: str, origin: str) -> None:
    """Refuse (:class:`YamlRefused`, naming ``origin`` and the line) YAML with more than
    ``MAX_YAML_ALIASES`` aliases, more than ``MAX_YAML_NODES`` nodes once its aliases are expanded,
    or an alias inside the node it names; read as parser events, so nothing is built."""
    anchors: dict[str, int] = {}  # anchor -> the expanded nodes of the node it names
    open_nodes: list[tuple[str | None, int]] = []  # collections being read: (anchor, nodes before)
    nodes = aliases = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1 if event.start_mark else 0
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_YAML_ALIASES:
                    raise YamlRefused(origin, f"more than {MAX_YAML_ALIASES} aliases (line {line}); refused")
                if event.anchor in {anchor for anchor, _ in open_nodes}:
                    raise YamlRefused(origin, f"the alias *{event.anchor} is inside its anchor (line {line}); refused")
                nodes += anchors.get(event.anchor or "", 1)
            elif isinstance(event, yaml.ScalarEvent):
                nodes += 1
                if event.anchor:
                    anchors[event.anchor] = 1
            elif isinstance(event, yaml.CollectionStartEvent):
                open_nodes.append((event.anchor, nodes))
                nodes += 1
            elif isinstance(event, yaml.CollectionEndEvent) and open_nodes:
                anchor, before = open_nodes.pop()
                if anchor:
                    anchors[anchor] = nodes - before
            if nodes > MAX_YAML_NODES:
                expanded = f"more than {MAX_YAML_NODES} nodes once its aliases are expanded (line {line})"
                raise YamlRefused(origin, f"{expanded}; refused")
    except yaml.YAMLError as err:
        raise YamlRefused(origin, _yaml_error(err)) from err


def _yaml_error(err: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and at which line."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem:
        where = f"line {err.problem_mark.line + 1}: " if err.problem_mark else ""
        return f"{where}{err.problem}"
    return " ".join(str(err).split())


def read_yaml_text(path: Path) -> str:
    """The text of a YAML file of at most ``MAX_YAML_BYTES``, checked by :func:`check_yaml_text`;
    :class:`YamlRefused` (or OSError) naming it otherwise."""
    with path.open("rb") as f:
        data = f.read(MAX_YAML_BYTES + 1)
    if len(data) > MAX_YAML_BYTES:
        raise YamlRefused(str(path), f"more than {MAX_YAML_BYTES} bytes, more than a config has; refused")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise YamlRefused(str(path), f"not UTF-8 text ({err.reason} at byte {err.start})") from err
    check_yaml_text(text, str(path))
    return text


def load_yaml(path: Path, loader: type = yaml.SafeLoader) -> object:
    """The plain values (dicts, lists, scalars) of a YAML file, within the bounds of
    :func:`read_yaml_text`, loaded by ``loader`` (a safe loader: PyYAML's, or OmegaConf's); a
    file it refuses (a ``!!python`` tag) is a :class:`YamlRefused` naming it and the line."""
    text = read_yaml_text(path)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as err:
        raise YamlRefused(str(path), _yaml_error(err)) from err
