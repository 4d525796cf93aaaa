"""Plot noamt learning-rate schedules on one figure.

Each positional argument is a schedule spec: a name (``noam``, ``cosine``, ...) optionally
followed by ``:key=value,key=value`` overrides of its parameters, e.g.

    python scripts/plot_schedules.py noam cosine:peak_lr=7e-4,total_steps=50000 --log

Unless overridden, every schedule gets ``--warmup-steps`` and the defaults of a run of
``--steps`` updates with a model of width ``--d-model`` (``Schedule.with_run_defaults``):
decaying ones ``total_steps = --steps``, ``noam`` ``d_model = --d-model``, every schedule with a
``peak_lr`` the peak of Noam, (d_model * warmup_steps)^-0.5. Without schedules it compares
noam, constant and cosine. Writes ``<out>.png`` and ``<out>.svg``.

The study's report also draws its validation curves and test BLEU over seeds here. matplotlib
is imported by the functions that draw, each on its own ``matplotlib.figure.Figure`` (no pyplot,
no backend to select).
"""

import argparse
import dataclasses
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from noamt.bounds import non_negative_int, positive_int
from noamt.schedules import CONFIGS, make_schedule
from noamt_study.collect import SettingSummary

DEFAULT_SPECS = ("noam", "constant", "cosine")
POINTS = 2000
PEAK_PLOT = "peak_sensitivity.png"


def _convert(text: str, kind: Any) -> Any:
    """Convert an override's text to the config field's type (int accepts "1e5")."""
    kind = next((arg for arg in typing.get_args(kind) if arg is not type(None)), kind)  # int | None -> int
    if kind is int:
        value = float(text)
        if not value.is_integer():
            raise ValueError(f"expected an integer, got {text!r}")
        return int(value)
    if kind is float:
        return float(text)
    return text


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name:key=value,..."`` -> (name, overrides), values typed like the config fields."""
    name, _, rest = spec.partition(":")
    if name not in CONFIGS:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(sorted(CONFIGS))}")
    types = typing.get_type_hints(CONFIGS[name])
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, sep, text = (part.strip() for part in item.partition("="))
        if not sep:
            raise ValueError(f"bad override {item!r} in {spec!r}: expected key=value")
        overrides[key] = _convert(text, types.get(key))
    return name, overrides


def schedule_params(
    name: str,
    overrides: dict[str, Any],
    *,
    d_model: int,
    warmup_steps: int,
    steps: int,
) -> dict[str, Any]:
    """The validated parameters of one curve: overrides, else ``warmup_steps``, else the defaults
    of a run of ``steps`` updates with a model of width ``d_model``."""
    schedule = make_schedule(name, **{"warmup_steps": warmup_steps, **overrides})
    params = dataclasses.asdict(schedule.with_run_defaults(d_model=d_model, max_steps=steps))
    del params["name"]
    return params


def _label(shown: str, name: str, params: dict[str, Any]) -> str:
    parts = [f"peak {make_schedule(name, **params).peak_lr:.3g}", f"warmup {params['warmup_steps']}"]
    if "total_steps" in params:
        parts.append(f"total {params['total_steps']}")
    return f"{shown} ({', '.join(parts)})"


def plot(
    curves: Sequence[tuple[str, dict[str, Any]]],
    steps: int,
    log: bool,
    out: str,
    names: Sequence[str] | None = None,
) -> list[Path]:
    """Draw the curves over updates 1..steps and save ``<out>.png`` and ``<out>.svg``; ``names``
    label them in the legend (default: each curve's schedule)."""
    from matplotlib.figure import Figure

    grid = np.unique(np.linspace(1, steps, POINTS).round().astype(int))
    fig = Figure(figsize=(9, 5))
    ax = fig.subplots()
    for (name, params), shown in zip(curves, names or [name for name, _ in curves], strict=True):
        lr = make_schedule(name, **params)
        top = lr.peak_step
        marks = [k for k in (top, params.get("total_steps")) if k is not None and k <= steps]
        xs = np.union1d(grid, marks)
        (line,) = ax.plot(xs, [lr(int(k)) for k in xs], label=_label(shown, name, params))
        if top <= steps:
            ax.plot([top], [lr(top)], marker="o", color=line.get_color())
    for warmup in sorted({params["warmup_steps"] for _, params in curves}):
        if 0 < warmup <= steps:
            ax.axvline(warmup, linestyle=":", color="gray", label=f"warmup end ({warmup})")
    if log:
        ax.set_yscale("log", nonpositive="mask")
    ax.set_xlabel("update k")
    ax.set_ylabel("learning rate lr(k)")
    ax.set_xlim(0, steps)
    ax.grid(alpha=0.3)
    ax.legend()
    paths = [Path(f"{out}.png"), Path(f"{out}.svg")]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return paths


