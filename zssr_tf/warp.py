"""Projective warps of images as TensorFlow ops, matching OpenCV's `warpPerspective` conventions.

This module owns the geometric resampling of one image by a 3x3 homography inside TF graphs (`tf.function`,
`tf.data.Dataset.map`, GPU), so that `augment.random_augment`'s cubic warp of an hr_father can run in the input
pipeline instead of through `cv2.warpPerspective` in numpy. It does not draw transforms (that is `augment`).

Conventions, all checked numerically against cv2 (tests/test_warp.py):
  * `matrix` maps SOURCE pixel coordinates (x, y, 1) to OUTPUT coordinates, as `cv2.warpPerspective` without
    WARP_INVERSE_MAP: output pixel (x, y) samples the source at M^-1 (x, y, 1) after the perspective divide.
  * Pixel centres are at integer coordinates in both images (pixel (0, 0) covers [-0.5, 0.5]^2); no half-pixel
    offset is applied anywhere.
  * BORDER_CONSTANT with value 0 is applied per TAP: each neighbour of the interpolation stencil that falls outside
    the source reads 0, so outputs near the source border are partly darkened, exactly as OpenCV does.
  * 'cubic' is OpenCV's INTER_CUBIC: cubic convolution with A = -0.75 (not Keys' -0.5 of MATLAB's imresize) on
    the 4x4 neighbourhood floor(s) - 1 .. floor(s) + 2.
  * 'bilinear' is `tf.raw_ops.ImageProjectiveTransformV3`, whose pixel-centre and constant-fill conventions equal
    OpenCV's INTER_LINEAR (measured: no half-pixel offset, per-tap zero fill).

The interpolation here is the exact continuous one. OpenCV 4.x quantises sub-pixel positions to 1/32 pixel
(INTER_TAB_SIZE, position errors up to 1/64 px), so it cannot match exactly; the OpenCV 5.0.0 build in this
environment samples unquantised positions and agrees with this module to ~3e-6 (its float32 rounding).
"""

from __future__ import annotations

import tensorflow as tf

INTERPOLATIONS = ("cubic", "bilinear")

# OpenCV's INTER_CUBIC kernel parameter (imgproc's interpolateCubic); Keys' -0.5 differs from cv2 by up to ~8e-2 on
# a noise image (measured), -0.75 by ~3e-6.
_CUBIC_A = -0.75


def _cubic_weights(frac: tf.Tensor) -> tf.Tensor:
    """Weights of the taps at offsets -1, 0, 1, 2 from floor(s) for fractional parts `frac` in [0, 1).

    Args:
      frac: [...] float32, s - floor(s).

    Returns:
      [..., 4] float32 weights, summing to 1.
    """
    a = _CUBIC_A
    # Kernel pieces: |t| <= 1: (a + 2)|t|^3 - (a + 3)|t|^2 + 1;  1 < |t| < 2: a|t|^3 - 5a|t|^2 + 8a|t| - 4a.
    t0 = frac + 1.0
    w0 = ((a * t0 - 5.0 * a) * t0 + 8.0 * a) * t0 - 4.0 * a
    w1 = ((a + 2.0) * frac - (a + 3.0)) * frac * frac + 1.0
    t2 = 1.0 - frac
    w2 = ((a + 2.0) * t2 - (a + 3.0)) * t2 * t2 + 1.0
    # As OpenCV: the last weight closes the partition of unity, so a constant image stays constant to rounding.
    w3 = 1.0 - w0 - w1 - w2
    return tf.stack([w0, w1, w2, w3], axis=-1)


