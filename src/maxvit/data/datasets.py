"""Map-style datasets: prepared Tiny ImageNet (memory-mapped arrays) and a class-per-folder tree.

Both return uint8 (3, H, W) tensors and integer labels. For the loaders, both give a batch of
samples at once: ``train_images(indices, transform, rng)`` and ``eval_images(indices, size,
box)`` return (uint8 images, indices of the samples kept, (name, error) of those left out).
Tiny ImageNet reads its arrays (``fetch``); a folder tree decodes its ``files`` straight into
their crops. WebDataset shards are streams, in :mod:`maxvit.data.stream`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from maxvit.data.archive import SPLITS, natural_key
from maxvit.data.crop import Box, TrainTransform, decode_batch, decode_crop
from maxvit.data.images import SUFFIXES, decode_rgb, image_files
from maxvit.data.prepare import read_prepared_manifest
from maxvit.data.tensor_ops import one_thread
from maxvit.errors import UserError

Transform = Callable[[torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, list[int], list[tuple[str, str]]]  # images, kept, failed


def class_names(root: str | Path) -> list[str]:
    """Human-readable class names of a prepared folder (words.txt), in class order."""
    return (Path(root) / "class_names.txt").read_text().splitlines()


class TinyImageNet(torch.utils.data.Dataset):
    """One split ("train", "val", "test") of a prepared Tiny ImageNet folder.

    Images are memory-mapped, so opening is instant and workers share the page cache.
    ``dataset[i]`` is (uint8 (3, 64, 64) tensor, label); the test split's labels are -1.
    `transform`, if given, is applied to the image tensor.
    """

    native_size = 64  # every image has this size, so batches need no per-image resize

    def __init__(self, root: str | Path, split: str, transform: Transform | None = None) -> None:
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.transform = transform
        manifest = read_prepared_manifest(self.root)
        self.num_classes: int = manifest["classes"]
        self.classes = (self.root / "wnids.txt").read_text().split()
        self.class_names = class_names(self.root)
        self.labels = np.load(self.root / f"{split}_labels.npy")
        self._images: np.ndarray | None = None

    @property
    def images(self) -> np.ndarray:
        """(N, 64, 64, 3) uint8, memory-mapped (opened lazily, so pickling stays cheap)."""
        if self._images is None:
            self._images = np.load(self.root / f"{self.split}_images.npy", mmap_mode="r")
        return self._images

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(np.ascontiguousarray(self.images[index].transpose(2, 0, 1)))
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def fetch(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Images `indices` as one uint8 (B, 3, 64, 64) tensor (no transform)."""
        rows = self.images[np.asarray(indices, dtype=np.int64)]
        return torch.from_numpy(rows).permute(0, 3, 1, 2).contiguous()

    def train_images(
        self, indices: np.ndarray, transform: TrainTransform, rng: np.random.Generator
    ) -> Batch:
        """The training crops of samples `indices` (arrays: every sample is kept)."""
        with one_thread():
            return transform(self.fetch(indices), rng), list(range(len(indices))), []

    def eval_images(self, indices: np.ndarray, size: int, box: Box) -> Batch:
        """Samples `indices` at 64x64: Tiny ImageNet gets its evaluation geometry (`size`,
        `box`) on the device, batch-wise (`maxvit.data.batch_augment.EvalTransform`)."""
        return self.fetch(indices), list(range(len(indices))), []


class ImageFolderDataset(torch.utils.data.Dataset):
    """A class-per-folder image tree (ImageNet-1K style): ``root/<class>/<image>``.

    Classes are the sorted sub-folder names (or `classes`, e.g. those of the train split, so that
    the labels of every split agree). Images are JPEG, PNG or WebP files of any size and mode,
    decoded by :mod:`maxvit.data.images` (8-bit RGB, alpha composited, 16-bit scaled); a file
    of another image type (.bmp, .tif...) is a `UserError` naming it, as in `predict`.
    ``dataset[i]`` is (uint8 (3, H, W) tensor, label); `transform` is applied to the tensor.
    The training and evaluation loaders decode from :attr:`files` straight into their crops.
    """

    native_size = None  # images come in any size

    def __init__(
        self,
        root: str | Path,
        transform: Transform | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.transform = transform
        if not self.root.is_dir():
            raise UserError(f"{self.root} is not a folder of class folders")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.classes = list(classes) if classes is not None else found
        unknown = sorted(set(found) - set(self.classes))
        if unknown:
            raise UserError(f"{self.root}/{unknown[0]} is not one of the training classes")
        if not self.classes:
            raise UserError(f"{self.root} has no class folders")
        self.class_names = list(self.classes)
        self.num_classes = len(self.classes)
        self.files: list[Path] = []
        labels: list[int] = []
        for label, name in enumerate(self.classes):
            folder = self.root / name
            found = image_files(folder) if folder.is_dir() else []
            files = sorted(found, key=lambda p: natural_key(p.as_posix()))
            self.files += files
            labels += [label] * len(files)
        if not self.files:
            raise UserError(f"{self.root} has no images ({', '.join(SUFFIXES)})")
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.files)

    def train_images(
        self, indices: np.ndarray, transform: TrainTransform, rng: np.random.Generator
    ) -> Batch:
        """Samples `indices` decoded straight into their training crops; bad files left out."""
        files = [self.files[i] for i in indices]
        return transform.encoded(files.__getitem__, [str(f) for f in files], rng)

    def eval_images(self, indices: np.ndarray, size: int, box: Box) -> Batch:
        """Samples `indices` decoded straight into the evaluation region `box` at `size`."""
        names = [str(self.files[i]) for i in indices]
        return decode_batch(names, lambda j: decode_crop(names[j], names[j], size, box), size)

    def load(self, index: int) -> torch.Tensor:
        """Decode image `index` to uint8 RGB (3, H, W); ImageError if it cannot be decoded."""
        rgb = decode_rgb(self.files[index])
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.load(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])
