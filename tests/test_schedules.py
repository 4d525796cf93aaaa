"""Tests of noamt.schedules.

Expected values are written out from the formulas (each regime resolved by hand), never
computed by calling the module under test; the one exception, BEFORE_COOLDOWN, pins the
values noam and inverse_sqrt had before their cooldown existed, compared bit for bit. Public
implementations (fairseq, Hugging Face transformers, tensor2tensor, OpenNMT-py) are
re-implemented here from their formulas to test the conversions stated in docs/schedules.md.
"""

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from noamt import schedules as S
from noamt.cli.config import field_docs

REL = 1e-12
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# Tables: steps 1, 2, warmup-1, warmup, warmup+1, 2*warmup, total-1, total, total+1
# ---------------------------------------------------------------------------

NOAM = dict(d_model=512, warmup_steps=4000, factor=2.0)
NOAM_TABLE = [
    (1, 2.0 * 512**-0.5 * 1 * 4000**-1.5),
    (2, 2.0 * 512**-0.5 * 2 * 4000**-1.5),
    (3999, 2.0 * 512**-0.5 * 3999 * 4000**-1.5),
    (4000, 2.0 * 512**-0.5 * 4000**-0.5),
    (4001, 2.0 * 512**-0.5 * 4001**-0.5),
    (8000, 2.0 * 512**-0.5 * 8000**-0.5),
    (99999, 2.0 * 512**-0.5 * 99999**-0.5),
    (100000, 2.0 * 512**-0.5 * 100000**-0.5),
    (100001, 2.0 * 512**-0.5 * 100001**-0.5),
]

INV = dict(peak_lr=5e-4, warmup_steps=4000, warmup_init_lr=1e-7)
INV_TABLE = [
    (1, 1e-7 + (5e-4 - 1e-7) * 1 / 4000),
    (2, 1e-7 + (5e-4 - 1e-7) * 2 / 4000),
    (3999, 1e-7 + (5e-4 - 1e-7) * 3999 / 4000),
    (4000, 5e-4),
    (4001, 5e-4 * (4000 / 4001) ** 0.5),
    (8000, 5e-4 * 0.5**0.5),
    (99999, 5e-4 * (4000 / 99999) ** 0.5),
    (100000, 1e-4),
    (100001, 5e-4 * (4000 / 100001) ** 0.5),
]

CONST = dict(peak_lr=1e-3, warmup_steps=100)
CONST_TABLE = [
    (1, 1e-5),
    (2, 2e-5),
    (99, 9.9e-4),
    (100, 1e-3),
    (101, 1e-3),
    (200, 1e-3),
    (999, 1e-3),
    (1000, 1e-3),
    (1001, 1e-3),
]

DECAY = dict(peak_lr=1e-3, warmup_steps=100, total_steps=1000, min_lr=1e-5)
WARMUP_ROWS = [(1, 1e-5), (2, 2e-5), (99, 9.9e-4), (100, 1e-3)]
END_ROWS = [(1000, 1e-5), (1001, 1e-5), (5000, 1e-5)]


def _cos_row(step: int, done: float, span: float) -> tuple[int, float]:
    return step, 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * done / span))


COSINE_TABLE = [
    *WARMUP_ROWS,
    _cos_row(101, 1, 900),
    _cos_row(200, 100, 900),
    (550, 1e-5 + (1e-3 - 1e-5) * 0.5),
    _cos_row(999, 899, 900),
    *END_ROWS,
]

LINEAR_TABLE = [
    *WARMUP_ROWS,
    (101, 1e-5 + (1e-3 - 1e-5) * 899 / 900),
    (200, 1e-5 + (1e-3 - 1e-5) * 800 / 900),
    (550, 1e-5 + (1e-3 - 1e-5) * 0.5),
    (999, 1e-5 + (1e-3 - 1e-5) * 1 / 900),
    *END_ROWS,
]

# decay_fraction 0.2 of 1000 -> 200 decay updates, stable through k = 800.
WSD = dict(DECAY, decay_fraction=0.2)
WSD_STABLE_ROWS = [*WARMUP_ROWS, (101, 1e-3), (200, 1e-3), (799, 1e-3), (800, 1e-3)]
WSD_SQRT_TABLE = [
    *WSD_STABLE_ROWS,
    (801, 1e-5 + (1e-3 - 1e-5) * (1 - (1 / 200) ** 0.5)),
    (900, 1e-5 + (1e-3 - 1e-5) * (1 - 0.5**0.5)),
    (999, 1e-5 + (1e-3 - 1e-5) * (1 - (199 / 200) ** 0.5)),
    *END_ROWS,
]
WSD_LINEAR_TABLE = [
    *WSD_STABLE_ROWS,
    (801, 1e-5 + (1e-3 - 1e-5) * 199 / 200),
    (900, 1e-5 + (1e-3 - 1e-5) * 0.5),
    (999, 1e-5 + (1e-3 - 1e-5) * 1 / 200),
    *END_ROWS,
]
WSD_COSINE_TABLE = [
    *WSD_STABLE_ROWS,
    _cos_row(801, 1, 200),
    (900, 1e-5 + (1e-3 - 1e-5) * 0.5),
    _cos_row(999, 199, 200),
    *END_ROWS,
]

