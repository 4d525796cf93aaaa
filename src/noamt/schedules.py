"""Learning-rate schedules: pure functions of the update number.

Step ``k`` is the k-th optimizer update (``k = 1, 2, ...``) and the k-th update uses
``lr(k)``. Every schedule is a pure function of ``k`` (no state), so a resumed run that
knows how many updates it has done gets exactly the same learning rates.

Warmup convention shared by all schedules except ``noam`` (whose warmup is in its
formula): with ``w = max(warmup_steps, 1)``,

    lr(k) = warmup_init_lr + (peak_lr - warmup_init_lr) * k / w      for 1 <= k <= w

(``warmup_init_lr`` is 0 where a schedule has no such parameter), so ``lr(w) = peak_lr``
and ``lr(1) = peak_lr / w > 0``. ``warmup_steps = 0`` therefore means the same as
``warmup_steps = 1``: the first update already uses ``peak_lr``. Every schedule peaks
at ``k = w`` and never exceeds ``peak_lr(name, **params)``.

See docs/schedules.md for how these map onto fairseq, Hugging Face transformers,
tensor2tensor and OpenNMT-py.
"""

import dataclasses
import functools
import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "CONFIGS",
    "DECAY_SHAPES",
    "SCHEDULES",
    "ConstantConfig",
    "CosineConfig",
    "InverseSqrtConfig",
    "LinearConfig",
    "NoamConfig",
    "WSDConfig",
    "constant",
    "cosine",
    "inverse_sqrt",
    "linear",
    "lr_lambda",
    "make_schedule",
    "noam",
    "peak_lr",
    "peak_step",
    "schedule_from_config",
    "validate",
    "wsd",
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


def _check_step(step: int) -> None:
    if step < 1:
        raise ValueError(f"step must be >= 1 (the k-th optimizer update), got {step}")


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


def noam(step: int, *, d_model: int, warmup_steps: int, factor: float = 1.0) -> float:
    """Noam schedule (Vaswani et al. 2017, eq. 3).

    lr(k) = factor * d_model^-0.5 * min(k^-0.5, k * warmup_steps^-1.5)

    Linear growth up to k = warmup_steps (warmup_steps >= 1), then decay as k^-0.5.
    Peak: factor * (d_model * warmup_steps)^-0.5 at k = warmup_steps.
    """
    _check_step(step)
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


def inverse_sqrt(step: int, *, peak_lr: float, warmup_steps: int, warmup_init_lr: float = 0.0) -> float:
    """Linear warmup, then inverse square-root decay (fairseq's ``inverse_sqrt`` shape).

    With w = max(warmup_steps, 1):
        lr(k) = warmup_init_lr + (peak_lr - warmup_init_lr) * k / w    for k <= w
        lr(k) = peak_lr * sqrt(w / k)                                   for k > w

    warmup_steps = 0 gives lr(k) = peak_lr / sqrt(k) (step 1 is the peak).
    With peak_lr = factor * (d_model * warmup_steps)^-0.5 and warmup_init_lr = 0 this is
    the Noam schedule.
    """
    _check_step(step)
    w = max(warmup_steps, 1)
    if step <= w:
        return _warmup(step, peak_lr, warmup_steps, warmup_init_lr)
    return peak_lr * math.sqrt(w / step)


def constant(step: int, *, peak_lr: float, warmup_steps: int = 0) -> float:
    """Optional linear warmup, then constant.

    lr(k) = peak_lr * k / warmup_steps    for k <= warmup_steps
    lr(k) = peak_lr                       otherwise
    """
    _check_step(step)
    if step <= warmup_steps:
        return _warmup(step, peak_lr, warmup_steps)
    return peak_lr


