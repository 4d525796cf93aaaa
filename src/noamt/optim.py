"""The optimizer: Adam, AdamW or schedule-free AdamW, its learning rate set by the schedule before
every update.

Schedule-free AdamW (Defazio et al. 2024, "The Road Less Scheduled"; ``schedulefree.AdamWScheduleFree``)
replaces the decay of a schedule by an average. With step size lr_k (the schedule's, warmup
included) and g the Adam-normalized gradient taken at y (plus weight_decay * y):

    y_k     = (1 - beta1) z_k + beta1 x_k           the weights gradients are taken at
    z_{k+1} = z_k - lr_k g(y_k)                     the plain Adam-like iterate
    x_{k+1} = (1 - c_{k+1}) x_k + c_{k+1} z_{k+1}   the weights to evaluate, an average of z

with c_k = w_k / (w_1 + ... + w_k) and w_k = k^r * (max_{i <= k} lr_i)^weight_lr_power. The
optimizer's parameters hold y (the package's train mode) and its state z, so x is computed on
demand: x = (y - (1 - beta1) z) / beta1, what ``AdamWScheduleFree.eval()`` writes into the
parameters. Training never leaves train mode here: :func:`evaluation_weights` writes x into the
parameters for a validation and copies y back bit for bit, and a checkpoint stores x as
"model" and y as "train_weights" (:func:`checkpoint_weights`, :func:`training_weights`), so a
resumed run continues from exactly the y it stopped at.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import schedulefree
import torch
from torch import nn

from noamt.bounds import in_interval, is_finite, non_negative, positive
from noamt.checkpoint import TRAIN_WEIGHTS

SCHEDULE_FREE = "adamw_schedulefree"
OPTIMIZERS = ("adam", "adamw", SCHEDULE_FREE)
MAX_AVERAGING_POWER = 10.0
"""The largest optim.r and optim.weight_lr_power: k^r and lr^weight_lr_power stay within float64
over 10^7 updates (a larger power overflows, or makes every weight 0 and freezes the average x)."""


@dataclass
class OptimConfig:
    """Adam (Kingma and Ba 2015) as in Vaswani et al.: betas (0.9, 0.98), eps 1e-9."""

    name: str = "adam"
    """adam, adamw (decoupled weight decay) or adamw_schedulefree (Defazio et al. 2024: an average of the
    iterates instead of a decaying schedule)."""
    betas: tuple[float, float] = (0.9, 0.98)
    """Decay rates of the first and second moment estimates; adamw_schedulefree has no first moment:
    its beta1 is the interpolation y = (1 - beta1) z + beta1 x (0 < beta1 < 1)."""
    eps: float = 1e-9
    """Added to the root of the second moment estimate (> 0: a weight whose gradient is 0 would divide 0 by 0)."""
    weight_decay: float = 0.0
    """L2 penalty (adam) or decoupled weight decay (adamw; adamw_schedulefree applies it at y)."""
    r: float = 0.0
    """adamw_schedulefree: x_k averages z_1..z_k with weights w_k = k^r * (max_{i<=k} lr_i)^weight_lr_power;
    r > 0 weights later iterates polynomially more (0: uniform once the lr stops growing; at most 10)."""
    weight_lr_power: float = 2.0
    """adamw_schedulefree: the power of the largest lr so far in the averaging weights w_k (0: none;
    2: the warmup's small steps count little; at most 10)."""

    def __post_init__(self) -> None:
        """Check every field; one-line ValueErrors naming the key."""
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optim.name={self.name!r}: expected one of {', '.join(OPTIMIZERS)}")
        betas = list(self.betas)
        if len(betas) != 2 or not all(is_finite(b) and 0 <= b < 1 for b in betas):
            raise ValueError(f"optim.betas={betas!r}: must be two numbers in [0, 1)")
        if self.name == SCHEDULE_FREE and betas[0] == 0:
            raise ValueError(
                f"optim.betas={betas!r}: {SCHEDULE_FREE} needs beta1 > 0 (x = (y - (1 - beta1) z) / beta1)"
            )
        positive("optim.eps", self.eps)
        non_negative("optim.weight_decay", self.weight_decay)
        for key in ("r", "weight_lr_power"):
            in_interval(f"optim.{key}", getattr(self, key), 0, MAX_AVERAGING_POWER)


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or schedule-free AdamW over the model's parameters; lr is set by the schedule
    before every update, so schedule-free's own warmup is off (its warmup is the schedule's)."""
    if cfg.name == SCHEDULE_FREE:
        optimizer = schedulefree.AdamWScheduleFree(
            model.parameters(),
            lr=0.0,
            betas=(cfg.betas[0], cfg.betas[1]),
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            warmup_steps=0,
            r=cfg.r,
            weight_lr_power=cfg.weight_lr_power,
        )
        optimizer.train()  # the parameters hold y from now on; a resumed state records train mode too
        return optimizer
    device_type = next(model.parameters()).device.type
    kind = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return kind(
        model.parameters(),
        lr=0.0,
        betas=(cfg.betas[0], cfg.betas[1]),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        fused=device_type in {"cpu", "cuda"},
    )


def skips_on_device(optimizer: torch.optim.Optimizer) -> bool:
    """The optimizer can skip an update on the device: fused Adam and AdamW read ``found_inf``
    (a float scalar on the device) in ``step`` and change neither the weights, nor the moments,
    nor their step count when it is 1.0 (``torch.optim.adam._fused_adam``), as GradScaler has
    them do for an fp16 overflow. Schedule-free AdamW has no such input: its step count and
    averaging weights live on the host."""
    return bool(optimizer.defaults.get("fused"))


def is_schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    """The optimizer trains y and evaluates x (schedule-free AdamW)."""
    return isinstance(optimizer, schedulefree.AdamWScheduleFree)


@contextlib.contextmanager
def evaluation_weights(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Within the block the optimizer's parameters hold the weights to evaluate; after it, the
    weights training continues from, bit for bit.

    Adam and AdamW evaluate the weights they train: nothing changes. Schedule-free AdamW
    evaluates x = y + (1 - 1/beta1)(z - y) = (y - (1 - beta1) z) / beta1, written with the same
    ``lerp_`` as ``AdamWScheduleFree.eval()``; y is copied aside first and copied back after,
    where the package's ``train()`` would recompute y = x + (1 - beta1)(z - x) with rounding
    errors. A parameter without z (never updated) is the same in x and y.
    """
    if not is_schedule_free(optimizer):
        yield
        return
    iterates = [
        (param, optimizer.state[param]["z"], group["betas"][0])
        for group in optimizer.param_groups
        if group["train_mode"]
        for param in group["params"]
        if "z" in optimizer.state.get(param, {})
    ]
    training = [param.detach().clone() for param, _, _ in iterates]
    try:
        _write_averages(iterates)
        yield
    finally:
        _copy_into([param for param, _, _ in iterates], training)


