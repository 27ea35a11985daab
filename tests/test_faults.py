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
import tensorflow as tf

from tests.conftest import smooth_image
from tests.test_cli import ROOT, TINY, zssr
from zssr_tf import ZSSR, Config, engine, image_io, interrupts
from zssr_tf.image_io import ImageError, read_header, read_image, write_image
from zssr_tf.kernels import KernelError


def png_header_only(path, width, height, bit_depth=8, color_type=2):
    """A PNG that declares width x height but holds (almost) no pixel data: kilobytes that claim gigapixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
                     + chunk(b"IEND", b""))


@pytest.mark.fault("PNGs declaring 60000x60000 (437 KB) and 1-bit 20000x20000 (49 KB) pixels",
                   "exit 1, one line, refused from the header within seconds, nothing written")
def test_a_huge_header_is_refused_before_decoding_and_other_decoder_errors_are_one_line(tmp_path, capsys,
                                                                                       record_property):
    png_header_only(tmp_path / "huge.png", 60000, 60000)
    png_header_only(tmp_path / "bits.png", 20000, 20000, bit_depth=1, color_type=0)  # the 49 KB 1-bit case
    for name in ("huge.png", "bits.png"):
        start = time.perf_counter()
        status, _, err = zssr(capsys, f"--input={tmp_path / name}", f"--output_dir={tmp_path / 'out'}", *TINY)
        assert time.perf_counter() - start < 30  # no minute of decoding first (a bound, not a speed target)
        assert status == 1 and err.count("\n") == 1
        assert ("is too large: over the 16 megapixels accepted (its output would be over "
                "max_output_megapixels=64)") in err
        seconds = time.perf_counter() - start
        record_property("observed", f"exit {status} in {seconds:.1f} s: {err.strip().replace(str(tmp_path), 'DIR')}")
    assert not os.path.exists(tmp_path / "out")  # nothing written
    # Over OpenCV's own limit with ours raised: OpenCV's error, as our one line.
    with pytest.raises(ImageError, match=r"huge.png: not a readable image \(.*CV_IO_MAX_IMAGE_PIXELS"):
        read_image(tmp_path / "huge.png", max_megapixels=None)


@pytest.mark.fault("a folder with a 60000x60000 header, a corrupt PNG and a good image",
                   "error rows for the two bad ones in results.csv, the good one done, exit 1")
def test_in_a_folder_a_bad_file_is_one_error_row_and_the_rest_runs(tmp_path, capsys, record_property):
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
    record_property("observed", f"exit {status}; results.csv: " + ", ".join(
        f"{name} {row['status'].replace(str(tmp_path), 'DIR')[:60]}" for name, row in rows.items()))


@pytest.mark.fault("a 3-frame TIFF", "its first frame is used, with a warning")
def test_a_multi_frame_file_uses_its_first_frame_with_a_warning(tmp_path, caplog, record_property):
    frames = [(smooth_image(20, 22, seed=i) * 255).astype(np.uint8) for i in range(3)]
    assert cv2.imwritemulti(str(tmp_path / "stack.tiff"), frames)
    assert read_header(tmp_path / "stack.tiff")[:3] == (20, 22, 3)
    caplog.set_level("WARNING")
    image = read_image(tmp_path / "stack.tiff")
    assert np.array_equal(np.round(image.pixels * 255).astype(np.uint8), frames[0][:, :, ::-1])  # BGR on disk
    assert "stack.tiff: 3 frames; only the first is used" in caplog.text
    record_property("observed", "frame 0's pixels; warning: " + caplog.records[-1].getMessage().replace(
        str(tmp_path), "DIR"))


@pytest.mark.fault("ground truths 1 row short, 1 row long at x2, twice the size, for a 32x36 output",
                   "1 row short / 2x: exit 1, one line, before training; up to ceil(scale) - 1 more: accepted")
def test_a_ground_truth_of_another_size_is_refused_before_training(tmp_path, capsys, tiny_conf, record_property):
    write_image(tmp_path / "in.png", smooth_image(16, 18))
    observed = []
    for shape, ok in (((32, 36), True), ((33, 37), True), ((34, 36), False), ((64, 72), False), ((31, 36), False)):
        write_image(tmp_path / "gt.png", smooth_image(*shape))
        status, _, err = zssr(capsys, f"--input={tmp_path / 'in.png'}", f"--ground_truth={tmp_path / 'gt.png'}",
                              f"--output_dir={tmp_path / 'out'}", *TINY, "--max_iters=1", "--overwrite")
        assert (status == 0) == ok, (shape, err)
        if not ok:
            assert err.count("\n") == 1 and ("is larger than the output 32x36" in err or "is smaller" in err)
        observed.append(f"{shape[0]}x{shape[1]}: exit {status}")
    record_property("observed", "; ".join(observed))
    with pytest.raises(ValueError, match="ground truth 64x72 is larger than the output 32x36"):
        ZSSR(smooth_image(16, 18), tiny_conf, ground_truth=smooth_image(64, 72))  # arrays too


@pytest.mark.fault("a 17x17 kernel for a 12x14 image", "refused with one line before training")
def test_a_kernel_larger_than_the_image_is_refused(tiny_conf, record_property):
    kernel = np.outer(np.hanning(17), np.hanning(17))
    with pytest.raises(KernelError, match=r"a \d+x\d+ kernel \(once centred\) is larger than the 12x14 input") as e:
        ZSSR(smooth_image(12, 14), tiny_conf, kernels=[kernel])
    record_property("observed", f"KernelError: {e.value}")
    ZSSR(smooth_image(24, 24), tiny_conf, kernels=[kernel])  # fits


@pytest.mark.fault("a flat image (the network learns nothing)",
                   "restarts of the stuck network, none in the stage's last min_iters iterations")
def test_no_restart_of_a_flat_image_in_the_last_iterations(tiny_conf, record_property):
    """On a flat image the network learns nothing, so it is restarted; never when fewer than min_iters are left."""
    conf = tiny_conf.replace(max_iters=60, min_iters=10, learning_rate_policy_check_every=10)
    trainer = ZSSR(np.full((20, 22, 3), 0.5, np.float32), conf)
    trainer.run()
    restarts = trainer.history[-1].restarts
    assert restarts and all(r <= conf.zssr.max_iters - 1 - conf.zssr.min_iters for r in restarts), restarts
    record_property("observed", f"restarts at iterations {restarts} of 60 (min_iters 10)")


def test_pieces_of_a_chunk_give_the_same_result(tiny_conf, monkeypatch):
    """The train step runs a chunk in pieces of about CHUNK_SECONDS (for signals): the same steps, the same result."""
    image = smooth_image(20, 22)
    monkeypatch.setattr(engine, "CHUNK_SECONDS", 1e-9)  # one step per call
    one_by_one = ZSSR(image, tiny_conf).run()
    monkeypatch.setattr(engine, "CHUNK_SECONDS", 1e9)  # a whole chunk per call
    whole = ZSSR(image, tiny_conf).run()
    np.testing.assert_array_equal(one_by_one, whole)


@pytest.mark.parametrize("signum, status", [
    pytest.param(signal.SIGINT, 130, id="SIGINT", marks=pytest.mark.fault(
        "Ctrl-C (SIGINT) while training", "exit 130 within about a second, one line, no temporary files")),
    pytest.param(signal.SIGTERM, 143, id="SIGTERM", marks=pytest.mark.fault(
        "SIGTERM while training", "exit 143 within about a second, one line, no temporary files"))])
def test_ctrl_c_and_sigterm_end_with_one_line_soon_and_no_temporary_files(tmp_path, signum, status,
                                                                          record_property):
    write_image(tmp_path / "in.png", smooth_image(40, 44))
    args = [f"--input={tmp_path / 'in.png'}", f"--output_dir={tmp_path / 'out'}", "--width=16", "--depth=4",
            "--max_iters=100000", "--min_iters=100000", "--noprogress", "--display_every=10"]
    process = subprocess.Popen([sys.executable, "-m", "zssr_tf", *args], stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    for line in process.stderr:  # training has started
        if "iteration 10:" in line:
            break
    process.send_signal(signum)
    sent = time.perf_counter()
    rest = process.stderr.read()
    assert process.wait(timeout=60) == status
    record_property("observed", f"exit {process.returncode} after {time.perf_counter() - sent:.2f} s: "
                    f"{rest.strip().splitlines()[-1]}")
    lines = rest.strip().splitlines()
    assert lines[-1].startswith("zssr: interrupted at iteration ") and "of 100000 of in x2x2" in lines[-1]
    assert "Traceback" not in rest
    assert [name for name in os.listdir(tmp_path / "out") if name.startswith(".tmp_")] == []


@pytest.mark.fault("kill -9 of a folder run in its second image, then the same command again",
                   "no temporary or truncated file; the rerun keeps what its record says was done, does the rest, "
                   "exit 0, results.csv complete")
def test_a_killed_folder_run_is_completed_by_running_it_again(tmp_path, capsys, record_property):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate("abc"):
        write_image(folder / f"{name}.png", smooth_image(20, 22, seed=i))
    # Long enough per image (no learning-rate drop ends a stage early) that the kill lands in the second image.
    args = [f"--input={folder}", f"--output_dir={tmp_path / 'out'}", *TINY, "--max_iters=800", "--min_iters=800",
            "--noprogress"]
    process = subprocess.Popen([sys.executable, "-m", "zssr_tf", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    for line in process.stderr:
        if "image 2 of 3" in line:  # a is written, b has started
            break
    process.kill()
    process.wait(timeout=60)
    left = sorted(os.listdir(tmp_path / "out"))
    assert not [name for name in left if name.startswith(".tmp_")], left
    for name in left:
        if name.endswith(".png"):
            read_image(tmp_path / "out" / name)  # every output there is whole
    status, out, err = zssr(capsys, *args)
    with open(tmp_path / "out" / "results.csv") as f:
        rows = {row["name"]: row["status"] for row in csv.DictReader(f)}
    assert status == 0 and rows == {"a": "done", "b": "done", "c": "done"}, (rows, err)
    assert "a: done by an earlier run, kept" in out
    assert all(read_image(tmp_path / "out" / f"{name}_zssr_X2.00X2.00.png").pixels.shape == (40, 44, 3)
               for name in "abc")
    record_property("observed", f"killed with {len(left)} files, none temporary; rerun exit {status}, results.csv "
                    + ", ".join(f"{name} {value}" for name, value in sorted(rows.items())))


@pytest.mark.fault("Ctrl-C during the write of an output", "no output and no temporary file")
def test_an_interrupted_atomic_write_leaves_no_temporary_file(tmp_path, monkeypatch, record_property):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(image_io.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        image_io.write_bytes_atomically(tmp_path / "out.png", b"data")
    assert os.listdir(tmp_path) == []
    record_property("observed", "KeyboardInterrupt passed on; the folder is empty")


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


class PoisonedZSSR(ZSSR):
    """ZSSR whose weights turn NaN after the loop's sync at each of `poison_at` (a diverged network, injected)."""

    poison_at: tuple[int, ...] = ()

    def after_sync(self) -> bool:
        stop = super().after_sync()
        if self.iter in self.poison_at:
            kernel = self.model.get_layer("filter_0").kernel
            kernel.assign(np.full(kernel.shape, np.nan, np.float32))
        return stop


