"""The closing table as a piped build prints it: COLUMNS sets its width. A dry run, so no
TensorFlow: the table is the plan's, with each step's reason."""

from __future__ import annotations

import pytest

from tests.conftest import run_tfbuild


@pytest.mark.parametrize("columns", [80, 200])
def test_piped_output_is_as_wide_as_columns_says(tmp_path, columns):
    plan = run_tfbuild("recipe=digits_all", "dry_run=true", f"cache.dir={tmp_path / 'cache'}", cwd=tmp_path, check=True,
                       env={"COLUMNS": str(columns)})
    lines = plan.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= columns and "…" not in plan.stdout
    header = next(line for line in lines if line.startswith("step")).split()
    # A plan has no sizes or times yet; 200 columns have room for "why", 80 put it in the text.
    assert header == (["step", "status", "why", "result"] if columns == 200 else ["step", "status", "result"])
    assert "benchmark[tflite/int16x8]" in plan.stdout and "not in cache" in plan.stdout
