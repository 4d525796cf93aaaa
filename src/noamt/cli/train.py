"""``noamt-train``: compose the config, build the run, train.

noamt-train                                   # defaults of configs/train.yaml
noamt-train model=tiny schedule=cosine trainer.max_steps=3000
noamt-train run_name=my-run trainer.resume=auto   # continue a stopped run
"""

from __future__ import annotations

import logging
import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from noamt import pipeline
from noamt.checkpoint import CheckpointError
from noamt.cli.config import register_configs, to_train_config
from noamt.data import DataError

log = logging.getLogger("noamt")

register_configs()


@hydra.main(version_base=None, config_path="pkg://noamt.configs", config_name="train")
def main(cfg: DictConfig) -> None:
    run_dir = HydraConfig.get().runtime.output_dir
    train_cfg = to_train_config(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    log.info("run directory: %s", run_dir)
    try:
        result = pipeline.train(train_cfg, run_dir, resolved)
    except (DataError, CheckpointError, FileExistsError, ValueError) as err:
        sys.exit(f"noamt-train: {err}")
    if result["interrupted"]:
        sys.exit(128 + signal.Signals(result["interrupted"]).value)


if __name__ == "__main__":
    main()
