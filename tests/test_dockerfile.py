"""The Dockerfile names only what the package has: the paths it copies, the extras it installs,
the commands it runs or mentions, the variables it sets, and a torch the project accepts."""

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def instructions(keyword: str) -> list[str]:
    """The arguments of every ``keyword`` instruction (continued lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(f"{keyword} ")]


def test_every_copied_path_is_in_the_repository():
    sources = [part for args in instructions("COPY") for part in args.split()[:-1]]
    assert sources and all((ROOT / s).exists() for s in sources), sources


def test_the_installed_extras_exist():
    (install,) = [args for args in instructions("RUN") if "pip install" in args]
    extras = re.search(r"\.\[([\w,-]+)\]", install).group(1).split(",")
    assert set(extras) <= set(PYPROJECT["optional-dependencies"]), extras
    assert {"slurm", "export"} <= set(extras)  # the launchers and the CTranslate2 engine


def test_every_command_it_names_is_a_console_script():
    named = set(re.findall(r"\bnoamt-[a-z]+\b", DOCKERFILE))
    assert "noamt-train" in named and named <= set(PYPROJECT["scripts"]), named - set(PYPROJECT["scripts"])


def test_every_variable_it_sets_is_read_by_the_package():
    (env,) = instructions("ENV")
    names = re.findall(r"(NOAMT_\w+)=", env)
    code = "\n".join(p.read_text(encoding="utf-8") for d in ("src", "configs") for p in (ROOT / d).rglob("*.py"))
    code += "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "configs").rglob("*.yaml"))
    assert names and all(f'"{n}"' in code or f"oc.env:{n}" in code for n in names), names


def test_the_base_images_torch_satisfies_the_projects_requirement():
    """Else pip would replace the image's CUDA torch with another download."""
    (image,) = instructions("FROM")
    version = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda[\d.]+-cudnn\d+-runtime", image.strip())
    assert version, image
    (torch,) = [Requirement(r) for r in PYPROJECT["dependencies"] if Requirement(r).name == "torch"]
    assert torch.specifier.contains(version.group(1)), (image, str(torch.specifier))
