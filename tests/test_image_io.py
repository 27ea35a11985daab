import os

import cv2
import numpy as np
import pytest

from tests.conftest import smooth_image
from zssr_tf import image_io
from zssr_tf.image_io import ImageError, output_name, read_image, write_image


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_png_round_trip(tmp_path, channels, bit_depth):
    image = smooth_image(9, 11, channels)
    path = tmp_path / "x.png"
    write_image(path, image, bit_depth)
    loaded = read_image(path)
    assert loaded.bit_depth == bit_depth and loaded.pixels.shape == (9, 11, channels)
    assert loaded.pixels.dtype == np.float32
    np.testing.assert_allclose(loaded.pixels, image, atol=0.5 / (2**bit_depth - 1) + 1e-7)  # rounded, not truncated


def test_channel_order_is_rgb(tmp_path):
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    assert read_image(tmp_path / "red.png").pixels[0, 0].tolist() == [1.0, 0.0, 0.0]


def test_jpeg_and_png_share_the_float_range(tmp_path):
    image = (smooth_image(16, 16) * 255).round().astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    cv2.imwrite(str(tmp_path / "a.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    png, jpg = read_image(tmp_path / "a.png").pixels, read_image(tmp_path / "a.jpg").pixels
    assert jpg.max() <= 1.0 and np.abs(png - jpg).mean() < 0.02


def test_bad_files(tmp_path):
    with pytest.raises(ImageError, match="no such image"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        read_image(tmp_path / "text.png")
    write_image(tmp_path / "ok.png", smooth_image(32, 32))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError):
        read_image(tmp_path / "cut.png")


def test_write_is_atomic_and_leaves_no_temporary(tmp_path):
    write_image(tmp_path / "a.png", smooth_image(4, 4))
    assert os.listdir(tmp_path) == ["a.png"]
    with pytest.raises(ImageError):
        write_image(tmp_path / "missing_dir" / "a.png", smooth_image(4, 4))


def test_output_name_is_the_originals():
    assert output_name("/data/img_001_SRF_2_LR.png", (2.0, 2.0)) == "img_001_SRF_2_LR_zssr_X2.00X2.00.png"
    assert output_name("a.jpg", (1.0, 1.5)) == "a_zssr_X1.00X1.50.png"


@pytest.mark.parametrize("extension", [".png", ".tif", ".bmp", ".webp", ".jpg"])
def test_common_formats_read_as_rgb_floats(tmp_path, extension):
    image = (smooth_image(12, 10) * 255).round().astype(np.uint8)
    params = {".webp": [cv2.IMWRITE_WEBP_QUALITY, 101], ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 100]}.get(extension, [])
    cv2.imwrite(str(tmp_path / f"a{extension}"), image[:, :, ::-1], params)
    loaded = read_image(tmp_path / f"a{extension}")
    assert loaded.pixels.shape == (12, 10, 3) and loaded.bit_depth == 8
    tolerance = 0.03 if extension == ".jpg" else 1e-6
    assert np.abs(loaded.pixels - image / 255.0).mean() < tolerance


def test_palette_images_are_expanded(tmp_path):
    from PIL import Image

    palette = Image.new("P", (4, 3))
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((1, 1), 1)
    palette.save(tmp_path / "p.png")
    pixels = read_image(tmp_path / "p.png").pixels
    assert pixels.shape == (3, 4, 3)
    assert pixels[1, 1].tolist() == [0.0, 1.0, 0.0] and pixels[0, 0].tolist() == [1.0, 0.0, 0.0]
    palette.save(tmp_path / "t.png", transparency=0)  # palette entry 0 transparent -> an alpha channel
    pixels = read_image(tmp_path / "t.png").pixels
    assert pixels.shape == (3, 4, 4) and pixels[0, 0, 3] == 0.0 and pixels[1, 1, 3] == 1.0


@pytest.mark.parametrize("orientation, expected_corner", [(1, (0, 0)), (3, (-1, -1)), (6, (0, -1)), (8, (-1, 0))])
def test_exif_orientation_is_applied_as_a_viewer_does(tmp_path, orientation, expected_corner):
    from PIL import Image

    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:8, :8] = [255, 0, 0]  # a red block in the stored top-left corner
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    pixels = read_image(tmp_path / "r.jpg").pixels
    assert pixels.shape == ((16, 32, 3) if orientation in (1, 3) else (32, 16, 3))
    assert pixels[expected_corner][0] > 0.9 and pixels[pixels.shape[0] // 2, pixels.shape[1] // 2][0] < 0.1


def test_gray_alpha_and_sixteen_bit_keep_their_form(tmp_path):
    gray16 = (np.arange(12).reshape(3, 4) * 5000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g.png"), gray16)
    loaded = read_image(tmp_path / "g.png")
    assert loaded.bit_depth == 16 and loaded.pixels.shape == (3, 4, 1)
    np.testing.assert_allclose(loaded.pixels[:, :, 0], gray16 / 65535.0, atol=1e-7)


def test_a_png_whose_chunks_overrun_the_file_is_refused_before_decoding(tmp_path):
    valid = cv2.imencode(".png", np.zeros((12, 10), np.uint16))[1].tobytes()
    assert image_io.png_chunks_fit(valid) and image_io.png_chunks_fit(b"BM not a png")
    assert not image_io.png_chunks_fit(valid[:-12])  # no IEND: truncated
    # An IDAT that declares 2 GB: OpenCV 5 spent 3-12 s on such a file before giving up.
    idat = valid.index(b"IDAT") - 4
    hostile = valid[:idat] + b"\x7f\xff\xff\xff" + valid[idat + 4:]
    assert not image_io.png_chunks_fit(hostile)
    (tmp_path / "hostile.png").write_bytes(hostile)
    with pytest.raises(ImageError, match="hostile.png: not a readable image .a corrupt or truncated PNG"):
        read_image(tmp_path / "hostile.png")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    import zlib

    return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")


def test_a_header_pillow_refuses_still_gives_the_size(tmp_path):
    """A 12000x12000 PNG whose zTXt chunk inflates past Pillow's MAX_TEXT_CHUNK: Pillow's header read fails, the
    size comes from the IHDR itself, and the file is refused before any decoding."""
    import zlib

    ihdr = (12000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    bomb = b"comment\0\0" + zlib.compress(b" " * (3 << 20), 9)
    data = (image_io.PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"zTXt", bomb)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 100)) + png_chunk(b"IEND", b""))
    (tmp_path / "bomb.png").write_bytes(data)
    with pytest.raises(ImageError, match="12000x12000 is too large"):
        read_image(tmp_path / "bomb.png", max_megapixels=1)


