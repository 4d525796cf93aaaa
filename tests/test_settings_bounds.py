"""Every numeric setting is refused outside its meaning in one line naming it as it is typed: a
config key in ``__post_init__`` (``<group>.<key>=<value>: must be ...``), a command-line option of
noamt-compare and of the scripts by its argparse ``type`` (argparse's usage, then
``<prog>: error: argument --<option>: <value>: must be ...``). NaN and infinities included, and
the upper bounds that keep a value from filling memory (or overflowing) before it fails."""

import math
import os
import pickle
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from noamt import schedules as S
from noamt.decoding import DecodingConfig
from noamt.decoding.config import MAX_BEAM_SIZE, MAX_LENGTH_PENALTY, MAX_OUTPUT_LENGTH
from noamt.device import MAX_THREADS, DeviceConfig
from noamt.engines import EngineConfig
from noamt.model import MAX_WIDTH, ModelConfig
from noamt.optim import OptimConfig
from noamt.trainer import TrainerConfig
from noamt_study.cli import parse_args
from noamt_study.plan import Profile, plan_jobs

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
NAN, INF = math.nan, math.inf

REFUSED = [  # (how the config is made, the one line it raises)
    (lambda: TrainerConfig(clip_norm=NAN), "trainer.clip_norm=nan: must be a finite number >= 0"),
    (lambda: TrainerConfig(clip_norm=INF), "trainer.clip_norm=inf: must be a finite number >= 0"),
    (lambda: TrainerConfig(val_bleu_max_examples=-5), "trainer.val_bleu_max_examples=-5: must be at least 1 or null"),
    (lambda: TrainerConfig(seed=2**32), "trainer.seed=4294967296: must be at most 4294967295"),
    (lambda: TrainerConfig(pad_to_multiple=1025), "trainer.pad_to_multiple=1025: must be at most 1024"),
    (lambda: TrainerConfig(label_smoothing=INF), "trainer.label_smoothing=inf: must be in [0, 1)"),
    (lambda: ModelConfig(encoder_layers=-2), "model.encoder_layers=-2: must be at least 1"),
    (lambda: ModelConfig(decoder_layers=1025), "model.decoder_layers=1025: must be at most 1024"),
    (lambda: ModelConfig(d_ff=0), "model.d_ff=0: must be at least 1"),
    (lambda: ModelConfig(d_ff=2**30), "model.d_ff=1073741824: must be at most 262144"),
    (lambda: ModelConfig(n_heads=0), "model.n_heads=0: must be at least 1"),
    (lambda: ModelConfig(d_model=0), "model.d_model=0: must be at least 1"),
    (lambda: ModelConfig(d_model=2**20, n_heads=1), "model.d_model=1048576: must be at most 65536"),
    (lambda: ModelConfig(max_positions=10**6), "model.max_positions=1000000: must be at most 65536"),
    (lambda: DecodingConfig(max_len_a=NAN), "decoding.max_len_a=nan: must be a finite number >= 0"),
    (lambda: DecodingConfig(max_len_a=INF), "decoding.max_len_a=inf: must be a finite number >= 0"),
    (lambda: DecodingConfig(max_len_a=1e300), "decoding.max_len_a=1e+300: must be at most 65536"),
    (lambda: DecodingConfig(max_len_b=10**20), "decoding.max_len_b=100000000000000000000: must be at most 65536"),
    (lambda: DecodingConfig(min_len=65537), "decoding.min_len=65537: must be at most 65536"),
    (lambda: DecodingConfig(length_penalty=NAN), "decoding.length_penalty=nan: must be in [-10, 10]"),
    (lambda: DecodingConfig(length_penalty=2000.0), "decoding.length_penalty=2000.0: must be in [-10, 10]"),
    (lambda: DecodingConfig(beam_size=0), "decoding.beam_size=0: must be at least 1"),
    (lambda: DecodingConfig(beam_size=100_000), "decoding.beam_size=100000: must be at most 1024"),
    (lambda: S.NoamConfig(factor=-1.0), "schedule.factor=-1.0: must be a finite number > 0"),
    (lambda: S.NoamConfig(factor=NAN), "schedule.factor=nan: must be a finite number > 0"),
    (lambda: S.NoamConfig(warmup_steps=-100), "schedule.warmup_steps=-100: must be at least 1 with schedule=noam"),
    (lambda: S.NoamConfig(d_model=0), "schedule.d_model=0: must be at least 1 or null (null: model.d_model)"),
    (lambda: S.NoamCooldownConfig(cooldown_fraction=NAN), "schedule.cooldown_fraction=nan: must be in [0, 1)"),
    (lambda: S.InverseSqrtConfig(peak_lr=INF), "schedule.peak_lr=inf: must be a finite number > 0"),
    (lambda: S.InverseSqrtConfig(warmup_init_lr=NAN), "schedule.warmup_init_lr=nan: must be in [0, schedule.peak_lr]"),
    (lambda: S.ConstantConfig(warmup_steps=-100), "schedule.warmup_steps=-100: must be at least 0"),
    (lambda: S.ConstantConfig(peak_lr=0.0), "schedule.peak_lr=0.0: must be a finite number > 0"),
    (lambda: S.CosineConfig(peak_lr=1e-3, min_lr=INF), "schedule.min_lr=inf: must be in [0, schedule.peak_lr=0.001]"),
    (lambda: S.LinearConfig(min_lr=-1e-5), "schedule.min_lr=-1e-05: must be in [0, schedule.peak_lr]"),
    (lambda: S.WSDConfig(decay_fraction=1.5), "schedule.decay_fraction=1.5: must be in (0, 1]"),
    (lambda: S.WSDConfig(decay_fraction=NAN), "schedule.decay_fraction=nan: must be in (0, 1]"),
    (
        lambda: S.WSDConfig(warmup_steps=10, total_steps=10),
        "schedule.total_steps=10: must be an integer > schedule.warmup_steps=10 and >= 2, so at least 11 "
        "(null takes trainer.max_steps)",
    ),
    (lambda: OptimConfig(eps=0.0), "optim.eps=0.0: must be a finite number > 0"),
    (lambda: OptimConfig(eps=NAN), "optim.eps=nan: must be a finite number > 0"),
    (lambda: OptimConfig(weight_decay=INF), "optim.weight_decay=inf: must be a finite number >= 0"),
    (lambda: OptimConfig(weight_decay=-0.1), "optim.weight_decay=-0.1: must be a finite number >= 0"),
    (lambda: OptimConfig(betas=(0.9, 1.0)), "optim.betas=[0.9, 1.0]: must be two numbers in [0, 1)"),
    (lambda: OptimConfig(betas=(NAN, 0.98)), "optim.betas=[nan, 0.98]: must be two numbers in [0, 1)"),
    (lambda: OptimConfig(r=11.0), "optim.r=11.0: must be in [0, 10]"),
    (lambda: OptimConfig(weight_lr_power=NAN), "optim.weight_lr_power=nan: must be in [0, 10]"),
    (lambda: DeviceConfig(num_threads=100_000), "device.num_threads=100000: must be at most 1024"),
    (lambda: EngineConfig("ck.pt", max_tokens=0), "max_tokens=0: must be at least 1"),
    (lambda: Profile("compare_smoke", beam_size=0), "beam_size=0: must be at least 1"),
    (lambda: Profile("compare_smoke", seeds=[1, -2]), "seeds=-2: must be at least 0"),
]


