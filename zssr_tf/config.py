"""The configuration of a run: nested frozen dataclasses, their validation, and their text forms.

`Config` holds the chosen `method` and one group per concern:
  * `run` (`RunConfig`): what every method shares: seed, precision, example pipeline, XLA, tiling, limits,
    reporting, starting weights;
  * `task` (`TaskConfig`): what is asked of every method: the scale factors (gradual stages) and the degradation
    model (kernels that made the LR image and that interpolate);
  * one group per method (`zssr`: `ZSSRConfig`, the original TF1 `configs.Config` fields and defaults;
    `zsrgan`: `ZSRGANConfig`; `dgdml`: `DGDMLConfig`), read only by that method;
  * `kernelgan` (`KernelGANConfig`): the kernel estimator's (`zssr estimate-kernel`, `--estimate_kernels`);
  * `pretrain` (`PretrainConfig`): the `zssr pretrain` command's network and schedule.

Every field is a flag (`FLAG_FIELDS`, generated from the dataclasses so they never drift apart): the shared
groups' and ZSSR's fields keep their bare names (the original's vocabulary, `--max_iters`), the other methods'
fields carry the method's name (`--zsrgan_max_iters`), so no two flags clash. Flagfiles and `Config.from_dict` take
those flat names; JSON (`config.json`) is nested. Configs are frozen: variants are made with `Config.replace`
(flat names) or `dataclasses.replace`, never by mutation (the original's derived `filter_shape` went stale that
way). Reading a config imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from zssr_tf.imresize import KERNEL_NAMES

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
PIPELINES = ("auto", "host", "device")
METHOD_NAMES = ("zssr", "zsrgan", "dgdml")
METHOD_TITLES = {"zssr": "ZSSR", "zsrgan": "ZSRGAN", "dgdml": "DGDML-SR"}  # as the papers write them
VGG_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv1", "block3_conv3", "block4_conv3", "block5_conv3")
VGG16_CONV_LAYERS = tuple(f"block{b}_conv{c}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
                          for c in range(1, n + 1))
UPSAMPLERS = ("interpolate", "pixel_shuffle")
POLICIES = ("original", "robust")
PRETRAIN_ARCHS = ("vdsr", "zssr")
VGG19_LAYERS = ("block2_conv2", "block3_conv4", "block4_conv4", "block5_conv4")
INIT_WEIGHTS_SUFFIXES = (".keras", ".weights.h5")
ESTIMATED_SCALES = ((2.0, 2.0), (4.0, 4.0))

ScalePair = tuple[float, float]


class ConfigError(ValueError):
    """A configuration value or preset file is invalid (the message is one line)."""


def _field(default: Any, help_text: str, choices: tuple[str, ...] | None = None) -> Any:
    return dataclasses.field(default=default, metadata={"help": help_text, "choices": choices})


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_positive(group: Any, names: tuple[str, ...], prefix: str = "") -> None:
    for name in names:
        _check(getattr(group, name) >= 1, f"{prefix}{name}: must be >= 1, got {getattr(group, name)}")


def _check_nonnegative(group: Any, names: tuple[str, ...], prefix: str = "") -> None:
    for name in names:
        value = getattr(group, name)
        _check(math.isfinite(value) and value >= 0, f"{prefix}{name}: must be a finite number >= 0, got {value}")


def _check_choice(group: Any, prefix: str = "") -> None:
    for f in dataclasses.fields(group):
        choices = f.metadata.get("choices")
        if choices is not None:
            value = getattr(group, f.name)
            _check(value in choices, f"{prefix}{f.name}: {value!r} is not one of {', '.join(choices)}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Settings every method shares: randomness, computation, limits, reporting, weights from disk."""

    seed: int = _field(0, "Seed of every random choice (weights, training examples, noise): same seed, same output.")
    precision: str = _field(
        "auto", "Compute precision of the networks: float32, mixed_bfloat16, mixed_float16, or auto "
        "(mixed_bfloat16 where the CPU or GPU computes bfloat16 natively, else float32). Variables, the losses and "
        "the residual stay float32.", PRECISIONS)
    pipeline: str = _field(
        "auto", "Where ZSSR's training examples are made: host (numpy/OpenCV in a background thread), device "
        "(TensorFlow ops; on the GPU when there is one), or auto (host: measured faster on the CPU and on an H100 "
        "alike).", PIPELINES)
    jit_compile: bool = _field(
        False, "Compile the train step with XLA. Off by default: XLA is slower on CPUs. On a GPU, where the step is "
        "bound by kernel launches, fusing them may pay (not yet measured).")
    max_output_megapixels: float = _field(
        64.0, "Largest output, in megapixels, a run accepts (a larger input is refused from its header): the final "
        "test streams tiles (--final_test_tile), so its memory is about two copies of the output plus the tiles, but "
        "its time grows with the output.")
    tile_size: int = _field(
        512, "Side of the tiles the network runs on at test time, bounding memory on large images (the result is "
        "the same as in one piece).")
    final_test_tile: int = _field(
        1024, "Side, in output pixels, of the tiles the final test streams through all its parts (rotations and "
        "mirrors, median, back-projections), each with the margin that makes the result the same as in one piece "
        "(measured at 1024: 6% slower than one piece, 43% less memory); outputs no larger, and scale factors "
        "whose pixel grids do not line up on a small period (with a numeric kernel: not whole numbers), are done "
        "in one piece, with a warning. 0: always in one piece.")
    quick_test_megapixels: float = _field(
        1.0, "Largest part of the input, in megapixels, the quick tests reconstruct (its centre): on larger photos "
        "the tests would otherwise take longer than the training. 0: the whole input, as the paper.")
    divergence_retries: int = _field(
        2, "When a stage diverges (non-finite weights, or a non-finite loss at two checks of the loop in a row), "
        "its networks go back to the last good weights (kept at every check) and, up to this many times, go on at "
        "a tenth of the learning rate (ZSSR, while that stays above min_learning_rate); after that, or for methods "
        "with a fixed schedule (ZSRGAN, DGDML-SR, kernel estimation), the stage ends with those weights.")
    checkpoint_every: int = _field(
        0, "Iterations between checkpoints of a run's whole training state (networks, optimizers, schedule, "
        "history, finished stages' outputs) in <output_dir>/<name>_<method>_resume/, from which the same command "
        "resumes after an interruption (Ctrl-C, kill, a lost machine) with the output an uninterrupted run gives; "
        "removed when the image is done. 0: none.")
    display_every: int = _field(20, "Iterations between the log lines of the train step's losses.")
    progress: bool = _field(
        True, "Whether to show a progress bar per stage (iteration, loss, learning rate, elapsed time, time left) "
        "in a notebook or on a terminal; where stderr is not a terminal the log lines report progress instead.")
    name: str = _field("test", "Name of the run, prefixed to its log lines (the command uses each image's file "
                       "name).")
    vgg_weights: str = _field(
        "imagenet", "ImageNet VGG weights of perceptual losses (ZSRGAN's and ZSSR's --perceptual_weight VGG16; VGG19 "
        "for --dgdml_cycle_loss=vgg): "
        "imagenet (Keras's cached file, e.g. ~/.keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5, "
        "which is never downloaded here), the path of such an .h5 file, or none (no perceptual loss).")
    init_weights: str = _field(
        "", "Weights to start from instead of random ones, fine-tuned on each image: a checkpoint folder written "
        "by --export_model (every network it holds that this method has), or a generator saved as .keras or "
        ".weights.h5. Empty starts from random weights.")

    def __post_init__(self) -> None:
        _check_choice(self)
        _check_positive(self, ("tile_size", "display_every"))
        _check(self.max_output_megapixels > 0, "max_output_megapixels: must be > 0")
        _check(self.final_test_tile >= 0, "final_test_tile: must be >= 0")
        _check(self.divergence_retries >= 0, "divergence_retries: must be >= 0")
        _check(self.checkpoint_every >= 0, "checkpoint_every: must be >= 0")
        _check(math.isfinite(self.quick_test_megapixels) and self.quick_test_megapixels >= 0,
               "quick_test_megapixels: must be a finite number >= 0")
        _check(self.seed >= 0, "seed: must be >= 0")
        _check(self.vgg_weights in ("imagenet", "none") or self.vgg_weights.endswith(".h5"),
               f"vgg_weights: {self.vgg_weights!r} is not imagenet, none or an .h5 file")
        weights = self.init_weights.rstrip("/")
        _check(not weights or weights.endswith(INIT_WEIGHTS_SUFFIXES) or not os.path.splitext(weights)[1],
               f"init_weights: {self.init_weights} is not a checkpoint folder or a "
               f"{' or '.join(INIT_WEIGHTS_SUFFIXES)} file")


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """What every method is asked to do: the scale factors and the degradation model of the LR image."""

    scale_factors: tuple[ScalePair, ...] = _field(
        ((2.0, 2.0),),
        "Scale factors, one per gradual stage, each a number or a vertical x horizontal pair, comma separated "
        "(e.g. 2 or 1x1.5,1.5x1,1.5,1.5x2,2x1.5,2). Every stage upscales the input; the last one is the result.")
    downscale_method: str = _field(
        "cubic", f"Kernel used to make LR sons when no kernel file is given; one of {', '.join(KERNEL_NAMES)}.",
        KERNEL_NAMES)
    upscale_method: str = _field(
        "cubic", "Interpolation that brings LR sons to the father's size (the network learns its residual) and "
        "that back-projection upscales with.", KERNEL_NAMES)
    downscale_gt_method: str = _field(
        "cubic", "Kernel that shrinks the ground truth to intermediate gradual scales (monitoring only).",
        KERNEL_NAMES)
    estimate_kernels: bool = _field(
        False, "Whether to estimate the image's own downscaling kernel before super-resolving it (KernelGAN, "
        "--kernelgan_* flags) and use it for every stage (x2: the estimated kernel; x4: that kernel composed with "
        "itself), when no kernel files are given. Every scale factor must be 2 or 4. --kernels=estimate says the "
        "same.")

    def __post_init__(self) -> None:
        _check_choice(self)
        _check(len(self.scale_factors) >= 1, "scale_factors: give at least one scale factor")
        for sf in self.scale_factors:
            _check(len(sf) == 2 and all(math.isfinite(s) for s in sf), f"scale_factors: {sf} is not a pair of numbers")
            _check(min(sf) >= 1.0 and max(sf) > 1.0,
                   f"scale_factors: {format_value((sf,))} must upscale (every factor >= 1, one > 1)")
            _check(not self.estimate_kernels or sf in ESTIMATED_SCALES,
                   f"estimate_kernels: KernelGAN's kernels are for x2 and x4 (x2 composed with itself), not "
                   f"{format_value((sf,))}; use scale factors 2 or 2,4 or give kernel files")

    @property
    def num_stages(self) -> int:
        return len(self.scale_factors)

    @property
    def final_scale_factor(self) -> ScalePair:
        return self.scale_factors[-1]


