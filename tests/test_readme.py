"""README.md's commands, run as a reader runs them: every ```bash block, top to bottom, in order.

Each command (a line, with its ``\\`` continuations) runs as written, through ``bash -e -o pipefail
-c``, in one working folder: a temporary folder holding a link to the repository's ``scripts/``,
where the commands make ``runs/`` themselves and must write nothing else (``runs/`` is in
.gitignore). The environment is the one ``source .venv/bin/activate`` gives: the folder of this
Python's commands comes first on ``PATH``. Blocks fenced otherwise (```text: a GPU, SLURM, hours
of training) are not run.

The reader's data and run lengths are replaced, nothing else:

- the data is the synthetic corpus in Multi30k's layout (``toy_data_dir``, ``$NOAMT_DATA_DIR``),
  and the BPE cache a temporary folder (``$NOAMT_CACHE_DIR``);
- small wrappers named ``noamt-train``, ``noamt-translate`` and ``noamt-evaluate``, first on
  ``PATH``, run the real commands with :data:`SHRINK` appended: a 1+1-layer d_model 32 model
  trained 6 updates after 2 of warmup (checkpoints at 2, 4, 6: three numbered ones, as the quick
  start's 1,500 updates saved every 500 leave), on the CPU with one thread. Appended last, these
  keys win over the README's own;
- the lines in :data:`SKIPPED` are not run, each for the reason given.

A failing command fails the test with the README line, the command and the end of its output.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains and decodes with every command of the README

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COMMAND_TIMEOUT_S = 300

SKIPPED = {
    "bash scripts/setup.sh dev": "installs into .venv; the test runs in the environment that runs pytest",
    "source .venv/bin/activate": "the test puts this environment's commands first on PATH instead",
    'python -m pytest -m "not slow"': "the test suite this test is part of",
    "noamt-data fetch multi30k --langs en,de": "downloads Multi30k; the toy corpus stands in ($NOAMT_DATA_DIR)",
}
"""README commands (without their trailing comment) that the test does not run, and why."""

DEVICE = ["device.device=cpu", "device.num_threads=1"]
TRAIN = [
    "model.encoder_layers=1",
    "model.decoder_layers=1",
    "model.d_model=32",
    "model.n_heads=2",
    "model.d_ff=64",
    "tokenizer.vocab_size=400",
    "schedule.warmup_steps=2",
    "data.max_train_examples=300",
    "data.max_eval_examples=20",
    "trainer.max_steps=6",
    "trainer.max_tokens=1024",
    "trainer.val_interval=3",
    "trainer.save_interval=2",
    "trainer.val_bleu_max_examples=5",
    "trainer.log_interval=2",
    "trainer.tensorboard=false",
    "trainer.progress=false",
]
SHRINK = {
    "noamt-train": TRAIN + DEVICE,
    "noamt-translate": DEVICE,
    "noamt-evaluate": DEVICE + ["progress=false"],
}
"""Overrides appended to every call of these commands."""

EXTRAS = {"ctranslate2": "the export extra", "transformers": "the transformers extra"}
"""Modules the README's export examples need (both in the dev extra)."""


def commands(text: str) -> list[tuple[int, str]]:
    """(line number, command) of every command in the ```bash blocks of ``text``, in order;
    comment lines and blank lines left out, continuation lines joined."""
    out: list[tuple[int, str]] = []
    in_bash, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            assert not pending, f"README.md:{start}: a bash block ends inside a continued command"
            in_bash = not in_bash and line.strip() == "```bash"
            continue
        if not in_bash or (not pending and (not line.strip() or line.lstrip().startswith("#"))):
            continue
        start = start if pending else number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line.strip()))
        pending = ""
    return out


def without_comment(command: str) -> str:
    """The command before its trailing ``  # comment``."""
    return re.sub(r"\s+#\s.*$", "", command).strip()


def write_wrappers(folder: Path, bin_dir: Path) -> None:
    """``folder/<command>`` for each command of :data:`SHRINK`: the real one, overrides appended."""
    folder.mkdir()
    for name, overrides in SHRINK.items():
        wrapper = folder / name
        real = shlex.quote(str(bin_dir / name))
        wrapper.write_text(f'#!/usr/bin/env bash\nexec {real} "$@" {shlex.join(overrides)}\n', encoding="utf-8")
        wrapper.chmod(0o755)


def test_the_command_parser_joins_continuations_and_skips_comments_and_other_fences():
    text = "```bash\n# a comment\na --x  # note\n\nb \\\n  c\n```\n```text\nnot run\n```\n```\nnor this\n```\n"
    assert commands(text) == [(3, "a --x  # note"), (5, "b  c")]
    assert without_comment("a --x  # note") == "a --x"


def test_every_bash_block_of_the_readme_runs_in_order(toy_data_dir, tmp_path):
    for module, extra in EXTRAS.items():
        pytest.importorskip(module, reason=f"the README's export examples need {module} ({extra})")
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "noamt-train").exists():
        pytest.skip(f"noamt's commands are not installed beside {sys.executable} (pip install -e .)")
    to_run = commands(README.read_text(encoding="utf-8"))
    missing = set(SKIPPED) - {without_comment(c) for _, c in to_run}
    assert not missing, f"SKIPPED names commands the README no longer has: {sorted(missing)}"

    work = tmp_path / "reader"
    work.mkdir()
    (work / "scripts").symlink_to(ROOT / "scripts")
    write_wrappers(tmp_path / "wrappers", bin_dir)
    env = {k: v for k, v in os.environ.items() if k != "NOAMT_RUNS_DIR"}
    env.update(
        PATH=os.pathsep.join([str(tmp_path / "wrappers"), str(bin_dir), env.get("PATH", "")]),
        VIRTUAL_ENV=str(bin_dir.parent),
        NOAMT_DATA_DIR=str(toy_data_dir),
        NOAMT_CACHE_DIR=str(tmp_path / "cache"),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        MPLBACKEND="Agg",
        HF_HUB_OFFLINE="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    ran = []
    for number, command in to_run:
        if without_comment(command) in SKIPPED:
            continue
        started = time.monotonic()
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", command],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        ran.append(f"{time.monotonic() - started:6.1f} s  README.md:{number}: {without_comment(command)}")
        if result.returncode != 0:
            pytest.fail(
                f"README.md:{number} exited with status {result.returncode}:\n  {command}\n"
                f"--- stderr (end) ---\n{result.stderr[-4000:]}\n--- stdout (end) ---\n{result.stdout[-1500:]}\n"
                "--- commands run before it ---\n" + "\n".join(ran[:-1]),
                pytrace=False,
            )
    print("\n".join(ran))  # each command's time, shown with pytest -s
    assert len(ran) >= 10, "the README's bash blocks hold fewer commands than expected"
    written = sorted(p.name for p in work.iterdir() if p.name != "scripts")
    assert written == ["runs"], f"the README's commands wrote outside runs/ (ignored by git): {written}"
