"""Depth by name: keras-hub's Depth Anything estimator as DGDML-SR's depth model, without any download.

A tiny `DepthAnythingDepthEstimator` (random weights, a 2-layer DINOv2 of width 16) is saved with `save_to_preset`
and goes through the code path a real preset takes: a preset folder, its preprocessor, disparity values, the map
cached as `<name>_depth.npy` and drawn, and the one-line errors (no keras-hub, no network, a Lambda layer).
"""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub", reason="keras-hub (the [depth] extra) is not installed here")

from zssr_tf import app, depth  # noqa: E402
from zssr_tf.config import Config  # noqa: E402
from zssr_tf.depth import DepthError  # noqa: E402
from zssr_tf.image_io import read_image, write_image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_DG = dict(method="dgdml", dgdml_width=8, dgdml_srn_depth=2, dgdml_dsn_depth=1, dgdml_critic_width=4,
               dgdml_lr_patch_size=16, dgdml_batch_size=8, dgdml_epochs=1, dgdml_test_every_epochs=1,
               display_every=5, precision="float32", progress=False)


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory) -> str:
    encoder = keras_hub.models.DINOV2Backbone(patch_size=14, num_layers=4, hidden_dim=16, num_heads=2,
                                              intermediate_dim=32, image_shape=(112, 112, 3),
                                              position_embedding_shape=(112, 112))
    backbone = keras_hub.models.DepthAnythingBackbone(
        image_encoder=encoder, reassemble_factors=[4, 2, 1, 0.5], neck_hidden_dims=[8, 8, 8, 8],
        fusion_hidden_dim=8, head_hidden_dim=8, head_in_index=-1,
        feature_keys=["stage1", "stage2", "stage3", "stage4"])
    converter = keras_hub.layers.DepthAnythingImageConverter(image_size=(112, 112), scale=1 / 255.0)
    estimator = keras_hub.models.DepthAnythingDepthEstimator(
        backbone=backbone, depth_estimation_type="relative",
        preprocessor=keras_hub.models.DepthAnythingDepthEstimatorPreprocessor(image_converter=converter))
    folder = str(tmp_path_factory.mktemp("depth_preset") / "tiny_depth_anything")
    estimator.save_to_preset(folder)
    return folder


def test_a_preset_folder_estimates_disparity_at_the_images_size(tiny_preset):
    assert depth.is_keras_hub_preset(tiny_preset) and depth.is_keras_hub_preset("depth_anything_v2_small")
    assert not depth.is_keras_hub_preset("model.keras") and not depth.is_keras_hub_preset(ROOT)
    assert depth.depth_model_kind(tiny_preset, "depth") == "disparity"  # set for the user, whatever the flag
    assert depth.depth_model_kind("depth_anything_v2_small", "depth") == "disparity"
    image = np.random.default_rng(0).random((90, 70, 3)).astype(np.float32)
    values = depth.load_depth_model(tiny_preset)(image)
    assert values.shape == (90, 70) and np.all(np.isfinite(values))
    estimated = depth.estimate_depth(tiny_preset, image, "depth")
    known = values > 0
    np.testing.assert_allclose(estimated[known], 1 / values[known], rtol=1e-5)  # disparity -> depth
    assert np.all(np.isnan(estimated[~known]))


def test_the_estimate_is_kept_with_what_it_was_made_from(tiny_preset, tmp_path):
    image = np.random.default_rng(1).random((64, 64, 3)).astype(np.float32)
    stamp = depth.depth_stamp(tiny_preset, image, "depth")
    cache = str(tmp_path / "photo_depth_estimate.npz")
    assert depth.read_cached_depth(cache, stamp) is None  # none yet
    estimated = depth.estimate_depth(tiny_preset, image, "depth")
    depth.write_cached_depth(cache, estimated, stamp)
    np.testing.assert_array_equal(np.nan_to_num(depth.read_cached_depth(cache, stamp)), np.nan_to_num(estimated))
    other_image = image.copy()
    other_image[0, 0, 0] += 0.5
    assert depth.read_cached_depth(cache, depth.depth_stamp(tiny_preset, other_image, "depth")) is None
    assert depth.read_cached_depth(cache, depth.depth_stamp("another_model", image, "depth")) is None


