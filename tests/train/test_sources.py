"""Training and evaluation from class folders and WebDataset shards, end to end."""

from __future__ import annotations

import json

import pytest
import torch

from maxvit.cli import main
from maxvit.data.write_shards import write_shards
from maxvit.train.evaluate import evaluate_checkpoint
from maxvit.train.trainer import train
from tests.train.utils import interrupt_at_step, read_weights, smoke_config

pytestmark = pytest.mark.slow  # training from folders and shards: about 25 s


@pytest.fixture(scope="module")
def shards(synthetic_tree, tmp_path_factory):
    return write_shards(
        synthetic_tree, tmp_path_factory.mktemp("s") / "shards", shard_size=5, quiet=True
    )


def steps(run) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("layout", ["folders", "shards"])
def test_smoke_trains_and_evaluates(layout, synthetic_tree, shards, tmp_path, capsys):
    data = synthetic_tree if layout == "folders" else shards
    run = train(smoke_config(data), tmp_path / "run")
    assert steps(run) == [3, 6]
    result = evaluate_checkpoint(run, data, num_workers=0)
    assert result["n"] == 8 and result["crop"] == 1.0
    logged = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    best = max(json.loads(r)["val_top1"] for r in (run / "metrics.jsonl").read_text().splitlines())
    assert result["top1"] == best
    assert main(["eval", "--checkpoint", str(run), "--data", str(data), "--crop", "0.9"]) == 0
    assert json.loads(capsys.readouterr().out)["crop"] == 0.9
    # a full epoch: 24 train images in batches of 8 (folders: four passes of the seed recipe)
    full = train(smoke_config(data, "steps_per_epoch=0", "epochs=1"), tmp_path / "full")
    assert steps(full) == [12 if layout == "folders" else 3]
    assert logged["val_loss"] > 0


def test_shard_training_resumes_exactly_mid_epoch(shards, tmp_path, monkeypatch):
    config = smoke_config(shards, "num_workers=2", "steps_per_epoch=0", "ckpt_every_steps=2")
    reference = train(config, tmp_path / "reference")
    interrupt_at_step(monkeypatch, 3)  # the checkpoint of step 2 is on disk
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run")
    run = train(config, tmp_path / "run", resume=True)
    final = read_weights(run / "checkpoints" / "last.safetensors")
    expected = read_weights(reference / "checkpoints" / "last.safetensors")
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def test_eval_refuses_a_checkpoint_of_other_classes(synthetic_tree, synth_data, tmp_path):
    run = train(smoke_config(synth_data, "epochs=1", "steps_per_epoch=1"), tmp_path / "run")
    with pytest.raises(Exception, match="trained on 200 classes that are not those of"):
        evaluate_checkpoint(run, synthetic_tree)