@pytest.mark.fault("NaN weights injected at iteration 19 (a diverged stage)",
                   "a warning naming the iteration and learning rate; back to the last good weights, on at a tenth "
                   "of the learning rate; a finite output")
def test_a_diverged_stage_goes_back_to_its_last_good_weights_at_a_lower_learning_rate(tiny_conf, caplog,
                                                                                     record_property):
    conf = tiny_conf.replace(max_iters=60, min_iters=100)  # min_iters: no drop of the policy's own; syncs 19, 20
    trainer = PoisonedZSSR(smooth_image(20, 22), conf)
    trainer.poison_at = (19,)
    good = {}
    keep = trainer._keep_if_finite

    def keeping(loss):  # the weights the guard keeps at the sync of iteration 19, before the poison
        kept = keep(loss)
        if trainer.iter == 19:
            good.update(weights=[v.numpy().copy() for v in trainer.model.trainable_variables])
        return kept

    trainer._keep_if_finite = keeping
    restored = []
    restore = trainer._restore_good_state
    trainer._restore_good_state = lambda: (restore(), restored.append(
        [v.numpy().copy() for v in trainer.model.trainable_variables]))
    output = trainer.run()
    h = trainer.history[-1]
    assert h.divergences == [20] and h.iterations == 60 and np.all(np.isfinite(output))
    assert all(np.array_equal(a, b) for a, b in zip(good["weights"], restored[0]))
    assert trainer.learning_rate == pytest.approx(conf.zssr.learning_rate / 10) and h.learning_rate_change_iters == [20]
    assert ("x2 iteration 20: the training diverged (the weights are not finite, learning rate 1.0e-03); back to the "
            "weights of "
            "iteration 19, going on at learning rate 1.0e-04 (retry 1 of 2)") in caplog.text
    # It trains on after the divergence: the weights moved from the restored ones.
    assert not all(np.array_equal(a, v.numpy()) for a, v in zip(restored[0], trainer.model.trainable_variables))
    record_property("observed", caplog.records[[r.levelname for r in caplog.records].index("WARNING")].getMessage()
                    + f"; output finite, {h.iterations} iterations")


