import dataclasses
import glob
import json
import os
import subprocess
import sys

import pytest

from zssr_tf.config import FIELD_HELP, FLAG_NAMES, GROUPS, Config, ConfigError, coerce, format_value, \
    parse_scale_factors

FLAGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flags")


def test_defaults_are_the_originals():
    c = Config().zssr
    assert Config().task.scale_factors == ((2.0, 2.0),) and Config().method == "zssr"
    assert (c.max_iters, c.min_iters, c.min_learning_rate) == (3000, 256, 9e-6)
    assert (c.width, c.depth, c.init_variance, c.crop_size) == (64, 8, 0.1, 128)
    assert (c.learning_rate, c.learning_rate_change_ratio, c.learning_rate_policy_check_every) == (1e-3, 1.5, 60)
    assert c.slope_points == 5  # 256 // 50
    assert c.back_projection_iters == (10,)
    assert c.filter_shape[0] == (3, 3, 3, 64) and c.filter_shape[-1] == (3, 3, 64, 3) and len(c.filter_shape) == 8


def test_frozen_and_derived_values_follow_replace():
    c = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.zssr.width = 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.method = "zsrgan"
    assert c.replace(width=32, depth=4).zssr.filter_shape[1] == (3, 3, 32, 32)
    assert dataclasses.replace(c.zssr, width=16).filter_shape[1] == (3, 3, 16, 16)


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
    assert conf.task.scale_factors == ((1.0, 1.5), (2.0, 2.0))
    assert conf.zssr.back_projection_iters == (3, 4)
    assert conf.zssr.output_flip is False
    assert conf.zssr.noise_std == 0.02


def test_gradual_preset_matches_the_original():
    conf = Config.from_flagfile(os.path.join(FLAGS_DIR, "x2_gradual_ideal.cfg"))
    assert conf.task.scale_factors == ((1.0, 1.5), (1.5, 1.0), (1.5, 1.5), (1.5, 2.0), (2.0, 1.5), (2.0, 2.0))
    assert conf.zssr.back_projection_iters == (6, 6, 8, 10, 10, 12)


@pytest.mark.parametrize("changes, message", [
    (dict(scale_factors=((1.0, 1.0),)), "must upscale"),
    (dict(scale_factors=((0.5, 0.5),)), "must upscale"),
    (dict(back_projection_iters=(10, 10)), "one per scale factor"),
    (dict(crop_size=2), "crop_size"),
    (dict(upscale_method="bilinear"), "upscale_method"),
    (dict(run_test_every=100), "at least 3"),
    (dict(augment_leave_as_is_probability=0.7, augment_no_interpolate_probability=0.6), "probability"),
    (dict(noise_std=-1.0), "noise_std"),
    (dict(policy="patient"), "policy: 'patient' is not one of original, robust"),
])
def test_invalid_values_are_refused_in_one_line(changes, message):
    with pytest.raises(ConfigError, match=message) as info:
        Config.from_dict(changes)
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


@pytest.mark.parametrize("changes, message", [
    (dict(method="srgan"), "method"),
    (dict(zsrgan_crop_size=32), "at least 64"),
    (dict(vgg_weights="vgg.bin"), "vgg_weights"),
    (dict(zsrgan_vgg_layer="block9_conv1"), "zsrgan_vgg_layer"),
    (dict(zsrgan_learning_rate_decay=2.0), "zsrgan_learning_rate_decay"),
    (dict(init_weights="net.h5"), "init_weights"),
])
def test_method_and_shared_fields_are_validated(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(changes)


def test_groups_keep_their_fields_apart_and_flags_never_clash():
    conf = Config.from_dict({"method": "zsrgan", "max_iters": 5, "zsrgan_max_iters": 7, "seed": 3,
                             "scale_factors": "2", "zsrgan_noise_std": 0.0})
    assert (conf.zssr.max_iters, conf.zsrgan.max_iters, conf.run.seed) == (5, 7, 3)
    flags = [prefix + f.name for cls, prefix in GROUPS.values() for f in dataclasses.fields(cls)]
    assert len(flags) == len(set(flags)) == len(FLAG_NAMES) - 1  # and --method
    assert all(FIELD_HELP[f].endswith(".") and FIELD_HELP[f][0].isupper() for f in FLAG_NAMES), "full sentences"


def test_json_is_nested_records_the_method_and_reads_back():
    conf = Config().replace(method="zsrgan", zsrgan_width=16, width=8)
    nested = json.loads(conf.to_json())
    assert nested["method"] == "zsrgan" and nested["zsrgan"]["width"] == 16 and nested["zssr"]["width"] == 8
    assert Config.from_json(conf.to_json()) == conf == Config.from_dict(conf.to_flat_dict())
    with pytest.raises(ConfigError, match="unknown config field"):
        Config.from_dict({"zssr": {"no_such_field": 1}})


def test_reading_a_config_imports_no_tensorflow():
    code = ("import sys, zssr_tf.config as c; c.Config.from_json(c.Config().to_json()); "
            "print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"

