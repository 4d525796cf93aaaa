"""Running a study: the noamt-train multiruns of the runs still to train (supervised, with a
progress line as each run starts and ends), the evaluation of every run, and the report.

With N processes the pending runs are dealt into N multiruns, which train at the same time, and
N runs are evaluated at a time. With a Hydra launcher (SLURM through submitit, or its local
executor) the pending runs are one multirun and the launcher decides where and how many train at
once. A deadline stops the runs (each saves a checkpoint after its current update), and the
command exits with EXIT_UNFINISHED, to be run again.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from noamt.data import DataConfig, load_corpus
from noamt.decoding import DecodingConfig
from noamt.device import DeviceConfig
from noamt.evaluation import EvaluateConfig, evaluate_checkpoint
from noamt.metrics import read_metrics
from noamt.run_dir import LAST, RunDir
from noamt.run_lock import run_holder
from noamt_study import collect, retrain
from noamt_study.collect import CompareError, RunState
from noamt_study.plan import Job, Study, grid_extension, multirun_command, schedule_of
from noamt_study.plots import PEAK_PLOT, plot_peak_sensitivity
from noamt_study.plots import plot as plot_lr_curves
from noamt_study.report import write_report
from noamt_study.report.results import BenchmarkMeta
from noamt_study.report.sentences import (
    comparison_conclusions,
    describe,
    divergence_warnings,
    format_duration,
    leader_verdict,
    verdict,
)
from noamt_study.significance import METRICS, compare_to_leader, compare_to_reference
from noamt_study.tuning_choice import CHOICE_FILE, TuningChoice, read_choice, validation_score, write_choice

PR_SET_PDEATHSIG = 1  # linux/prctl.h
EXIT_UNFINISHED = 75  # sysexits' EX_TEMPFAIL: the deadline stopped the study; run it again
BOOTSTRAP_SAMPLES = 1000


@dataclass(frozen=True)
class Execution:
    """How the study runs: processes at once, when it stops, whether it only shows its plan."""

    processes: int = 1  # multiruns trained at once (without a launcher) and runs evaluated at once
    launcher: str | None = None  # a hydra/launcher option that starts the trainings
    time_limit: float | None = None  # minutes, as given
    deadline: float | None = None  # time.monotonic() at which the runs are stopped
    dry_run: bool = False


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

    def __init__(self, jobs: Sequence[Job], runs_dir: Path, states: dict[str, RunState], configs: dict[str, dict]):
        self.start = time.monotonic()
        self.runs = []
        for job in jobs:
            path = RunDir.at(runs_dir / job.name).metrics
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

    def poll(self) -> list[str]:
        """Print the runs that started or ended since the last poll; returns those whose training
        finished (not interrupted) in the meantime."""
        finished = []
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
                if how == "finished":
                    finished.append(run.name)
        return finished

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


def train(
    commands: list[list[str]],
    progress: Progress,
    deadline: float | None = None,
    after_training: Callable[[str], Evaluation | None] | None = None,
    evaluations: Sequence[Evaluation] = (),
) -> tuple[int, bool]:
    """Run the multiruns at once, printing progress as runs start and end; SIGTERM is passed on
    (the runs save), and sent to them at ``deadline`` (time.monotonic()). ``after_training`` is
    called with each run's name as its training finishes; the evaluation it returns (if any) runs
    at once, beside the trainings (:class:`EvaluationsBeside`), after ``evaluations`` (those of
    runs finished before, done first). Returns the first
    non-zero exit status of a training, else 0, and whether the deadline stopped them."""
    procs = [subprocess.Popen(command, preexec_fn=die_with_parent) for command in commands]
    beside = EvaluationsBeside()
    for evaluation in evaluations:
        beside.add(evaluation)

    def terminate(signum=None, frame=None) -> None:
        for proc in procs:
            proc.terminate()
        beside.stop()

    timed_out = False
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        while any(proc.poll() is None for proc in procs) or beside.busy():
            for name in progress.poll():
                if after_training is not None and (evaluation := after_training(name)) is not None:
                    beside.add(evaluation)
            beside.step()
            if deadline is not None and not timed_out and time.monotonic() >= deadline:
                print("[compare] time limit reached: stopping the runs (each saves a checkpoint)", file=sys.stderr)
                timed_out = True
                terminate()
            time.sleep(1.0)
    except KeyboardInterrupt:  # the runs and the evaluation got the same SIGINT; the runs save their checkpoints
        for proc in procs:
            proc.wait()
        beside.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
    progress.poll()
    return next((proc.returncode for proc in procs if proc.returncode), 0), timed_out


@dataclass(frozen=True)
class Evaluation:
    """One run's evaluation, as a worker process receives it."""

    label: str
    run_dir: Path
    beam_size: int
    device: dict
    splits: list[str]


