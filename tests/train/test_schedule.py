"""The lr schedule's shapes, budgets as text, the planner, and a budgeted run end to end with a
fake clock (every training step takes 0.5 s of it): the plan, the lr at its last step, resume."""

from __future__ import annotations

import math

import pytest
import torch

from maxvit.errors import UserError
from maxvit.train import schedule, trainer
from maxvit.train.config import load_config
from maxvit.train.report import read_metrics
from maxvit.train.schedule import format_duration, lr_factor, parse_budget, plan_steps
from tests.train.utils import interrupt_at_step, read_weights, smoke_config


@pytest.mark.parametrize("shape", ["cosine", "linear"])
def test_each_shape_ends_at_its_end_value_on_the_last_step(shape):
    f = [lr_factor(s, total=50, warmup=5, min_ratio=0.1, shape=shape) for s in range(60)]
    assert f[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert f[5] == 1.0 and f[50] == pytest.approx(0.1) and f[59] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[4:], f[5:], strict=False))
    middle = 0.1 + 0.9 * (0.5 if shape == "linear" else 0.5 * (1 + math.cos(math.pi / 2)))
    assert f[5 + 45 // 2] == pytest.approx(middle, abs=0.02)


def test_linear_decay_is_a_straight_line():
    f = [lr_factor(s, total=100, warmup=0, min_ratio=0.0, shape="linear") for s in range(101)]
    assert f[25] == pytest.approx(0.75) and f[50] == pytest.approx(0.5) and f[100] == 0.0


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("90s", 1.5), ("10m", 10.0), ("2h", 120.0), ("1h30m", 90.0), ("7", 7.0), ("2.5m", 2.5)],
)
def test_budgets_read_as_minutes(text, minutes):
    assert parse_budget(text) == pytest.approx(minutes)


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "0m", "-5", "inf"])
def test_bad_budgets_are_one_line_errors(text):
    with pytest.raises(UserError, match="budget"):
        parse_budget(text)


def test_durations_read_like_a_clock():
    assert [format_duration(s) for s in (42.4, 580, 3725)] == ["42s", "9m40s", "1h02m05s"]


def test_the_plan_is_the_largest_step_count_that_fits():
    """usable = 600 x 0.97 - 30 elapsed - 5 at the end = 547 s; a run of T steps still costs
    (T - 25) x 0.5 s of steps + ceil(T / 100) evaluations x 4 s. T = 1031 costs 503 + 44 = 547;
    T = 1032 costs 547.5."""
    plan = plan_steps(
        budget_s=600, elapsed_s=30, done_steps=25, step_s=0.5, steps_per_epoch=100, eval_s=4,
        end_s=5,
    )  # fmt: skip
    assert plan.total_steps == 1031
    assert plan.evaluations == 11
    assert plan.estimate_seconds == pytest.approx(582.0)
    line = plan.describe(10, 64, 100)
    assert line.startswith("budget 10m00s: 1,031 steps of 64 = 10.3 epochs, est. 9m42s")


def test_evaluations_already_made_are_not_counted_again():
    """Done: 250 steps = 2 epochs, their 2 evaluations in the 200 s elapsed. Usable 1000 - 200
    = 800 s: T = 900 costs 650 x 1 + (9 - 2) x 20 = 790; T = 901 adds a step and an evaluation."""
    plan = plan_steps(
        budget_s=1000, elapsed_s=200, done_steps=250, step_s=1.0, steps_per_epoch=100, eval_s=20,
        margin=0.0,
    )  # fmt: skip
    assert (plan.total_steps, plan.evaluations) == (900, 7)


def test_a_budget_too_small_for_more_steps_ends_the_run_where_it_is():
    plan = plan_steps(
        budget_s=60, elapsed_s=70, done_steps=25, step_s=1.0, steps_per_epoch=100, eval_s=1
    )
    assert plan.total_steps == 25


