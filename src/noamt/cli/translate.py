"""``noamt-translate``: translate text, one sentence per line, with a trained checkpoint.

    noamt-translate checkpoint=runs/my-run input=test.en output=test.hyp.de
    echo "A man rides a bike." | noamt-translate checkpoint=runs/run/checkpoints/checkpoint_avg.pt
    noamt-translate checkpoint=runs/my-run decoding=greedy max_tokens=2048 device=cpu < in.txt > out.txt
    noamt-translate checkpoint=[runs/seed1,runs/seed2,runs/seed3] input=test.en output=test.hyp.de
    noamt-translate checkpoint=runs/my-run engine=ctranslate2 compute_type=int8 input=test.en
    noamt-translate checkpoint=exports/my-run-hf engine=transformers input=test.en

``checkpoint`` is a checkpoint file, a run directory (its checkpoint_best.pt, else
checkpoint_last.pt) or a release folder; a list of them is an ensemble that averages the
models' probabilities at every step (:mod:`noamt.decoding.ensemble`) and needs one tokenizer.
``engine=ctranslate2`` decodes through CTranslate2 (:mod:`noamt.engines.ctranslate2`) in
``compute_type`` (float32, int8, int16, float16, ... as the device supports), from one checkpoint
converted on the fly or from a folder that ``noamt-export format=ctranslate2`` wrote.
``engine=transformers`` decodes with HF transformers' ``generate``
(:mod:`noamt.engines.transformers`), from one post-norm checkpoint converted in memory or
from a folder that ``noamt-export format=transformers`` wrote.
``device`` picks an option of the device/ group (auto, cpu, cuda; e.g.
``device=cpu device.num_threads=2``) and ``decoding`` one of the decoding/ group (default, greedy;
e.g. ``decoding.beam_size=10 decoding.length_penalty=0.6``). Every input line gives exactly one
output line, in input order; blank lines give blank lines. Logs and the progress bar go to stderr, so stdout holds
translations only.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from tqdm import tqdm

from noamt.checkpoint import CheckpointError
from noamt.cli.config import register_command_help, require
from noamt.data import DataError, decode_lines, read_lines
from noamt.decoding import DecodingConfig, check_decoding
from noamt.device import DeviceConfig
from noamt.engines import open_engine
from noamt.evaluation import as_line

log = logging.getLogger("noamt")


@dataclass
class TranslateConfig:
    """Where the model, the input and the output are, and how to search."""

    checkpoint: Any = MISSING  # a checkpoint, run directory or release folder, or a list of them (an ensemble)
    engine: str = "noamt"  # noamt, ctranslate2 or transformers
    compute_type: str = "float32"  # engine=ctranslate2 only: float32, int8, int16, float16, ...
    input: str = "-"  # a UTF-8 text file, or - for stdin
    output: str = "-"  # a file, or - for stdout
    max_tokens: int = 4096  # source tokens per batch, padding included
    device: DeviceConfig = field(default_factory=DeviceConfig)  # the device/ config group
    decoding: DecodingConfig = field(default_factory=DecodingConfig)  # the decoding/ config group


ConfigStore.instance().store(name="translate_schema", node=TranslateConfig)
register_command_help("noamt-translate", __doc__)


def read_input(name: str) -> list[str]:
    """Lines of a UTF-8 file, or of stdin for ``-``."""
    if name == "-":
        try:
            if sys.stdin is None or sys.stdin.closed:
                raise OSError("closed")
            data = sys.stdin.buffer.read()
        except OSError as err:
            raise ValueError("input=-: standard input is closed; pass input=<file> or pipe text in") from err
        return decode_lines(data, "input=- (stdin)")
    return read_lines(Path(name))


def write_output(name: str, lines: list[str]) -> None:
    """One line per translation, UTF-8, to a file or to stdout for ``-``; a failed write (a full
    disk, an I/O error, a closed stdout) is a one-line ValueError naming the output."""
    data = "".join(as_line(line) + "\n" for line in lines).encode("utf-8")
    try:
        if name == "-":
            if sys.stdout is None or sys.stdout.closed:
                raise OSError("standard output is closed")
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            Path(name).write_bytes(data)
    except OSError as err:
        where = "output=- (stdout)" if name == "-" else f"output={name}"
        raise ValueError(f"{where}: cannot write the translations: {err.strerror or err}") from err


def check_paths(cfg: TranslateConfig) -> None:
    """Refuse to write the translation over its own input file."""
    if "-" in (cfg.input, cfg.output):
        return
    source, target = Path(cfg.input), Path(cfg.output)
    if source.resolve() == target.resolve() or (target.exists() and source.exists() and source.samefile(target)):
        raise ValueError(f"output={cfg.output} is the input file: choose another output")


def translate(cfg: TranslateConfig) -> None:
    check_paths(cfg)
    check_decoding(cfg.decoding)
    engine = open_engine(cfg.checkpoint, cfg.engine, cfg.device, cfg.compute_type)
    lines = read_input(cfg.input)
    with tqdm(total=len(lines), unit="line", file=sys.stderr, disable=cfg.input == "-") as bar:
        translations = engine.translate(lines, cfg.decoding, max_tokens=cfg.max_tokens, on_batch=bar.update)
    write_output(cfg.output, translations)
    log.info("translated %d lines", len(lines))


@hydra.main(version_base=None, config_path="pkg://noamt.configs", config_name="translate")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    require(cfg, "checkpoint", "noamt-translate", "a checkpoint file or a run directory")
    try:
        translate(OmegaConf.to_object(cfg))
    except (CheckpointError, DataError, OSError, ValueError) as err:
        sys.exit(f"noamt-translate: {err}")


if __name__ == "__main__":
    main()
