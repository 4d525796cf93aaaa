"""Learning-rate schedules: one callable config per kind, a pure function of the update number.

Step ``k`` is the k-th optimizer update (``k = 1, 2, ...``) and the k-th update uses
``lr(k)``, where ``lr`` is a schedule config such as ``CosineConfig(...)``: its fields are the
schedule's parameters and calling it gives the learning rate. Every schedule is a pure function
of ``k`` (no state), so a resumed run that knows how many updates it has done gets exactly the
same learning rates.

Warmup convention shared by all schedules except ``noam`` (whose warmup is in its
formula): with ``w = max(warmup_steps, 1)``,

    lr(k) = warmup_init_lr + (peak_lr - warmup_init_lr) * k / w      for 1 <= k <= w

(``warmup_init_lr`` is 0 where a schedule has no such parameter), so ``lr(w) = peak_lr``
and ``lr(1) = peak_lr / w > 0``. ``warmup_steps = 0`` therefore means the same as
``warmup_steps = 1``: the first update already uses ``peak_lr``. Every schedule peaks
at ``k = peak_step = w`` and never exceeds its ``peak_lr``.

Derived defaults: a parameter left at None takes its value from the run
(``with_run_defaults``): ``d_model`` the model's width, ``total_steps`` the run's number of
updates, and ``peak_lr`` the Noam peak of the model, ``noam_peak(d_model, w)``.

``noam`` and ``inverse_sqrt`` have an optional cooldown to 0 at ``total_steps`` ("rsqrt +
cooldown"); with ``cooldown_fraction = 0``, the default, they do not read ``total_steps``.

See docs/schedules.md for how these map onto fairseq, Hugging Face transformers,
tensor2tensor and OpenNMT-py.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from noamt.bounds import at_least, fraction, is_finite, is_integer, one_of, positive, require

__all__ = [
    "CONFIGS",
    "DECAY_SHAPES",
    "ConstantConfig",
    "CooldownSchedule",
    "CosineConfig",
    "InverseSqrtConfig",
    "LinearConfig",
    "NoamConfig",
    "NoamCooldownConfig",
    "Schedule",
    "WSDConfig",
    "lr_lambda",
    "make_schedule",
    "noam_peak",
    "wsd_decay_start",
]


def _one_minus_sqrt(p: float) -> float:
    """1 - sqrt(p)."""
    return 1.0 - math.sqrt(p)


def _linear_shape(p: float) -> float:
    """1 - p."""
    return 1.0 - p


def _cosine_shape(p: float) -> float:
    """(1 + cos(pi * p)) / 2."""
    return 0.5 * (1.0 + math.cos(math.pi * p))


DECAY_SHAPES: dict[str, Callable[[float], float]] = {
    "1-sqrt": _one_minus_sqrt,
    "linear": _linear_shape,
    "cosine": _cosine_shape,
}
"""Decay shapes s(p) for p in [0, 1], the fraction of the decay phase done: s(0)=1, s(1)=0."""


def noam_peak(d_model: int, warmup_steps: int, factor: float = 1.0) -> float:
    """The Noam schedule's largest learning rate: factor * (d_model * warmup_steps)^-0.5."""
    return factor * (d_model * warmup_steps) ** -0.5


def _warmup(step: int, peak: float, warmup_steps: int, init_lr: float = 0.0) -> float:
    """init_lr + (peak - init_lr) * r, r = step / max(warmup_steps, 1); exactly peak at r = 1."""
    r = step / max(warmup_steps, 1)
    return peak * r + init_lr * (1.0 - r)


