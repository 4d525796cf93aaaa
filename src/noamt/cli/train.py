"""``noamt-train``: compose the config, build the run, train.

noamt-train                                   # defaults of configs/train.yaml
noamt-train model=tiny schedule=cosine trainer.max_steps=3000
noamt-train run_name=my-run trainer.resume=auto   # continue a stopped run
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from noamt import pipeline
from noamt.checkpoint import CheckpointError
from noamt.cli.config import check_command_line, register_configs, resolved_settings, to_train_config
from noamt.data import DataError
from noamt.run_lock import RunInUse
from noamt.trainer import TrainingDiverged

register_configs()


def hydra_files(cfg: DictConfig) -> dict[str, str]:
    """``.hydra/config.yaml``, ``overrides.yaml`` and ``hydra.yaml``, as Hydra itself writes them.

    train.yaml turns Hydra's own writing off (``hydra.output_subdir: null``): the pipeline writes
    these once the run directory is locked and known to be free, resumed or unfinished.
    """
    hydra_cfg = HydraConfig.get()
    return {
        ".hydra/config.yaml": OmegaConf.to_yaml(cfg),
        ".hydra/overrides.yaml": OmegaConf.to_yaml(hydra_cfg.overrides.task),
        ".hydra/hydra.yaml": OmegaConf.to_yaml({"hydra": hydra_cfg}),
    }


@hydra.main(version_base=None, config_path="pkg://noamt.configs", config_name="train")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        train_cfg = to_train_config(cfg)  # a dataclass's check of its values raises ValueError
        result = pipeline.train(train_cfg, run_dir, resolved_settings(train_cfg), run_files=hydra_files(cfg))
    except (DataError, CheckpointError, FileExistsError, ValueError, TrainingDiverged, RunInUse) as err:
        sys.exit(f"noamt-train: {err}")
    if result["interrupted"]:
        sys.exit(128 + signal.Signals(result["interrupted"]).value)


def entry() -> None:
    """``noamt-train``: before Hydra parses anything, the options it must not act on are refused
    (:func:`noamt.cli.config.refuse_unsafe_options`), and so are a key its group does not declare
    (naming the nearest one), a number key given a value of another type and a launcher whose
    extra is not installed, each in one line; then :func:`main`."""
    check_command_line("noamt-train", pipeline.TrainConfig)
    main()


if __name__ == "__main__":
    entry()
