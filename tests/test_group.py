"""Several images' networks in one step (`zssr_tf.group`): each image's run is what it is alone."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import test_faults as faults
from tests.conftest import smooth_image
from zssr_tf import app, group, interrupts
from zssr_tf.image_io import write_image
from zssr_tf.methods.zssr import ZSSR


def _same_run(together: ZSSR, alone: ZSSR, out_together: np.ndarray, out_alone: np.ndarray) -> None:
    np.testing.assert_allclose(out_together, out_alone, atol=1e-4)
    for a, b in zip(together.history, alone.history):
        assert a.iterations == b.iterations
        assert a.learning_rate_change_iters == b.learning_rate_change_iters
        assert a.restarts == b.restarts and a.divergences == b.divergences
        np.testing.assert_allclose(a.reconstruction_mse, b.reconstruction_mse, rtol=1e-4)
        np.testing.assert_allclose(a.losses, b.losses, rtol=1e-4)


def test_grouped_conv_is_each_images_own_convolution():
    rng = np.random.default_rng(0)
    images = tf.constant(rng.random((3, 9, 11, 2), dtype=np.float32))
    kernels = tf.constant(rng.normal(size=(3, 3, 3, 2, 5)).astype(np.float32))
    together = group.from_groups(group.grouped_conv(group.to_groups(images), kernels), 3)
    for i in range(3):
        alone = tf.nn.conv2d(images[i:i + 1], kernels[i], 1, "SAME")[0]
        np.testing.assert_allclose(together[i], alone, atol=1e-5)


@pytest.mark.parametrize("form", ["grouped", "per_image"])
def test_three_images_in_one_step_give_the_three_single_runs(tiny_conf, monkeypatch, form):
    if form == "grouped" and not group.grouped_gradient_supported():
        pytest.skip("this CPU's TensorFlow has no grouped-convolution kernel gradient (oneDNN on AVX2-only CPUs); "
                    "conv_form() never picks the grouped form here")
    monkeypatch.setattr(group, "CONV_FORM", form)
    conf = tiny_conf.replace(max_iters=60, precision="float32")
    images = [smooth_image(30, 34, seed=seed) for seed in range(3)]
    alone = [ZSSR(image, conf.replace(seed=seed)) for seed, image in enumerate(images)]
    outputs = [trainer.run() for trainer in alone]
    together = [ZSSR(image, conf.replace(seed=seed)) for seed, image in enumerate(images)]
    for trainer, output, single, single_output in zip(together, group.run_together(together, 3), alone, outputs):
        _same_run(trainer, single, output, single_output)
    assert len({t.history[0].iterations for t in together}) > 1 or len(
        {tuple(t.history[0].learning_rate_change_iters) for t in together}) > 1  # they did not all run alike


class DeadFirstZSSR(ZSSR):
    """A first network that learns nothing (its second layer all negative): the stuck check restarts it."""

    def build_network(self, stage, restart=0, keep_from=None):
        super().build_network(stage, restart, keep_from)
        if not restart:
            kernel = self.model.get_layer("filter_1").kernel
            kernel.assign(-tf.abs(kernel))


class PoisonedZSSR(faults.PoisonedZSSR):
    poison_at = (19,)  # NaN weights after the sync of iteration 19: the divergence guard takes it back


def test_slots_take_the_next_image_and_each_run_is_its_own(tiny_conf):
    # Five runs of other lengths, a restart, a divergence, two stages, a smaller crop (another group) and a
    # network that cannot share a step (pixel shuffle), two per step: each as alone.
    conf = tiny_conf.replace(precision="float32")
    texture = np.random.default_rng(0).random((30, 34, 3), dtype=np.float32)
    runs = [
        (ZSSR, smooth_image(30, 34, seed=1), conf.replace(max_iters=30)),
        (DeadFirstZSSR, texture, conf.replace(max_iters=80)),
        (ZSSR, smooth_image(20, 20, seed=2), conf),  # crop 20, not 24
        (PoisonedZSSR, smooth_image(30, 34, seed=3), conf.replace(max_iters=60, min_iters=100)),
        (ZSSR, smooth_image(30, 34, seed=4), conf.replace(upsampler="pixel_shuffle")),
        (ZSSR, smooth_image(26, 28, seed=5), conf.replace(scale_factors=((1.5, 1.5), (2.0, 2.0)),
                                                           back_projection_iters=(1, 2))),
    ]
    alone = [cls(image, c) for cls, image, c in runs]
    outputs = [trainer.run() for trainer in alone]
    together = [cls(image, c) for cls, image, c in runs]
    assert together[4].group_key() is None and together[2].group_key() != together[0].group_key()
    for trainer, output, single, single_output in zip(together, group.run_together(together, 2), alone, outputs):
        _same_run(trainer, single, output, single_output)
    assert together[1].history[0].restarts and together[3].history[0].divergences == [20]


def _folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for i, (h, w) in enumerate([(30, 34), (28, 30), (30, 34), (20, 20)]):
        write_image(str(folder / f"im{i}.png"), smooth_image(h, w, seed=i), 8)
    return str(folder)


def _rows(path):
    """results.csv's names, statuses and iterations, and PSNRs to 0.01 dB (float rounding of other groupings)."""
    with open(path) as f:
        return [(row["name"], row["status"], row["iterations"], round(float(row["psnr_y"] or 0), 2))
                for row in csv.DictReader(f)]


