"""Data that other tools wrote trains the smoke preset: `webdataset.ShardWriter` shards named
``in1k-train-*.tar`` with timm's ``_info.json`` and ``.json`` labels, and a parquet folder in the
Hugging Face Hub's layout."""

from __future__ import annotations

import json

import pytest

from maxvit.train.config import apply_overrides, load_preset
from maxvit.train.trainer import train
from tests.data.foreign import parquet_folder, shard_writer_folder

pytestmark = pytest.mark.slow  # two short trainings: about 20 s

MAKERS = {
    "shard-writer": lambda tree, out: shard_writer_folder(
        tree, out, label="json", info=True, classes=True
    ),
    "parquet": parquet_folder,
}


@pytest.mark.parametrize("layout", MAKERS)
def test_data_others_wrote_trains_the_smoke_preset(layout, synthetic_tree, tmp_path, capsys):
    data = MAKERS[layout](synthetic_tree, tmp_path / "data")
    config = apply_overrides(load_preset("smoke"), [f"data={data}", "img_size=32", "epochs=1"])
    run = train(config, tmp_path / "run")
    [row] = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert (row["step"], row["val_images"]) == (3, 8) and 0 <= row["val_top1"] <= 100
    assert "counting" not in capsys.readouterr().err  # _info.json / parquet metadata: no pass