def pending_evaluation(
    label: str, cfg: dict, run_dir: Path, beam_size: int, test_sets: bool = True
) -> Evaluation | None:
    """The evaluation the run still needs: checkpoint_last.pt scored on valid and (with
    ``test_sets``) the test splits, unless its eval/results.json already holds that."""
    splits = ["valid", *(cfg["data"]["test_splits"] if test_sets else [])]
    step = collect.run_state(run_dir, cfg["trainer"]["max_steps"]).step
    if collect.current_evaluation(run_dir, step, {"beam_size": beam_size}, splits):
        return None
    return Evaluation(label, run_dir, beam_size, cfg["device"], splits)


def evaluate_runs(
    jobs: Sequence[Job],
    configs: dict[str, dict],
    runs_dir: Path,
    beam_size: int,
    deadline: float | None = None,
    processes: int = 1,
    test_sets: bool = True,
) -> bool:
    """Score each run's checkpoint_last.pt on valid and (with ``test_sets``) the test splits (kept
    if already done), ``processes`` runs at a time. Returns False if ``deadline``
    (time.monotonic()) passed before every run was scored."""
    todo = [
        evaluation
        for i, job in enumerate(jobs, 1)
        if (
            evaluation := pending_evaluation(
                f"run {i}/{len(jobs)} {job.name}", configs[job.name], runs_dir / job.name, beam_size, test_sets
            )
        )
    ]
    if processes == 1 or len(todo) < 2:
        return all(evaluate_run(e, deadline, progress=True) for e in todo)
    spawn = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked process
    with ProcessPoolExecutor(min(processes, len(todo)), mp_context=spawn) as pool:
        return all(list(pool.map(evaluate_run, todo, [deadline] * len(todo), [False] * len(todo))))


def evaluate_run(evaluation: Evaluation, deadline: float | None, progress: bool) -> bool:
    """Evaluate one run unless ``deadline`` has passed; returns whether it was evaluated."""
    if deadline is not None and time.monotonic() >= deadline:
        print(f"[compare] time limit reached before evaluating {evaluation.label}", file=sys.stderr, flush=True)
        return False
    print(f"[compare] evaluating {evaluation.label} on {', '.join(evaluation.splits)}", file=sys.stderr, flush=True)
    run = RunDir.at(evaluation.run_dir)
    evaluate_checkpoint(
        EvaluateConfig(
            checkpoint=str(run.last),
            device=DeviceConfig(**evaluation.device),
            decoding=DecodingConfig(beam_size=evaluation.beam_size),
            splits=evaluation.splits,
            out_dir=str(run.eval_dir),
            progress=progress,
        )
    )
    return True


def evaluate_beside(evaluation: Evaluation) -> None:
    """The body of an evaluation process started by :class:`EvaluationsBeside`."""
    die_with_parent()
    evaluate_run(evaluation, None, progress=False)


