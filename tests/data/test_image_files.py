"""read_image on PNG / JPEG files written here by PIL from known arrays; resize_square geometry."""

import numpy as np
import pytest
from PIL import Image

from radfm_jax.data.image_files import ImageReadError, read_image, resize_square


@pytest.fixture
def gradient8():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(37, 53), dtype=np.uint8)


def test_8bit_png_is_exact(tmp_path, gradient8):
    path = tmp_path / "cxr.png"
    Image.fromarray(gradient8).save(path)
    image = read_image(path)
    assert image.dtype == np.float32 and image.shape == (37, 53)
    np.testing.assert_array_equal(image, gradient8.astype(np.float32) / 255)


def test_16bit_png_is_exact(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 65536, size=(29, 31), dtype=np.uint16)
    pixels[0, 0], pixels[0, 1] = 0, 65535
    path = tmp_path / "cxr16.png"
    Image.fromarray(pixels).save(path)
    image = read_image(path)
    np.testing.assert_array_equal(image, pixels.astype(np.float32) / 65535)


def test_jpeg_is_close(tmp_path):
    yy, xx = np.mgrid[0:64, 0:80]
    smooth = (255 * (0.5 + 0.4 * np.sin(xx / 9) * np.cos(yy / 13))).astype(np.uint8)
    path = tmp_path / "cxr.jpg"
    Image.fromarray(smooth).save(path, quality=95)
    image = read_image(path)
    assert image.shape == (64, 80)
    assert np.abs(image - smooth / 255).max() < 0.03


def test_rgb_is_converted_to_luma(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    # ITU-R 601-2 luma, the weights PIL's convert("L") documents.
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(read_image(path), luma / 255, atol=1.01 / 255)


def test_truncated_and_bad_files_name_the_path(tmp_path, gradient8):
    good = tmp_path / "good.png"
    Image.fromarray(gradient8).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageReadError) as err:
        read_image(truncated)
    assert str(truncated) in str(err.value)

    jpeg = tmp_path / "good.jpg"
    Image.fromarray(gradient8).save(jpeg)
    cut_jpeg = tmp_path / "cut.jpg"
    cut_jpeg.write_bytes(jpeg.read_bytes()[:300])
    with pytest.raises(ImageReadError, match="cut.jpg"):
        read_image(cut_jpeg)

    text = tmp_path / "report.png"
    text.write_text("FINDINGS: none")
    with pytest.raises(ImageReadError, match="report.png"):
        read_image(text)
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "absent.png")


def test_resize_pad_keeps_aspect_and_centres():
    image = np.ones((100, 200), np.float32)
    out = resize_square(image, 50, "pad")
    assert out.shape == (50, 50)
    # 100x200 scaled by 1/4 is 25x50, centred: rows 12..36 are image, the rest zero.
    np.testing.assert_allclose(out[12:37], 1.0, atol=1e-6)
    assert np.all(out[:12] == 0) and np.all(out[37:] == 0)


def test_resize_crop_keeps_the_centre():
    image = np.zeros((100, 200), np.float32)
    image[:, 50:150] = 1.0  # the centred 100x100 square is all ones; the sides are zero
    out = resize_square(image, 20, "crop")
    assert out.shape == (20, 20)
    np.testing.assert_allclose(out, 1.0, atol=1e-6)


def test_resize_is_antialiased():
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    out = resize_square(checker, 16, "pad")
    # Averaging 4x4 blocks of a one-pixel checkerboard gives 0.5; point sampling gives 0 or 1.
    np.testing.assert_allclose(out[2:-2, 2:-2], 0.5, atol=0.05)


def test_resize_rejects_bad_arguments():
    with pytest.raises(ValueError, match="'pad' or 'crop'"):
        resize_square(np.ones((4, 6), np.float32), 3, "stretch")
    with pytest.raises(ValueError, match=r"2D \(H, W\)"):
        resize_square(np.ones((4, 6, 3), np.float32), 3)
