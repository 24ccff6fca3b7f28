"""Claim 1 at matched fit: the levels, the interpolation and the rule, on hand-made curves."""

from __future__ import annotations

import math

import pytest

from maxvit.repro.matched import (
    FitPoint,
    fit_curve,
    gap_at,
    matched_gaps,
    matched_levels,
    val_at,
)


def curve(*points: tuple[float, float]) -> list[FitPoint]:
    return [FitPoint(train, val) for train, val in points]


# MaxViT fits fast and memorises; CoAtNet fits slowly (numbers chosen to interpolate exactly)
FAST = curve((20, 10), (60, 20), (100, 14))
SLOW = curve((10, 8), (30, 16), (50, 22))


def test_val_is_interpolated_at_the_first_crossing():
    assert val_at(FAST, 40) == 15.0  # halfway from (20, 10) to (60, 20)
    assert val_at(FAST, 80) == 17.0  # on the way down: from (60, 20) to (100, 14)
    assert val_at(FAST, 60) == 20.0  # an epoch exactly at the level
    assert val_at(FAST, 20) == 10.0  # the first epoch, exactly
    assert val_at(FAST, 10) is None  # below the first epoch: nothing to interpolate from
    assert val_at(FAST, 101) is None  # never reached
    # not monotonic: the first time the level is reached counts
    assert val_at(curve((10, 5), (50, 25), (30, 30), (70, 40)), 40) == 20.0


def test_levels_run_from_the_highest_common_down_to_the_lowest_both_cover():
    assert matched_levels(FAST, SLOW) == [
        50.0,
        40.0,
        30.0,
        20.0,
    ]  # SLOW tops at 50, FAST starts at 20
    assert matched_levels(SLOW, FAST) == [50.0, 40.0, 30.0, 20.0]  # symmetric


def test_gaps_at_matched_levels_have_a_known_answer():
    (top_fast, top_slow), *_, (low_fast, low_slow) = matched_gaps(FAST, SLOW, 2000, 1000)
    assert (top_fast.level, top_fast.val, top_fast.gap) == (50.0, 17.5, 32.5)
    assert (top_slow.level, top_slow.val, top_slow.gap) == (50.0, 22.0, 28.0)
    assert (low_fast.gap, low_slow.gap) == (
        10.0,
        8.0,
    )  # SLOW at 20: val 12, from (10, 8) to (30, 16)
    expected = math.sqrt(50 * 50 / 2000 + 17.5 * 82.5 / 1000)  # binomial, train subset + val
    assert top_fast.se == pytest.approx(expected)


def test_curves_without_a_common_level_are_not_compared():
    early = curve((5, 4), (15, 10))
    late = curve((40, 20), (80, 25))  # starts above where the other ends
    assert matched_levels(early, late) == []
    assert matched_gaps(early, late, 2000, 1000) == []
    assert matched_levels(early, []) == []
    # touching at one point: one level
    assert matched_levels(curve((5, 4), (40, 10)), late) == [40.0]


def test_a_level_a_curve_never_reaches_is_an_error():
    with pytest.raises(ValueError, match="does not reach"):
        gap_at(SLOW, 60, 2000, 1000)


def test_the_curve_is_read_from_the_rows_that_have_a_clean_train_accuracy():
    rows = [
        {"val_top1": 3.0},  # an epoch of a run without fit_images
        {"val_top1": 9.0, "clean_train_top1": 12.0},
    ]
    assert fit_curve(rows) == [FitPoint(12.0, 9.0)]


def _model(role: str, points: list[FitPoint]):
    from maxvit.repro.results import ModelResult

    rows = [
        {"epoch": e, "val_top1": p.val, "clean_train_top1": p.train, "clean_train_images": 2000}
        for e, p in enumerate(points, 1)
    ]
    return ModelResult(
        role=role, name=role.lower(), rows=rows, params=1, gflops_forward=1.0, gflops_train=3.0,
        attention_share=0.1, s_per_batch=1.0, spread=0.1, gflop_per_s=10.0, run_s_per_batch=1.0,
        clean_train={"top1": points[-1].train, "n": 20_000},
    )  # fmt: skip


def test_the_claim_is_judged_at_the_highest_common_level_and_names_it():
    from maxvit.repro.claims import matched_fit_claim

    # at 50%: MaxViT's gap 32.5, CoAtNet's 28.0: CoAtNet - MaxViT = -4.5, SE about 2.5
    claim = matched_fit_claim(_model("MaxViT", FAST), _model("CoAtNet", SLOW), 1000)
    assert claim.verdict == "not shown (within noise) at 50.0% clean-train top-1"
    assert "CoAtNet minus MaxViT = -4.50" in claim.text and "At lower levels: 40.00%:" in claim.text
    # a MaxViT that generalises much better at the same fit: the claim holds there
    better = curve((20, 18), (60, 45), (100, 60))
    held = matched_fit_claim(_model("MaxViT", better), _model("CoAtNet", SLOW), 1000)
    assert held.verdict == "holds at 50.0% clean-train top-1"  # gaps 11.75 vs 28.0
    # no common level: not judged, and it says why
    apart = matched_fit_claim(
        _model("MaxViT", curve((60, 20), (99, 15))), _model("CoAtNet", SLOW), 1000
    )
    assert apart.verdict == "not judged" and "share no clean-train level" in apart.text
    # runs without a per-epoch clean-train accuracy: no such claim
    plain = _model("MaxViT", FAST)
    plain.rows = [{"epoch": 1, "val_top1": 5.0}]
    assert matched_fit_claim(plain, _model("CoAtNet", SLOW), 1000) is None
