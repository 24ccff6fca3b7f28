"""What a prepared folder holds, and a contact sheet of samples to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maxvit.data.archive import SPLITS
from maxvit.data.prepare import read_prepared_manifest
from maxvit.files import atomic_write

SHEET_CLASSES = 6  # rows of the contact sheet
SHEET_SAMPLES = 8  # columns of the contact sheet


def summary(root: str | Path) -> dict:
    """Counts per split, class count, wnids and names (the keys of ``maxvit data info --json``)."""
    root = Path(root)
    manifest = read_prepared_manifest(root)
    out = {split: manifest["splits"][split]["count"] for split in SPLITS}
    out["classes"] = manifest["classes"]
    out["wnids"] = (root / "wnids.txt").read_text().split()
    out["class_names"] = (root / "class_names.txt").read_text().splitlines()
    out["resized"] = sum(len(manifest["splits"][s]["resized"]) for s in SPLITS)
    out["skipped"] = sum(len(manifest["splits"][s]["skipped"]) for s in SPLITS)
    out["source"] = manifest["source"]
    return out


def format_summary(info: dict, root: Path, names_shown: int = 10) -> str:
    lines = [
        f"{root}: {info['classes']} classes",
        *(f"  {split:5s} {info[split]:7d} images" for split in SPLITS),
    ]
    if info["resized"] or info["skipped"]:
        lines.append(f"  resized {info['resized']}, skipped (corrupt) {info['skipped']}")
    lines.append("classes (index wnid name):")
    for i, (wnid, name) in enumerate(zip(info["wnids"], info["class_names"], strict=True)):
        if i == names_shown:
            lines.append(f"  ... {info['classes'] - names_shown} more (all with --json)")
            break
        lines.append(f"  {i:3d} {wnid} {name}")
    return "\n".join(lines)


def contact_sheet(
    root: str | Path, out: str | Path, *, augmented: bool = False, seed: int = 0
) -> Path:
    """Write a PNG grid: a few classes (rows) x a few train samples (columns), 128 px each.

    With `augmented` the samples go through the recorded training pipeline (seed preset at 224:
    crop, flip, RandAugment, then the pass kind of the column: plain / mixup / cutmix /
    erasing), so one sees what the model is fed.
    """
    import torch
    from PIL import Image, ImageDraw, ImageFont

    from maxvit.data.augment_config import KIND_NAMES, AugmentConfig
    from maxvit.data.batch_augment import BatchAugment, denormalise
    from maxvit.data.crop import TrainTransform
    from maxvit.data.datasets import TinyImageNet

    dataset = TinyImageNet(root, "train")
    rows = np.linspace(0, dataset.num_classes - 1, min(SHEET_CLASSES, dataset.num_classes)).round()
    picks = []
    for label in rows.astype(int):
        members = np.flatnonzero(dataset.labels == label)[:SHEET_SAMPLES]
        picks.append(np.resize(members, SHEET_SAMPLES))  # repeat when a class has fewer
    indices = np.concatenate(picks)
    images = dataset.fetch(indices)
    columns = [""] * SHEET_SAMPLES
    if augmented:
        aug = AugmentConfig()
        rng = np.random.default_rng(seed)
        images = TrainTransform(aug, 224, dataset.native_size)(images, rng)
        labels = torch.from_numpy(dataset.labels[indices])
        # Batch in column-major order, so that each sample's mixing partner (the previous one)
        # is another class, with one pass kind per column.
        order = torch.arange(len(indices)).view(len(rows), SHEET_SAMPLES).t().reshape(-1)
        kind = (order % SHEET_SAMPLES) % len(KIND_NAMES)
        x, _ = BatchAugment(aug, dataset.num_classes, 224)(
            images[order], labels[order], kind, torch.Generator().manual_seed(seed)
        )
        images = torch.empty((len(indices), 3, 224, 224), dtype=torch.uint8)
        images[order] = denormalise(x)
        columns = [KIND_NAMES[c % len(KIND_NAMES)] for c in range(SHEET_SAMPLES)]

    cell, label_w, title_h = 128, 170, 18 if augmented else 0
    sheet = Image.new("RGB", (label_w + SHEET_SAMPLES * cell, title_h + len(rows) * cell), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for r, label in enumerate(rows.astype(int)):
        top = title_h + r * cell
        name = dataset.class_names[label].split(",")[0][:22]
        draw.text((4, top + cell // 2 - 12), f"{label}: {name}", fill="black", font=font)
        draw.text((4, top + cell // 2 + 2), dataset.classes[label], fill="gray", font=font)
        for c in range(SHEET_SAMPLES):
            i = r * SHEET_SAMPLES + c
            tile = Image.fromarray(images[i].permute(1, 2, 0).numpy()).resize((cell, cell))
            sheet.paste(tile, (label_w + c * cell, top))
            if columns[c] and r == 0:
                draw.text((label_w + c * cell + 4, 2), columns[c], fill="black", font=font)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out, lambda tmp: sheet.save(tmp, format="PNG"))
