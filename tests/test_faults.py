"""Ways a run goes wrong end cleanly: huge or odd files refused from their headers, sizes that do not fit, signals."""

import csv
import os
import signal
import struct
import subprocess
import sys
import time
import zlib

import cv2
import numpy as np
import pytest

from tests.conftest import smooth_image
from tests.test_cli import ROOT, TINY, zssr
from zssr_tf import ZSSR, engine, image_io, interrupts
from zssr_tf.image_io import ImageError, read_header, read_image, write_image
from zssr_tf.kernels import KernelError


def png_header_only(path, width, height, bit_depth=8, color_type=2):
    """A PNG that declares width x height but holds (almost) no pixel data: kilobytes that claim gigapixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
                     + chunk(b"IEND", b""))


def test_a_huge_header_is_refused_before_decoding_and_other_decoder_errors_are_one_line(tmp_path, capsys):
    png_header_only(tmp_path / "huge.png", 60000, 60000)
    png_header_only(tmp_path / "bits.png", 20000, 20000, bit_depth=1, color_type=0)  # the 49 KB 1-bit case
    for name in ("huge.png", "bits.png"):
        start = time.perf_counter()
        status, _, err = zssr(capsys, f"--input={tmp_path / name}", f"--output_dir={tmp_path / 'out'}", *TINY)
        assert time.perf_counter() - start < 30  # no minute of decoding first (a bound, not a speed target)
        assert status == 1 and err.count("\n") == 1
        assert "is too large: over the 4 megapixels accepted (its output would be over max_output_megapixels=16)" in err
    assert not os.path.exists(tmp_path / "out")  # nothing written
    # Over OpenCV's own limit with ours raised: OpenCV's error, as our one line.
    with pytest.raises(ImageError, match=r"huge.png: not a readable image \(.*CV_IO_MAX_IMAGE_PIXELS"):
        read_image(tmp_path / "huge.png", max_megapixels=None)


def test_in_a_folder_a_bad_file_is_one_error_row_and_the_rest_runs(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    png_header_only(folder / "a_huge.png", 60000, 60000)
    (folder / "b_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    write_image(folder / "c_good.png", smooth_image(16, 18))
    status, out, err = zssr(capsys, f"--input={folder}", f"--output_dir={tmp_path / 'out'}", *TINY)
    assert status == 1 and "2 of 3 images failed (a_huge, b_corrupt)" in err and "Traceback" not in err
    with open(tmp_path / "out" / "results.csv") as f:
        rows = {row["name"]: row for row in csv.DictReader(f)}
    assert rows["a_huge"]["status"].startswith("error: ") and "60000x60000 is too large" in rows["a_huge"]["status"]
    assert rows["b_corrupt"]["status"].startswith("error: ") and rows["c_good"]["status"] == "done"
    assert "c_good: wrote" in out


def test_a_multi_frame_file_uses_its_first_frame_with_a_warning(tmp_path, caplog):
    frames = [(smooth_image(20, 22, seed=i) * 255).astype(np.uint8) for i in range(3)]
    assert cv2.imwritemulti(str(tmp_path / "stack.tiff"), frames)
    assert read_header(tmp_path / "stack.tiff") == (20, 22, 3)
    caplog.set_level("WARNING")
    image = read_image(tmp_path / "stack.tiff")
    assert np.array_equal(np.round(image.pixels * 255).astype(np.uint8), frames[0][:, :, ::-1])  # BGR on disk
    assert "stack.tiff: 3 frames; only the first is used" in caplog.text


def test_a_ground_truth_of_another_size_is_refused_before_training(tmp_path, capsys, tiny_conf):
    write_image(tmp_path / "in.png", smooth_image(16, 18))
    for shape, ok in (((32, 36), True), ((33, 37), True), ((34, 36), False), ((64, 72), False), ((31, 36), False)):
        write_image(tmp_path / "gt.png", smooth_image(*shape))
        status, _, err = zssr(capsys, f"--input={tmp_path / 'in.png'}", f"--ground_truth={tmp_path / 'gt.png'}",
                              f"--output_dir={tmp_path / 'out'}", *TINY, "--max_iters=1", "--overwrite")
        assert (status == 0) == ok, (shape, err)
        if not ok:
            assert err.count("\n") == 1 and ("is larger than the output 32x36" in err or "is smaller" in err)
    with pytest.raises(ValueError, match="ground truth 64x72 is larger than the output 32x36"):
        ZSSR(smooth_image(16, 18), tiny_conf, ground_truth=smooth_image(64, 72))  # arrays too


def test_a_kernel_larger_than_the_image_is_refused(tiny_conf):
    kernel = np.outer(np.hanning(17), np.hanning(17))
    with pytest.raises(KernelError, match=r"a \d+x\d+ kernel \(once centred\) is larger than the 12x14 input"):
        ZSSR(smooth_image(12, 14), tiny_conf, kernels=[kernel])
    ZSSR(smooth_image(24, 24), tiny_conf, kernels=[kernel])  # fits


def test_no_restart_of_a_flat_image_in_the_last_iterations(tiny_conf):
    """On a flat image the network learns nothing, so it is restarted; never when fewer than min_iters are left."""
    conf = tiny_conf.replace(max_iters=60, min_iters=10, learning_rate_policy_check_every=10)
    trainer = ZSSR(np.full((20, 22, 3), 0.5, np.float32), conf)
    trainer.run()
    restarts = trainer.history[-1].restarts
    assert restarts and all(r <= conf.zssr.max_iters - 1 - conf.zssr.min_iters for r in restarts), restarts


def test_pieces_of_a_chunk_give_the_same_result(tiny_conf, monkeypatch):
    """The train step runs a chunk in pieces of about CHUNK_SECONDS (for signals): the same steps, the same result."""
    image = smooth_image(20, 22)
    monkeypatch.setattr(engine, "CHUNK_SECONDS", 1e-9)  # one step per call
    one_by_one = ZSSR(image, tiny_conf).run()
    monkeypatch.setattr(engine, "CHUNK_SECONDS", 1e9)  # a whole chunk per call
    whole = ZSSR(image, tiny_conf).run()
    np.testing.assert_array_equal(one_by_one, whole)


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_end_with_one_line_soon_and_no_temporary_files(tmp_path, signum, status):
    write_image(tmp_path / "in.png", smooth_image(40, 44))
    args = [f"--input={tmp_path / 'in.png'}", f"--output_dir={tmp_path / 'out'}", "--width=16", "--depth=4",
            "--max_iters=100000", "--min_iters=100000", "--noprogress", "--display_every=10"]
    process = subprocess.Popen([sys.executable, "-m", "zssr_tf", *args], stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    for line in process.stderr:  # training has started
        if "iteration 10:" in line:
            break
    process.send_signal(signum)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == status
    lines = rest.strip().splitlines()
    assert lines[-1].startswith("zssr: interrupted at iteration ") and "of 100000 of in x2x2" in lines[-1]
    assert "Traceback" not in rest
    assert [name for name in os.listdir(tmp_path / "out") if name.startswith(".tmp_")] == []


def test_an_interrupted_atomic_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(image_io.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        image_io.write_bytes_atomically(tmp_path / "out.png", b"data")
    assert os.listdir(tmp_path) == []


def test_a_signal_in_the_train_loop_waits_for_its_next_safe_point():
    with interrupts.safe_points():
        interrupts.request_stop(signal.SIGTERM)  # recorded, not raised where it lands
        with pytest.raises(interrupts.Interrupted, match="interrupted at iteration 7") as stopped:
            interrupts.check("iteration 7")
        assert stopped.value.signum == signal.SIGTERM
        interrupts.check("iteration 8")  # once only
        interrupts.request_stop(signal.SIGINT)
        with pytest.raises(interrupts.Interrupted):
            interrupts.request_stop(signal.SIGINT)  # a second signal: at once
    interrupts.check("after")  # nothing pending outside the loop
    with pytest.raises(interrupts.Interrupted) as stopped:
        interrupts.request_stop(signal.SIGINT)  # outside the loop: at once
    assert stopped.value.signum == signal.SIGINT and isinstance(stopped.value, KeyboardInterrupt)
