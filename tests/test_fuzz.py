"""Random and mutated bytes of every file kind the readers take: each case ends in a clean error or a valid result.

Hypothesis mutates small valid files (flipped, inserted, deleted bytes, truncations, a declared size changed) or
makes random bytes, writes them under the format's extension and reads them as a run does (images with a header
limit, kernels validated, depth maps as depths at the image's size). ZSSR_FUZZ_EXAMPLES sets the
number of cases per file kind (CI: 40 x 9 kinds; `ZSSR_FUZZ_EXAMPLES=2000 python -m pytest -q tests/test_fuzz.py`
for a long run by hand).
"""

import io
import os
import time

import cv2
import numpy as np
import pytest
import scipy.io

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis (pip install -e '.[test]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.conftest import smooth_image  # noqa: E402
from zssr_tf.depth import DepthError, load_depth  # noqa: E402
from zssr_tf.image_io import ImageError, read_image  # noqa: E402
from zssr_tf.kernels import KernelError, load_kernel  # noqa: E402

EXAMPLES = int(os.environ.get("ZSSR_FUZZ_EXAMPLES", "40"))
SECONDS_PER_CASE = 10  # a bound against hangs (cases take milliseconds), not a speed target


def _image_bytes(extension: str) -> bytes:
    pixels = (smooth_image(12, 10) * 255).astype(np.uint8)
    ok, encoded = cv2.imencode(extension, pixels)
    assert ok
    return encoded.tobytes()


def _mat_bytes() -> bytes:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"Kernel": np.outer(np.hanning(7), np.hanning(7))})
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def read_image_case(path):
    image = read_image(path, max_megapixels=1).pixels  # larger headers are refused before decoding
    assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] in (1, 3, 4)
    assert np.all((image >= 0) & (image <= 1)) and image.shape[0] * image.shape[1] <= 1e6


def read_kernel_case(path):
    kernel = load_kernel(path)
    assert kernel.ndim == 2 and kernel.size and np.all(np.isfinite(kernel))


def read_depth_case(path):
    depth = load_depth(path, "depth", (12, 10))  # the raw values as a run takes them, at the image's size
    assert depth.shape == (12, 10) and np.all(np.isnan(depth) | (depth > 0))  # NaN: unknown


KERNEL = np.outer(np.hanning(7), np.hanning(7))
# File kind -> (extension, a valid file of it, the reading a run does with its checks, the errors it may raise).
KINDS = {
    "png": (".png", _image_bytes(".png"), read_image_case, ImageError),
    "jpeg": (".jpg", _image_bytes(".jpg"), read_image_case, ImageError),
    "tiff": (".tif", _image_bytes(".tif"), read_image_case, ImageError),
    "webp": (".webp", _image_bytes(".webp"), read_image_case, ImageError),
    "bmp": (".bmp", _image_bytes(".bmp"), read_image_case, ImageError),
    "kernel_mat": (".mat", _mat_bytes(), read_kernel_case, KernelError),
    "kernel_npy": (".npy", _npy_bytes(KERNEL), read_kernel_case, KernelError),
    "depth_npy": (".npy", _npy_bytes(smooth_image(12, 10, channels=1)[:, :, 0]), read_depth_case,
                  DepthError),
    "depth_png": (".png", cv2.imencode(".png", (smooth_image(12, 10, 1) * 65535).astype(np.uint16))[1].tobytes(),
                  read_depth_case, DepthError),
}


@st.composite
def mutated(draw, valid: bytes) -> bytes:
    """Random bytes, or `valid` with a few edits (the bytes a damaged or hostile file has)."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(min_size=1, max_size=256))
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "big"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if edit == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif edit == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif edit == "delete" and data:
            del data[position:position + draw(st.integers(1, 16))]
        elif edit == "truncate":
            del data[max(position, 1):]
        elif edit == "big" and len(data) >= position + 4:  # a size field (wherever it is) made huge
            data[position:position + 4] = b"\x7f\xff\xff\xff"
    return bytes(data) or b"\0"


def _check(kind: str, tmp_path_factory, data: bytes) -> None:
    extension, _, reader, errors = KINDS[kind]
    path = tmp_path_factory.mktemp("fuzz") / f"case{extension}"
    path.write_bytes(data)
    start = time.perf_counter()
    try:
        reader(path)  # a valid result passes the reader's own asserts
    except errors as e:
        message = str(e)
        assert message and "\n" not in message, repr(message)  # one line
    finally:
        assert time.perf_counter() - start < SECONDS_PER_CASE


@pytest.mark.parametrize("kind", [pytest.param(kind, marks=pytest.mark.fault(
    f"random and mutated bytes of {kind} files",
    f"each a one-line error or a valid result within {SECONDS_PER_CASE} s"))
    for kind in sorted(KINDS)])
def test_mutated_files_give_a_clean_error_or_a_valid_result(kind, tmp_path_factory, record_property):
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(data=mutated(KINDS[kind][1]))
    def case(data):
        _check(kind, tmp_path_factory, data)

    case()
    record_property("observed", f"{EXAMPLES} generated cases, all clean")
