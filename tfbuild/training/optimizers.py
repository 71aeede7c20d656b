"""`train.optimizer` and `train.schedule`: a pure table of what each name means, and the
tf_keras objects made from it."""

from __future__ import annotations

from typing import Any

from ..errors import DataError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine")
# SGD without momentum trains small nets far slower than the adaptive optimizers at the same
# step size; Nesterov momentum 0.9 is the usual default that makes it competitive.
SGD_MOMENTUM = 0.9


def optimizer_spec(name: str, weight_decay: float = 0.0) -> tuple[str, dict[str, Any]]:
    """(tf_keras.optimizers class name, keyword arguments besides the learning rate)."""
    if name == "adam":
        return "Adam", {}
    if name == "adamw":  # decoupled weight decay (Loshchilov & Hutter), not an L2 term in the loss
        return "AdamW", {"weight_decay": float(weight_decay)}
    if name == "sgd":
        return "SGD", {"momentum": SGD_MOMENTUM, "nesterov": True}
    if name == "rmsprop":
        return "RMSprop", {}
    raise DataError(f"train.optimizer: '{name}' is not one of {', '.join(OPTIMIZERS)}")


def schedule_spec(name: str, learning_rate: float, total_steps: int) -> tuple[str, dict[str, Any]] | None:
    """(tf_keras.optimizers.schedules class name, its arguments), or None for a constant rate.
    Cosine decays to 0 exactly at the last training step (steps per epoch x epochs)."""
    if name == "constant":
        return None
    if name == "cosine":
        return "CosineDecay", {"initial_learning_rate": float(learning_rate),
                               "decay_steps": max(1, int(total_steps)), "alpha": 0.0}  # fmt: skip
    raise DataError(f"train.schedule: '{name}' is not one of {', '.join(SCHEDULES)}")


def make_optimizer(
    name: str, learning_rate: float, *, weight_decay: float = 0.0, schedule: str = "constant", total_steps: int = 1
) -> Any:
    """The tf_keras optimizer, with its schedule. Made inside the strategy's scope by the
    caller, so its slots are mirrored like the weights."""
    import tf_keras as keras

    class_name, kwargs = optimizer_spec(name, weight_decay)
    rate: Any = float(learning_rate)
    decay = schedule_spec(schedule, learning_rate, total_steps)
    if decay is not None:
        decay_class, decay_kwargs = decay
        rate = getattr(keras.optimizers.schedules, decay_class)(**decay_kwargs)
    return getattr(keras.optimizers, class_name)(learning_rate=rate, **kwargs)
