"""Shared fixtures: the data tests train on and a small training config.

End-to-end tests train on the toy corpus (``toy_data_dir``, written by the tests themselves). The few
that need the real Multi30k use ``multi30k_dir``: $NOAMT_DATA_DIR, by default the folder
`noamt-data fetch multi30k` writes; they skip when it is absent.
"""

import os
import signal
from pathlib import Path

import pytest
import torch
from helpers.runs import small_train_config, trained_toy_run
from helpers.study_runs import synthetic_benchmark
from helpers.toy_corpus import write_toy_corpus

from noamt import pipeline
from noamt.data import read_lines
from noamt.data.corpus import fetched_data_dir

os.environ.setdefault("NOAMT_DATA_DIR", str(fetched_data_dir("multi30k")))

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # started in the background by a shell (`pytest &`), which ignores SIGINT for its children: the
    # commands the tests interrupt with SIGINT would inherit that and never see their Ctrl-C
    signal.signal(signal.SIGINT, signal.default_int_handler)

if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    # pytest -n N: each worker its share of the cores, not every worker a thread per core
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    """The Multi30k folder named by $NOAMT_DATA_DIR; skips the test if it does not exist."""
    path = Path(os.environ["NOAMT_DATA_DIR"])
    if not path.is_dir():
        pytest.skip(f"Multi30k data not found at {path} (set NOAMT_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def toy_data_dir(tmp_path_factory) -> Path:
    """A synthetic corpus in the Multi30k layout (``helpers/toy_corpus.py``): no download needed."""
    return write_toy_corpus(tmp_path_factory.mktemp("toy_corpus"))


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory, toy_data_dir):
    """``toy_run(seed)``: the post-norm toy model of that seed trained 400 updates
    (``helpers.runs.trained_toy_run``), trained on first use and shared by the session; tests
    read its folder and write elsewhere."""
    root = tmp_path_factory.mktemp("toy_runs")
    runs: dict[int, Path] = {}

    def get(seed: int) -> Path:
        if seed not in runs:
            runs[seed] = trained_toy_run(root / f"seed{seed}" / "run", toy_data_dir, seed=seed)
        return runs[seed]

    return get


@pytest.fixture()
def small_run(toy_data_dir, tmp_path_factory):
    """A config that trains a 2+2-layer d_model 64 model on 1,500 pairs of the toy corpus."""
    cache = tmp_path_factory.getbasetemp() / "tokenizers"

    def make(**trainer_overrides) -> pipeline.TrainConfig:
        return small_train_config(toy_data_dir, cache, **trainer_overrides)

    return make


@pytest.fixture()
def benchmark(tmp_path):
    """A study of noam and cosine over seeds 1-3 with known answers (``helpers/study_runs.py``):
    its folder, its collected runs and the test references."""
    return synthetic_benchmark(tmp_path)


@pytest.fixture(scope="session")
def toy_sources(toy_data_dir) -> list[str]:
    """The source side of the toy corpus's test_2016_flickr: what the engine tests translate."""
    return read_lines(toy_data_dir / "test_2016_flickr.en")


@pytest.fixture(scope="session")
def toy_model(toy_run) -> Path:
    """The post-norm toy run of seed 3 (``toy_run``), the model the engine tests decode."""
    return toy_run(3)


@pytest.fixture()
def one_thread():
    """Tiny matrices: one torch thread avoids oversubscribing a shared CPU; the count is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
