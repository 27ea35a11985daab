import dataclasses
import glob
import os

import pytest

from zssr_tf.config import Config, ConfigError, coerce, format_value, parse_scale_factors

FLAGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flags")


def test_defaults_are_the_originals():
    c = Config()
    assert c.scale_factors == ((2.0, 2.0),)
    assert (c.max_iters, c.min_iters, c.min_learning_rate) == (3000, 256, 9e-6)
    assert (c.width, c.depth, c.init_variance, c.crop_size) == (64, 8, 0.1, 128)
    assert (c.learning_rate, c.learning_rate_change_ratio, c.learning_rate_policy_check_every) == (1e-3, 1.5, 60)
    assert c.slope_points == 5  # 256 // 50
    assert c.back_projection_iters == (10,)
    assert c.filter_shape[0] == (3, 3, 3, 64) and c.filter_shape[-1] == (3, 3, 64, 3) and len(c.filter_shape) == 8


def test_frozen_and_derived_values_follow_replace():
    c = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.width = 32
    assert dataclasses.replace(c, width=32, depth=4).filter_shape[1] == (3, 3, 32, 32)


def test_scale_factor_syntax():
    assert parse_scale_factors("2") == ((2.0, 2.0),)
    assert parse_scale_factors("1x1.5, 2") == ((1.0, 1.5), (2.0, 2.0))
    assert format_value(((1.0, 1.5), (2.0, 2.0))) == "1.0x1.5,2.0x2.0"
    with pytest.raises(ConfigError, match="scale_factors"):
        parse_scale_factors("two")
    with pytest.raises(ConfigError, match="scale_factors"):
        parse_scale_factors("1x2x3")


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(FLAGS_DIR, "*.cfg"))))
def test_every_preset_round_trips_through_flagfile_and_json(path, tmp_path):
    conf = Config.from_flagfile(path)
    assert Config.from_json(conf.to_json()) == conf
    written = tmp_path / "again.cfg"
    written.write_text(conf.to_flagfile())
    assert Config.from_flagfile(written) == conf


def test_flagfile_values_and_overrides(tmp_path):
    path = tmp_path / "p.cfg"
    path.write_text("# comment\n--scale_factors=1x1.5,2\n--back_projection_iters=3,4\n--nooutput_flip\n"
                    "--noise_std=0.01\n")
    conf = Config.from_flagfile(path, noise_std=0.02)
    assert conf.scale_factors == ((1.0, 1.5), (2.0, 2.0))
    assert conf.back_projection_iters == (3, 4)
    assert conf.output_flip is False
    assert conf.noise_std == 0.02


def test_gradual_preset_matches_the_original():
    conf = Config.from_flagfile(os.path.join(FLAGS_DIR, "x2_gradual_ideal.cfg"))
    assert conf.scale_factors == ((1.0, 1.5), (1.5, 1.0), (1.5, 1.5), (1.5, 2.0), (2.0, 1.5), (2.0, 2.0))
    assert conf.back_projection_iters == (6, 6, 8, 10, 10, 12)


@pytest.mark.parametrize("changes, message", [
    (dict(scale_factors=((1.0, 1.0),)), "must upscale"),
    (dict(scale_factors=((0.5, 0.5),)), "must upscale"),
    (dict(back_projection_iters=(10, 10)), "one per scale factor"),
    (dict(crop_size=2), "crop_size"),
    (dict(upscale_method="bilinear"), "upscale_method"),
    (dict(run_test_every=100), "at least 3"),
    (dict(augment_leave_as_is_probability=0.7, augment_no_interpolate_probability=0.6), "probability"),
    (dict(noise_std=-1.0), "noise_std"),
])
def test_invalid_values_are_refused_in_one_line(changes, message):
    with pytest.raises(ConfigError, match=message) as info:
        Config(**changes)
    assert "\n" not in str(info.value)


def test_coerce_refuses_wrong_types():
    with pytest.raises(ConfigError, match="max_iters"):
        coerce("max_iters", "many")
    with pytest.raises(ConfigError, match="output_flip"):
        coerce("output_flip", "maybe")
    with pytest.raises(ConfigError, match="unknown"):
        Config.from_dict({"no_such_field": 1})


def test_flagfile_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        Config.from_flagfile(tmp_path / "missing.cfg")
    bad = tmp_path / "bad.cfg"
    bad.write_text("scale_factors=2\n")
    with pytest.raises(ConfigError, match="--name=value"):
        Config.from_flagfile(bad)
