"""Runs from files to files: one image or a folder of images in, everything the run produced out.

The command line and notebooks call `run()` (one image) or `run_folder()` (the original `run_ZSSR.py`) with any
method of `zssr_tf.methods.METHODS`; the trainers never touch files. Everything goes under `output_dir`:
`config.json` (the effective configuration, its method included), one SR image per scale stage named as the
original names them (`<name>_<method>_X2.00X2.00.png`), `<name>_log.json` (the train step's named scalars, quick
tests, learning-rate drops, timings, the method's report such as DGDML's patch counts), `<name>_record.json` (the
image's result, written last: a rerun keeps what it says is done), for folders `results.csv` (made from the results
in the folder's order),
with `estimate_kernels` the estimated kernels `<name>_kernel_x2.mat` (`_x4` for x4 stages) and their pictures, and on
request the checkpoint of the trained networks and optimizers `<name>_<method>_checkpoint/` and TensorBoard
event files (`tb/<name>/`). Every file but the event files is written atomically.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import glob
import io
import json
import math
import os
import re
import shutil
import time
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from zssr_tf import group, kernel_estimation, metrics, pictures, scaleout
from zssr_tf.scaleout import FolderJob, JobOptions
from zssr_tf.config import METHOD_TITLES, Config
from zssr_tf.image_io import IMAGE_EXTENSIONS, ImageError, output_name, read_image, write_bytes_atomically, \
    write_image
from zssr_tf.imresize import imresize
from zssr_tf.depth import DEPTH_EXTENSIONS, depth_stamp, estimate_depth, read_cached_depth, write_cached_depth
from zssr_tf.methods import DEPTH_METHODS, METHODS
from zssr_tf.config import max_input_megapixels
from zssr_tf.engine import Coroutine, drive, read_ground_truth
from zssr_tf.models.weights import check_init_weights, save_model

RESULTS_FIELDS = ("name", "status", "seconds", "iterations", "psnr_y", "psnr_y_shaved", "output")


@dataclasses.dataclass
class RunResult:
    """What a run of one image produced: the output files, the final image and its summary numbers."""

    name: str
    outputs: list[str]
    image: np.ndarray | None = None
    seconds: float = 0.0
    iterations: list[int] = dataclasses.field(default_factory=list)
    psnr_y: float | None = None  # vs ground truth, no border shave
    psnr_y_shaved: float | None = None  # border of ceil(scale factor) pixels shaved, as SR papers report
    status: str = "done"
    model: str | None = None  # the exported network (export_model)
    kernel_files: list[str] = dataclasses.field(default_factory=list)  # estimated kernels (estimate_kernels)
    kernel_seconds: float | None = None  # time of the kernel estimation (included in `seconds`)
    earlier: bool = False  # the result of an earlier run, read from its record (not in results.csv)


# The names of the files a run writes for image <name> (beside <name>.<ext>): the folder scan skips them.
OUTPUT_SUFFIXES = re.compile(r"_(?:[a-z0-9]+_(?:X\d+\.\d\d)+|training|comparison|kernel_x\d+|depth_split)$")


def depth_cache_path(input_path: str, output_dir: str) -> str:
    """Where an estimated depth map is kept: `<name>_depth_estimate.npz` (not `<name>_depth.*`, which `find_depth`
    reads as a given map when the outputs go beside the inputs)."""
    return os.path.join(output_dir, f"{os.path.splitext(os.path.basename(input_path))[0]}_depth_estimate.npz")


def output_paths(conf: Config, input_path: str, output_dir: str) -> list[str]:
    return [os.path.join(output_dir, output_name(input_path, sf, conf.method)) for sf in conf.task.scale_factors]


def resume_path(conf: Config, input_path: str, output_dir: str) -> str:
    """Where `checkpoint_every` keeps an image's resumable training state: `<output_dir>/<name>_<method>_resume`."""
    stem = os.path.splitext(os.path.basename(input_path))[0]
    return os.path.join(output_dir, f"{stem}_{conf.method}_resume")