class EvaluationsBeside:
    """Runs evaluated one at a time in a spawned process while other runs still train, each as
    soon as its training has finished: its scores then exist before its checkpoints could be
    lost (a study that goes on on another machine has its records and scores, not its
    checkpoints). An evaluation that fails is reported and done again after the trainings."""

    def __init__(self) -> None:
        self.queue: list[Evaluation] = []
        self.current: multiprocessing.process.BaseProcess | None = None
        self.current_label = ""
        self.stopped = False

    def add(self, evaluation: Evaluation) -> None:
        if not self.stopped:
            self.queue.append(evaluation)

    def busy(self) -> bool:
        return self.current is not None or bool(self.queue)

    def step(self) -> None:
        """Reap the evaluation that ended, start the next one."""
        if self.current is not None:
            if self.current.is_alive():
                return
            if self.current.exitcode:
                print(
                    f"[compare] evaluating {self.current_label} failed (exit status {self.current.exitcode}): "
                    "it is evaluated again after the trainings",
                    file=sys.stderr,
                    flush=True,
                )
            self.current = None
        if self.queue and not self.stopped:
            evaluation = self.queue.pop(0)
            self.current_label = evaluation.label
            spawn = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked process
            self.current = spawn.Process(target=evaluate_beside, args=(evaluation,), daemon=True)
            self.current.start()

    def stop(self) -> None:
        """Drop the queue and stop the running evaluation (its folder keeps its previous scores)."""
        self.stopped = True
        self.queue.clear()
        if self.current is not None:
            if self.current.is_alive():
                self.current.terminate()
            self.current.join()
            self.current = None


def write_outputs(
    study: Study, jobs: Sequence[Job], configs: dict[str, dict], choice: TuningChoice | None = None
) -> tuple[list[Path], list[str]]:
    """Collect the runs, summarize, test, plot and write the report; returns the files written
    and the report's conclusions (each comparison's two lines, the verdict, then the validation
    leader's lines). ``choice``: with --tune, the peaks chosen and the scores they were chosen on
    (the grid is the tuning seeds' runs)."""
    results = [collect.collect_run(job, study.out / "runs" / job.name) for job in jobs]
    settings = collect.summarize_settings(results)
    grid = settings
    if choice is not None:
        selected = [s for s in settings if choice.chosen.get(s.schedule) == s.lr_scale]
        grid = collect.summarize_settings([r for r in results if r.job.seed in study.tuning.seeds])
    elif study.lr_sweep:
        selected = collect.select_best_peaks(settings)
    else:
        selected = settings
    for warning in divergence_warnings(selected):
        print(f"[compare] {warning}", file=sys.stderr)
    cfg = configs[jobs[0].name]
    tests = cfg["data"]["test_splits"]
    corpus = load_corpus(DataConfig(**cfg["data"]))
    refs = {split: list(corpus[split]["tgt"]) for split in tests}
    splits = ", ".join(tests)
    print(f"[compare] seed-and-sentence tests ({BOOTSTRAP_SAMPLES} sentence resamples) on {splits}", file=sys.stderr)
    comparisons = compare_to_reference(selected, study.reference, tests, refs, BOOTSTRAP_SAMPLES, METRICS)
    criterion = study.tuning.criterion if study.tuning else "bleu"
    leader = compare_to_leader(selected, study.reference, criterion, tests, refs, BOOTSTRAP_SAMPLES, METRICS)
    curves = [(schedule_of(s.schedule), s.runs[0].schedule_params) for s in selected]
    names = [s.setting for s in selected]
    steps = cfg["trainer"]["max_steps"]
    lr_plot = plot_lr_curves(curves, steps, log=False, out=str(study.out / "lr_schedules"), names=names)[0]
    extra = [lr_plot.name]
    if len(grid) > len(selected):
        extra.append(plot_peak_sensitivity(grid, selected, study.out / PEAK_PLOT).name)
    meta = BenchmarkMeta(
        profile=study.profile,
        mode=study.mode,
        data=cfg["data"]["name"],
        src_lang=cfg["data"]["src_lang"],
        tgt_lang=cfg["data"]["tgt_lang"],
        schedules=study.schedules,
        seeds=study.seeds,
        lr_scales=study.lr_scales,
        tune_seeds=study.tuning.seeds if study.tuning else None,
        tune_criterion=study.tuning.criterion if study.tuning else None,
        chosen_on={s.setting: choice.validation[s.setting] for s in grid if s.setting in choice.validation}
        if choice
        else None,
        chosen_lr_scales={s.schedule: s.lr_scale for s in selected} if study.lr_sweep else None,
        max_steps=cfg["trainer"]["max_steps"],
        beam_size=study.beam_size,
        checkpoint=LAST,
        reference=study.reference,
        test_splits=tests,
        bootstrap_samples=BOOTSTRAP_SAMPLES,
        description=describe(study, cfg, settings, selected),
    )
    paths = write_report(study.out, meta, settings, selected, comparisons, extra, grid, leader)
    conclusions = [line for pair in comparison_conclusions(comparisons, selected) for line in pair]
    return paths, conclusions + verdict(comparisons) + leader_verdict(leader)


