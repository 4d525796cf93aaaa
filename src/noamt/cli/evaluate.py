"""``noamt-evaluate``: translate test splits with a checkpoint and score them with sacreBLEU.

    noamt-evaluate checkpoint=runs/my-run                      # checkpoint_best.pt, else _last
    noamt-evaluate checkpoint=runs/my-run/checkpoints/checkpoint_avg.pt decoding.beam_size=5
    noamt-evaluate checkpoint=runs/my-run splits=[test_2016_flickr,valid] data_dir=/data/multi30k
    noamt-evaluate checkpoint=[runs/seed1,runs/seed2] out_dir=eval/ensemble
    noamt-evaluate checkpoint=runs/my-run engine=ctranslate2 compute_type=int8 out_dir=eval/ct2-int8
    noamt-evaluate checkpoint=runs/my-run engine=transformers out_dir=eval/transformers
    noamt-evaluate checkpoint=runs/my-run likelihood=false       # BLEU, chrF and TER only

``checkpoint`` is a checkpoint file, a run directory or a release folder; a list of them is an
ensemble (:mod:`noamt.decoding.ensemble`), which needs ``out_dir``. ``engine=ctranslate2``
decodes through CTranslate2 in ``compute_type``, ``engine=transformers`` through HF transformers'
``generate`` (a post-norm model; :mod:`noamt.engines`); results.json records the engine.

The data config is the one stored in the checkpoint (``data_dir`` replaces its folder);
``splits`` defaults to its test splits (``valid`` names the validation split); ``device``
picks an option of the device/ group and ``decoding`` one of the decoding/ group (default,
greedy; e.g. ``decoding.beam_size=10``). Writes ``<split>.hyp.<tgt_lang>`` and ``results.json``
to ``out_dir`` (default: ``<run>/eval``) and prints a table with the metric signatures;
``progress=false`` leaves out the progress bars.

``likelihood`` (default true) also scores each split's references by teacher forcing with
noamt's model of the checkpoint(s), whatever the engine: -sum_t ln p(y_t | y_<t, x) over each
reference's BPE tokens and EOS, label smoothing 0 (an ensemble: its averaged probabilities),
written per sentence to ``<split>.nll.tsv`` and per token to results.json (:mod:`noamt.likelihood`).
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
from noamt.evaluation import EvaluateConfig, evaluate_checkpoint, format_table
from noamt.evaluation_output import OutputInUse

ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)
register_command_help("noamt-evaluate", __doc__)


def evaluate(cfg: EvaluateConfig) -> None:
    """Evaluate as configured and print the table of scores."""
    _, results = evaluate_checkpoint(cfg)
    print(format_table(results))


@hydra.main(version_base=None, config_path="pkg://noamt.configs", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    require(cfg, "checkpoint", "noamt-evaluate", "a checkpoint file or a run directory")
    try:
        evaluate(to_dataclass(cfg, EvaluateConfig))
    except (CheckpointError, DataError, OSError, OutputInUse, ValueError) as err:
        sys.exit(f"noamt-evaluate: {err}")
    except KeyboardInterrupt:
        print("noamt-evaluate: interrupted; the previous results in out_dir are as they were", file=sys.stderr)
        sys.exit(130)


def entry() -> None:
    """``noamt-evaluate``: what no command takes is refused in one line before Hydra parses the
    command line (:func:`noamt.cli.config.check_command_line`); then :func:`main`."""
    check_command_line("noamt-evaluate", EvaluateConfig)
    main()


if __name__ == "__main__":
    entry()
