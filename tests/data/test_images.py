"""Image decoding: every mode to correct 8-bit RGB, bad files refused with a one-line error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from maxvit.data.images import ImageError, decode_rgb, image_size
from maxvit.errors import UserError


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def gradient(w: int = 48, h: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 5, yy * 7, (xx + yy) * 3], axis=2).clip(0, 255).astype(np.uint8)


def bomb_png(side: int = 30000) -> bytes:
    """A valid-looking PNG header that declares side x side pixels, and no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_jpeg_pixels_are_pil_s_and_reduced_decoding_keeps_the_size_asked_for():
    array = gradient(400, 300)
    data = encode(Image.fromarray(array), "JPEG", quality=92)
    full = decode_rgb(data)
    assert full.dtype == np.uint8 and full.shape == (300, 400, 3)
    assert np.array_equal(full, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    assert image_size(data) == (400, 300)
    half = decode_rgb(data, at_least=(190, 140))  # 1/2 still covers it
    assert half.shape == (150, 200, 3)
    assert decode_rgb(data, at_least=(201, 100)).shape == (300, 400, 3)  # 1/2 would not


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_gray_and_cmyk_jpegs_become_rgb(mode):
    array = gradient()
    img = Image.fromarray(array).convert(mode)
    out = decode_rgb(encode(img, "JPEG", quality=95))
    expected = np.asarray(img.convert("RGB")).astype(int)
    assert out.shape == (32, 48, 3) and np.abs(out.astype(int) - expected).max() <= 8
    if mode == "L":
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white(mode):
    array = gradient()
    rgba = Image.fromarray(array).convert("RGBA")
    alpha = np.full((32, 48), 255, np.uint8)
    alpha[:, :10] = 0  # transparent
    alpha[:, 10:20] = 128  # half
    rgba.putalpha(Image.fromarray(alpha))
    if mode == "P":
        img = rgba.convert("P", palette=Image.Palette.ADAPTIVE)
        img.info["transparency"] = int(np.asarray(img)[0, 0])
        data = encode(img, "PNG", transparency=img.info["transparency"])
    else:
        data = encode(rgba.convert(mode), "PNG")
    out = decode_rgb(data)
    assert out.shape == (32, 48, 3)
    assert (out[:, :10] == 255).all()  # white where fully transparent, not the hidden colour
    if mode == "RGBA":
        blend = array[:, 10:20].astype(float) * 128 / 255 + 255 * (1 - 128 / 255)
        assert np.abs(out[:, 10:20] - blend).max() <= 1.5
        assert np.array_equal(out[:, 20:], array[:, 20:])


def test_sixteen_bit_images_are_scaled_not_clipped():
    values = (np.arange(32 * 48).reshape(32, 48) * 40).astype(np.uint16)  # 0 .. 61400
    out = decode_rgb(encode(Image.fromarray(values), "PNG"))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], np.rint(values / 257).astype(np.uint8))
    assert out.max() > 200 and 0 < np.median(out) < 255  # a gradient, not white


def test_float_images_in_unit_range_are_scaled_others_refused():
    values = np.linspace(0, 1, 32 * 48, dtype=np.float32).reshape(32, 48)
    out = decode_rgb(encode(Image.fromarray(values), "TIFF"))
    np.testing.assert_array_equal(out[..., 1], np.rint(values * 255).astype(np.uint8))
    with pytest.raises(ImageError, match=r"outside \[0, 1\]"):
        decode_rgb(encode(Image.fromarray(values * 1000), "TIFF"), "f.tif")


@pytest.mark.parametrize(
    "data, message",
    [
        (bomb_png(), "decompression bomb|DecompressionBomb"),
        (b"not an image at all", "not an image"),
        (encode(Image.fromarray(gradient(200, 200)), "JPEG")[:400], "truncated|cannot decode"),
        (b"", "not an image"),
    ],
)
def test_bad_images_are_one_line_user_errors(data, message):
    with pytest.raises(UserError, match=message) as info:
        decode_rgb(data, "bad.img")
    assert "\n" not in str(info.value) and "bad.img" in str(info.value)
    assert isinstance(info.value, ImageError)


def test_a_tiny_bomb_file_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png())
    assert path.stat().st_size < 100  # tiny on disk, 900 megapixels declared
    with pytest.raises(ImageError, match=str(path)):
        decode_rgb(path)
    with pytest.raises(ImageError, match="cannot read"):
        decode_rgb(tmp_path / "missing.jpg")


def test_a_file_that_cannot_be_read_is_named_with_the_reason_only(tmp_path):
    """Before: `cannot read DIR (IsADirectoryError: [Errno 21] Is a directory: 'DIR')`."""
    with pytest.raises(ImageError) as info:
        decode_rgb(tmp_path)  # `maxvit predict FOLDER`
    assert str(info.value) == f"cannot read {tmp_path} (Is a directory)"
    with pytest.raises(ImageError) as info:
        decode_rgb(tmp_path / "missing.jpg")
    assert str(info.value) == f"cannot read {tmp_path / 'missing.jpg'} (No such file or directory)"