def train_pending(
    study: Study,
    jobs: Sequence[Job],
    configs: dict[str, dict],
    config_dir: Path,
    how: Execution,
    test_sets: bool = True,
) -> int:
    """Train the jobs that are not finished, as ``how.processes`` multiruns, each evaluated on
    valid and (with ``test_sets``) the test splits as soon as it finishes; a finished run that
    still needs that evaluation but whose checkpoints are gone is trained again
    (:mod:`noamt_study.retrain`). Returns 0 when all are finished, else the exit status of the
    command (the dry run prints the plan and returns 0)."""
    runs_dir = study.out / "runs"
    if not how.dry_run:
        record_retrainings(jobs, configs, runs_dir)  # those an earlier call trained but did not get to compare
    set_aside_lost(jobs, configs, runs_dir, study.beam_size, test_sets, how.dry_run)
    states = collect.check_runs(jobs, configs, runs_dir)
    pending = [job for job in jobs if states[job.name].status != "finished"]
    busy = [f"{job.name} ({holder})" for job in pending if (holder := run_holder(runs_dir / job.name))]
    if busy:
        raise CompareError(f"runs in training by other processes: {', '.join(busy)}; wait for them or stop them")
    resumed = sum(states[job.name].status == "partial" for job in pending)
    print(
        f"[compare] {study.out}: {len(jobs)} run{'s' if len(jobs) > 1 else ''}, "
        f"{len(jobs) - len(pending)} finished (skipped), "
        f"{len(pending)} to train ({resumed} resumed)",
        file=sys.stderr,
    )
    trainers = min(1 if how.launcher else how.processes, len(pending))
    shares = [pending[i::trainers] for i in range(trainers)]  # a multirun each
    commands = [multirun_command(study, config_dir, runs_dir, share, how.launcher) for share in shares]
    if how.dry_run:
        print("\n".join(map(shlex.join, commands)) if pending else "nothing to train")
        return 0
    if not pending:
        return 0

    def evaluation_of(name: str) -> Evaluation | None:
        return pending_evaluation(name, configs[name], runs_dir / name, study.beam_size, test_sets)

    def after_training(name: str) -> Evaluation | None:
        """A run's training has finished: write its retraining.json if it was trained again,
        and return the evaluation it still needs."""
        record_retrainings([job for job in pending if job.name == name], configs, runs_dir)
        return evaluation_of(name)

    finished = [job.name for job in jobs if states[job.name].status == "finished"]
    waiting = [evaluation for name in finished if (evaluation := evaluation_of(name))]  # scored first
    progress = Progress(pending, runs_dir, states, configs)
    code, timed_out = train(commands, progress, how.deadline, after_training, waiting)
    if timed_out:
        print(f"[compare] stopped at --time-limit {how.time_limit:g} min: run the same command again to go on")
        return EXIT_UNFINISHED
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        print("[compare] interrupted: the runs saved checkpoints; run the same command again to resume")
        return code
    if code:
        raise CompareError(f"noamt-train failed (exit status {code}, its error is above); finished runs are kept")
    states = collect.check_runs(pending, configs, runs_dir)
    unfinished = [name for name, state in states.items() if state.status != "finished"]
    if unfinished:
        raise CompareError(f"{unfinished} stopped before trainer.max_steps (keep trainer.patience=0)")
    record_retrainings(jobs, configs, runs_dir)
    return 0


