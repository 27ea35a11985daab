"""Depth maps for depth-guided methods (DGDML-SR): read from a file, or estimated by a monocular depth model: a
keras-hub preset (Depth Anything V2, by name or from a local preset folder) or a model file the user has on disk.

A depth map here is float32 H x W of depths (larger = farther) with NaN where the depth is unknown. Files hold
depth or disparity (larger = nearer; depth = 1 / disparity, as for stereo and the DGDML-SR authors' inverted NYU
maps); 0 (and NaN) means unknown in both. A map of another size than the image is resized (nearest neighbour, so
unknown pixels stay unknown) with a warning.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any, Callable

import cv2
import numpy as np
from absl import logging

from zssr_tf.image_io import ImageError, png_chunks_fit, write_bytes_atomically

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


# Depth Anything V2 (keras-hub's DepthAnythingDepthEstimator) outputs relative inverse depth: larger = nearer.
KERAS_HUB_KIND = "disparity"


def is_keras_hub_preset(source: str) -> bool:
    """Whether --dgdml_depth_model names a keras-hub preset: a local preset folder (its config.json and
    metadata.json, as `save_to_preset` writes them) or a name that is no path (`depth_anything_v2_small`)."""
    if os.path.isdir(source):
        return all(os.path.isfile(os.path.join(source, f)) for f in ("config.json", "metadata.json"))
    return not os.path.exists(source) and os.sep not in source and not source.endswith(".keras")


def depth_model_kind(source: str, kind: str) -> str:
    """What the model's values are: disparity for keras-hub presets (set for the user; a preset saved as a metric
    estimator says so in its config and gives depth), else --dgdml_depth_kind."""
    if not is_keras_hub_preset(source):
        return kind
    try:
        with open(os.path.join(source, "task.json")) as f:
            metric = json.load(f).get("config", {}).get("depth_estimation_type") == "metric"
    except (OSError, ValueError, AttributeError):
        metric = False  # a preset name: keras-hub's Depth Anything presets are relative (disparity)
    return "depth" if metric else KERAS_HUB_KIND


def load_keras_hub_estimator(source: str) -> Callable[[np.ndarray], np.ndarray]:
    """A keras-hub depth estimator by preset name or folder, run at its preset's input size through its own
    preprocessor; returns a function H x W x C image in [0, 1] -> H x W raw values (resized back bilinearly: the
    estimate has no unknown pixels to keep).

    Raises:
      DepthError: keras-hub missing, the preset not downloadable (no network) or not loadable (one line).
    """
    try:
        import keras_hub  # the [depth] extra, imported only when a preset is named
    except ImportError:
        raise DepthError(f"dgdml_depth_model: {source} is a keras-hub preset, and keras-hub is not installed: "
                         "pip install \"zssr-tf[depth]\"") from None
    try:
        estimator = keras_hub.models.DepthEstimator.from_preset(source)
    except Exception as e:  # noqa: BLE001 - downloads and preset files fail in many ways; the user needs one line
        if os.path.isdir(source):
            raise DepthError(f"dgdml_depth_model: {source} is not a loadable keras-hub depth preset "
                             f"({type(e).__name__})") from None
        raise DepthError(f"dgdml_depth_model: cannot download the keras-hub preset {source} ({type(e).__name__}); "
                         f"where there is a network run keras_hub.models.DepthEstimator.from_preset('{source}')"
                         ".save_to_preset('DIR'), then pass --dgdml_depth_model=DIR") from None
    converter = getattr(estimator.preprocessor, "image_converter", None)
    size = tuple(getattr(converter, "image_size", None) or (518, 518))

    def estimate(image: np.ndarray) -> np.ndarray:
        rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
        # Resized to the preset's size here (stretched, not cropped: the converter would crop to its aspect ratio,
        # and the map must cover the whole image), in the 0..255 range keras-hub's image converters take.
        batch = cv2.resize(rgb.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA)[None] * 255.0
        values = np.asarray(estimator.predict(batch, verbose=0)["depths"], dtype=np.float32)[0, :, :, 0]
        return cv2.resize(values, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR).astype(np.float64)

    return estimate


def load_depth_model(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """A monocular depth estimator: a keras-hub preset (`load_keras_hub_estimator`), or from disk a `.keras` model
    (loaded in Keras's safe mode: a Lambda layer's Python code is refused) or a SavedModel folder (its serving
    signature, or the object itself when callable; a SavedModel runs the graph it holds, so only from a path the
    user gave) mapping [1, H, W, 3] RGB in [0, 1] to [1, H, W] or [1, H, W, 1] values.

    Returns:
      A function H x W x C image in [0, 1] -> H' x W' raw values (one-channel images are repeated to RGB).

    Raises:
      DepthError: missing or unloadable model (one line).
    """
    if is_keras_hub_preset(path):
        return load_keras_hub_estimator(path)
    import keras  # TensorFlow only when a model is used
    import tensorflow as tf

    if not os.path.exists(path):
        raise DepthError(f"dgdml_depth_model: no such model {path}")
    try:
        if path.endswith(".keras"):
            model = keras.models.load_model(path, compile=False, safe_mode=True)
        else:
            loaded = tf.saved_model.load(path)
            model = loaded.signatures["serving_default"] if "serving_default" in loaded.signatures else loaded
    except Exception as e:  # noqa: BLE001 - Keras and TF raise many kinds; the user needs one line
        if "safe_mode" in str(e) or "Lambda" in str(e):
            raise DepthError(f"dgdml_depth_model: {path} holds a Lambda layer (Python code), which Keras's safe "
                             "mode does not load; save the model without Lambda layers") from None
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
    """The depth model at `path` (a keras-hub preset or a model file) on the image -> float32 depth at the image's
    size (NaN where unknown). `kind` is what a model file's values are; a keras-hub preset's are disparity."""
    try:
        values = load_depth_model(path)(image)
    except DepthError:
        raise
    except Exception as e:  # noqa: BLE001 - a model of the wrong shape fails in many ways
        raise DepthError(f"dgdml_depth_model: {path} failed on the image ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return fit_to_image(to_depth(values, depth_model_kind(path, kind), path), image.shape, path)


def depth_stamp(path: str, image: np.ndarray, kind: str) -> dict:
    """What an estimated depth map was made from: the model (absolute path and modification time for files and
    folders), the kind of its values, and the image's pixels (a hash)."""
    model = os.path.abspath(path) if os.path.exists(path) else path
    return {"model": model, "model_mtime": os.path.getmtime(path) if os.path.exists(path) else None,
            "kind_of_model_values": depth_model_kind(path, kind), "shape": list(image.shape),
            "image_sha256": hashlib.sha256(np.ascontiguousarray(image, np.float32).tobytes()).hexdigest()}


def read_cached_depth(cache: str, stamp: dict) -> np.ndarray | None:
    """The depth kept in `cache` (an .npz of the map and its stamp) if it was made from `stamp`'s model and image."""
    try:
        with np.load(cache, allow_pickle=False) as saved:
            if json.loads(str(saved["stamp"])) == stamp:
                return to_depth(saved["depth"], "depth", cache)
    except (OSError, ValueError, KeyError):
        pass  # none yet, unreadable, or of another model or image: estimate again
    return None


def write_cached_depth(cache: str, depth: np.ndarray, stamp: dict) -> None:
    """Keeps an estimated depth (larger = farther, 0 where unknown) with its stamp in one file, atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, depth=np.nan_to_num(depth, nan=0.0), stamp=np.array(json.dumps(stamp)))
    write_bytes_atomically(cache, buffer.getvalue())
