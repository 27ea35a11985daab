"""Saved networks: the checkpoint of a run's networks and optimizers, a generator as `.keras`, and starting a run
from either (checked against the architecture before anything is set)."""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from typing import Mapping, Sequence

import h5py
import keras
import tensorflow as tf
from absl import logging


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
            return _weight_shapes(f["layers"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"init_weights: {path} is not a Keras model or weights file ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else 'unreadable'})") from None


def _weight_shapes(layers: h5py.Group) -> list[tuple[int, ...]]:
    # A nested model (a ZSSR network behind a backbone) keeps its own layers one level down.
    shapes = []
    for name in sorted(layers, key=lambda n: (len(n), n)):
        layer = layers[name]
        if "vars" in layer:
            shapes += [tuple(layer["vars"][i].shape) for i in sorted(layer["vars"], key=int)]
        if "layers" in layer:
            shapes += _weight_shapes(layer["layers"])
    return shapes


def load_init_weights(model: keras.Model, path: str) -> None:
    """Sets `model`'s weights from a `.keras` file saved by `export_model` (or `model.save_weights`).

    Raises:
      ValueError: the file is missing or unreadable, or holds a network of another depth, width or channel count.
    """
    shapes = saved_weight_shapes(path)
    expected = [tuple(w.shape) for w in model.weights]
    if sorted(shapes) != sorted(expected):  # nested models may list their layers in another order
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


def write_checkpoint(checkpoint: tf.train.Checkpoint, directory: str | os.PathLike,
                     extra_files: Mapping[str, bytes] | None = None) -> str:
    """Writes a checkpoint folder (`tf.train.CheckpointManager`, and `extra_files` by name) atomically: into a
    temporary folder beside it, then renamed over `directory`, so an interrupted write leaves the old folder or
    none, never half a one.

    Returns:
      The checkpoint's prefix inside `directory`.
    """
    directory = os.path.abspath(os.fspath(directory))
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=".tmp_", dir=os.path.dirname(directory))
    verbosity = logging.get_verbosity()
    try:
        logging.set_verbosity(min(verbosity, logging.WARNING))  # not TF's "Sharding callback duration" per save
        prefix = tf.train.CheckpointManager(checkpoint, temporary, max_to_keep=1).save()
        for name, data in (extra_files or {}).items():
            with open(os.path.join(temporary, name), "wb") as f:
                f.write(data)
        if os.path.isdir(directory):
            shutil.rmtree(directory)
        os.replace(temporary, directory)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    finally:
        logging.set_verbosity(verbosity)
    return os.path.join(directory, os.path.basename(prefix))


def _checkpoint_prefix(path: str) -> str | None:
    """The checkpoint prefix of a folder written by `write_checkpoint` (or of a prefix itself); None if neither."""
    if os.path.isdir(path):
        return tf.train.latest_checkpoint(path)
    return path if os.path.isfile(path + ".index") else None


def checkpoint_network_shapes(prefix: str) -> dict[str, list[tuple[int, ...]]]:
    """Network name -> the shapes of its saved trainable variables, in the network's order.

    A checkpoint stores each variable once, under its shortest path: a network's trainable variables appear under
    its optimizer (`<name>_optimizer/_trainable_variables/<i>`, in the network's order), the others under the
    network itself. Networks saved without an optimizer are read from their own paths.
    """
    from_optimizer: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
    own: dict[str, list[tuple[tuple[int, ...], tuple[int, ...]]]] = {}
    for name, shape in tf.train.list_variables(prefix):
        match = re.match(r"(\w+)_optimizer/_trainable_variables/(\d+)/", name)
        if match:
            from_optimizer.setdefault(match[1], []).append((int(match[2]), tuple(shape)))
            continue
        network, _, rest = name.partition("/")
        if rest.startswith("_functional/_operations/"):
            order = tuple(int(n) for n in re.findall(r"/(\d+)/", "/" + rest))
            own.setdefault(network, []).append((order, tuple(shape)))
    shapes = {network: [shape for _, shape in sorted(items)] for network, items in own.items()}
    shapes.update({network: [shape for _, shape in sorted(items)] for network, items in from_optimizer.items()})
    return shapes


