"""Quick-test error curves under a fixed learning-rate schedule, to measure how noisy ZSSR's policy input is.

The learning-rate policy decides from the reconstruction error of the quick tests. This runs ZSSR (x2 in one jump,
ideal downscaling, the default preset) with the policy replaced by a fixed schedule, `--first` iterations at the
initial learning rate and `--second` at a tenth of it, with a quick test every `--test_every` iterations (the true
error against the ground truth too), and saves the curves per image and seed as JSON in `<out>/`. Resumable: done
(image, seed) pairs are skipped. `benchmarks/policy_check.py --curves=<out>` replays the policies on them.

    python benchmarks/policy_curves.py --data_dir=../shared/data --images=Set14/foreman,Set5/bird \
        --seeds=0,1,2 --out=benchmarks/results/policy_check/curves
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def run_curve(data_dir: str, dataset: str, name: str, seed: int, first: int, second: int, test_every: int) -> dict:
    import numpy as np

    from zssr_tf import ZSSR
    from zssr_tf.metrics import psnr
    from zssr_tf.config import Config
    from zssr_tf.image_io import read_image

    lr = read_image(os.path.join(data_dir, dataset, "LR_bicubic", "X2", f"{name}x2.png")).pixels
    hr = read_image(os.path.join(data_dir, dataset, "HR", f"{name}.png")).pixels[:lr.shape[0] * 2, :lr.shape[1] * 2]
    lr = (np.round(np.clip(lr, 0, 1) * 255) / 255).astype(np.float32)
    conf = Config.from_flagfile(os.path.join(ROOT, "flags", "x2_one_jump_ideal.cfg"), seed=seed, progress=False,
                                max_iters=first + second, run_test_every=test_every, name=name)

    class FixedSchedule(ZSSR):
        def learning_rate_policy(self) -> None:
            if self.iter + 1 == first:
                self.set_learning_rate(self.learning_rate / 10)
                self.history[-1].learning_rate_change_iters.append(self.iter)

    start = time.perf_counter()
    zssr = FixedSchedule(lr, conf, ground_truth=hr)
    sr = zssr.run()
    h = zssr.history[-1]
    return {"dataset": dataset, "name": name, "seed": seed, "first": first, "second": second,
            "test_every": test_every, "steps": h.test_steps, "reconstruction_mse": h.reconstruction_mse,
            "true_mse": h.true_mse, "final_psnr": psnr(np.clip(sr, 0, 1), hr, 2),
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--images", required=True, help="Comma-separated <dataset>/<name>.")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--first", type=int, default=1200, help="Iterations at the initial learning rate.")
    parser.add_argument("--second", type=int, default=900, help="Iterations at a tenth of it.")
    parser.add_argument("--test_every", type=int, default=10)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for image in args.images.split(","):
        dataset, name = image.split("/")
        for seed in (int(s) for s in args.seeds.split(",")):
            path = os.path.join(args.out, f"{dataset}_{name}_seed{seed}.json")
            if os.path.exists(path):
                continue
            curve = run_curve(args.data_dir, dataset, name, seed, args.first, args.second, args.test_every)
            with open(path + ".tmp", "w") as f:
                json.dump(curve, f)
            os.replace(path + ".tmp", path)
            print(f"{dataset}/{name} seed {seed}: {curve['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