def _warmup_stable_decay(
    step: int,
    peak: float,
    warmup_steps: int,
    decay_start: int,
    total_steps: int,
    min_lr: float,
    shape: Callable[[float], float],
) -> float:
    """Warmup to k = w, peak until k = decay_start, shape-decay to min_lr at total_steps.

    lr(k) = min_lr + (peak - min_lr) * shape((k - decay_start) / (total_steps - decay_start))
    for decay_start < k < total_steps, and min_lr for k >= total_steps.
    """
    if step <= max(warmup_steps, 1):
        return _warmup(step, peak, warmup_steps)
    if step >= total_steps:
        return min_lr
    if step <= decay_start:
        return peak
    p = (step - decay_start) / (total_steps - decay_start)
    return min_lr + (peak - min_lr) * shape(p)


def wsd_decay_start(warmup_steps: int, total_steps: int, decay_fraction: float) -> int:
    """Last update of the stable phase of ``wsd`` (the decay runs from it to total_steps).

    decay_steps = max(1, floor(decay_fraction * total_steps + 1/2))   (round half up)
    decay_start = max(total_steps - decay_steps, max(warmup_steps, 1))

    A decay that would reach into the warmup starts right after it instead (empty stable
    phase); with decay_fraction = 1 the schedule is then ``linear``/``cosine``.
    """
    decay_steps = max(1, math.floor(decay_fraction * total_steps + 0.5))
    return max(total_steps - decay_steps, max(warmup_steps, 1))


def _cooled_down(
    step: int,
    base: Callable[[int], float],
    cooldown_start: int,
    total_steps: int,
    shape: Callable[[float], float],
) -> float:
    """``base`` until cooldown_start, then scaled by shape down to 0 at total_steps.

    With c = cooldown_start:
        lr(k) = base(k)                                         for k <= c
        lr(k) = base(c) * shape((k - c) / (total_steps - c))    for c < k < total_steps
        lr(k) = 0                                               for k >= total_steps
    """
    if step <= cooldown_start:
        return base(step)
    if step >= total_steps:
        return 0.0
    return base(cooldown_start) * shape((step - cooldown_start) / (total_steps - cooldown_start))


_T = TypeVar("_T")


