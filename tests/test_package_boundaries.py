"""The MT library and the schedule study stay apart: read from every module's imports (ast), the
library outside ``noamt/cli/`` imports neither Hydra nor OmegaConf, no library module imports
``noamt_study``, and no module of either package imports matplotlib when it is imported."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LIBRARY = sorted((SRC / "noamt").rglob("*.py"))
STUDY = sorted((SRC / "noamt_study").rglob("*.py"))


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


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(SRC)))
def test_the_library_imports_no_study_and_hydra_only_in_its_commands(path):
    names = all_imports(path)
    assert "noamt_study" not in names
    if (SRC / "noamt" / "cli") not in path.parents:
        assert not names & {"hydra", "omegaconf"}


@pytest.mark.parametrize("path", LIBRARY + STUDY, ids=lambda p: str(p.relative_to(SRC)))
def test_matplotlib_is_imported_only_when_plotting(path):
    assert "matplotlib" not in module_level_imports(path)