@pytest.mark.parametrize("make, message", REFUSED, ids=[message.split(": must")[0] for _, message in REFUSED])
def test_a_value_outside_its_meaning_is_refused_in_one_line_naming_the_key(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value) == message


def test_a_refusal_crosses_a_process_boundary_whole():
    """noamt-compare evaluates runs in worker processes: a refusal there is pickled back to it."""
    with pytest.raises(ValueError) as err:
        DecodingConfig(beam_size=0)
    back = pickle.loads(pickle.dumps(err.value))
    assert type(back) is type(err.value) and str(back) == "decoding.beam_size=0: must be at least 1"


def test_the_bounds_that_must_agree_do():
    """The output limit never passes max_positions - 1, so the decoding bounds are the model's; the
    scripts that import no noamt restate them."""
    assert MAX_OUTPUT_LENGTH == MAX_WIDTH
    for script in ("check_ctranslate2_export.py", "check_transformers_pipeline.py"):
        names = runpy.run_path(str(SCRIPTS / script), run_name="bounds")
        assert (names["MAX_BEAM_SIZE"], names["MAX_OUTPUT_LENGTH"]) == (MAX_BEAM_SIZE, MAX_OUTPUT_LENGTH)
    names = runpy.run_path(str(SCRIPTS / "check_ctranslate2_export.py"), run_name="bounds")
    assert (names["MAX_LENGTH_PENALTY"], names["MAX_THREADS"]) == (MAX_LENGTH_PENALTY, MAX_THREADS)