class Schedule:
    """What every schedule config shares: its checks, ``peak_step`` and the derived defaults.

    A subclass is a dataclass whose first field is ``name`` (the kind) and which has a
    ``warmup_steps`` field; it defines ``peak_lr`` (a field or a property) and ``lr(k)``.
    """

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # set by each subclass's @dataclass
    name: str
    warmup_steps: int
    least_warmup = 0  # the smallest warmup_steps the formula accepts

    def __post_init__(self) -> None:
        """Check every parameter that is set; one-line ValueErrors naming the key as the command
        line writes it, ``schedule.<key>=<value>: must be ...``."""
        kind = dataclasses.fields(self)[0].default
        require("schedule.name", self.name, self.name == kind, f"{kind!r} (choose the kind with schedule=<name>)")
        params = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if params.get("d_model") is not None:
            at_least("schedule.d_model", params["d_model"], 1, " or null (null: model.d_model)")
        for key in ("factor", "peak_lr"):
            if params.get(key) is not None:
                positive(f"schedule.{key}", params[key])
        warmup = self.warmup_steps
        at_least(
            "schedule.warmup_steps", warmup, self.least_warmup, f" with schedule={kind}" if self.least_warmup else ""
        )
        peak = params.get("peak_lr")
        for key in ("warmup_init_lr", "min_lr"):
            if key in params:
                value, most = params[key], math.inf if peak is None else peak
                bound = "schedule.peak_lr" if peak is None else f"schedule.peak_lr={peak!r}"
                require(f"schedule.{key}", value, is_finite(value) and 0 <= value <= most, f"in [0, {bound}]")
        if "cooldown_fraction" in params:
            fraction("schedule.cooldown_fraction", params["cooldown_fraction"])
        if params.get("total_steps") is not None and "total_steps" not in self._unused():
            total, least_total = params["total_steps"], max(warmup, 1) + 1
            require("schedule.total_steps", total, is_integer(total) and total >= least_total,
                    f"an integer > schedule.warmup_steps={warmup} and >= 2, so at least {least_total} "
                    "(null takes trainer.max_steps)")  # fmt: skip
        if "decay_fraction" in params:
            value = params["decay_fraction"]
            require("schedule.decay_fraction", value, is_finite(value) and 0 < value <= 1, "in (0, 1]")
        for key in ("decay_shape", "cooldown_shape"):
            if key in params:
                one_of(f"schedule.{key}", params[key], DECAY_SHAPES)

    def _unused(self) -> set[str]:
        """The parameters that lr(k) does not read, so neither checked nor required: none."""
        return set()

    def _filled(self, key: str, value: _T | None) -> _T:
        """``value`` of the parameter ``key``, which with_run_defaults fills; still None: a one-line ValueError."""
        if value is None:
            raise ValueError(f"{self.name}: {key} not set (None takes the run's value: with_run_defaults)")
        return value

    @property
    def peak_step(self) -> int:
        """The first update that uses the peak learning rate: max(warmup_steps, 1)."""
        return max(self.warmup_steps, 1)

    @property
    def peak_lr(self) -> float | None:
        """The learning rate of update peak_step; None: the run's (with_run_defaults)."""
        raise NotImplementedError

    def with_run_defaults(self, d_model: int, max_steps: int) -> Schedule:
        """This schedule with each parameter left at None taken from the run: ``d_model`` the
        model's width, ``total_steps`` = max_steps, ``peak_lr`` = noam_peak(d_model, peak_step)."""
        run_values = {"d_model": d_model, "total_steps": max_steps, "peak_lr": noam_peak(d_model, self.peak_step)}
        unset = {f.name for f in dataclasses.fields(self) if getattr(self, f.name) is None}
        return dataclasses.replace(self, **{key: run_values[key] for key in unset & run_values.keys()})

    def __call__(self, step: int) -> float:
        """lr(step), the learning rate of the step-th optimizer update (step >= 1)."""
        if step < 1:
            raise ValueError(f"step must be >= 1 (the k-th optimizer update), got {step}")
        unused = self._unused()
        unset = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is None and f.name not in unused]
        if unset:
            raise ValueError(f"{self.name}: {', '.join(unset)} not set (None takes the run's value: with_run_defaults)")
        return self.lr(step)

    def lr(self, step: int) -> float:
        raise NotImplementedError


class CooldownSchedule(Schedule):
    """A schedule ``base(k)`` with an optional cooldown to 0 at total_steps ("rsqrt + cooldown").

    With cooldown_fraction > 0 and c = wsd_decay_start(warmup_steps, total_steps,
    cooldown_fraction), that is

        cooldown_steps = max(1, floor(cooldown_fraction * total_steps + 1/2))
        c              = max(total_steps - cooldown_steps, max(warmup_steps, 1))

    the learning rate is

        lr(k) = base(k)                                         for k <= c
        lr(k) = base(c) * shape((k - c) / (total_steps - c))    for c < k < total_steps
        lr(k) = 0                                               for k >= total_steps

    with shape = DECAY_SHAPES[cooldown_shape]. The cooldown scales the value base(c) at its
    start, not base(k) (Zhai et al. 2022; Hägele et al. 2024), so lr is continuous at c and
    exactly 0 at total_steps. With cooldown_fraction = 0, lr(k) = base(k) for every k and
    total_steps is not read (None or any value).

    A subclass is a dataclass with the fields ``total_steps``, ``cooldown_fraction`` and
    ``cooldown_shape``; it defines ``base(k)``.
    """

    total_steps: int | None
    cooldown_fraction: float
    cooldown_shape: str

    def base(self, step: int) -> float:
        """The schedule without cooldown at update ``step``."""
        raise NotImplementedError

    def _unused(self) -> set[str]:
        """total_steps when there is no cooldown (cooldown_fraction = 0)."""
        return {"total_steps"} if self.cooldown_fraction == 0 else set()

    def lr(self, step: int) -> float:
        if self.cooldown_fraction == 0:
            return self.base(step)
        total = self._filled("total_steps", self.total_steps)
        start = wsd_decay_start(self.warmup_steps, total, self.cooldown_fraction)
        return _cooled_down(step, self.base, start, total, DECAY_SHAPES[self.cooldown_shape])


