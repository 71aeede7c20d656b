"""`optimize`: tensorflow-model-optimization applied to the trained model (prune, cluster or
qat; see tfbuild/training/compression.py), fine-tuned with the training's own fit.

Params (from the resolver): method, epochs, learning_rate, batch_size, seed, sparsity
(prune), clusters (cluster); and, as in train, modules, loss, class_weight.
"""

from __future__ import annotations

from typing import Any

from ..plan import StepSpec
from .base import StepContext


class OptimizeStep:
    kind = "optimize"
    version = 2  # 2: the split on disk, per-output tasks, fine-tuning through training.fit
    tools = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "numpy")

    def machine(self, spec: StepSpec) -> dict[str, str]:
        """Fine-tuning is training: the CPU family, and the GPUs (the default strategy's)."""
        from ..machine import key_entry

        return key_entry(accelerator=True)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ..datasets.split import Split
        from ..tfenv import Numerics, import_tensorflow, seed_everything
        from ..training import compression
        from ..training.feed import wire
        from ..training.fit import compile_model, evaluate, fit
        from ..training.keras_io import import_model_modules, load_model, save_h5
        from ..training.optimizers import make_optimizer
        from ..training.tasks import headline_metrics

        p = ctx.params
        import_tensorflow(Numerics.of(p))  # threads and oneDNN as train.threads/onednn say
        import tf_keras as keras

        split = Split(ctx.inputs["data"])
        seed_everything(p["seed"])
        modules, planned = p.get("modules") or (), dict(ctx.files)
        trained = load_model(ctx.inputs["model"], modules=modules, planned=planned)
        wiring = wire(trained, split, p.get("loss"))
        compile_model(trained, wiring.outputs)
        _, before = evaluate(trained, split, wiring)

        total_steps = -(-split.count("train") // p["batch_size"]) * p["epochs"]
        method = compression.method(p["method"], p, total_steps)
        # tfmot clones the model through its config: the modules' classes must be known by name.
        with keras.utils.custom_object_scope(import_model_modules(modules, planned)):
            model = compression.wrapped(method, trained)
            fitted = fit(model, split, wiring, ctx.progress, optimizer=make_optimizer("adam", p["learning_rate"]),
                         epochs=p["epochs"], batch_size=p["batch_size"], seed=p["seed"],
                         class_weight=p.get("class_weight"), callbacks=method.callbacks)  # fmt: skip
            final = method.strip(model)
        compile_model(final, wiring.outputs)
        _, after = evaluate(final, split, wiring)
        save_h5(final, ctx.outputs["model"])

        info: dict[str, Any] = {
            "method": p["method"],
            "fine_tune_epochs": p["epochs"],
            "fine_tune_final": fitted.final,
            "test_metrics_before": before,
            "test_metrics": after,
            **headline_metrics(before, wiring.outputs, "_before"),
            **headline_metrics(after, wiring.outputs),
        }
        figure = _figure(after, wiring.outputs)
        if p["method"] == "prune":
            info.update(target_sparsity=p["sparsity"], **compression.sparsity_report(final))
            info["summary"] = f"sparsity {info['achieved_sparsity']:.1%}{figure}"
        elif p["method"] == "cluster":
            info.update(clusters=p["clusters"], **compression.clustering_report(final))
            info["summary"] = f"≤{info['max_unique_values']} values/kernel{figure}"
        else:
            info["quantized_layers"] = sum(1 for layer in final.layers if "Quantize" in type(layer).__name__)
            info["summary"] = f"{info['quantized_layers']} layers fake-quantized{figure}"
        return info


def _figure(metrics: dict[str, dict[str, float]], outputs: Any) -> str:
    """", accuracy 93.1%" or ", MAE 0.41" for the first output (nothing without a test part)."""
    if not metrics:
        return ""
    first = outputs[0]
    value = metrics[first.name][first.headline]
    return f", accuracy {value:.1%}" if first.headline == "accuracy" else f", MAE {value:.4g}"