@pytest.mark.fault("NaN weights injected twice with --divergence_retries=1",
                   "one retry, then the stage ends with the last good weights; a finite output")
def test_a_stage_that_keeps_diverging_ends_with_its_last_good_weights(tiny_conf, caplog, record_property):
    conf = tiny_conf.replace(max_iters=80, min_iters=100, divergence_retries=1)
    trainer = PoisonedZSSR(smooth_image(20, 22), conf)
    trainer.poison_at = (9, 29)  # diverges at the syncs of 10 and 30: one retry, then the end
    output = trainer.run()
    h = trainer.history[-1]
    assert h.divergences == [10, 30] and h.iterations == 31 and np.all(np.isfinite(output))
    assert "iteration 30: the training diverged" in caplog.text and "which end the stage" in caplog.text
    # The output is the restored network's final test.
    np.testing.assert_array_equal(output, trainer.final_test())
    record_property("observed", f"divergences at {h.divergences}, stage ended at iteration {h.iterations} of 80, "
                    "output finite and the restored weights' own")


@pytest.mark.fault("NaN weights in ZSRGAN (a method with a fixed schedule, as DGDML-SR)",
                   "the stage ends with the last good weights; a finite output")
def test_divergence_of_a_method_with_a_fixed_schedule_ends_the_stage(caplog, record_property):
    from tests.test_zsrgan import TINY_GAN
    from zssr_tf.methods.zsrgan import ZSRGAN

    class PoisonedZSRGAN(ZSRGAN):
        def after_sync(self):
            stop = super().after_sync()
            if self.iter == 3:
                kernel = self.networks["generator"].get_layer("filter_0").kernel
                kernel.assign(np.full(kernel.shape, np.nan, np.float32))
            return stop

    trainer = PoisonedZSRGAN(smooth_image(64, 66), Config().replace(**TINY_GAN))
    output = trainer.run()
    h = trainer.history[-1]
    assert h.divergences == [4] and h.iterations == 5 and np.all(np.isfinite(output))
    warning = next(r.getMessage() for r in caplog.records if "diverged" in r.getMessage())
    assert warning.endswith("back to the weights of iteration 3, which end the stage")
    record_property("observed", f"{warning}; {h.iterations} of 12 iterations, output finite")


