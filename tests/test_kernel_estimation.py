"""KernelGAN's kernel estimation: the networks, the kernel read-out and its post-processing, the constraints'
schedule, and the runs that estimate and hand the kernels to ZSSR."""

import json
import os

import numpy as np
import pytest
import scipy.io
import scipy.signal

from tests.conftest import smooth_image
from tests.test_cli import zssr
from tests.test_summaries import read_events
from zssr_tf import ZSSR, Config
from zssr_tf.config import ConfigError
from zssr_tf.degradations import anisotropic_gaussian_kernel
from zssr_tf.image_io import write_image
from zssr_tf.imresize import imresize
from zssr_tf.kernel_estimation import (BICUBIC_FLOOR, ConstraintSchedule, KernelGAN, bicubic_downscale_kernel,
                                       compose_x4, crop_maps, crop_probability_map, estimate_kernels, gradient_map,
                                       kernel_error, sample_corners, significant_kernel)
from zssr_tf.kernels import kernel_shift, load_kernel
from zssr_tf.models.kernelgan import build_linear_generator, build_patch_discriminator, read_kernel

TINY_KERNELGAN = {"kernelgan_width": 8, "kernelgan_discriminator_depth": 3, "kernelgan_max_iters": 6,
                  "display_every": 2, "progress": False}


def compose_layers(weights):
    """The kernel of stacked valid correlations, composed tap by tap (independently of `read_kernel`)."""
    total = weights[0]  # [kh, kw, 1, c]
    for w in weights[1:]:
        size = total.shape[0] + w.shape[0] - 1
        out = np.zeros((size, size, 1, w.shape[3]))
        for a in range(w.shape[0]):
            for b in range(w.shape[1]):
                out[a:a + total.shape[0], b:b + total.shape[1]] += np.einsum("hwim,mo->hwio", total, w[a, b])
        total = out
    return total[:, :, 0, 0]


def test_read_kernel_is_the_composition_of_the_layers_and_what_the_generator_does():
    generator = build_linear_generator(width=6, seed=3)
    kernel = read_kernel(generator).numpy()
    assert kernel.shape == (13, 13)
    np.testing.assert_allclose(kernel, compose_layers([w.numpy() for w in generator.weights]), rtol=1e-4,
                               atol=1e-7)
    image = smooth_image(40, 38, 1, seed=1)[None]
    out = generator(image).numpy()[0, :, :, 0]
    expected = scipy.signal.correlate2d(image[0, :, :, 0], kernel, mode="valid")[::2, ::2]
    assert out.shape == expected.shape == (14, 13)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_patch_discriminator_sees_7x7_patches():
    discriminator = build_patch_discriminator(channels=3, width=8, depth=4, seed=0)
    assert discriminator(np.zeros((1, 26, 26, 3), np.float32)).shape == (1, 20, 20, 1)
    assert len([w for w in discriminator.weights if "kernel" in w.path]) == 4


def test_bicubic_kernel_is_matlab_imresize_by_half_aligned_with_the_generator():
    crop = smooth_image(64, 64, 1, seed=2)[:, :, 0]
    by_kernel = scipy.signal.correlate2d(crop[3:, 3:], bicubic_downscale_kernel(), mode="valid")[::2, ::2][:26, :26]
    np.testing.assert_allclose(by_kernel[2:-2, 2:-2], imresize(crop, 0.5)[3:29, 3:29][2:-2, 2:-2], atol=1e-6)
    assert bicubic_downscale_kernel().sum() == pytest.approx(1.0)


def test_post_processing_sizes_and_sum():
    gaussian = anisotropic_gaussian_kernel(1.5, 0.8, 0.3, 13)
    noisy = gaussian + np.random.default_rng(0).normal(0, 1e-3, gaussian.shape)
    cleaned = significant_kernel(noisy)
    assert cleaned.sum() == pytest.approx(1.0) and cleaned.min() >= 0
    floor = 0.75 * np.sort(noisy.ravel())[-41]  # the negligible taps vanish, the others keep their order
    assert np.all(cleaned[noisy <= floor] == 0) and np.all(cleaned[noisy > floor] > 0)
    assert np.argmax(cleaned) == np.argmax(noisy)
    kernel_x2 = kernel_shift(cleaned, 2)
    assert kernel_x2.shape == (17, 17)  # a centred 13x13 kernel moves half a pixel: 2 pixels of margin
    kernel_x4 = compose_x4(kernel_x2)
    assert kernel_x4.shape == (33, 33) and kernel_x4.sum() == pytest.approx(1.0)


