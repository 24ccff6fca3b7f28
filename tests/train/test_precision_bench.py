"""`maxvit bench precision`: each precision scored on the same images, agreement with the first,
timed in interleaved rounds; bad options are one line."""

from __future__ import annotations

import json

import pytest
import torch

from maxvit.cli import main
from maxvit.data import open_data
from maxvit.models import create_model
from maxvit.train.checkpoint import save_weights
from maxvit.train.evaluate import evaluate_checkpoint


@pytest.fixture(scope="module")
def checkpoint(synthetic_tree, tmp_path_factory):
    """A random-weight maxvit_nano at 32 px for the synthetic tree's classes."""
    source = open_data(synthetic_tree)
    torch.manual_seed(0)
    model = create_model("maxvit_nano", num_classes=len(source.class_names), img_size=32)
    path = tmp_path_factory.mktemp("precision") / "best.safetensors"
    meta = dict(model="maxvit_nano", img_size=32, class_names=list(source.class_names),
                classes=list(source.classes), eval_crop=1.0, step=1, epoch=1)  # fmt: skip
    save_weights(path, model.state_dict(), meta)
    return path


@pytest.mark.slow  # two precisions scored and timed, then evaluate: about 10 s
def test_each_precision_is_scored_on_the_same_images_and_timed(
    checkpoint, synthetic_tree, tmp_path, capsys
):
    out = tmp_path / "precision.json"
    argv = ["bench", "precision", "--checkpoint", str(checkpoint), "--data", str(synthetic_tree),
            "--runtime", "eager", "--precisions", "fp32,bf16", "--rounds", "3",
            "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    fp32, bf16 = doc["rows"]
    assert (fp32["runs"], bf16["runs"]) == ("eager fp32", "eager bf16")
    assert fp32["agreement"] == 100.0 and 0 <= bf16["agreement"] <= 100
    assert len(fp32["s_rounds"]) == len(bf16["s_rounds"]) == 3
    expected = evaluate_checkpoint(checkpoint, synthetic_tree, runtime="eager", precision="fp32")
    assert doc["images"] == expected["n"] and fp32["top1"] == pytest.approx(expected["top1"])
    table = capsys.readouterr().out
    assert "| precision | runs as | val top-1 % | agrees with fp32 % |" in table
    assert "| bf16 | eager bf16 |" in table


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--precisions", "fp32,fp32"], "--precisions takes distinct names"),
        (["--precisions", "int8", "--runtime", "eager"], "--precision int8 runs compiled only"),
        (["--rounds", "0"], "--batch-size and --rounds must be >= 1"),
    ],
)
def test_bad_options_are_one_line(checkpoint, synthetic_tree, capsys, options, message):
    argv = ["bench", "precision", "--checkpoint", str(checkpoint), "--data", str(synthetic_tree)]
    assert main([*argv, *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