TABLES = [
    ("noam", NOAM, NOAM_TABLE),
    ("inverse_sqrt", INV, INV_TABLE),
    ("constant", CONST, CONST_TABLE),
    ("cosine", DECAY, COSINE_TABLE),
    ("linear", DECAY, LINEAR_TABLE),
    ("wsd", WSD, WSD_SQRT_TABLE),
    ("wsd", dict(WSD, decay_shape="1-sqrt"), WSD_SQRT_TABLE),
    ("wsd", dict(WSD, decay_shape="linear"), WSD_LINEAR_TABLE),
    ("wsd", dict(WSD, decay_shape="cosine"), WSD_COSINE_TABLE),
]

ZERO_WARMUP_TABLES = [
    ("noam", dict(d_model=256, warmup_steps=1), [(1, 256**-0.5), (2, 256**-0.5 * 2**-0.5)]),
    (
        "inverse_sqrt",
        dict(peak_lr=5e-4, warmup_steps=0),
        [(1, 5e-4), (2, 5e-4 * 2**-0.5), (100, 5e-5), (10000, 5e-6)],
    ),
    (
        "inverse_sqrt",
        dict(peak_lr=5e-4, warmup_steps=0, warmup_init_lr=1e-7),
        [(1, 5e-4), (4, 2.5e-4)],
    ),
    ("constant", dict(peak_lr=1e-3, warmup_steps=0), [(1, 1e-3), (2, 1e-3), (10**6, 1e-3)]),
    (
        "cosine",
        dict(peak_lr=1e-3, warmup_steps=0, total_steps=1000),
        [(1, 1e-3), (2, 1e-3 * 0.5 * (1 + math.cos(math.pi / 999))), (1000, 0.0)],
    ),
    (
        "linear",
        dict(peak_lr=1e-3, warmup_steps=0, total_steps=1000),
        [(1, 1e-3), (2, 1e-3 * 998 / 999), (999, 1e-3 / 999), (1000, 0.0)],
    ),
    (
        "wsd",
        dict(peak_lr=1e-3, warmup_steps=0, total_steps=1000),
        [(1, 1e-3), (800, 1e-3), (801, 1e-3 * (1 - (1 / 200) ** 0.5)), (1000, 0.0)],
    ),
    (
        "wsd",
        dict(peak_lr=1e-3, warmup_steps=0, total_steps=10, decay_fraction=1.0, decay_shape="linear"),
        [(1, 1e-3), (2, 1e-3 * 8 / 9), (9, 1e-3 / 9), (10, 0.0)],
    ),
]


# Cooldown (rsqrt + cooldown): 0.2 of 100000 -> 20000 cooldown updates from c = 80000, each
# scaling base(c); base is the schedule without cooldown.
NOAM_COOLDOWN = dict(NOAM, total_steps=100_000, cooldown_fraction=0.2)
NOAM_C = 2.0 * 512**-0.5 * 80000**-0.5  # base(c)
NOAM_BEFORE_COOLDOWN_ROWS = [
    (1, 2.0 * 512**-0.5 * 1 * 4000**-1.5),
    (4000, 2.0 * 512**-0.5 * 4000**-0.5),
    (79999, 2.0 * 512**-0.5 * 79999**-0.5),
    (80000, NOAM_C),
]
NOAM_COOLDOWN_END_ROWS = [(100000, 0.0), (100001, 0.0), (200000, 0.0)]
NOAM_LINEAR_COOLDOWN_TABLE = [
    *NOAM_BEFORE_COOLDOWN_ROWS,
    (80001, NOAM_C * 19999 / 20000),
    (90000, NOAM_C * 0.5),
    (99999, NOAM_C * 1 / 20000),
    *NOAM_COOLDOWN_END_ROWS,
]
NOAM_SQRT_COOLDOWN_TABLE = [
    *NOAM_BEFORE_COOLDOWN_ROWS,
    (80001, NOAM_C * (1 - (1 / 20000) ** 0.5)),
    (90000, NOAM_C * (1 - 0.5**0.5)),
    (99999, NOAM_C * (1 - (19999 / 20000) ** 0.5)),
    *NOAM_COOLDOWN_END_ROWS,
]

INV_COOLDOWN = dict(INV, total_steps=100_000, cooldown_fraction=0.2, cooldown_shape="cosine")
INV_C = 5e-4 * 0.05**0.5  # base(80000) = peak_lr * sqrt(4000 / 80000)
INV_COSINE_COOLDOWN_TABLE = [
    (4000, 5e-4),
    (79999, 5e-4 * (4000 / 79999) ** 0.5),
    (80000, INV_C),
    (80001, INV_C * 0.5 * (1 + math.cos(math.pi / 20000))),
    (90000, INV_C * 0.5),
    (99999, INV_C * 0.5 * (1 + math.cos(math.pi * 19999 / 20000))),
    (100000, 0.0),
    (100001, 0.0),
]

# peak_lr / sqrt(k) cooled down over 0.2 of 20 updates: c = 16, base(16) = 1e-3 / 4.
SMALL_COOLDOWN = dict(peak_lr=1e-3, warmup_steps=0, total_steps=20, cooldown_fraction=0.2)
SMALL_BEFORE_COOLDOWN_ROWS = [(1, 1e-3), (4, 5e-4), (15, 1e-3 * 15**-0.5), (16, 2.5e-4)]
SMALL_LINEAR_COOLDOWN_TABLE = [
    *SMALL_BEFORE_COOLDOWN_ROWS,
    (17, 1.875e-4),
    (18, 1.25e-4),
    (19, 6.25e-5),
    (20, 0.0),
    (21, 0.0),
]
SMALL_SQRT_COOLDOWN_TABLE = [
    *SMALL_BEFORE_COOLDOWN_ROWS,
    (17, 2.5e-4 * 0.5),
    (18, 2.5e-4 * (1 - 0.5**0.5)),
    (19, 2.5e-4 * (1 - 0.75**0.5)),
    (20, 0.0),
    (21, 0.0),
]

