"""Quick-test error curves under a fixed learning-rate schedule, to measure how noisy ZSSR's policy input is.

The learning-rate policy decides from the reconstruction error of the quick tests. This runs ZSSR (x2 in one jump,
ideal downscaling, the default preset) with the policy replaced by a fixed schedule, `--first` iterations at the
initial learning rate and `--second` at a tenth of it, with a quick test every `--test_every` iterations (the true
error against the ground truth too), and saves the curves per image and seed as JSON in `<out>/`. Resumable: done
(image, seed) pairs are skipped. Then it replays each `--policy` on the first segment of every curve (the real
`ZSSR.learning_rate_policy`, fed the quick tests at the default spacing of 50) and writes `<out>/first_drops.md`:
the iteration of each policy's first drop per image and seed, the mean and the spread over seeds. Only the first
drop is replayed: after it, the real run would no longer follow the fixed schedule.

    python benchmarks/policy_curves.py --data_dir=../shared/data --images=Set14/foreman,Set5/bird \
        --seeds=0,1,2 --out=benchmarks/results/policy_check/curves
    python benchmarks/policy_curves.py --replay_only --out=benchmarks/results/policy_check/curves
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paper_tables import ROOT, Job, make_lr_hr  # noqa: E402


def run_curve(data_dir: str, dataset: str, name: str, seed: int, first: int, second: int, test_every: int) -> dict:
    import numpy as np

    from zssr_tf import ZSSR
    from zssr_tf.metrics import psnr
    from zssr_tf.config import Config

    lr, hr, _ = make_lr_hr(Job(1, dataset, 2, name), data_dir, seed)  # Table 1's input: LR_bicubic/X2, 8-bit
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


def first_drop(curve: dict, policy: str) -> int | None:
    """The iteration where `policy` first drops the learning rate on the curve's first segment (None: never)."""
    import numpy as np

    from zssr_tf import ZSSR
    from zssr_tf.config import Config
    from zssr_tf.engine import StageHistory

    conf = Config().replace(policy=policy, max_iters=curve["first"], width=2, depth=1)
    zssr = ZSSR(np.full((8, 8, 3), 0.5, np.float32), conf)
    zssr.history.append(StageHistory(scale_factor=(2.0, 2.0)))
    zssr.start_stage(0)
    errors = dict(zip(curve["steps"], curve["reconstruction_mse"]))
    for zssr.iter in range(curve["first"]):
        if zssr.iter % conf.zssr.run_test_every == 0:
            zssr.history[-1].test_steps.append(zssr.iter)
            zssr.history[-1].reconstruction_mse.append(errors[zssr.iter])
        zssr.learning_rate_policy()
        if zssr.history[-1].learning_rate_change_iters:
            return zssr.history[-1].learning_rate_change_iters[0]
    return None


def neighbour_ratios(curves: list[dict], start: int, stop: int):
    """Each quick test at the default spacing (50) in [start, stop) over the median of the 2 before and 2 after it:
    how far single tests stray from their trend."""
    import numpy as np

    ratios = []
    for curve in curves:
        steps, errors = np.array(curve["steps"]), np.array(curve["reconstruction_mse"])
        keep = steps % 50 == 0
        steps, errors = steps[keep], errors[keep]
        for i in range(2, len(errors) - 2):
            if start <= steps[i] < stop:
                ratios.append(errors[i] / np.median(np.r_[errors[i - 2:i], errors[i + 1:i + 3]]))
    return np.array(ratios)


def replay(out: str, policies: list[str]) -> str:
    import glob

    import numpy as np

    curves = [json.load(open(path)) for path in sorted(glob.glob(os.path.join(out, "*_seed*.json")))]
    images = sorted({(c["dataset"], c["name"]) for c in curves})
    lines = [f"First learning-rate drop on fixed-schedule curves ({curves[0]['first']} iterations at the initial "
             "rate; never: counted as that many), per seed", "",
             "| image | seeds | " + " | ".join(f"{p}: first drops | mean | spread" for p in policies) + " |",
             "|---|---" + "|---|---|---" * len(policies) + "|"]
    for dataset, name in images:
        group = sorted((c for c in curves if (c["dataset"], c["name"]) == (dataset, name)), key=lambda c: c["seed"])
        cells = []
        for policy in policies:
            drops = [first_drop(c, policy) for c in group]
            counted = [c["first"] if d is None else d for c, d in zip(group, drops)]
            cells += [" / ".join("never" if d is None else str(d) for d in drops), f"{np.mean(counted):.0f}",
                      f"{np.ptp(counted):.0f}"]
        lines.append(f"| {dataset}/{name} | {', '.join(str(c['seed']) for c in group)} | " + " | ".join(cells) + " |")
    lines += ["", "Quick tests (every 50) against the median of their 4 neighbours:", ""]
    first, second = curves[0]["first"], curves[0]["second"]
    for label, (start, stop) in (("initial rate", (300, first)), ("a tenth of it", (first + 300, first + second))):
        ratios = neighbour_ratios(curves, start, stop)
        if not len(ratios):  # a segment too short for tests with two neighbours on each side
            continue
        lines.append(f"- {label}, iterations {start}-{stop - 1}: {len(ratios)} tests, 5-95% within "
                     f"{np.percentile(ratios, 5):.2f}-{np.percentile(ratios, 95):.2f}, "
                     f"{np.mean(ratios > 1.2):.1%} above 1.2, {np.mean(ratios < 0.8):.1%} below 0.8, "
                     f"largest {ratios.max():.2f}")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "first_drops.md"), "w") as f:
        f.write(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="")
    parser.add_argument("--images", default="", help="Comma-separated <dataset>/<name>.")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--first", type=int, default=1200, help="Iterations at the initial learning rate.")
    parser.add_argument("--second", type=int, default=900, help="Iterations at a tenth of it.")
    parser.add_argument("--test_every", type=int, default=10)
    parser.add_argument("--policies", default="original,robust")
    parser.add_argument("--replay_only", action="store_true", help="Only replay the policies on saved curves.")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if not args.replay_only and not (args.data_dir and args.images):
        parser.error("--data_dir and --images are needed to record curves (or --replay_only)")
    # The fixed drop happens at a policy check (every 60 iterations), and the replay needs the tests every 50.
    if args.first % 60 or 50 % args.test_every:
        parser.error("--first must be a multiple of 60 and --test_every divide 50")
    os.makedirs(args.out, exist_ok=True)
    for image in [] if args.replay_only else args.images.split(","):
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
    print(replay(args.out, args.policies.split(",")))


if __name__ == "__main__":
    main()
