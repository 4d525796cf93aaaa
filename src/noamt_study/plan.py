"""The study's plan: its profile, its jobs, each job as a Hydra option, and the noamt-train
multiruns that train them.

A study trains one run per job = (schedule, seed[, peak-lr scale]) with the same model, data
and number of updates. The seed fixes the initialisation and the batch order, so runs with the
same seed see the same batches whatever their schedule. Folder layout:

    <study>/runs/<job>/      noamt-train's run directory (metrics.jsonl, checkpoints/, eval/)
    <study>/configs/compare_run/<job>.yaml   the job as a Hydra option (schedule, seed, peak)

A profile is ``profiles/<name>.yaml`` beside this module: the training config of every run
(``configs/experiment/<experiment>.yaml``), the default seeds and the evaluation beam.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from noamt.bounds import between, is_finite
from noamt.decoding.config import MAX_BEAM_SIZE
from noamt.schedules import CONFIGS
from noamt.trainer import MAX_SEED

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
JOB_GROUP = "compare_run"
DEFAULT_SCHEDULES = ("noam", "constant", "cosine")
OPTIMIZER_VARIANTS = {"schedulefree": ("constant", "adamw_schedulefree")}
"""Study entries that pair a schedule with another optimizer than Adam: name -> (schedule, optim
option). ``schedulefree``: schedule-free AdamW (Defazio et al. 2024) after the constant
schedule's linear warmup, its peak scaled like the schedules' own."""


def schedule_of(entry: str) -> str:
    """The schedule config a study entry trains with: the entry itself, or a variant's schedule."""
    return OPTIMIZER_VARIANTS[entry][0] if entry in OPTIMIZER_VARIANTS else entry


def entry_options(entry: str) -> list[dict[str, str]]:
    """The Hydra defaults overrides that select a study entry: its schedule and, for a variant, its optim."""
    options = [{"override /schedule": schedule_of(entry)}]
    if entry in OPTIMIZER_VARIANTS:
        options.append({"override /optim": OPTIMIZER_VARIANTS[entry][1]})
    return options


DEFAULT_LR_SCALES = (0.5, 1.0, 2.0)
DEFAULT_TUNE_SCALES = (0.5, 1.0, 2.0, 4.0)
MAX_GRID_EXTENSIONS = 2


@dataclass
class Profile:
    """What ``profiles/<name>.yaml`` sets."""

    experiment: str  # the training config of every run, configs/experiment/<experiment>.yaml
    seeds: list[int] = field(default_factory=list)  # the default trainer seeds
    beam_size: int = 1  # the evaluation beam; 1: greedy search

    def __post_init__(self) -> None:
        """A seed no run takes (trainer.seed) or a beam no evaluation takes (decoding.beam_size)
        is a one-line ValueError naming the key, before anything trains."""
        between("beam_size", self.beam_size, 1, MAX_BEAM_SIZE)
        for seed in self.seeds:
            between("seeds", seed, 0, MAX_SEED)


def profile_names() -> list[str]:
    return sorted(path.stem for path in PROFILES_DIR.glob("*.yaml"))


def load_profile(name: str) -> Profile:
    """``profiles/<name>.yaml`` checked against :class:`Profile` (a misspelt key is an error, a
    value out of bounds a one-line ValueError naming the file and the key)."""
    path = PROFILES_DIR / f"{name}.yaml"
    stored = OmegaConf.load(path)
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Profile), stored))
    except ValueError as err:
        raise ValueError(f"{path.name}: {err}") from err


@dataclass(frozen=True)
class Tuning:
    """``--tune``: each schedule's peak chosen on validation before its seeds are trained.

    Per schedule, the grid of peak scales is trained with ``seeds``; while the best peak sits at
    an edge of its grid the grid grows by a factor of 2 past that edge, at most ``max_extensions``
    times; the best peak (``collect.tuning_score`` of ``criterion``, validation only) is chosen,
    and the study's seeds are trained there, the grid's runs at that peak reused."""

    seeds: list[int]
    criterion: str = "bleu"  # "bleu": mean validation BLEU; "loss": mean validation loss at the budget
    max_extensions: int = MAX_GRID_EXTENSIONS


@dataclass(frozen=True)
class Study:
    """What one ``noamt-compare`` command compares, and where."""

    profile: str
    experiment: str
    schedules: list[str]
    seeds: list[int]
    lr_scales: list[float] | None  # peak multipliers of the sweep (the first grid with tuning); None: default peaks
    beam_size: int
    out: Path
    overrides: list[str]  # noamt-train overrides for every run
    tuning: Tuning | None = None  # --tune: the grid trained first, on these seeds, and extended at its edges

    @property
    def lr_sweep(self) -> bool:
        return self.lr_scales is not None

    @property
    def mode(self) -> str:
        """``tuned`` (--tune), ``lr_sweep`` (every seed at every peak) or ``same_peak``."""
        return "tuned" if self.tuning else "lr_sweep" if self.lr_sweep else "same_peak"

    @property
    def reference(self) -> str:
        """The schedule the others are compared with: noam when it is compared, else the first."""
        return "noam" if "noam" in self.schedules else self.schedules[0]