def test_a_preset_that_cannot_be_downloaded_is_one_line(monkeypatch):
    def offline(name):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(keras_hub.models.DepthEstimator, "from_preset", offline)
    with pytest.raises(DepthError) as error:
        depth.load_depth_model("depth_anything_v2_small")
    message = str(error.value)
    assert message.startswith("dgdml_depth_model: cannot download the keras-hub preset depth_anything_v2_small")
    assert "save_to_preset('DIR')" in message and "\n" not in message


def test_without_keras_hub_the_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # import keras_hub raises ImportError
    with pytest.raises(DepthError, match=r'pip install "zssr-tf\[depth\]"'):
        depth.load_depth_model("depth_anything_v2_small")


def test_a_keras_file_with_a_lambda_layer_is_refused_in_safe_mode(tmp_path):
    rgb = keras.Input((None, None, 3))
    model = keras.Model(rgb, keras.layers.Lambda(lambda x: x[..., :1])(rgb))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(DepthError, match="holds a Lambda layer"):
        depth.load_depth_model(str(tmp_path / "lambda.keras"))


def test_dgdml_with_a_preset_folder_runs_end_to_end_and_draws_the_split(tiny_preset, tmp_path):
    image = np.random.default_rng(2).random((64, 64, 3)).astype(np.float32)
    write_image(tmp_path / "photo.png", image, 8)
    conf = Config().replace(**TINY_DG, dgdml_depth_model=tiny_preset)
    result = app.run(conf, str(tmp_path / "photo.png"), str(tmp_path / "out"))
    assert result.status == "done" and read_image(result.outputs[0]).pixels.shape == (128, 128, 3)
    assert os.path.isfile(tmp_path / "out" / "photo_depth_estimate.npz")
    assert read_image(tmp_path / "out" / "photo_depth_split.png").pixels.shape[2] in (3, 4)
    log = json.load(open(tmp_path / "out" / "photo_log.json"))
    assert log["report"]["depth"] == tiny_preset and log["depth"].endswith("photo_depth_estimate.npz")
    assert log["report"]["patches"]["depth_guided"]
    # Outputs beside the inputs: a folder run takes neither the estimate nor its picture for an input or a depth map.
    shutil.copy(tmp_path / "photo.png", tmp_path / "out" / "photo.png")
    inputs = app.find_inputs(str(tmp_path / "out"), 1, depth_maps=True)
    assert [os.path.basename(found[0]) for found in inputs] == ["photo.png"]
    assert app.find_depth(str(tmp_path / "out" / "photo.png")) is None
    # An image the trainer refuses (too small for the patches) leaves no estimate behind.
    write_image(tmp_path / "tiny.png", image[:20, :20], 8)
    with pytest.raises(ValueError):
        app.run(conf, str(tmp_path / "tiny.png"), str(tmp_path / "out2"))
    assert not os.path.exists(tmp_path / "out2")


def test_the_command_line_says_in_one_line_that_a_preset_cannot_be_fetched(tmp_path):
    # Offline for sure (a dead proxy, an empty download cache), also where CI has a network: the run ends in one
    # line before any output.
    result = subprocess.run([sys.executable, "-m", "zssr_tf", "--preset=dgdml_quick",
                             "--dgdml_depth_model=depth_anything_v2_small",
                             f"--input={ROOT}/examples/astronaut.png", f"--output_dir={tmp_path / 'out'}"],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", HTTPS_PROXY="http://127.0.0.1:9",
                                     https_proxy="http://127.0.0.1:9", KAGGLEHUB_CACHE=str(tmp_path / "cache")))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "cannot download the keras-hub preset depth_anything_v2_small" in result.stderr
    assert not (tmp_path / "out").exists()
