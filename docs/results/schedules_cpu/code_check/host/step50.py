"""Print each training's record at update 50 of cosine-x2-seed1 (run from the repository root)."""

import json
from pathlib import Path

RUNS = Path("docs/results/schedules_cpu/runs/cosine-x2-seed1")
HERE = Path(__file__).parent
TRAININGS = {
    "first training (the study, 2026-12-07 05:40 UTC, earlier host)": RUNS / "first_training/metrics.jsonl",
    "second training (the study at 94f6747, this host)": RUNS / "metrics.jsonl",
    "f04c10b, 50 updates, this host": HERE / "f04c10b.metrics.jsonl",
    "a27821b, 50 updates, this host": HERE / "a27821b.metrics.jsonl",
    "94f6747, 50 updates, this host": HERE / "94f6747.metrics.jsonl",
}

for name, path in TRAININGS.items():
    records = (json.loads(line) for line in path.read_text().splitlines())
    step50 = next(r for r in records if r["kind"] == "train" and r["step"] == 50)
    print(f"{name:66s} loss {step50['loss']!r}  lr {step50['lr']!r}")