def test_the_largest_values_in_bounds_are_accepted():
    DecodingConfig(beam_size=MAX_BEAM_SIZE, length_penalty=-MAX_LENGTH_PENALTY, max_len_a=65536.0, max_len_b=65536)
    ModelConfig(encoder_layers=1024, decoder_layers=1024, d_model=65536, d_ff=262144, max_positions=65536)
    TrainerConfig(seed=2**32 - 1, pad_to_multiple=1024)
    OptimConfig(r=10.0, weight_lr_power=10.0)


def test_lr_scales_are_finite_and_positive():
    with pytest.raises(ValueError, match=r"^lr scales must be finite numbers > 0, got \[1.0, nan\]$"):
        plan_jobs(["noam"], [1], [1.0, NAN])


COMPARE = [  # (options after --profile smoke, the option refused, its value, what it must be)
    (["--time-limit", "nan"], "--time-limit", "nan", "a finite number > 0"),
    (["--time-limit", "inf"], "--time-limit", "inf", "a finite number > 0"),
    (["--time-limit", "0"], "--time-limit", "0", "a finite number > 0"),
    (["--beam-size", "0"], "--beam-size", "0", "at least 1"),
    (["--beam-size", "100000"], "--beam-size", "100000", "at most 1024"),
    (["--beam-size", "2.5"], "--beam-size", "2.5", "an integer"),
    (["--jobs", "0"], "--jobs", "0", "at least 1"),
    (["--seeds", "1,-2"], "--seeds", "-2", "at least 0"),
    (["--seeds", "4294967296"], "--seeds", "4294967296", "at most 4294967295"),
    (["--lr-sweep", "--lr-scales", "1,nan"], "--lr-scales", "nan", "a finite number > 0"),
    (["--tune", "--lr-scales", "-1"], "--lr-scales", "-1", "a finite number > 0"),
    (["--tune", "--tune-seeds", "x"], "--tune-seeds", "x", "an integer"),
]