COOLDOWN_TABLES = [
    ("noam", NOAM_COOLDOWN, NOAM_LINEAR_COOLDOWN_TABLE),
    ("noam", dict(NOAM_COOLDOWN, cooldown_shape="1-sqrt"), NOAM_SQRT_COOLDOWN_TABLE),
    ("noam_cooldown", dict(NOAM, total_steps=100_000), NOAM_SQRT_COOLDOWN_TABLE),
    ("inverse_sqrt", INV_COOLDOWN, INV_COSINE_COOLDOWN_TABLE),
    ("inverse_sqrt", SMALL_COOLDOWN, SMALL_LINEAR_COOLDOWN_TABLE),
    ("inverse_sqrt", dict(SMALL_COOLDOWN, cooldown_shape="1-sqrt"), SMALL_SQRT_COOLDOWN_TABLE),
]


@pytest.mark.parametrize(("name", "params", "table"), TABLES + ZERO_WARMUP_TABLES + COOLDOWN_TABLES)
def test_table(name, params, table):
    lr = S.make_schedule(name, **params)
    for step, expected in table:
        assert lr(step) == pytest.approx(expected, rel=REL, abs=0.0), (name, step)


# lr(k) of noam and inverse_sqrt before the cooldown existed, printed with repr.
BEFORE_COOLDOWN_STEPS = [1, 2, 3999, 4000, 4001, 8000, 99999, 100000, 100001]
BEFORE_COOLDOWN = [
    (
        "noam",
        NOAM,
        [
            3.493856214843422e-07,
            6.987712429686844e-07,
            0.0013971931003158842,
            0.0013975424859373686,
            0.001397367825874706,
            0.0009882117688026187,
            0.00027950989474044135,
            0.00027950849718747374,
            0.0002795070996554693,
        ],
    ),
    (
        "noam",
        dict(d_model=256, warmup_steps=1),
        [
            0.0625,
            0.04419417382415922,
            0.0009883353184397584,
            0.0009882117688026185,
            0.0009880882654879073,
            0.0006987712429686843,
            0.00019764334197970416,
            0.0001976423537605237,
            0.00019764136555616642,
        ],
    ),
    (
        "inverse_sqrt",
        INV,
        [
            2.24975e-07,
            3.4995e-07,
            0.000499875025,
            0.0005,
            0.0004999375117163092,
            0.0003535533905932738,
            0.00010000050000375004,
            0.0001,
            9.999950000374998e-05,
        ],
    ),
    (
        "inverse_sqrt",
        dict(peak_lr=5e-4, warmup_steps=0),
        [
            0.0005,
            0.0003535533905932738,
            7.90668254751807e-06,
            7.905694150420949e-06,
            7.904706123903258e-06,
            5.5901699437494744e-06,
            1.5811467358376334e-06,
            1.5811388300841898e-06,
            1.5811309244493316e-06,
        ],
    ),
]


@pytest.mark.parametrize(("name", "params", "values"), BEFORE_COOLDOWN)
def test_without_cooldown_every_lr_is_unchanged(name, params, values):
    lr = S.make_schedule(name, **params)
    assert lr.cooldown_fraction == 0.0 and lr.total_steps is None
    assert [lr(k) for k in BEFORE_COOLDOWN_STEPS] == values
    # total_steps is neither checked nor read without a cooldown: a run of 0 (no limit) or
    # fewer updates than the warmup is still valid
    for max_steps in (0, 1, 100, 5000):
        resolved = lr.with_run_defaults(d_model=512, max_steps=max_steps)
        assert resolved.total_steps == max_steps
        assert [resolved(k) for k in BEFORE_COOLDOWN_STEPS] == values
    shaped = S.make_schedule(name, **params, cooldown_shape="cosine")
    assert [shaped(k) for k in BEFORE_COOLDOWN_STEPS] == values


def test_noam_peak_decimal():
    # 1 / sqrt(512 * 4000) = 1 / sqrt(2048000) = 1 / 1431.0835055998654...
    lr = S.make_schedule("noam", d_model=512, warmup_steps=4000)
    assert lr(4000) == pytest.approx(6.987712429686844e-4, rel=REL)
    assert lr.peak_lr == pytest.approx(6.987712429686844e-4, rel=REL)


@pytest.mark.parametrize("name", sorted(S.CONFIGS))
@pytest.mark.parametrize("step", [0, -1])
def test_step_below_one_raises(name, step):
    params = {"noam": NOAM, "noam_cooldown": NOAM_COOLDOWN, "inverse_sqrt": INV, "constant": CONST}.get(name, DECAY)
    with pytest.raises(ValueError, match=r"step must be >= 1"):
        S.make_schedule(name, **params)(step)