def _source_coordinates(inverse: tf.Tensor, crop_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Source (x, y) sampled by every output pixel centre, in float64.

    Args:
      inverse: [3, 3] float64, maps output (x, y, 1) to homogeneous source coordinates.
      crop_size: output side in pixels.

    Returns:
      Two [crop_size, crop_size] float64 tensors, source x and y; non-finite where the perspective divide is 0.
    """
    # float64 because float32 positions of ~256 px are off by up to ~1.5e-5 px, which on a noisy image moves values
    # by up to ~6e-5 (measured, 128^2 crop of 256^2 noise); the float64 cost was not measurable next to the gather.
    grid = tf.range(crop_size, dtype=tf.float64)
    x, y = grid[tf.newaxis, :], grid[:, tf.newaxis]
    homogeneous = [inverse[i, 0] * x + inverse[i, 1] * y + inverse[i, 2] for i in range(3)]
    return homogeneous[0] / homogeneous[2], homogeneous[1] / homogeneous[2]


def _warp_cubic(image: tf.Tensor, inverse: tf.Tensor, crop_size: int) -> tf.Tensor:
    """Cubic warp; see `warp_image`. `inverse` is [3, 3] float64 (output -> source)."""
    shape = tf.shape(image, out_type=tf.int32)
    height, width = shape[0], shape[1]
    # x and y share the tap arithmetic, stacked on a leading axis.
    coordinates = tf.stack(_source_coordinates(inverse, crop_size))  # [2 (x, y), crop, crop]
    sizes = tf.reshape(tf.stack([width, height]), [2, 1, 1])
    sizes_f = tf.cast(sizes, tf.float64)
    # Non-finite positions (a zero perspective divide) become a point far outside, which reads 0. Clipping to a few
    # pixels beyond the image keeps the int32 cast defined for far-away points without changing any weight: every
    # tap of such a point is outside either way.
    coordinates = tf.where(tf.math.is_finite(coordinates), coordinates, tf.constant(-8.0, tf.float64))
    coordinates = tf.clip_by_value(coordinates, -8.0, sizes_f + 8.0)
    base = tf.floor(coordinates)
    weights = _cubic_weights(tf.cast(coordinates - base, tf.float32))  # [2, crop, crop, 4]
    index = tf.cast(base, tf.int32)[..., tf.newaxis] + tf.range(-1, 3, dtype=tf.int32)  # [2, crop, crop, 4]
    # BORDER_CONSTANT per tap: an out-of-range tap gets weight 0 (it "reads 0") and a clamped, valid index, so a
    # far-away point can never wrap around into real pixels of the flattened image.
    sizes = sizes[..., tf.newaxis]
    weights *= tf.cast((index >= 0) & (index < sizes), tf.float32)
    index = tf.clip_by_value(index, 0, sizes - 1)
    # One gather of rows of the flattened [H * W, C] image (gather_nd on [H, W, C] measured the same on CPU).
    linear = index[1, ..., :, tf.newaxis] * width + index[0, ..., tf.newaxis, :]  # [crop, crop, 4 (y), 4 (x)]
    outer = weights[1, ..., :, tf.newaxis] * weights[0, ..., tf.newaxis, :]
    flat = tf.reshape(image, [height * width, -1])
    neighbours = tf.gather(flat, tf.reshape(linear, [crop_size, crop_size, 16]))  # [crop, crop, 16, C]
    return tf.reduce_sum(neighbours * tf.reshape(outer, [crop_size, crop_size, 16, 1]), axis=2)


def _warp_bilinear(image: tf.Tensor, inverse: tf.Tensor, crop_size: int) -> tf.Tensor:
    """Bilinear warp; see `warp_image`. `inverse` is [3, 3] float64 (output -> source)."""
    # ImageProjectiveTransformV3 takes the output -> input map as [a0, a1, a2, b0, b1, b2, c0, c1] with c2 == 1,
    # samples at integer pixel centres and fills each out-of-range tap with fill_value, i.e. exactly cv2's
    # INTER_LINEAR + BORDER_CONSTANT, so no offset correction is needed.
    transform = tf.reshape(inverse / inverse[2, 2], [9])[:8]
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis],
        transforms=tf.cast(transform, tf.float32)[tf.newaxis],
        output_shape=tf.constant([crop_size, crop_size], tf.int32),
        fill_value=tf.constant(0.0, tf.float32),
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return warped[0]


def warp_image(
    image: tf.Tensor,
    matrix: tf.Tensor,
    crop_size: int,
    interpolation: str = "cubic",
) -> tf.Tensor:
    """Warps an image by a homography into a crop_size x crop_size output, as `cv2.warpPerspective`.

    Equivalent to `cv2.warpPerspective(image, matrix, (crop_size, crop_size), flags=cv2.INTER_CUBIC (or
    INTER_LINEAR), borderMode=cv2.BORDER_CONSTANT, borderValue=0)` with exact (unquantised) sub-pixel positions.
    Traces once per (crop_size, interpolation, channel count) inside `tf.function`; `matrix` may be a tensor.

    Args:
      image: [H, W, C] float tensor or array (H, W may be dynamic; C should be static), any value range; cast to
        float32.
      matrix: [3, 3] float, maps source pixel coordinates (x, y, 1) to output coordinates (pixel centres at
        integers); must be invertible.
      crop_size: side of the output in pixels (a Python int).
      interpolation: 'cubic' (OpenCV INTER_CUBIC, A = -0.75) or 'bilinear' (OpenCV INTER_LINEAR).

    Returns:
      [crop_size, crop_size, C] float32. Pixels whose interpolation taps fall outside the source read those taps
      as 0; values are not clipped (cubic rings past the input range near sharp edges).

    Raises:
      ValueError: for an unknown `interpolation`, a non-positive `crop_size` or an image that is not rank 3.
      tf.errors.InvalidArgumentError: if `matrix` is singular.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"Unknown interpolation {interpolation!r}; valid: {', '.join(INTERPOLATIONS)}.")
    if int(crop_size) != crop_size or crop_size <= 0:
        raise ValueError(f"crop_size must be a positive int, got {crop_size!r}.")
    crop_size = int(crop_size)
    image = tf.convert_to_tensor(image)
    if image.shape.rank != 3:
        raise ValueError(f"Expected an [H, W, C] image, got shape {image.shape}.")
    image = tf.cast(image, tf.float32)
    # Invert in float64 (a 3x3 op) so the inverse's rounding adds nothing to the float64 source positions.
    inverse = tf.linalg.inv(tf.reshape(tf.cast(matrix, tf.float64), [3, 3]))
    warp = _warp_cubic if interpolation == "cubic" else _warp_bilinear
    warped = warp(image, inverse, crop_size)
    warped.set_shape([crop_size, crop_size, image.shape[-1]])
    return warped
