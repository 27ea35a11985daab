"""Tests for zssr_tf.data: numpy vs TF sons, host vs device pipelines, device noise, pipeline choice."""


import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import smooth_image
from zssr_tf import ZSSR, data
from zssr_tf.augment import draw_transform
from zssr_tf.config import Config, ConfigError

CROP = 24
ONE_JUMP = ([smooth_image(32, 30)], ((1.0, 1.0), (2.0, 2.0)))
# A second gradual stage: the input and a 1.5x larger output of the first stage, so the sources differ in size.
GRADUAL = ([smooth_image(32, 30), smooth_image(48, 45, seed=1)], ((1.0, 1.0), (1.5, 1.5), (2.0, 2.0)))


def _gaussian_kernel(size: int = 9, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    k = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return k / k.sum()


def _examples(build, sources, base_scales, conf, seed=(0, 0, 1), num_examples=6, kernel="cubic"):
    dataset = build(sources, base_scales, (2.0, 2.0), kernel, conf, CROP, seed, num_examples)
    return [(lr_son.numpy(), hr_father.numpy()) for lr_son, hr_father in dataset]


@pytest.mark.parametrize("kernel", ["cubic", _gaussian_kernel()], ids=["cubic", "numeric9x9"])
def test_father_to_son_tf_matches_numpy(kernel):
    father = smooth_image(24, 22)
    expected = data.father_to_son(father, (2.0, 2.0), kernel)
    got = data.father_to_son_tf(tf.constant(father), (2.0, 2.0), kernel).numpy()
    assert got.shape == expected.shape == (12, 11, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_father_to_son_tf_noise_is_seeded_and_has_the_asked_std():
    father = tf.fill([64, 64, 3], 0.5)  # mid-grey: no clipping of the noise
    clean = data.father_to_son_tf(father, (2.0, 2.0))
    noisy = data.father_to_son_tf(father, (2.0, 2.0), noise_std=0.05, seed=[3, 4])
    np.testing.assert_array_equal(noisy, data.father_to_son_tf(father, (2.0, 2.0), noise_std=0.05, seed=[3, 4]))
    assert np.std(noisy - clean) == pytest.approx(0.05, rel=0.05)
    with pytest.raises(ValueError, match="seed"):
        data.father_to_son_tf(father, (2.0, 2.0), noise_std=0.05)


def test_device_draws_the_host_transforms():
    sources, base_scales = GRADUAL
    conf = Config().replace(crop_size=CROP)
    indices = set()
    for i in range(16):
        index, matrix, _ = data.draw_example_transform(
            sources, base_scales, conf, CROP, np.random.default_rng([0, 0, 1, i]))
        expected = draw_transform([s.shape[:2] for s in sources], base_scales[:2], np.random.default_rng([0, 0, 1, i]),
                                   **data._augment_options(conf, base_scales, 2, CROP))
        assert index == expected.source_index
        np.testing.assert_array_equal(matrix, expected.matrix)
        indices.add(int(index))
    assert indices == {0, 1}  # both sources are exercised by the seeds the pipeline test uses


@pytest.mark.parametrize("case", ["one_jump", "gradual"])
def test_device_and_host_pipelines_make_the_same_examples(case):
    sources, base_scales = ONE_JUMP if case == "one_jump" else GRADUAL
    conf = Config().replace(crop_size=CROP)
    host = _examples(data.build_example_dataset, sources, base_scales, conf, num_examples=16)
    device = _examples(data.build_device_example_dataset, sources, base_scales, conf, num_examples=16)
    assert len(host) == len(device) == 16
    for (host_son, host_father), (device_son, device_father) in zip(host, device):
        assert device_son.shape == device_father.shape == (1, CROP, CROP, 3)
        assert device_son.dtype == device_father.dtype == np.float32
        # cv2 and warp_image differ by float rounding only (~1e-6 here); 2e-3 allows OpenCV 4.x's 1/32-px grid.
        assert np.mean(np.abs(device_father - host_father)) < 2e-3
        assert np.mean(np.abs(device_son - host_son)) < 2e-3
        assert 0.0 <= device_father.min() and device_father.max() <= 1.0


def test_device_pipeline_with_a_numeric_kernel_matches_host():
    sources, base_scales = ONE_JUMP
    conf, kernel = Config().replace(crop_size=CROP), _gaussian_kernel()
    host = _examples(data.build_example_dataset, sources, base_scales, conf, num_examples=3, kernel=kernel)
    device = _examples(data.build_device_example_dataset, sources, base_scales, conf, num_examples=3, kernel=kernel)
    for (host_son, _), (device_son, _) in zip(host, device):
        assert np.mean(np.abs(device_son - host_son)) < 2e-3


def test_device_noise_is_reproducible_and_has_the_asked_std():
    sources, base_scales = ONE_JUMP
    # A box upscale by 2 repeats every son pixel, so the interpolated son carries the son's noise unchanged.
    conf = Config().replace(crop_size=CROP, upscale_method="box")
    noisy_conf = conf.replace(noise_std=0.02)
    build = data.build_device_example_dataset
    first = _examples(build, sources, base_scales, noisy_conf, num_examples=8)
    again = _examples(build, sources, base_scales, noisy_conf, num_examples=8)
    clean = _examples(build, sources, base_scales, conf, num_examples=8)
    for (son, father), (son_again, father_again) in zip(first, again):
        np.testing.assert_array_equal(son, son_again)
        np.testing.assert_array_equal(father, father_again)
    differences = []
    for (son, father), (clean_son, clean_father) in zip(first, clean):
        np.testing.assert_array_equal(father, clean_father)  # the noise seed is drawn after the transform
        inside = (clean_son > 0.1) & (clean_son < 0.9)  # away from the clip
        differences.append((son - clean_son)[inside])
    assert np.std(np.concatenate(differences)) == pytest.approx(0.02, rel=0.1)
    other_seed = _examples(build, sources, base_scales, noisy_conf, seed=(1, 0, 1), num_examples=1)
    assert not np.array_equal(other_seed[0][0], first[0][0])


def test_pipeline_choice():
    assert data.resolve_pipeline("host") == "host" and data.resolve_pipeline("device") == "device"
    assert data.resolve_pipeline("auto") == "host"
    assert data.PIPELINE_BUILDERS["device"] is data.build_device_example_dataset
    assert data.PIPELINE_BUILDERS["host"] is data.build_example_dataset


def test_config_rejects_an_unknown_pipeline():
    assert Config().run.pipeline == "auto"
    with pytest.raises(ConfigError, match="pipeline"):
        Config().replace(pipeline="gpu")


def test_zssr_runs_with_the_device_pipeline(tiny_conf, monkeypatch):
    calls = []

    def build_device(*args, **kwargs):
        calls.append(args)
        return data.build_device_example_dataset(*args, **kwargs)

    monkeypatch.setitem(data.PIPELINE_BUILDERS, "device", build_device)
    conf = tiny_conf.replace(pipeline="device", max_iters=20)
    sr = ZSSR(smooth_image(20, 18), conf).run()
    assert len(calls) == 1
    assert sr.shape == (40, 36, 3) and sr.dtype == np.float32 and np.all(np.isfinite(sr))


@pytest.mark.parametrize("builder", ["host", "device", "zsrgan"])
def test_a_pipeline_lets_go_of_its_image_when_it_is_gone(builder):
    # tf.numpy_function keeps its callable for the life of the process: a pipeline's closure (the fathers' sources)
    # outlived each image of a folder run (benchmarks/folder_memory.py) until the registry held it weakly.
    import gc
    import weakref

    conf = Config()
    image = smooth_image(40, 40)
    alive = weakref.ref(image)
    if builder == "zsrgan":
        dataset = data.build_zsrgan_dataset(image, (2.0, 2.0), "cubic", conf, 16, (0, 2, 0), 2)
    else:
        build = data.build_example_dataset if builder == "host" else data.build_device_example_dataset
        dataset = build([image], [(1.0, 1.0)], (2.0, 2.0), "cubic", conf, 16, (0, 1), 2)
    assert len(list(dataset)) == 2  # the pipeline works while it is held
    del dataset, image
    gc.collect()
    assert alive() is None
