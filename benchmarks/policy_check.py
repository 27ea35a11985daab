"""The learning-rate policies against each other: --policy=original vs robust over seeds, sets and presets; resumable.

For each dataset, preset, seed and policy, every image runs as in Table 1 of benchmarks/paper_tables.py (LR =
`<dataset>/LR_bicubic/X<s>`, the preset's scale): ZSSR's Y-PSNR, iterations and seconds, and each stage's policy
decisions and quick-test errors, go to one JSON file per run in `<out>/cache/` (a rerun skips those made with the
same preset flags). `<out>/policy_check.md` has, per set and preset: the mean PSNR of each policy over images and
seeds, robust minus original, the mean per-image spread over seeds (max - min; over the images run with 2 or more
seeds), mean iterations and seconds, and every image's PSNR and iterations per seed.

    # The issue's full check (days on a 2-core CPU):
    python benchmarks/policy_check.py --data_dir=../shared/data --datasets=Set5,Set14 \
        --presets=x2_one_jump_ideal,x2_gradual_ideal,x3_gradual_ideal,x4_gradual_ideal --seeds=0,1,2
    # One image of a set, one preset:
    python benchmarks/policy_check.py --data_dir=../shared/data --datasets=Set14 --images=foreman \
        --presets=x2_gradual_ideal --seeds=0,1,2
    # The table from whatever is cached:
    python benchmarks/policy_check.py --tabulate_only
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paper_tables import ROOT, Job, init_worker, make_lr_hr, preset_flags, preset_path  # noqa: E402

POLICIES = ("original", "robust")


@dataclasses.dataclass(frozen=True)
class Run:
    dataset: str
    preset: str
    seed: int
    policy: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.dataset}_{self.preset}_seed{self.seed}_{self.policy}_{self.name}"


def preset_scale(preset: str) -> int:
    from zssr_tf.config import Config

    scale = Config.from_flagfile(preset_path(preset)).task.final_scale_factor
    if scale[0] != scale[1] or scale[0] != int(scale[0]):
        raise ValueError(f"preset {preset}: final scale {scale} is not an integer square scale")
    return int(scale[0])


def run_one(run: Run, data_dir: str, out: str) -> dict:
    from zssr_tf import ZSSR
    from zssr_tf.config import Config
    from zssr_tf.device import cpu_name
    from zssr_tf.metrics import psnr

    scale = preset_scale(run.preset)
    lr, hr, _ = make_lr_hr(Job(1, run.dataset, scale, run.name), data_dir, run.seed)
    conf = Config.from_flagfile(preset_path(run.preset), seed=run.seed, policy=run.policy, progress=False,
                                name=run.key)
    start = time.perf_counter()
    zssr = ZSSR(lr, conf, ground_truth=hr)
    sr = zssr.run()
    row = {"dataset": run.dataset, "preset": run.preset, "seed": run.seed, "policy": run.policy, "name": run.name,
           "scale": scale, "psnr": psnr(np.clip(sr, 0, 1), hr, scale),
           "iterations": sum(h.iterations for h in zssr.history), "seconds": round(time.perf_counter() - start, 1),
           "stages": [{"iterations": h.iterations, "drops": h.learning_rate_change_iters, "restarts": h.restarts,
                       "test_steps": h.test_steps, "reconstruction_mse": h.reconstruction_mse}
                      for h in zssr.history],
           "preset_flags": preset_flags(run.preset), "cpu": cpu_name()}  # bfloat16 rounding differs per CPU kind
    path = os.path.join(out, "cache", f"{run.key}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(row, f)
    os.replace(path + ".tmp", path)
    return row


def load_cached(path: str) -> dict | None:
    try:
        with open(path) as f:
            row = json.load(f)
        return row if row["preset_flags"] == preset_flags(row["preset"]) else None
    except (OSError, ValueError, KeyError, TypeError):  # unreadable, malformed, or its preset file is gone
        return None


def tabulate(rows: list[dict]) -> str:
    """The Markdown summary of cached runs (only (image, seed) pairs that both policies ran are compared)."""
    lines = ["| set | preset | images x seeds | original PSNR | robust PSNR | robust - original | seed spread "
             "original | robust | iterations original | robust | s / image original | robust |",
             "|---" * 12 + "|"]
    details = []
    for dataset, preset in sorted({(r["dataset"], r["preset"]) for r in rows}):
        group = [r for r in rows if (r["dataset"], r["preset"]) == (dataset, preset)]
        by = {(r["policy"], r["name"], r["seed"]): r for r in group}
        pairs = sorted({(n, s) for p, n, s in by if all((q, n, s) in by for q in POLICIES)})
        if not pairs:
            continue
        names = sorted({n for n, _ in pairs})
        seeds = {n: [s for m, s in pairs if m == n] for n in names}
        spread_names = [n for n in names if len(seeds[n]) >= 2]  # a spread needs two seeds

        def stat(policy, key):
            return float(np.mean([by[(policy, n, s)][key] for n, s in pairs]))

        def spreads(policy):
            return {n: float(np.ptp([by[(policy, n, s)]["psnr"] for s in seeds[n]])) for n in spread_names}

        def mean_spread(policy):
            return f"{np.mean(list(spread[policy].values())):.3f}" if spread_names else "-"

        spread = {p: spreads(p) for p in POLICIES}
        psnr = {p: stat(p, "psnr") for p in POLICIES}
        counts = sorted({len(seeds[n]) for n in names})
        lines.append(f"| {dataset} | {preset} | {len(names)} x {'-'.join(map(str, counts))} | "
                     f"{psnr['original']:.3f} | {psnr['robust']:.3f} | {psnr['robust'] - psnr['original']:+.3f} | "
                     f"{mean_spread('original')} | {mean_spread('robust')} | {stat('original', 'iterations'):.0f} | "
                     f"{stat('robust', 'iterations'):.0f} | {stat('original', 'seconds'):.0f} | "
                     f"{stat('robust', 'seconds'):.0f} |")
        details += ["", f"### {dataset}, {preset}: per image (Y-PSNR per seed; iterations)", "",
                    "| image | seeds | original | robust | spread original | robust |", "|---|---|---|---|---|---|"]
        for n in names:
            cells = []
            for p in POLICIES:
                runs = [by[(p, n, s)] for s in seeds[n]]
                cells.append(" / ".join(f"{r['psnr']:.2f}" for r in runs) + " ("
                             + " / ".join(str(r["iterations"]) for r in runs) + ")")
            spread_cells = [f"{spread[p][n]:.3f}" if n in spread[p] else "-" for p in POLICIES]
            details.append(f"| {n} | {', '.join(map(str, seeds[n]))} | {cells[0]} | {cells[1]} | "
                           f"{spread_cells[0]} | {spread_cells[1]} |")
    return "\n".join(lines + details) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="", help="Folder with <dataset>/HR and <dataset>/LR_bicubic.")
    parser.add_argument("--datasets", default="Set5,Set14")
    parser.add_argument("--presets", default="x2_one_jump_ideal,x2_gradual_ideal,x3_gradual_ideal,x4_gradual_ideal")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--images", default="", help="Comma-separated image names (default: all of each set).")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "policy_check"))
    parser.add_argument("--tabulate_only", action="store_true")
    args = parser.parse_args()

    if not args.tabulate_only and not args.data_dir:
        parser.error("--data_dir is needed to run (or --tabulate_only)")
    os.makedirs(os.path.join(args.out, "cache"), exist_ok=True)
    runs = []
    for dataset in [] if args.tabulate_only else args.datasets.split(","):
        names = [os.path.splitext(os.path.basename(p))[0]
                 for p in sorted(glob.glob(os.path.join(args.data_dir, dataset, "HR", "*.png")))]
        if args.images:
            names = [n for n in names if n in args.images.split(",")]
        if not names:
            parser.error(f"no images to run in {os.path.join(args.data_dir, dataset, 'HR')}")
        for preset in args.presets.split(","):
            if not os.path.isfile(preset_path(preset)):
                parser.error(f"no preset file {preset_path(preset)}")
            # Seeds outermost, so a partial run has whole seeds of both policies to compare.
            runs += [Run(dataset, preset, int(seed), policy, name) for seed in args.seeds.split(",")
                     for name in names for policy in POLICIES]
    pending = [r for r in runs if load_cached(os.path.join(args.out, "cache", f"{r.key}.json")) is None]
    print(f"{len(runs)} runs, {len(runs) - len(pending)} cached, {len(pending)} to run", flush=True)
    if pending:
        init_worker(0)
    for i, run in enumerate(pending):
        row = run_one(run, args.data_dir, args.out)
        print(f"[{i + 1}/{len(pending)}] {run.key}: {row['psnr']:.3f} dB, {row['iterations']} iterations, "
              f"{row['seconds']} s", flush=True)
    rows = [row for path in sorted(glob.glob(os.path.join(args.out, "cache", "*.json")))
            if (row := load_cached(path)) is not None]
    text = tabulate(rows)
    with open(os.path.join(args.out, "policy_check.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
