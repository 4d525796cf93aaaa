"""``noamt-translate`` as a library call: lines of text in (a file or stdin), one translation per
line out (a file or stdout), decoded by an engine (:mod:`noamt.engines`)."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from noamt.data import decode_lines, read_lines
from noamt.engines import EngineConfig, open_engine
from noamt.evaluation import as_line
from noamt.io import write_atomic

log = logging.getLogger(__name__)


@dataclass
class TranslateConfig(EngineConfig):
    """The models and how to search (:class:`~noamt.engines.EngineConfig`), where the input is and
    where the translations go."""

    input: str = "-"
    """A UTF-8 text file, or - for stdin."""
    output: str = "-"
    """A file, or - for stdout."""

    def __post_init__(self) -> None:
        """The engine's checks, then: the translation is not written over its own input."""
        super().__post_init__()
        if "-" in (self.input, self.output):
            return
        source, target = Path(self.input), Path(self.output)
        if source.resolve() == target.resolve() or (target.exists() and source.exists() and source.samefile(target)):
            raise ValueError(f"output={self.output} is the input file: choose another output")


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
            write_output_file(Path(name), data)
    except OSError as err:
        where = "output=- (stdout)" if name == "-" else f"output={name}"
        raise ValueError(f"{where}: cannot write the translations: {err.strerror or err}") from err


def write_output_file(path: Path, data: bytes) -> None:
    """A regular file (or a new one) is replaced atomically (:func:`noamt.io.write_atomic`), so an
    interrupted run leaves the previous file whole; anything else (a pipe, a device) is written to."""
    if path.exists() and not path.is_file():
        with path.open("wb") as stream:
            stream.write(data)
    else:
        write_atomic(path, data)


def translate(cfg: TranslateConfig) -> None:
    """Translate ``cfg.input`` line by line into ``cfg.output``; the progress bar (for a file
    input) and the log go to stderr, so stdout holds translations only."""
    engine = open_engine(cfg)
    lines = read_input(cfg.input)
    with tqdm(total=len(lines), unit="line", file=sys.stderr, disable=cfg.input == "-") as bar:
        translations = engine.translate(lines, cfg.decoding, max_tokens=cfg.max_tokens, on_batch=bar.update)
    write_output(cfg.output, translations)
    log.info("translated %d line%s", len(lines), "" if len(lines) == 1 else "s")
