"""Whether DGDML-SR's clipped WGAN critics can learn at a setting: D^H's real-vs-fake score gap, the spread of its
scores over a batch and the size of its convolution-kernel gradients, after the first and after --steps train steps
(the configured update). Gradients far below RMSprop's epsilon (1e-8) leave the critics, and the generators'
adversarial steps through them, where clipping put them.

  python benchmarks/dgdml_critic_probe.py --flags="--flagfile=flags/dgdml_x2.cfg --dgdml_epochs=5 \\
      --dgdml_width=32 --dgdml_batch_size=16 --dgdml_critic_width=16"

Default input: the bundled example with a vertical depth ramp (top far, bottom near).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default=os.path.join(ROOT, "examples", "astronaut.png"))
    parser.add_argument("--depth_map", default=None, help="Default: a vertical ramp, the top far.")
    parser.add_argument("--flags", default="--flagfile=flags/dgdml_x2.cfg")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from dgdml_step_time import flags_from_text

    from zssr_tf import DGDML, Config, patches
    from zssr_tf.image_io import read_image

    conf = Config.from_dict({**flags_from_text(args.flags), "progress": "false", "precision": "float32"})
    depth = args.depth_map
    if depth is None:
        height, width = read_image(args.input).pixels.shape[:2]
        depth = np.tile(np.linspace(2.0, 1.0, height)[:, None], (1, width))
    trainer = DGDML(args.input, conf, depth=depth)
    trainer.start_stage(0)
    examples = iter(trainer.example_dataset(args.steps + 1))
    srn, critic = trainer.networks["generator"], trainer.networks["critic_hr"]
    for step in range(args.steps + 1):
        hr_index, lr_index = next(examples)
        if step in (1, args.steps):
            x = patches.gather_patches(trainer._patches["hr"], hr_index)
            y = patches.gather_patches(trainer._patches["lr"], lr_index)
            with tf.GradientTape() as tape:
                real, fake = critic(x), critic(srn(y))
                gap = tf.reduce_mean(real) - tf.reduce_mean(fake)
            gradients = tape.gradient(gap, critic.trainable_variables)
            kernels = np.concatenate([g.numpy().ravel() for v, g in zip(critic.trainable_variables, gradients)
                                      if "conv" in v.path])
            print(f"after step {step}: D^H real-vs-fake gap {float(gap):.3g}, score spread over the batch "
                  f"{float(tf.math.reduce_std(real)):.3g}, conv kernel |gradient| median "
                  f"{np.median(np.abs(kernels)):.2g}, max {np.abs(kernels).max():.2g}", flush=True)
        trainer._train_step(hr_index, lr_index)


if __name__ == "__main__":
    main()
