"""Decode one image file into the paper's square RGB uint8 array (§2).

``load_image(path, size)`` is the single place where files become pixels, used by
``alexnet prepare`` and by anything that classifies a loose image file, so both see the same
preprocessing: shorter side to ``size``, central ``size`` x ``size`` crop, RGB uint8. Resize
and crop are exactly torchvision's ``Resize(size)`` + ``CenterCrop(size)`` on a PIL image
(bilinear, antialiased; tested for equality), so torchvision-trained weights see what they
were trained on.

Real folders hold files that are not plain RGB JPEGs; each is turned into correct RGB and
noted (``notes``), or refused with a one-line reason (``BadImageError``):
CMYK JPEGs, grayscale and 16-bit images, palette/RGBA/LA images (alpha is composited on
white, what a viewer shows, instead of exposing the colours under transparent pixels), PNG
content named .JPEG (decoded by content), EXIF-rotated photos (rotated upright), truncated
files, zero-byte and non-image files, and images over a pixel limit (Pillow's
decompression-bomb guard, raised with ``max_pixels``).
"""

from __future__ import annotations

import errno
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from alexnet.errors import short_reason

# Pillow's own default (about 89.5 megapixels, 1/4 GiB of RGBA); a parameter, never global.
DEFAULT_MAX_PIXELS = 89_478_485
EXIF_ORIENTATION = 0x0112
JPEG_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif"}


class BadImageError(Exception):
    """A file that cannot become an image; the message is the reason shown in skipped.tsv."""


def load_image(
    path: str | os.PathLike[str],
    size: int = 256,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    jpeg_draft: bool = True,
    notes: list[str] | None = None,
) -> np.ndarray:
    """The file at ``path`` as (size, size, 3) uint8 RGB: shorter side to ``size``, centre crop.

    ``jpeg_draft`` lets libjpeg decode large JPEGs at 1/2, 1/4 or 1/8 scale (never below
    ``size`` on the shorter side) before the antialiased resize: several times faster for
    big photos and bounded memory for huge ones, at a difference of a few grey levels.
    ``notes`` collects what was converted ("CMYK", "EXIF rotated", ...).
    """
    path = Path(path)
    try:
        file_size = path.stat().st_size
    except OSError as error:
        # a dangling link or a link loop is not "not found": say which
        reason = {errno.ENOENT: "file not found" if not path.is_symlink() else "a dangling symlink",
                  errno.ELOOP: "a symlink loop"}.get(error.errno or 0)
        raise BadImageError(reason or f"cannot read file: {error.strerror or error}") from error
    if path.is_dir():
        raise BadImageError("a folder, not an image file")
    if file_size == 0:
        raise BadImageError("empty file (0 bytes)")
    notes = notes if notes is not None else []
    with _pixel_limit(max_pixels):
        try:
            with Image.open(path) as image:
                return _to_square_rgb(image, path, size, jpeg_draft, notes)
        except BadImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            found = re.search(r"\((\d+) pixels\)", str(error))
            pixels = f"{found.group(1)} pixels" if found else "too many pixels"
            raise BadImageError(
                f"image of {pixels} is over the limit of {max_pixels} (a guard against "
                "decompression bombs); if the file is trusted, prepare the images with "
                "`alexnet prepare SRC DEST --max-pixels N` and use the store"
            ) from error
        except UnidentifiedImageError as error:
            raise BadImageError("not an image file Pillow can read") from error
        except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as error:
            # truncated data ("image file is truncated"), corrupt headers, broken streams
            raise BadImageError(f"cannot decode: {_first_line(error)}") from error


def from_array(array: np.ndarray, size: int, notes: list[str] | None = None) -> np.ndarray:
    """An in-memory (H, W, 3) uint8 image through the same resize and crop as files."""
    with Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)) as image:
        return _resize_center_crop(image, size, notes if notes is not None else [])