def test_a_jpeg_size_is_read_from_its_frame_header(tmp_path, monkeypatch):
    write_image(tmp_path / "a.jpg", smooth_image(40, 56))
    monkeypatch.setattr(image_io.Image, "open", lambda *args: (_ for _ in ()).throw(OSError("pillow refuses")))
    assert image_io.read_header(tmp_path / "a.jpg")[:2] == (40, 56)
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\0" * 20)  # no frame header
    assert image_io.read_header(tmp_path / "junk.jpg") is None
    with pytest.raises(ImageError, match="its header does not say its size"):
        read_image(tmp_path / "junk.jpg", max_megapixels=1)


def test_valid_files_of_kinds_not_supported_get_one_accurate_line(tmp_path, capfd):
    """A 5-channel TIFF (which Pillow and OpenCV refuse, OpenCV with a dozen lines of its own) and a 12-bit JPEG
    are valid files: the message says what is not supported, from the header, before any decoder runs."""
    import tifffile

    tifffile.imwrite(tmp_path / "five.tif", np.zeros((20, 24, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    with pytest.raises(ImageError, match=r"five.tif: 5-channel images are not supported \(gray, RGB or RGBA only\)$"):
        read_image(tmp_path / "five.tif", max_megapixels=1)
    write_image(tmp_path / "a.jpg", smooth_image(40, 56))
    data = bytearray((tmp_path / "a.jpg").read_bytes())
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    data[sof + 4] = 12  # the frame header's sample precision: a 12-bit JPEG
    (tmp_path / "twelve.jpg").write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"twelve.jpg: 12-bit JPEGs are not supported \(8 bits only\)$"):
        read_image(tmp_path / "twelve.jpg", max_megapixels=1)
    assert "error" not in capfd.readouterr().err.lower()
