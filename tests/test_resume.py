"""`checkpoint_every`: a run stopped anywhere resumes from its last checkpoint to an uninterrupted run's output."""

import logging
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import smooth_image
from tests.test_cli import ROOT, TINY, zssr_subprocess
from tests.test_dgdml import TINY_DG, noise_image, ramp
from tests.test_zsrgan import TINY_GAN
from zssr_tf import DGDML, ZSRGAN, ZSSR, Config, interrupts
from zssr_tf.image_io import read_image, write_image


def stopping_at(monkeypatch, iterations):
    """`interrupts.check` raising once the loop has run `iterations` steps of the current stage (a Ctrl-C there)."""
    calls = {"steps": 0}
    original = interrupts.check

    def check(where):
        done = int(where.split()[1])
        if done >= iterations and not calls["steps"]:
            calls["steps"] = done
            raise interrupts.Interrupted(f"interrupted at {where}")
        original(where)

    monkeypatch.setattr(interrupts, "check", check)
    return calls


def stop_in_stage(monkeypatch, trainer_class, stage, iterations):
    """The trainer's run interrupted once its stage `stage` has run `iterations` steps."""
    original_train = trainer_class.train_coroutine

    def train_coroutine(self):
        if self.stage == stage:
            stopping_at(monkeypatch, iterations)
        return original_train(self)

    monkeypatch.setattr(trainer_class, "train_coroutine", train_coroutine)


@pytest.mark.parametrize("stop_stage", [0, 1])
def test_a_resumed_run_ends_as_an_uninterrupted_one(tmp_path, tiny_conf, monkeypatch, caplog, stop_stage):
    image = smooth_image(20, 22)
    # Two gradual stages, learning-rate drops and quick tests on the way: all of it must go on as it was.
    conf = tiny_conf.replace(scale_factors="1.5,2", back_projection_iters="2,2", max_iters=60, progress=False,
                             checkpoint_every=15)
    reference = ZSSR(image, conf)
    expected = reference.run()
    assert sum(len(h.learning_rate_change_iters) for h in reference.history) >= 1

    first = ZSSR(image, conf)
    first.set_resume_dir(tmp_path / "resume")
    # In the second stage, the first one's output comes from disk.
    stop_in_stage(monkeypatch, ZSSR, stop_stage, 40 if stop_stage == 0 else 25)
    with pytest.raises(interrupts.Interrupted):
        first.run()
    assert os.path.exists(tmp_path / "resume" / "checkpoint" / "state.json")
    monkeypatch.undo()

    resumed = ZSSR(image, conf)
    resumed.set_resume_dir(tmp_path / "resume")
    caplog.clear()
    caplog.set_level(logging.INFO, logger="absl")
    output = resumed.run()
    resumed_at = re.search(r"resuming from its checkpoint at iteration (\d+) of stage (\d)", caplog.text)
    assert resumed_at and int(resumed_at.group(2)) == stop_stage + 1 and 15 <= int(resumed_at.group(1)) < 40
    np.testing.assert_array_equal(output, expected)
    for got, want in zip(resumed.history, reference.history):
        assert (got.iterations, got.learning_rate_change_iters, got.test_steps, got.reconstruction_mse, got.losses) \
            == (want.iterations, want.learning_rate_change_iters, want.test_steps, want.reconstruction_mse,
                want.losses)


def test_a_checkpoint_of_another_configuration_is_not_resumed(tmp_path, tiny_conf, caplog):
    image = smooth_image(20, 22)
    conf = tiny_conf.replace(progress=False, checkpoint_every=10)
    first = ZSSR(image, conf)
    first.set_resume_dir(tmp_path / "resume")
    first.run()  # leaves its checkpoints (app.run removes them when the image is done)
    other = ZSSR(image, conf.replace(seed=1))
    other.set_resume_dir(tmp_path / "resume")
    expected = ZSSR(image, conf.replace(seed=1, checkpoint_every=0)).run()
    np.testing.assert_array_equal(other.run(), expected)
    assert "written for another configuration or image" in caplog.text


def test_zsrgan_resumes_too(tmp_path, monkeypatch, caplog):
    conf = Config().replace(**{**TINY_GAN, "zsrgan_max_iters": 20}, scale_factors="1.5,2", checkpoint_every=6,
                            progress=False)
    image = smooth_image(64, 64)
    reference = ZSRGAN(image, conf)
    expected = reference.run()
    first = ZSRGAN(image, conf)
    first.set_resume_dir(tmp_path / "resume")
    stop_in_stage(monkeypatch, ZSRGAN, 1, 14)
    with pytest.raises(interrupts.Interrupted):
        first.run()
    monkeypatch.undo()
    resumed = ZSRGAN(image, conf)
    resumed.set_resume_dir(tmp_path / "resume")
    caplog.set_level(logging.INFO, logger="absl")
    np.testing.assert_array_equal(resumed.run(), expected)
    resumed_at = re.search(r"resuming from its checkpoint at iteration (\d+) of stage 2", caplog.text)
    assert resumed_at and 6 <= int(resumed_at.group(1)) < 14
    assert [(h.losses, h.scalars, h.true_mse, h.reconstruction_mse) for h in resumed.history] == \
        [(h.losses, h.scalars, h.true_mse, h.reconstruction_mse) for h in reference.history]