def _to_square_rgb(image: Image.Image, path: Path, size: int, jpeg_draft: bool,
                   notes: list[str]) -> np.ndarray:
    if image.format == "JPEG" and path.suffix.lower() not in JPEG_SUFFIXES:
        notes.append(f"JPEG named {path.suffix}")
    elif image.format not in (None, "JPEG") and path.suffix.lower() in JPEG_SUFFIXES:
        notes.append(f"{image.format} named {path.suffix}")  # e.g. ImageNet's n02105855_2933.JPEG
    if getattr(image, "n_frames", 1) > 1:
        notes.append("first frame of an animation")
    if jpeg_draft and image.format == "JPEG":
        image.draft("RGB", (size, size))  # shorter side stays >= size
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    image.load()
    if orientation not in (1, None):
        image = ImageOps.exif_transpose(image)
        notes.append("EXIF rotated")
    rgb = to_rgb(image, notes)
    return _resize_center_crop(rgb, size, notes)


def to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    """Any Pillow mode as 8-bit RGB; ``notes`` says which conversion was needed."""
    if image.mode == "RGB":
        return image
    convert = MODE_CONVERSIONS.get(image.mode, _convert_plain)
    return convert(image, notes)


def _convert_plain(image: Image.Image, notes: list[str]) -> Image.Image:
    notes.append(f"{image.mode} to RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise BadImageError(f"cannot convert mode {image.mode} to RGB: {error}") from error


def _composite_on_white(image: Image.Image, notes: list[str]) -> Image.Image:
    rgba = image.convert("RGBA")
    if rgba.getextrema()[3][0] == 255:  # fully opaque: nothing to composite
        notes.append(f"{image.mode} to RGB")
        return rgba.convert("RGB")
    notes.append(f"{image.mode} with transparency")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _palette(image: Image.Image, notes: list[str]) -> Image.Image:
    if "transparency" in image.info:
        return _composite_on_white(image, notes)
    notes.append("P to RGB")
    return image.convert("RGB")


def _high_bit_depth(image: Image.Image, notes: list[str]) -> Image.Image:
    """16-bit (and 32-bit integer / float) grayscale scaled to 8 bits, not clipped at 255."""
    pixels = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or pixels.max(initial=0) > 255 else 255.0
    if image.mode == "F" and pixels.max(initial=0) <= 1.0:
        top = 1.0
    notes.append(f"{image.mode} to 8 bit")
    gray = np.clip(np.rint(pixels * (255.0 / top)), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(gray[..., None], 3, axis=2))


MODE_CONVERSIONS: dict[str, Callable[[Image.Image, list[str]], Image.Image]] = {
    "RGBA": _composite_on_white,
    "LA": _composite_on_white,
    "PA": _composite_on_white,
    "RGBa": _composite_on_white,
    "La": _composite_on_white,
    "P": _palette,
    "I": _high_bit_depth,
    "I;16": _high_bit_depth,
    "I;16L": _high_bit_depth,
    "I;16B": _high_bit_depth,
    "I;16N": _high_bit_depth,
    "F": _high_bit_depth,
}


def _resize_center_crop(image: Image.Image, size: int, notes: list[str]) -> np.ndarray:
    """torchvision ``Resize(size)`` then ``CenterCrop(size)``, to the pixel."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if short < size:
        notes.append("upscaled")
    new_long = int(size * long / short)  # torchvision's rounding (truncation)
    new_size = (size, new_long) if width <= height else (new_long, size)
    if new_size != image.size:
        image = image.resize(new_size, Image.BILINEAR)
    top = round((new_size[1] - size) / 2.0)  # torchvision: int(round(...)), half to even
    left = round((new_size[0] - size) / 2.0)
    square = image.crop((left, top, left + size, top + size))
    array = np.asarray(square.convert("RGB") if square.mode != "RGB" else square, dtype=np.uint8)
    return np.ascontiguousarray(array)


class _pixel_limit:
    """Pillow's decompression-bomb limit set to ``max_pixels`` and made an error at 1x (Pillow
    only warns between 1x and 2x), restored afterwards."""

    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels

    def __enter__(self) -> None:
        self.saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = self.max_pixels
        self.warnings = warnings.catch_warnings()
        self.warnings.__enter__()
        warnings.simplefilter("error", Image.DecompressionBombWarning)

    def __exit__(self, *exc: object) -> None:
        self.warnings.__exit__(*exc)
        Image.MAX_IMAGE_PIXELS = self.saved


def _first_line(error: BaseException) -> str:
    return short_reason(error)
