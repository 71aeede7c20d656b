"""The terminal: the closing tables fitted to 80 columns with every number whole, COLUMNS for
piped output, and training progress (batch positions throttled, one line per epoch in logs)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from tfbuild.cache import Entry
from tfbuild.console import LOG_WIDTH, StepProgress, piped_width, report_table, summary_table, terminal_console
from tfbuild.console_tables import size_cell, size_unit
from tfbuild.plan import OutputSpec, StepSpec
from tfbuild.report import report_rows
from tfbuild.runner import BUILT, CACHED, FAILED, NOT_NEEDED, SKIPPED, TO_BUILD, BuildResult, StepResult
from tfbuild.training.fit import EpochProgress
from tfbuild.training.tasks import CLASSIFICATION, Output

from tests.unit.test_report import NO_GATES, bench, classified, export, verify

NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?%?")
INT8_ERROR = ("VerificationFailed: tflite/int8 does not match the SavedModel: LiteRT 2.3.0: top-1 agreement "
              "0.5556 < min_top1_agreement 0.95; TF.js 4.22.0 wasm: max |Δ| 0.031250 > max_abs_diff 0.001")  # fmt: skip


def rendered(renderable, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def numbers(text: str) -> set[str]:
    return set(NUMBER.findall(text))


def assert_fits_with_whole_numbers(text: str, width: int, expected: set[str]) -> None:
    assert "…" not in text, "no cell is cut short"
    assert all(len(line.rstrip()) <= width for line in text.splitlines()), text
    missing = expected - numbers(text)
    assert not missing, f"cut or left out: {sorted(missing)}\n{text}"


def step(name: str, status: str, reason: str, seconds: float = 0.0, summary: str = "", published: int | None = None,
         error: str | None = None) -> StepResult:  # fmt: skip
    outputs = (OutputSpec("model", name, "x", publish=name if published is not None else None),)
    entry = Entry("k", Path("/nowhere"), {"outputs": {"model": {"bytes": published}}}) if published is not None else None
    info = {"summary": summary} if summary else {}
    return StepResult(StepSpec(name=name, kind="k", outputs=outputs), status, reason, "k", seconds, info, entry, error)


def realistic_build() -> BuildResult:
    """digits_all as a build that changed epochs, failed one verification and is long-winded."""
    verified = "top-1 100.0%, max |Δ| 6.6e-07, min cos 1.0000"
    steps = [
        step("data", CACHED, "cached", 0.01, "1258/180/359 samples"),
        step("train", BUILT, "params changed (epochs: 5 -> 6, learning_rate: 0.001 -> 0.0005)", 17.93,
             "test accuracy 95.5%, stopped after 4/6 epochs"),
        step("saved_model", BUILT, "input changed (model)", 1.09, "1 input -> probabilities", 255_531),
    ]
    for variant, size in (("float", 156_188), ("dynamic", 45_184), ("fp16", 80_600), ("int8", 45_072), ("int16x8", 61_440)):
        steps.append(step(f"tflite[{variant}]", BUILT, "input changed (saved_model)", 0.87, f"gzip {size * 0.9 / 1024:.1f} KB", size))
    for variant, size in (("none", 250_112), ("float16", 126_976), ("uint8", 65_536), ("uint16", 126_977)):
        steps.append(step(f"tfjs[{variant}]", BUILT, "not in cache", 0.31, "2 shards", size))
    steps += [
        step("reference", BUILT, "input changed (saved_model)", 0.16, "accuracy 95.5% on 359 test samples"),
        step("verify[tflite/float]", BUILT, "not in cache", 0.01, verified),
        step("verify[tflite/int8]", FAILED, "not in cache", 0.02, error=INT8_ERROR),
        step("verify[tfjs/uint16]", BUILT, "not in cache", 2.41, "top-1 99.7%, max |Δ| 2.9e-02, min cos 0.9982"),
        step("benchmark[tflite/int16x8]", BUILT, "not in cache", 0.44, "p50 0.006 ms, accuracy 95.5%"),
        step("benchmark[tflite/int8]", SKIPPED, "verify[tflite/int8] did not build"),
        step("tflite_layers[int8]", BUILT, "not in cache", 0.34, "worst: hidden (FULLY_CONNECTED) loses 98% of its output, "
             "rmse/scale 0.23", 579),
        step("tflite_repair[int16x8]", NOT_NEEDED, "verify[tflite/int16x8] passed"),
    ]  # fmt: skip
    return BuildResult(steps)


def expected_step_numbers(build: BuildResult) -> set[str]:
    """Every figure the step table owes the reader: seconds, sizes in KB, and the numbers in
    each result, error and (non-default) reason."""
    texts = []
    for r in build.steps:
        texts += [r.spec.name, str(r.info.get("summary", "")), r.error or "", r.reason]
        if r.status in (BUILT, CACHED, FAILED):
            texts.append(f"{r.seconds:.2f}")
        if r.entry is not None:
            texts.append(size_cell(r.entry.manifest["outputs"]["model"]["bytes"], 1024))
    return numbers(" ".join(texts))


@pytest.mark.parametrize("width", [80, 100, 120, 200])
def test_the_step_table_fits_the_terminal_and_keeps_every_number_whole(width):
    build = realistic_build()
    text = rendered(summary_table(build, "tfbuild build: digits_all"), width)
    assert_fits_with_whole_numbers(text, width, expected_step_numbers(build))
    assert "0.6" in text, "a 579-byte file is 0.57 KB, not 0.0"
    header = next(line for line in text.splitlines() if line.startswith("step"))
    assert header.split()[:3] == ["step", "status", "why"] if width >= 200 else header.split() == ["step", "status", "s", "KB", "result"]
    # The reasons that say more than the status are shown at any width, "not in cache" only when wide.
    flat = " ".join(text.split())
    assert "params changed (epochs: 5 -> 6, learning_rate: 0.001 -> 0.0005)" in flat
    assert "verify[tflite/int8] did not build" in flat
    assert ("not in cache" in text) == (width >= 200)
    assert ("Built: not in the cache, unless a reason is shown." in flat) == (width < 200)


def test_a_very_narrow_terminal_drops_figures_before_squeezing_the_text():
    text = rendered(summary_table(realistic_build(), "t"), 70)
    assert "…" not in text and "Narrow terminal: sizes are in build.json." in " ".join(text.split())
    assert text.splitlines()[1].split() == ["step", "status", "s", "result"]
    text = rendered(summary_table(realistic_build(), "t"), 60)
    assert "Narrow terminal: sizes and seconds are in build.json." in " ".join(text.split())
    assert text.splitlines()[1].split() == ["step", "status", "result"]


def test_a_dry_run_has_no_size_column_and_megabytes_when_models_are_large():
    plan = BuildResult([step("train", TO_BUILD, "not in cache"), step("saved_model", TO_BUILD, "after train (its input may change)")])
    header = rendered(summary_table(plan, "plan"), 80).splitlines()[1].split()
    assert header == ["step", "status", "why", "result"], "no size column, no seconds; room for why"
    big = BuildResult([step("saved_model", BUILT, "not in cache", 3.2, "", 250 * 2**20), step("tflite[int8]", BUILT, "not in cache", 1.0, "", 579)])
    text = rendered(summary_table(big, "t"), 80)
    assert "MB" in text.splitlines()[1] and "250.0" in text and "0.00055" in text
    assert size_unit([None, 9 * 2**20]) == ("KB", 1024) and size_cell(None, 1024) == ""


def digits_all_rows(gate: str | None = None) -> list[dict]:
    """Report rows as report.py makes them: five TFLite variants, TF.js on two backends."""
    steps = [export("saved_model", "saved_model", None, 154_886), bench("saved_model", 255_531, ("TensorFlow 2.19.0", 0.3252, 0.9554))]
    for i, variant in enumerate(("float", "dynamic", "fp16", "int8", "int16x8")):
        steps += [export(f"tflite/{variant}", "tflite", variant, 40_000 + i * 1234), verify(f"tflite/{variant}"),
                  bench(f"tflite/{variant}", 45_000 + i * 20_001, ("LiteRT 2.3.0", 0.0062 + i / 1000, 0.9554 - i / 1000))]
    for variant in ("float16", "uint8"):
        steps += [export(f"tfjs/{variant}", "tfjs", variant, 36_000), verify(f"tfjs/{variant}"),
                  bench(f"tfjs/{variant}", 146_000, ("TF.js 4.22.0 cpu", 1.9321, 0.9499), ("TF.js 4.22.0 wasm", 0.1517, 0.9499))]
    gates = {**NO_GATES, **({"max_bytes": 100_000} if gate else {})}
    return report_rows(BuildResult(steps), gates)  # fmt: skip


@pytest.mark.parametrize("width", [80, 120, 200])
@pytest.mark.parametrize("gate", [None, "max_bytes"])
def test_the_report_table_fits_the_terminal_and_keeps_every_number_whole(width, gate):
    from tfbuild.report_table import table_cells, table_columns

    rows = digits_all_rows(gate)
    text = rendered(report_table(rows, "report: /tmp/run/report.md", width), width)
    header = next(line for line in text.splitlines() if line.startswith("artifact")).split("  ")
    shown = {h.strip() for h in header if h.strip()}
    # Each figure of a column on screen is there whole; sizes are in the header's unit.
    expected = {size_cell(r["bytes"], 1024) for r in rows}
    for column in table_columns(rows):
        if column.numeric and column.header in shown:
            expected |= {cell for row in rows for cell in [column.cell(row)]}
    assert_fits_with_whole_numbers(text, width, expected)
    assert {"artifact", "KB", "accuracy", "Δ acc", "verify", "gate"} <= shown
    assert "runtime" in shown, "TF.js cpu and wasm rows of one artifact are told apart by runtime"
    flat = " ".join(text.split())
    if width == 80:
        left_out = "samples/s, runtime versions and gate limits" if gate else "samples/s and runtime versions"
        assert f"Narrow terminal: gzip KB, p95 ms, {left_out} are in report.md." in flat
        assert "p50 ms" in shown, "latency stays: the gate's limit names go first"
        assert "TF.js wasm" in text and "2.19.0" not in text
    if width == 200:
        assert "Narrow terminal" not in flat and "TF.js 4.22.0 wasm" in text and "gzip KB" in shown
        assert all(cell in text for row in rows for cell in table_cells(row, table_columns(rows)[4:7]))
    if gate:
        assert ("failed: max_bytes" in flat) == (width > 80) and "failed" in text


def test_piped_output_honours_columns(monkeypatch):
    assert piped_width({"COLUMNS": "80"}) == 80
    assert piped_width({}) == LOG_WIDTH == piped_width({"COLUMNS": "wide"}) == piped_width({"COLUMNS": "0"})
    monkeypatch.setenv("COLUMNS", "93")
    with terminal_console() as console:  # pytest's captured stdout is not a terminal
        assert not console.is_terminal and console.width == 93
    monkeypatch.delenv("COLUMNS")
    with terminal_console() as console:
        assert console.width == LOG_WIDTH


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self):
        self.calls: list[tuple] = []

    def start(self, total, description):
        self.calls.append(("start", total, description))

    def advance(self, description=None):
        self.calls.append(("advance", description))

    def update(self, completed, total, description=None):
        self.calls.append(("update", completed, total, description))


def test_batch_positions_go_out_at_most_every_tenth_of_a_second():
    clock, progress = FakeClock(), Recorder()
    outputs = [Output("probabilities", "label", CLASSIFICATION, "sparse_categorical_crossentropy")]
    ticker = EpochProgress(progress, epochs=3, steps=400, outputs=outputs, clock=clock)
    for epoch in range(3):
        ticker.epoch = epoch
        for batch in range(400):
            clock.now += 0.001  # a fast model: 1,000 batches a second
            ticker.batch_end(batch, {"loss": 0.5 - epoch / 10, "accuracy": 0.9})
        ticker.epoch_end(epoch, {"loss": 0.4, "accuracy": 0.91, "val_loss": 0.3, "val_accuracy": 0.93}, stopped=False)
    updates = [c for c in progress.calls if c[0] == "update"]
    assert 10 <= len(updates) <= 13, "1.2 s of batches: about one position per 0.1 s, not 1,200"
    assert updates[0] == ("update", 1, 1200, "epoch 1/3 loss 0.5 accuracy 0.900")
    positions = [u[1] for u in updates]
    assert positions == sorted(positions) and all(u[2] == 1200 for u in updates)
    assert any(u[3].startswith("epoch 3/3 loss 0.3") for u in updates)
    assert [c[1] for c in progress.calls if c[0] == "advance"] == [
        f"epoch {e}/3 accuracy 0.910 val 0.930" for e in (1, 2, 3)]  # fmt: skip
    for value in (*(u[1] for u in updates), *(u[2] for u in updates)):
        assert type(value) is int, "plain values: they may cross a process boundary"


def test_a_progress_without_update_still_gets_its_epochs():
    class EpochsOnly:
        def __init__(self):
            self.lines = []

        def start(self, total, description):
            pass

        def advance(self, description=None):
            self.lines.append(description)

    progress = EpochsOnly()
    ticker = EpochProgress(progress, epochs=1, steps=2, outputs=[], clock=FakeClock())
    ticker.batch_end(0, {"loss": 1.0})
    ticker.epoch_end(0, {"loss": 1.0}, stopped=True)
    assert progress.lines == ["epoch 1/1 loss 1, early stop"]


def test_a_log_gets_one_line_per_epoch_and_none_per_batch():
    out = io.StringIO()
    progress = StepProgress(Console(file=out, width=80), "train")
    progress.start(2, "epoch 1/2")
    for epoch in (1, 2):
        for batch in range(50):
            progress.update((epoch - 1) * 50 + batch + 1, 100, f"epoch {epoch}/2 loss 0.5")
        progress.advance(f"epoch {epoch}/2 accuracy 0.900")
    progress.stop()
    assert out.getvalue().splitlines() == ["  train: epoch 1/2 accuracy 0.900", "  train: epoch 2/2 accuracy 0.900"]


def test_a_terminal_bar_moves_within_an_epoch_and_lands_on_each_epochs_end():
    console = Console(file=io.StringIO(), width=80, force_terminal=True)
    progress = StepProgress(console, "train")
    progress.start(5, "epoch 1/5")
    bar = progress._bar
    assert bar is not None
    progress.update(53, 200, "epoch 2/5 loss 0.53")
    task = bar.tasks[0]
    assert (task.completed, task.total, task.description) == (53, 200, "epoch 2/5 loss 0.53")
    progress.advance("epoch 1/5 accuracy 0.800")
    assert (task.completed, task.total) == (40, 200), "the end of epoch 1, in batches"
    progress.stop()
    # A bar in start's units (int8 repair's stages) advances one unit at a time.
    progress.start(4, "calibrating")
    progress.advance("comparing")
    assert progress._bar is not None and progress._bar.tasks[0].completed == 1
    progress.stop()
