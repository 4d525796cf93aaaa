"""``noamt-compare``: compare learning-rate schedules. The same model, data, batches and number
of updates with each schedule, over several seeds; every run evaluated; BLEU reported with
confidence and significance.

    noamt-compare --profile smoke
    noamt-compare --profile cpu --schedules noam,constant,cosine --seeds 1,2
    noamt-compare --profile full --lr-sweep data.dir=/data/multi30k
    noamt-compare --profile full --jobs 9 device=cuda   # 9 runs share one GPU

A profile is a training config, configs/experiment/compare_<profile>.yaml, plus the defaults
below (seeds, decoding). Arguments after the options are noamt-train overrides for every run.
The runs are one Hydra multirun of noamt-train over the jobs still to train,

    noamt-train -m experiment=compare_<profile> +compare_run=<job>,<job>,... trainer.resume=auto
        hydra.searchpath=[file://<out>/configs] hydra.sweep.dir=<out>/runs

each compare_run option (written to <out>/configs/compare_run/) setting the schedule, the seed
and, with --lr-sweep, the peak; add e.g. hydra/launcher=submitit_slurm to run them elsewhere.
With --jobs N the runs are dealt into N such multiruns, which train at the same time, and N
runs are evaluated at a time.
Finished runs are skipped and interrupted ones resumed, so the command can be re-run safely.
--time-limit M stops the runs after M minutes (each saves a checkpoint after its current update)
and exits with status 75, so that a short allocation (a 10-minute GPU call) ends cleanly and the
same command, run again, goes on. Every run's checkpoint_last.pt is then evaluated on the validation and test sets
(<run>/eval/results.json) and <out>/report.md, results.csv, results.json and plots are written.
"""

import argparse
import ctypes
import multiprocessing
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
import yaml
from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from noamt.checkpoint import LAST, CheckpointError, config_differences
from noamt.cli.config import register_configs, resolved_settings, saved_train_config, to_train_config
from noamt.compare import runs
from noamt.compare.plots import plot as plot_lr_curves
from noamt.compare.report import BenchmarkMeta, format_duration, write_report
from noamt.compare.runs import Job
from noamt.compare.significance import Comparison, compare_to_reference, verdict
from noamt.data import DataConfig, DataError, load_corpus
from noamt.decoding import DecodingConfig
from noamt.device import DeviceConfig
from noamt.evaluation import evaluate_checkpoint
from noamt.metrics import MetricsError, read_metrics
from noamt.run_lock import RunInUse, run_holder
from noamt.schedules import noam_peak


@dataclass(frozen=True)
class Profile:
    """What a profile sets besides its training config (configs/experiment/compare_<name>.yaml)."""

    seeds: tuple[int, ...]
    beam_size: int  # 1: greedy search


PROFILES = {
    "smoke": Profile(seeds=(1, 2), beam_size=1),  # 6 updates of a 1+1-layer model on 300 pairs: seconds
    "cpu": Profile(seeds=(1, 2, 3), beam_size=1),  # pre-norm Transformer-Tiny, 1,200 updates: ~2.5 h on 2 CPU cores
    "full": Profile(seeds=(1, 2, 3), beam_size=5),  # Transformer-Tiny, 8,000 updates: meant for a GPU
}
DEFAULT_SCHEDULES = ("noam", "constant", "cosine")
DEFAULT_LR_SCALES = (0.5, 1.0, 2.0)
BOOTSTRAP_SAMPLES = 1000
# set by the benchmark itself, per job or for all (and the peak, with --lr-sweep)
RESERVED_OVERRIDES = (
    "experiment",
    "schedule",
    "trainer.seed",
    "trainer.resume",
    "run_name",
    "hydra.searchpath",
    "hydra.sweep.dir",
    "hydra.sweep.subdir",
)
SWEPT_OVERRIDES = ("schedule.peak_lr", "schedule.factor")
# may differ between a stored run and a re-run without changing what the run computes
IGNORED_CHANGES = (
    "trainer.resume",
    "trainer.progress",
    "trainer.tensorboard",
    "trainer.log_interval",
    "device",
    "data.dir",
    "data.source",
    "data.release",
    "data.hub_split_names",
    "tokenizer.cache_dir",
)