@dataclasses.dataclass(frozen=True)
class ZSSRConfig:
    """ZSSR's own settings, with the defaults of the original code (X2 one jump, ideal bicubic)."""

    back_projection_iters: tuple[int, ...] = _field(
        (10,), "Back-projection iterations of each stage's final test, comma separated, one per scale factor.")
    init_net_for_each_sf: bool = _field(
        False, "Whether to re-initialise the network and its optimizer at every gradual stage instead of going on.")
    # Network.
    width: int = _field(64, "Number of channels of the hidden convolution layers.")
    depth: int = _field(8, "Number of 3x3 convolution layers of the network.")
    init_variance: float = _field(
        0.1, "Weights start as N(0, init_variance / (3 * 3 * input channels)): near zero, so training starts "
        "from the interpolated input.")
    learn_residual: bool = _field(
        True, "Whether the network learns the residual between the interpolated LR son and the HR father.")
    upsampler: str = _field(
        "interpolate", "Where the image is upscaled: interpolate (the paper's: the network refines the LR son "
        "interpolated to the father's size) or pixel_shuffle (the course report's 8.1: the network takes the LR son "
        "itself, all its convolutions run at the LR size and the last one gives scale^2 x channels that "
        "depth_to_space rearranges; the global residual stays on the interpolated son). pixel_shuffle needs an "
        "integer scale factor, the same vertically and horizontally, at every stage; a stage with another factor "
        "gets a new last layer, keeps the other layers' weights and starts a new Adam (with init_net_for_each_sf "
        "every stage starts anew).", UPSAMPLERS)
    backbone: str = _field(
        "", "A pretrained network (.keras, e.g. from zssr pretrain) run frozen in front of the ZSSR network, which "
        "then refines its output (the course report's 8.2); only the ZSSR network trains on the image. Empty: none.")
    # The hybrid loss (the course report's 8.3).
    perceptual_weight: float = _field(
        0.0, "Weight of the content loss added to the L1 loss (the course report's hybrid loss): the L1 distance "
        "between frozen VGG16 features (--perceptual_layers, averaged over them) of the network's output for the "
        "whole input's son and of the whole input. 0: L1 only, as the paper. Needs --vgg_weights.")
    perceptual_layers: str = _field(
        "block1_conv2,block2_conv2,block3_conv3,block4_conv3",
        "Comma-separated VGG16 layers of the content loss (Keras names; block2_conv2 is relu2_2). The default is "
        "the four ReLU outputs of the perceptual loss the report cites (Johnson et al.); the report does not list "
        "its own.")
    perceptual_every: int = _field(
        1, "The content loss is added every this many iterations (the report: every iteration). Each one runs the "
        "network and VGG16 on the whole input, several train steps' worth of compute on a CPU.")
    # Degradation of the sons.
    noise_std: float = _field(
        0.0, "Standard deviation of the Gaussian noise added to LR sons, in [0, 1] image units (for real, noisy "
        "or compressed inputs).")
    # Training examples.
    crop_size: int = _field(
        128, "Side of the square HR-father crops; it shrinks to the input's smaller side when the input is smaller.")
    augment_leave_as_is_probability: float = _field(
        0.05, "Probability that a father is a plain crop of a source image.")
    augment_no_interpolate_probability: float = _field(
        0.45, "Probability that a father is a crop under a random rotation by a multiple of 90 degrees and "
        "mirror, with no interpolation.")
    augment_min_scale: float = _field(0.5, "Smallest random down-scaling of a father's source image.")
    augment_scale_diff_sigma: float = _field(
        0.25, "Standard deviation of the difference between the horizontal and vertical father scaling.")
    augment_shear_sigma: float = _field(0.1, "Standard deviation of the random shear of affine fathers.")
    augment_allow_rotation: bool = _field(
        True, "Whether fathers may be rotated and mirrored (switch off for kernels that are not symmetric).")
    # Optimisation and the learning-rate policy.
    max_iters: int = _field(3000, "Most training iterations per scale factor.")
    min_iters: int = _field(256, "Fewest iterations between two learning-rate decisions.")
    learning_rate: float = _field(0.001, "Initial Adam learning rate, restored at the start of every stage.")
    min_learning_rate: float = _field(9e-6, "Training of a stage stops once the learning rate falls below this.")
    learning_rate_change_ratio: float = _field(
        1.5, "The learning rate is divided by 10 when -ratio * slope < std of the slope of the reconstruction "
        "error's linear fit.")
    learning_rate_policy_check_every: int = _field(
        60, "The learning-rate policy is checked when (iteration + 1) is a multiple of this.")
    learning_rate_slope_range: int = _field(
        256, "The policy fits the quick tests of the last this-many iterations (slope_range // run_test_every "
        "points).")
    policy: str = _field(
        "original", "The learning-rate policy. original: the paper's and the TF1 code's rule. robust: the same "
        "test, but at a stage's first learning rate the line is fitted to running medians of 3 quick tests, so one "
        "spike of the error cannot end the fast phase (benchmarks/results/policy_check).", POLICIES)
    run_test: bool = _field(
        True, "Whether to run the quick test (reconstruction error of the input from its own son) that drives "
        "the learning-rate policy; without it only max_iters stops training.")
    run_test_every: int = _field(50, "Iterations between quick tests.")
    # Output.
    output_flip: bool = _field(
        True, "Whether the final test averages (median) the 8 rotations and mirrors of the input (4 for "
        "anisotropic scale factors).")

    def __post_init__(self) -> None:
        _check_choice(self)
        _check(all(n >= 0 for n in self.back_projection_iters), "back_projection_iters: must be >= 0")
        _check_positive(self, ("width", "depth", "crop_size", "max_iters", "run_test_every",
                               "learning_rate_policy_check_every", "learning_rate_slope_range"))
        _check(self.crop_size >= 4, f"crop_size: must be >= 4, got {self.crop_size}")
        _check(self.min_iters >= 0, "min_iters: must be >= 0")
        _check_nonnegative(self, ("learning_rate", "min_learning_rate", "init_variance", "learning_rate_change_ratio"))
        _check(self.learning_rate > 0, "learning_rate: must be > 0")
        _check(math.isfinite(self.noise_std) and self.noise_std >= 0, f"noise_std: must be >= 0, got {self.noise_std}")
        p_leave, p_no_interp = self.augment_leave_as_is_probability, self.augment_no_interpolate_probability
        _check(0 <= p_leave <= 1 and 0 <= p_no_interp <= 1 and p_leave + p_no_interp <= 1,
               "augment_*_probability: each in [0, 1] and together at most 1")
        _check(0 < self.augment_min_scale <= 1, f"augment_min_scale: must be in (0, 1], got {self.augment_min_scale}")
        _check(self.augment_scale_diff_sigma >= 0 and self.augment_shear_sigma >= 0, "augment sigmas: must be >= 0")
        _check_positive(self, ("perceptual_every",))
        _check_nonnegative(self, ("perceptual_weight",))
        layers = self.perceptual_layer_names
        _check(bool(layers) and all(name in VGG16_CONV_LAYERS for name in layers),
               f"perceptual_layers: {self.perceptual_layers!r} is not a comma-separated list of VGG16 layers "
               f"({', '.join(VGG16_CONV_LAYERS)})")
        _check(not self.backbone or self.backbone.endswith(".keras"),
               f"backbone: {self.backbone} is not a .keras file")
        _check(not (self.backbone and self.upsampler == "pixel_shuffle"),
               "backbone: a pretrained backbone takes the interpolated image; it cannot go with "
               "--upsampler=pixel_shuffle")
        _check(not self.run_test or self.slope_points >= 3,
               f"learning_rate_slope_range // run_test_every = {self.slope_points}: the policy needs at least 3 "
               "quick-test points to fit a line and its error")

    @property
    def perceptual_layer_names(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.perceptual_layers.split(",") if name.strip())

    @property
    def slope_points(self) -> int:
        """Number of quick-test points the learning-rate policy fits a line to."""
        return self.learning_rate_slope_range // self.run_test_every

    @property
    def filter_shape(self) -> tuple[tuple[int, int, int, int], ...]:
        """Kernel shapes of the layers for RGB, as the original reported them."""
        channels = [3] + [self.width] * (self.depth - 1) + [3]
        return tuple((3, 3, c_in, c_out) for c_in, c_out in zip(channels[:-1], channels[1:]))


