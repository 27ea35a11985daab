"""Saved networks: export to `.keras` and start a run from saved weights (checked against the architecture)."""

from __future__ import annotations

import io
import os
import tempfile
import warnings
import zipfile
from typing import Sequence

import h5py
import keras


def saved_weight_shapes(path: str) -> list[tuple[int, ...]]:
    """The shapes of the weights in a Keras `.keras` or `.weights.h5` file, in layer order.

    Both formats keep the weights in one HDF5 tree, `layers/<layer>/vars/<i>`, whose layer names are numbered in
    the order of the model's layers (`conv2d`, `conv2d_1`, ..., `conv2d_10`); a `.keras` file is a zip holding it
    as `model.weights.h5`.

    Raises:
      ValueError: the file is missing or is not such a file (one line).
    """
    if not os.path.isfile(path):
        raise ValueError(f"init_weights: no such file {path}")
    try:
        if path.endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                source = io.BytesIO(archive.read("model.weights.h5"))
        else:
            source = path
        with h5py.File(source, "r") as f:
            layers = sorted(f["layers"], key=lambda name: (len(name), name))
            return [tuple(f["layers"][layer]["vars"][i].shape) for layer in layers
                    for i in sorted(f["layers"][layer]["vars"], key=int)]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"init_weights: {path} is not a Keras model or weights file ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else 'unreadable'})") from None


def load_init_weights(model: keras.Model, path: str) -> None:
    """Sets `model`'s weights from a file saved by `ZSSR.export_model` (or `model.save_weights`).

    Raises:
      ValueError: the file is missing or unreadable, or holds a network of another depth, width or channel count.
    """
    shapes = saved_weight_shapes(path)
    expected = [tuple(w.shape) for w in model.weights]
    if shapes != expected:
        raise ValueError(f"init_weights: {path} holds a network of {_architecture(shapes)}; this run needs "
                         f"{_architecture(expected)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns about containers without weights (Input, Add)
        model.load_weights(path)


def _architecture(shapes: Sequence[tuple[int, ...]]) -> str:
    """'depth 3, width 8, 3 channels' for the 3x3 kernels of a ZSSR network."""
    if not shapes or any(len(s) != 4 for s in shapes):
        return f"{len(shapes)} weights of shapes {', '.join('x'.join(map(str, s)) for s in shapes)}"
    width = f"width {shapes[0][3]}, " if len(shapes) > 1 else ""
    channels = shapes[0][2]
    return f"depth {len(shapes)}, {width}{channels} channel{'s' if channels != 1 else ''}"


def save_model(model: keras.Model, path: str | os.PathLike) -> None:
    """Saves a model as a `.keras` file, under a temporary name beside `path` and renamed (no broken files).

    Raises:
      ValueError: `path` does not end in `.keras`.
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"export: {path} must end in .keras")
    # Keras saves only to names ending in .keras, so the temporary name does too. mkstemp picks a free name;
    # Keras then creates the file itself, with the usual permissions (mkstemp's are 0600).
    fd, temporary = tempfile.mkstemp(prefix=".tmp_", suffix=".keras", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    os.unlink(temporary)
    try:
        model.save(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
