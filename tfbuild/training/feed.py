"""tf.data pipelines from a split on disk, and how the model's inputs and outputs meet it.

Training visits the samples in a fresh seeded order each epoch: epoch e uses the permutation
`RandomState(epoch_seed(seed, e))`, the one `Split.batches` draws. A split that fits in
`IN_MEMORY_BYTES` is read once and batches are gathered from memory; a larger one streams
through `Split.batches`, which reads only the batch it hands out. Both paths give the same
batches in the same order, so the weights do not depend on which one ran.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from ..errors import DataError
from ..signature import pair_names
from .tasks import CLASSIFICATION, Output, outputs_for

if TYPE_CHECKING:
    from ..datasets.split import Split

# Above this (bytes of one part's inputs and targets), a part streams from disk. Arrays under
# it are captured by the tf.data graph (copied when a strategy distributes it), so the bound
# stays well below memory. TFBUILD_IN_MEMORY_MB moves it (0: always stream); both paths give
# the same batches, so it changes speed and memory only, never the result (nor a cache key).
IN_MEMORY_MB_VARIABLE = "TFBUILD_IN_MEMORY_MB"
DEFAULT_IN_MEMORY_MB = 128


def in_memory_bytes() -> int:
    value = os.environ.get(IN_MEMORY_MB_VARIABLE, "")
    try:
        return int(float(value) * 2**20) if value.strip() else DEFAULT_IN_MEMORY_MB * 2**20
    except ValueError:
        raise DataError(f"{IN_MEMORY_MB_VARIABLE}={value!r}: expected a number of megabytes (0: always stream)") from None


def epoch_seed(seed: int, epoch: int) -> int:
    """The permutation seed of one epoch: every (seed, epoch) pair its own, none shared
    between neighbours (seed 1 epoch 0 is not seed 0 epoch 1), within RandomState's range."""
    digest = hashlib.sha256(f"tfbuild-epoch:{int(seed)}:{int(epoch)}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass(frozen=True)
class Wiring:
    """Which data input feeds each model input, and which target each model output learns."""

    inputs: dict[str, str]  # model input name -> split input name
    outputs: list[Output]  # in the model's output order

    def structure(self, inputs: Mapping[str, Any], targets: Mapping[str, Any]) -> tuple[Any, Any]:
        """(x, y) as the model takes them: a single input or output is passed bare (Keras'
        class_weight wants a bare target), several as dicts keyed by the model's names."""
        if len(self.inputs) == 1:
            x = inputs[next(iter(self.inputs.values()))]
        else:
            x = {model: inputs[data] for model, data in self.inputs.items()}
        if len(self.outputs) == 1:
            y = targets[self.outputs[0].target]
        else:
            y = {o.name: targets[o.target] for o in self.outputs}
        return x, y


def wire(model: Any, split: Split, loss: Any = None) -> Wiring:
    """Pair the model with the data and check their shapes: a mismatch is reported here, as
    one line naming the input or output, before anything is fitted."""
    wiring = Wiring(
        pair_names(list(model.input_names), split.input_names, "inputs"),
        outputs_for(pair_names(list(model.output_names), split.target_names, "outputs"), split.tasks(), loss),
    )
    for tensor, (model_name, data_name) in zip(model.inputs, wiring.inputs.items()):
        expected = tuple(split.inputs_spec[data_name].shape)
        if not _fits(tuple(tensor.shape[1:]), expected):
            raise DataError(
                f"model input '{model_name}' takes samples of shape {tuple(tensor.shape[1:])}, "
                f"the data's input '{data_name}' has {expected}"
            )
    for tensor, output in zip(model.outputs, wiring.outputs):
        _check_output(tuple(tensor.shape[1:]), output, split.targets_spec[output.target])
    return wiring


def _check_output(shape: tuple[Any, ...], output: Output, spec: Any) -> None:
    units = shape[-1] if shape else None
    if output.task == CLASSIFICATION:
        if units is not None and spec.classes is not None and units < spec.classes:
            raise DataError(
                f"model output '{output.name}' has {units} units, target '{output.target}' has "
                f"{spec.classes} classes"
            )
    elif units is not None and len(shape) == 1 and spec.shape and units != spec.shape[-1]:
        raise DataError(
            f"model output '{output.name}' has {units} values per sample, regression target "
            f"'{output.target}' has {spec.shape[-1]}"
        )


def _fits(model_shape: tuple[Any, ...], data_shape: tuple[int, ...]) -> bool:
    return len(model_shape) == len(data_shape) and all(m is None or m == d for m, d in zip(model_shape, data_shape))


def train_dataset(
    split: Split, wiring: Wiring, *, batch_size: int, seed: int, epochs: int, memory_limit: int | None = None
) -> tuple[Any, int]:
    """(every epoch's batches one after another, steps per epoch). Keras keeps one iterator
    across epochs over such a dataset (its size is unknown, so it is never re-created)."""
    import tensorflow as tf

    n = split.count("train")
    steps = -(-n // batch_size)
    if _bytes(split, "train") <= (in_memory_bytes() if memory_limit is None else memory_limit):
        import numpy as np

        orders = np.stack([np.random.RandomState(epoch_seed(seed, e)).permutation(n) for e in range(epochs)])
        dataset = _gathered(split, wiring, "train", batch_size, tf.data.Dataset.from_tensor_slices(orders))
    else:
        def epochs_of_batches(epoch: Any) -> Iterator[tuple[Any, Any]]:
            for inputs, targets in split.batches("train", batch_size, epoch_seed(seed, int(epoch))):
                yield wiring.structure(inputs, targets)

        dataset = tf.data.Dataset.range(epochs).flat_map(
            lambda e: tf.data.Dataset.from_generator(epochs_of_batches, output_signature=_signature(split, wiring),
                                                     args=(e,))
        )  # fmt: skip
    return _finish(tf, dataset), steps


def eval_dataset(split: Split, wiring: Wiring, part: str, *, batch_size: int, memory_limit: int | None = None) -> Any:
    """One pass over `part` in stored order."""
    import tensorflow as tf

    if _bytes(split, part) <= (in_memory_bytes() if memory_limit is None else memory_limit):
        import numpy as np

        order = np.arange(split.count(part))[None]
        dataset = _gathered(split, wiring, part, batch_size, tf.data.Dataset.from_tensor_slices(order))
    else:
        def batches() -> Iterator[tuple[Any, Any]]:
            for inputs, targets in split.batches(part, batch_size, None):
                yield wiring.structure(inputs, targets)

        dataset = tf.data.Dataset.from_generator(batches, output_signature=_signature(split, wiring))
    return _finish(tf, dataset)


def _gathered(split: Split, wiring: Wiring, part: str, batch_size: int, orders: Any) -> Any:
    """Batches of indices from each order, then the rows at those indices, from memory."""
    import numpy as np
    import tensorflow as tf

    inputs = {k: tf.constant(np.asarray(v)) for k, v in split.inputs(part).items()}
    targets = {k: tf.constant(np.asarray(v)) for k, v in split.targets(part).items()}

    def rows(index: Any) -> tuple[Any, Any]:
        return wiring.structure({k: tf.gather(v, index) for k, v in inputs.items()},
                                {k: tf.gather(v, index) for k, v in targets.items()})  # fmt: skip

    # Parallel gathers, handed out in order (the pipeline's options keep it deterministic).
    return orders.flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size)).map(
        rows, num_parallel_calls=tf.data.AUTOTUNE
    )


def _signature(split: Split, wiring: Wiring) -> tuple[Any, Any]:
    import tensorflow as tf

    def spec(s: Any) -> Any:
        return tf.TensorSpec((None, *s.shape), tf.as_dtype(s.dtype))

    return wiring.structure({k: spec(s) for k, s in split.inputs_spec.items()},
                            {k: spec(s) for k, s in split.targets_spec.items()})  # fmt: skip


def _finish(tf: Any, dataset: Any) -> Any:
    options = tf.data.Options()
    # Every worker reads the whole split and keeps its share of each batch: there are no
    # files to shard by, and the default (FILE) policy would warn and fall back to this.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _bytes(split: Split, part: str) -> int:
    import math

    n = split.count(part)
    specs = [*split.inputs_spec.values(), *split.targets_spec.values()]
    return sum(n * math.prod(s.shape) * _itemsize(s.dtype) for s in specs)


def _itemsize(dtype: str) -> int:
    import numpy as np

    return np.dtype(dtype).itemsize