def model_path(conf: Config, input_path: str, output_dir: str) -> str:
    """Where `export_model` saves an image's networks and optimizers: `<output_dir>/<name>_<method>_checkpoint`."""
    stem = os.path.splitext(os.path.basename(input_path))[0]
    return os.path.join(output_dir, f"{stem}_{conf.method}_checkpoint")


def record_path(input_path: str, output_dir: str) -> str:
    """The image's record: `<output_dir>/<name>_record.json`, its RunResult as JSON, written after everything else."""
    return os.path.join(output_dir, os.path.splitext(os.path.basename(input_path))[0] + "_record.json")


def write_record(conf: Config, input_path: str, output_dir: str, result: RunResult) -> None:
    fields = {k: v for k, v in dataclasses.asdict(result).items() if k not in ("image", "earlier")}
    write_bytes_atomically(record_path(input_path, output_dir),
                           json.dumps({"method": conf.method, **fields}, indent=1).encode())


def read_record(conf: Config, input_path: str, output_dir: str) -> RunResult | None:
    """The earlier result of this image with this method, if its record says done and every output it names is
    still there (by name: the folder may have moved); None otherwise (no record, a failure, other outputs)."""
    try:
        with open(record_path(input_path, output_dir)) as f:
            record = json.load(f)
        fields = {f.name for f in dataclasses.fields(RunResult)}
        result = RunResult(**{k: v for k, v in record.items() if k in fields})
    except (OSError, ValueError, TypeError):  # none, unreadable or from another version: the image is redone
        return None
    outputs = output_paths(conf, input_path, output_dir)
    if (record.get("method") != conf.method or result.status != "done"
            or [os.path.basename(p) for p in result.outputs] != [os.path.basename(p) for p in outputs]
            or not all(os.path.exists(p) for p in outputs)):
        return None
    result.outputs, result.earlier = outputs, True
    return result


def run(conf: Config, input_path: str, output_dir: str, ground_truth: str | None = None,
        kernels: Sequence[str] | None = None, overwrite: bool = True, tensorboard_dir: str | None = None,
        export_model: bool = False, depth: str | None = None) -> RunResult:
    """Super-resolves one image file with the configured method and writes the results.

    Args:
      conf: the run's configuration.
      input_path: the LR image (PNG, JPEG, TIFF, BMP, WebP; 8/16 bits; gray, RGB, RGBA, palette).
      output_dir: created if needed.
      ground_truth: optional HR image for monitoring and the reported PSNR.
      kernels: optional kernel files (.mat/.npy), one per scale factor.
      overwrite: when False, an image done earlier (its record says so and its outputs exist) is not redone: its
        record's result is returned (`earlier` True); outputs without a record (another version's) are kept too
        (status "skipped").
      tensorboard_dir: optional; TensorBoard event files go to `<tensorboard_dir>/<name>/`.
      export_model: whether to save the trained networks and optimizers (the last stage's) as the checkpoint
        folder `<output_dir>/<name>_<method>_checkpoint`, which `init_weights` can start other runs from.
      depth: optional depth map of the image (methods that use one: `DEPTH_METHODS`).

    Returns:
      A RunResult. The SR image keeps the input's channels (alpha is interpolated, not learned) and bit depth.

    Raises:
      ImageError, KernelError, ConfigError, ValueError: bad input, with a one-line message; nothing is written.
    """
    return drive(run_coroutine(conf, input_path, output_dir, ground_truth, kernels, overwrite, tensorboard_dir,
                               export_model, depth))


