"""`optimize`: tensorflow-model-optimization applied to the trained model, with fine-tuning.

prune    magnitude pruning: the smallest weights of every kernel go to zero, gradually over
         the first 70% of fine-tuning steps, then held while the rest fine-tune; the
         wrappers are stripped, leaving a plain model whose zeros compress (gzip) well.
cluster  weight clustering: every kernel keeps `clusters` distinct values (k-means++
         centroids, fine-tuned); wrappers stripped.
qat      quantization-aware training: fake-quantization in the graph while fine-tuning, so
         the int8 TFLite conversion uses ranges the model learned to live with. The wrappers
         stay: the converter reads them.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .base import StepContext
from .data import load_split
from .train import fit, save_h5

# The share of fine-tuning steps over which sparsity ramps from 0 to its target.
PRUNING_RAMP = 0.7


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


class OptimizeStep:
    kind = "optimize"
    version = 1
    tools = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "numpy")

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ..tfenv import import_tensorflow, seed_everything

        import_tensorflow()
        import tensorflow_model_optimization as tfmot
        import tf_keras as keras

        p = ctx.params
        x_train, _ = load_split(ctx.inputs["data"], "train")
        x_test, y_test = load_split(ctx.inputs["data"], "test")
        seed_everything(p["seed"])
        trained = keras.models.load_model(ctx.inputs["model"], compile=False)
        accuracy_before = _test_accuracy(trained, x_test, y_test)

        total_steps = math.ceil(len(x_train) / p["batch_size"]) * p["epochs"]
        wrap, strip, callbacks = _METHODS[p["method"]](tfmot, p, total_steps)
        model = wrap(trained)
        fine_tune_final = fit(ctx.progress, model, ctx.inputs["data"], epochs=p["epochs"], batch_size=p["batch_size"],
                              learning_rate=p["learning_rate"], callbacks=callbacks)
        final = strip(model)
        accuracy_after = _test_accuracy(final, x_test, y_test)
        save_h5(final, ctx.outputs["model"])

        info: dict[str, Any] = {
            "method": p["method"],
            "fine_tune_epochs": p["epochs"],
            "fine_tune_final": fine_tune_final,
            "test_accuracy_before": round(accuracy_before, 6),
            "test_accuracy": round(accuracy_after, 6),
        }
        if p["method"] == "prune":
            info.update(target_sparsity=p["sparsity"], **sparsity_report(final))
            info["summary"] = f"sparsity {info['achieved_sparsity']:.1%}, accuracy {accuracy_after:.1%}"
        elif p["method"] == "cluster":
            info.update(clusters=p["clusters"], **clustering_report(final))
            info["summary"] = f"≤{info['max_unique_values']} values/kernel, accuracy {accuracy_after:.1%}"
        else:
            info["quantized_layers"] = sum(1 for layer in final.layers if "Quantize" in type(layer).__name__)
            info["summary"] = f"{info['quantized_layers']} layers fake-quantized, accuracy {accuracy_after:.1%}"
        return info


def _test_accuracy(model: Any, x: Any, y: Any) -> float:
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return float(model.evaluate(x, y, batch_size=256, verbose=0)[1])


Methods = Callable[[Any, Any, int], tuple[Callable[[Any], Any], Callable[[Any], Any], list[Any]]]


def _prune(tfmot: Any, p: Any, total_steps: int) -> tuple[Any, Any, list[Any]]:
    schedule = pruning_schedule(tfmot, p["sparsity"], total_steps)
    sparsity = tfmot.sparsity.keras
    return (
        lambda model: sparsity.prune_low_magnitude(model, pruning_schedule=schedule),
        sparsity.strip_pruning,
        [sparsity.UpdatePruningStep()],
    )


def _cluster(tfmot: Any, p: Any, total_steps: int) -> tuple[Any, Any, list[Any]]:
    clustering = tfmot.clustering.keras
    return (
        lambda model: clustering.cluster_weights(
            model,
            number_of_clusters=p["clusters"],
            cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
        ),
        clustering.strip_clustering,
        [],
    )


def _qat(tfmot: Any, p: Any, total_steps: int) -> tuple[Any, Any, list[Any]]:
    return tfmot.quantization.keras.quantize_model, lambda model: model, []


_METHODS: dict[str, Methods] = {"prune": _prune, "cluster": _cluster, "qat": _qat}