# ---------------------------------------------------------------------------
# Noam == inverse_sqrt with peak_lr = factor * (d_model * warmup)^-0.5
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("d_model", "warmup", "factor", "stride"),
    [(512, 4000, 1.0, 1), (1024, 8000, 2.0, 7), (256, 1, 0.5, 7), (512, 37, 1.3, 7)],
)
def test_noam_equals_inverse_sqrt(d_model, warmup, factor, stride):
    noam = S.make_schedule("noam", d_model=d_model, warmup_steps=warmup, factor=factor)
    inv = S.make_schedule("inverse_sqrt", peak_lr=factor * (d_model * warmup) ** -0.5, warmup_steps=warmup)
    steps = sorted({*range(1, 50001, stride), warmup - 1 or 1, warmup, warmup + 1, 50000})
    for k in steps:
        assert inv(k) == pytest.approx(noam(k), rel=REL), k


# ---------------------------------------------------------------------------
# Warmup monotonicity, peaks
# ---------------------------------------------------------------------------

PEAK_CASES = [
    ("noam", NOAM),
    ("noam", dict(d_model=512, warmup_steps=1)),
    ("inverse_sqrt", INV),
    ("inverse_sqrt", dict(peak_lr=5e-4, warmup_steps=0, warmup_init_lr=1e-7)),
    ("constant", CONST),
    ("constant", dict(peak_lr=1e-3, warmup_steps=0)),
    ("cosine", DECAY),
    ("cosine", dict(peak_lr=1e-3, warmup_steps=0, total_steps=1000)),
    ("linear", DECAY),
    ("linear", dict(peak_lr=1e-3, warmup_steps=0, total_steps=1000)),
    ("wsd", WSD),
    ("wsd", dict(WSD, decay_fraction=1.0, decay_shape="cosine")),
    ("wsd", dict(peak_lr=1e-3, warmup_steps=0, total_steps=1000)),
    ("noam", dict(NOAM_COOLDOWN, total_steps=20_000)),
    ("noam_cooldown", dict(d_model=512, warmup_steps=4, total_steps=20)),
    ("inverse_sqrt", dict(INV_COOLDOWN, total_steps=20_000)),
    ("inverse_sqrt", SMALL_COOLDOWN),
]


@pytest.mark.parametrize(("name", "params"), PEAK_CASES)
def test_warmup_is_monotonic_and_positive(name, params):
    lr = S.make_schedule(name, **params)
    peak_at = lr.peak_step
    values = [lr(k) for k in range(1, peak_at + 1)]
    assert values[0] > 0
    assert all(a <= b for a, b in zip(values, values[1:], strict=False))


@pytest.mark.parametrize(("name", "params"), PEAK_CASES)
def test_peak_is_max_over_steps(name, params):
    lr = S.make_schedule(name, **params)
    horizon = max(getattr(lr, "total_steps", None) or 0, lr.warmup_steps) + 2000
    values = [lr(k) for k in range(1, horizon + 1)]
    best = max(values)
    assert lr.peak_lr == pytest.approx(best, rel=REL)
    assert values.index(best) + 1 == lr.peak_step
    assert lr(lr.peak_step) == pytest.approx(lr.peak_lr, rel=REL)


def test_warmup_end_is_exactly_peak():
    assert S.InverseSqrtConfig(**INV)(4000) == 5e-4
    assert S.ConstantConfig(**CONST)(100) == 1e-3
    assert S.CosineConfig(**DECAY)(100) == 1e-3
    assert S.WSDConfig(**WSD)(100) == 1e-3


# ---------------------------------------------------------------------------
# WSD decay start
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("warmup", "total", "fraction", "start"),
    [
        (100, 1000, 0.2, 800),
        (0, 1001, 0.5, 500),  # 500.5 rounds half up to 501 decay updates
        (0, 1001, 0.25, 751),  # 250.25 -> 250
        (0, 10, 0.7, 3),  # 0.7 * 10 == 7.000000000000001 -> 7
        (0, 100, 0.29, 71),  # 0.29 * 100 == 28.999999999999996 -> 29
        (0, 2, 0.1, 1),  # at least one decay update
        (500, 1000, 1.0, 500),  # decay never reaches into the warmup
        (900, 1000, 0.5, 900),
    ],
)
def test_wsd_decay_start(warmup, total, fraction, start):
    assert S.wsd_decay_start(warmup, total, fraction) == start
    lr = S.make_schedule("wsd", peak_lr=1e-3, warmup_steps=warmup, total_steps=total, decay_fraction=fraction)
    assert lr(start) == 1e-3
    assert lr(start + 1) < 1e-3
    assert lr(total) == 0.0


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_wsd_full_decay_is_linear_or_cosine(shape):
    wsd = S.make_schedule("wsd", **dict(WSD, decay_fraction=1.0, decay_shape=shape))
    other = S.make_schedule(shape, **DECAY)
    for k in range(1, 1101):
        assert wsd(k) == pytest.approx(other(k), rel=REL)


# ---------------------------------------------------------------------------
# Where the decays end; the cooldown
# ---------------------------------------------------------------------------


def test_decays_end_exactly_at_their_floor():
    run = dict(d_model=512, max_steps=1000)
    # linear to zero at trainer.max_steps with the default min_lr: D2Z (Bergsma et al. 2025)
    d2z = S.LinearConfig(peak_lr=1e-3, warmup_steps=100).with_run_defaults(**run)
    assert d2z.total_steps == 1000 and d2z.min_lr == 0.0
    assert d2z(999) == pytest.approx(1e-3 / 900, rel=REL)
    assert d2z(1000) == 0.0 and d2z(1001) == 0.0
    cosine = S.CosineConfig(peak_lr=1e-3, warmup_steps=100, min_lr=1e-5).with_run_defaults(**run)
    assert cosine(999) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 899 / 900)), rel=REL)
    assert cosine(1000) == 1e-5 and cosine(1001) == 1e-5
    wsd = S.WSDConfig(peak_lr=1e-3, warmup_steps=100, decay_shape="1-sqrt").with_run_defaults(**run)
    assert wsd(999) == pytest.approx(1e-3 * (1 - (199 / 200) ** 0.5), rel=REL)
    assert wsd(1000) == 0.0 and wsd(1001) == 0.0