@torch.no_grad()
def _write_averages(iterates: list[tuple[torch.Tensor, torch.Tensor, float]]) -> None:
    """y <- x = lerp(y, z, 1 - 1/beta1) in place, for each (y, z, beta1)."""
    for param, z, beta1 in iterates:
        param.lerp_(end=z.to(param.device), weight=1 - 1 / beta1)


@torch.no_grad()
def _copy_into(params: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    """param <- value, exactly, for each pair."""
    for param, value in zip(params, values, strict=True):
        param.copy_(value)


def checkpoint_weights(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    """A checkpoint's weight entries: "model", the weights to evaluate (what translation, scoring,
    averaging and export read), and for schedule-free AdamW also "train_weights", the y that
    training resumes from (x cannot give y back exactly)."""
    if not is_schedule_free(optimizer):
        return {"model": model.state_dict()}
    with evaluation_weights(optimizer):
        averaged = copy.deepcopy(model.state_dict())  # a copy: the parameters hold y again after the block
    return {"model": averaged, TRAIN_WEIGHTS: model.state_dict()}


def training_weights(state: Mapping, optimizer: torch.optim.Optimizer) -> dict:
    """The checkpoint entry that training resumes from: "train_weights" (y) for schedule-free
    AdamW, "model" otherwise; a checkpoint of the other kind of optimizer is a one-line ValueError."""
    schedule_free, stored = is_schedule_free(optimizer), TRAIN_WEIGHTS in state
    if schedule_free != stored:
        trained, now = (SCHEDULE_FREE, "adam or adamw") if stored else ("adam or adamw", SCHEDULE_FREE)
        raise ValueError(f"it was trained with optim.name={trained}, this run uses optim.name={now}")
    return state[TRAIN_WEIGHTS if schedule_free else "model"]
