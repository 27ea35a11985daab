"""The ZSSR configuration: one frozen dataclass, its validation, and its text forms.

`Config` carries the original TF1 `configs.Config` defaults (field names kept so porters recognise them). It is
frozen: variants are made with `dataclasses.replace` or `Config.from_flagfile(path, **overrides)`, never by mutation
(the original's derived `filter_shape` went stale that way). The same field <-> string conversions serve flagfiles,
the command line (`zssr_tf.cli`) and JSON, so the three forms always agree.
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
INIT_WEIGHTS_SUFFIXES = (".keras", ".weights.h5")

ScalePair = tuple[float, float]


class ConfigError(ValueError):
    """A configuration value or preset file is invalid (the message is one line)."""


def _field(default: Any, help_text: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class Config:
    """All settings of a ZSSR run, with the defaults of the original code (X2 one jump, ideal bicubic)."""

    # Scale factors and stages.
    scale_factors: tuple[ScalePair, ...] = _field(
        ((2.0, 2.0),),
        "Scale factors, one per gradual stage, each a number or a vertical x horizontal pair, comma separated "
        "(e.g. 2 or 1x1.5,1.5x1,1.5,1.5x2,2x1.5,2). Every stage upscales the input; the last one is the result.")
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
    init_weights: str = _field(
        "", "Network weights to start from instead of random ones (a .keras file saved with --export_model, or "
        ".weights.h5), fine-tuned on each image: a pretrained start point. Empty starts from random weights.")
    # Degradation model.
    downscale_method: str = _field(
        "cubic", f"Kernel used to make LR sons when no kernel file is given; one of {', '.join(KERNEL_NAMES)}.")
    upscale_method: str = _field(
        "cubic", "Interpolation that brings LR sons to the father's size (the network learns its residual) and "
        "that back-projection upscales with.")
    downscale_gt_method: str = _field(
        "cubic", "Kernel that shrinks the ground truth to intermediate gradual scales (monitoring only).")
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
    run_test: bool = _field(
        True, "Whether to run the quick test (reconstruction error of the input from its own son) that drives "
        "the learning-rate policy; without it only max_iters stops training.")
    run_test_every: int = _field(50, "Iterations between quick tests.")
    display_every: int = _field(20, "Iterations between loss log lines.")
    # Computation.
    precision: str = _field(
        "auto", "Compute precision of the network: float32, mixed_bfloat16, mixed_float16, or auto "
        "(mixed_bfloat16 where the CPU or GPU computes bfloat16 natively, else float32). Variables, the loss and "
        "the residual stay float32.")
    pipeline: str = _field(
        "auto", "Where training examples are made: host (numpy/OpenCV in a background thread), device (TensorFlow "
        "ops; on the GPU when there is one), or auto (host: measured faster on the CPU and on an H100 alike).")
    jit_compile: bool = _field(
        False, "Compile the train step with XLA. Off by default: XLA is slower on CPUs. On a GPU, where the step is "
        "bound by kernel launches, fusing them may pay (not yet measured).")
    max_output_megapixels: float = _field(
        16.0, "Largest output, in megapixels, a run accepts: the final test needs about 1 GB of memory per output "
        "megapixel, so larger images are refused up front; raise it on machines with more memory.")
    tile_size: int = _field(
        512, "Side of the tiles the network runs on at test time, bounding memory on large images (the result "
        "is the same as in one piece).")
    # Output.
    output_flip: bool = _field(
        True, "Whether the final test averages (median) the 8 rotations and mirrors of the input (4 for "
        "anisotropic scale factors).")
    name: str = _field("test", "Name of the run, prefixed to its log lines (the command uses each image's "
                       "file name).")
    seed: int = _field(0, "Seed of every random choice (weights, fathers, noise): same seed, same output.")
    progress: bool = _field(
        True, "Whether to show a progress bar per stage (iteration, loss, learning rate, elapsed time, time left) "
        "in a notebook or on a terminal; where stderr is not a terminal the log lines report progress instead.")

    def __post_init__(self) -> None:
        _validate(self)

    # Derived values are properties so they never go stale (the original's filter_shape did).
    @property
    def num_stages(self) -> int:
        return len(self.scale_factors)

    @property
    def final_scale_factor(self) -> ScalePair:
        return self.scale_factors[-1]

    @property
    def slope_points(self) -> int:
        """Number of quick-test points the learning-rate policy fits a line to."""
        return self.learning_rate_slope_range // self.run_test_every

    @property
    def filter_shape(self) -> tuple[tuple[int, int, int, int], ...]:
        """Kernel shapes of the 8 layers for RGB, as the original reported them."""
        channels = [3] + [self.width] * (self.depth - 1) + [3]
        return tuple((3, 3, c_in, c_out) for c_in, c_out in zip(channels[:-1], channels[1:]))

    # Text forms.
    def to_dict(self) -> dict[str, Any]:
        return {f.name: _to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        unknown = sorted(set(values) - set(FIELD_NAMES))
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**{name: coerce(name, value) for name, value in values.items()})

    @classmethod
    def from_json(cls, text: str) -> Config:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config JSON is malformed: {e}") from None
        return cls.from_dict(values)

    def to_flagfile(self) -> str:
        return "".join(f"--{name}={format_value(getattr(self, name))}\n" for name in FIELD_NAMES)

    @classmethod
    def from_flagfile(cls, path: str | os.PathLike, **overrides: Any) -> Config:
        """Reads a preset (`--name=value` lines, absl flagfile syntax); keyword overrides win."""
        values = read_flagfile(path)
        values.update(overrides)
        return cls.from_dict(values)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Config))
FIELD_HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(Config)}
DEFAULTS = {f.name: f.default for f in dataclasses.fields(Config)}


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
    """Converts a flag string, JSON value or Python value to the type of field `name`."""
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


def _validate(c: Config) -> None:
    def check(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    check(len(c.scale_factors) >= 1, "scale_factors: give at least one scale factor")
    for sf in c.scale_factors:
        check(len(sf) == 2 and all(math.isfinite(s) for s in sf), f"scale_factors: {sf} is not a pair of numbers")
        check(min(sf) >= 1.0 and max(sf) > 1.0,
              f"scale_factors: {format_value((sf,))} must upscale (every factor >= 1, one > 1)")
    check(len(c.back_projection_iters) == len(c.scale_factors),
          f"back_projection_iters: {len(c.back_projection_iters)} value(s) for {len(c.scale_factors)} scale "
          "factor(s); give one per scale factor")
    check(all(n >= 0 for n in c.back_projection_iters), "back_projection_iters: must be >= 0")
    check(c.precision in PRECISIONS, f"precision: {c.precision!r} is not one of {', '.join(PRECISIONS)}")
    check(c.pipeline in PIPELINES, f"pipeline: {c.pipeline!r} is not one of {', '.join(PIPELINES)}")
    for name in ("width", "depth", "crop_size", "tile_size", "max_iters", "run_test_every", "display_every",
                 "learning_rate_policy_check_every", "learning_rate_slope_range"):
        check(getattr(c, name) >= 1, f"{name}: must be >= 1, got {getattr(c, name)}")
    check(c.crop_size >= 4, f"crop_size: must be >= 4, got {c.crop_size}")
    check(c.min_iters >= 0, "min_iters: must be >= 0")
    for name in ("downscale_method", "upscale_method", "downscale_gt_method"):
        check(getattr(c, name) in KERNEL_NAMES,
              f"{name}: {getattr(c, name)!r} is not one of {', '.join(KERNEL_NAMES)}")
    for name in ("learning_rate", "min_learning_rate", "init_variance", "learning_rate_change_ratio"):
        value = getattr(c, name)
        check(math.isfinite(value) and value >= 0, f"{name}: must be a finite number >= 0, got {value}")
    check(c.learning_rate > 0, "learning_rate: must be > 0")
    check(c.max_output_megapixels > 0, "max_output_megapixels: must be > 0")
    check(math.isfinite(c.noise_std) and c.noise_std >= 0, f"noise_std: must be >= 0, got {c.noise_std}")
    p_leave, p_no_interp = c.augment_leave_as_is_probability, c.augment_no_interpolate_probability
    check(0 <= p_leave <= 1 and 0 <= p_no_interp <= 1 and p_leave + p_no_interp <= 1,
          "augment_*_probability: each in [0, 1] and together at most 1")
    check(0 < c.augment_min_scale <= 1, f"augment_min_scale: must be in (0, 1], got {c.augment_min_scale}")
    check(c.augment_scale_diff_sigma >= 0 and c.augment_shear_sigma >= 0, "augment sigmas: must be >= 0")
    check(not c.run_test or c.slope_points >= 3,
          f"learning_rate_slope_range // run_test_every = {c.slope_points}: the policy needs at least 3 "
          "quick-test points to fit a line and its error")
    check(c.seed >= 0, "seed: must be >= 0")
    check(not c.init_weights or c.init_weights.endswith(INIT_WEIGHTS_SUFFIXES),
          f"init_weights: {c.init_weights} is not a {' or '.join(INIT_WEIGHTS_SUFFIXES)} file")