class FakeClock:
    """`time` for the trainer and the planner: monotonic() advances 0.5 s per training step."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    @staticmethod
    def perf_counter() -> float:
        return 0.0


def fake_step_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(trainer, "time", clock)
    monkeypatch.setattr(schedule, "time", clock)
    real = trainer._Run._train_step

    def step(self, batches):
        real(self, batches)
        clock.now += 0.5

    monkeypatch.setattr(trainer._Run, "_train_step", step)


# 200 synthetic val images at 0.5 s per step of 8 cost 200 x 0.5 / 8 x 0.4 = 5 s per evaluation.
# Plan after 25 steps (12.5 s): usable 60 x 0.97 - 12.5 - 5 = 40.7 s; 2 epochs of 10 are done,
# so T steps cost (T - 25) x 0.5 + (ceil(T / 10) - 2) x 5: T = 60 costs 37.5, T = 61 costs 43.
BUDGET = ("epochs=1", "steps_per_epoch=10", "ckpt_every_steps=5", "budget_minutes=1")


def test_a_budget_plans_the_steps_and_the_lr_ends_on_the_last(
    synth_data, tmp_path, monkeypatch, capsys
):
    fake_step_time(monkeypatch)
    run = trainer.train(smoke_config(synth_data, *BUDGET), tmp_path / "run")
    err = capsys.readouterr().err
    assert "budget 1m00s: 60 steps of 8 = 6.0 epochs, est. 55s" in err
    saved = load_config(run / "config.yaml")
    assert saved.total_steps == 60 and saved.budget_minutes == 1
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60]
    assert rows[-1]["lr"] == 0.0  # the cosine reached min_lr exactly on step 60
    assert rows[1]["lr"] > 0.0


@pytest.mark.slow  # three runs of about 30 steps: about 20 s
def test_a_budget_run_resumes_and_reruns_its_plan_exactly(
    synth_data, tmp_path, monkeypatch, capsys
):
    fake_step_time(monkeypatch)
    config = smoke_config(synth_data, *BUDGET[:-1], "budget_minutes=0.5")
    reference = trainer.train(config, tmp_path / "reference")
    assert load_config(reference / "config.yaml").total_steps > 28
    interrupt_at_step(monkeypatch, 28)  # after the plan; the checkpoint of step 25 is on disk
    with pytest.raises(KeyboardInterrupt):
        trainer.train(config, tmp_path / "run")
    capsys.readouterr()
    fake_step_time(monkeypatch)  # a clock that would plan otherwise: the saved plan must win
    trainer.time.now = 5000.0
    run = trainer.train(
        load_config(tmp_path / "run" / "config.yaml"), tmp_path / "run", resume=True
    )
    assert "budget 30s:" not in capsys.readouterr().err  # not planned again
    final = read_weights(run / "checkpoints" / "last.safetensors")
    expected = read_weights(reference / "checkpoints" / "last.safetensors")
    assert all(torch.equal(final[k], expected[k]) for k in expected)
    # a second run from the saved config, without timing anything, trains the same steps
    again = trainer.train(load_config(reference / "config.yaml"), tmp_path / "again")
    weights = read_weights(again / "checkpoints" / "last.safetensors")
    assert all(torch.equal(weights[k], expected[k]) for k in expected)


@pytest.mark.slow  # two training runs of 4 steps: about 10 s
def test_a_run_stops_at_the_first_epoch_that_fits_and_stays_stopped(
    synth_data, tmp_path, monkeypatch, capsys
):
    fits = iter([30.0, 70.0, 90.0, 95.0])  # clean-train top-1 of epochs 1-4, if they ran
    real = trainer._Run._evaluate

    def evaluate(self, split, **options):
        result = real(self, split, **options)
        return {**result, "top1": next(fits)} if split == "train" else result

    monkeypatch.setattr(trainer._Run, "_evaluate", evaluate)
    fit = ("epochs=4", "steps_per_epoch=2", "fit_images=20", "stop_at_fit=60")
    run = trainer.train(smoke_config(synth_data, *fit), tmp_path / "run")
    assert [r["clean_train_top1"] for r in read_metrics(run)] == [30.0, 70.0]
    assert "done in " in (err := capsys.readouterr().err)
    assert ", fitted: clean-train top-1 70.00%: val top-1" in err
    trainer.train(load_config(run / "config.yaml"), run, resume=True)
    err = capsys.readouterr().err
    assert "already complete (4 steps, fitted: clean-train top-1 70.00%, best" in err
    assert "(raise stop_at_fit to train on)" in err
    assert len(read_metrics(run)) == 2


@pytest.mark.parametrize("setting", [("stop_at_fit=60",), ("fit_images=20", "stop_at_fit=101")])
def test_stop_at_fit_needs_a_clean_train_measure_and_a_percentage(synth_data, setting):
    with pytest.raises(UserError, match="stop_at_fit is a clean-train top-1 in"):
        smoke_config(synth_data, *setting)
