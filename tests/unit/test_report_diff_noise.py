"""`tfbuild-report diff` holds a latency change against the noise the two runs measured: a
slowdown beyond both the threshold and the two runs' spreads together is a regression; one within the
noise is not; reports without spreads (made before timing rounds) keep the threshold alone."""

from __future__ import annotations

import itertools
import json

import pytest

from tfbuild.report_diff import main as diff_main, noise

ROW = {"artifact": "tfjs/uint8", "runtime": "TF.js 4.22.0 wasm", "bytes": 46_464, "p50_ms": 0.100,
       "p95_ms": 0.150, "accuracy": 0.95, "p50_spread": 0.04, "p95_spread": 0.10, "rounds": 5}  # fmt: skip
OLD = {k: v for k, v in ROW.items() if k not in ("p50_spread", "p95_spread", "rounds")}  # before rounds


@pytest.fixture
def diff(tmp_path, capsys):
    """diff(old row, new row) -> (exit code, the row's regressions, its noise, stderr)."""
    count = itertools.count()

    def run(old: dict, new: dict, *args: str) -> tuple[int, list[str], dict, str]:
        folders = []
        for row in (old, new):
            folder = tmp_path / str(next(count))
            folder.mkdir()
            (folder / "report.json").write_text(json.dumps({"rows": [row]}))
            folders.append(str(folder))
        with pytest.raises(SystemExit) as exit_code:
            diff_main(["diff", *folders, "--json", *args])
        out, err = capsys.readouterr()
        [entry] = json.loads(out)
        return exit_code.value.code, entry["regressions"], entry["noise"], err

    return run


def test_a_slowdown_beyond_threshold_and_noise_is_a_regression(diff):
    code, regressions, _, err = diff(ROW, dict(ROW, p50_ms=0.125, p50_spread=0.06))  # +25%: > 10%, > 4% + 6%
    assert (code, regressions) == (1, ["slower"])
    assert "regression: tfjs/uint8 (TF.js 4.22.0 wasm): slower" in err


def test_a_slowdown_past_the_threshold_but_within_the_noise_is_not(diff):
    # +20% on p50, past --slower, but run B's own rounds spread 30%.
    code, regressions, measured, _ = diff(ROW, dict(ROW, p50_ms=0.120, p50_spread=0.30))
    assert (code, regressions) == (0, [])
    assert measured == {"p50_ms": pytest.approx(0.34), "p95_ms": pytest.approx(0.20)}


def test_the_noise_is_both_runs_spreads_together():
    assert noise(dict(ROW, p50_spread=0.25), dict(ROW, p50_spread=0.05), "p50_ms") == pytest.approx(0.30)
    assert noise(ROW, dict(ROW, p95_spread=0.4), "p95_ms") == pytest.approx(0.5)
    # +16%: past 10% and past either spread (8%), not past both (16.5%).
    assert noise(dict(ROW, p50_spread=0.08), dict(ROW, p50_spread=0.085), "p50_ms") == pytest.approx(0.165)


def test_a_slowdown_past_each_spread_but_not_both_is_within_the_noise(diff):
    assert diff(dict(ROW, p50_spread=0.08), dict(ROW, p50_ms=0.116, p50_spread=0.085))[:2] == (0, [])
    assert diff(dict(ROW, p50_spread=0.08), dict(ROW, p50_ms=0.117, p50_spread=0.085))[:2] == (1, ["slower"])


def test_a_slowdown_within_the_threshold_is_not_one_however_quiet_the_runs(diff):
    assert diff(dict(ROW, p50_spread=0.0), dict(ROW, p50_ms=0.108, p50_spread=0.0))[:2] == (0, [])


def test_p95_counts_only_with_the_p95_flag_and_against_its_own_spreads(diff):
    assert diff(ROW, dict(ROW, p95_ms=0.210))[:2] == (0, [])  # p95 alone: shown, not judged
    assert diff(ROW, dict(ROW, p95_ms=0.210), "--p95")[:2] == (1, ["slower"])  # +40% > 10% + 10%
    assert diff(ROW, dict(ROW, p95_ms=0.210, p95_spread=0.35), "--p95")[:2] == (0, [])  # within 10% + 35%


def test_a_speed_up_is_never_a_regression(diff):
    assert diff(ROW, dict(ROW, p50_ms=0.05, p95_ms=0.07))[:2] == (0, [])


def test_old_reports_without_spreads_keep_the_threshold_alone(diff):
    assert diff(OLD, dict(OLD, p50_ms=0.115))[:3] == (1, ["slower"], {"p50_ms": 0.0, "p95_ms": 0.0})
    assert diff(OLD, dict(OLD, p50_ms=0.105))[:2] == (0, [])
    # Spreads of null (not measured) count as none.
    nulls = dict(ROW, p50_spread=None, p95_spread=None)
    assert diff(nulls, dict(nulls, p50_ms=0.115))[:2] == (1, ["slower"])
    # An old baseline against a new run: the new run's spread is all the noise known.
    assert diff(OLD, dict(ROW, p50_ms=0.115, p50_spread=0.2))[:2] == (0, [])
    assert diff(OLD, dict(ROW, p50_ms=0.125, p50_spread=0.2))[:2] == (1, ["slower"])


@pytest.mark.parametrize("value", ["5%", -0.1, True, float("nan")])
def test_a_malformed_spread_is_exit_2_in_one_line(tmp_path, capsys, value):
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "report.json").write_text(json.dumps({"rows": [ROW]}))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "report.json").write_text(json.dumps({"rows": [dict(ROW, p50_spread=value)]}))
    with pytest.raises(SystemExit) as exit_code:
        diff_main(["diff", str(tmp_path / "good"), str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert exit_code.value.code == 2 and err.count("\n") == 1
    assert "'p50_spread' must be a number of 0 or more, or null" in err


def test_the_table_says_when_the_noise_kept_a_change_from_counting(tmp_path, capsys):
    quiet = dict(ROW, artifact="tfjs", runtime="wasm", accuracy=None)  # short cells: no wrapping
    rows = {"a": [quiet, dict(quiet, artifact="other")],
            "b": [dict(quiet, p50_ms=0.12, p50_spread=0.3), dict(quiet, artifact="other", p50_ms=0.105)]}
    for name, report in rows.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps({"rows": report}))
    with pytest.raises(SystemExit) as exit_code:
        diff_main(["diff", str(tmp_path / "a"), str(tmp_path / "b")])
    out = capsys.readouterr().out
    assert exit_code.value.code == 0
    assert "0.1000 -> 0.1200 (+20.0%, within noise 34%)" in out  # past --slower, within the noise
    assert "0.1000 -> 0.1050 (+5.0%) " in out  # under --slower: nothing to explain
