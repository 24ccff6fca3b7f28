"""Per-batch augmentation maths: soft labels, exact cutmix area, erasing, RandAugment batching,
eval normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from maxvit.data.augment_config import CUTMIX, ERASE, MIXUP, PLAIN, AugmentConfig
from maxvit.data.batch_augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RANDAUGMENT_PRIVATE,
    BatchAugment,
    BatchedRandAugment,
    EvalTransform,
    cutmix_boxes,
)

C = 10
NO_RA = AugmentConfig(randaugment_ops=0)  # pixel checks of the mixing need RandAugment off


def batch(n: int = 16, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randperm(C, generator=g).repeat(n // C + 1)[:n]
    return images, labels


def run(aug, images, labels, kind, img_size=None, seed=0):
    img_size = img_size or images.shape[-1]
    return BatchAugment(aug, C, img_size)(images, labels, kind, torch.Generator().manual_seed(seed))


def undo_normalisation(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x * std + mean) * 255


@pytest.mark.parametrize("kind", [PLAIN, MIXUP, CUTMIX, ERASE])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_soft_targets_sum_to_one_with_smoothing_mass(kind, smoothing):
    images, labels = batch()
    aug = AugmentConfig(label_smoothing=smoothing)
    x, targets = run(aug, images, labels, torch.full((16,), kind))
    assert x.dtype == torch.float32 and x.shape == images.shape
    torch.testing.assert_close(targets.sum(1), torch.ones(16))
    assert targets.min() >= smoothing / C - 1e-7  # every class gets at least eps / C
    top2 = targets.topk(2, dim=1).values.sum(1)
    # mass outside the (at most two) mixed classes is exactly the smoothing share
    torch.testing.assert_close(1 - top2, torch.full((16,), smoothing * (C - 2) / C))
    if kind in (PLAIN, ERASE):
        onehot = torch.nn.functional.one_hot(labels, C).float()
        torch.testing.assert_close(targets, onehot * (1 - smoothing) + smoothing / C)


def test_plain_is_resize_and_normalise_only():
    images, labels = batch(size=24)
    x, _ = run(NO_RA, images, labels, torch.zeros(16, dtype=torch.long))
    torch.testing.assert_close(undo_normalisation(x), images.float(), atol=1e-3, rtol=0)
    up, _ = run(NO_RA, images, labels, torch.zeros(16, dtype=torch.long), img_size=48)
    assert up.shape == (16, 3, 48, 48)
    torch.testing.assert_close(up, EvalTransform(48)(images))


def test_batch_augment_applies_randaugment_per_sample_before_mixing():
    images, labels = batch(n=32, size=24)
    plain = torch.zeros(32, dtype=torch.long)
    x, _ = run(AugmentConfig(randaugment_magnitude=15), images, labels, plain, seed=4)
    changed = (undo_normalisation(x).round() != images.float()).flatten(1).any(1)
    assert int(changed.sum()) >= 28  # (all but those that drew an identity twice)
    # the same draws as BatchedRandAugment fed the generator's seed
    seed = torch.randint(2**62, (), generator=torch.Generator().manual_seed(4))
    rng = np.random.default_rng(int(seed))
    expected = BatchedRandAugment(2, 15)(images.clone(), rng)
    torch.testing.assert_close(undo_normalisation(x), expected.float(), atol=1e-3, rtol=0)


def test_mixup_weights_follow_the_targets():
    images, labels = batch()
    aug = AugmentConfig(label_smoothing=0.0, randaugment_ops=0)
    x, targets = run(aug, images, labels, torch.full((16,), MIXUP))
    partner = images.roll(1, 0).float()
    lam = targets[torch.arange(16), labels]  # weight of the sample's own class
    expected = lam.view(-1, 1, 1, 1) * images.float() + (1 - lam.view(-1, 1, 1, 1)) * partner
    torch.testing.assert_close(undo_normalisation(x), expected, atol=0.51, rtol=0)
    torch.testing.assert_close(targets[torch.arange(16), labels.roll(1)], 1 - lam)
    assert not torch.allclose(lam, lam[0].expand(16))  # one weight per sample


def test_cutmix_weight_equals_the_pasted_area():
    images, labels = batch(n=32, size=40)
    images = images.clamp(1, 254)
    partner = images.roll(1, 0)
    labels = torch.arange(32) % C  # neighbours always differ
    aug = AugmentConfig(label_smoothing=0.0, randaugment_ops=0)
    x, targets = run(aug, images, labels, torch.full((32,), CUTMIX))
    seen = undo_normalisation(x).round()
    pasted = (seen == partner.float()).all(1) & (seen != images.float()).any(1)
    own = (seen == images.float()).all(1)
    # every pixel is either the sample's own or the partner's (where they differ)
    differs = (images != partner).any(1)
    assert bool((pasted | own | ~differs).all())
    area = ((seen == partner.float()).all(1)).float().mean((1, 2))
    own_weight = targets[torch.arange(32), labels]
    torch.testing.assert_close(1 - own_weight, area, atol=1 / 1600 * 4, rtol=0)
    assert (area > 0).any() and (area < 1).all()


def test_cutmix_boxes_lambda_is_exact():
    rng = np.random.default_rng(0)
    lam = rng.beta(0.2, 0.2, size=1000)
    boxes, exact = cutmix_boxes(lam, 56, 48, rng)
    top, bottom, left, right = boxes.T
    assert (0 <= top).all() and (bottom <= 56).all() and (0 <= left).all() and (right <= 48).all()
    np.testing.assert_allclose(exact, 1 - (bottom - top) * (right - left) / (56 * 48))
    # a box that the borders did not clip covers about (1 - lam) of the image
    inside = (top > 0) & (bottom < 56) & (left > 0) & (right < 48)
    assert inside.sum() > 100
    assert np.abs(exact - lam)[inside].max() < 2 / 56 + 2 / 48


def test_erasing_covers_the_configured_area_with_the_mean_colour():
    images, labels = batch(n=64, size=56)
    images = images.clamp(130, 255)  # never equal to the fill's red channel (124)
    x, _ = run(NO_RA, images, labels, torch.full((64,), ERASE))
    fill = torch.tensor(IMAGENET_MEAN).mul(255).round().view(1, 3, 1, 1)
    erased = (undo_normalisation(x).round() == fill).all(1).float().mean((1, 2))
    assert ((erased >= 0.2 - 0.02) & (erased <= 0.5 + 0.02)).float().mean() > 0.8
    assert erased.max() <= 0.5 + 0.02
    assert (
        x.abs()[(undo_normalisation(x).round() == fill).all(1, keepdim=True).expand_as(x)].max()
        < 0.03
    )


def test_batch_augment_is_a_function_of_the_generator_only():
    images, labels = batch()
    kind = torch.tensor([MIXUP] * 8 + [CUTMIX] * 8)
    torch.manual_seed(1)
    np.random.seed(1)
    a = run(AugmentConfig(), images, labels, kind, seed=5)
    torch.manual_seed(2)
    np.random.seed(3)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    b = run(AugmentConfig(), images, labels, kind, seed=5)
    assert torch.equal(torch.get_rng_state(), torch_state)  # global RNGs untouched
    assert np.array_equal(np.random.get_state()[1], np_state)
    c = run(AugmentConfig(), images, labels, kind, seed=6)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a[0], c[0])


def test_timm_pipeline_mixes_per_batch_with_timm_mixup():
    images, _ = batch()
    labels = torch.arange(16) % C  # differs from the flipped batch everywhere
    aug = AugmentConfig(pipeline="timm", mixup_alpha=1.0, cutmix_alpha=1.0, label_smoothing=0.1)
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    x, targets = run(aug, images, labels, torch.zeros(16, dtype=torch.long), seed=3)
    assert np.array_equal(np.random.get_state()[1], before)  # NumPy's global state restored
    torch.testing.assert_close(targets.sum(1), torch.ones(16))
    own = targets[torch.arange(16), labels]
    other = targets[torch.arange(16), labels.flip(0)]
    # timm mixes with the flipped batch, one weight for the whole batch
    torch.testing.assert_close(own + other, torch.full((16,), 0.9 + 0.2 / C))
    torch.testing.assert_close(own, own[:1].expand(16))
    assert 0.01 / C < own[0] < 0.9
    x2, t2 = run(aug, images, labels, torch.zeros(16, dtype=torch.long), seed=3)
    torch.testing.assert_close(x, x2)
    torch.testing.assert_close(targets, t2)
    odd, odd_targets = run(aug, images[:5], labels[:5], torch.zeros(5, dtype=torch.long))
    torch.testing.assert_close(odd_targets.sum(1), torch.ones(5))


def test_batched_randaugment_equals_torchvision_per_image():
    images, _ = batch(n=6, size=40)
    ra = BatchedRandAugment(num_ops=2, magnitude=9)
    for op in range(len(ra.ops)):
        for negative in (False, True):
            together = ra.apply_op(images, op, negative)
            alone = torch.stack([ra.apply_op(img[None], op, negative)[0] for img in images])
            assert torch.equal(together, alone), ra.ops[op][0]
    # the same draws as v2.RandAugment: one image, its global-RNG choices replayed
    img = images[0]
    for seed in range(20):
        torch.manual_seed(seed)
        expected = v2.RandAugment(num_ops=2, magnitude=9)(img)
        torch.manual_seed(seed)
        ops, negs = [], []
        for _ in range(2):
            op = int(torch.randint(len(ra.ops), ()))
            signed = ra.ops[op][1][1] and ra.ops[op][1][0](31, 40, 40) is not None
            negs.append(bool(torch.rand(()) <= 0.5) if signed else False)
            ops.append(op)
        got = ra.apply(img[None].clone(), np.array([ops]), np.array([negs]))[0]
        assert torch.equal(got, expected)


def test_the_private_torchvision_randaugment_members_still_exist():
    ra = v2.RandAugment()
    missing = [name for name in RANDAUGMENT_PRIVATE if not hasattr(ra, name)]
    assert not missing, f"torchvision moved v2.RandAugment.{missing}: update BatchedRandAugment"