@dataclasses.dataclass(frozen=True)
class ZSRGANConfig:
    """ZSRGAN's settings (Lee, Teodoro, Kim): the ZSSR generator, a DCGAN-style discriminator, L1 + VGG16
    perceptual + adversarial losses; defaults from the report."""

    # Networks.
    width: int = _field(64, "ZSRGAN: channels of the generator's hidden 3x3 convolutions.")
    depth: int = _field(8, "ZSRGAN: number of 3x3 convolution layers of the generator.")
    init_variance: float = _field(
        0.1, "ZSRGAN: the generator's weights start as N(0, init_variance / (3 * 3 * input channels)), as ZSSR's, "
        "so training starts from the interpolated input.")
    discriminator_width: int = _field(
        64, "ZSRGAN: channels of the discriminator's first block; each of its 4 blocks doubles them (64 to 512).")
    # Losses (the report's equations 4 and 5).
    reconstruction_weight: float = _field(1.0, "ZSRGAN: weight of the L1 reconstruction loss (lambda_R).")
    perceptual_weight: float = _field(
        1.0, "ZSRGAN: weight of the L1 loss between VGG16 features of the output and the father (lambda_P); "
        "dropped when --vgg_weights=none.")
    adversarial_weight: float = _field(
        1.0, "ZSRGAN: weight of the generator's adversarial (binary cross-entropy) loss (lambda_G).")
    discriminator_loss_weight: float = _field(
        0.5, "ZSRGAN: the discriminator's loss is this times the sum of its real and fake binary cross-entropies.")
    vgg_layer: str = _field(
        "block3_conv1", "ZSRGAN: the VGG16 layer whose ReLU features the perceptual loss compares (block3_conv1 is "
        "the report's relu3_1).", VGG_LAYERS)
    # Optimisation.
    max_iters: int = _field(2000, "ZSRGAN: training iterations per scale factor.")
    learning_rate: float = _field(1e-3, "ZSRGAN: initial Adam learning rate of both networks, at every stage.")
    beta_1: float = _field(0.5, "ZSRGAN: Adam's beta_1 for both networks.")
    learning_rate_decay_every: int = _field(
        500, "ZSRGAN: the learning rate is multiplied by --zsrgan_learning_rate_decay every this many iterations.")
    learning_rate_decay: float = _field(0.5, "ZSRGAN: factor of each learning-rate step.")
    # Training examples.
    crop_size: int = _field(
        128, "ZSRGAN: side of the square father crops (at most the input's smaller side); the discriminator "
        "needs at least 64.")
    min_father_size: int = _field(
        64, "ZSRGAN: the smallest shorter side of a father (a bicubic downscaling of the input); larger fathers "
        "are drawn more often, in proportion to their area.")
    value_range: str = _field(
        "-1,1", "ZSRGAN: the range the networks and the L1 loss compute in: -1,1 (the authors' code: the generator's "
        "convolutions and the discriminator see [-1, 1] images, and the L1 is twice that on [0, 1]) or 0,1.",
        ("-1,1", "0,1"))
    noise_std: float = _field(
        0.1, "ZSRGAN: standard deviation of the Gaussian noise the generator adds to the input of its convolutions "
        "(not to the residual, so it reaches the output only through them), in the units of "
        "--zsrgan_value_range: the authors' 0.1 on [-1, 1].")
    noise_at_test: bool = _field(
        True, "ZSRGAN: whether that noise is also drawn when the generator makes the output (the authors' code "
        "draws it at every forward pass).")
    fathers: str = _field(
        "authors", "ZSRGAN: how fathers are drawn: authors (shorter side from --zsrgan_min_father_size to the "
        "input's, both sides divisible by the scale factor, probability by area; the crop is min(crop_size, the "
        "father's shorter side), so its size varies) or fixed_crop (earlier releases: no father below the crop, "
        "one crop size).", ("authors", "fixed_crop"))
    update: str = _field(
        "d_then_g", "ZSRGAN: d_then_g (the authors' code: the discriminator's step first, then the generator's "
        "loss against the updated discriminator) or joint (both from one forward pass; earlier releases).",
        ("d_then_g", "joint"))
    test_every: int = _field(
        100, "ZSRGAN: iterations between tests: the reconstruction error of the input from its son and, with a "
        "ground truth, the authors' protocol: the generator's whole output, its RGB PSNR (0..255, no shave) and "
        "SSIM, kept with the generator of that test (<name>_zsrgan_tests/).")
    select: str = _field(
        "last", "ZSRGAN: which generator makes the output: last (the last iteration's) or psnr (the test with the "
        "highest PSNR against the ground truth: an oracle, as the report's numbers are, which needs "
        "--ground_truth).", ("last", "psnr"))
    # Output.
    output_flip: bool = _field(
        False, "ZSRGAN: whether the final output is ZSSR's self-ensemble (median of the 8 rotations and mirrors) "
        "instead of the generator on the interpolated input alone, as the report makes it.")
    back_projection_iters: int = _field(
        0, "ZSRGAN: back-projection iterations of the final output (0, as the report; ZSSR uses 10).")

    def __post_init__(self) -> None:
        prefix = "zsrgan_"
        _check_choice(self, prefix)
        _check_positive(self, ("width", "depth", "discriminator_width", "max_iters", "learning_rate_decay_every",
                               "test_every"), prefix)
        _check(self.depth >= 2, "zsrgan_depth: must be >= 2")
        _check(self.crop_size >= 64, f"zsrgan_crop_size: the discriminator needs crops of at least 64, got "
               f"{self.crop_size}")
        _check(1 <= self.min_father_size, "zsrgan_min_father_size: must be >= 1")
        _check(self.fathers == "fixed_crop" or self.min_father_size >= 64,
               f"zsrgan_min_father_size: the discriminator needs crops of at least 64, got {self.min_father_size}")
        _check_nonnegative(self, ("reconstruction_weight", "perceptual_weight", "adversarial_weight",
                                  "discriminator_loss_weight", "init_variance", "noise_std"), prefix)
        _check(self.learning_rate > 0 and math.isfinite(self.learning_rate), "zsrgan_learning_rate: must be > 0")
        _check(0 <= self.beta_1 < 1, "zsrgan_beta_1: must be in [0, 1)")
        _check(0 < self.learning_rate_decay <= 1, "zsrgan_learning_rate_decay: must be in (0, 1]")
        _check(self.back_projection_iters >= 0, "zsrgan_back_projection_iters: must be >= 0")

    def learning_rate_at(self, iteration: int) -> float:
        """The step schedule's learning rate at an iteration of the stage (Python; no device read)."""
        return self.learning_rate * self.learning_rate_decay ** (iteration // self.learning_rate_decay_every)


@dataclasses.dataclass(frozen=True)
class DGDMLConfig:
    """DGDML-SR's settings (Cheng, Fu, Yang, ECCV 2020): depth-guided unpaired patches, a degradation simulation
    network (DSN), a super-resolution network (SRN), two WGAN critics, bi-cycle training; defaults from the paper
    (where the paper is silent, from the authors' code)."""

    # Training data (the paper's 3.1).
    pairing: str = _field(
        "depth", "DGDML: where the training patches come from: depth (unpaired HR patches nearer than the mean "
        "depth, LR patches farther, the paper's 3.1; random regions without a depth map) or bicubic (paired HR "
        "crops of the input and their bicubic sons, the SRN alone with an L1 loss: the paper's comparison with "
        "ZSSR in its 4).", ("depth", "bicubic"))
    depth_guidance: bool = _field(
        True, "DGDML: whether the depth map chooses the HR (near) and LR (far) patches; without (also what runs "
        "when no depth is given) every patch may be HR or LR: the paper's ablation BCN, and with "
        "--nodgdml_bicycle its ablation None.")
    depth_kind: str = _field(
        "depth", "DGDML: what the depth map's values are: depth (larger = farther) or disparity (larger = nearer, "
        "as Middlebury's; depth = 1 / disparity). 0 is unknown either way. The authors' NYU maps (255 - depth) "
        "are neither: give 255 - value as depth.",
        ("depth", "disparity"))
    depth_model: str = _field(
        "", "DGDML: a monocular depth estimator, used when an image has no depth map: a keras-hub preset name "
        "(depth_anything_v2_small, downloaded once; pip install \"zssr-tf[depth]\") or a local preset folder "
        "(save_to_preset), its values disparity; or a .keras model or SavedModel folder taking [1, H, W, 3] RGB in "
        "[0, 1] and returning [1, H, W(, 1)] values of --dgdml_depth_kind. The estimate is kept as "
        "<output_dir>/<name>_depth_estimate.npz and drawn as <name>_depth_split.png. Empty: no estimator.")
    lr_patch_size: int = _field(
        32, "DGDML: side of the LR patches; HR patches are the scale factor times larger (64 at x2, 128 at x4). The "
        "grid's stride is half a patch.")
    min_contrast: float = _field(
        0.05, "DGDML: patches whose contrast (99th minus 1st percentile of the luminance, over 255) is below this "
        "are dropped (the paper's 0.05; the authors' code effectively uses 0.10 on rgb2gray luminance).")
    contrast_luminance: str = _field(
        "ycbcr", "DGDML: the luminance of the contrast filter: ycbcr (BT.601 Y, the paper) or rgb2gray "
        "(0.2125 R + 0.7154 G + 0.0721 B, the authors' code through scikit-image).", ("ycbcr", "rgb2gray"))
    # Networks (the paper's 3.2).
    width: int = _field(64, "DGDML: channels of the hidden convolutions of the DSN and the SRN.")
    srn_depth: int = _field(10, "DGDML: 3x3 convolutions of the SRN's body between F_in and the sub-pixel step.")
    dsn_depth: int = _field(5, "DGDML: 3x3 convolutions of the DSN between F_in and its learned downsampling.")
    critic_width: int = _field(
        64, "DGDML: channels of the critics' first convolutions (doubling to 8 times this, 64..512).")
    # Bi-cycle training (the paper's 3.3).
    bicycle: bool = _field(
        True, "DGDML: bi-cycle training (eqs. 6 and 8: LR->HR->LR and HR->LR->HR with adversarial and cycle "
        "losses); --nodgdml_bicycle keeps eqs. 5 and 7 only (the paper's ablation without BCN).")
    wgan: str = _field(
        "clip", "DGDML: how the critics are kept Lipschitz: clip (weights clipped to +-dgdml_clip_value after each "
        "step, WGAN, the authors' main script) or gp (gradient penalty per sample, WGAN-GP).", ("clip", "gp"))
    clip_value: float = _field(0.01, "DGDML: the critics' weights are clipped to [-clip_value, clip_value].")
    gradient_penalty_weight: float = _field(10.0, "DGDML: weight of the gradient penalty (--dgdml_wgan=gp).")
    cycle_loss: str = _field(
        "l1", "DGDML: the cycle-consistency loss: l1 (the paper's eqs. 6 and 8) or vgg (L1 between VGG19 "
        "features, as the authors' code; needs --vgg_weights pointing to VGG19 ImageNet weights).", ("l1", "vgg"))
    cycle_weight: float = _field(1.0, "DGDML: weight of the cycle losses against the adversarial ones.")
    update: str = _field(
        "authors", "DGDML: how a batch updates the four networks: authors (six RMSprop steps in the authors' order, "
        "each on its own objective and forward pass: D^L, D^H, G^L adversarial, G^H adversarial, G^H on the "
        "HR->LR->HR cycle, G^L on the LR->HR->LR cycle of its own output) or joint (one step of all four on the "
        "sum of the paper's eqs. 5-8, from one forward pass; earlier releases).", ("authors", "joint"))
    depth_learning_rate_scale: bool = _field(
        False, "DGDML: scale every step's learning rate by sigmoid(mean over the batch of the HR patch's mean "
        "inverse depth over the LR patch's), as the authors' main-wgan.py does; not in the paper, and it depends "
        "on the depth map's units (255 - d and 1 / d give other scales), so it is off.")
    vgg_layer: str = _field(
        "block5_conv4", "DGDML: the VGG19 layer of --dgdml_cycle_loss=vgg (block5_conv4 is relu5_4, the authors').",
        VGG19_LAYERS)
    # Optimisation (the paper's 5.1).
    batch_size: int = _field(64, "DGDML: patches per batch, on each side (HR and LR).")
    epochs: int = _field(150, "DGDML: training epochs; an epoch is one pass over the smaller patch side.")
    learning_rate: float = _field(
        1e-4, "DGDML: initial learning rate of the four networks' RMSprop (PyTorch's update: rho 0.99, eps 1e-8 "
        "outside the square root).")
    learning_rate_decay_epochs: int = _field(60, "DGDML: the learning rate is divided by 10 every this many epochs.")
    test_every_epochs: int = _field(
        10, "DGDML: epochs between quick tests (reconstruction error of the input from its bicubic son, true error "
        "with ground truth): monitoring only.")
    # Output.
    output_flip: bool = _field(
        False, "DGDML: whether the output is the median of the SRN on the 8 rotations and mirrors (ZSSR's "
        "self-ensemble) instead of the SRN on the input alone, as the paper makes it.")
    back_projection_iters: int = _field(
        0, "DGDML: back-projection iterations of the output (0, as the paper: the degradation is not bicubic).")

    def __post_init__(self) -> None:
        prefix = "dgdml_"
        _check_choice(self, prefix)
        _check_positive(self, ("width", "srn_depth", "dsn_depth", "critic_width", "batch_size", "epochs",
                               "learning_rate_decay_epochs", "test_every_epochs"), prefix)
        _check(self.lr_patch_size >= 16 and self.lr_patch_size % 16 == 0,
               f"dgdml_lr_patch_size: must be a multiple of 16 (the critics halve it 4 times), got "
               f"{self.lr_patch_size}")
        _check_nonnegative(self, ("min_contrast", "clip_value", "gradient_penalty_weight", "cycle_weight"), prefix)
        _check(self.min_contrast < 1, f"dgdml_min_contrast: must be < 1, got {self.min_contrast}")
        _check(self.learning_rate > 0 and math.isfinite(self.learning_rate), "dgdml_learning_rate: must be > 0")
        _check(self.back_projection_iters >= 0, "dgdml_back_projection_iters: must be >= 0")
        _check(not self.depth_model or os.path.splitext(self.depth_model.rstrip("/"))[1] in ("", ".keras"),
               f"dgdml_depth_model: {self.depth_model} is not a keras-hub preset, a .keras file or a SavedModel "
               "folder")


@dataclasses.dataclass(frozen=True)
class KernelGANConfig:
    """The kernel estimator's settings (KernelGAN, Bell-Kligler et al. 2019; its defaults), used by
    `zssr estimate-kernel` and --estimate_kernels."""

    max_iters: int = _field(3000, "KernelGAN: training iterations (one crop for G and one for D each).")
    learning_rate: float = _field(2e-4, "KernelGAN: Adam learning rate of G and D (beta1 0.5).")
    learning_rate_decay_every: int = _field(
        750, "KernelGAN: the learning rates are divided by 10 every this many iterations.")
    crop_size: int = _field(
        64, "KernelGAN: side of the generator's crops; the discriminator's real crops have the side of G's "
        "output, (crop_size - 13) // 2 + 1 (26). Images smaller than this are refused.")
    width: int = _field(64, "KernelGAN: channels of the generator's and the discriminator's hidden layers.")
    discriminator_depth: int = _field(7, "KernelGAN: layers of the discriminator (a 7x7 one, then 1x1 ones).")
    crop_map: str = _field(
        "kernelgan", "KernelGAN: where crops are drawn: kernelgan (KernelGAN's maps: the top 3% of the luma's "
        "gradients plus its gradient magnitude, blurred; G's crops from the map of the x0.5 image, D's from the "
        "image's) or capped (earlier releases: the gradient magnitude capped at its 97th percentile, one map of the "
        "image for both, much broader).", ("kernelgan", "capped"))
    bicubic_weight: float = _field(
        5.0, "KernelGAN: starting weight of the similarity of G's output to bicubic downscaling; divided by 100 "
        "every 200 iterations once the similarity is reached (floor 5e-6).")
    sum_to_one_weight: float = _field(0.5, "KernelGAN: weight of |1 - sum of the kernel|.")
    boundaries_weight: float = _field(0.5, "KernelGAN: weight of the penalty on the kernel's values near its edges.")
    centralized_weight: float = _field(
        1.0, "KernelGAN: weight of the distance of the kernel's centre of mass from its centre, switched on when "
        "the bicubic weight falls below 5e-3.")
    sparse_weight: float = _field(
        5.0, "KernelGAN: weight of the sparsity term mean |k|^0.2, switched on with the centring term.")

    def __post_init__(self) -> None:
        prefix = "kernelgan_"
        _check_choice(self, prefix)
        _check_positive(self, ("max_iters", "learning_rate_decay_every", "width"), prefix)
        _check(self.crop_size >= 32, f"kernelgan_crop_size: must be >= 32, got {self.crop_size}")
        _check(self.discriminator_depth >= 2,
               f"kernelgan_discriminator_depth: must be >= 2, got {self.discriminator_depth}")
        _check(math.isfinite(self.learning_rate) and self.learning_rate > 0,
               f"kernelgan_learning_rate: must be a finite number > 0, got {self.learning_rate}")
        _check_nonnegative(self, ("bicubic_weight", "sum_to_one_weight", "boundaries_weight", "centralized_weight",
                                  "sparse_weight"), prefix)


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """`zssr pretrain`: a network trained on bicubic LR/HR pairs of external images, before any test image (the
    course report's 8.2 backbone, or a ZSSR network to fine-tune with --init_weights)."""

    arch: str = _field(
        "vdsr", "Pretrain: the network: vdsr (20 3x3 convolutions of 64 channels with biases, residual: a frozen "
        "--backbone) or zssr (the ZSSR network of --width, --depth, --upsampler: a start for --init_weights).",
        PRETRAIN_ARCHS)
    channels: int = _field(
        3, "Pretrain: 3 (RGB) or 1 (luma, for grayscale images); the training images are converted, and the network "
        "serves images of that many channels.")
    vdsr_depth: int = _field(20, "Pretrain: number of convolution layers of the VDSR network.")
    vdsr_width: int = _field(64, "Pretrain: channels of the VDSR network's hidden layers.")
    steps: int = _field(10000, "Pretrain: training steps (batches).")
    batch_size: int = _field(16, "Pretrain: crops per step.")
    crop_size: int = _field(64, "Pretrain: side of the HR crops (each image must be at least this large).")
    learning_rate: float = _field(1e-4, "Pretrain: Adam learning rate, divided by 10 for the last fifth of the steps.")
    checkpoint_every: int = _field(
        500, "Pretrain: steps between checkpoints; an interrupted run started again with the same flags goes on "
        "from the last one (other flags are refused: give another --output or remove the checkpoint).")

    def __post_init__(self) -> None:
        _check_choice(self, "pretrain_")
        _check_positive(self, ("vdsr_width", "steps", "batch_size", "checkpoint_every"), "pretrain_")
        _check(self.vdsr_depth >= 2, f"pretrain_vdsr_depth: must be >= 2, got {self.vdsr_depth}")
        _check(self.crop_size >= 8, f"pretrain_crop_size: must be >= 8, got {self.crop_size}")
        _check(self.channels in (1, 3), f"pretrain_channels: must be 1 or 3, got {self.channels}")
        _check(math.isfinite(self.learning_rate) and self.learning_rate > 0,
               f"pretrain_learning_rate: must be a finite number > 0, got {self.learning_rate}")


# Group name -> (dataclass, flag prefix). Methods' groups are named after the method.
GROUPS: dict[str, tuple[type, str]] = {
    "run": (RunConfig, ""),
    "task": (TaskConfig, ""),
    "zssr": (ZSSRConfig, ""),
    "zsrgan": (ZSRGANConfig, "zsrgan_"),
    "dgdml": (DGDMLConfig, "dgdml_"),
    "kernelgan": (KernelGANConfig, "kernelgan_"),
    "pretrain": (PretrainConfig, "pretrain_"),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs: the method and the settings of every group (see the module docstring)."""

    method: str = _field("zssr", "Zero-shot method: zssr (Shocher et al. 2018), zsrgan (ZSSR with a "
                         "discriminator and a perceptual loss, Lee et al.) or dgdml (DGDML-SR: depth-guided "
                         "degradation learning, Cheng et al. 2020).", METHOD_NAMES)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    zssr: ZSSRConfig = dataclasses.field(default_factory=ZSSRConfig)
    zsrgan: ZSRGANConfig = dataclasses.field(default_factory=ZSRGANConfig)
    dgdml: DGDMLConfig = dataclasses.field(default_factory=DGDMLConfig)
    kernelgan: KernelGANConfig = dataclasses.field(default_factory=KernelGANConfig)
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)

    def __post_init__(self) -> None:
        _check_choice(self)
        for group, (cls, _) in GROUPS.items():
            _check(isinstance(getattr(self, group), cls), f"{group}: must be a {cls.__name__}")
        # ZSSR's per-stage list; the other methods do not read it.
        _check(self.method != "zssr" or len(self.zssr.back_projection_iters) == self.task.num_stages,
               f"back_projection_iters: {len(self.zssr.back_projection_iters)} value(s) for {self.task.num_stages} "
               "scale factor(s); give one per scale factor")
        _check(not (self.task.estimate_kernels and self.method == "dgdml"),
               "estimate_kernels: DGDML-SR learns the image's degradation itself; estimated kernels are for zssr and "
               "zsrgan")
        if self.method == "zssr" and self.zssr.upsampler == "pixel_shuffle":
            for sf in self.task.scale_factors:
                _check(sf[0] == sf[1] and float(sf[0]).is_integer(),
                       f"upsampler=pixel_shuffle: the scale factor {format_value((sf,))} is not an integer (the "
                       "same vertically and horizontally); use integer stages such as 2 or 2,4, or "
                       "--upsampler=interpolate")

    def replace(self, **flat: Any) -> Config:
        """A copy with fields changed by their flag names (`conf.replace(max_iters=10, seed=1)`)."""
        return _from_flat(flat, base=self)

    # Text forms.
    def to_dict(self) -> dict[str, Any]:
        """Nested: {"method": ..., "run": {...}, "task": {...}, "zssr": {...}, "zsrgan": {...}, "dgdml": {...},
        "kernelgan": {...}, "pretrain": {...}}."""
        return {"method": self.method, **{group: {f.name: _to_jsonable(getattr(getattr(self, group), f.name))
                                                  for f in dataclasses.fields(getattr(self, group))}
                                          for group in GROUPS}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_flat_dict(self) -> dict[str, Any]:
        """Flag name -> value."""
        return {flag: (self.method if group is None else getattr(getattr(self, group), name))
                for flag, (group, name) in FLAG_FIELDS.items()}

    def to_flagfile(self) -> str:
        return "".join(f"--{flag}={format_value(value)}\n" for flag, value in self.to_flat_dict().items())

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """From flag names (flat) or the nested form of `to_dict` (config.json), or both."""
        flat = {}
        for key, value in values.items():
            if key in GROUPS and isinstance(value, dict):
                _, prefix = GROUPS[key]
                unknown = sorted(set(value) - {f.name for f in dataclasses.fields(GROUPS[key][0])})
                _check(not unknown, f"unknown config field(s) in {key}: {', '.join(unknown)}")
                flat.update({prefix + name: v for name, v in value.items()})
            else:
                flat[key] = value
        return _from_flat(flat)

    @classmethod
    def from_json(cls, text: str) -> Config:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config JSON is malformed: {e}") from None
        _check(isinstance(values, dict), "config JSON: expected an object")
        return cls.from_dict(values)

    @classmethod
    def from_flagfile(cls, path: str | os.PathLike, **overrides: Any) -> Config:
        """Reads a preset (`--name=value` lines, absl flagfile syntax); keyword overrides (flag names) win."""
        values = read_flagfile(path)
        values.update(overrides)
        return cls.from_dict(values)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> Config:
        """Reads the preset named `name` (`zssr --list_presets`: quick, x2_real, ...); keyword overrides win."""
        from zssr_tf.presets import preset_path

        return cls.from_flagfile(preset_path(name), **overrides)


def _flag_fields() -> dict[str, tuple[str | None, str]]:
    """Flag name -> (group, field name); `method` is (None, "method"). Raises on a clash (a programming error)."""
    fields: dict[str, tuple[str | None, str]] = {"method": (None, "method")}
    for group, (cls, prefix) in GROUPS.items():
        for f in dataclasses.fields(cls):
            flag = prefix + f.name
            if flag in fields:
                raise RuntimeError(f"flag --{flag} of {group} clashes with {fields[flag]}")
            fields[flag] = (group, f.name)
    return fields


FLAG_FIELDS = _flag_fields()
FLAG_NAMES = tuple(FLAG_FIELDS)


def _dataclass_field(flag: str) -> dataclasses.Field:
    group, name = FLAG_FIELDS[flag]
    cls = Config if group is None else GROUPS[group][0]
    return next(f for f in dataclasses.fields(cls) if f.name == name)


FIELD_HELP = {flag: _dataclass_field(flag).metadata["help"] for flag in FLAG_NAMES}
FIELD_CHOICES = {flag: _dataclass_field(flag).metadata["choices"] for flag in FLAG_NAMES}
DEFAULTS = {flag: _dataclass_field(flag).default for flag in FLAG_NAMES}
# Which group each flag belongs to, for grouped help.
FLAG_GROUP = {flag: group or "run" for flag, (group, _) in FLAG_FIELDS.items()}


def _from_flat(flat: dict[str, Any], base: Config | None = None) -> Config:
    unknown = sorted(set(flat) - set(FLAG_FIELDS))
    _check(not unknown, f"unknown config field(s): {', '.join(unknown)}")
    changes: dict[str | None, dict[str, Any]] = {}
    for flag, value in flat.items():
        group, name = FLAG_FIELDS[flag]
        changes.setdefault(group, {})[name] = coerce(flag, value)
    groups = {group: dataclasses.replace(getattr(base, group), **changes.get(group, {})) if base is not None
              else cls(**changes.get(group, {})) for group, (cls, _) in GROUPS.items()}
    method = changes.get(None, {}).get("method", base.method if base is not None else DEFAULTS["method"])
    return Config(method=method, **groups)


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_jsonable(v) for v in value]
    return value


def parse_scale_factors(text: str) -> tuple[ScalePair, ...]:
    """'2' -> ((2, 2),); '1x1.5,2' -> ((1, 1.5), (2, 2))."""
    pairs = []
    for item in str(text).replace(" ", "").split(","):
        parts = item.lower().split("x")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise ConfigError(f"scale_factors: {item!r} is not a number or a HxW pair of numbers") from None
        if len(numbers) == 1:
            numbers *= 2
        if len(numbers) != 2:
            raise ConfigError(f"scale_factors: {item!r} is not a number or a HxW pair of numbers")
        pairs.append((numbers[0], numbers[1]))
    return tuple(pairs)


def format_value(value: Any) -> str:
    """The flag text of a config value; `coerce(name, format_value(v)) == v`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return ",".join(f"{repr(float(v))}x{repr(float(h))}" for v, h in value)
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def coerce(name: str, value: Any) -> Any:
    """Converts a flag string, JSON value or Python value to the type of the field of flag `name`."""
    if name not in DEFAULTS:
        raise ConfigError(f"unknown config field: {name}")
    default = DEFAULTS[name]
    try:
        if name == "scale_factors":
            if isinstance(value, str):
                return parse_scale_factors(value)
            if isinstance(value, (int, float)):
                return ((float(value), float(value)),)
            return tuple(
                (float(sf), float(sf)) if isinstance(sf, (int, float)) else (float(sf[0]), float(sf[1]))
                for sf in value)
        if name == "back_projection_iters":
            items = value.split(",") if isinstance(value, str) else (
                [value] if isinstance(value, int) else value)
            return tuple(_to_int(v) for v in items)
        if isinstance(default, bool):
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("true", "1", "yes"):
                    return True
                if lowered in ("false", "0", "no"):
                    return False
                raise ValueError(value)
            if isinstance(value, (bool, int)) and value in (0, 1):
                return bool(value)
            raise ValueError(value)
        if isinstance(default, int):
            return _to_int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except ConfigError:
        raise
    except (TypeError, ValueError, IndexError):
        raise ConfigError(f"{name}: {value!r} is not a valid {_kind(name)}") from None


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str):
        return int(value.strip())
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return int(value)


def _kind(name: str) -> str:
    if name == "scale_factors":
        return "list of scale factors"
    if name == "back_projection_iters":
        return "comma-separated list of integers"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}[type(DEFAULTS[name])]


