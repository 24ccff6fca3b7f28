"""The one bad-sample counter: each file named once, counted per epoch, held to the policy."""

from __future__ import annotations

import pytest
import torch

from maxvit.data.bad import BadSamples, parse_bad_samples
from maxvit.errors import UserError

HINT = (
    "check the data with `maxvit data verify`, or accept them with --set bad_samples=N (a count, "
    "or a percentage such as 5%)"
)


def test_the_policy_is_a_count_or_a_percentage_that_accepts_one_in_a_small_set():
    assert parse_bad_samples("5").allowed(10) == 5
    assert parse_bad_samples(5).allowed(10**6) == 5
    assert parse_bad_samples("1%").allowed(21) == 1  # before: 0, so one bad file of 21 stopped
    assert parse_bad_samples("1%").allowed(1000) == 10
    assert parse_bad_samples("0.5%").allowed(1000) == 5
    assert parse_bad_samples("0%").allowed(1000) == 0
    assert parse_bad_samples("0").allowed(1000) == 0
    for wrong in ("-1", "2.5", "101%", "nan%", "five", True, 0.5):
        with pytest.raises(UserError) as info:
            parse_bad_samples(wrong)
        assert str(info.value) == (
            "bad_samples must be a count of files (5) or a percentage of the split (1%), got "
            f"{wrong!r}"
        )


def test_each_bad_file_is_named_once_and_counted_once_per_epoch(capsys):
    bad = BadSamples("train", expected=1000)  # 1%: ten files
    bad.add(500, [(f"x{i}", "broken") for i in range(10)])
    bad.add(500, [("x0", "broken")])  # the same file in another pass of the epoch
    with pytest.raises(UserError) as info:
        bad.add(10, [("y", "broken")])
    assert str(info.value) == (
        f"11 of 1000 train samples could not be decoded, more than bad_samples=1% allows (10); {HINT}"
    )
    err = capsys.readouterr().err
    assert err.count("skipped x0: broken\n") == 1 and "skipped x9: broken\n" in err
    assert "skipped y: broken\n" in err  # every file is named, not only the first five


def test_a_count_is_judged_at_once_and_a_percentage_of_an_unknown_size_after_1000(capsys):
    count = BadSamples("val")
    count.allow(parse_bad_samples(1))
    count.add(10, [("a", "e")])
    with pytest.raises(UserError, match="^2 of 20 val samples could not be decoded, more than "):
        count.add(10, [("b", "e")])
    unknown = BadSamples("val")
    unknown.add(100, [("a", "e"), ("b", "e")])  # 2% of 100 read, but too few read to judge
    with pytest.raises(UserError, match="^11 of 1000 val samples could not be decoded"):
        unknown.add(900, [(f"z{i}", "e") for i in range(9)])


def test_files_known_to_be_bad_count_in_every_epoch(capsys):
    bad = BadSamples("train")
    bad.allow(parse_bad_samples("0"), [("n1_0.JPEG", "truncated")])
    with pytest.raises(UserError, match=r"^1 of 21 train samples .* bad_samples=0 allows \(0\)"):
        bad.new_epoch(20)
    bad.allow(parse_bad_samples("1"), [("n1_0.JPEG", "truncated")])
    for _ in range(2):
        bad.new_epoch(20)
        assert bad.report() == "skipped 1 undecodable train sample(s) this epoch (1 in all)"
    assert capsys.readouterr().err == "skipped n1_0.JPEG: truncated\n"


def test_count_strips_the_failures_and_counts_them_per_epoch(capsys):
    bad = BadSamples("val", expected=100, rank=1, world=2)
    chunks = [
        (torch.zeros(2, 3), torch.tensor([4, 5]), [("a.jpg", "truncated")]),
        (torch.zeros(1, 3), torch.tensor([6]), []),
    ]
    out = list(bad.count(chunks))
    assert [labels.tolist() for _, labels in out] == [[4, 5], [6]]
    assert (bad.read, bad.failed) == (4, {"a.jpg"})
    assert "rank 1: skipped a.jpg: truncated" in capsys.readouterr().err
    assert bad.report() == "rank 1: skipped 1 undecodable val sample(s) this epoch (1 in all)"
    bad.new_epoch(100)
    assert bad.report() is None and (bad.read, bad.failed) == (0, set())
    list(bad.count(chunks))
    assert bad.report() == "rank 1: skipped 1 undecodable val sample(s) this epoch (1 in all)"