def _saved_networks(path: str) -> tuple[str, dict[str, list[tuple[int, ...]]]]:
    """(prefix, network shapes) of a checkpoint folder or prefix; one-line errors."""
    prefix = _checkpoint_prefix(path.rstrip("/"))
    if prefix is None:
        raise ValueError(f"init_weights: no such checkpoint folder or file {path}")
    try:
        return prefix, checkpoint_network_shapes(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"init_weights: {path} is not a readable checkpoint ({type(e).__name__})") from None


def check_init_weights(path: str) -> None:
    """Fails (one line) unless `path` is a readable checkpoint folder, `.keras` or `.weights.h5` file; whether its
    networks fit is checked when a run builds its own (`restore_networks`)."""
    if path.endswith((".keras", ".weights.h5")):
        saved_weight_shapes(path)
    else:
        _saved_networks(path)


def restore_networks(networks: Mapping[str, keras.Model], path: str) -> list[str]:
    """Sets networks from `path`: a checkpoint folder of `export_model` (every network it holds under the same
    name; optimizers are not restored: the new run starts its own), or a generator as `.keras` / `.weights.h5`.

    Returns:
      The names of the networks set.

    Raises:
      ValueError: missing or unreadable, no network in common, or another architecture (one line).
    """
    if path.endswith((".keras", ".weights.h5")):
        load_init_weights(networks["generator"], path)
        return ["generator"]
    prefix, saved = _saved_networks(path)
    common = [name for name in networks if name in saved]
    if not common:
        raise ValueError(f"init_weights: {path} holds {', '.join(sorted(saved)) or 'no network'}; this run has "
                         f"{', '.join(networks)}")
    for name in common:
        expected = [tuple(v.shape) for v in networks[name].trainable_variables]
        if sorted(saved[name]) != sorted(expected):
            raise ValueError(f"init_weights: {path} holds a {name} of {_architecture(saved[name])}; this run "
                             f"needs {_architecture(expected)}")
    tf.train.Checkpoint(**{name: networks[name] for name in common}).read(prefix).expect_partial()
    return common


def load_backbone(path: str, channels: int) -> keras.Model:
    """A pretrained network from a `.keras` file (e.g. `zssr pretrain`'s), frozen, for `ZSSRConfig.backbone`.

    Raises:
      ValueError: the file is missing or unreadable, or the network does not map `channels`-channel images to
        images of the same size and channels (tried on a small image; one line).
    """
    if not os.path.isfile(path):
        raise ValueError(f"backbone: no such file {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.saving.load_model(path, compile=False)
        shape_in = tuple(model.input_shape)
    except Exception as e:  # Keras raises many types for a bad archive; any of them is one line here
        raise ValueError(f"backbone: {path} is not a Keras model file of one image input ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else 'unreadable'})") from None
    if len(shape_in) != 4 or shape_in[-1] != channels:
        raise ValueError(f"backbone: {path} takes {shape_in[-1]}-channel images; this image has {channels} "
                         f"channel(s) (zssr pretrain --pretrain_channels={channels} makes such a network)")
    probe = tf.zeros((1, 16, 16, channels))
    try:
        shape_out = tuple(model(probe, training=False).shape)
    except Exception as e:  # a network that cannot run on images of any size
        raise ValueError(f"backbone: {path} does not run on a 16x16 image ({type(e).__name__})") from None
    if shape_out != tuple(probe.shape):
        raise ValueError(f"backbone: {path} maps 16x16x{channels} images to {'x'.join(map(str, shape_out[1:]))}; a "
                         "backbone must keep the size and channels (it refines the interpolated image)")
    model.trainable = False
    return model
