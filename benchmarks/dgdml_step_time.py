"""Seconds per DGDML-SR train step on one image (after the first, traced, step), for any flags.

  python benchmarks/dgdml_step_time.py --input=../shared/data/Middlebury/art1.png \
      --depth_map=../shared/data/Middlebury/art1_true.png --flags="--flagfile=flags/dgdml_x2.cfg \
      --dgdml_depth_kind=disparity" [--steps=3]

Prints the patch counts, the steps per epoch and the measured seconds per step, and what a full run of the
configured epochs would take at that speed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def flags_from_text(text: str) -> dict[str, str]:
    """`--flagfile=F --name=value ...` (space separated, as the scripts' --flags take them) -> a flags dict."""
    from zssr_tf.config import read_flagfile

    flags = {}
    for item in text.split():
        name, _, value = item.removeprefix("--").partition("=")
        flags.update(read_flagfile(value) if name == "flagfile" else {name: value})
    return flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True)
    parser.add_argument("--depth_map", default=None)
    parser.add_argument("--flags", default="--flagfile=flags/dgdml_x2.cfg")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from zssr_tf.config import Config
    from zssr_tf.engine import StageHistory
    from zssr_tf.methods import DGDML

    conf = Config.from_dict({**flags_from_text(args.flags), "progress": "false"})
    trainer = DGDML(args.input, conf, depth=args.depth_map)
    trainer.start_stage(0)
    trainer.history.append(StageHistory(scale_factor=conf.task.final_scale_factor))
    examples = iter(trainer.example_dataset(args.steps + 1))
    float(trainer._train_steps(examples, tf.constant(1))["loss"])  # traces the step
    start = time.perf_counter()
    float(trainer._train_steps(examples, tf.constant(args.steps))["loss"])
    seconds = (time.perf_counter() - start) / args.steps
    print(f"patches: {trainer.report['patches']}")
    print(f"{seconds:.2f} s per step of batch {trainer.batch_size}; {trainer.steps_per_epoch} steps per epoch; "
          f"{conf.dgdml.epochs} epochs would take {seconds * trainer.max_iters / 3600:.1f} h")


if __name__ == "__main__":
    main()