@pytest.mark.parametrize("wgan", ["clip", "gp"])
def test_dgdml_resumes_too(tmp_path, monkeypatch, caplog, wgan):
    # Three epochs with a decay after each, resumed mid-epoch: the run goes on with the epochs' shuffles, the
    # optimizers' schedule and (gp) the penalty's random draws. Scalars at every step, so the steps after the
    # checkpoint are compared one by one.
    conf = Config().replace(**{**TINY_DG, "dgdml_epochs": 3, "dgdml_learning_rate_decay_epochs": 1,
                               "dgdml_wgan": wgan, "display_every": 1}, checkpoint_every=4)
    image, depth = noise_image(64, 64), ramp(64, 64)
    reference = DGDML(image, conf, depth=depth)
    expected = reference.run()
    assert reference.max_iters >= 9 and reference.history[0].learning_rate_change_iters
    first = DGDML(image, conf, depth=depth)
    first.set_resume_dir(tmp_path / "resume")
    stop_in_stage(monkeypatch, DGDML, 0, reference.max_iters - 4)
    with pytest.raises(interrupts.Interrupted):
        first.run()
    monkeypatch.undo()
    resumed = DGDML(image, conf, depth=depth)
    resumed.set_resume_dir(tmp_path / "resume")
    caplog.set_level(logging.INFO, logger="absl")
    output = resumed.run()
    resumed_at = re.search(r"resuming from its checkpoint at iteration (\d+) of stage 1", caplog.text)
    assert resumed_at and int(resumed_at.group(1)) <= reference.max_iters - 4
    assert int(resumed_at.group(1)) % reference.steps_per_epoch  # in the middle of an epoch
    got, want = resumed.history[0], reference.history[0]
    assert got.learning_rate_change_iters == want.learning_rate_change_iters and got.scalars.keys() == \
        want.scalars.keys()
    if wgan == "clip":
        np.testing.assert_array_equal(output, expected)
        assert (got.scalars, got.reconstruction_mse) == (want.scalars, want.reconstruction_mse)
    else:
        # WGAN-GP runs are not bit-reproducible on CPU: two uninterrupted ones in one process were seen to differ
        # by a float32 rounding at their fifth step (clip runs never). A resumed run matches to that.
        np.testing.assert_allclose(output, expected, atol=1e-5)
        for name in want.scalars:
            np.testing.assert_allclose(got.scalars[name], want.scalars[name], rtol=1e-5, atol=1e-7)
    # Another depth map chooses other patches: another run, whose checkpoint is not resumed.
    caplog.clear()
    other = DGDML(image, conf, depth=depth[:, ::-1])
    other.set_resume_dir(tmp_path / "resume")
    other.run()
    assert "written for another configuration or image" in caplog.text


@pytest.mark.fault("kill -9 of a single-image run with --checkpoint_every after a checkpoint, then the same command",
                   "the rerun resumes from the checkpoint; its output equals an uninterrupted run's; the resume "
                   "folder is removed")
def test_a_killed_run_resumes_to_the_uninterrupted_output(tmp_path, record_property):
    image = tmp_path / "a.png"
    write_image(image, smooth_image(20, 22))
    args = [f"--input={image}", *TINY, "--max_iters=400", "--min_iters=400", "--checkpoint_every=100",
            "--noprogress"]
    whole = zssr_subprocess(*args, f"--output_dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr
    process = subprocess.Popen([sys.executable, "-m", "zssr_tf", *args, f"--output_dir={tmp_path / 'out'}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    for line in process.stderr:
        if "iteration 200: checkpoint written" in line:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert os.path.isdir(tmp_path / "out" / "a_zssr_resume")
    rerun = zssr_subprocess(*args, f"--output_dir={tmp_path / 'out'}")
    status, err = rerun.returncode, rerun.stderr
    resumed_at = re.search(r"resuming from its checkpoint at iteration (\d+) of stage 1", err)
    assert status == 0 and resumed_at and int(resumed_at.group(1)) >= 201, err
    name = "a_zssr_X2.00X2.00.png"
    np.testing.assert_array_equal(read_image(tmp_path / "out" / name).pixels,
                                  read_image(tmp_path / "whole" / name).pixels)
    assert not os.path.exists(tmp_path / "out" / "a_zssr_resume")
    record_property("observed", f"killed after the checkpoint at iteration 200; rerun exit {status}, resumed at "
                    f"iteration {resumed_at.group(1)}, output equal to the uninterrupted run's, resume folder removed")