@dataclasses.dataclass
class NoamConfig(CooldownSchedule):
    """Noam schedule (Vaswani et al. 2017, eq. 3), with an optional cooldown to 0.

        base(k) = factor * d_model^-0.5 * min(k^-0.5, k * warmup_steps^-1.5)

    Linear growth up to k = warmup_steps (warmup_steps >= 1), then decay as k^-0.5.
    Peak: factor * (d_model * warmup_steps)^-0.5 at k = warmup_steps. lr(k) = base(k) without
    a cooldown (cooldown_fraction = 0, the default); with one, base(k) up to the cooldown start
    c, then base(c) * shape((k - c) / (total_steps - c)), 0 from total_steps on
    (``CooldownSchedule``).
    """

    name: str = "noam"
    """The schedule's kind."""
    d_model: int | None = None
    """The d_model of the formula; None: the model's (model.d_model)."""
    warmup_steps: int = 4000
    """Updates of linear growth; the peak is at update warmup_steps (at least 1)."""
    factor: float = 1.0
    """Multiplies every learning rate of the schedule."""
    total_steps: int | None = None
    """The update from which the learning rate is 0 (read only with a cooldown); None: the run's trainer.max_steps."""
    cooldown_fraction: float = 0.0
    """The cooldown's share of total_steps, in [0, 1); 0: no cooldown."""
    cooldown_shape: str = "linear"
    """The cooldown's shape: 1-sqrt, linear or cosine."""

    least_warmup = 1

    @property
    def peak_lr(self) -> float:
        """factor * (d_model * warmup_steps)^-0.5."""
        return noam_peak(self._filled("d_model", self.d_model), self.warmup_steps, self.factor)

    def base(self, step: int) -> float:
        d_model = self._filled("d_model", self.d_model)
        return self.factor * d_model**-0.5 * min(step**-0.5, step * self.warmup_steps**-1.5)


@dataclasses.dataclass
class NoamCooldownConfig(NoamConfig):
    """``noam`` with other defaults: a cooldown over the last 20% of total_steps along
    1 - sqrt(p), rsqrt + cooldown with the (1-sqrt) shape of Hägele et al. 2024."""

    name: str = "noam_cooldown"
    """The schedule's kind."""
    cooldown_fraction: float = 0.2
    """The cooldown's share of total_steps, in [0, 1); 0: no cooldown."""
    cooldown_shape: str = "1-sqrt"
    """The cooldown's shape: 1-sqrt, linear or cosine."""


@dataclasses.dataclass
class InverseSqrtConfig(CooldownSchedule):
    """Linear warmup, then inverse square-root decay (fairseq's ``inverse_sqrt`` shape), with
    an optional cooldown to 0.

    With w = max(warmup_steps, 1):
        base(k) = warmup_init_lr + (peak_lr - warmup_init_lr) * k / w    for k <= w
        base(k) = peak_lr * sqrt(w / k)                                   for k > w

    warmup_steps = 0 gives base(k) = peak_lr / sqrt(k) (step 1 is the peak).
    With peak_lr = factor * (d_model * warmup_steps)^-0.5 and warmup_init_lr = 0 this is
    the Noam schedule. lr(k) = base(k) without a cooldown (cooldown_fraction = 0, the
    default); with one, base(k) up to the cooldown start c, then
    base(c) * shape((k - c) / (total_steps - c)), 0 from total_steps on (``CooldownSchedule``).
    """

    name: str = "inverse_sqrt"
    """The schedule's kind."""
    peak_lr: float | None = None
    """The learning rate at the end of warmup; None: the Noam peak of the model."""
    warmup_steps: int = 4000
    """Updates of linear warmup from warmup_init_lr to peak_lr (0: none)."""
    warmup_init_lr: float = 0.0
    """The learning rate the warmup starts from, in [0, peak_lr]."""
    total_steps: int | None = None
    """The update from which the learning rate is 0 (read only with a cooldown); None: the run's trainer.max_steps."""
    cooldown_fraction: float = 0.0
    """The cooldown's share of total_steps, in [0, 1); 0: no cooldown."""
    cooldown_shape: str = "linear"
    """The cooldown's shape: 1-sqrt, linear or cosine."""

    def base(self, step: int) -> float:
        w, peak = self.peak_step, self._filled("peak_lr", self.peak_lr)
        if step <= w:
            return _warmup(step, peak, self.warmup_steps, self.warmup_init_lr)
        return peak * math.sqrt(w / step)


