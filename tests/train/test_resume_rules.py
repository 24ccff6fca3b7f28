"""What `maxvit train --resume` accepts: a run in --out (or --resume auto), the same preset,
model, input size and data; data paths saved absolute, so a run resumes from any folder."""

from __future__ import annotations

import os

import pytest

from maxvit.cli import main
from maxvit.train.config import load_config

SMOKE = ("--set", "epochs=1", "--set", "steps_per_epoch=1")


def _train(*args: str) -> int:
    return main(["train", "--preset", "smoke", *SMOKE, *args])


@pytest.fixture
def run(synth_data, tmp_path):
    folder = tmp_path / "run"
    assert _train("--data", str(synth_data), "--out", str(folder)) == 0
    return folder


def test_resume_without_a_run_is_an_error_unless_auto(synth_data, tmp_path, capsys):
    missing = tmp_path / "typo"
    assert _train("--data", str(synth_data), "--out", str(missing), "--resume") == 2
    assert "holds no run to resume" in capsys.readouterr().err and not missing.exists()
    assert _train("--data", str(synth_data), "--out", str(missing), "--resume", "auto") == 0
    assert (missing / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("--model", "coatnet_nano"), "model maxvit_nano"),
        (("--set", "img_size=64"), "img_size 32"),
        (("--preset", "cpu-mini"), "--preset smoke"),
    ],
)
def test_a_resume_that_changes_the_run_is_refused_naming_the_setting(run, capsys, change, named):
    code = main(["train", "--out", str(run), "--resume", *change])
    assert code == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_other_data_is_refused_and_a_run_resumes_from_another_folder(
    run, synth_data, tmp_path, capsys, monkeypatch
):
    saved = load_config(run / "config.yaml")
    assert saved.data == str(synth_data.absolute()) and saved.preset == "smoke"
    other = tmp_path / "other"
    other.mkdir()
    assert main(["train", "--out", str(run), "--resume", "--data", str(other)]) == 2
    assert f"data {synth_data.absolute()}" in capsys.readouterr().err
    monkeypatch.chdir(other)  # the saved absolute path still finds the data
    relative = os.path.relpath(run, other)
    assert main(["train", "--out", relative, "--resume", "--set", "epochs=2"]) == 0
    assert load_config(run / "config.yaml").epochs == 2


def test_an_unreadable_config_is_one_line(run, capsys):
    (run / "config.yaml").write_text("model: [unclosed\n")
    assert main(["train", "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot read the run config {run / 'config.yaml'}")
    assert err.count("\n") == 1