COOLDOWN_CASES = [
    ("noam", dict(d_model=512, warmup_steps=40, total_steps=1000, cooldown_fraction=0.2, cooldown_shape=shape))
    for shape in S.DECAY_SHAPES
] + [
    ("noam_cooldown", dict(d_model=512, warmup_steps=40, total_steps=1000)),
    ("inverse_sqrt", dict(peak_lr=1e-3, warmup_steps=40, warmup_init_lr=1e-7, total_steps=999, cooldown_fraction=0.5)),
    ("inverse_sqrt", dict(peak_lr=1e-3, warmup_steps=0, total_steps=2, cooldown_fraction=0.1)),
]


@pytest.mark.parametrize(("name", "params"), COOLDOWN_CASES)
def test_the_cooldown_continues_the_schedule_and_ends_at_zero(name, params):
    lr = S.make_schedule(name, **params)
    base = dataclasses.replace(lr, cooldown_fraction=0.0)
    total = lr.total_steps
    start = S.wsd_decay_start(lr.warmup_steps, total, lr.cooldown_fraction)
    assert [lr(k) for k in range(1, start + 1)] == [base(k) for k in range(1, start + 1)]
    values = [lr(k) for k in range(lr.peak_step, total + 3)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert values[-3:] == [0.0, 0.0, 0.0] and lr(total - 1) > 0.0
    assert lr.peak_lr == base.peak_lr and lr.peak_step == base.peak_step


def test_before_its_cooldown_a_run_has_the_learning_rates_of_any_longer_run():
    short = S.make_schedule("noam", d_model=512, warmup_steps=40, total_steps=1000, cooldown_fraction=0.2)
    for total in (1001, 1500, 10_000):
        longer = dataclasses.replace(short, total_steps=total)
        assert [longer(k) for k in range(1, 801)] == [short(k) for k in range(1, 801)]


@pytest.mark.parametrize(
    ("warmup", "total", "fraction", "start"),
    [
        (0, 1001, 0.5, 500),  # 500.5 rounds half up to 501 cooldown updates
        (0, 1001, 0.25, 751),
        (0, 100, 0.29, 71),  # 0.29 * 100 == 28.999999999999996 -> 29
        (0, 2, 0.1, 1),  # at least one cooldown update
        (900, 1000, 0.5, 900),  # the cooldown never reaches into the warmup
    ],
)
def test_cooldown_start(warmup, total, fraction, start):
    # peak_lr = 1: base(k) = sqrt(w / k) after the warmup, w = max(warmup_steps, 1)
    lr = S.make_schedule(
        "inverse_sqrt", peak_lr=1.0, warmup_steps=warmup, total_steps=total, cooldown_fraction=fraction
    )
    base = max(warmup, 1) ** 0.5 * start**-0.5
    assert lr(start) == pytest.approx(base, rel=REL)
    assert lr(start + 1) == pytest.approx(base * (1 - 1 / (total - start)), rel=REL)
    assert lr(total) == 0.0


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_a_cooldown_from_the_peak_is_linear_or_cosine(shape):
    # 0.95 of 1100 updates would start the cooldown at 55, in the warmup: it starts at the peak
    cooled = S.make_schedule(
        "inverse_sqrt", peak_lr=1e-3, warmup_steps=100, total_steps=1100, cooldown_fraction=0.95, cooldown_shape=shape
    )
    other = S.make_schedule(shape, peak_lr=1e-3, warmup_steps=100, total_steps=1100)
    for k in range(1, 1201):
        assert cooled(k) == pytest.approx(other(k), rel=REL, abs=0.0), k


def test_the_cooldown_is_set_on_the_command_line():
    hydra = pytest.importorskip("hydra")
    from noamt.cli.config import register_configs, to_train_config

    run = ["schedule.warmup_steps=100", "trainer.max_steps=1000"]
    register_configs()
    with hydra.initialize_config_module(config_module="noamt.configs", version_base=None):
        keys = hydra.compose(
            "train",
            overrides=["schedule=noam", "schedule.cooldown_fraction=0.2", "schedule.cooldown_shape=1-sqrt", *run],
        )
        option = hydra.compose("train", overrides=["schedule=noam_cooldown", *run])
    lr, preset = (to_train_config(cfg).resolved().schedule for cfg in (keys, option))
    assert (lr.name, lr.total_steps, lr.cooldown_fraction, lr.cooldown_shape) == ("noam", 1000, 0.2, "1-sqrt")
    assert dataclasses.asdict(preset) == dataclasses.asdict(lr) | {"name": "noam_cooldown"}
    assert [preset(k) for k in range(1, 1002)] == [lr(k) for k in range(1, 1002)]
    assert lr.d_model == 256 and lr(800) == pytest.approx(256**-0.5 * 800**-0.5, rel=REL)
    assert lr(801) == pytest.approx(256**-0.5 * 800**-0.5 * (1 - (1 / 200) ** 0.5), rel=REL) and lr(1000) == 0.0


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------

INVALID = [
    ("noam", dict(d_model=512, warmup_steps=0), r"^schedule.warmup_steps=0: must be at least 1 with schedule=noam$"),
    ("noam", dict(d_model=0, warmup_steps=4000), r"^schedule.d_model=0: must be at least 1 or null"),
    (
        "noam",
        dict(d_model=512, warmup_steps=4000, factor=-1.0),
        r"^schedule.factor=-1.0: must be a finite number > 0$",
    ),
    (
        "noam",
        dict(d_model=512, warmup_steps=4000, peak_lr=1e-3),
        r"^noam: unknown parameter\(s\) peak_lr; accepted: d_model, warmup_steps, factor, total_steps, "
        r"cooldown_fraction, cooldown_shape$",
    ),
    (
        "noam",
        dict(NOAM, total_steps=1000, cooldown_fraction=1.0),
        r"^schedule.cooldown_fraction=1.0: must be in \[0, 1\)$",
    ),
    ("noam", dict(NOAM, cooldown_fraction=-0.1), r"^schedule.cooldown_fraction=-0.1: must be in \[0, 1\)"),
    ("noam", dict(NOAM, cooldown_fraction=float("inf")), r"^schedule.cooldown_fraction=inf: must be in \[0, 1\)"),
    ("inverse_sqrt", dict(INV, cooldown_fraction=True), r"^schedule.cooldown_fraction=True: must be in \[0, 1\)"),
    (
        "inverse_sqrt",
        dict(INV, cooldown_shape="exp"),
        r"^schedule.cooldown_shape='exp': must be one of 1-sqrt, linear, cosine$",
    ),
    (
        "noam",
        dict(NOAM, total_steps=4000, cooldown_fraction=0.2),
        r"^schedule.total_steps=4000: must be an integer > schedule.warmup_steps=4000 and >= 2, so at least 4001 "
        r"\(null takes trainer.max_steps\)$",
    ),
    (
        "noam_cooldown",
        dict(NOAM, total_steps=1e5),
        r"^schedule.total_steps=100000.0: must be an integer > schedule.warmup_steps",
    ),
    ("inverse_sqrt", dict(peak_lr=0.0, warmup_steps=10), r"^schedule.peak_lr=0.0: must be a finite number > 0$"),
    (
        "inverse_sqrt",
        dict(peak_lr=1e-3, warmup_steps=-1),
        r"^schedule.warmup_steps=-1: must be at least 0$",
    ),
    (
        "inverse_sqrt",
        dict(peak_lr=1e-3, warmup_steps=10, warmup_init_lr=-1e-7),
        r"^schedule.warmup_init_lr=-1e-07: must be in \[0, schedule.peak_lr=0.001\]$",
    ),
    (
        "inverse_sqrt",
        dict(peak_lr=1e-3, warmup_steps=10, warmup_init_lr=2e-3),
        r"^schedule.warmup_init_lr=0.002: must be in \[0, schedule.peak_lr=0.001\]$",
    ),
    ("constant", dict(peak_lr=1e-3, warmup_steps=2.5), r"^schedule.warmup_steps=2.5: must be an integer$"),
    ("constant", dict(peak_lr=float("nan")), r"^schedule.peak_lr=nan: must be a finite number > 0$"),
    ("constant", dict(peak_lr=True), r"^schedule.peak_lr=True: must be a finite number > 0$"),
    (
        "cosine",
        dict(peak_lr=1e-3, warmup_steps=100, total_steps=100),
        r"^schedule.total_steps=100: must be an integer > schedule.warmup_steps=100",
    ),
    (
        "linear",
        dict(peak_lr=1e-3, warmup_steps=0, total_steps=1),
        r"^schedule.total_steps=1: must be an integer > schedule.warmup_steps=0 and >= 2, so at least 2 ",
    ),
    (
        "cosine",
        dict(DECAY, min_lr=2e-3),
        r"^schedule.min_lr=0.002: must be in \[0, schedule.peak_lr=0.001\]$",
    ),
    ("wsd", dict(WSD, decay_fraction=0.0), r"^schedule.decay_fraction=0.0: must be in \(0, 1\]$"),
    ("wsd", dict(WSD, decay_fraction=1.5), r"^schedule.decay_fraction=1.5: must be in \(0, 1\]$"),
    (
        "wsd",
        dict(WSD, decay_shape="exp"),
        r"^schedule.decay_shape='exp': must be one of 1-sqrt, linear, cosine$",
    ),
    (
        "warmup_cosine",
        {},
        r"^unknown schedule 'warmup_cosine'; known: constant, cosine, inverse_sqrt, linear, noam, "
        r"noam_cooldown, wsd$",
    ),
]


@pytest.mark.parametrize(("name", "params", "message"), INVALID)
def test_invalid_parameters(name, params, message):
    with pytest.raises(ValueError, match=message) as info:
        S.make_schedule(name, **params)
    assert "\n" not in str(info.value)


def test_make_schedule_fills_the_dataclass_defaults():
    assert S.make_schedule("constant", peak_lr=1e-3) == S.ConstantConfig(peak_lr=1e-3, warmup_steps=4000)
    assert dataclasses.asdict(S.make_schedule("wsd", peak_lr=1e-3, warmup_steps=10, total_steps=100)) == {
        "name": "wsd",
        "peak_lr": 1e-3,
        "warmup_steps": 10,
        "total_steps": 100,
        "decay_fraction": 0.2,
        "decay_shape": "1-sqrt",
        "min_lr": 0.0,
    }


# ---------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(S.CONFIGS))
def test_a_config_is_named_by_its_kind_and_every_parameter_is_documented(name):
    config = S.CONFIGS[name]()
    assert config.name == name and dataclasses.fields(config)[0].name == "name"
    assert set(field_docs(S.CONFIGS[name])) == {f.name for f in dataclasses.fields(config)}
    with pytest.raises(ValueError, match=rf"^schedule.name='other': must be '{name}' \(choose the kind with schedule="):
        S.CONFIGS[name](name="other")


def test_run_defaults_fill_only_what_is_unset():
    cosine = S.CosineConfig(warmup_steps=100).with_run_defaults(d_model=512, max_steps=1000)
    assert cosine == S.CosineConfig(peak_lr=(512 * 100) ** -0.5, warmup_steps=100, total_steps=1000)
    constant = S.ConstantConfig(peak_lr=1e-3, warmup_steps=0).with_run_defaults(d_model=512, max_steps=1000)
    assert constant.peak_lr == 1e-3 and constant.peak_step == 1
    assert S.ConstantConfig(warmup_steps=0).with_run_defaults(d_model=512, max_steps=1).peak_lr == 512**-0.5
    noam = S.NoamConfig(factor=2.0).with_run_defaults(d_model=256, max_steps=1000)
    assert noam.d_model == 256 and noam.peak_lr == pytest.approx(2.0 * (256 * 4000) ** -0.5, rel=REL)
    assert S.NoamConfig(d_model=512).with_run_defaults(d_model=256, max_steps=1000).d_model == 512
    with pytest.raises(
        ValueError, match=r"^schedule.total_steps=4000: must be an integer > schedule.warmup_steps=4000"
    ):
        S.CosineConfig().with_run_defaults(d_model=512, max_steps=4000)
    assert S.NoamConfig(total_steps=500).with_run_defaults(d_model=256, max_steps=1000).total_steps == 500
    cooled = S.InverseSqrtConfig(cooldown_fraction=0.2).with_run_defaults(d_model=512, max_steps=10_000)
    assert cooled.total_steps == 10_000 and cooled.peak_lr == (512 * 4000) ** -0.5
    with pytest.raises(ValueError, match=r"^schedule.total_steps=0: must be an integer > schedule.warmup_steps=4000"):
        S.NoamCooldownConfig().with_run_defaults(d_model=512, max_steps=0)  # 0: no limit, so no end to cool down to


def test_an_unresolved_schedule_says_what_is_unset():
    with pytest.raises(ValueError, match=r"^cosine: peak_lr, total_steps not set"):
        S.CosineConfig()(1)
    with pytest.raises(ValueError, match=r"^noam: d_model not set"):
        S.NoamConfig()(1)
    with pytest.raises(ValueError, match=r"^inverse_sqrt: total_steps not set"):
        S.InverseSqrtConfig(peak_lr=1e-3, cooldown_fraction=0.2)(1)


def test_a_schedule_from_omegaconf_is_its_dataclass():
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.merge(
        omegaconf.OmegaConf.structured(S.LinearConfig),
        {"peak_lr": 1e-3, "warmup_steps": 100, "total_steps": 1000, "min_lr": 1e-5},
    )
    lr = omegaconf.OmegaConf.to_object(cfg)
    assert isinstance(lr, S.LinearConfig)
    assert lr(200) == pytest.approx(LINEAR_TABLE[5][1], rel=REL)


# ---------------------------------------------------------------------------
# LambdaLR alignment: update k uses lr(k)
# ---------------------------------------------------------------------------


def _lrs_used_by_updates(lr_lambda, n_updates, base_lr=1.0, state=None):
    """Run SGD on one parameter with gradient 1 and return the lr each update applied."""
    param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=base_lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    if state is not None:
        optimizer.load_state_dict(state[0])
        scheduler.load_state_dict(state[1])
    used = []
    for _ in range(n_updates):
        with torch.no_grad():
            param.zero_()
        param.grad = torch.ones_like(param)
        optimizer.step()
        used.append(-param.item())
        scheduler.step()
    return used, (optimizer.state_dict(), scheduler.state_dict())


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("noam", dict(d_model=512, warmup_steps=4)),
        ("wsd", dict(peak_lr=1e-3, warmup_steps=3, total_steps=8, decay_fraction=0.5)),
        ("noam", dict(d_model=512, warmup_steps=3, total_steps=8, cooldown_fraction=0.5)),
    ],
)
def test_lambda_lr_alignment(name, params):
    lr = S.make_schedule(name, **params)
    used, _ = _lrs_used_by_updates(S.lr_lambda(lr), 10)
    assert used == [lr(k) for k in range(1, 11)]