@dataclass(frozen=True)
class Job:
    """One training run of the study. ``lr_scale``: peak lr as a multiple of the schedule's
    default peak, the Noam peak of the model (None: the default itself, no sweep)."""

    schedule: str
    seed: int
    lr_scale: float | None = None

    @property
    def setting(self) -> str:
        """Schedule and peak, without the seed: ``cosine`` or ``cosine-x0.5``."""
        return self.schedule if self.lr_scale is None else f"{self.schedule}-x{self.lr_scale:g}"

    @property
    def name(self) -> str:
        return f"{self.setting}-seed{self.seed}"


def plan_jobs(schedules: Sequence[str], seeds: Sequence[int], lr_scales: Sequence[float] | None = None) -> list[Job]:
    """Every (seed, scale, schedule), seed-major: the first runs already compare all schedules."""
    known = sorted([*CONFIGS, *OPTIMIZER_VARIANTS])
    unknown = [s for s in schedules if s not in known]
    if unknown:
        raise ValueError(f"unknown schedules {unknown}; known: {', '.join(known)}")
    for name, values in (("schedules", schedules), ("seeds", seeds), ("lr scales", lr_scales or [None])):
        if not values or len(set(values)) != len(values):
            raise ValueError(f"{name} must be a non-empty list without repeats, got {list(values)}")
    if lr_scales is not None and not all(is_finite(s) and s > 0 for s in lr_scales):
        raise ValueError(f"lr scales must be finite numbers > 0, got {list(lr_scales)}")
    scales = list(lr_scales) if lr_scales is not None else [None]
    return [Job(name, seed, scale) for seed in seeds for scale in scales for name in schedules]


def grid_extension(grid: Sequence[float], best: float, extensions: int, max_extensions: int) -> float | None:
    """The peak scale to add to a schedule's ``grid`` after ``extensions`` additions: 2 * best
    when the best peak is the grid's largest, best / 2 when it is its smallest, None when it is
    inside the grid (an interior optimum) or ``max_extensions`` are spent."""
    if extensions >= max_extensions or len(grid) < 2:
        return None
    if best == max(grid):
        return best * 2.0
    if best == min(grid):
        return best / 2.0
    return None


def job_config(job: Job, default_peak: float | None = None) -> str:
    """The job as a ``# @package _global_`` Hydra option: schedule, seed, run name and peak.

    Peak scale m: ``noam`` gets factor = m; the others peak_lr = m * default_peak, their peak
    without the option (the Noam peak of the model, (d_model * warmup_steps)^-0.5).
    """
    option: dict = {
        "defaults": entry_options(job.schedule),
        "run_name": job.name,
        "trainer": {"seed": job.seed},
    }
    if job.lr_scale is not None:
        fields = {f.name for f in dataclasses.fields(CONFIGS[schedule_of(job.schedule)])}
        if "factor" in fields:
            option["schedule"] = {"factor": job.lr_scale}
        elif "peak_lr" in fields and default_peak is not None:
            option["schedule"] = {"peak_lr": job.lr_scale * default_peak}
        else:
            raise ValueError(f"schedule {job.schedule!r} has neither factor nor a default peak_lr to scale")
    return "# @package _global_\n" + OmegaConf.to_yaml(OmegaConf.create(option))


def write_job_configs(jobs: Sequence[Job], config_dir: Path, default_peaks: dict[str, float]) -> Path:
    """Write ``<config_dir>/compare_run/<job>.yaml`` for each job; returns ``config_dir``.
    ``default_peaks``: each schedule's peak lr without a job option (see ``job_config``)."""
    folder = config_dir / JOB_GROUP
    folder.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        (folder / f"{job.name}.yaml").write_text(job_config(job, default_peaks.get(job.schedule)), encoding="utf-8")
    return config_dir


def hydra_value(text: str) -> str:
    """``text`` as a Hydra override value: as is when plain, else single-quoted with escapes."""
    if re.fullmatch(r"[\w./:+-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def base_overrides(study: Study, config_dir: Path) -> list[str]:
    """The overrides every run shares: the profile's training config, the job options' folder, the user's."""
    return [
        f"experiment={study.experiment}",
        f"hydra.searchpath=[{hydra_value(f'file://{config_dir}')}]",
        *study.overrides,
    ]


def multirun_command(
    study: Study, config_dir: Path, runs_dir: Path, jobs: Sequence[Job], launcher: str | None = None
) -> list[str]:
    """``noamt-train -m`` over ``jobs``: one Hydra job per compare_run option, each resuming if it
    can, started by Hydra's ``launcher`` option (e.g. ``slurm``, ``submitit_local``) when given,
    else by Hydra's basic launcher, one after another in this process."""
    return [
        sys.executable,
        "-m",
        "noamt.cli.train",
        "-m",
        *base_overrides(study, config_dir),
        *([f"hydra/launcher={launcher}"] if launcher else []),
        f"+{JOB_GROUP}={','.join(job.name for job in jobs)}",
        f"hydra.sweep.dir={hydra_value(str(runs_dir))}",
        "trainer.resume=auto",
    ]
