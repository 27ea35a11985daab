"""Depth maps for depth-guided methods (DGDML-SR): read from a file, or estimated by a model the user has on disk.

A depth map here is float32 H x W of depths (larger = farther) with NaN where the depth is unknown. Files hold
depth or disparity (larger = nearer; depth = 1 / disparity, as for stereo and the DGDML-SR authors' inverted NYU
maps); 0 (and NaN) means unknown in both. A map of another size than the image is resized (nearest neighbour, so
unknown pixels stay unknown) with a warning.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import cv2
import numpy as np
from absl import logging

from zssr_tf.image_io import ImageError, png_chunks_fit

DEPTH_EXTENSIONS = (".png", ".tif", ".tiff", ".npy")
DEPTH_KINDS = ("depth", "disparity")


class DepthError(ImageError):
    """A depth map file or depth model that cannot be used (the message is one line)."""


def read_depth_file(path: str | os.PathLike) -> np.ndarray:
    """The raw values of a depth file: an 8/16-bit PNG or TIFF (one channel, or three equal ones), a float TIFF, or
    a 2-D .npy array; float64 H x W.

    Raises:
      DepthError: missing, unreadable, or not one plane of numbers.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DepthError(f"{path}: no such depth file")
    extension = os.path.splitext(path)[1].lower()
    if extension not in DEPTH_EXTENSIONS:
        raise DepthError(f"{path}: depth maps are {', '.join(DEPTH_EXTENSIONS)} files")
    if os.path.getsize(path) == 0:
        raise DepthError(f"{path}: the file is empty")
    if extension == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except Exception as e:  # numpy raises many kinds: ValueError, EOFError, MemoryError (a huge declared
            # shape), tokenize.TokenError (a mangled header), ...
            raise DepthError(f"{path}: not a readable .npy array ({type(e).__name__})") from None
        if not isinstance(values, np.ndarray):  # an .npz archive under an .npy name
            raise DepthError(f"{path}: not one .npy array")
    else:
        data = np.fromfile(path, dtype=np.uint8)
        if not png_chunks_fit(data):
            raise DepthError(f"{path}: not a readable depth image (a corrupt or truncated PNG)")
        log_level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # our one line, not cv2's
        try:
            values = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        except (cv2.error, MemoryError):  # e.g. a header over OpenCV's size limit
            values = None
        finally:
            cv2.utils.logging.setLogLevel(log_level)
        if values is None:
            raise DepthError(f"{path}: not a readable depth image (corrupt, truncated or not an image)")
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[:, :, 0]
    elif values.ndim == 3 and values.shape[2] in (3, 4) and extension != ".npy":
        # Some datasets (Middlebury) store a gray map as RGB: accept three equal planes, nothing else.
        if not (np.array_equal(values[:, :, 0], values[:, :, 1]) and np.array_equal(values[:, :, 0],
                                                                                     values[:, :, 2])):
            raise DepthError(f"{path}: a depth map has one channel; this file has {values.shape[2]} different ones")
        values = values[:, :, 0]
    if values.ndim != 2 or min(values.shape) < 1:
        raise DepthError(f"{path}: a depth map is one H x W plane, got shape {values.shape}")
    if not (np.issubdtype(values.dtype, np.number) and not np.issubdtype(values.dtype, np.complexfloating)):
        raise DepthError(f"{path}: {values.dtype} values are not depths")
    return values.astype(np.float64)


def to_depth(values: np.ndarray, kind: str, what: str = "depth") -> np.ndarray:
    """Raw depth or disparity values -> float32 depth (larger = farther), NaN where unknown (0 or not finite).

    Raises:
      DepthError: negative values, or no known value at all.
    """
    if kind not in DEPTH_KINDS:
        raise DepthError(f"{what}: unknown depth kind {kind!r} ({' or '.join(DEPTH_KINDS)})")
    values = np.asarray(values, dtype=np.float64)
    known = np.isfinite(values) & (values != 0)
    if np.any(values[known] < 0):
        raise DepthError(f"{what}: negative {kind} values")
    if not np.any(known):
        raise DepthError(f"{what}: no known {kind} value (all 0 or not finite)")
    depth = np.full(values.shape, np.nan)
    depth[known] = values[known] if kind == "depth" else 1.0 / values[known]
    return depth.astype(np.float32)


