"""The reproduction study: an end-to-end run on a synthetic archive, the report against the
files the run wrote, reuse and refusal on re-runs, the verdict rules, and the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from maxvit.errors import UserError
from maxvit.recorded import RECORDED
from maxvit.repro import claims, plan
from maxvit.repro import study as st
from maxvit.repro.report import rebuild_report
from maxvit.repro.results import ModelResult

# A few seconds of training per model: the smoke preset, one epoch of one step.
TINY = ["epochs=1", "steps_per_epoch=1"]


@pytest.fixture(scope="module")
def study_dir(synthetic_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("repro") / "study"
    report = st.run_study("smoke", synthetic_archive, out, TINY)
    assert report == out / "REPORT.md"
    return out


def _table(report: str) -> dict[str, list[str]]:
    """The Results table of REPORT.md: model name -> cells."""
    section = report.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ") and "`" in ln]
    table = {}
    for line in rows:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        table[cells[0].split("`")[1]] = cells
    return table


@pytest.mark.slow
def test_report_numbers_equal_the_run_files(study_dir: Path) -> None:
    report = (study_dir / "REPORT.md").read_text()
    png = (study_dir / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    table = _table(report)
    assert list(table) == list(plan.NANO)
    bench = {
        r["model"]: r for r in json.loads((study_dir / "bench/model.json").read_text())["results"]
    }
    for name, cells in table.items():
        run = study_dir / "runs" / name
        rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
        last = rows[-1]
        clean = json.loads((run / "clean_train.json").read_text())
        assert clean["split"] == "train" and clean["n"] == 400 and clean["step"] == last["step"]
        expected = [
            f"{bench[name]['params'] / 1e6:.2f}",
            f"{bench[name]['gflops_forward_per_image']:.3f}",
            f"{bench[name]['train_s_per_batch']:.3f}",
            None,  # s/batch in the run: a median over epochs, checked below
            f"{last['train_acc']:.2f}",
            f"{clean['top1']:.2f}",
            f"{last['val_top1']:.2f}",
            f"{last['val_top5']:.2f}",
            f"{clean['top1'] - last['val_top1']:.2f}",
        ]
        for got, want in zip(cells[1:], expected, strict=True):
            if want is not None:
                assert got == want, (name, cells)
        assert cells[4] == f"{8 / last['images_per_s']:.3f}"  # one epoch, batch 8
    # The recorded results stand beside ours, labelled by scale; every claim has a verdict.
    maxvit_val = json.loads(
        (study_dir / "runs/maxvit_nano/metrics.jsonl").read_text().splitlines()[-1]
    )
    row = f"| MaxViT val top-1 | {RECORDED['val_top1']:.2f}% | {maxvit_val['val_top1']:.2f}% |"
    assert row in report and f"| recorded: {RECORDED['scale']} |" in report
    assert "ours: CPU" in report and "400 train / 200 val" in report
    verdicts = [ln for ln in report.splitlines() if ln[:3] in ("1. ", "2. ", "3. ")]
    assert len(verdicts) == 3 and all("** at this scale" in v for v in verdicts)


@pytest.mark.slow
def test_rebuild_report_from_files_only(study_dir: Path) -> None:
    report = study_dir / "REPORT.md"
    before = report.read_text()
    report.unlink()
    (study_dir / "curves.png").unlink()
    assert rebuild_report(study_dir) == report
    assert report.read_text() == before
    assert (study_dir / "curves.png").exists()


@pytest.mark.slow
def test_rerun_reuses_and_other_recipe_is_refused(study_dir: Path, synthetic_archive: Path) -> None:
    metrics = study_dir / "runs" / "vit_nano" / "metrics.jsonl"
    stamp = metrics.stat().st_mtime_ns
    phases = json.loads((study_dir / "study.json").read_text())["phases"]
    st.run_study("smoke", synthetic_archive, study_dir, TINY)  # nothing left to do
    assert metrics.stat().st_mtime_ns == stamp
    assert json.loads((study_dir / "study.json").read_text())["phases"] == phases
    st.run_study("smoke", synthetic_archive, study_dir, [*TINY, "num_workers=1"])  # same numbers
    assert metrics.stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="another preset or recipe"):
        st.run_study("smoke", synthetic_archive, study_dir, ["epochs=2", "steps_per_epoch=1"])


def test_study_configs() -> None:
    from maxvit.train.config import apply_overrides, load_preset

    seed_plan, config = plan.study_config("seed", "DATA", [])
    assert seed_plan.models == plan.FULL
    assert config == apply_overrides(load_preset("seed"), ["data=DATA"])  # the recorded recipe
    mini_plan, config = plan.study_config("cpu-mini", "DATA", ["seed=7"])
    assert mini_plan.models == plan.NANO
    changed = {
        f.name
        for f in dataclasses.fields(config)
        if getattr(config, f.name) != getattr(load_preset("cpu-mini"), f.name)
    }
    assert changed == {"seed", "data"}  # the cpu-mini recipe as it is, with the overrides
    with pytest.raises(UserError, match="--set model"):
        plan.study_config("cpu-mini", "DATA", ["model=vit_nano"])
    with pytest.raises(UserError, match="unknown preset"):
        plan.study_config("nope", "DATA", [])


def test_same_recipe_reads_a_missing_field_as_its_default() -> None:
    """A study begun before a field existed resumes if the field is at its default."""
    import yaml

    from maxvit.train.config import TrainConfig, config_to_yaml

    recipe = yaml.safe_load(config_to_yaml(TrainConfig(model="maxvit_nano")))
    older = {k: v for k, v in recipe.items() if k != "precision"}
    assert plan.same_recipe(older, recipe)
    assert plan.same_recipe(recipe, older)
    assert not plan.same_recipe(older, {**recipe, "precision": "fp16"})
    assert plan.same_recipe(recipe, {**recipe, "num_workers": 7})  # execution only
    assert not plan.same_recipe(recipe, {**recipe, "lr": 1.0})
    assert not plan.same_recipe(recipe, {**recipe, "no_such_field": 1})


# ---- verdict rules ------------------------------------------------------------------------


def _result(role: str, *, clean: float, val: float, s: float = 1.0, n: int = 20_000):
    return ModelResult(
        role=role,
        name=role.lower(),
        rows=[{"epoch": 1, "step": 10, "train_acc": clean, "val_top1": val, "val_top5": val}],
        params=1,
        gflops_forward=1.0,
        gflops_train=3.0,
        attention_share=0.1,
        s_per_batch=s,
        spread=0.1,
        gflop_per_s=10.0,
        run_s_per_batch=s,
        clean_train={"top1": clean, "n": n},
    )


def test_overfitting_verdicts() -> None:
    vit = _result("ViT", clean=50, val=30)
    holds = claims.overfitting_claim(
        _result("MaxViT", clean=60, val=40), _result("CoAtNet", clean=80, val=30), vit, 1000
    )
    assert holds.verdict == "holds" and "CoAtNet minus MaxViT = 30.00 points" in holds.text
    # each gap with its binomial standard error: sqrt(p(1-p)/n_train + q(1-q)/n_val), in points
    se = 100 * (0.6 * 0.4 / 20_000 + 0.4 * 0.6 / 1000) ** 0.5
    assert f"is 20.00 +- {se:.2f} points" in holds.text
    reversed_ = claims.overfitting_claim(
        _result("MaxViT", clean=80, val=30), _result("CoAtNet", clean=60, val=40), vit, 1000
    )
    assert reversed_.verdict.startswith("does not hold")
    # 2 points of difference on 1,000 val images is inside two standard errors (about 4.4).
    noise = claims.overfitting_claim(
        _result("MaxViT", clean=42, val=40),
        _result("CoAtNet", clean=44, val=40),
        _result("ViT", clean=45, val=40),
        1000,
    )
    assert noise.verdict.startswith("not shown")
    assert "memorisation" in noise.text  # nothing fits half of its train set
    # A plan with a fit names the model that missed it, and keeps the rule's verdict.
    unequal = claims.overfitting_claim(
        _result("MaxViT", clean=99, val=14), _result("CoAtNet", clean=30, val=17), None, 1000, 60
    )
    assert unequal.verdict.startswith("does not hold")
    assert "But CoAtNet (30.00%) did not reach the fit (60% clean train top-1)" in unequal.text
    both = claims.overfitting_claim(
        _result("MaxViT", clean=99, val=14), _result("CoAtNet", clean=90, val=17), None, 1000, 60
    )
    assert "did not reach" not in both.text
    # the fit is read where the stop rule read it: the last epoch's fixed train subset
    subset = _result("CoAtNet", clean=59.6, val=17)
    subset.rows[-1] |= {"clean_train_top1": 60.4, "clean_train_images": 2000}
    stopped = claims.overfitting_claim(_result("MaxViT", clean=99, val=14), subset, None, 1000, 60)
    assert subset.fit_top1 == 60.4 and "did not reach" not in stopped.text


@pytest.mark.parametrize(
    ("vit_s", "verdict"), [(3.0, "holds"), (1.5, "holds only in direction"), (1.1, "does not hold")]
)
def test_speed_verdicts(vit_s: float, verdict: str) -> None:
    claim = claims.speed_claim(
        _result("MaxViT", clean=1, val=1), _result("ViT", clean=1, val=1, s=vit_s), 64, 64
    )
    assert claim.verdict == verdict
    assert f"{vit_s:.2f}x against the recorded 2.98x" in claim.text


def test_linear_cost_verdicts() -> None:
    def scaling(m_slope: float, v_slope: float) -> dict:
        points = [
            {"model": name, "img_size": s, "tokens": (s / 16) ** 2, "attention_share_forward": a}
            for name in ("m", "v")
            for s, a in ((128, 0.1), (256, 0.3))
        ]
        return {
            "config": {"sizes": [128, 256], "time": False, "batch_size": 1},
            "points": points,
            "slopes": {
                "m": {"flops": m_slope, "time": None},
                "v": {"flops": v_slope, "time": None},
            },
        }

    assert claims.linear_cost_claim(scaling(1.0, 1.3), "m", "v").verdict == "holds"
    assert claims.linear_cost_claim(scaling(1.3, 1.5), "m", "v").verdict == "does not hold"
    assert claims.linear_cost_claim(scaling(1.0, 0.95), "m", "v").verdict == "does not hold"


# ---- command line -------------------------------------------------------------------------


def _main(*args: str) -> int:
    from maxvit.cli import main

    return main(["repro", *args])


@pytest.mark.slow
def test_cli_report_only(study_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (study_dir / "REPORT.md").read_text()
    assert _main("--report-only", "--out", str(study_dir)) == 0
    assert capsys.readouterr().out.strip() == str(study_dir / "REPORT.md")
    assert (study_dir / "REPORT.md").read_text() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "smoke"], "--data is required"),
        (["--preset", "nope", "--data", "x"], "unknown preset"),
        (["--data", "x", "--set", "model=vit_nano"], "--set model"),
        (["--report-only", "--out", "{tmp}"], "no study.json"),
    ],
)
def test_cli_errors(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _main(*(a.format(tmp=tmp_path) for a in args)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "REPORT.md").exists()


@pytest.mark.slow  # a two-model study
def test_cpu_fit_plan_trains_maxvit_and_coatnet_and_reports_the_fit(
    synthetic_archive: Path, tmp_path: Path
) -> None:
    """The cpu-fit plan at smoke sizes: two models, no ViT and no scaling, the fit reported."""
    fit_plan, config = plan.study_config("cpu-fit", synthetic_archive, [])
    assert fit_plan.models == ("maxvit_nano", "coatnet_nano") and fit_plan.fit == 60.0
    assert config.aug.pipeline == "none" and config.img_size == 64
    out = tmp_path / "fit"
    sizes = ["epochs=1", "steps_per_epoch=1", "img_size=32", "batch_size=8", "budget_minutes=0"]
    report = st.run_study("cpu-fit", synthetic_archive, out, sizes).read_text()
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["coatnet_nano", "maxvit_nano"]
    assert not (out / "bench" / "scaling").exists()
    assert "Two models trained with one recipe" in report
    clean = {
        name: json.loads((out / "runs" / name / "clean_train.json").read_text())["top1"]
        for name in fit_plan.models
    }
    assert f"MaxViT (maxvit_nano) did not: {clean['maxvit_nano']:.2f}%" in report
    verdicts = [ln for ln in report.splitlines() if ln[:3] in ("1. ", "2. ", "3. ")]
    assert len(verdicts) == 2 and "Overfitting" in verdicts[0] and "+-" in verdicts[0]
    # every epoch logged the clean-train top-1 of the fixed subset (all 400 images here)
    rows = [json.loads(ln) for ln in (out / "runs" / "maxvit_nano" / "metrics.jsonl").open()]
    assert [r["clean_train_images"] for r in rows] == [400]
    # one epoch each: two single points, which share a level only if equal
    assert "Overfitting at matched fit" in verdicts[1] and "## Gaps at matched fit" in report
    assert (out / "fit.png").is_file()


@pytest.mark.parametrize("preset", ["cpu-fit", "cpu-fit-aug"])
def test_the_fit_presets_stop_at_their_plans_fit_or_budget(preset):
    fit_plan, config = plan.study_config(preset, "data", [])
    assert config.stop_at_fit == fit_plan.fit and config.fit_images and config.budget_minutes


def test_a_run_has_ended_at_its_steps_epochs_or_fit(tmp_path):
    from tests.train.utils import smoke_config

    rows = [{"epoch": 1, "step": 10, "clean_train_top1": 40.0}]
    fixed = smoke_config(tmp_path, "epochs=2")
    assert not st._trained([], fixed) and not st._trained(rows, fixed)
    assert st._trained([*rows, {"epoch": 2, "step": 20}], fixed)
    planned = smoke_config(tmp_path, "budget_minutes=5", "total_steps=30")
    assert not st._trained([{"epoch": 3, "step": 20}], planned)
    assert st._trained([{"epoch": 3, "step": 30}], planned)
    fitting = smoke_config(tmp_path, "fit_images=20", "stop_at_fit=40")
    assert st._trained(rows, fitting) and not st._trained(rows[:0], fitting)


def test_an_interrupted_phase_is_recorded_and_its_resumed_part_added(tmp_path, monkeypatch):
    clock = iter([100.0, 130.0, 500.0, 510.0])  # perf_counter at each start and end
    monkeypatch.setattr(st.time, "perf_counter", lambda: next(clock))
    study: dict = {"phases": {}}
    with pytest.raises(KeyboardInterrupt), st._phase(tmp_path, study, "train x"):
        raise KeyboardInterrupt
    with st._phase(tmp_path, study, "train x"):
        pass
    saved = json.loads((tmp_path / "study.json").read_text())["phases"]["train x"]
    assert saved["wall_s"] == 40.0 and saved["cpu_s"] >= 0