def read_flagfile(path: str | os.PathLike) -> dict[str, str]:
    """Reads `--name=value` lines (absl syntax: `#` comments, `--flag`/`--noflag` booleans, nested --flagfile)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read flagfile {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"flagfile {path} is not text") from None
    values: dict[str, str] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", "//")):
            continue
        if not line.startswith("--"):
            raise ConfigError(f"flagfile {path}: line {line!r} is not --name=value")
        name, has_value, value = line[2:].partition("=")
        if name == "flagfile":
            values.update(read_flagfile(value))
        elif has_value:
            values[name] = value
        elif name in DEFAULTS and isinstance(DEFAULTS[name], bool):
            values[name] = "true"
        elif name.startswith("no") and isinstance(DEFAULTS.get(name[2:]), bool):
            values[name[2:]] = "false"
        else:
            raise ConfigError(f"flagfile {path}: flag --{name} needs a value")
    return values


def max_input_megapixels(conf: Config) -> tuple[float, str]:
    """The largest input whose largest stage output stays within `max_output_megapixels`, and why (for messages):
    a larger file is refused from its header, before seconds and gigabytes of decoding (and, by the command,
    before TensorFlow is imported)."""
    sy, sx = (max(factors) for factors in zip(*conf.task.scale_factors))
    return (conf.run.max_output_megapixels / (sy * sx),
            f"its output would be over max_output_megapixels={conf.run.max_output_megapixels:g}")