def cosine(step: int, *, peak_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Linear warmup, then half a cosine from peak_lr to min_lr.

    With w = max(warmup_steps, 1) and p = (k - w) / (total_steps - w):
        lr(k) = peak_lr * k / w                                         for k <= w
        lr(k) = min_lr + (peak_lr - min_lr) * (1 + cos(pi * p)) / 2     for w < k < total_steps
        lr(k) = min_lr                                                  for k >= total_steps
    """
    _check_step(step)
    return _warmup_stable_decay(step, peak_lr, warmup_steps, max(warmup_steps, 1), total_steps, min_lr, _cosine_shape)


def linear(step: int, *, peak_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Linear warmup, then linear decay from peak_lr to min_lr.

    With w = max(warmup_steps, 1) and p = (k - w) / (total_steps - w):
        lr(k) = peak_lr * k / w                             for k <= w
        lr(k) = min_lr + (peak_lr - min_lr) * (1 - p)       for w < k < total_steps
        lr(k) = min_lr                                      for k >= total_steps
    """
    _check_step(step)
    return _warmup_stable_decay(step, peak_lr, warmup_steps, max(warmup_steps, 1), total_steps, min_lr, _linear_shape)


def wsd_decay_start(warmup_steps: int, total_steps: int, decay_fraction: float) -> int:
    """Last update of the stable phase of ``wsd`` (the decay runs from it to total_steps).

    decay_steps = max(1, floor(decay_fraction * total_steps + 1/2))   (round half up)
    decay_start = max(total_steps - decay_steps, max(warmup_steps, 1))

    A decay that would reach into the warmup starts right after it instead (empty stable
    phase); with decay_fraction = 1 the schedule is then ``linear``/``cosine``.
    """
    decay_steps = max(1, math.floor(decay_fraction * total_steps + 0.5))
    return max(total_steps - decay_steps, max(warmup_steps, 1))


def wsd(
    step: int,
    *,
    peak_lr: float,
    warmup_steps: int,
    total_steps: int,
    decay_fraction: float = 0.2,
    decay_shape: str = "1-sqrt",
    min_lr: float = 0.0,
) -> float:
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
    _check_step(step)
    decay_start = wsd_decay_start(warmup_steps, total_steps, decay_fraction)
    return _warmup_stable_decay(
        step, peak_lr, warmup_steps, decay_start, total_steps, min_lr, DECAY_SHAPES[decay_shape]
    )


SCHEDULES: dict[str, Callable[..., float]] = {
    "noam": noam,
    "inverse_sqrt": inverse_sqrt,
    "constant": constant,
    "cosine": cosine,
    "linear": linear,
    "wsd": wsd,
}


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _require_positive(name: str, key: str, params: Mapping[str, Any]) -> None:
    value = params[key]
    if not (_is_real(value) and value > 0):
        raise ValueError(f"{name}: {key} must be a positive finite number, got {value!r}")


def _require_between_zero_and_peak(name: str, key: str, params: Mapping[str, Any]) -> None:
    value, peak = params[key], params["peak_lr"]
    if not (_is_real(value) and 0 <= value <= peak):
        raise ValueError(f"{name}: {key} must be in [0, peak_lr] = [0, {peak!r}], got {value!r}")


def _check_values(name: str, params: Mapping[str, Any]) -> None:
    for key in ("d_model", "factor", "peak_lr"):
        if key in params:
            _require_positive(name, key, params)
    warmup = params["warmup_steps"]
    least_warmup = 1 if name == "noam" else 0
    if not (_is_int(warmup) and warmup >= least_warmup):
        raise ValueError(f"{name}: warmup_steps must be an integer >= {least_warmup}, got {warmup!r}")
    for key in ("warmup_init_lr", "min_lr"):
        if key in params:
            _require_between_zero_and_peak(name, key, params)
    if "total_steps" in params:
        total, least_total = params["total_steps"], max(warmup, 1) + 1
        if not (_is_int(total) and total >= least_total):
            raise ValueError(
                f"{name}: total_steps must be an integer > warmup_steps and >= 2 (here >= {least_total}), got {total!r}"
            )
    if "decay_fraction" in params:
        fraction = params["decay_fraction"]
        if not (_is_real(fraction) and 0 < fraction <= 1):
            raise ValueError(f"{name}: decay_fraction must be in (0, 1], got {fraction!r}")
    if "decay_shape" in params and params["decay_shape"] not in DECAY_SHAPES:
        known = ", ".join(repr(s) for s in DECAY_SHAPES)
        raise ValueError(f"{name}: decay_shape must be one of {known}, got {params['decay_shape']!r}")


def validate(name: str, **params: Any) -> dict[str, Any]:
    """Check a schedule's name and parameters once; return all parameters, defaults filled in.

    Raises ValueError with a one-line message naming the schedule and the parameter.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(sorted(SCHEDULES))}")
    signature = inspect.signature(SCHEDULES[name]).parameters
    accepted = {key: p.default for key, p in signature.items() if key != "step"}
    unknown = [key for key in params if key not in accepted]
    if unknown:
        raise ValueError(f"{name}: unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    missing = [k for k, d in accepted.items() if d is inspect.Parameter.empty and k not in params]
    if missing:
        raise ValueError(f"{name}: missing parameter(s) {', '.join(missing)}")
    resolved = {**accepted, **params}
    _check_values(name, resolved)
    return resolved


def make_schedule(name: str, **params: Any) -> Callable[[int], float]:
    """Validate once and return ``lr(step)``, the schedule with its parameters bound."""
    resolved = validate(name, **params)
    return functools.partial(SCHEDULES[name], **resolved)


def peak_lr(name: str, **params: Any) -> float:
    """The schedule's largest learning rate, reached at ``peak_step(name, **params)``.

    noam: factor * (d_model * warmup_steps)^-0.5; every other schedule: its peak_lr.
    """
    resolved = validate(name, **params)
    if name == "noam":
        return resolved["factor"] * (resolved["d_model"] * resolved["warmup_steps"]) ** -0.5
    return resolved["peak_lr"]


def peak_step(name: str, **params: Any) -> int:
    """The first update that uses the peak learning rate: max(warmup_steps, 1)."""
    return max(validate(name, **params)["warmup_steps"], 1)


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


@dataclasses.dataclass
class NoamConfig:
    """Parameters of ``noam``."""

    name: str = "noam"
    d_model: int = 512
    warmup_steps: int = 4000
    factor: float = 1.0


@dataclasses.dataclass
class InverseSqrtConfig:
    """Parameters of ``inverse_sqrt``."""

    name: str = "inverse_sqrt"
    peak_lr: float = 7e-4
    warmup_steps: int = 4000
    warmup_init_lr: float = 0.0


@dataclasses.dataclass
class ConstantConfig:
    """Parameters of ``constant``."""

    name: str = "constant"
    peak_lr: float = 7e-4
    warmup_steps: int = 4000


@dataclasses.dataclass
class CosineConfig:
    """Parameters of ``cosine``."""

    name: str = "cosine"
    peak_lr: float = 7e-4
    warmup_steps: int = 4000
    total_steps: int = 100_000
    min_lr: float = 0.0


@dataclasses.dataclass
class LinearConfig:
    """Parameters of ``linear``."""

    name: str = "linear"
    peak_lr: float = 7e-4
    warmup_steps: int = 4000
    total_steps: int = 100_000
    min_lr: float = 0.0


@dataclasses.dataclass
class WSDConfig:
    """Parameters of ``wsd``."""

    name: str = "wsd"
    peak_lr: float = 7e-4
    warmup_steps: int = 4000
    total_steps: int = 100_000
    decay_fraction: float = 0.2
    decay_shape: str = "1-sqrt"
    min_lr: float = 0.0


CONFIGS: dict[str, type] = {
    "noam": NoamConfig,
    "inverse_sqrt": InverseSqrtConfig,
    "constant": ConstantConfig,
    "cosine": CosineConfig,
    "linear": LinearConfig,
    "wsd": WSDConfig,
}


def schedule_from_config(config: Any) -> Callable[[int], float]:
    """``make_schedule`` from a config dataclass above or a mapping with a "name" key."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        params = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    elif isinstance(config, Mapping):
        params = dict(config)
    else:
        raise TypeError(f"schedule config must be a dataclass or a mapping, got {type(config)}")
    if "name" not in params:
        raise ValueError(f"schedule config has no 'name' key: {params!r}")
    return make_schedule(params.pop("name"), **params)
