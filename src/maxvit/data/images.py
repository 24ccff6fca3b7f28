"""Image decoding: the one place the project turns a file or bytes into 8-bit RGB pixels.

Every path that reads images (prepare, class folders, shards, the shard writer, verify,
predict) goes through this module. JPEGs in RGB, YCbCr or grayscale are decoded by
libjpeg-turbo through ``simplejpeg`` (the same pixels as PIL gives, 1.35x faster here, and it
can decode at 1/2, 1/4 or 1/8 scale for nothing when the result is downsampled anyway:
`decode_rgb`'s `at_least`); everything else goes through PIL (`open_image`, `to_rgb`), so
every mode is converted the same way:

* RGB as it is; L, 1, CMYK, YCbCr and other colour modes through PIL's conversion;
* alpha (RGBA, LA, PA, palette with transparency) composited on white, not dropped;
* 16-bit integer images (I;16*, I) scaled to 8 bits (x / 257), not clipped;
* float images (F) with values in [0, 1] scaled by 255; other float ranges are refused.

Image files are JPEG, PNG or WebP (`SUFFIXES`, what shards hold): a file whose name says it is
another image type PIL reads (.bmp, .tif, .gif...) is refused by class folders and `predict`
alike (`unsupported_type`), never skipped silently. EXIF orientation is not applied (ImageNet
pipelines, timm's and torchvision's, do not).
Anything PIL cannot open or decode, including truncated files and decompression bombs
(more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` allows), raises `ImageError` with the
image's name. This module does not import torch.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from maxvit.errors import UserError

BACKGROUND = (255, 255, 255)  # what transparent pixels are composited on
SUFFIXES = (".jpeg", ".jpg", ".png", ".webp")  # the image files the project reads
Source = bytes | str | Path  # encoded image bytes, or a file path
_JPEG = b"\xff\xd8"  # the start-of-image marker


class ImageError(UserError):
    """An image that cannot be decoded: corrupt, truncated, unsupported or too large."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not an image in a format PIL knows"
    if isinstance(exc, OSError) and exc.strerror:  # "Is a directory", not the whole repr
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def unsupported_type(name: str | Path) -> str | None:
    """What is wrong with a file whose suffix names an image type PIL reads other than JPEG,
    PNG and WebP (.bmp, .tif, .gif...); None for those three and for other files."""
    suffix = Path(name).suffix.lower()
    Image.init()
    if suffix in SUFFIXES or Image.EXTENSION.get(suffix) not in Image.OPEN:
        return None
    return f"unsupported image type {suffix} (use JPEG, PNG or WebP)"


def image_files(folder: Path) -> Iterator[Path]:
    """The JPEG, PNG and WebP files under `folder` (at any depth), lazily; `UserError` naming a
    file of another image type PIL reads (`unsupported_type`) when it is met."""
    for path in folder.rglob("*"):
        if path.suffix.lower() in SUFFIXES:
            yield path
        elif (problem := unsupported_type(path)) is not None:
            raise UserError(f"{path}: {problem}; convert it or move it out")


def open_image(src: Source, name: str | None = None) -> Image.Image:
    """Open an image lazily (header only); `name` is used in error messages."""
    label = name or (str(src) if not isinstance(src, bytes) else "image bytes")
    try:
        return Image.open(io.BytesIO(src) if isinstance(src, bytes) else src)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot decode {label} ({_describe(exc)})") from None


def _composite(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _from_gray(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(gray[..., None], 3, axis=2), "RGB")


def to_rgb(img: Image.Image, name: str | None = None) -> Image.Image:
    """Decode `img` and convert it to 8-bit RGB by the rules in the module docstring."""
    label = name or getattr(img, "filename", None) or "image"
    try:
        img.load()
        mode = img.mode
        if mode == "RGB":
            return img
        if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            mode == "P" and "transparency" in img.info
        ):
            return _composite(img)
        if mode.startswith("I"):  # I;16, I;16B, I;16L, I (32-bit, holding 16-bit values)
            values = np.asarray(img).astype(np.float32)
            gray = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
            return _from_gray(gray)
        if mode == "F":
            values = np.asarray(img)
            if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
                raise ImageError(
                    f"cannot decode {label} (float image with values outside [0, 1]: "
                    "its intensity range is unknown)"
                )
            return _from_gray(np.rint(values * 255).astype(np.uint8))
        return img.convert("RGB")
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot decode {label} ({_describe(exc)})") from None


def read_bytes(src: Source, label: str) -> bytes:
    """The bytes of an encoded image (given as bytes or a file path); ImageError if unreadable."""
    if isinstance(src, bytes):
        return src
    try:
        return Path(src).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read {label} ({_describe(exc)})") from None


def _check_pixels(width: int, height: int, label: str) -> None:
    """Refuse decompression bombs as PIL does (its limit counts for simplejpeg too)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > 2 * limit:
        raise ImageError(
            f"cannot decode {label} ({width}x{height} = {width * height} pixels is over twice "
            f"PIL.Image.MAX_IMAGE_PIXELS ({limit}): a possible decompression bomb)"
        )


def _jpeg_header(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG that libjpeg-turbo decodes to RGB, else None (PIL's turn)."""
    if data[:2] != _JPEG:
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return (width, height) if colorspace in ("RGB", "YCbCr", "Gray") else None


def image_size(data: bytes, name: str | None = None) -> tuple[int, int]:
    """(width, height) from the header of encoded image bytes."""
    header = _jpeg_header(data)
    if header is not None:
        return header
    with open_image(data, name or "image bytes") as img:
        return img.size


def decode_rgb(
    src: Source, name: str | None = None, *, at_least: tuple[float, float] | None = None
) -> np.ndarray:
    """Decode an image file or bytes to a (H, W, 3) uint8 RGB array.

    With `at_least` (width, height), a JPEG is decoded at the smallest reduced DCT scale
    (2x or more) that still gives at least that size; the caller compares the result's shape
    with `image_size` for the scale. Other images come at full size.
    """
    label = name or (str(src) if not isinstance(src, bytes) else "image bytes")
    data = read_bytes(src, label)
    header = _jpeg_header(data)
    if header is not None:
        width, height = header
        _check_pixels(width, height, label)
        kw = {}
        if at_least and width >= 2 * at_least[0] and height >= 2 * at_least[1]:
            kw = {"min_width": math.ceil(at_least[0]), "min_height": math.ceil(at_least[1])}
        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB", **kw)
        except ValueError:
            pass  # CMYK, arithmetic coding, corrupt...: PIL decodes it or names the error
    img = open_image(data, label)
    with img:
        _check_pixels(*img.size, label)
        return np.array(to_rgb(img, label))  # a writable copy (torch.from_numpy needs one)