def run_coroutine(conf: Config, input_path: str, output_dir: str, ground_truth: str | None = None,
                  kernels: Sequence[str] | None = None, overwrite: bool = True, tensorboard_dir: str | None = None,
                  export_model: bool = False, depth: str | None = None) -> Coroutine:
    """`run` as a coroutine of its trainer's steps (`engine.Trainer.run_coroutine`), for `group.drive_together`,
    which trains several images in one step; arguments and result as `run`.
    """
    name = os.path.splitext(os.path.basename(input_path))[0]
    if depth is not None and conf.method not in DEPTH_METHODS:
        raise ValueError(f"depth_map: --method={conf.method} takes no depth map (methods that do: "
                         f"{', '.join(DEPTH_METHODS)})")
    outputs = output_paths(conf, input_path, output_dir)
    earlier = None if overwrite else read_record(conf, input_path, output_dir)
    if earlier is not None:
        logging.info("%s: done by an earlier run (its record and outputs exist), kept (--overwrite to redo)", name)
        return earlier
    if not overwrite and all(os.path.exists(p) for p in outputs):
        logging.info("%s: outputs exist, skipped (--overwrite to redo)", name)
        return RunResult(name=name, outputs=outputs, status="skipped")
    start = time.perf_counter()
    image = read_image(input_path, *max_input_megapixels(conf))
    color, alpha = _split_alpha(image.pixels)
    gt = None if ground_truth is None else _split_alpha(read_ground_truth(ground_truth, color.shape, conf))[0]
    # The image's name tags its log lines (the original named array inputs' outputs after it).
    summary_dir = None if tensorboard_dir is None else os.path.join(tensorboard_dir, name)
    extra = {"depth": depth} if conf.method in DEPTH_METHODS else {}
    run_conf, estimated = conf.replace(name=name), None
    if conf.method in DEPTH_METHODS and depth is None and conf.dgdml.depth_model and conf.dgdml.depth_guidance \
            and conf.dgdml.pairing == "depth":
        # Estimated once per image and kept beside the outputs (written once the trainer has accepted the image),
        # so that a rerun and a resumed run use one map.
        depth_cache = depth_cache_path(input_path, output_dir)
        stamp = depth_stamp(conf.dgdml.depth_model, color, conf.dgdml.depth_kind)
        estimated = read_cached_depth(depth_cache, stamp)
        fresh = estimated is None
        if fresh:
            estimated = estimate_depth(conf.dgdml.depth_model, color, conf.dgdml.depth_kind)
        extra, run_conf = {"depth": estimated}, run_conf.replace(dgdml_depth_kind="depth")
    trainer = METHODS[conf.method](color, run_conf, ground_truth=gt, kernels=kernels,
                                   summary_dir=summary_dir, **extra)
    if estimated is not None:
        trainer.report["depth"] = conf.dgdml.depth_model
    # Only now: the trainer has validated the image, ground truth, kernels and initial weights (before minutes of
    # kernel estimation).
    estimate = None
    if conf.task.estimate_kernels and kernels is None:
        estimate = kernel_estimation.estimate_kernels(
            color, conf.replace(name=name), None if summary_dir is None else os.path.join(summary_dir, "kernelgan"))
        trainer.set_kernels(estimate.for_stages(conf.task.scale_factors))
    elif conf.task.estimate_kernels:
        logging.info("%s: using its kernel files, not estimating kernels", name)
    prepare_output_dir(conf, output_dir)
    if estimated is not None:  # not <name>_depth.*: a folder run would take those for the image's depth map
        if fresh:
            write_cached_depth(depth_cache, estimated, stamp)
        pictures.plot_depth(color, estimated, os.path.join(output_dir, f"{name}_depth_split.png"),
                            f"{name}: {conf.dgdml.depth_model}")
    with contextlib.suppress(FileNotFoundError):  # redone: the earlier result is no longer the image's
        os.remove(record_path(input_path, output_dir))
    kernel_files = [] if estimate is None else kernel_estimation.write_kernel_files(
        estimate, name, output_dir, conf.task.scale_factors)
    if conf.run.checkpoint_every:
        trainer.set_resume_dir(resume_path(conf, input_path, output_dir))
    yield from trainer.run_coroutine()
    for path, sf, sr in zip(outputs, conf.task.scale_factors, trainer.outputs):
        if alpha is not None:
            upscaled_alpha = imresize(alpha, sf, output_shape=sr.shape[:2], kernel=conf.task.upscale_method)
            sr = np.concatenate([sr, np.clip(upscaled_alpha, 0, 1).astype(np.float32)], axis=2)
        write_image(path, sr, image.bit_depth)
    write_kept_tests(trainer, os.path.join(output_dir, f"{name}_{conf.method}_tests"))
    result = RunResult(name=name, outputs=outputs, image=trainer.outputs[-1], seconds=time.perf_counter() - start,
                       iterations=[h.iterations for h in trainer.history], kernel_files=kernel_files,
                       kernel_seconds=None if estimate is None else estimate.seconds)
    if export_model:
        result.model = model_path(conf, input_path, output_dir)
        trainer.export_model(result.model)
    if trainer.gt_per_sf is not None:
        result.psnr_y = metrics.psnr(result.image, trainer.gt_per_sf)
        result.psnr_y_shaved = metrics.psnr(result.image, trainer.gt_per_sf,
                                            border=math.ceil(max(conf.task.final_scale_factor)))
        # Over all channels, as the plot's curve of the quick tests' true MSE.
        channels_psnr = metrics.psnr_of_mse(float(np.mean((result.image - trainer.gt_per_sf) ** 2)))
        pictures.plot_training(trainer.history, os.path.join(output_dir, f"{name}_training.png"),
                               final_psnr=(channels_psnr, result.psnr_y), final_test=_final_test(trainer))
        bicubic = imresize(color, conf.task.final_scale_factor, output_shape=result.image.shape[:2],
                           kernel=conf.task.upscale_method)
        pictures.comparison_crop(np.clip(bicubic, 0, 1), result.image, trainer.gt_per_sf,
                                 os.path.join(output_dir, f"{name}_comparison.png"), METHOD_TITLES[conf.method])
    log = {"input": input_path, "ground_truth": ground_truth, "kernels": list(kernels or kernel_files),
           "depth": depth if estimated is None else depth_cache_path(input_path, output_dir),
           "method": conf.method,
           **{k: v for k, v in dataclasses.asdict(result).items() if k != "image"}, "report": trainer.report,
           "stages": [dataclasses.asdict(h) for h in trainer.history]}
    if estimate is not None:
        log["kernel_estimation"] = dataclasses.asdict(estimate.history)
    write_bytes_atomically(os.path.join(output_dir, f"{name}_log.json"), json.dumps(log, indent=1).encode())
    write_record(conf, input_path, output_dir, result)
    if conf.run.checkpoint_every:  # done: nothing to resume (its state first: a folder without it is not read)
        resume = resume_path(conf, input_path, output_dir)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(resume, "checkpoint", "state.json"))
        shutil.rmtree(resume, ignore_errors=True)
    return result


