"""``noamt-train``: compose the config, build the run, train.

noamt-train                                   # defaults of configs/train.yaml
noamt-train model=tiny schedule=cosine trainer.max_steps=3000
noamt-train run_name=my-run trainer.resume=auto   # continue a stopped run
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from noamt import pipeline
from noamt.checkpoint import CheckpointError, check_new_run
from noamt.cli.config import register_configs, to_train_config
from noamt.data import DataError
from noamt.trainer import TrainingDiverged

log = logging.getLogger("noamt")

register_configs()


def save_hydra_files(run_dir: Path, cfg: DictConfig) -> None:
    """``.hydra/config.yaml``, ``overrides.yaml`` and ``hydra.yaml``, as Hydra itself writes them.

    train.yaml turns Hydra's own writing off (``hydra.output_subdir: null``) so that these files
    are written only once the run directory is known to be free or resumed.
    """
    folder = run_dir / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    hydra_cfg = HydraConfig.get()
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg), encoding="utf-8")
    (folder / "overrides.yaml").write_text(OmegaConf.to_yaml(hydra_cfg.overrides.task), encoding="utf-8")
    (folder / "hydra.yaml").write_text(OmegaConf.to_yaml({"hydra": hydra_cfg}), encoding="utf-8")


@hydra.main(version_base=None, config_path="pkg://noamt.configs", config_name="train")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    train_cfg = to_train_config(cfg)
    try:
        pipeline.check_train_config(train_cfg)
        check_new_run(run_dir / "checkpoints", train_cfg.trainer.resume)  # before anything is written
        resolved = OmegaConf.to_container(cfg, resolve=True)
        try:
            save_hydra_files(run_dir, cfg)
        except OSError as err:
            raise ValueError(f"cannot write to the run directory {run_dir}: {err}") from err
        log.info("run directory: %s", run_dir)
        result = pipeline.train(train_cfg, run_dir, resolved)
    except (DataError, CheckpointError, FileExistsError, ValueError, TrainingDiverged) as err:
        sys.exit(f"noamt-train: {err}")
    if result["interrupted"]:
        sys.exit(128 + signal.Signals(result["interrupted"]).value)


if __name__ == "__main__":
    main()