def test_x4_kernel_is_two_x2_steps():
    kernel_x2 = kernel_shift(anisotropic_gaussian_kernel(2.0, 0.6, 1.0, 13), 2)
    kernel_x4 = compose_x4(kernel_x2)
    image = smooth_image(120, 120, 1, seed=4)[:, :, 0].astype(np.float64)

    def down(x, k, s):
        return scipy.signal.correlate2d(x, k, mode="valid")[::s, ::s]

    twice = down(down(image, kernel_x2, 2), kernel_x2, 2)
    # The composed kernel is the uncut one's interior: the first output pixel of the cut kernel sits k // 2 further.
    once = down(image[8:, 8:], kernel_x4, 4)
    n = min(twice.shape[0], once.shape[0])
    np.testing.assert_allclose(once[:n, :n], twice[:n, :n], atol=2e-4)


def test_constraint_schedule_switches_when_it_should():
    schedule = ConstraintSchedule(bicubic=5.0, centralized=1.0, sparse=5.0)
    losses = [1.0] * 10 + [0.1, 0.1, 0.9] + [0.1] * 3000  # below 0.4 from 10, broken at 12, again from 13
    changes = [i for i in range(3000) if schedule.update(i, losses[i])]
    assert schedule.reached == 15  # three iterations in a row below the threshold: 13, 14, 15
    assert changes == [200, 400, 600]  # then every 200 iterations until the floor
    assert schedule.constraints_from == 400  # the first weight below 5e-3 (5e-4)
    assert schedule.weights == {"bicubic": BICUBIC_FLOOR, "centralized": 1.0, "sparse": 5.0}
    never = ConstraintSchedule(5.0, 1.0, 5.0)
    assert not any(never.update(i, 0.5) for i in range(1000)) and never.reached is None


