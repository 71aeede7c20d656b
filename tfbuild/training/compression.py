"""tensorflow-model-optimization's methods, as the optimize step applies them.

prune    magnitude pruning: the smallest weights of every kernel go to zero, gradually over
         the first 70% of fine-tuning steps, then held while the rest fine-tune; the
         wrappers are stripped, leaving a plain model whose zeros compress (gzip) well.
cluster  weight clustering: every kernel keeps `clusters` distinct values (k-means++
         centroids, fine-tuned); wrappers stripped.
qat      quantization-aware training: fake-quantization in the graph while fine-tuning, so
         the int8 TFLite conversion uses ranges the model learned to live with. The wrappers
         stay: the converter reads them.

Wrapping renames a model's output layers (prune_low_magnitude_x, cluster_x, quant_x); the
wrapped model's outputs are named back, so data pairs with them and the exported signature
keeps the trained model's names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

# The share of fine-tuning steps over which sparsity ramps from 0 to its target.
PRUNING_RAMP = 0.7


@dataclass(frozen=True)
class Method:
    wrap: Callable[[Any], Any]
    strip: Callable[[Any], Any]
    callbacks: list[Any]


def method(name: str, p: Mapping[str, Any], total_steps: int) -> Method:
    import tensorflow_model_optimization as tfmot

    if name == "prune":
        sparsity = tfmot.sparsity.keras
        schedule = pruning_schedule(tfmot, p["sparsity"], total_steps)
        return Method(lambda m: sparsity.prune_low_magnitude(m, pruning_schedule=schedule),
                      sparsity.strip_pruning, [sparsity.UpdatePruningStep()])  # fmt: skip
    if name == "cluster":
        clustering = tfmot.clustering.keras
        return Method(
            lambda m: clustering.cluster_weights(m, number_of_clusters=p["clusters"],
                                                 cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS),
            clustering.strip_clustering, [],
        )  # fmt: skip
    if name == "qat":
        return Method(tfmot.quantization.keras.quantize_model, lambda m: m, [])
    raise ValueError(f"optimize.method: unknown method '{name}' (allowed: prune, cluster, qat)")


def wrapped(method: Method, model: Any) -> Any:
    """The model wrapped for fine-tuning, its outputs named as the original's."""
    import tf_keras as keras

    wrapper = method.wrap(model)
    for tensor, name in zip(wrapper.outputs, model.output_names):
        tensor._keras_history.layer._name = name  # the wrapper layer takes its layer's name
    return keras.Model(wrapper.inputs, wrapper.outputs, name=wrapper.name)


def pruning_schedule(tfmot: Any, sparsity: float, total_steps: int) -> Any:
    if total_steps < 4:  # too few steps to ramp: prune to the target at once, every step
        return tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=0, frequency=1)
    end_step = max(1, int(total_steps * PRUNING_RAMP))
    frequency = max(1, end_step // 10)
    # The last mask update must land on end_step, where the schedule reaches the target.
    end_step = (end_step // frequency) * frequency
    return tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=end_step, frequency=frequency)


def kernels(model: Any) -> dict[str, Any]:
    """layer name -> kernel values, for the layers tfmot prunes and clusters (Dense, Conv)."""
    return {layer.name: layer.kernel.numpy() for layer in model.layers if hasattr(layer, "kernel")}


def sparsity_report(model: Any) -> dict[str, Any]:
    import numpy as np

    per_layer = {name: float(np.mean(k == 0)) for name, k in kernels(model).items()}
    zeros = sum(int(np.sum(k == 0)) for k in kernels(model).values())
    total = sum(k.size for k in kernels(model).values())
    return {"achieved_sparsity": round(zeros / total, 6), "sparsity_per_layer": {k: round(v, 6) for k, v in per_layer.items()}}


def clustering_report(model: Any) -> dict[str, Any]:
    import numpy as np

    unique = {name: int(np.unique(k).size) for name, k in kernels(model).items()}
    return {"unique_values_per_layer": unique, "max_unique_values": max(unique.values())}