def write_kept_tests(trainer, folder: str) -> None:
    """A method's kept tests (ZSRGAN's protocol): `iter_<n>.png`, the generator's output after n steps, and
    `iter_<n>.keras`, that generator (`--init_weights` takes it); `stage<i>_` before them in gradual runs."""
    tests = [t for t in getattr(trainer, "kept_tests", []) if t.png is not None]
    if not tests:
        return
    os.makedirs(folder, exist_ok=True)
    generator = keras.models.clone_model(trainer.networks["generator"])
    stages = len({t.stage for t in tests}) > 1
    for test in tests:
        stem = os.path.join(folder, (f"stage{test.stage}_" if stages else "") + f"iter_{test.iterations:05d}")
        write_bytes_atomically(stem + ".png", test.png)
        generator.set_weights(test.weights)
        save_model(generator, stem + ".keras")


def _final_test(trainer) -> str:
    """What the trainer's final test did to the network's output, in words for the training plot."""
    parts = ["median of the rotations and mirrors"] if trainer.output_flip else []
    if trainer.back_projection_iters:
        parts.append(f"{trainer.back_projection_iters} back-projections")
    return ", ".join(parts) or "one pass of the network"


@dataclasses.dataclass
class KernelResult:
    """What `estimate_kernel` wrote for one image."""

    name: str
    kernel_files: list[str]
    seconds: float
    iterations: int
    model: str | None = None


