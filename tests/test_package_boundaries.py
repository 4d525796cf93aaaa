"""The MT library and the schedule study stay apart: read from every module's imports (ast), the
library outside ``noamt/cli/`` imports neither Hydra nor OmegaConf, no library module imports
``noamt_study``, and no module of either package imports matplotlib when it is imported.

Inside the library the arrows point one way: the imports between its top-level modules and
subpackages form no cycle, they are the ones the module map of ``docs/architecture.md`` states,
and training imports nothing of inference (no engine, exporter or optional engine package)."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LIBRARY = sorted((SRC / "noamt").rglob("*.py"))
STUDY = sorted((SRC / "noamt_study").rglob("*.py"))
ARCHITECTURE = SRC.parent / "docs" / "architecture.md"


def imported(node: ast.AST) -> list[str]:
    """The top-level package names an import statement names (relative imports: none)."""
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module.split(".")[0]]
    return []


def all_imports(path: Path) -> set[str]:
    """Every package the module imports, at module level or inside a function."""
    return {name for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) for name in imported(node)}


def module_level_imports(path: Path) -> set[str]:
    """The packages imported when the module is: its top-level statements, and those nested in
    top-level if/try blocks (a function's or a class's body runs later)."""
    found, todo = set(), list(ast.parse(path.read_text(encoding="utf-8")).body)
    while todo:
        node = todo.pop()
        found.update(imported(node))
        if isinstance(node, ast.If | ast.Try):
            todo += [*node.body, *node.orelse, *getattr(node, "finalbody", []), *getattr(node, "handlers", [])]
        elif isinstance(node, ast.ExceptHandler):
            todo += node.body
    return found


def test_the_modules_are_found():
    assert SRC / "noamt" / "trainer.py" in LIBRARY and SRC / "noamt_study" / "cli.py" in STUDY


def test_every_package_is_in_the_wheel():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with (SRC.parent / "pyproject.toml").open("rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    packages = {".".join(path.parent.relative_to(SRC).parts) for path in LIBRARY + STUDY if path.name == "__init__.py"}
    assert packages <= listed, f"pyproject.toml's packages lack {sorted(packages - listed)}"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(SRC)))
def test_the_library_imports_no_study_and_hydra_only_in_its_commands(path):
    names = all_imports(path)
    assert "noamt_study" not in names
    if (SRC / "noamt" / "cli") not in path.parents:
        assert not names & {"hydra", "omegaconf"}


@pytest.mark.parametrize("path", LIBRARY + STUDY, ids=lambda p: str(p.relative_to(SRC)))
def test_matplotlib_is_imported_only_when_plotting(path):
    assert "matplotlib" not in module_level_imports(path)


def library_node(module: str) -> str:
    """The top-level module or subpackage of ``noamt`` that the dotted name ``noamt...`` lies in:
    ``noamt.decoding.beam`` -> ``decoding``; ``noamt`` itself (its ``__init__``) -> ``noamt``."""
    parts = module.split(".")
    if len(parts) > 1 and ((SRC / "noamt" / parts[1]).is_dir() or (SRC / "noamt" / f"{parts[1]}.py").is_file()):
        return parts[1]
    return "noamt"


def library_imports(path: Path) -> set[str]:
    """The ``noamt`` modules a library module imports, anywhere in it; a relative import fails the
    test, since the graph would not see it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; write it absolute"
            if node.module == "noamt":  # from noamt import pipeline, __version__
                found.update(f"noamt.{alias.name}" for alias in node.names)
            elif node.module.startswith("noamt."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "noamt")
    return found


def import_graph() -> dict[str, set[str]]:
    """{node: the other nodes it imports} over the library's top-level modules and subpackages."""
    graph: dict[str, set[str]] = {}
    for path in LIBRARY:
        relative = path.relative_to(SRC / "noamt")
        source = "noamt" if relative == Path("__init__.py") else relative.parts[0].removesuffix(".py")
        targets = {library_node(module) for module in library_imports(path)}
        graph.setdefault(source, set()).update(targets - {source})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None when it has none (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the path, "done" once every successor is explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                return path[path.index(successor) :] + [successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_library_imports_form_no_cycle():
    graph = import_graph()
    assert {"pipeline", "decoding", "engines", "export"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def documented_imports() -> dict[str, set[str]]:
    """The module map of docs/architecture.md: {node: the nodes its "imports from noamt" column
    names}, one entry per module a row names (its notes in parentheses left out)."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## `noamt`: the library", 1)[1].split("\n## ", 1)[0]
    documented = {}
    for modules, imports in re.findall(r"^\| (`[^|]+`) \| [^|]+ \| ([^|]+) \|$", section, flags=re.M):
        names = re.sub(r"\([^)]*\)", "", imports).strip()
        targets = set() if names == "nothing" else {name.strip() for name in names.split(",")}
        documented.update({module: targets for module in re.findall(r"`(\w+)(?:\.py|/)`", modules)})
    return documented


def test_the_module_map_states_each_modules_imports():
    graph, documented = import_graph(), documented_imports()
    graph.pop("noamt")  # the package's __init__: its version, no row
    wrong = {node: (sorted(documented.get(node, ["(no row)"])), sorted(graph.get(node, ["(no module)"])))
             for node in graph.keys() | documented.keys() if documented.get(node) != graph.get(node)}  # fmt: skip
    assert not wrong, f"{ARCHITECTURE.name}: {{module: (documented, imported)}} {wrong}"


def imported_modules(*modules: str) -> set[str]:
    """Every module a fresh interpreter has loaded once it has imported ``modules``."""
    code = f"import sys, {', '.join(modules)}; print(' '.join(sys.modules))"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(proc.stdout.split())


def test_training_imports_nothing_of_inference():
    loaded = imported_modules("noamt.pipeline")
    nodes = {library_node(module) for module in loaded if module.split(".")[0] == "noamt"}
    assert "validation" in nodes
    assert not nodes & {"engines", "export", "exporter", "inference", "evaluation", "likelihood"}
    assert not {module.split(".")[0] for module in loaded} & {"ctranslate2", "transformers"}


def test_the_optional_engines_are_imported_only_to_open_a_model():
    loaded = imported_modules("noamt.cli.translate", "noamt.cli.evaluate", "noamt.cli.export")
    assert {"noamt.engines.ctranslate2", "noamt.engines.transformers", "noamt.exporter"} <= loaded
    assert not {m.split(".")[0] for m in loaded} & {"ctranslate2", "transformers"}


def test_a_folder_named_noamt_in_the_working_directory_does_not_shadow_the_package(tmp_path):
    """Run from the folder that holds a clone (itself named noamt), ``python -c``/``-m`` put that
    folder first on sys.path; the installed package must still be the one imported."""
    (tmp_path / "noamt").mkdir()
    code = "import noamt, noamt.configs; print(noamt.__version__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
