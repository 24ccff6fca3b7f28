"""TrainConfig, presets, --set overrides and the learning-rate schedule."""

from __future__ import annotations

import math

import pytest

from maxvit.errors import UserError
from maxvit.train.config import (
    TrainConfig,
    apply_overrides,
    config_to_yaml,
    list_presets,
    load_config,
    load_preset,
    save_config,
    valid_keys,
)
from maxvit.train.schedule import lr_factor


def test_presets_ship_and_load():
    assert set(list_presets()) == {
        "seed",
        "paper",
        "finetune",
        "imagenet",
        "cpu-mini",
        "cpu-fit",
        "cpu-fit-aug",
        "cpu-budget",
        "smoke",
    }
    for name in list_presets():
        assert isinstance(load_preset(name), TrainConfig)


def test_imagenet_preset_is_the_paper_recipe_for_maxvit_t():
    c = load_preset("imagenet")
    assert (c.model, c.img_size, c.epochs, c.batch_size) == ("maxvit_tiny", 224, 300, 4096)
    assert (c.lr, c.weight_decay, c.drop_path, c.eval_crop) == (3e-3, 0.05, 0.2, 0.95)
    steps_per_epoch = 1_281_167 // 4096
    assert round(c.warmup_epochs * steps_per_epoch) == pytest.approx(10_000, rel=0.01)
    a = c.aug
    assert (a.pipeline, a.randaugment_ops, a.randaugment_magnitude) == ("timm", 2, 15)
    assert (a.mixup_alpha, a.cutmix_alpha, a.label_smoothing) == (0.8, 0.0, 0.1)


def test_finetune_preset_starts_from_the_official_maxvit_t_weights():
    c = load_preset("finetune")
    assert c.model == "maxvit_tiny" and c.img_size == 224
    assert c.pretrained == "hf-hub:timm/maxvit_tiny_tf_224.in1k"
    assert c.lr <= 1e-4 and 0 < c.warmup_epochs <= 1 and c.epochs <= 10


def test_non_finite_and_out_of_range_values_are_refused():
    for item, message in (
        ("lr=nan", "lr must be a finite number"),
        ("weight_decay=.inf", "weight_decay must be a finite number"),
        ("eval_crop=0", "eval_crop must be in"),
        ("eval_crop=1.5", "eval_crop must be in"),
    ):
        with pytest.raises(UserError, match=message):
            apply_overrides(load_preset("smoke"), [item])


def test_seed_preset_is_the_recorded_recipe():
    c = load_preset("seed")
    assert (c.model, c.img_size, c.epochs, c.batch_size) == ("maxvit_seed", 224, 40, 128)
    assert (c.lr, c.min_lr, c.warmup_epochs, c.weight_decay) == (5e-4, 0.0, 0.0, 0.05)
    assert c.decay_norm_bias and c.ema_decay == 0 and c.drop_path == 0 and c.clip_grad == 0
    assert c.steps_per_epoch == 0 and c.accum_steps == 1
    a = c.aug
    assert (a.pipeline, a.four_pass, a.randaugment_ops, a.randaugment_magnitude) == (
        "seed",
        True,
        2,
        9,
    )
    assert (a.mixup_alpha, a.cutmix_alpha, a.erase_area, a.label_smoothing) == (
        0.2,
        0.2,
        (0.2, 0.5),
        0.1,
    )


def test_paper_preset_uses_the_paper_style_regularisation():
    c = load_preset("paper")
    assert c.warmup_epochs > 0 and c.drop_path > 0 and c.ema_decay > 0
    assert not c.decay_norm_bias and c.aug.pipeline == "timm"


def test_overrides_parse_yaml_values_and_nested_keys():
    c = apply_overrides(
        load_preset("seed"),
        [
            "epochs=3",
            "lr=1e-3",
            "img_size=null",
            "aug.mixup_alpha=0.5",
            "aug.erase_area=[0.1, 0.3]",
        ],
    )
    assert c.epochs == 3 and c.lr == 1e-3 and c.img_size is None
    assert c.aug.mixup_alpha == 0.5 and c.aug.erase_area == (0.1, 0.3)
    assert isinstance(apply_overrides(c, ["lr=1"]).lr, float)  # int accepted for a float field
    assert apply_overrides(c, ["bad_samples=5"]).bad_samples == 5
    assert apply_overrides(c, ["bad_samples=2%"]).bad_samples == "2%"


def test_overrides_validate_only_the_final_config():
    # batch 12 with accum 4 is valid even though batch 12 with the default accum 1 came first
    c = apply_overrides(load_preset("seed"), ["batch_size=12", "accum_steps=4"])
    assert (c.batch_size, c.accum_steps) == (12, 4)
    with pytest.raises(UserError, match="divisible"):
        apply_overrides(load_preset("seed"), ["batch_size=10", "accum_steps=4"])


@pytest.mark.parametrize("item", ["nope=1", "aug.nope=1", "aug=1"])
def test_unknown_key_lists_valid_keys(item):
    with pytest.raises(UserError, match="valid keys: .*aug.mixup_alpha"):
        apply_overrides(load_preset("seed"), [item])


@pytest.mark.parametrize(
    "item, message",
    [
        ("epochs=ten", "epochs: expected int"),
        ("epochs=2.5", "epochs"),
        ("compile=yes please", "compile"),
        ("epochs", "key=value"),
        ("epochs=0", "epochs must be >= 1"),
        ("aug.pipeline=magic", "pipeline"),
        ("bad_samples=lots", "bad_samples must be a count of files"),
        ("bad_samples=-1", "bad_samples must be a count of files"),
    ],
)
def test_bad_values_are_user_errors(item, message):
    with pytest.raises(UserError, match=message):
        apply_overrides(load_preset("seed"), [item])


@pytest.mark.parametrize("item", ["lr=[1", "data=\udcff\udcfe", "aug.erase_area={a: [}"])
def test_a_value_yaml_cannot_read_is_one_line(item):
    """Before: PyYAML's error, with its position and a caret on lines of their own."""
    with pytest.raises(UserError, match=f"^--set {item.partition('=')[0]}: cannot parse") as info:
        apply_overrides(load_preset("seed"), [item])
    assert "\n" not in str(info.value)


def test_unknown_preset_lists_presets():
    with pytest.raises(UserError, match="valid presets: .*cpu-mini.*seed"):
        load_preset("sed")


def test_config_yaml_round_trip(tmp_path):
    c = apply_overrides(load_preset("paper"), ["aug.erase_area=[0.1, 0.2]", "img_size=64"])
    save_config(c, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == c
    assert "aug:" in config_to_yaml(c)
    assert set(valid_keys()) >= {"model", "aug.label_smoothing"}


def test_cosine_schedule_without_warmup_decays_from_peak_to_min():
    f = [lr_factor(s, total=100, warmup=0, min_ratio=0.0) for s in range(101)]
    assert f[0] == 1.0 and f[50] == pytest.approx(0.5) and f[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(f, f[1:], strict=False))


def test_warmup_is_linear_then_cosine_to_min_ratio():
    f = [lr_factor(s, total=110, warmup=10, min_ratio=0.1) for s in range(111)]
    assert f[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert f[10] == 1.0 and f[110] == pytest.approx(0.1)
    assert f[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