def record_retrainings(jobs: Sequence[Job], configs: dict[str, dict], runs_dir: Path) -> None:
    """Compare each finished run trained again with its first training and write its
    retraining.json, where it has none yet (:func:`noamt_study.retrain.record_retraining`)."""
    for run_dir in retrain.retrained([runs_dir / job.name for job in jobs]):
        max_steps = configs[run_dir.name]["trainer"]["max_steps"]
        if (run_dir / retrain.RETRAINING_FILE).is_file() or collect.finished_end(run_dir, max_steps) is None:
            continue
        print(retrain.describe(run_dir, retrain.record_retraining(run_dir)), file=sys.stderr)


def set_aside_lost(
    jobs: Sequence[Job], configs: dict[str, dict], runs_dir: Path, beam_size: int, test_sets: bool, dry_run: bool
) -> None:
    """Set aside the first training of each finished run that still needs an evaluation but has
    no checkpoint_last.pt to score (:func:`noamt_study.retrain.set_aside`), so that it trains again."""
    for job in jobs:
        cfg, run_dir = configs[job.name], runs_dir / job.name
        if RunDir.at(run_dir).last.is_file() or collect.finished_end(run_dir, cfg["trainer"]["max_steps"]) is None:
            continue
        evaluation = pending_evaluation(job.name, cfg, run_dir, beam_size, test_sets)
        if evaluation is None:
            continue
        print(
            f"[compare] {job.name}: no checkpoint to score {', '.join(evaluation.splits)} with: "
            f"{'it would be' if dry_run else 'it is'} trained again, its first training kept in "
            f"{retrain.FIRST_TRAINING}/",
            file=sys.stderr,
        )
        if not dry_run:
            retrain.set_aside(run_dir)


def tune_peaks(
    study: Study, prepare: Callable[[list[Job]], dict[str, dict]], config_dir: Path, how: Execution
) -> tuple[int, list[Job], TuningChoice | None]:
    """Train and evaluate (validation only) each schedule's grid of peaks with the tuning seeds,
    growing a grid past an edge that holds its best peak (``plan.grid_extension``) until every
    best is interior or the extensions are spent, then keep the choice in tuning.json. A schedule
    whose peak tuning.json already holds keeps that grid and choice (:mod:`noamt_study.tuning_choice`).
    Returns the exit status (0: done), the grid's jobs and the choice (None unless done)."""
    tuning, runs_dir, first_grid = study.tuning, study.out / "runs", study.lr_scales
    kept = read_choice(study.out, tuning.criterion, tuning.seeds, first_grid)
    frozen = {name: kept.chosen[name] for name in study.schedules if kept and name in kept.chosen}
    grids = {name: sorted(kept.grids[name] if name in frozen else first_grid) for name in study.schedules}
    extensions = dict.fromkeys(study.schedules, 0)
    while True:
        jobs = [Job(name, seed, scale) for seed in tuning.seeds for name in study.schedules for scale in grids[name]]
        configs = prepare(jobs)
        print(f"[compare] tuning: {len(jobs)} runs on the peak grids ({grid_text(grids)})", file=sys.stderr)
        code = train_pending(study, jobs, configs, config_dir, how, test_sets=False)
        if code or how.dry_run:
            return code, jobs, None
        if not evaluate_runs(jobs, configs, runs_dir, study.beam_size, how.deadline, how.processes, test_sets=False):
            return EXIT_UNFINISHED, jobs, None
        settings = collect.summarize_settings([collect.collect_run(job, runs_dir / job.name) for job in jobs])
        best = {s.schedule: s.lr_scale for s in collect.select_best_peaks(settings, tuning.criterion)} | frozen
        grown = False
        for name in [name for name in study.schedules if name not in frozen]:
            scale = grid_extension(grids[name], best[name], extensions[name], tuning.max_extensions)
            if scale is not None:
                print(f"[compare] {name}: best peak at the edge (x{best[name]:g}), adding x{scale:g}", file=sys.stderr)
                grids[name] = sorted([*grids[name], scale])
                extensions[name] += 1
                grown = True
        if not grown:
            scores = {s.setting: validation_score(s, tuning.criterion) for s in settings}
            made = TuningChoice(tuning.criterion, tuning.seeds, first_grid, grids, best, scores)
            choice = kept.merged(made) if kept else made  # what was chosen before stays chosen
            if choice != kept:
                write_choice(study.out, choice)
            if frozen:
                print(f"[compare] peaks kept from {CHOICE_FILE}: {', '.join(frozen)}", file=sys.stderr)
            return 0, jobs, choice


