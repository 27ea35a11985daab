"""TensorBoard summaries, the progress bar, and exporting / starting from a trained network."""

import collections
import glob
import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import smooth_image
from tests.test_cli import TINY, zssr
from zssr_tf import ZSSR, Config, summaries
from zssr_tf.image_io import write_image
from zssr_tf.models import build_zssr_generator


def read_events(logdir):
    """{tag: [(step, value, plugin name)]} of every event file in `logdir`, in the order written."""
    found = collections.defaultdict(list)
    paths = sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")))
    assert paths, f"no event files in {logdir}"
    for path in paths:
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                found[value.tag].append((event.step, tf.make_ndarray(value.tensor),
                                         value.metadata.plugin_data.plugin_name))
    return found


def test_tensorboard_scalars_and_images_read_back(tiny_conf, tmp_path):
    conf = tiny_conf.replace(scale_factors=((1.5, 1.5), (2.0, 2.0)), back_projection_iters=(1, 1),
                               max_iters=20)
    gt = smooth_image(40, 44)
    zssr = ZSSR(smooth_image(20, 22), conf, ground_truth=gt, summary_dir=tmp_path / "tb")
    zssr.run()
    events = read_events(tmp_path / "tb")
    first, second = zssr.history
    assert first.iterations == second.iterations == 20

    # The step counts iterations over both stages: the second stage's iteration i is step 20 + i.
    loss = events["train/loss"]
    assert [step for step, _, _ in loss] == [0, 10, 20, 30]
    np.testing.assert_allclose([v for _, v, _ in loss], first.losses + second.losses, rtol=1e-6)
    assert {plugin for _, _, plugin in loss} == {"scalars"}
    assert [float(v) for _, v, _ in events["stage"]] == [0, 0, 1, 1]
    assert [float(v) for _, v, _ in events["train/learning_rate"]] == pytest.approx([1e-3] * 4)

    reconstruction = events["quick_test/reconstruction_mse"]
    assert [s for s, _, _ in reconstruction] == first.test_steps + [20 + s for s in second.test_steps]
    np.testing.assert_allclose([v for _, v, _ in reconstruction],
                               first.reconstruction_mse + second.reconstruction_mse, rtol=1e-6)
    true_mse = np.array(first.true_mse + second.true_mse)
    np.testing.assert_allclose([v for _, v, _ in events["quick_test/true_mse"]], true_mse, rtol=1e-6)
    np.testing.assert_allclose([v for _, v, _ in events["quick_test/true_psnr"]], -10 * np.log10(true_mse),
                               rtol=1e-5)

    # Images: the ground truth once, each stage's output at its last iteration ([width, height, PNG]).
    (step, tensor, plugin), = events["images/ground_truth"]
    assert step == 0 and plugin == "images" and list(tensor[:2]) == [b"44", b"40"]
    sr = events["images/sr"]
    assert [s for s, _, _ in sr] == [19, 39]
    assert [list(t[:2]) for _, t, _ in sr] == [[b"33", b"30"], [b"44", b"40"]]
    decoded = tf.io.decode_png(sr[1][1][2]).numpy()
    assert np.abs(decoded / 255.0 - zssr.outputs[-1]).max() <= 0.5 / 255 + 1e-6


def test_no_ground_truth_no_true_error_summaries(tiny_conf, tmp_path):
    ZSSR(smooth_image(16, 16), tiny_conf.replace(max_iters=6), summary_dir=tmp_path).run()
    events = read_events(tmp_path)
    assert {"train/loss", "quick_test/reconstruction_mse", "images/sr"} <= set(events)
    assert not {"quick_test/true_mse", "quick_test/true_psnr", "images/ground_truth"} & set(events)


def test_the_bar_shows_only_when_asked_and_on_a_terminal(tiny_conf, capsys, monkeypatch):
    lr = smooth_image(20, 22)
    quiet = ZSSR(lr, tiny_conf.replace(progress=False)).run()
    not_a_terminal = ZSSR(lr, tiny_conf).run()  # pytest's stderr is no terminal
    assert "\r" not in capsys.readouterr().err
    monkeypatch.setattr(summaries, "stderr_is_terminal", lambda: True)
    shown = ZSSR(lr, tiny_conf).run()
    err = capsys.readouterr().err
    assert "\r" in err and "40/40" in err and "loss " in err and "lr 1.0e-03" in err
    assert np.array_equal(quiet, not_a_terminal) and np.array_equal(quiet, shown)


def test_export_then_init_weights_gives_the_same_network(tiny_conf, tmp_path):
    lr = smooth_image(20, 22)
    exporter = ZSSR(lr, tiny_conf)
    exporter.run()
    path = tmp_path / "net.keras"
    exporter.export_model(path)
    assert os.listdir(tmp_path) == ["net.keras"]  # no temporary left behind

    restored = ZSSR(lr, tiny_conf.replace(init_weights=str(path)))
    for saved, loaded in zip(exporter.model.get_weights(), restored.model.get_weights(), strict=True):
        assert np.array_equal(saved, loaded)
    np.testing.assert_allclose(restored.forward_pass(lr), exporter.forward_pass(lr), atol=1e-6)

    # The plain weights format works too, and a stage that re-initialises starts from the same weights.
    exporter.model.save_weights(tmp_path / "net.weights.h5")
    conf = tiny_conf.replace(init_weights=str(tmp_path / "net.weights.h5"), init_net_for_each_sf=True,
                               scale_factors=((1.5, 1.5), (2.0, 2.0)), back_projection_iters=(1, 1))
    restarted = ZSSR(lr, conf)
    restarted.build_network(1)
    assert all(np.array_equal(a, b) for a, b in zip(exporter.model.get_weights(), restarted.model.get_weights()))


