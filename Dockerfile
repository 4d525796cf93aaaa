# noamt on a CUDA GPU, with the extras the recipes and launchers use (slurm: Hydra's submitit
# launcher; export: CTranslate2). Build:  docker build -t noamt .
# Train (the entry point is noamt-train):
#   docker run --gpus all -v /path/to/multi30k:/data -v $PWD/runs:/runs noamt model=base device=cuda
# Another command of the package: --entrypoint noamt-evaluate, noamt-translate, noamt-compare,
# noamt-export or noamt-data.
FROM pytorch/pytorch:2.7.1-cuda12.6-cudnn9-runtime

WORKDIR /opt/noamt
COPY pyproject.toml README.md ./
COPY configs ./configs
COPY src ./src
COPY scripts ./scripts
# The image's torch satisfies the project's torch requirement; pip keeps it.
RUN pip install --no-cache-dir ".[slurm,export]"

ENV NOAMT_DATA_DIR=/data \
    NOAMT_RUNS_DIR=/runs \
    NOAMT_CACHE_DIR=/runs/.cache
WORKDIR /runs
ENTRYPOINT ["noamt-train"]