@dataclasses.dataclass
class ConstantConfig(Schedule):
    """Optional linear warmup, then constant.

    lr(k) = peak_lr * k / warmup_steps    for k <= warmup_steps
    lr(k) = peak_lr                       otherwise
    """

    name: str = "constant"
    """The schedule's kind."""
    peak_lr: float | None = None
    """The learning rate after warmup; None: the Noam peak of the model."""
    warmup_steps: int = 4000
    """Updates of linear warmup from 0 to peak_lr (0: none)."""

    def lr(self, step: int) -> float:
        peak = self._filled("peak_lr", self.peak_lr)
        if step <= self.warmup_steps:
            return _warmup(step, peak, self.warmup_steps)
        return peak


@dataclasses.dataclass
class CosineConfig(Schedule):
    """Linear warmup, then half a cosine from peak_lr to min_lr.

    With w = max(warmup_steps, 1) and p = (k - w) / (total_steps - w):
        lr(k) = peak_lr * k / w                                         for k <= w
        lr(k) = min_lr + (peak_lr - min_lr) * (1 + cos(pi * p)) / 2     for w < k < total_steps
        lr(k) = min_lr                                                  for k >= total_steps
    """

    name: str = "cosine"
    """The schedule's kind."""
    peak_lr: float | None = None
    """The learning rate at the end of warmup; None: the Noam peak of the model."""
    warmup_steps: int = 4000
    """Updates of linear warmup from 0 to peak_lr (0: none)."""
    total_steps: int | None = None
    """The update from which the learning rate is min_lr; None: the run's trainer.max_steps."""
    min_lr: float = 0.0
    """The learning rate at and after total_steps, in [0, peak_lr]."""

    def lr(self, step: int) -> float:
        peak, total = self._filled("peak_lr", self.peak_lr), self._filled("total_steps", self.total_steps)
        return _warmup_stable_decay(step, peak, self.warmup_steps, self.peak_step, total, self.min_lr, _cosine_shape)


@dataclasses.dataclass
class LinearConfig(Schedule):
    """Linear warmup, then linear decay from peak_lr to min_lr.

    With w = max(warmup_steps, 1) and p = (k - w) / (total_steps - w):
        lr(k) = peak_lr * k / w                             for k <= w
        lr(k) = min_lr + (peak_lr - min_lr) * (1 - p)       for w < k < total_steps
        lr(k) = min_lr                                      for k >= total_steps
    """

    name: str = "linear"
    """The schedule's kind."""
    peak_lr: float | None = None
    """The learning rate at the end of warmup; None: the Noam peak of the model."""
    warmup_steps: int = 4000
    """Updates of linear warmup from 0 to peak_lr (0: none)."""
    total_steps: int | None = None
    """The update from which the learning rate is min_lr; None: the run's trainer.max_steps."""
    min_lr: float = 0.0
    """The learning rate at and after total_steps, in [0, peak_lr]."""

    def lr(self, step: int) -> float:
        peak, total = self._filled("peak_lr", self.peak_lr), self._filled("total_steps", self.total_steps)
        return _warmup_stable_decay(step, peak, self.warmup_steps, self.peak_step, total, self.min_lr, _linear_shape)


