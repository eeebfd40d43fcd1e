"""load_image: torchvision parity, and every kind of bad file real folders hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms

from alexnet.data.images import BadImageError, load_image
from data_helpers import random_image, write_image


@pytest.mark.parametrize("shape", [(60, 90), (90, 61), (33, 33), (20, 27)])
def test_matches_torchvision_resize_center_crop(tmp_path: Path, shape: tuple[int, int]) -> None:
    pixels = random_image(np.random.default_rng(1), *shape)
    path = write_image(tmp_path / "a.png", pixels)
    expected = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32)])(
        Image.open(path).convert("RGB"))
    ours = load_image(path, 32, jpeg_draft=False)
    assert ours.shape == (32, 32, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, np.asarray(expected))


def test_jpeg_draft_is_close_to_full_decode(tmp_path: Path) -> None:
    path = write_image(tmp_path / "big.jpg", random_image(np.random.default_rng(2), 400, 520),
                       quality=95)
    fast, full = load_image(path, 64, jpeg_draft=True), load_image(path, 64, jpeg_draft=False)
    assert np.abs(fast.astype(int) - full.astype(int)).mean() < 4.0


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.JPEG"
    Image.new("RGB", (50, 40), (200, 30, 40)).convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    notes: list[str] = []
    image = load_image(path, 16, notes=notes)
    assert np.abs(image.astype(int) - (200, 30, 40)).max() <= 3
    assert notes == ["CMYK to RGB"]


def test_png_named_jpeg_is_decoded_by_content(tmp_path: Path) -> None:
    pixels = random_image(np.random.default_rng(3), 32, 32)
    path = write_image(tmp_path / "n02105855_2933.JPEG", pixels, format="PNG")
    notes: list[str] = []
    np.testing.assert_array_equal(load_image(path, 32, notes=notes), pixels)
    assert notes == ["PNG named .JPEG"]


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    path = write_image(tmp_path / "gray.png", gray)
    notes: list[str] = []
    image = load_image(path, 32, notes=notes)
    np.testing.assert_array_equal(image, np.repeat(gray[..., None], 3, axis=2))
    assert notes == ["L to RGB"]


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    gray16 = np.full((16, 16), 32768, dtype=np.uint16)
    path = write_image(tmp_path / "g16.png", gray16)
    image = load_image(path, 16)
    assert abs(int(image[0, 0, 0]) - 128) <= 1  # 32768 / 257


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (20, 20), (255, 0, 0, 128)).save(path)
    notes: list[str] = []
    image = load_image(path, 20, notes=notes)
    np.testing.assert_allclose(image[5, 5], (255, 127, 127), atol=1)
    assert notes == ["RGBA with transparency"]


def test_palette_with_transparency(tmp_path: Path) -> None:
    indices = np.zeros((20, 20), np.uint8)
    indices[:, 10:] = 1  # right half: the transparent palette entry
    palette = Image.fromarray(indices, "P")
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    path = tmp_path / "palette.png"
    palette.save(path, transparency=1)
    image = load_image(path, 20)
    np.testing.assert_array_equal(image[0, 0], (255, 0, 0))
    np.testing.assert_array_equal(image[0, 19], (255, 255, 255))


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, :40] = (255, 0, 0)  # left half red, right half blue, as stored
    pixels[:, 40:] = (0, 0, 255)
    exif = Image.Image().getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = write_image(tmp_path / "rotated.jpg", pixels, exif=exif.tobytes(), quality=95)
    notes: list[str] = []
    image = load_image(path, 32, notes=notes)
    assert "EXIF rotated" in notes
    assert image[0, 16, 0] > 200 and image[0, 16, 2] < 50  # upright: red on top
    assert image[-1, 16, 2] > 200 and image[-1, 16, 0] < 50  # blue at the bottom


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_jpeg_is_refused(tmp_path: Path, cut: float) -> None:
    full = write_image(tmp_path / "full.jpg", random_image(np.random.default_rng(4), 120, 160))
    data = full.read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(BadImageError, match="cannot decode"):
        load_image(path, 32)


def test_zero_byte_and_non_image_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.JPEG"
    empty.touch()
    with pytest.raises(BadImageError, match="empty file"):
        load_image(empty, 32)
    html = tmp_path / "error_page.JPEG"
    html.write_text("<html>404 not found</html>")
    with pytest.raises(BadImageError, match="not an image"):
        load_image(html, 32)


def test_huge_image_is_refused_with_a_clear_message_and_a_setting(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    Image.new("RGB", (2000, 1500), (10, 20, 30)).save(path)  # 3 megapixels, tiny file
    with pytest.raises(BadImageError, match=r"3000000 pixels is over the limit of 1000000.*--max-pixels"):
        load_image(path, 32, max_pixels=1_000_000)
    image = load_image(path, 32, max_pixels=4_000_000)
    np.testing.assert_array_equal(image[0, 0], (10, 20, 30))
    assert Image.MAX_IMAGE_PIXELS != 1_000_000  # the global limit is restored
