"""Downscaling kernels: loading (.mat/.npy), validation and ZSSR's sub-pixel `kernel_shift`.

This module owns everything between a kernel file on disk (or an array handed in by the caller) and the numeric
kernel that `imresize` correlates with when it makes an LR son. It does not resize anything itself.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.ndimage

KernelSource = str | os.PathLike | np.ndarray
ScaleFactor = float | Sequence[float]

# The original's variable name first, then the lowercase one that MZSR/KernelGAN write.
_MAT_VARIABLES = ("Kernel", "kernel")


class KernelError(ValueError):
    """A kernel file or array that cannot be used; the message is one line naming its source."""


def _one_line(error: BaseException) -> str:
    # Library errors (scipy's in particular) can span lines; our messages must stay one line for logs.
    return " ".join(str(error).split()) or type(error).__name__


def validate_kernel(kernel: np.ndarray, source: str = "kernel") -> np.ndarray:
    """Checks that `kernel` is usable as a downscaling kernel.

    Args:
      kernel: array-like of shape (kh, kw), real numbers, all finite, with a positive sum. Negative taps are allowed
        (kernels estimated from real images, e.g. the original's `charlie_0.mat`, have small negative entries).
      source: where the kernel came from, used as the prefix of error messages.

    Returns:
      A float64 copy of shape (kh, kw); the input is not modified.

    Raises:
      KernelError: if the kernel is not 2-D, empty, not real-numeric, has NaN/inf, or does not sum to > 0.
    """
    k = np.asarray(kernel)
    if k.dtype == object or not np.issubdtype(k.dtype, np.number) or np.issubdtype(k.dtype, np.complexfloating):
        raise KernelError(f"{source}: expected a real numeric array, got dtype {k.dtype}")
    if k.ndim != 2:
        raise KernelError(f"{source}: expected a 2-D kernel, got shape {k.shape}")
    if k.size == 0:
        raise KernelError(f"{source}: kernel is empty, shape {k.shape}")
    k = k.astype(np.float64)  # always a copy
    if not np.all(np.isfinite(k)):
        raise KernelError(f"{source}: kernel has non-finite (NaN or inf) entries")
    if not k.sum() > 0:
        raise KernelError(f"{source}: kernel must have a positive sum, got {k.sum():.6g}")
    return k


def load_kernel(path: str | os.PathLike) -> np.ndarray:
    """Loads and validates one kernel file.

    Args:
      path: a `.mat` file holding a variable `Kernel` (the original's name) or `kernel`, or a `.npy` file.

    Returns:
      The kernel, float64 of shape (kh, kw), see `validate_kernel`.

    Raises:
      KernelError: if the file is missing, unreadable or corrupt, has an unknown extension, lacks the variable, or
        holds an invalid kernel.
    """
    path = Path(path)
    source = f"kernel file {path}"
    suffix = path.suffix.lower()
    if suffix not in (".mat", ".npy"):
        raise KernelError(f"{source}: unknown extension {suffix or '(none)'!r}, expected .mat or .npy")
    if not path.is_file():
        raise KernelError(f"{source}: no such file")
    try:
        kernel = np.load(path, allow_pickle=False) if suffix == ".npy" else _load_mat_kernel(path, source)
    except KernelError:
        raise
    except Exception as error:  # numpy raises many types (ValueError, EOFError, MemoryError, tokenize errors)
        raise KernelError(f"{source}: cannot read ({type(error).__name__}: {_one_line(error)})") from error
    return validate_kernel(kernel, source)


# Run in a child process: scipy's MAT reader (1.17) crashes the process (segmentation fault, bus error) on some
# damaged files, found by tests/test_fuzz.py; a crash there must be one line, not the end of a run.
_LOAD_MAT = """
import io, sys
import numpy as np, scipy.io
def one_line(error):
    return f"{type(error).__name__}: {' '.join(str(error).split()) or type(error).__name__}"
try:
    variables = scipy.io.loadmat(sys.argv[1])
except NotImplementedError:  # MATLAB v7.3 files are HDF5: h5py (installed with TensorFlow) reads them
    try:
        import h5py
        with h5py.File(sys.argv[1], "r") as f:
            # MATLAB writes column-major: h5py sees every matrix transposed.
            variables = {n: np.asarray(f[n]).T for n in sys.argv[2:] if isinstance(f.get(n), h5py.Dataset)}
    except Exception as error:
        sys.exit(f"cannot read (a MATLAB v7.3 / HDF5 file h5py cannot read, {one_line(error)})")
except Exception as error:  # scipy raises many types (ValueError, OSError)
    sys.exit(f"cannot read ({one_line(error)})")
name = next((n for n in sys.argv[2:] if n in variables), None)
if name is None:
    sys.exit("no variable " + " or ".join(repr(n) for n in sys.argv[2:]))
buffer = io.BytesIO()
try:
    np.save(buffer, np.asarray(variables[name]), allow_pickle=False)
except ValueError:
    sys.exit(f"the variable {name!r} is not an array of numbers")
sys.stdout.buffer.write(buffer.getvalue())
"""


def _load_mat_kernel(path: Path, source: str) -> np.ndarray:
    """The kernel variable of a .mat file, read by scipy in a child process (see `_LOAD_MAT`).

    Raises:
      KernelError: unreadable file, no kernel variable, or the reader crashed (one line).
    """
    try:
        child = subprocess.run([sys.executable, "-c", _LOAD_MAT, os.fspath(path), *_MAT_VARIABLES],
                               capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise KernelError(f"{source}: cannot read (the MAT reader did not finish in 120 s)") from None
    if child.returncode < 0:
        raise KernelError(f"{source}: cannot read (the MAT reader crashed on it: a damaged file)")
    if child.returncode:
        message = child.stderr.decode(errors="replace").strip().splitlines()
        raise KernelError(f"{source}: {message[-1] if message else 'cannot read'}")
    return np.load(io.BytesIO(child.stdout), allow_pickle=False)


def _scale_pair(scale_factor: ScaleFactor) -> np.ndarray:
    sf = np.asarray(scale_factor, dtype=np.float64).reshape(-1)
    if sf.size not in (1, 2):
        raise ValueError(f"scale factor must be a scalar or a (vertical, horizontal) pair, got {scale_factor!r}")
    return np.broadcast_to(sf, (2,)).copy()


def wanted_center(shape: Sequence[int], scale_factor: ScaleFactor) -> np.ndarray:
    """Where correlate-then-subsample needs a kernel of `shape` to have its centre of mass (see `kernel_shift`)."""
    shape = np.asarray(shape)
    return shape // 2 + 0.5 * (_scale_pair(scale_factor) - shape % 2)


def kernel_shift(kernel: np.ndarray, scale_factor: ScaleFactor) -> np.ndarray:
    """Moves the kernel's centre of mass to where correlate-then-subsample needs it (the original's `kernel_shift`).

    The son is made by correlating the HR father with the kernel and keeping pixels 0, sf, 2sf, ... So LR pixel 0
    must stand for the first sf x sf block of HR pixels, centred at (sf - 1) / 2, not for HR pixel 0 alone: for an
    even scale factor the kernel's centre has to sit between pixels, otherwise the LR son is shifted by half a pixel
    against the HR father and the network learns that shift. The target follows the authors' Python-2 formula
    `wanted = shape // 2 + 0.5 * (sf - shape % 2)` (integer floor division: a naive Python-3 `/` would add another
    half pixel for odd kernels; for even-sized kernels the formula lands half a pixel past scipy's filter centre,
    kept as the authors ran it).

    Args:
      kernel: array-like of shape (kh, kw), validated with `validate_kernel`.
      scale_factor: the stage's scale factor, a scalar or a (vertical, horizontal) pair, > 0.

    Returns:
      float64 array of shape (kh + 2p, kw + 2p), p = ceil(max|shift|) + 1, whose centre of mass is at `p + wanted`.
      Not renormalised: the spline shift keeps the sum only approximately.

    Raises:
      KernelError: if the kernel is invalid.
      ValueError: if the scale factor is neither a scalar nor a pair.
    """
    k = validate_kernel(kernel)
    wanted = wanted_center(k.shape, scale_factor)
    shift = wanted - np.array(scipy.ndimage.center_of_mass(k))
    # Zero margin first so the spline shift cannot push mass off the array; the padding moves the centre of mass by
    # `pad` as well, so shifting the padded kernel by `wanted - com` lands it at `pad + wanted`.
    pad = int(math.ceil(np.max(np.abs(shift)))) + 1
    return scipy.ndimage.shift(np.pad(k, pad), shift, order=3, mode="constant", cval=0.0)


def preprocess_kernels(
    kernels: Sequence[KernelSource] | KernelSource | None,
    scale_factors: Sequence[ScaleFactor],
    downscale_method: str = "cubic",
) -> list[np.ndarray | str]:
    """Turns the user's kernels into what each stage's downscaling uses (the original's `preprocess_kernels`).

    Args:
      kernels: None (no kernels: every stage uses `downscale_method`), or one kernel per scale factor, each a path
        (.mat/.npy, see `load_kernel`) or a 2-D array. A single path or 2-D array counts as a one-element list.
      scale_factors: the stages' scale factors, each a scalar or a (vertical, horizontal) pair.
      downscale_method: the `imresize` kernel name used when `kernels` is None.

    Returns:
      A list with one entry per scale factor: `downscale_method` repeated, or the shifted float64 kernels
      (see `kernel_shift`).

    Raises:
      KernelError: if the number of kernels differs from the number of scale factors, or a kernel is invalid.
    """
    if kernels is None:
        return [downscale_method] * len(scale_factors)
    if isinstance(kernels, (str, os.PathLike)) or (isinstance(kernels, np.ndarray) and kernels.ndim == 2):
        kernels = [kernels]
    kernels = list(kernels)
    if len(kernels) != len(scale_factors):
        raise KernelError(f"got {len(kernels)} kernels for {len(scale_factors)} scale factors")
    loaded = [
        load_kernel(k) if isinstance(k, (str, os.PathLike)) else validate_kernel(k, f"kernels[{i}]")
        for i, k in enumerate(kernels)
    ]
    return [kernel_shift(k, sf) for k, sf in zip(loaded, scale_factors)]