@pytest.mark.parametrize("args, option, value, expected", COMPARE, ids=[" ".join(c[0]) for c in COMPARE])
def test_noamt_compare_refuses_an_option_in_one_line(args, option, value, expected, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--profile", "smoke", "--out", str(tmp_path / "s"), *args])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"noamt-compare: error: argument {option}: {value}: must be {expected}"


SCRIPT_CASES = [  # (script, its arguments, the option refused, its value, what it must be)
    (
        "compare_schedules.py",
        ["--profile", "smoke", "--time-limit", "nan"],
        "--time-limit",
        "nan",
        "a finite number > 0",
    ),
    ("benchmark_engines.py", ["--beam", "0"], "--beam", "0", "at least 1"),
    ("benchmark_engines.py", ["--beam", "5000"], "--beam", "5000", "at most 1024"),
    ("benchmark_engines.py", ["--threads", "0"], "--threads", "0", "at least 1"),
    ("benchmark_engines.py", ["--length", "100000"], "--length", "100000", "at most 65536"),
    ("benchmark_peers.py", ["--block", "0"], "--block", "0", "at least 1"),
    ("benchmark_peers.py", ["--decode-sentences", "-1"], "--decode-sentences", "-1", "at least 0"),
    ("benchmark_throughput.py", ["--updates", "0"], "--updates", "0", "at least 1"),
    ("benchmark_throughput.py", ["--warmup", "-1"], "--warmup", "-1", "at least 0"),
    ("bootstrap_bleu_interval.py", ["--confidence", "1"], "--confidence", "1", "in (0, 1)"),
    ("bootstrap_bleu_interval.py", ["--confidence", "nan"], "--confidence", "nan", "in (0, 1)"),
    ("bootstrap_bleu_interval.py", ["--threshold", "inf"], "--threshold", "inf", "a finite number"),
    ("bootstrap_bleu_interval.py", ["--resamples", "1"], "--resamples", "1", "at least 2"),
    ("bootstrap_bleu_interval.py", ["--seed", "-1"], "--seed", "-1", "at least 0"),
    ("calibrate_significance.py", ["--replicates", "0"], "--replicates", "0", "at least 1"),
    ("calibrate_significance.py", ["--resamples", "10000000"], "--resamples", "10000000", "at most 100000"),
    ("seed_null_check.py", ["--resamples", "0"], "--resamples", "0", "at least 2"),
    ("tune_decoding.py", ["--beams", "5,0"], "--beams", "0", "at least 1"),
    ("tune_decoding.py", ["--length-penalties", "1,nan"], "--length-penalties", "nan", "in [-10, 10]"),
    ("tune_decoding.py", ["--max-tokens", "0"], "--max-tokens", "0", "at least 1"),
    ("check_ctranslate2_export.py", ["--beam", "0"], "--beam", "0", "in [1, 1024]"),
    ("check_ctranslate2_export.py", ["--length-penalty", "nan"], "--length-penalty", "nan", "in [-10, 10]"),
    ("check_ctranslate2_export.py", ["--max-len-a", "inf"], "--max-len-a", "inf", "in [0, 65536]"),
    ("check_ctranslate2_export.py", ["--min-len", "x"], "--min-len", "x", "an integer"),
    ("check_ctranslate2_export.py", ["--threads", "0"], "--threads", "0", "in [1, 1024]"),
    ("check_transformers_pipeline.py", ["--beam", "2000"], "--beam", "2000", "in [1, 1024]"),
    ("check_transformers_pipeline.py", ["--max-len-b", "-1"], "--max-len-b", "-1", "in [0, 65536]"),
]


@pytest.mark.parametrize(
    "script, args, option, value, expected", SCRIPT_CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in SCRIPT_CASES]
)
def test_a_script_refuses_an_option_in_one_line(script, args, option, value, expected, capsys, monkeypatch):
    """Run in this process as ``python scripts/<script> ...`` would (argparse stops before any work)."""
    monkeypatch.setattr(sys, "argv", [script, *args])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(SCRIPTS / script), run_name="__main__")
    assert exit_.value.code == 2
    prog = "noamt-compare" if script == "compare_schedules.py" else script
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"{prog}: error: argument {option}: {value}: must be {expected}"


@pytest.mark.slow
@pytest.mark.parametrize(
    "command, message",
    [
        (["noamt.cli.train", "schedule.warmup_steps=-100"],
         "noamt-train: schedule.warmup_steps=-100: must be at least 1 with schedule=noam"),
        (["noamt.cli.translate", "checkpoint=ck.pt", "decoding.max_len_a=inf"],
         "noamt-translate: decoding.max_len_a=inf: must be a finite number >= 0"),
    ],
    ids=["train", "translate"],
)  # fmt: skip
def test_a_command_refuses_a_setting_in_one_line_without_a_traceback(command, message, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NOAMT_RUNS_DIR": str(tmp_path / "runs")}
    proc = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env, input="", check=False)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in proc.stderr