def test_lambda_lr_resume():
    lr = S.make_schedule("noam", d_model=512, warmup_steps=4)
    first, state = _lrs_used_by_updates(S.lr_lambda(lr), 5)
    rest, _ = _lrs_used_by_updates(S.lr_lambda(lr), 5, state=state)
    assert first + rest == [lr(k) for k in range(1, 11)]


# ---------------------------------------------------------------------------
# Public implementations, re-implemented from their formulas
# ---------------------------------------------------------------------------


def fairseq_inverse_sqrt(num_updates, *, lr, warmup_updates, warmup_init_lr=-1.0):
    """fairseq InverseSquareRootSchedule.step_update(num_updates)."""
    if warmup_init_lr < 0:
        warmup_init_lr = 0.0 if warmup_updates > 0 else lr
    if num_updates < warmup_updates:
        return warmup_init_lr + num_updates * (lr - warmup_init_lr) / warmup_updates
    return lr * warmup_updates**0.5 * num_updates**-0.5


def fairseq_update_lr(k, **kw):
    """fairseq's k-th update runs with the lr set after update k-1 (num_updates = k-1)."""
    return fairseq_inverse_sqrt(k - 1, **kw)


@pytest.mark.parametrize("init", [-1.0, 0.0, 1e-7])
def test_fairseq_formula_equals_inverse_sqrt(init):
    ours = S.make_schedule("inverse_sqrt", peak_lr=5e-4, warmup_steps=4000, warmup_init_lr=max(init, 0.0))
    fairseq = dict(lr=5e-4, warmup_updates=4000, warmup_init_lr=init)
    for n in sorted({*range(1, 50001, 3), 3999, 4000, 4001}):
        assert fairseq_inverse_sqrt(n, **fairseq) == pytest.approx(ours(n), rel=REL), n
    # The k-th fairseq update uses num_updates = k - 1: one step behind noamt.
    assert fairseq_update_lr(1, **fairseq) == max(init, 0.0)
    for k in range(2, 12001, 7):
        assert fairseq_update_lr(k, **fairseq) == pytest.approx(ours(k - 1), rel=REL), k
        assert fairseq_update_lr(k, **fairseq) != pytest.approx(ours(k), rel=1e-9), k


