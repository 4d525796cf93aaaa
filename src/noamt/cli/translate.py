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

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from noamt.checkpoint import CheckpointError
from noamt.cli.config import check_command_line, register_command_help, require, to_dataclass
from noamt.data import DataError
from noamt.translation import TranslateConfig, translate

ConfigStore.instance().store(name="translate_schema", node=TranslateConfig)
register_command_help("noamt-translate", __doc__)


@hydra.main(version_base=None, config_path="pkg://noamt.configs", config_name="translate")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    require(cfg, "checkpoint", "noamt-translate", "a checkpoint file or a run directory")
    try:
        translate(to_dataclass(cfg, TranslateConfig))
    except (CheckpointError, DataError, OSError, ValueError) as err:
        sys.exit(f"noamt-translate: {err}")
    except KeyboardInterrupt:
        print("noamt-translate: interrupted; no output was written", file=sys.stderr)
        sys.exit(130)


def entry() -> None:
    """``noamt-translate``: what no command takes is refused in one line before Hydra parses the
    command line (:func:`noamt.cli.config.check_command_line`); then :func:`main`."""
    check_command_line("noamt-translate", TranslateConfig)
    main()


if __name__ == "__main__":
    entry()
