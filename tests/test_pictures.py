"""The pictures of a run say what they show: labelled panels with their PSNR, labelled axes, the final PSNR."""

import dataclasses

import numpy as np
import pytest

from tests.conftest import smooth_image
from zssr_tf import pictures
from zssr_tf.engine import StageHistory
from zssr_tf.image_io import read_image
from zssr_tf.metrics import psnr


def _texts(figure):
    return [t.get_text() for t in figure.findobj(lambda artist: hasattr(artist, "get_text"))]


@pytest.mark.parametrize("channels", [3, 1])
def test_comparison_panels_are_named_and_scored_as_the_command_prints(channels, tmp_path):
    gt = smooth_image(40, 44, channels=channels, seed=1)
    bicubic = np.clip(gt + 0.05, 0, 1)
    sr = np.clip(gt + 0.01, 0, 1)
    figure = pictures.comparison_figure(bicubic, sr, gt, method="ZSRGAN")
    axes = figure.axes
    assert [a.get_title() for a in axes] == ["bicubic", "ZSRGAN", "ground truth"]
    assert [a.get_xlabel() for a in axes] == [f"Y-PSNR {psnr(bicubic, gt):.2f} dB", f"Y-PSNR {psnr(sr, gt):.2f} dB",
                                              "(the reference)"]
    assert "centre 40x44 pixels, zoomed x4" in " ".join(_texts(figure))  # narrow crops are zoomed more
    pictures.comparison_crop(bicubic, sr, gt, tmp_path / "c.png")
    assert read_image(tmp_path / "c.png").pixels.shape[1] >= 3 * pictures.MIN_PANEL_PIXELS


def _stage(scale, errors, true_psnr=(), drops=()):
    steps = list(range(0, 20 * len(errors), 20))
    return StageHistory(scale_factor=(scale, scale), iterations=20 * len(errors), test_steps=steps,
                        reconstruction_mse=list(errors), true_mse=[10 ** (-p / 10) for p in true_psnr],
                        learning_rate_change_iters=list(drops))


def test_training_plot_has_labelled_axes_drops_stages_and_the_final_psnr():
    history = [_stage(1.5, [2e-3, 1.5e-3, 1e-3], [30.0, 30.5, 31.0], drops=[40]),
               _stage(2.0, [1.2e-3, 9e-4, 8e-4], [31.0, 31.5, 31.8])]
    figure = pictures.training_figure(history, final_psnr=(32.4, 34.1), final_test="4 back-projections")
    error_axis, psnr_axis = figure.axes
    for axis in (error_axis, psnr_axis):
        assert axis.get_xlabel() == "iteration" and axis.get_ylabel() and axis.get_title()
        legend = [t.get_text() for t in axis.get_legend().get_texts()]
        assert "learning-rate drop" in legend and "next stage starts" in legend
    assert psnr_axis.get_ylabel() == "PSNR (dB, all channels)"
    final = [t for t in psnr_axis.get_legend().get_texts() if t.get_text().startswith("final output")]
    assert final and "4 back-projections" in final[0].get_text() and "32.40 dB" in final[0].get_text()
    assert "34.10 dB" in final[0].get_text()  # the Y-PSNR the command prints, named as such
    star = [line for line in psnr_axis.lines if line.get_marker() == "*"]
    assert star and star[0].get_xdata()[0] == 120 and star[0].get_ydata()[0] == 32.4  # at the end of training
    # Under a decade of error the axis is linear (a log axis would show one or two tick labels).
    assert error_axis.get_yscale() == "linear"
    wide = dataclasses.replace(history[0], reconstruction_mse=[1e-2, 1e-3, 5e-4])
    assert pictures.training_figure([wide]).axes[0].get_yscale() == "log"