def plot_validation(selected: Sequence[SettingSummary], path: Path) -> None:
    """Validation loss and BLEU against updates: mean over seeds, band from min to max."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5))
    axes = fig.subplots(1, 2)
    for s in selected:
        for ax, key in zip(axes, ("loss", "bleu"), strict=True):
            curves = [{r["step"]: r[key] for r in run.valid if key in r} for run in s.runs]
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            if not steps:
                continue
            values = np.array([[c[k] for k in steps] for c in curves])  # (seeds, steps)
            (line,) = ax.plot(steps, values.mean(axis=0), marker=".", label=f"{s.setting} ({len(s.runs)} seeds)")
            ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)
    fig.suptitle("mean over seeds; band: min..max over seeds")
    _save_pair(fig, axes, "update", ("validation loss (label-smoothed)", "validation BLEU (greedy)"), path)


def plot_test_bleu(selected: Sequence[SettingSummary], splits: Sequence[str], path: Path) -> None:
    """Final test BLEU per schedule and test set: mean ± std over seeds, one dot per seed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6, 2.2 * len(splits)), 4.5))
    ax = fig.subplots()
    width = 0.8 / len(selected)
    for i, s in enumerate(selected):
        x = np.arange(len(splits)) + (i - (len(selected) - 1) / 2) * width
        bleu = [s.scores[split]["bleu"] for split in splits]
        container = ax.errorbar(
            x, [b.mean for b in bleu], yerr=[b.std or 0.0 for b in bleu], fmt="o", capsize=4, label=s.setting
        )
        color = container.lines[0].get_color()
        for xi, b in zip(x, bleu, strict=True):
            ax.scatter([xi] * b.n, b.values, s=12, color=color, alpha=0.5)
    ax.set_xticks(np.arange(len(splits)), splits)
    ax.set_ylabel("sacreBLEU")
    ax.set_title("test BLEU: mean ± std over seeds (dots: seeds)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")


def plot_peak_sensitivity(grid: Sequence[SettingSummary], chosen: Sequence[SettingSummary], path: Path) -> Path:
    """Validation loss at the budget and validation BLEU against the peak learning rate (log2
    axis), one line per schedule through its grid (mean over the grid's seeds), the chosen peak
    circled: how forgiving each schedule is of a wrong peak."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5))
    axes = fig.subplots(1, 2)
    picked = {s.schedule: s.peak_lr for s in chosen}
    for name in dict.fromkeys(s.schedule for s in grid):
        points = sorted((s for s in grid if s.schedule == name), key=lambda s: s.peak_lr)
        peaks = [s.peak_lr for s in points]
        values = ([s.final_valid_loss.mean for s in points], [s.scores["valid"]["bleu"].mean for s in points])
        for ax, ys in zip(axes, values, strict=True):
            (line,) = ax.plot(peaks, ys, marker="o", label=name)
            if name in picked:
                best = min(range(len(peaks)), key=lambda i: abs(peaks[i] - picked[name]))
                ax.scatter([peaks[best]], [ys[best]], s=160, facecolors="none", edgecolors=line.get_color())
    for ax in axes:
        ax.set_xscale("log", base=2)
    fig.suptitle("peak sensitivity: mean over the tuning seeds; circled: the chosen peak")
    labels = ("validation loss at the budget (label-smoothed)", "validation BLEU (last checkpoint)")
    _save_pair(fig, axes, "peak learning rate", labels, path)
    return path


def _save_pair(fig, axes, xlabel: str, ylabels: Sequence[str], path: Path) -> None:
    """Label, grid and legend both panels of ``fig``, then save it to ``path``."""
    for ax, label in zip(axes, ylabels, strict=True):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "specs",
        nargs="*",
        metavar="SPEC",
        help="name[:key=value,...] (default: noam constant cosine)",
    )
    parser.add_argument("--steps", type=positive_int, default=100_000, help="x range and default total_steps")
    parser.add_argument("--log", action="store_true", help="log-scale y axis")
    parser.add_argument("--d-model", type=positive_int, default=512)
    parser.add_argument("--warmup-steps", type=non_negative_int, default=4000)
    parser.add_argument("--out", default="schedules", help="output prefix")
    args = parser.parse_args(argv)
    try:
        curves = []
        for spec in args.specs or DEFAULT_SPECS:
            name, overrides = parse_spec(spec)
            params = schedule_params(
                name,
                overrides,
                d_model=args.d_model,
                warmup_steps=args.warmup_steps,
                steps=args.steps,
            )
            curves.append((name, params))
    except ValueError as error:
        parser.error(str(error))
    for path in plot(curves, args.steps, args.log, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
