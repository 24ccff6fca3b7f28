"""`maxvit summary` sizes: a head-less model, bad sizes in one line, any size without memory."""

from __future__ import annotations

import re

from maxvit.cli import main


def test_num_classes_zero_is_a_model_without_a_classifier(capsys):
    assert main(["summary", "--model", "maxvit_nano", "--num-classes", "0"]) == 0
    table = capsys.readouterr().out
    assert "(Dense)" not in table  # before: 0 meant the default, a 200-way head
    assert main(["summary", "--model", "maxvit_nano"]) == 0
    assert "dense (Dense)" in capsys.readouterr().out


def test_bad_input_sizes_are_one_line(capsys):
    for size in ("-32", "0"):  # before: a traceback, and 0 meant the default
        assert main(["summary", "--model", "maxvit_nano", "--img-size", size]) == 2
        assert capsys.readouterr().err == (
            f"error: img_size must be a positive whole number of pixels, got {size}\n"
        )


def test_a_huge_input_is_summarised_without_memory(capsys):
    # 65536 px: 4 GiB for the stem's first map alone; on the meta device, nothing is allocated
    assert main(["summary", "--model", "maxvit_nano", "--img-size", "65536"]) == 0
    table = capsys.readouterr().out
    assert re.search(r"^input_layer \(InputLayer\) +65536x65536x3 ", table, re.M)
    assert "2048x2048x192" in table  # the last stage: a 32x smaller map
