"""tuning.json of this study (run from the repository root), from the grid's committed scores: each seed-1 grid
run's validation BLEU as it stood when the grid was done (a run trained again since: its first
training's, first_training/eval/results.json)."""
import json
from pathlib import Path

out = Path("docs/results/schedules_cpu")
schedules = ["noam", "constant", "cosine", "linear", "wsd", "schedulefree", "noam_cooldown"]
grids = {name: [0.5, 1.0, 2.0, 4.0] for name in schedules}
grids["schedulefree"].append(8.0)
validation = {}
for name, grid in grids.items():
    for scale in grid:
        run = out / "runs" / f"{name}-x{scale:g}-seed1"
        first = run / "first_training" / "eval" / "results.json"
        path = first if first.is_file() else run / "eval" / "results.json"
        validation[f"{name}-x{scale:g}"] = json.loads(path.read_text())["splits"]["valid"]["bleu"]
chosen = {name: max(grid, key=lambda s: validation[f"{name}-x{s:g}"]) for name, grid in grids.items()}
choice = {"criterion": "bleu", "tune_seeds": [1], "lr_scales": [0.5, 1.0, 2.0, 4.0], "grids": grids,
          "chosen": chosen, "validation": validation}
(out / "tuning.json").write_text(json.dumps(choice, indent=2) + "\n")
print(chosen)