class NaNLossZSSR(ZSSR):
    """ZSSR whose train step reports a NaN loss (its weights train as usual) where `nan_loss(optimizer step)`."""

    nan_loss = staticmethod(lambda step: tf.zeros_like(step, tf.bool))

    def train_step(self, *batch):
        scalars = super().train_step(*batch)
        step = self.optimizers["generator"].optimizer.iterations
        return {**scalars, "loss": tf.where(self.nan_loss(step), tf.constant(np.nan), scalars["loss"])}


@pytest.mark.fault("a NaN loss at one check with finite weights, then at every check from iteration 20",
                   "one: no divergence (that step was skipped); every check: a divergence at the second in a row")
def test_a_non_finite_loss_is_a_divergence_at_two_checks_in_a_row(tiny_conf, caplog, record_property):
    conf = tiny_conf.replace(max_iters=60, min_iters=100)
    once = NaNLossZSSR(smooth_image(20, 22), conf)
    once.nan_loss = lambda step: tf.equal(step, 21)  # the step of iteration 20, the last before its sync
    once.run()
    assert once.history[-1].divergences == [] and once.history[-1].iterations == 60
    always = NaNLossZSSR(smooth_image(20, 22), conf)
    always.nan_loss = lambda step: step >= 21
    output = always.run()
    h = always.history[-1]
    assert h.divergences[0] == always.next_sync_iteration(21) and len(h.divergences) == 3
    assert np.all(np.isfinite(output))
    assert "the loss is nan at two checks in a row" in caplog.text
    record_property("observed", f"once: no divergence, 60 iterations; always: divergences at {h.divergences} "
                    "(2 retries, then the end), output finite")
