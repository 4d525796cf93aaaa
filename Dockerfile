# noamt on a CUDA GPU. Build:  docker build -t noamt .
# Train:  docker run --gpus all -v /path/to/multi30k:/data -v $PWD/runs:/runs noamt model=base device=cuda
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

WORKDIR /opt/noamt
COPY pyproject.toml README.md ./
COPY configs ./configs
COPY src ./src
COPY scripts ./scripts
# The image's torch satisfies the project's torch requirement; pip keeps it.
RUN pip install --no-cache-dir .

ENV NOAMT_DATA_DIR=/data \
    NOAMT_RUNS_DIR=/runs \
    NOAMT_CACHE_DIR=/runs/.cache
WORKDIR /runs
ENTRYPOINT ["noamt-train"]