def estimate_kernel(conf: Config, input_path: str, output_dir: str, tensorboard_dir: str | None = None,
                    export_model: bool = False) -> KernelResult:
    """`zssr estimate-kernel`: estimates one image's kernels (x2, and x4 when a stage of `conf` is x4) and writes
    `<name>_kernel_x<s>.mat` / `.png` and `<name>_kernel_log.json` (the estimator's scalars) to `output_dir`; with
    `export_model`, G, D and their optimizers as the checkpoint folder `<name>_kernelgan_checkpoint`.

    Raises:
      ImageError, ValueError: a bad or too small image (one line); nothing is written.
    """
    name = os.path.splitext(os.path.basename(input_path))[0]
    color = _split_alpha(read_image(input_path, *max_input_megapixels(conf)).pixels)[0]
    summary_dir = None if tensorboard_dir is None else os.path.join(tensorboard_dir, name, "kernelgan")
    model = os.path.join(output_dir, f"{name}_kernelgan_checkpoint") if export_model else None
    estimate = kernel_estimation.estimate_kernels(color, conf.replace(name=name), summary_dir, model)
    prepare_output_dir(conf, output_dir)
    files = kernel_estimation.write_kernel_files(estimate, name, output_dir, conf.task.scale_factors)
    result = KernelResult(name=name, kernel_files=files, seconds=estimate.seconds,
                          iterations=estimate.history.iterations, model=model)
    log = {"input": input_path, **dataclasses.asdict(result), "stages": [dataclasses.asdict(estimate.history)]}
    write_bytes_atomically(os.path.join(output_dir, f"{name}_kernel_log.json"), json.dumps(log, indent=1).encode())
    return result


