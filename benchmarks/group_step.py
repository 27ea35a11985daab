"""The training step alone with N images per step: ms per image-iteration by N, pipeline and precision.

    python benchmarks/group_step.py [--sizes=1,2,4,8] [--pipelines=host,device] [--precisions=auto] [--iters=200]

N ZSSR trainers of the default network on N different 160x240 inputs (smooth random images: the step's cost does
not depend on the pixels) train a fixed number of iterations with no quick tests, policy or final test
(`run_test=False`, no self-ensemble, no back-projection), through `group.run_together(trainers, N)`; N = 1 is the
plain one-image step (`Trainer.run`). Each setting runs twice, for 20 and for 20 + `--iters` iterations, and the
difference of the two wall times over `--iters` is the time of one iteration of the N images: building the
networks, tracing the step and the final pass cancel out. Reported: ms per iteration of the group, ms per image
and iteration, and the speed-up per image against N = 1 with the same pipeline and precision (from the same run).
Writes <out>/group_step.md (copy it to benchmarks/results/).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHORT = 20


def image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.random((20, 30, 3))
    import cv2

    return np.clip(cv2.resize(noise, (240, 160), interpolation=cv2.INTER_CUBIC), 0, 1).astype(np.float32)


def seconds(n: int, iterations: int, conf) -> float:
    from zssr_tf import group
    from zssr_tf.methods.zssr import ZSSR

    trainers = [ZSSR(image(i), conf.replace(max_iters=iterations, seed=i)) for i in range(n)]
    start = time.perf_counter()
    if n == 1:
        trainers[0].run()
    else:
        group.run_together(trainers, n)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,2,4,8")
    parser.add_argument("--pipelines", default="host,device")
    parser.add_argument("--precisions", default="auto")
    parser.add_argument("--forms", default="grouped,per_image", help="how the stacked step convolves (group.CONV_FORM)")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--out", default="/tmp/zssr_group_step")
    args = parser.parse_args()
    from zssr_tf import cli, device

    cli.import_tensorflow_quietly()
    import tensorflow as tf

    from zssr_tf import group
    from zssr_tf.config import Config

    rows = []
    for precision in args.precisions.split(","):
        for pipeline in args.pipelines.split(","):
            conf = Config().replace(run_test=False, output_flip=False, back_projection_iters=(0,), progress=False,
                                    precision=precision, pipeline=pipeline)
            base = None
            for form in args.forms.split(","):
                group.CONV_FORM = form
                for n in [int(s) for s in args.sizes.split(",")]:
                    if n == 1 and base is not None:
                        continue  # one image per step has no form
                    per_iteration = (seconds(n, SHORT + args.iters, conf) - seconds(n, SHORT, conf)) / args.iters
                    per_image = per_iteration / n
                    base = per_image if n == 1 else base
                    rows.append(f"| {device.resolve_precision(precision)} | {pipeline} | "
                                f"{'one image' if n == 1 else form} | {n} | {1000 * per_iteration:.1f} | "
                                f"{1000 * per_image:.1f} | {'' if base is None else f'{base / per_image:.2f}x'} |")
                    print(rows[-1], flush=True)
    gpus = tf.config.list_physical_devices("GPU")
    where = (tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus
             else f"{device.cpu_name()}, {len(os.sched_getaffinity(0))} cores")
    text = "\n".join([
        f"# The training step with N images per step, {where}", "",
        f"`python benchmarks/group_step.py --sizes={args.sizes} --pipelines={args.pipelines} "
        f"--precisions={args.precisions} --forms={args.forms} --iters={args.iters}`; TensorFlow {tf.__version__}; "
        "default network (8 layers of 64 channels), 128x128 crops.", "",
        "| precision | pipeline | convolutions | N | ms / iteration (all N) | ms / image-iteration | per image vs "
        "N = 1 |", "|---|---|---|---|---|---|---|", *rows]) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "group_step.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
