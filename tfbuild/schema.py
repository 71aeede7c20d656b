"""Structured-config schemas for every config group, registered in Hydra's ConfigStore.

The primary config (`conf/config.yaml`) lists `tfbuild_schema` first in its defaults list, so
the whole composed config is typed by `TfbuildConfig`: a typo'd key or a bad enum value fails
at compose time with the key's full name. Values that may be "one value or a list" are typed
`Any` here (OmegaConf has no Union of scalar and list) and checked in `checks.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from enum import Enum
from functools import partial
from typing import Any, Dict, List, Mapping, Optional

from hydra.core.config_store import ConfigStore

from .formats import FORMATS
from .formats.base import Format
from .tfenv import DEFAULT as DEFAULT_NUMERICS


class TargetName(str, Enum):
    cpu = "cpu"
    gpu = "gpu"
    multi_gpu = "multi_gpu"
    tpu = "tpu"
    edge = "edge"
    browser = "browser"


class Strategy(str, Enum):
    default = "default"  # TensorFlow's default strategy: one process, the device TF picks
    one_device = "one_device"  # OneDeviceStrategy on the first GPU
    mirrored = "mirrored"  # MirroredStrategy over target.gpus GPUs, or target.cpu_devices logical CPUs
    multi_worker = "multi_worker"  # MultiWorkerMirroredStrategy over target.workers processes (TF_CONFIG)
    tpu = "tpu"  # TPUStrategy through a TPUClusterResolver


class PrecisionPolicy(str, Enum):
    float32 = "float32"
    mixed_float16 = "mixed_float16"
    mixed_bfloat16 = "mixed_bfloat16"


class RemoteMode(str, Enum):
    read = "read"  # take entries from the remote cache on a local miss (developers)
    write = "write"  # upload what a build made or used; never download (a clean CI build)
    readwrite = "readwrite"  # both (CI that reuses what it uploaded before)


class PinReproduce(str, Enum):
    bytes = "bytes"  # every artifact byte for byte: the same machine family only
    metrics = "metrics"  # rebuild on any machine, each test metric within pin_tolerance


class OptimizeMethod(str, Enum):
    none = "none"
    prune = "prune"  # magnitude pruning to a target sparsity
    qat = "qat"  # quantization-aware training, for the int8 TFLite variant
    cluster = "cluster"  # weight clustering: few distinct values per kernel


class DataSource(str, Enum):
    sklearn = "sklearn"  # scikit-learn's bundled datasets: real data that ships offline
    npz = "npz"  # a user's .npz file: named arrays (`x` and `y` unless data.features/label say)
    csv = "csv"  # a CSV file with a header row of column names; numeric columns
    images = "images"  # a folder with one subfolder of images per class
    tfrecord = "tfrecord"  # TFRecord files of tf.train.Example, parsed with data.spec
    none = "none"  # no data: a model=file model is verified on inputs made from its signature


class ImageColor(str, Enum):
    rgb = "rgb"
    grayscale = "grayscale"


class ModelSource(str, Enum):
    registry = "registry"  # a builder from tfbuild's registry, by model.name (cnn, mlp)
    custom = "custom"  # your builder function, model._target_=package.module.function
    keras_app = "keras_app"  # a tf_keras.applications network, by model.name (MobileNetV2, ...)
    file = "file"  # a trained model you bring (model.path): .keras, .h5 or a SavedModel folder


class TaskName(str, Enum):
    classification = "classification"  # integer class labels; softmax outputs; accuracy
    regression = "regression"  # real-valued targets; linear outputs; MAE and RMSE


class Optimizer(str, Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"  # with Nesterov momentum 0.9
    rmsprop = "rmsprop"


class Schedule(str, Enum):
    constant = "constant"
    cosine = "cosine"  # cosine decay from train.learning_rate to 0 over all training steps


class ClassWeight(str, Enum):
    balanced = "balanced"  # weight each class by n_samples / (n_classes * its count)


@dataclass
class ModelConfig:
    # Where the model comes from: registry, custom, keras_app or file (conf/model/*.yaml set it).
    source: ModelSource = ModelSource.registry
    # source=registry: cnn or mlp. source=keras_app: a tf_keras.applications constructor.
    name: str = "cnn"
    # source=custom: `package.module.function`, called as f(input_shape, num_classes, **params).
    _target_: Optional[str] = None
    # Keyword arguments for the builder; checked against its signature before any work.
    params: Dict[str, Any] = field(default_factory=dict)
    # source=file: a trained model, `.keras`, `.h5` or a SavedModel folder.
    path: Optional[str] = None
    # Modules imported before any model is built or loaded (custom layers, losses, registered
    # objects); their source files are part of every key that loads the model.
    modules: List[str] = field(default_factory=list)
    # source=file: load a file whose layers carry Python code (a Lambda's saved function),
    # running it. False: such a file is refused while planning. Keyed and shown in the plan.
    trust_code: bool = False
    # Files the builder or model.modules read that are not Python source (a vocabulary, a
    # settings file): their bytes enter the key of every step that builds or loads the model.
    # A step that reads a file of the project not in its key is refused (discovered.py).
    files: List[str] = field(default_factory=list)


@dataclass
class TaskConfig:
    # classification or regression: what every output is, unless task.outputs names it.
    name: TaskName = TaskName.classification
    # Per-output tasks for models with several outputs: {output name: classification|regression}.
    outputs: Dict[str, TaskName] = field(default_factory=dict)


@dataclass
class DataConfig:
    source: DataSource = DataSource.sklearn
    # For source=sklearn: digits, iris, wine, breast_cancer, diabetes or linnerud.
    name: str = "digits"
    # The file (npz, csv), folder (images) or file/glob (tfrecord) the samples come from.
    path: Optional[str] = None
    # Your own split instead of a seeded one: a file or folder per part (all three, or none).
    train: Optional[str] = None
    validation: Optional[str] = None
    test: Optional[str] = None
    # The target(s): a column/array/feature name or a list of them; each is one model output.
    label: Any = None
    # The inputs: a list of columns/arrays/features (one input), or {input name: list} for a
    # model with several inputs. null: every column that is not a label (csv), `x` (npz).
    features: Any = None
    # For source=tfrecord: {feature name: {dtype: float32|int64, shape: [..]}}.
    spec: Dict[str, Any] = field(default_factory=dict)
    # Image-shaped preprocessing, for any source whose samples are images: resize to
    # [height, width] and convert to this many channels (1 or 3).
    image_size: Optional[List[int]] = None
    channels: Optional[int] = None
    # For source=images: how pixels are decoded.
    color: ImageColor = ImageColor.rgb
    # For source=images: the most pixels (width x height; an animated GIF: all its frames) an
    # image may state in its header; a larger one is refused before it is decoded.
    max_pixels: int = 2**26
    # For source=none: how many inputs are generated from the model's signature.
    generated_samples: int = 64
    # Seed of the train/validation/test shuffle; the split is a pure function of it.
    seed: int = 0
    validation_fraction: float = 0.1
    test_fraction: float = 0.2
    # Training samples handed to quantizers that calibrate (TFLite int8 and int16x8).
    calibration_samples: int = 100
    # Use only the first N samples after shuffling (tests and quick trials); null = all.
    limit: Optional[int] = None


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 0.001
    seed: int = 0
    optimizer: Optimizer = Optimizer.adam
    # adamw only: decoupled weight decay.
    weight_decay: float = 0.004
    schedule: Schedule = Schedule.constant
    # Stop when validation loss has not improved for N epochs (restoring the best weights).
    early_stopping_patience: Optional[int] = None
    # balanced: weight classification losses by inverse class frequency (single-output models).
    class_weight: Optional[ClassWeight] = None
    # A tf_keras loss name for every output, or {output name: loss}; null: the task's.
    loss: Any = None
    # TensorFlow's intra- and inter-op threads for the steps whose numbers depend on them
    # (train, optimize, TFLite calibration): a fixed count, so a 1-core and a 64-core machine
    # make the same bytes (TensorFlow's own default is the machine's CPU count). In their keys.
    threads: int = DEFAULT_NUMERICS.threads
    # TensorFlow's oneDNN kernels (TF_ENABLE_ONEDNN_OPTS) for those steps, whatever the
    # environment says: off by default, so the bytes do not depend on oneDNN's per-CPU kernels
    # and thread blocking. In their keys.
    onednn: bool = DEFAULT_NUMERICS.onednn


@dataclass
class OptimizeConfig:
    # none, prune, qat or cluster; applied to the trained model, with fine-tuning, by
    # tensorflow-model-optimization, before the SavedModel is written.
    method: OptimizeMethod = OptimizeMethod.none
    # Fine-tuning passes over the training split with the optimization in place.
    epochs: int = 2
    # Fine-tuning's Adam step size; each conf/optimize/ option sets its own.
    learning_rate: float = 0.0001
    # prune: the fraction of each kernel's weights set to zero (0 < sparsity < 1).
    sparsity: float = 0.5
    # cluster: the number of distinct values each kernel keeps (2 or more).
    clusters: int = 16


@dataclass
class TargetBase:
    """Where the model trains and runs. Each conf/target/ profile sets these (and the benchmark
    settings that suit it); a recipe can override any of them."""

    name: TargetName = TargetName.cpu
    # How training is distributed.
    strategy: Strategy = Strategy.default
    # GPUs the target needs on this machine; checked before any work starts.
    gpus: int = 0
    # With strategy=mirrored: split the CPU into N logical devices instead of using GPUs
    # (multi-device training without the hardware, for tests and CI).
    cpu_devices: Optional[int] = None
    # With strategy=multi_worker: worker processes tfbuild starts on this machine (127.0.0.1).
    # Ignored when TF_CONFIG is set: then this process is one worker of that cluster.
    workers: Optional[int] = None
    # With strategy=tpu: the TPU's name or grpc:// address (null: TPU_NAME, or a local TPU VM).
    tpu: Optional[str] = None
    # XLA: compile training steps and the SavedModel's serving function.
    jit_compile: bool = False
    # The precision policy used when the recipe chooses none with precision=...
    precision: PrecisionPolicy = PrecisionPolicy.float32
    # What the target needs built, whatever the recipe asks: the built formats are these
    # plus export.formats (one value or a list of the registered formats: tfbuild --help).
    formats: Any = field(default_factory=lambda: ["saved_model"])
    # Generated per format with variants (build_schema): FORMAT_quantization, the variants the
    # target ships unless the recipe or command line sets export.FORMAT.quantization.


@dataclass
class PrecisionConfig:
    # null: the target's precision (target.precision).
    policy: Optional[PrecisionPolicy] = None


# Settings here are the recipe's or the command line's; they take precedence over the target's
# (target.*), which take precedence over the schema's defaults. Each format adds export.NAME
# (its module's `export_config`).
@dataclass
class ExportBase:
    # One value or a list of formats, built in addition to the target's (target.formats): a
    # recipe asking for TFLite still gets the browser target's TF.js.
    formats: Any = field(default_factory=list)


@dataclass
class Tolerance:
    """How far an artifact's outputs may be from the SavedModel's on the same test inputs.
    A bound left null is recorded but not enforced."""

    # Largest |artifact - reference| over every output value.
    max_abs_diff: Optional[float] = None
    # Mean |artifact - reference| over every output value.
    mean_abs_diff: Optional[float] = None
    # Largest |artifact - reference| / max(|reference|, 1e-6) over every output value.
    max_rel_diff: Optional[float] = None
    # Smallest cosine similarity between artifact and reference, per sample.
    min_cosine: Optional[float] = None
    # Share of test samples whose top-1 class equals the reference's (classification outputs).
    min_top1_agreement: Optional[float] = None


@dataclass
class VerifyBase:
    # Run every exported artifact on its own runtime against the SavedModel. Turning it off
    # is recorded in build.json and said at the end of the build.
    enabled: bool = True
    # Held-out test samples to compare on; null = the whole test split.
    samples: Optional[int] = None
    # One value or a list of cpu, wasm (or []): TF.js backends each TF.js artifact is run on
    # in Node.js (cpu is plain JavaScript, about 25x slower than wasm on real models).
    tfjs_backends: Any = field(default_factory=lambda: ["wasm"])
    # One value or a list of webgl, wasm, cpu, webgpu (or []): TF.js backends each TF.js
    # artifact is run on in headless Chromium, loaded over HTTP as a page loads it (webgl
    # runs on SwiftShader without a GPU; webgpu only where the browser offers it).
    browser_backends: Any = field(default_factory=list)
    # The Node.js executable that runs TF.js and drives Chromium (a name on PATH or a path).
    node: str = "node"
    # The Chromium executable (a name on PATH or a path); null: TFBUILD_CHROMIUM, else the
    # first of chromium, chromium-browser, google-chrome on PATH.
    chromium: Optional[str] = None
    # verify.tolerances.FORMAT(.VARIANT): generated from each format's defaults (build_schema).
    tolerances: Any = None


@dataclass
class BenchmarkConfig:
    # Time every artifact on its own runtime: latency, throughput, size, test accuracy.
    enabled: bool = True
    # Untimed calls first: first calls pay for allocation, kernel selection and JIT
    # compilation. At least this many; then more while calls still get faster (TF.js's V8
    # optimizes for ~3,000 calls), for at most 5 x min_seconds of CPU time.
    warmup: int = 50
    # Timed calls go on until both of these are reached.
    min_runs: int = 50
    min_seconds: float = 0.2
    # ... split over this many rounds, each timing batch 1 then the batch in turn, so that a
    # drift of the machine hits both alike; the report's p50 is the rounds' median and
    # p50_spread how far they disagree.
    rounds: int = 5
    # Throughput is measured at this batch size; latency always at batch 1.
    batch_size: int = 32
    # Threads the runtime may use: LiteRT's num_threads, the SavedModel session's intra-op
    # pool. TF.js in Node is single-threaded whatever this says (recorded as 1).
    threads: int = 1
    # One value or a list of cpu, wasm (or []): the TF.js backends timed in Node.js (one
    # report row each).
    tfjs_backends: Any = field(default_factory=lambda: ["wasm"])
    # One value or a list of webgl, wasm, cpu, webgpu (or []): the TF.js backends timed in
    # headless Chromium (one report row each).
    browser_backends: Any = field(default_factory=list)


@dataclass
class Gate:
    """Limits an artifact must meet to ship; null = no limit. Checked after the report is
    written; a violated gate fails the build naming the artifact, the figure and the limit."""

    # Test-split accuracy (0..1) measured by the artifact's benchmark.
    min_accuracy: Optional[float] = None
    # SavedModel accuracy minus the artifact's (0.01 = one point).
    max_accuracy_drop: Optional[float] = None
    # Test-split mean absolute error (regression outputs), in the target's units.
    max_mae: Optional[float] = None
    # The artifact's MAE minus the SavedModel's (regression outputs).
    max_mae_increase: Optional[float] = None
    # Size on disk (a folder: all its files).
    max_bytes: Optional[int] = None
    # 95th percentile latency at batch 1, milliseconds.
    max_p95_ms: Optional[float] = None


@dataclass
class CacheConfig:
    # The shared step cache; relative paths are taken from the directory tfbuild runs in.
    dir: str = "outputs/cache"
    # A cache a team shares, at an fsspec URL (s3://, gs://, az://, sftp://, file://); null: none.
    # Credentials come from the back-end's own configuration, never from here.
    remote: Optional[str] = None
    # What this machine does with the remote: read (developers), write or readwrite (CI).
    remote_mode: RemoteMode = RemoteMode.read
    # Seconds one call to the remote may take (plus one per MiB it moves) before the remote
    # counts as down for the build: one warning, the build goes on locally.
    remote_timeout_s: int = 60
    # The most bytes one downloaded entry may hold (4 GiB: a billion float32 weights; TFLite and
    # protobuf model files stop at 2 GiB); a manifest claiming more is refused before a byte is written.
    remote_max_entry_bytes: int = 4 << 30


@dataclass
class SweepConfig:
    # `tfbuild -m`: the most jobs a sweep may expand to; counted before Hydra expands it.
    max_jobs: int = 1000


@dataclass
class TfbuildBase:
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    target: TargetBase = field(default_factory=TargetBase)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optimize: OptimizeConfig = field(default_factory=OptimizeConfig)
    export: ExportBase = field(default_factory=ExportBase)
    verify: VerifyBase = field(default_factory=VerifyBase)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    gates: Gate = field(default_factory=Gate)
    cache: CacheConfig = field(default_factory=CacheConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    # Print the plan, each step with why it would run, and build nothing.
    dry_run: bool = False
    # Rebuild steps even when cached: false, true (all), or a list of step names or kinds.
    force: Any = False
    # Steps built at once, each in a worker process that imports TensorFlow once; null: one per
    # CPU; 1: one at a time in tfbuild's own process. Never part of a cache key: the artifacts
    # are byte-identical whatever it is.
    jobs: Optional[int] = None
    # After a successful build, write recipes/pinned/RECIPE-VERSION.yaml: the resolved config
    # and a lock (tool versions, data and artifact digests). Refuses to overwrite a pin unless
    # pin_overwrite=true.
    pin: Optional[str] = None
    pin_overwrite: bool = False
    # What a pinned build must reproduce: bytes (every artifact byte for byte; refused before
    # training on another machine family) or metrics (rebuild anywhere, and hold each artifact's
    # test metrics within pin_tolerance of the pin's).
    pin_reproduce: PinReproduce = PinReproduce.bytes
    # pin_reproduce=metrics: how far a metric may be from the pin's: absolute up to 1
    # (accuracy: 0.01 is one point), relative to the pinned value above (MAE in target units).
    pin_tolerance: float = 0.01
    # Rebuild a pinned recipe although the installed tools differ from its lock; the
    # differences (tools, then artifacts) are reported instead of failing the build.
    allow_tool_drift: bool = False
    # Written by `pin=` into pinned recipes; never set by hand.
    lock: Any = None


def build_schema(formats: Mapping[str, Format]) -> type:
    """The whole config's schema: the engine's keys, plus what each registered format adds
    (export.NAME, target.NAME_quantization, verify.tolerances.NAME, gates.NAME). Subclassing
    keeps every field where the base class put it, only with the format-specific type."""
    with_variants = [f for f in formats.values() if f.variants]
    target = make_dataclass("TargetConfig", [
        (f"{f.name}_quantization", Any, field(default_factory=partial(list, f.default_variants))) for f in with_variants
    ], bases=(TargetBase,))  # fmt: skip
    export = make_dataclass("ExportConfig", [
        (f.name, f.export_config, field(default_factory=f.export_config)) for f in formats.values() if f.export_config
    ], bases=(ExportBase,))  # fmt: skip
    tolerances = make_dataclass("TolerancesConfig", [
        (f.name, *_tolerances(f)) for f in formats.values() if f.verify is not None
    ])  # fmt: skip
    verify = make_dataclass("VerifyConfig", [("tolerances", tolerances, field(default_factory=tolerances))],
                            bases=(VerifyBase,))
    gates = make_dataclass("GatesConfig", [(f.name, *_gates(f)) for f in formats.values()], bases=(Gate,))
    return make_dataclass("TfbuildConfig", [
        (name, kind, field(default_factory=kind)) for name, kind in
        (("target", target), ("export", export), ("verify", verify), ("gates", gates))
    ], bases=(TfbuildBase,))  # fmt: skip


def _tolerances(fmt: Format) -> tuple[type, Any]:
    if not fmt.variants:
        return Tolerance, field(default_factory=partial(Tolerance, **fmt.tolerances.get("", {})))
    kind = make_dataclass(f"{fmt.name.title()}Tolerances", [
        (v, Tolerance, field(default_factory=partial(Tolerance, **fmt.tolerances.get(v, {})))) for v in fmt.variants
    ])  # fmt: skip
    return kind, field(default_factory=kind)


def _gates(fmt: Format) -> tuple[type, Any]:
    """gates.NAME refines the top-level limits, and gates.NAME.VARIANT the format's."""
    if not fmt.variants:
        return Gate, field(default_factory=Gate)
    kind = make_dataclass(f"{fmt.name.title()}Gates", [(v, Gate, field(default_factory=Gate)) for v in fmt.variants],
                          bases=(Gate,))
    return kind, field(default_factory=kind)


TfbuildConfig = build_schema(FORMATS)
_built: dict[tuple[int, ...], type] = {tuple(map(id, FORMATS.values())): TfbuildConfig}


def current_schema() -> type:
    """The schema of the formats registered now (a test or plug-in may have added one)."""
    key = tuple(map(id, FORMATS.values()))
    if key not in _built:
        _built[key] = build_schema(FORMATS)
    return _built[key]


def register_configs(cs: Optional[ConfigStore] = None) -> None:
    """Register the schema under the name that `conf/config.yaml` lists first."""
    cs = cs or ConfigStore.instance()
    cs.store(name="tfbuild_schema", node=current_schema())