def test_checkpoint_round_trip_restores_networks_and_optimizers_exactly(tiny_conf, tmp_path):
    lr = smooth_image(20, 22)
    exporter = ZSSR(lr, tiny_conf)
    exporter.run()
    exporter.export_model(tmp_path / "ckpt")
    assert os.listdir(tmp_path) == ["ckpt"]  # no temporary folder left behind
    restored = ZSSR(lr, tiny_conf.replace(seed=1))
    restored.checkpoint.read(tf.train.latest_checkpoint(tmp_path / "ckpt")).assert_existing_objects_matched()
    for a, b in zip(exporter.model.weights + exporter.optimizer.variables,
                    restored.model.weights + restored.optimizer.variables, strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), a.path
    assert int(restored.optimizer.iterations) == tiny_conf.zssr.max_iters
    # init_weights takes the networks only: a fine-tuning run starts its own optimizer.
    fine_tuned = ZSSR(lr, tiny_conf.replace(init_weights=str(tmp_path / "ckpt")))
    assert all(np.array_equal(a, b) for a, b in zip(exporter.model.get_weights(), fine_tuned.model.get_weights()))
    assert int(fine_tuned.optimizer.iterations) == 0


def test_command_line_writes_event_files_and_the_network(tmp_path, capsys, caplog):
    write_image(tmp_path / "in.png", smooth_image(16, 18))
    status, out, err = zssr(capsys, f"--input={tmp_path / 'in.png'}", f"--output_dir={tmp_path / 'out'}", *TINY,
                            "--tensorboard", "--export_model")
    assert status == 0, err
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "in_log.json", "in_record.json",
                                                    "in_zssr_X2.00X2.00.png", "in_zssr_checkpoint", "tb"]
    assert {"train/loss", "quick_test/reconstruction_mse"} <= set(read_events(tmp_path / "out" / "tb" / "in"))
    assert json.loads((tmp_path / "out" / "in_log.json").read_text())["model"].endswith("in_zssr_checkpoint")
    assert "network saved as" in out

    # Fine-tune from it: starts where the export ended.
    checkpoint = tmp_path / "out" / "in_zssr_checkpoint"
    caplog.set_level(logging.INFO)
    status, _, err = zssr(capsys, f"--input={tmp_path / 'in.png'}", f"--output_dir={tmp_path / 'again'}", *TINY,
                          f"--init_weights={checkpoint}", "--verbosity=0")  # absl: INFO, as the command shows
    assert status == 0, err
    assert f"in: loaded the weights of the generator from {checkpoint}" in caplog.text  # the log says so
    config = json.loads((tmp_path / "again" / "config.json").read_text())
    assert config["run"]["init_weights"] == str(checkpoint)


def test_bad_init_weights_give_one_line_and_no_output(tmp_path, capsys):
    write_image(tmp_path / "in.png", smooth_image(16, 16))
    folder = tmp_path / "folder"
    folder.mkdir()
    write_image(folder / "a.png", smooth_image(16, 16))
    build_zssr_generator(channels=3, depth=3, width=16).save(tmp_path / "wide.keras")
    build_zssr_generator(channels=3, depth=4, width=8).save_weights(tmp_path / "deep.weights.h5")
    build_zssr_generator(channels=1, depth=3, width=8).save(tmp_path / "gray.keras")
    (tmp_path / "text.keras").write_text("not a model")
    wide_checkpoint = tmp_path / "wide_checkpoint"
    ZSSR(smooth_image(16, 16), Config().replace(width=16, depth=3)).export_model(wide_checkpoint)
    (tmp_path / "text.weights.h5").write_text("not weights")
    cases = [
        (tmp_path / "in.png", tmp_path / "missing.keras", "no such file"),
        (folder, tmp_path / "missing.keras", "no such file"),
        (tmp_path / "in.png", tmp_path / "wide.keras",
         "depth 3, width 16, 3 channels; this run needs depth 3, width 8, 3 channels"),
        (tmp_path / "in.png", tmp_path / "deep.weights.h5", "depth 4"),
        (tmp_path / "in.png", tmp_path / "gray.keras", "1 channel;"),
        (tmp_path / "in.png", tmp_path / "text.keras", "not a Keras model or weights file"),
        (tmp_path / "in.png", tmp_path / "text.weights.h5", "not a Keras model or weights file"),
        (tmp_path / "in.png", tmp_path / "net.h5", "not a checkpoint folder or a .keras or .weights.h5 file"),
        (tmp_path / "in.png", tmp_path / "no_checkpoint", "no such checkpoint folder"),
        (tmp_path / "in.png", wide_checkpoint, "holds a generator of depth 3, width 16, 3 channels; this run needs "
         "depth 3, width 8, 3 channels"),
    ]
    for image, weights, message in cases:
        out_dir = tmp_path / "out"
        status, _, err = zssr(capsys, f"--input={image}", f"--output_dir={out_dir}", *TINY, "--tensorboard",
                              f"--init_weights={weights}")
        lines = err.strip().splitlines()
        assert status == 1, (weights, err)
        assert len(lines) == 1 and lines[0].startswith("zssr: error: init_weights:") and message in lines[0], err
        assert not os.path.exists(out_dir), weights