def find_inputs(input_dir: str, num_stages: int,
                depth_maps: bool = False) -> list[tuple[str, str | None, list[str] | None]]:
    """The original folder convention: every image, its `<name>_gt.*` and its kernels `<name>_<i>.mat`; with
    `depth_maps` (methods that use them), `<name>_depth.*` are depth maps (`find_depth`), not inputs.

    Kernels are used only when all `num_stages` files exist (as the original); a partial set is reported and
    ignored. Files this project writes beside an image (`<name>_<method>_X2.00X2.00.png`, `<name>_training.png`,
    `<name>_comparison.png`, `<name>_kernel_x2.png`, when the output folder is the input folder) are not inputs.

    Returns:
      Sorted (input, ground truth or None, kernel files or None) triples.

    Raises:
      ImageError: the folder has no images.
    """
    def is_image(path: str) -> bool:
        return os.path.isfile(path) and os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS

    files = sorted(p for p in glob.glob(os.path.join(glob.escape(input_dir), "*")) if is_image(p))
    by_stem = {os.path.splitext(p)[0]: p for p in files}

    def ours(stem: str) -> bool:  # an output of ours: the name of another image of the folder plus our suffix
        match = OUTPUT_SUFFIXES.search(stem)
        return match is not None and stem[:match.start()] in by_stem

    jobs = []
    for path in files:
        stem = os.path.splitext(path)[0]
        if stem.endswith("_gt") or (depth_maps and stem.endswith("_depth")) or ours(stem):
            continue  # ground truths, depth maps and our own outputs
        kernels = [f"{stem}_{i}.mat" for i in range(num_stages)]
        found = [k for k in kernels if os.path.isfile(k)]
        if found and len(found) < num_stages:
            logging.warning("%s: found %d of %d kernel files (%s); using none", os.path.basename(path), len(found),
                            num_stages, ", ".join(os.path.basename(k) for k in found))
        jobs.append((path, by_stem.get(stem + "_gt"), kernels if len(found) == num_stages else None))
    if not jobs:
        raise ImageError(f"{input_dir}: no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
    return jobs


def find_depth(input_path: str) -> str | None:
    """The depth map beside an image, `<name>_depth.<png|tif|tiff|npy>`, or None."""
    stem = os.path.splitext(input_path)[0]
    found = [stem + "_depth" + e for e in DEPTH_EXTENSIONS if os.path.isfile(stem + "_depth" + e)]
    return found[0] if found else None


def run_job(conf: Config, job: FolderJob, options: JobOptions) -> RunResult:
    """One image of a folder run, in this process: `run`, with its failure made the image's result (and its
    record), so that the other images go on. Every backend (`zssr_tf.scaleout`) runs images through this."""
    return drive(run_job_coroutine(conf, job, options))


def run_job_coroutine(conf: Config, job: FolderJob, options: JobOptions) -> Coroutine:
    """`run_job` as a coroutine (`run_coroutine`)."""
    try:
        return (yield from run_coroutine(conf, job.input_path, options.output_dir, job.ground_truth, job.kernels,
                                         options.overwrite, options.tensorboard_dir, options.export_model, job.depth))
    except (ImageError, ValueError, MemoryError, tf.errors.ResourceExhaustedError) as e:  # one image's fault
        # KernelError and ConfigError are ValueErrors; memory: this image is too large for this machine.
        message = str(e).splitlines()[0] if str(e) else "out of memory"
        if isinstance(e, tf.errors.ResourceExhaustedError):
            message = "out of accelerator memory: the image is too large for this device"
        logging.error("%s: %s", job.input_path, message)
        result = failed_result(job, message)
        write_record(conf, job.input_path, options.output_dir, result)
        return result


def _started_job(conf: Config, job: FolderJob, options: JobOptions, total: int) -> Coroutine:
    """`run_job_coroutine`, saying when the image starts (it takes a slot of the group)."""
    scaleout.log_start(job, total)
    return (yield from run_job_coroutine(conf, job, options))


def failed_result(job: FolderJob, message: str) -> RunResult:
    return RunResult(name=os.path.splitext(os.path.basename(job.input_path))[0], outputs=[], status=f"error: {message}")


def run_folder(conf: Config, input_dir: str, output_dir: str, overwrite: bool = False,
               tensorboard_dir: str | None = None, export_model: bool = False, workers: int = 1,
               backend: str = "local", ray_address: str | None = None,
               cpus_per_worker: int = 0, images_per_step: int | str = 1) -> list[RunResult]:
    """The method on every image of a folder (the original `run_ZSSR.py`); rewrites `results.csv` as images end.

    An image that fails is reported in results.csv (status "error: ...") and the others go on. An image done by an
    earlier run (`read_record`) is not redone unless `overwrite`, and keeps its row. `tensorboard_dir` and
    `export_model` are as in `run`, per image. Methods that use depth take `<name>_depth.*` beside each image.

    Args:
      workers: backend "local": images run in this many processes at once (`scaleout.run_local`; 1: here, one
        after another); 0: one per visible GPU, else 1.
      backend: "local" or "ray" (one Ray task per image, `scaleout.run_ray`, on the cluster at `ray_address`).
      cpus_per_worker: the cores each worker (local) or Ray task uses; 0: local, an equal share of this machine's;
        Ray, 1 (tasks on GPUs ask for one GPU and take every core they are given).
      images_per_step: in this process (one worker, local), train this many images' networks in one step
        (`group.drive_together`; ZSSR with the paper's network; other images and methods one per step), or
        "auto" (`group.resolve_images_per_step`).

    Returns:
      The images' results in the folder's order, as in results.csv (the same whatever the backend and workers).

    Raises:
      ImageError: the folder has no images. ValueError: `init_weights` is missing or unreadable, the
        `backbone` file is missing, the backend cannot start (Ray not installed, no cluster at the address), or
        `images_per_step` > 1 with more than one worker or Ray.
    """
    images_per_step = group.resolve_images_per_step(images_per_step)
    if images_per_step < 1:
        raise ValueError(f"images_per_step: must be >= 1, got {images_per_step}")
    if images_per_step > 1 and (backend == "ray" or workers > 1):
        raise ValueError("images_per_step: several images per step run in one process (--workers=1, "
                         "--backend=local)")
    found = find_inputs(input_dir, conf.task.num_stages, depth_maps=conf.method in DEPTH_METHODS)
    if conf.run.init_weights:
        check_init_weights(conf.run.init_weights)  # fail before writing anything, not once per image
    if conf.method == "zssr" and conf.zssr.backbone and not os.path.isfile(conf.zssr.backbone):
        raise ValueError(f"backbone: no such file {conf.zssr.backbone}")
    prepare_output_dir(conf, output_dir)
    options = JobOptions(output_dir, overwrite, tensorboard_dir, export_model)
    results: dict[int, RunResult] = {}
    jobs = []
    for index, (input_path, ground_truth, kernels) in enumerate(found):
        depth = find_depth(input_path) if conf.method in DEPTH_METHODS else None
        job = FolderJob(index, input_path, ground_truth, kernels, depth)
        earlier = None if overwrite else read_record(conf, input_path, output_dir)
        if earlier is not None:
            logging.info("%s: done by an earlier run, kept (--overwrite to redo)", earlier.name)
            results[index] = earlier
        else:
            jobs.append(job)
    csv_path = os.path.join(output_dir, "results.csv")
    if results:
        write_results_csv(csv_path, [results[i] for i in sorted(results)])
    if backend == "ray":
        finished = scaleout.run_ray(conf, jobs, options, ray_address, cpus_per_worker)
    elif images_per_step > 1:
        coroutines = (_started_job(conf, job, options, len(found)) for job in jobs)
        finished = ((jobs[place].index, result) for place, result in group.drive_together(coroutines,
                                                                                          images_per_step))
    else:
        finished = scaleout.run_local(conf, jobs, options, workers or scaleout.default_workers(), cpus_per_worker,
                                      len(found))
    for index, result in finished:
        results[index] = result
        write_results_csv(csv_path, [results[i] for i in sorted(results)])
    return [results[i] for i in sorted(results)]


def write_results_csv(path: str, results: Sequence[RunResult]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=RESULTS_FIELDS)
    writer.writeheader()
    for r in results:
        writer.writerow({"name": r.name, "status": r.status, "seconds": f"{r.seconds:.1f}" if r.seconds else "",
                         "iterations": "+".join(map(str, r.iterations)),
                         "psnr_y": "" if r.psnr_y is None else f"{r.psnr_y:.3f}",
                         "psnr_y_shaved": "" if r.psnr_y_shaved is None else f"{r.psnr_y_shaved:.3f}",
                         "output": r.outputs[-1] if r.outputs else ""})
    write_bytes_atomically(path, text.getvalue().encode())


def prepare_output_dir(conf: Config, output_dir: str) -> None:
    """Creates the output directory and writes the effective configuration first."""
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise ImageError(f"cannot create output directory {output_dir}: {e.strerror or e}") from None
    write_bytes_atomically(os.path.join(output_dir, "config.json"), conf.to_json().encode())


def _split_alpha(pixels: np.ndarray) -> tuple[np.ndarray, Any]:
    """RGBA -> (RGB, alpha): the alpha channel is not super-resolved, only interpolated."""
    if pixels.shape[2] == 4:
        return pixels[:, :, :3], pixels[:, :, 3:]
    return pixels, None
