"""How often the train step's weight gradients come out non-finite or non-deterministic, per crop size.

zssr_tf skips a train step whose gradients are not all finite (`zssr_tf/engine.py`, `GuardedOptimizer`), and the log warns when it
did. On the development CPU (oneDNN, AMX) this happens only under mixed bfloat16 and only for some crop sizes,
which zssr uses when the image is smaller than `crop_size`. This script measures it: it trains the ZSSR network on
examples of `--image` with each crop size, computes every step's gradients twice on the same example, and counts
the steps with a non-finite gradient (the steps zssr skips) and the steps whose two gradients differ in an entry
that is finite in both (a corruption that skipping would not catch). Rerun it after a TensorFlow upgrade to see
whether the skip is still needed.

    python benchmarks/bf16_nan_steps.py --image=../shared/data/Set14/LR_bicubic/X2/comicx2.png \
        --sizes=125,93,62,128,96,64 --steps=1000 --precision=mixed_bfloat16   # benchmarks/results/bf16_nan_steps.md
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script from a checkout without installing


def count_bad_steps(image: np.ndarray, precision: str, crop_size: int, steps: int) -> tuple[int, int]:
    """(steps with a non-finite gradient, steps whose recomputed gradient differs in a finite entry)."""
    import keras
    import tensorflow as tf

    from zssr_tf import data
    from zssr_tf.config import Config
    from zssr_tf.losses import l1_loss
    from zssr_tf.models import build_zssr_generator

    model = build_zssr_generator(channels=image.shape[2], seed=0, dtype_policy=precision)
    optimizer = keras.optimizers.Adam(1e-3, epsilon=1e-8)
    optimizer.build(model.trainable_variables)
    examples = iter(data.build_example_dataset(
        [image], [(1.0, 1.0)], (2.0, 2.0), "cubic", Config(), crop_size, (0, crop_size), steps))
    non_finite, finite_differing = tf.Variable(0), tf.Variable(0)

    def gradients(lr_son: tf.Tensor, hr_father: tf.Tensor) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = l1_loss(model(lr_son, training=True), hr_father)
        return tape.gradient(loss, model.trainable_variables)

    @tf.function
    def train(num_steps: tf.Tensor) -> None:
        for _ in tf.range(num_steps):
            lr_son, hr_father = next(examples)
            first, second = gradients(lr_son, hr_father), gradients(lr_son, hr_father)
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in first])
            differ = tf.reduce_any([tf.reduce_any(tf.math.is_finite(a) & tf.math.is_finite(b) & tf.not_equal(a, b))
                                    for a, b in zip(first, second)])
            non_finite.assign_add(tf.cast(tf.logical_not(finite), tf.int32))
            finite_differing.assign_add(tf.cast(differ, tf.int32))
            if finite:  # as zssr_tf/engine.py: a non-finite step is skipped
                optimizer.apply(first, model.trainable_variables)

    train(tf.constant(steps))
    return int(non_finite.numpy()), int(finite_differing.numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", required=True, help="Image the examples are cropped from.")
    parser.add_argument("--sizes", default="125,128", help="Comma-separated crop sizes.")
    parser.add_argument("--steps", type=int, default=600, help="Train steps per crop size and precision.")
    parser.add_argument("--precision", default="mixed_bfloat16,float32", help="Comma-separated precisions.")
    args = parser.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes: comma-separated integers, got {args.sizes!r}")

    from zssr_tf import image_io

    try:
        image = image_io.read_image(args.image).pixels
    except image_io.ImageError as error:
        parser.error(str(error))
    print(f"{args.image}, {image.shape[1]}x{image.shape[0]}, {args.steps} steps each\n")
    print("| precision | crop | steps with a non-finite gradient "
          "| steps whose recomputed gradient differs in a finite entry |")
    print("|---|---|---|---|")
    for precision in args.precision.split(","):
        for size in sizes:
            non_finite, differing = count_bad_steps(image, precision, size, args.steps)
            print(f"| {precision} | {size} | {non_finite} | {differing} |", flush=True)


if __name__ == "__main__":
    main()