def fit_to_image(depth: np.ndarray, image_shape: tuple[int, ...], what: str = "depth") -> np.ndarray:
    """The depth map at the image's size: as it is, or resized (nearest neighbour) with a warning."""
    height, width = image_shape[:2]
    if depth.shape == (height, width):
        return depth
    logging.warning("%s: the depth map is %dx%d, the image %dx%d: resized to the image", what, depth.shape[0],
                    depth.shape[1], height, width)
    return cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST)


def load_depth(source: Any, kind: str, image_shape: tuple[int, ...]) -> np.ndarray:
    """A depth file (path) or array of `kind` values -> float32 depth at the image's size, NaN where unknown.

    Raises:
      DepthError: see `read_depth_file` and `to_depth`.
    """
    if isinstance(source, (str, os.PathLike)):
        what, values = os.fspath(source), read_depth_file(source)
    else:
        what, values = "depth", np.asarray(source)
        if values.ndim == 3 and values.shape[2] == 1:
            values = values[:, :, 0]
        if values.ndim != 2:
            raise DepthError(f"depth: a depth map is one H x W plane, got shape {values.shape}")
    return fit_to_image(to_depth(values, kind, what), image_shape, what)


def load_depth_model(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """A monocular depth estimator from disk: a `.keras` model or a SavedModel folder (its serving signature, or
    the object itself when callable) mapping [1, H, W, 3] RGB in [0, 1] to [1, H, W] or [1, H, W, 1] values.

    Returns:
      A function H x W x C image in [0, 1] -> H' x W' raw values (one-channel images are repeated to RGB).

    Raises:
      DepthError: missing or unloadable model (one line).
    """
    import keras  # TensorFlow only when a model is used
    import tensorflow as tf

    if not os.path.exists(path):
        raise DepthError(f"dgdml_depth_model: no such model {path}")
    try:
        if path.endswith(".keras"):
            model = keras.models.load_model(path, compile=False)
        else:
            loaded = tf.saved_model.load(path)
            model = loaded.signatures["serving_default"] if "serving_default" in loaded.signatures else loaded
    except Exception as e:  # noqa: BLE001 - Keras and TF raise many kinds; the user needs one line
        raise DepthError(f"dgdml_depth_model: {path} is not a loadable Keras model or SavedModel "
                         f"({type(e).__name__})") from None

    # A serving signature takes its input by name.
    signature = getattr(model, "structured_input_signature", None)
    input_name = next(iter(signature[1]), None) if signature and isinstance(signature[1], dict) else None

    def estimate(image: np.ndarray) -> np.ndarray:
        rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
        batch = tf.constant(rgb[None], tf.float32)
        output = model(**{input_name: batch}) if input_name else model(batch)
        if isinstance(output, dict):  # a serving signature returns its named outputs
            output = next(iter(output.values()))
        values = np.asarray(output, dtype=np.float64)
        values = values.reshape(values.shape[1:3]) if values.ndim == 4 else values.reshape(values.shape[-2:])
        return values

    return estimate


def estimate_depth(path: str, image: np.ndarray, kind: str) -> np.ndarray:
    """The depth model at `path` on the image -> float32 depth at the image's size (NaN where unknown)."""
    try:
        values = load_depth_model(path)(image)
    except DepthError:
        raise
    except Exception as e:  # noqa: BLE001 - a model of the wrong shape fails in many ways
        raise DepthError(f"dgdml_depth_model: {path} failed on the image ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return fit_to_image(to_depth(values, kind, path), image.shape, path)
