"""``noamt-export``: write a trained model in a format made for use, checked as it is written.

    noamt-export checkpoint=runs/my-run format=release out=releases/my-run
    noamt-export checkpoint=runs/my-run/checkpoints/checkpoint_avg.pt format=ctranslate2 out=ct2/my-run
    noamt-export checkpoint=runs/my-run format=ctranslate2 out=ct2/my-run-int8 quantization=int8
    noamt-export checkpoint=runs/my-run format=transformers out=hf/my-run

``checkpoint`` is a checkpoint file or a run directory (its checkpoint_best.pt, else
checkpoint_last.pt); ``format`` is ``release`` (safetensors weights, JSON config, the tokenizer
and a model card, which noamt-translate and noamt-evaluate load as they load a checkpoint) or
``ctranslate2`` (a CTranslate2 model directory with the tokenizer) or ``transformers`` (a
post-norm model as a Hugging Face transformers Marian model with its tokenizer); ``out`` is a
folder that must not exist yet. ``quantization`` (ctranslate2 only: int8, int16, float32) stores the weights so.
Each folder holds ``noamt-manifest.json``, the SHA-256 of its files, which noamt checks when it
loads the folder. Ctrl-C stops the export with nothing written (exit status 130).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from noamt.checkpoint import CheckpointError
from noamt.cli.config import check_command_line, register_command_help, require, to_dataclass
from noamt.data import DataError
from noamt.exporter import ExportConfig, export_model

ConfigStore.instance().store(name="export_schema", node=ExportConfig)
register_command_help("noamt-export", __doc__)


@hydra.main(version_base=None, config_path="pkg://noamt.configs", config_name="export")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    require(cfg, "checkpoint", "noamt-export", "a checkpoint file or a run directory")
    require(cfg, "format", "noamt-export", "release, ctranslate2 or transformers")
    require(cfg, "out", "noamt-export", "the folder to write")
    out = Path(str(cfg.out))
    existed = out.exists()  # then export_model refuses it
    try:
        export_model(to_dataclass(cfg, ExportConfig))
    except (CheckpointError, DataError, OSError, ValueError) as err:
        sys.exit(f"noamt-export: {err}")
    except KeyboardInterrupt:  # export_model has removed its temporary folder
        written = out.is_dir() and not existed  # the interrupt came after the final rename
        done = f"{out} was written before the interrupt" if written else f"nothing was written to {out}"
        print(f"noamt-export: interrupted; {done}", file=sys.stderr)
        sys.exit(130)


def entry() -> None:
    """``noamt-export``: what no command takes is refused in one line before Hydra parses the
    command line (:func:`noamt.cli.config.check_command_line`); then :func:`main`."""
    check_command_line("noamt-export", ExportConfig)
    main()


if __name__ == "__main__":
    entry()