PR_SET_PDEATHSIG = 1  # linux/prctl.h
EXIT_UNFINISHED = 75  # sysexits' EX_TEMPFAIL: --time-limit stopped the benchmark; run it again


class CompareError(Exception):
    """A problem the user can fix; reported as one line."""


def comma_list(kind):
    return lambda text: [kind(x) for x in text.split(",") if x.strip()]


def seed_list(text: str) -> list[int]:
    """``--seeds``: comma-separated non-negative integers."""
    seeds = []
    for item in (x.strip() for x in text.split(",")):
        if item and not item.isdigit():
            raise argparse.ArgumentTypeError(f"{text!r}: {item!r} is not a seed (a non-negative integer)")
        seeds += [int(item)] if item else []
    return seeds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="noamt-compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", required=True, choices=sorted(PROFILES))
    parser.add_argument(
        "--schedules",
        type=comma_list(str),
        default=list(DEFAULT_SCHEDULES),
        help="comma-separated schedule configs (default: noam,constant,cosine)",
    )
    parser.add_argument("--seeds", type=seed_list, help="comma-separated trainer seeds (default: the profile's)")
    parser.add_argument(
        "--lr-sweep",
        action="store_true",
        help="train each schedule at --lr-scales times the Noam peak and compare each at its best",
    )
    parser.add_argument(
        "--lr-scales",
        type=comma_list(float),
        default=list(DEFAULT_LR_SCALES),
        help="peak multipliers for --lr-sweep (default: 0.5,1,2)",
    )
    parser.add_argument("--beam-size", type=int, help="evaluation beam (default: the profile's; 1 is greedy)")
    parser.add_argument(
        "--out",
        type=Path,
        help="benchmark folder (default: <runs>/compare_<profile>[_lr_sweep], <runs> = $NOAMT_RUNS_DIR or runs)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs trained (and then evaluated) at once, e.g. several small models sharing one GPU (each process "
        "trains its share of the runs one after another; on a CPU give each device.num_threads)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        help="minutes after which the runs are stopped (they save a checkpoint) and the command exits with "
        f"status {EXIT_UNFINISHED}; run it again to go on. Leave a margin for the last update and validation",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the multirun command, train nothing")
    parser.add_argument("overrides", nargs="*", help="noamt-train overrides for every run, e.g. device.num_threads=2")
    args = parser.parse_args(argv)
    reserved = RESERVED_OVERRIDES + (SWEPT_OVERRIDES if args.lr_sweep else ())
    clashes = [o for o in args.overrides if o.lstrip("+~").split("=")[0] in reserved]
    if clashes:
        parser.error(f"{clashes}: set by the benchmark (use --schedules, --seeds, --lr-sweep, --lr-scales, --out)")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: must be at least 1")
    if args.time_limit is not None and args.time_limit <= 0:
        parser.error(f"--time-limit {args.time_limit:g}: must be a positive number of minutes")
    args.deadline = None if args.time_limit is None else time.monotonic() + 60 * args.time_limit
    args.seeds = args.seeds or list(PROFILES[args.profile].seeds)
    args.beam_size = args.beam_size or PROFILES[args.profile].beam_size
    suffix = "_lr_sweep" if args.lr_sweep else ""
    args.out = (
        args.out or Path(os.environ.get("NOAMT_RUNS_DIR", "runs")) / f"compare_{args.profile}{suffix}"
    ).resolve()
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out}: is a file, not a folder")
    return args


