"""DDP on CPU (gloo, 2 processes under torchrun) and gradient accumulation against one process.

The comparison uses a setting where the three runs compute the same thing: `vit_nano` has no
BatchNorm (per-rank batch statistics would differ from whole-batch ones) and
``aug.pipeline=none`` draws no per-rank random augmentation, while the loader gives the two
ranks the two halves of each global batch. So DDP (2 x 4 images), accumulation (2 x 4) and
one process (8) differ only by floating-point summation order. AdamW divides each update by
the gradient's running RMS, which amplifies those rounding differences for near-zero
gradients, so weights are compared relative to how far training moved them: the summed
absolute difference must be below 1e-4 of the summed absolute update (measured: about 3e-6;
a different data order gives differences of the order of the update itself), and no weight may
differ by more than 1e-3 (the size of one update at lr 1e-3; measured max 1.2e-4).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maxvit.train.trainer import train
from tests.train.utils import read_weights, smoke_config, subprocess_env

pytestmark = pytest.mark.slow  # torchrun process groups: about 60 s

WORKER = Path(__file__).with_name("ddp_worker.py")
SHARD_WORKER = Path(__file__).with_name("shard_ddp_worker.py")
SETTING = ("model=vit_nano", "aug.pipeline=none")


def _assert_same_training(a: dict, b: dict) -> None:
    """`a` and `b` (final weights of runs from the same initial weights) trained alike."""
    from maxvit.models import create_model

    torch.manual_seed(0)  # the trainer seeds with the config's seed (0) before building
    init = create_model("vit_nano", num_classes=200, img_size=32).state_dict()
    assert a.keys() == b.keys() == init.keys()
    diff = sum((a[k] - b[k]).abs().sum().item() for k in a)
    update = sum((b[k] - init[k]).abs().sum().item() for k in b)
    assert diff < 1e-4 * update
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-3


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def single_run(synth_data, tmp_path_factory) -> Path:
    return train(smoke_config(synth_data, *SETTING), tmp_path_factory.mktemp("single") / "run")


def test_two_gloo_ranks_agree_and_match_one_process(synth_data, single_run, tmp_path):
    out = tmp_path / "ddp"
    sets = [arg for item in SETTING for arg in ("--set", item)]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        str(WORKER), "train", "--preset", "smoke", "--data", str(synth_data), "--out", str(out), *sets,
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "on cpu (x2), 3 steps/epoch x 2 epochs, batch 8 = 2 rank(s) x 1 x 4" in proc.stderr

    rank0, rank1 = read_weights(out / "rank0.safetensors"), read_weights(out / "rank1.safetensors")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # DDP keeps ranks identical
    assert torch.equal(
        read_weights(out / "checkpoints" / "last.safetensors")["head.weight"], rank0["head.weight"]
    )

    single = read_weights(single_run / "checkpoints" / "last.safetensors")
    _assert_same_training(rank0, single)
    for ddp_row, one_row in zip(_metrics(out), _metrics(single_run), strict=True):
        assert ddp_row["train_loss"] == pytest.approx(
            one_row["train_loss"], rel=1e-5
        )  # reduced over ranks
        assert ddp_row["val_loss"] == pytest.approx(one_row["val_loss"], rel=1e-5)  # whole val set
        assert ddp_row["val_top1"] == one_row["val_top1"]


def test_gradient_accumulation_matches_the_full_batch(synth_data, single_run, tmp_path):
    run = train(smoke_config(synth_data, *SETTING, "accum_steps=2"), tmp_path / "accum")
    accum = read_weights(run / "checkpoints" / "last.safetensors")
    single = read_weights(single_run / "checkpoints" / "last.safetensors")
    _assert_same_training(accum, single)
    assert _metrics(run)[-1]["train_loss"] == pytest.approx(
        _metrics(single_run)[-1]["train_loss"], rel=1e-5
    )


def test_two_gloo_ranks_with_two_workers_read_every_shard_sample_once_per_epoch(tmp_path):
    """48 train samples, each its own class, in 8 shards; 2 ranks x 2 loader workers, batch
    8 = 2 x 4, full epochs (steps_per_epoch=0): each epoch trains on every sample exactly once,
    and the two epochs in different orders."""
    from maxvit.data.synthetic import make_synthetic_tree
    from maxvit.data.write_shards import write_shards

    tree = make_synthetic_tree(
        tmp_path / "tree", num_classes=48, train_per_class=1, val_per_class=1
    )
    shards = write_shards(tree, tmp_path / "shards", shard_size=6, quiet=True)
    out = tmp_path / "run"
    sets = ["steps_per_epoch=0", "num_workers=2", "aug.pipeline=timm", "ckpt_every_steps=0"]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        str(SHARD_WORKER), "train", "--preset", "smoke", "--data", str(shards), "--out", str(out),
        *[arg for item in sets for arg in ("--set", item)],
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "6 steps/epoch x 2 epochs, batch 8 = 2 rank(s) x 1 x 4" in proc.stderr
    ranks = [json.loads((out / f"seen-rank{r}.json").read_text()) for r in (0, 1)]
    for epoch in ("0", "1"):
        together = ranks[0][epoch] + ranks[1][epoch]
        assert sorted(together) == list(range(48)), epoch
        assert set(ranks[0][epoch]).isdisjoint(ranks[1][epoch])
    assert ranks[0]["0"] != ranks[0]["1"]
    assert (out / "checkpoints" / "best.safetensors").is_file()
