"""``noamt-compare``: compare learning-rate schedules. The same model, data, batches and number
of updates with each schedule, over several seeds; every run evaluated; BLEU reported with
confidence and significance.

    noamt-compare --profile smoke
    noamt-compare --profile cpu --schedules noam,constant,cosine --seeds 1,2
    noamt-compare --profile full --lr-sweep data.dir=/data/multi30k
    noamt-compare --profile cpu --tune --schedules noam,cosine,linear,wsd --seeds 1,2,3,4,5,6
    noamt-compare --profile full --jobs 9 device=cuda   # 9 runs share one GPU

A profile is noamt_study/profiles/<profile>.yaml: its training config (configs/experiment/
compare_<profile>.yaml), its default seeds and its evaluation beam. Arguments after the options
are noamt-train overrides for every run.
The runs are one Hydra multirun of noamt-train over the jobs still to train,

    noamt-train -m experiment=compare_<profile> +compare_run=<job>,<job>,... trainer.resume=auto
        hydra.searchpath=[file://<out>/configs] hydra.sweep.dir=<out>/runs

each compare_run option (written to <out>/configs/compare_run/) setting the schedule, the seed
and, with --lr-sweep or --tune, the peak. --tune first trains each schedule's grid of peaks with
the tuning seeds, grows the grid past an edge that holds the best peak (at most twice), chooses
each schedule's peak on the validation set only, then trains every seed at the chosen peaks.
With --jobs N the runs are dealt into N such multiruns, which
train at the same time on this machine (several small runs sharing one GPU), and N runs are
evaluated at a time. With --launcher L the runs are one multirun through Hydra's launcher
option hydra/launcher=L: `slurm` submits each run as a SLURM job (pip install 'noamt[slurm]';
its settings are hydra.launcher.* overrides), `local` runs them as local submitit jobs; the
launcher decides where they train and how many at once, and the evaluation stays here.
Finished runs are skipped and interrupted ones resumed, so the command can be re-run safely.
--time-limit M stops the runs after M minutes (each saves a checkpoint after its current update)
and exits with status 75, so that a short allocation (a 10-minute GPU call) ends cleanly and the
same command, run again, goes on. Every run's checkpoint_last.pt is then evaluated on the validation and test sets
(<run>/eval/results.json) and <out>/report.md, results.csv, results.json and plots are written.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import OmegaConfBaseException

from noamt.bounds import comma_separated, int_type, positive_float, positive_int
from noamt.checkpoint import CheckpointError
from noamt.cli.config import register_configs, resolved_settings, to_train_config
from noamt.data import DataError
from noamt.decoding.config import MAX_BEAM_SIZE
from noamt.metrics import MetricsError
from noamt.run_lock import RunInUse
from noamt.trainer import MAX_SEED
from noamt_study import orchestrate
from noamt_study.collect import TUNING_CRITERIA, CompareError
from noamt_study.orchestrate import EXIT_UNFINISHED, Execution
from noamt_study.plan import (
    DEFAULT_LR_SCALES,
    DEFAULT_SCHEDULES,
    DEFAULT_TUNE_SCALES,
    JOB_GROUP,
    MAX_GRID_EXTENSIONS,
    Job,
    Study,
    Tuning,
    base_overrides,
    load_profile,
    plan_jobs,
    profile_names,
    schedule_of,
    write_job_configs,
)

# set by the study itself, per job or for all (and the peak, with --lr-sweep)
RESERVED_OVERRIDES = (
    "experiment",
    "schedule",
    "optim",
    "trainer.seed",
    "trainer.resume",
    "run_name",
    "hydra.searchpath",
    "hydra.sweep.dir",
    "hydra.sweep.subdir",
)
SWEPT_OVERRIDES = ("schedule.peak_lr", "schedule.factor")


seed_list = comma_separated(int_type(0, MAX_SEED))
"""``--seeds``, ``--tune-seeds``: comma-separated trainer seeds (trainer.seed: 0 to 2^32 - 1)."""
beam_size_arg = int_type(1, MAX_BEAM_SIZE)
"""``--beam-size``: decoding.beam_size's bounds (1 to 1024)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="noamt-compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", required=True, choices=profile_names())
    parser.add_argument(
        "--schedules",
        type=comma_separated(str),
        default=list(DEFAULT_SCHEDULES),
        help="comma-separated schedule configs, or schedulefree (schedule-free AdamW after a constant warmup) "
        "(default: noam,constant,cosine)",
    )
    parser.add_argument("--seeds", type=seed_list, help="comma-separated trainer seeds (default: the profile's)")
    parser.add_argument(
        "--lr-sweep",
        action="store_true",
        help="train each schedule at --lr-scales times the Noam peak and compare each at its best",
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="choose each schedule's peak on validation first: its grid of --lr-scales trained with --tune-seeds, "
        f"grown by 2x past an edge that holds the best peak (at most {MAX_GRID_EXTENSIONS} times), then every seed "
        "trained at the chosen peak",
    )
    parser.add_argument(
        "--lr-scales",
        type=comma_separated(positive_float),
        help="peak multipliers of the Noam peak for --lr-sweep (default: 0.5,1,2) and --tune (default: 0.5,1,2,4)",
    )
    parser.add_argument(
        "--tune-seeds", type=seed_list, help="seeds that train the grid with --tune (default: the first seed)"
    )
    parser.add_argument(
        "--tune-metric",
        choices=TUNING_CRITERIA,
        default="bleu",
        help="what --tune chooses the peak on: mean validation BLEU of the last checkpoint (default) or mean "
        "validation loss at the budget",
    )
    parser.add_argument(
        "--beam-size",
        type=beam_size_arg,
        help=f"evaluation beam (default: the profile's; 1 is greedy; at most {MAX_BEAM_SIZE})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="benchmark folder (default: <runs>/compare_<profile>[_lr_sweep|_tuned], <runs> = $NOAMT_RUNS_DIR or runs)",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="runs trained (and then evaluated) at once, e.g. several small models sharing one GPU (each process "
        "trains its share of the runs one after another; on a CPU give each device.num_threads)",
    )
    parser.add_argument(
        "--launcher",
        help="a hydra/launcher option that starts the trainings (slurm, local, submitit_slurm, ...); "
        "hydra.launcher.* overrides set its options. --jobs then only sets the evaluations at once",
    )
    parser.add_argument(
        "--time-limit",
        type=positive_float,
        help="minutes after which the runs are stopped (they save a checkpoint) and the command exits with "
        f"status {EXIT_UNFINISHED}; run it again to go on. Leave a margin for the last update and validation",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the multirun command, train nothing")
    parser.add_argument("overrides", nargs="*", help="noamt-train overrides for every run, e.g. device.num_threads=2")
    args = parser.parse_args(argv)
    if args.tune and args.lr_sweep:
        parser.error("--tune and --lr-sweep: choose one (--tune trains the grid with --tune-seeds only)")
    if (args.tune_seeds is not None or args.tune_metric != "bleu") and not args.tune:
        parser.error("--tune-seeds and --tune-metric go with --tune")
    if args.lr_scales is not None and not (args.tune or args.lr_sweep):
        parser.error("--lr-scales goes with --lr-sweep or --tune")
    if args.lr_scales is None:
        args.lr_scales = list(DEFAULT_TUNE_SCALES if args.tune else DEFAULT_LR_SCALES)
    reserved = RESERVED_OVERRIDES + (SWEPT_OVERRIDES if args.lr_sweep or args.tune else ())
    clashes = [o for o in args.overrides if o.lstrip("+~").split("=")[0] in reserved]
    if clashes:
        parser.error(f"{clashes}: set by the benchmark (use --schedules, --seeds, --lr-sweep, --lr-scales, --out)")
    if args.time_limit is not None and args.launcher:
        parser.error("--time-limit: not with --launcher, whose jobs have their own limit (hydra.launcher.timeout_min)")
    suffix = "_lr_sweep" if args.lr_sweep else "_tuned" if args.tune else ""
    args.out = (
        args.out or Path(os.environ.get("NOAMT_RUNS_DIR", "runs")) / f"compare_{args.profile}{suffix}"
    ).resolve()
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out}: is a file, not a folder")
    return args


def study_of(args: argparse.Namespace) -> Study:
    """The study the options ask for, the profile's defaults filling what they leave out."""
    profile = load_profile(args.profile)
    seeds = args.seeds or list(profile.seeds)
    tuning = Tuning(seeds=args.tune_seeds or seeds[:1], criterion=args.tune_metric) if args.tune else None
    return Study(
        profile=args.profile,
        experiment=profile.experiment,
        schedules=args.schedules,
        seeds=seeds,
        lr_scales=args.lr_scales if args.lr_sweep or args.tune else None,
        beam_size=profile.beam_size if args.beam_size is None else args.beam_size,
        out=args.out,
        overrides=args.overrides,
        tuning=tuning,
    )


def execution_of(args: argparse.Namespace) -> Execution:
    """How the options ask to run it; the deadline counts from now."""
    deadline = None if args.time_limit is None else time.monotonic() + 60 * args.time_limit
    return Execution(
        processes=args.jobs, launcher=args.launcher, time_limit=args.time_limit, deadline=deadline, dry_run=args.dry_run
    )


def default_peaks(schedules: list[str], overrides: list[str]) -> dict[str, float]:
    """Each schedule's peak lr in the study without a job option (the Noam peak of the model)."""
    register_configs()
    with initialize_config_module("noamt.configs", version_base=None):
        composed = {
            name: compose("train", overrides=[*overrides, f"schedule={schedule_of(name)}"]) for name in schedules
        }
    return {name: to_train_config(cfg).resolved().schedule.peak_lr for name, cfg in composed.items()}


def launcher_overrides(launcher: str | None) -> list[str]:
    """``hydra/launcher=<launcher>``, composed with the runs' settings so that its
    ``hydra.launcher.*`` overrides are checked before anything trains; none without a launcher."""
    if launcher is None:
        return []
    register_configs()
    with initialize_config_module("noamt.configs", version_base=None):
        try:
            compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
        except MissingConfigException as err:
            options = GlobalHydra.instance().config_loader().get_group_options("hydra/launcher")
            known = launcher in options
            why = "its plugin is not installed (pip install 'noamt[slurm]')" if known else "no such option"
            raise CompareError(f"--launcher {launcher}: {why}; hydra/launcher options: {', '.join(options)}") from err
    return [f"hydra/launcher={launcher}"]


def compose_jobs(jobs: list[Job], overrides: list[str]) -> dict[str, dict]:
    """Each job's noamt-train settings after resolution (fails here, before training, on a bad override)."""
    register_configs()
    with initialize_config_module("noamt.configs", version_base=None):
        return {
            job.name: resolved_settings(
                to_train_config(compose("train", overrides=[*overrides, f"+{JOB_GROUP}={job.name}"]))
            )
            for job in jobs
        }


def run(args: argparse.Namespace) -> int:
    how = execution_of(args)  # the time limit counts from the start of the command
    study = study_of(args)
    config_dir = study.out / "configs"
    config_dir.mkdir(parents=True, exist_ok=True)
    overrides = base_overrides(study, config_dir) + launcher_overrides(how.launcher)
    peaks = default_peaks(study.schedules, overrides) if study.lr_sweep else {}

    def prepare(jobs: list[Job]) -> dict[str, dict]:
        """Write the jobs' Hydra options and compose their settings (a bad override fails here)."""
        write_job_configs(jobs, config_dir, peaks)
        return compose_jobs(jobs, overrides)

    if study.tuning:
        return orchestrate.run_tuned(study, prepare, config_dir, how)
    jobs = plan_jobs(study.schedules, study.seeds, study.lr_scales)
    return orchestrate.run(study, jobs, prepare(jobs), config_dir, how)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (
        CompareError,
        ValueError,
        HydraException,
        OmegaConfBaseException,
        DataError,
        CheckpointError,
        MetricsError,
        RunInUse,
        FileNotFoundError,
    ) as err:
        sys.exit(f"noamt-compare: {err}")


if __name__ == "__main__":
    raise SystemExit(main())
