"""`tfbuild-report diff` holds a latency change against the noise the two runs measured: a
slowdown counts only when every timing round of B is slower than every round of A by more
than the threshold; one within the rounds' spread is shown, not counted; reports without
rounds (made before them) keep the threshold alone."""

from __future__ import annotations

import itertools
import json

import pytest

from tfbuild.report_diff import gap, main as diff_main

ROUNDS = [0.098, 0.100, 0.100, 0.101, 0.104]  # p50 0.100, spread 6%
ROW = {"artifact": "tfjs/uint8", "runtime": "TF.js 4.22.0 wasm", "bytes": 46_464, "p50_ms": 0.100, "p95_ms": 0.150,
       "accuracy": 0.95, "p50_spread": 0.06, "p95_spread": 0.10, "rounds": 5, "p50_rounds_ms": ROUNDS,
       "p95_rounds_ms": [0.14, 0.15, 0.15, 0.15, 0.155]}  # fmt: skip
OLD = {k: v for k, v in ROW.items() if k not in ("p50_spread", "p95_spread", "rounds", "p50_rounds_ms", "p95_rounds_ms")}


def timed(rounds: list[float], **row) -> dict:
    """ROW measured as `rounds` (p50 and spread follow from them)."""
    middle = sorted(rounds)[len(rounds) // 2]
    return dict(ROW, p50_ms=middle, p50_spread=(max(rounds) - min(rounds)) / middle, p50_rounds_ms=rounds, **row)


@pytest.fixture
def diff(tmp_path, capsys):
    """diff(old row, new row, *args) -> (exit code, the row's regressions, its entry, stderr)."""
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
        return exit_code.value.code, entry["regressions"], entry, err

    return run


def test_a_slowdown_of_every_round_beyond_the_threshold_is_a_regression(diff):
    code, regressions, entry, err = diff(ROW, timed([0.118, 0.120, 0.121, 0.122, 0.125]))  # +20%
    assert (code, regressions) == (1, ["slower"])
    assert entry["gap"]["p50_ms"] == pytest.approx(0.118 / 0.104 - 1)  # B's fastest round on A's slowest
    assert "regression: tfjs/uint8 (TF.js 4.22.0 wasm): slower" in err


def test_a_slower_median_with_a_round_as_fast_as_a_is_within_the_noise(diff):
    # Three rounds disturbed (+30%), two at A's speed: the median moved +30%, B was not slower.
    code, regressions, entry, _ = diff(ROW, timed([0.100, 0.101, 0.130, 0.131, 0.133]))
    assert (code, regressions) == (0, [])
    assert entry["p50_ms"]["ratio"] == pytest.approx(1.30) and entry["within_noise"] == ["p50_ms"]


def test_a_disturbed_baseline_widens_the_noise(diff):
    disturbed = timed([0.100, 0.101, 0.102, 0.150, 0.160])  # A's slowest round is a disturbed one
    assert diff(disturbed, timed([0.118, 0.120, 0.121, 0.122, 0.125]))[:2] == (0, [])  # within A's noise
    assert diff(disturbed, timed([0.180, 0.182, 0.185, 0.186, 0.190]))[:2] == (1, ["slower"])  # beyond it


def test_the_gap_is_fastest_of_b_on_slowest_of_a():
    assert gap(timed([1.0, 1.1, 1.2]), timed([1.5, 1.8, 2.0]), "p50_ms") == pytest.approx(0.25)
    assert gap(timed([1.0, 1.1, 1.2]), timed([0.9, 2.0, 2.0]), "p50_ms") == pytest.approx(0.9 / 1.2 - 1)
    assert gap(OLD, dict(OLD, p50_ms=0.2), "p50_ms") == pytest.approx(1.0)  # no rounds: the figures
    assert gap(dict(OLD, p50_ms=None), OLD, "p50_ms") is None  # not measured


def test_a_slowdown_within_the_threshold_is_not_one_however_quiet_the_runs(diff):
    quiet = timed([0.100] * 5)
    assert diff(quiet, timed([0.108] * 5))[:2] == (0, [])
    assert diff(quiet, timed([0.111] * 5))[:2] == (1, ["slower"])


def test_p95_counts_only_with_the_p95_flag_and_by_its_own_rounds(diff):
    slower_tail = dict(ROW, p95_ms=0.21, p95_rounds_ms=[0.20, 0.21, 0.21, 0.22, 0.22])  # +40%
    assert diff(ROW, slower_tail)[:2] == (0, [])  # p95 alone: shown, not judged
    assert diff(ROW, slower_tail, "--p95")[:2] == (1, ["slower"])
    overlapping = dict(slower_tail, p95_rounds_ms=[0.15, 0.21, 0.21, 0.22, 0.22])
    assert diff(ROW, overlapping, "--p95")[:2] == (0, [])  # one round of B at A's tail


def test_a_speed_up_is_never_a_regression(diff):
    assert diff(ROW, timed([0.05] * 5, p95_ms=0.07, p95_rounds_ms=[0.07] * 5), "--p95")[:2] == (0, [])


def test_old_reports_without_rounds_keep_the_threshold_alone(diff):
    assert diff(OLD, dict(OLD, p50_ms=0.115))[:2] == (1, ["slower"])
    assert diff(OLD, dict(OLD, p50_ms=0.105))[:2] == (0, [])
    nulls = dict(ROW, p50_rounds_ms=None, p95_rounds_ms=None)
    assert diff(nulls, dict(nulls, p50_ms=0.115))[:2] == (1, ["slower"])
    # An old baseline against a new run: the old figure is its only round.
    assert diff(OLD, timed([0.099, 0.12, 0.12, 0.12, 0.12]))[:2] == (0, [])
    assert diff(OLD, timed([0.115, 0.12, 0.12, 0.12, 0.12]))[:2] == (1, ["slower"])


@pytest.mark.parametrize("value", ["0.1 ms", [], [0.1, -0.1], [0.1, True], [0.1, float("nan")], 0.1])
def test_malformed_rounds_are_exit_2_in_one_line(tmp_path, capsys, value):
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "report.json").write_text(json.dumps({"rows": [ROW]}))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "report.json").write_text(json.dumps({"rows": [dict(ROW, p50_rounds_ms=value)]}))
    with pytest.raises(SystemExit) as exit_code:
        diff_main(["diff", str(tmp_path / "good"), str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert exit_code.value.code == 2 and err.count("\n") == 1
    assert "'p50_rounds_ms' must be a list of milliseconds (numbers over 0), or null" in err


def test_the_table_says_when_the_noise_kept_a_change_from_counting(tmp_path, capsys):
    quiet = dict(ROW, artifact="tfjs", runtime="wasm", accuracy=None)  # short cells: no wrapping
    rows = {"a": [quiet, dict(quiet, artifact="other")],
            "b": [dict(quiet, p50_ms=0.12, p50_rounds_ms=[0.1, 0.1, 0.12, 0.12, 0.12]),
                  dict(quiet, artifact="other", p50_ms=0.105)]}  # fmt: skip
    for name, report in rows.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps({"rows": report}))
    with pytest.raises(SystemExit) as exit_code:
        diff_main(["diff", str(tmp_path / "a"), str(tmp_path / "b")])
    out = capsys.readouterr().out
    assert exit_code.value.code == 0
    assert "0.1000 -> 0.1200 (+20.0%, within noise)" in out  # past --slower, not between rounds
    assert "0.1000 -> 0.1050 (+5.0%) " in out  # under --slower: nothing to explain