def test_crops_are_drawn_where_the_image_has_structure():
    image = np.full((80, 80, 1), 0.5, np.float32)
    image[:, 50:, 0] = (np.indices((80, 30))[1] // 2) % 2  # stripes on the right, flat on the left
    g_map, d_map = crop_maps(image, 20, 20)
    for weights in (g_map, d_map):
        corners = sample_corners(weights, 20, 500, np.random.default_rng(0))
        assert np.all(corners % 2 == 0) and corners.min() >= 0 and corners[:, 1].max() <= 60
        assert np.mean(corners[:, 1] + 10 > 40) > 0.95  # the centres sit near the stripes


def test_corners_are_moved_inside_then_made_even():
    weights = np.zeros((41, 41))
    weights[40, 40] = 1  # every centre in the corner pixel: the crop is moved inside (corner 21, odd), then to 20
    assert sample_corners(weights, 20, 3, np.random.default_rng(0)).tolist() == [[20, 20]] * 3


def kernelgan_gradient_map(image):
    """KernelGAN's gradient map, written out with a sort and scipy's convolution (its own tools), on rgb2gray."""
    luma = image @ np.array([0.299, 0.587, 0.114])
    d0, d1 = np.gradient(luma)

    def zero_border(x, edge):
        out = np.zeros_like(x)
        out[edge:-edge, edge:-edge] = x[edge:-edge, edge:-edge]
        return out

    def top_three_percent(x):
        ordered = np.sort(x.ravel())
        low = ordered[int(0.97 * x.size)]
        high = ordered[int(0.97 * x.size) + 1]
        return np.clip(x, low, high if high > low else low + 1e-5) - low

    terms = [top_three_percent(zero_border(np.abs(d0), 5)), top_three_percent(zero_border(np.abs(d1), 5)),
             zero_border(np.hypot(d0, d1), 5)]
    total = scipy.signal.convolve2d(sum(t / t.sum() for t in terms), np.ones((5, 5)), "same") / 25
    return total / total.mean()


def test_gradient_and_probability_maps_are_kernelgans():
    image = smooth_image(70, 90, 3, seed=4).astype(np.float64)
    image[20:30, 40:44] += 0.3
    expected = kernelgan_gradient_map(image)
    np.testing.assert_allclose(gradient_map(image), expected, rtol=1e-9, atol=1e-12)
    blurred = scipy.signal.convolve2d(expected, np.ones((13, 13)), "same") / 169
    blurred[:13], blurred[-13:], blurred[:, :13], blurred[:, -13:] = 0, 0, 0, 0
    np.testing.assert_allclose(crop_probability_map(expected, 26), blurred / blurred.sum(), rtol=1e-9, atol=1e-15)


def test_the_map_weighs_a_short_strong_edge_above_a_long_weak_one():
    """KernelGAN's indicator of the top 3% of gradients leaves the long weak edge (a full-height ramp) out; the
    capped map of earlier releases keeps its every pixel."""
    image = np.full((128, 128, 1), 0.2)
    image[30:42, 30:42] = 0.7  # a 12-px bright square: short strong edges
    image[:, :, 0] += np.clip((np.arange(128) - 90) / 6, 0, 1)[None, :] * 0.05
    kernelgan = crop_maps(image, 40, 26)[1][:, :64].sum()
    capped = crop_maps(image, 40, 26, "capped")[1][:, :64].sum()
    assert kernelgan > 0.9 and capped < 0.85


def test_generators_crops_follow_the_map_of_the_half_size_image():
    """Period-4 stripes become period 2 at x0.5, whose central differences are 0: D's crops find them, G's do not."""
    image = np.full((128, 128, 1), 0.5)
    image[:, :64, 0] = 0.3 + 0.4 * ((np.arange(64) // 2) % 2)
    image[:, 64:, 0] = 0.3 + 0.4 * ((np.arange(64) // 8) % 2)  # period 16: structure at both sizes
    g_map, d_map = crop_maps(image, 40, 26)
    g_centres = sample_corners(g_map, 40, 400, np.random.default_rng(0))[:, 1] + 20
    d_centres = sample_corners(d_map, 26, 400, np.random.default_rng(0))[:, 1] + 13
    assert np.mean(g_centres < 64) < 0.15 and np.mean(d_centres < 64) > 0.6
    assert crop_maps(image, 40, 26, "capped")[0][:, :64].sum() > 0.6  # earlier releases: G's map was D's


def test_discriminator_judges_the_updated_generator():
    """KernelGAN trains D on G's output after G's step; `updated_output` computes it from G's kernel."""
    trainer = KernelGAN(smooth_image(64, 64), Config().replace(**TINY_KERNELGAN))
    g_input, d_real = next(iter(trainer.example_dataset(1)))
    trainer.train_step(g_input, d_real)
    expected = trainer.networks["generator"](g_input).numpy()[:, :, :, 0].transpose(1, 2, 0)[None]
    np.testing.assert_allclose(trainer.updated_output(g_input).numpy(), expected, atol=1e-6)


def test_schedule_runs_on_the_engine():
    """G's bicubic loss on a smooth image starts low, so the similarity is reached at iteration 3: the bicubic weight
    then drops at 200 and 400 (the constraints switch on), and the learning rates at the decay interval."""
    conf = Config().replace(**{**TINY_KERNELGAN, "kernelgan_max_iters": 410,
                               "kernelgan_learning_rate_decay_every": 300, "display_every": 100})
    trainer = KernelGAN(smooth_image(64, 64), conf)
    trainer.run()
    assert trainer.schedule.reached == 3 and trainer.schedule.constraints_from == 400
    assert trainer.history[-1].learning_rate_change_iters == [300]
    assert trainer.constraint_weights["bicubic"].numpy() == pytest.approx(5e-4)
    assert trainer.constraint_weights["sparse"].numpy() == 5.0
    assert trainer.optimizers["generator"].optimizer.learning_rate.numpy() == pytest.approx(2e-5)


def test_crops_find_a_small_textured_object_on_a_flat_background():
    image = np.full((100, 100, 1), 0.5, np.float32)
    image[60:70, 20:30, 0] = np.random.default_rng(1).uniform(size=(10, 10))  # 1% of the pixels
    corners = sample_corners(crop_maps(image, 40, 26)[1], 26, 200, np.random.default_rng(0))
    centres = corners + 13
    assert np.all(np.abs(centres - [65, 25]).max(axis=1) <= 20)


def test_kernel_error_ignores_padding_and_centre():
    kernel = anisotropic_gaussian_kernel(2.0, 1.0, 0.5, 13)
    assert kernel_error(kernel_shift(kernel, 2), kernel) < 1e-4  # two spline shifts of half a pixel
    assert kernel_error(anisotropic_gaussian_kernel(0.3, 0.3, 0, 13), kernel) > 1e-2


def test_estimated_kernel_of_a_blurred_image_is_closer_to_its_blur_than_to_bicubic():
    """A small, fast case: a wide isotropic Gaussian (std 1.7 px) made the x2 image; bicubic's is narrow."""
    true = anisotropic_gaussian_kernel(3.0, 3.0, 0.0, 13)
    rng = np.random.default_rng(0)
    hr = np.clip(cv2_blocks(rng), 0, 1)
    lr = imresize(hr, 0.5, kernel=kernel_shift(true, 2)).astype(np.float32)
    conf = Config().replace(kernelgan_width=16, kernelgan_max_iters=500, kernelgan_learning_rate_decay_every=250,
                            progress=False, display_every=100)
    estimate = estimate_kernels(lr, conf)
    bicubic = bicubic_downscale_kernel()
    assert kernel_error(estimate.kernel_x2, true) < kernel_error(estimate.kernel_x2, bicubic)
    assert kernel_error(estimate.kernel_x2, true) < kernel_error(bicubic, true)


def cv2_blocks(rng):
    """An HR image of random sharp-edged rectangles (structure at every orientation the critic can compare)."""
    image = np.full((192, 192, 1), 0.5)
    for _ in range(60):
        top, left = rng.integers(0, 170, size=2)
        h, w = rng.integers(6, 40, size=2)
        image[top:top + h, left:left + w] = rng.uniform()
    return image


def test_estimate_kernels_runs_on_the_engine(tmp_path):
    conf = Config().replace(**TINY_KERNELGAN)
    estimate = estimate_kernels(smooth_image(70, 66), conf, summary_dir=tmp_path / "tb")
    assert estimate.history.iterations == 6
    assert {"loss", "gan_loss", "discriminator_loss", "bicubic_loss", "sparse_loss"} <= set(estimate.history.scalars)
    assert estimate.kernel_x2.sum() == pytest.approx(1.0, abs=1e-3) and estimate.kernel_x4.shape[0] > 17
    events = read_events(tmp_path / "tb")
    assert [step for step, _, _ in events["kernel"]] == [0, 2, 4]  # the kernel as an image every display_every
    assert {"train/bicubic_loss", "constraint_weights/bicubic"} <= set(events)
    assert [k.shape for k in estimate.for_stages(((2.0, 2.0), (4.0, 4.0)))] == [estimate.kernel_x2.shape,
                                                                                 estimate.kernel_x4.shape]


def test_refusals_are_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match="estimate_kernels: KernelGAN's kernels are for x2 and x4"):
        Config().replace(estimate_kernels=True, scale_factors="3")
    with pytest.raises(ValueError, match="too small for kernelgan"):
        estimate_kernels(smooth_image(50, 90), Config().replace(**TINY_KERNELGAN))
    with pytest.raises(ValueError, match="estimate_kernels: give the trainer the kernels"):
        ZSSR(smooth_image(30, 30), Config().replace(estimate_kernels=True)).run()
    with pytest.raises(ConfigError, match="DGDML-SR learns the image's degradation itself"):
        Config().replace(method="dgdml", estimate_kernels=True)
    write_image(tmp_path / "small.png", smooth_image(40, 40))
    status, _, err = zssr(capsys, "estimate-kernel", f"--input={tmp_path / 'small.png'}", "--scale=3")
    assert status == 2 and err.count("\n") == 1 and "--scale=3" in err
    status, _, err = zssr(capsys, "estimate-kernel", f"--input={tmp_path / 'small.png'}",
                          f"--output_dir={tmp_path / 'out'}", "--export_model")
    assert status == 1 and "too small for kernelgan (at least 64x64" in err and err.count("\n") == 1
    assert not os.path.exists(tmp_path / "out")
    status, _, err = zssr(capsys, "--kernels=estimate", "--scale_factors=3", f"--input={tmp_path / 'small.png'}")
    assert status == 1 and err.count("\n") == 1 and "x2 and x4" in err
    status, _, err = zssr(capsys, "--scale=2", f"--input={tmp_path / 'small.png'}")
    assert status == 2 and "--scale is for zssr estimate-kernel" in err
    # A bad ground truth is refused before the estimation, not after it.
    write_image(tmp_path / "gt.png", smooth_image(20, 20))
    status, _, err = zssr(capsys, "--kernels=estimate", f"--input={tmp_path / 'small.png'}",
                          f"--ground_truth={tmp_path / 'gt.png'}", f"--output_dir={tmp_path / 'out'}")
    assert status == 1 and "ground truth 20x20 is smaller than the output" in err
    assert not os.path.exists(tmp_path / "out")
    # A flat image (KernelGAN spent 316 s on one, then restarted): refused before training, in one line.
    write_image(tmp_path / "flat.png", np.full((80, 80, 3), 0.4, np.float32))
    status, _, err = zssr(capsys, "estimate-kernel", f"--input={tmp_path / 'flat.png'}",
                          f"--output_dir={tmp_path / 'out'}")
    assert status == 1 and err.count("\n") == 1 and "is flat (one value everywhere)" in err, err
    assert not os.path.exists(tmp_path / "out")


def test_estimate_kernel_command_writes_mat_files_zssr_reads(tmp_path, capsys):
    write_image(tmp_path / "img.png", smooth_image(72, 80))
    flags = [f"--{k}={v}" for k, v in TINY_KERNELGAN.items()]
    status, out, err = zssr(capsys, "estimate-kernel", f"--input={tmp_path / 'img.png'}", "--scale=4",
                            f"--output_dir={tmp_path / 'out'}", "--export_model", *flags)
    assert status == 0, err
    assert os.path.isfile(tmp_path / "out" / "img_kernelgan_checkpoint" / "checkpoint")  # G, D and their Adams
    for scale, size in ((2, 17), (4, 33)):
        path = tmp_path / "out" / f"img_kernel_x{scale}.mat"
        assert f"img_kernel_x{scale}.mat" in out and os.path.isfile(str(path)[:-4] + ".png")
        assert "Kernel" in scipy.io.loadmat(path)
        assert load_kernel(path).shape[0] >= size and load_kernel(path).sum() == pytest.approx(1.0, abs=1e-3)
    with open(tmp_path / "out" / "img_kernel_log.json") as f:
        log = json.load(f)
    assert log["iterations"] == 6 and log["stages"][0]["scalars"]["bicubic_loss"]


def test_zssr_with_estimated_kernels_writes_them_and_uses_them(tmp_path, capsys, monkeypatch):
    given = []
    set_kernels = ZSSR.set_kernels
    monkeypatch.setattr(ZSSR, "set_kernels", lambda self, kernels: (given.append(kernels), set_kernels(self, kernels)))
    write_image(tmp_path / "img.png", smooth_image(64, 64))
    flags = [f"--{k}={v}" for k, v in TINY_KERNELGAN.items()]
    status, out, err = zssr(capsys, f"--input={tmp_path / 'img.png'}", f"--output_dir={tmp_path / 'out'}",
                            "--flagfile=flags/x4_estimated_kernel.cfg", "--width=8", "--depth=3", "--crop_size=24",
                            "--max_iters=6", "--run_test=false", *flags)
    assert status == 0, err
    assert "kernels estimated in" in out
    with open(tmp_path / "out" / "img_log.json") as f:
        log = json.load(f)
    assert [os.path.basename(k) for k in log["kernels"]] == ["img_kernel_x2.mat", "img_kernel_x4.mat"]
    assert log["kernel_estimation"]["iterations"] == 6 and log["iterations"] == [6, 6]
    (kernels,) = given  # what ZSSR's stages downscale with: the files' kernels
    for kernel, path in zip(kernels, log["kernels"]):
        np.testing.assert_allclose(kernel, load_kernel(path))
    assert sorted(os.listdir(tmp_path / "out")) == [
        "config.json", "img_kernel_x2.mat", "img_kernel_x2.png", "img_kernel_x4.mat", "img_kernel_x4.png",
        "img_log.json", "img_record.json", "img_zssr_X2.00X2.00.png", "img_zssr_X4.00X4.00.png"]