def grid_text(grids: dict[str, list[float]]) -> str:
    return "; ".join(f"{name} x{', x'.join(f'{s:g}' for s in scales)}" for name, scales in grids.items())


def run_tuned(study: Study, prepare: Callable[[list[Job]], dict[str, dict]], config_dir: Path, how: Execution) -> int:
    """--tune: choose each schedule's peak on validation (``tune_peaks``), then train and evaluate
    every seed at the chosen peaks (the grid's runs there reused) and write the report."""
    code, grid_jobs, choice = tune_peaks(study, prepare, config_dir, how)
    if code or how.dry_run or choice is None:
        if how.dry_run:
            print("[compare] (dry run) the seeds train at the peaks the grid's validation scores choose")
        elif code == EXIT_UNFINISHED:
            print(f"[compare] stopped at --time-limit {how.time_limit:g} min: run the same command again to go on")
        return code
    chosen = {name: choice.chosen[name] for name in study.schedules}
    print("[compare] chosen peaks: " + ", ".join(f"{n} x{s:g}" for n, s in chosen.items()), file=sys.stderr)
    seed_jobs = [Job(name, seed, chosen[name]) for seed in study.seeds for name in study.schedules]
    jobs = list({job.name: job for job in [*grid_jobs, *seed_jobs]}.values())
    configs = prepare(jobs)
    return finish(study, seed_jobs, jobs, configs, config_dir, how, choice)


def finish(
    study: Study,
    to_test: Sequence[Job],
    jobs: Sequence[Job],
    configs: dict[str, dict],
    config_dir: Path,
    how: Execution,
    choice: TuningChoice | None = None,
) -> int:
    """Train ``to_test`` where unfinished, evaluate them on every split, write the report over
    ``jobs`` and print its conclusions (``choice``: with --tune, the peaks chosen)."""
    code = train_pending(study, to_test, configs, config_dir, how)
    if code or how.dry_run:
        return code
    if not evaluate_runs(to_test, configs, study.out / "runs", study.beam_size, how.deadline, how.processes):
        print(f"[compare] stopped at --time-limit {how.time_limit:g} min: run the same command again to go on")
        return EXIT_UNFINISHED
    paths, conclusions = write_outputs(study, jobs, configs, choice)
    print("\n".join(conclusions))
    print("\n".join(map(str, paths)))
    return 0


def run(study: Study, jobs: Sequence[Job], configs: dict[str, dict], config_dir: Path, how: Execution) -> int:
    """Train what is left, evaluate every run, write the report and print its conclusions."""
    return finish(study, jobs, jobs, configs, config_dir, how)