def hf_inverse_sqrt_lambda(current_step, *, num_warmup_steps, timescale=None):
    """transformers.get_inverse_sqrt_schedule's multiplier of the optimizer's lr."""
    if timescale is None:
        timescale = num_warmup_steps or 10_000
    if current_step < num_warmup_steps:
        return current_step / max(1, num_warmup_steps)
    return (timescale / (current_step + timescale - num_warmup_steps)) ** 0.5


@pytest.mark.parametrize("timescale", [None, 4000])
def test_hf_inverse_sqrt_conversion(timescale):
    ours = S.make_schedule("inverse_sqrt", peak_lr=5e-4, warmup_steps=4000)
    for s in sorted({*range(1, 50001, 3), 3999, 4000, 4001}):
        hf = 5e-4 * hf_inverse_sqrt_lambda(s, num_warmup_steps=4000, timescale=timescale)
        assert hf == pytest.approx(ours(s), rel=REL), s


def test_hf_inverse_sqrt_is_one_update_behind():
    ours = S.make_schedule("inverse_sqrt", peak_lr=5e-4, warmup_steps=5)
    hf_used, _ = _lrs_used_by_updates(lambda s: hf_inverse_sqrt_lambda(s, num_warmup_steps=5), 20, base_lr=5e-4)
    ours_used, _ = _lrs_used_by_updates(S.lr_lambda(ours), 20)
    assert hf_used[0] == 0.0
    for k in range(2, 21):
        assert hf_used[k - 1] == pytest.approx(ours(k - 1), rel=REL)
        assert ours_used[k - 1] == ours(k)