def hydra_value(text: str) -> str:
    """``text`` as a Hydra override value: as is when plain, else single-quoted with escapes."""
    if re.fullmatch(r"[\w./:+-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def base_overrides(args: argparse.Namespace, config_dir: Path) -> list[str]:
    return [
        f"experiment=compare_{args.profile}",
        f"hydra.searchpath=[{hydra_value(f'file://{config_dir}')}]",
        *args.overrides,
    ]


def default_peaks(schedules: list[str], overrides: list[str]) -> dict[str, float]:
    """Each schedule's peak lr in the benchmark without a job option (the Noam peak of the model)."""
    register_configs()
    with initialize_config_module("noamt.configs", version_base=None):
        composed = {name: compose("train", overrides=[*overrides, f"schedule={name}"]) for name in schedules}
    return {name: to_train_config(cfg).resolved().schedule.peak_lr for name, cfg in composed.items()}


def compose_jobs(jobs: list[Job], overrides: list[str]) -> dict[str, dict]:
    """Each job's noamt-train settings after resolution (fails here, before training, on a bad override)."""
    register_configs()
    with initialize_config_module("noamt.configs", version_base=None):
        return {
            job.name: resolved_settings(
                to_train_config(compose("train", overrides=[*overrides, f"+{runs.JOB_GROUP}={job.name}"]))
            )
            for job in jobs
        }


def read_run_config(path: Path) -> dict:
    """A run's ``.hydra/config.yaml`` as its settings after resolution, read with OmegaConf's safe
    YAML loader; a file it cannot read or resolve (a broken line, a ``!!python`` tag) is a
    one-line CompareError naming it. Configs saved with the peak as ``${noam_peak:d_model,
    warmup_steps[,factor]}`` resolve it to ``noamt.schedules.noam_peak``."""
    if not OmegaConf.has_resolver("noam_peak"):
        OmegaConf.register_new_resolver("noam_peak", noam_peak)
    try:
        return resolved_settings(saved_train_config(OmegaConf.load(path)))
    except (OSError, ValueError, KeyError, yaml.YAMLError, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CompareError(f"{path}: cannot read the run's config ({first})") from err


def check_runs(jobs: list[Job], configs: dict[str, dict], runs_dir: Path) -> dict[str, runs.RunState]:
    """Each job's state; a run trained with another config is an error, not something to resume."""
    states = {}
    for job in jobs:
        run_dir = runs_dir / job.name
        stored = run_dir / ".hydra" / "config.yaml"
        if stored.is_file():
            old = read_run_config(stored)
            changes = config_differences(old, configs[job.name], IGNORED_CHANGES)
            if changes:
                raise CompareError(
                    f"{run_dir} was trained with another config ({'; '.join(changes)}): "
                    "pass the same overrides, or another --out"
                )
        states[job.name] = runs.run_state(run_dir, configs[job.name]["trainer"]["max_steps"])
    return states


@dataclass
class Tracked:
    """A run of the multirun as the progress lines see it."""

    name: str
    metrics: Path
    skip: int  # records already in metrics.jsonl at launch
    first: int  # update it starts from
    last: int  # update it reached
    total: int  # trainer.max_steps
    number: int | None = None  # order in which it started
    ended: bool = False


class Progress:
    """Prints a line when a run starts or ends: which run of how many, elapsed time, training ETA.

    ETA = (updates left in all runs) * (seconds so far) / (updates done so far).
    """

    def __init__(self, jobs: list[Job], runs_dir: Path, states: dict, configs: dict):
        self.start = time.monotonic()
        self.runs = []
        for job in jobs:
            path = runs_dir / job.name / "metrics.jsonl"
            skip = len(read_metrics(path)) if path.is_file() else 0
            step, total = states[job.name].step, configs[job.name]["trainer"]["max_steps"]
            self.runs.append(Tracked(job.name, path, skip, step, step, total))
        self.started = 0

    def _eta(self) -> str:
        done = sum(r.last - r.first for r in self.runs)
        left = sum(r.total - r.last for r in self.runs)
        if done <= 0:
            return "ETA after the first updates"
        return f"ETA {format_duration(left * (time.monotonic() - self.start) / done)}"

    def poll(self) -> None:
        for run in self.runs:
            if run.ended or not run.metrics.is_file():
                continue
            records = read_metrics(run.metrics)[run.skip :]
            if not any(r["kind"] == "run" for r in records):
                continue
            run.last = max(r["step"] for r in records)
            if run.number is None:
                self.started += 1
                run.number = self.started
                begin = f"resuming at update {run.first}" if run.first else "starting"
                self.say(run, f"{begin} ({run.total} updates)")
            if records[-1]["kind"] == "end":
                run.ended = True
                how = "interrupted" if records[-1].get("interrupted") else "finished"
                self.say(run, f"{how} at update {records[-1]['step']}")

    def say(self, run: Tracked, text: str) -> None:
        elapsed = format_duration(time.monotonic() - self.start)
        line = f"[compare] run {run.number}/{len(self.runs)} {run.name}: {text} | elapsed {elapsed}, {self._eta()}"
        print(line, file=sys.stderr, flush=True)


def die_with_parent() -> None:
    """In a trainer process, before it runs: ask Linux for SIGTERM when noamt-compare dies
    (``prctl(PR_SET_PDEATHSIG)``), so that a killed comparison leaves no trainer running on: each
    saves its checkpoint and stops. Elsewhere the trainers outlive a SIGKILL of the comparison,
    and the run locks keep a rerun from training the same runs at once."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the comparison died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def train(commands: list[list[str]], progress: Progress, deadline: float | None = None) -> tuple[int, bool]:
    """Run the multiruns at once, printing progress as runs start and end; SIGTERM is passed on
    (the runs save), and sent to them at ``deadline`` (time.monotonic()). Returns the first
    non-zero exit status, else 0, and whether the deadline stopped them."""
    procs = [subprocess.Popen(command, preexec_fn=die_with_parent) for command in commands]

    def terminate(signum=None, frame=None) -> None:
        for proc in procs:
            proc.terminate()

    timed_out = False
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        while any(proc.poll() is None for proc in procs):
            progress.poll()
            if deadline is not None and not timed_out and time.monotonic() >= deadline:
                print("[compare] time limit reached: stopping the runs (each saves a checkpoint)", file=sys.stderr)
                timed_out = True
                terminate()
            time.sleep(1.0)
    except KeyboardInterrupt:  # the runs got the same SIGINT and save their checkpoints
        for proc in procs:
            proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    progress.poll()
    return next((proc.returncode for proc in procs if proc.returncode), 0), timed_out


def evaluate_runs(
    jobs: list[Job],
    configs: dict[str, dict],
    runs_dir: Path,
    beam_size: int,
    deadline: float | None = None,
    processes: int = 1,
) -> bool:
    """Score each run's checkpoint_last.pt on valid and the test splits (kept if already done),
    ``processes`` runs at a time. Returns False if ``deadline`` (time.monotonic()) passed before
    every run was scored."""
    todo = []
    for i, job in enumerate(jobs, 1):
        cfg, run_dir = configs[job.name], runs_dir / job.name
        splits = ["valid", *cfg["data"]["test_splits"]]
        step = runs.run_state(run_dir, cfg["trainer"]["max_steps"]).step
        if not runs.current_evaluation(run_dir, step, {"beam_size": beam_size}, splits):
            todo.append(Evaluation(f"run {i}/{len(jobs)} {job.name}", run_dir, beam_size, cfg["device"], splits))
    if processes == 1 or len(todo) < 2:
        return all(evaluate_run(e, deadline, progress=True) for e in todo)
    spawn = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked process
    with ProcessPoolExecutor(min(processes, len(todo)), mp_context=spawn) as pool:
        return all(list(pool.map(evaluate_run, todo, [deadline] * len(todo), [False] * len(todo))))


@dataclass(frozen=True)
class Evaluation:
    """One run's evaluation, as a worker process receives it."""

    label: str
    run_dir: Path
    beam_size: int
    device: dict
    splits: list[str]


def evaluate_run(evaluation: Evaluation, deadline: float | None, progress: bool) -> bool:
    """Evaluate one run unless ``deadline`` has passed; returns whether it was evaluated."""
    if deadline is not None and time.monotonic() >= deadline:
        print(f"[compare] time limit reached before evaluating {evaluation.label}", file=sys.stderr, flush=True)
        return False
    print(f"[compare] evaluating {evaluation.label} on {', '.join(evaluation.splits)}", file=sys.stderr, flush=True)
    evaluate_checkpoint(
        evaluation.run_dir / "checkpoints" / LAST,
        DecodingConfig(beam_size=evaluation.beam_size),
        DeviceConfig(**evaluation.device),
        splits=evaluation.splits,
        out_dir=runs.evaluation_dir(evaluation.run_dir),
        progress=progress,
    )
    return True


def describe(args: argparse.Namespace, cfg: dict, settings: list, selected: list) -> dict:
    """The report's header: what was run, how it was evaluated and compared, where and when."""
    steps, data = cfg["trainer"]["max_steps"], cfg["data"]
    peaks = {f"{s.peak_lr:.6g}" for s in selected}
    if args.lr_sweep:
        scales = ", ".join(f"{s:g}" for s in args.lr_scales)
        mode = (
            f"peak-lr sweep: each schedule trained at × {scales} its default peak (the Noam peak of the model); "
            "per schedule the peak with the highest mean validation BLEU (last checkpoint) is compared on test"
        )
    elif len(peaks) == 1:
        noam = " (the Noam peak of the model)" if any(s.schedule == "noam" for s in selected) else ""
        mode = f"same peak: every schedule at peak lr {selected[0].peak_lr:.3g}{noam}"
    else:
        mode = "peaks as configured: " + ", ".join(f"{s.setting} {s.peak_lr:.3g}" for s in selected)
    limit = f", first {data['max_eval_examples']} sentences" if data["max_eval_examples"] else ""
    decoding = "greedy search" if args.beam_size == 1 else f"beam {args.beam_size}"
    overrides = f"; overrides: `{' '.join(args.overrides)}`" if args.overrides else ""
    trained = [r for s in settings for r in s.runs]
    devices = "; ".join(sorted({r.device for r in trained}))
    return {
        "mode": mode,
        "training": f"experiment=compare_{args.profile} ({cfg['model']['name']} model, {data['name']}), "
        f"{steps} updates per run, seeds {', '.join(map(str, args.seeds))}; runs with the same seed share "
        f"initialisation and batch order{overrides}",
        "evaluated": f"checkpoints/{LAST} of every run (the model after exactly {steps} updates, no selection), "
        f"{decoding}, valid and test sets{limit}; sacreBLEU BLEU and chrF on detokenized, cased text",
        "compared": f"{reference(args)} against each other schedule on each test set",
        "runs": f"{len(trained)}, {format_duration(sum(r.wall_time_s for r in trained))} of training in all",
        "machine": f"trained on {devices}; report written on {platform.node()} ({platform.machine()}, "
        f"{os.cpu_count()} CPUs, {platform.system()}, Python {platform.python_version()}, torch {torch.__version__})",
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": f"`{shlex.join(['noamt-compare', *sys.argv[1:]])}`",
    }


def reference(args: argparse.Namespace) -> str:
    return "noam" if "noam" in args.schedules else args.schedules[0]


def write_outputs(
    args: argparse.Namespace, jobs: list[Job], configs: dict[str, dict]
) -> tuple[list[Path], list[Comparison]]:
    """Collect the runs, summarize, test, plot and write the report."""
    results = [runs.collect_run(job, args.out / "runs" / job.name) for job in jobs]
    settings = runs.summarize_settings(results)
    selected = runs.select_best_peaks(settings) if args.lr_sweep else settings
    for warning in runs.divergence_warnings(selected):
        print(f"[compare] {warning}", file=sys.stderr)
    cfg = configs[jobs[0].name]
    tests = cfg["data"]["test_splits"]
    corpus = load_corpus(DataConfig(**cfg["data"]))
    refs = {split: list(corpus[split]["tgt"]) for split in tests}
    splits = ", ".join(tests)
    print(f"[compare] seed-and-sentence tests ({BOOTSTRAP_SAMPLES} sentence resamples) on {splits}", file=sys.stderr)
    comparisons = compare_to_reference(selected, reference(args), tests, refs, BOOTSTRAP_SAMPLES)
    curves = [(s.schedule, s.runs[0].schedule_params) for s in selected]
    lr_plot = plot_lr_curves(curves, cfg["trainer"]["max_steps"], log=False, out=str(args.out / "lr_schedules"))[0]
    meta = BenchmarkMeta(
        profile=args.profile,
        mode="lr_sweep" if args.lr_sweep else "same_peak",
        data=cfg["data"]["name"],
        src_lang=cfg["data"]["src_lang"],
        tgt_lang=cfg["data"]["tgt_lang"],
        schedules=args.schedules,
        seeds=args.seeds,
        lr_scales=args.lr_scales if args.lr_sweep else None,
        max_steps=cfg["trainer"]["max_steps"],
        beam_size=args.beam_size,
        checkpoint=LAST,
        reference=reference(args),
        test_splits=tests,
        bootstrap_samples=BOOTSTRAP_SAMPLES,
        description=describe(args, cfg, settings, selected),
    )
    return write_report(args.out, meta, settings, selected, comparisons, [lr_plot.name]), comparisons


def multirun_command(args: argparse.Namespace, config_dir: Path, runs_dir: Path, jobs: list[Job]) -> list[str]:
    """``noamt-train -m`` over ``jobs``: one Hydra job per compare_run option, each resuming if it can."""
    return [
        sys.executable,
        "-m",
        "noamt.cli.train",
        "-m",
        *base_overrides(args, config_dir),
        f"+{runs.JOB_GROUP}={','.join(job.name for job in jobs)}",
        f"hydra.sweep.dir={hydra_value(str(runs_dir))}",
        "trainer.resume=auto",
    ]


def run(args: argparse.Namespace) -> int:
    jobs = runs.plan_jobs(args.schedules, args.seeds, args.lr_scales if args.lr_sweep else None)
    config_dir = args.out / "configs"
    config_dir.mkdir(parents=True, exist_ok=True)
    overrides = base_overrides(args, config_dir)
    runs.write_job_configs(jobs, config_dir, default_peaks(args.schedules, overrides) if args.lr_sweep else {})
    runs_dir = args.out / "runs"
    configs = compose_jobs(jobs, overrides)
    states = check_runs(jobs, configs, runs_dir)
    pending = [job for job in jobs if states[job.name].status != "finished"]
    busy = [f"{job.name} ({holder})" for job in pending if (holder := run_holder(runs_dir / job.name))]
    if busy:
        raise CompareError(f"runs in training by other processes: {', '.join(busy)}; wait for them or stop them")
    resumed = sum(states[job.name].status == "partial" for job in pending)
    print(
        f"[compare] {args.out}: {len(jobs)} run{'s' if len(jobs) > 1 else ''}, "
        f"{len(jobs) - len(pending)} finished (skipped), "
        f"{len(pending)} to train ({resumed} resumed)",
        file=sys.stderr,
    )
    shares = [pending[i :: args.jobs] for i in range(min(args.jobs, len(pending)))]  # one multirun per process
    commands = [multirun_command(args, config_dir, runs_dir, share) for share in shares]
    if args.dry_run:
        print("\n".join(map(shlex.join, commands)) if pending else "nothing to train")
        return 0
    if pending:
        code, timed_out = train(commands, Progress(pending, runs_dir, states, configs), args.deadline)
        if timed_out:
            print(f"[compare] stopped at --time-limit {args.time_limit:g} min: run the same command again to go on")
            return EXIT_UNFINISHED
        if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
            print("[compare] interrupted: the runs saved checkpoints; run the same command again to resume")
            return code
        if code:
            raise CompareError(f"noamt-train failed (exit status {code}, its error is above); finished runs are kept")
        states = check_runs(pending, configs, runs_dir)
        unfinished = [name for name, state in states.items() if state.status != "finished"]
        if unfinished:
            raise CompareError(f"{unfinished} stopped before trainer.max_steps (keep trainer.patience=0)")
    if not evaluate_runs(jobs, configs, runs_dir, args.beam_size, args.deadline, args.jobs):
        print(f"[compare] stopped at --time-limit {args.time_limit:g} min: run the same command again to go on")
        return EXIT_UNFINISHED
    paths, comparisons = write_outputs(args, jobs, configs)
    print("\n".join(line for c in comparisons for line in (c.conclusion, c.bootstrap_conclusion)))
    print("\n".join(verdict(comparisons)))
    print("\n".join(map(str, paths)))
    return 0


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
