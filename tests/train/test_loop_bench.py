"""`maxvit bench loop`: both sides train, rounds alternate, the ratio is trainer / minimal."""

from __future__ import annotations

import json

from maxvit.cli import main


def test_bench_loop_times_both_sides_and_writes_json(synth_data, tmp_path, capsys):
    out = tmp_path / "loop.json"
    args = ["bench", "loop", "--preset", "smoke", "--data", str(synth_data), "--steps", "2",
            "--warmup", "1", "--rounds", "2", "--set", "img_size=32", "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "trainer step" in printed and "minimal loop" in printed
    result = json.loads(out.read_text())
    assert len(result["rounds"]["trainer"]) == len(result["rounds"]["minimal"]) == 2
    assert result["trainer"] > 0 and result["minimal"] > 0
    assert result["ratio"] == result["trainer"] / result["minimal"]
    assert (result["model"], result["img_size"], result["batch_size"]) == ("maxvit_nano", 32, 8)


def test_bench_loop_checks_its_counts(synth_data, capsys):
    args = ["bench", "loop", "--preset", "smoke", "--data", str(synth_data), "--steps", "0"]
    assert main(args) == 2
    assert "--steps and --rounds must be >= 1" in capsys.readouterr().err