def t2t_rsqrt(step_num, *, constant, warmup_steps, hidden_size):
    """tensor2tensor "constant*linear_warmup*rsqrt_decay*rsqrt_hidden_size"."""
    linear_warmup = min(1.0, step_num / warmup_steps)
    rsqrt_decay = max(step_num, warmup_steps) ** -0.5
    return constant * linear_warmup * rsqrt_decay * hidden_size**-0.5


def t2t_legacy_noam(global_step, *, learning_rate, warmup_steps, hidden_size):
    """tensor2tensor legacy schedule, learning_rate_decay_scheme="noam", an Adam optimizer."""
    g = global_step + 1
    noam = 5000.0 * hidden_size**-0.5 * min(g * warmup_steps**-1.5, g**-0.5)
    return noam * 0.002 * learning_rate


def test_t2t_rsqrt_conversion():
    t2t = dict(constant=2.0, warmup_steps=8000, hidden_size=512)
    ours = S.make_schedule("noam", d_model=512, warmup_steps=8000, factor=2.0)
    steps = sorted({*range(1, 50001, 3), 7999, 8000, 8001})
    for s in steps:
        assert t2t_rsqrt(s, **t2t) == pytest.approx(ours(s), rel=REL), s
    # Update k runs at global_step k - 1, so the first update has lr 0.
    assert t2t_rsqrt(0, **t2t) == 0.0


def test_t2t_legacy_noam_is_exact():
    ours = S.make_schedule("noam", d_model=512, warmup_steps=4000, factor=10 * 0.2)
    for k in sorted({*range(1, 50001, 3), 3999, 4000, 4001}):
        t2t = t2t_legacy_noam(k - 1, learning_rate=0.2, warmup_steps=4000, hidden_size=512)
        assert t2t == pytest.approx(ours(k), rel=REL), k


def test_opennmt_noam_is_exact():
    def noam_decay(step, warmup_steps, model_size):
        return model_size**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)

    ours = S.make_schedule("noam", d_model=512, warmup_steps=8000, factor=2.0)
    # OpenNMT-py's decay step starts at 1 and the k-th update uses learning_rate * decay(k).
    for k in sorted({*range(1, 50001, 3), 7999, 8000, 8001}):
        assert 2.0 * noam_decay(k, 8000, 512) == pytest.approx(ours(k), rel=REL), k
