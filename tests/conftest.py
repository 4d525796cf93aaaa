"""Shared test setup: where the Multi30k data lives.

$NOAMT_DATA_DIR defaults to `<repo>/../shared/data/multi30k` when not already set; tests
that need the real data use the `multi30k_dir` fixture, which skips when it is absent.
"""

import os
from pathlib import Path

import pytest

_DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "multi30k"
os.environ.setdefault("NOAMT_DATA_DIR", str(_DEFAULT_DATA_DIR))


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    """The Multi30k folder named by $NOAMT_DATA_DIR; skips the test if it does not exist."""
    path = Path(os.environ["NOAMT_DATA_DIR"])
    if not path.is_dir():
        pytest.skip(f"Multi30k data not found at {path} (set NOAMT_DATA_DIR)")
    return path