@dataclasses.dataclass
class WSDConfig(Schedule):
    """Warmup-stable-decay (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training
    Beyond Fixed Training Durations").

    With w = max(warmup_steps, 1), s = wsd_decay_start(warmup_steps, total_steps,
    decay_fraction) and p = (k - s) / (total_steps - s):
        lr(k) = peak_lr * k / w                                     for k <= w
        lr(k) = peak_lr                                             for w < k <= s
        lr(k) = min_lr + (peak_lr - min_lr) * shape(p)              for s < k < total_steps
        lr(k) = min_lr                                              for k >= total_steps
    shape(p) = 1 - sqrt(p) ("1-sqrt"), 1 - p ("linear") or (1 + cos(pi * p)) / 2 ("cosine").
    """

    name: str = "wsd"
    """The schedule's kind."""
    peak_lr: float | None = None
    """The learning rate of the stable phase; None: the Noam peak of the model."""
    warmup_steps: int = 4000
    """Updates of linear warmup from 0 to peak_lr (0: none)."""
    total_steps: int | None = None
    """The update from which the learning rate is min_lr; None: the run's trainer.max_steps."""
    decay_fraction: float = 0.2
    """The decay phase's share of total_steps, in (0, 1]."""
    decay_shape: str = "1-sqrt"
    """The decay's shape: 1-sqrt, linear or cosine."""
    min_lr: float = 0.0
    """The learning rate at and after total_steps, in [0, peak_lr]."""

    def lr(self, step: int) -> float:
        peak, total = self._filled("peak_lr", self.peak_lr), self._filled("total_steps", self.total_steps)
        decay_start = wsd_decay_start(self.warmup_steps, total, self.decay_fraction)
        shape = DECAY_SHAPES[self.decay_shape]
        return _warmup_stable_decay(step, peak, self.warmup_steps, decay_start, total, self.min_lr, shape)


CONFIGS: dict[str, type[Schedule]] = {
    "noam": NoamConfig,
    "noam_cooldown": NoamCooldownConfig,
    "inverse_sqrt": InverseSqrtConfig,
    "constant": ConstantConfig,
    "cosine": CosineConfig,
    "linear": LinearConfig,
    "wsd": WSDConfig,
}
"""Each kind of schedule by name (``schedule=<name>`` on the command line)."""


def make_schedule(name: str, **params: Any) -> Schedule:
    """The schedule of kind ``name`` with ``params``; one-line ValueErrors for an unknown kind or key."""
    if name not in CONFIGS:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(sorted(CONFIGS))}")
    accepted = [f.name for f in dataclasses.fields(CONFIGS[name]) if f.name != "name"]
    unknown = [key for key in params if key not in accepted]
    if unknown:
        raise ValueError(f"{name}: unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    return CONFIGS[name](**params)


def lr_lambda(schedule: Callable[[int], float]) -> Callable[[int], float]:
    """Adapt ``lr(step)`` to ``torch.optim.lr_scheduler.LambdaLR``: returns ``e -> lr(e + 1)``.

    LambdaLR sets each group's lr to ``base_lr * lr_lambda(last_epoch)``. last_epoch is 0
    right after construction, so update 1 uses ``base_lr * lr(1)``; with
    ``scheduler.step()`` called once after every ``optimizer.step()``, last_epoch is k
    after the k-th update, so update k + 1 uses ``base_lr * lr(k + 1)``. Create the
    optimizer with ``lr=1.0`` so that update k uses exactly ``lr(k)``; any other base lr
    multiplies the whole schedule by it.
    """
    return lambda epoch: schedule(epoch + 1)