def test_a_folder_two_images_per_step_writes_what_one_per_step_writes(tiny_conf, tmp_path):
    folder = _folder(tmp_path)
    conf = tiny_conf.replace(precision="float32")
    app.run_folder(conf, folder, str(tmp_path / "one"))
    app.run_folder(conf, folder, str(tmp_path / "two"), images_per_step=2)
    assert _rows(tmp_path / "one" / "results.csv") == _rows(tmp_path / "two" / "results.csv")
    names = sorted(os.listdir(tmp_path / "one"))
    assert names == sorted(os.listdir(tmp_path / "two"))
    for name in names:
        if name.endswith("_log.json"):
            one, two = (json.load(open(tmp_path / d / name)) for d in ("one", "two"))
            assert [s["iterations"] for s in one["stages"]] == [s["iterations"] for s in two["stages"]]
            assert [s["learning_rate_change_iters"] for s in one["stages"]] == \
                [s["learning_rate_change_iters"] for s in two["stages"]]
        elif name.endswith("X2.00.png"):
            a, b = (app.read_image(str(tmp_path / d / name)).pixels for d in ("one", "two"))
            assert np.max(np.abs(a - b)) <= 1 / 255 + 1e-6  # 8-bit rounding of outputs within 1e-4


def test_images_per_step_is_refused_with_several_workers(tiny_conf, tmp_path):
    with pytest.raises(ValueError, match="one process"):
        app.run_folder(tiny_conf, _folder(tmp_path), str(tmp_path / "out"), workers=2, images_per_step=2)
    with pytest.raises(ValueError, match=">= 1"):
        app.run_folder(tiny_conf, _folder(tmp_path), str(tmp_path / "out"), images_per_step=0)


def test_a_group_out_of_device_memory_is_each_images_error_row(tiny_conf, tmp_path, monkeypatch):
    def exhausted(self, examples, num_steps):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating")

    monkeypatch.setattr(group.StackedZSSR, "run_steps", exhausted)
    results = app.run_folder(tiny_conf, _folder(tmp_path), str(tmp_path / "out"), images_per_step=2)
    assert [r.status for r in results] == ["error: out of accelerator memory: the image is too large for this "
                                           "device"] * 4


def test_the_command_checks_images_per_step(capsys, tmp_path):
    from tests.test_cli import zssr

    status, _, err = zssr(capsys, f"--input={_folder(tmp_path)}", "--images_per_step=two")
    assert status == 2 and "--images_per_step: 'two' is not a number >= 1 or auto" in err
    status, _, err = zssr(capsys, f"--input={_folder(tmp_path)}", "--images_per_step=2", "--workers=2")
    assert status == 2 and "one process" in err
    image = os.path.join(_folder(tmp_path), "im0.png")
    status, _, err = zssr(capsys, f"--input={image}", "--images_per_step=2")
    assert status == 2 and "--images_per_step is for folders" in err


def test_a_folder_stopped_while_images_share_steps_resumes_to_the_uninterrupted_outputs(tiny_conf, tmp_path,
                                                                                        monkeypatch):
    from tests.test_resume import stopping_at

    folder = _folder(tmp_path)
    conf = tiny_conf.replace(precision="float32", max_iters=60, checkpoint_every=15, progress=False)
    app.run_folder(conf, folder, str(tmp_path / "whole"), images_per_step=2)
    stopping_at(monkeypatch, 40)  # Ctrl-C once an image has run 40 steps: its checkpoint at 30 or later
    with pytest.raises(interrupts.Interrupted):
        app.run_folder(conf, folder, str(tmp_path / "stopped"), images_per_step=2)
    assert [n for n in os.listdir(tmp_path / "stopped") if n.endswith("_resume")]
    monkeypatch.undo()
    app.run_folder(conf, folder, str(tmp_path / "stopped"), images_per_step=2)
    assert _rows(tmp_path / "whole" / "results.csv") == _rows(tmp_path / "stopped" / "results.csv")
    for name in os.listdir(tmp_path / "whole"):
        if name.endswith("X2.00.png"):
            a, b = (app.read_image(str(tmp_path / d / name)).pixels for d in ("whole", "stopped"))
            assert np.max(np.abs(a - b)) <= 1 / 255 + 1e-6
