"""One run from files to files: read the input, run a method, write every output under the output directory.

The command line and notebooks call `run()`; the trainers never touch files. Everything a run writes goes under
`output_dir`: `config.json` first, then one SR image per stage (named as the original names them) and `log.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Sequence

import numpy as np

from zssr_tf import metrics
from zssr_tf.config import Config
from zssr_tf.image_io import ImageError, output_name, read_image, write_bytes_atomically, write_image
from zssr_tf.imresize import imresize
from zssr_tf.train import ZSSR


@dataclasses.dataclass
class RunResult:
    """What a run produced: the output files, the final image and its summary numbers."""

    outputs: list[str]
    image: np.ndarray
    seconds: float
    iterations: list[int]
    psnr_y: float | None = None


def run(conf: Config, input_path: str, output_dir: str, ground_truth: str | None = None,
        kernels: Sequence[str] | None = None) -> RunResult:
    """Super-resolves one image file with ZSSR and writes the results.

    Args:
      conf: the run's configuration.
      input_path: the LR image (PNG, JPEG, TIFF, BMP, WebP; 8/16 bits; gray, RGB, RGBA).
      output_dir: created if needed; receives config.json, `<name>_zssr_X2.00X2.00.png` per stage and log.json.
      ground_truth: optional HR image for monitoring and the reported PSNR.
      kernels: optional kernel files (.mat/.npy), one per scale factor.

    Returns:
      A RunResult. The SR image keeps the input's channels (alpha is upscaled separately) and bit depth.

    Raises:
      ImageError, KernelError, ConfigError, ValueError: bad input, with a one-line message.
    """
    start = time.perf_counter()
    image = read_image(input_path)
    gt = None if ground_truth is None else read_image(ground_truth).pixels
    color, alpha = _split_alpha(image.pixels)
    if gt is not None:
        gt = _split_alpha(gt)[0]
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise ImageError(f"cannot create output directory {output_dir}: {e.strerror or e}") from None
    write_bytes_atomically(os.path.join(output_dir, "config.json"), conf.to_json().encode())

    zssr = ZSSR(color, conf, ground_truth=gt, kernels=kernels)
    zssr.run()
    outputs = []
    for sf, sr in zip(conf.scale_factors, zssr.outputs):
        if alpha is not None:
            upscaled_alpha = np.clip(imresize(alpha, sf, output_shape=sr.shape[:2], kernel=conf.upscale_method), 0, 1)
            sr = np.concatenate([sr, upscaled_alpha.astype(np.float32)], axis=2)
        path = os.path.join(output_dir, output_name(input_path, sf))
        write_image(path, sr, image.bit_depth)
        outputs.append(path)
    final = zssr.outputs[-1]
    psnr_y = None if zssr.gt_per_sf is None else metrics.psnr(final, zssr.gt_per_sf)
    result = RunResult(outputs=outputs, image=final, seconds=time.perf_counter() - start,
                       iterations=[h.iterations for h in zssr.history], psnr_y=psnr_y)
    log = {"input": input_path, "ground_truth": ground_truth, "kernels": list(kernels or []),
           "outputs": outputs, "seconds": result.seconds, "psnr_y": psnr_y,
           "stages": [dataclasses.asdict(h) for h in zssr.history]}
    write_bytes_atomically(os.path.join(output_dir, "log.json"), json.dumps(log, indent=1).encode())
    return result


def _split_alpha(pixels: np.ndarray) -> tuple[np.ndarray, Any]:
    """RGBA -> (RGB, alpha): the alpha channel is not super-resolved, only interpolated."""
    if pixels.shape[2] == 4:
        return pixels[:, :, :3], pixels[:, :, 3:]
    return pixels, None
