"""How much the paper-table results move with the seed: per image and per dataset mean, over several runs.

The ZSSR paper's numbers are means over several runs (KernelGAN issue #34), ours are single runs. Give this the
`--out` folders of `benchmarks/paper_tables.py` runs that differ only in `--seed` (runs whose preset flags differ
are refused); it prints (or writes) a Markdown table of ZSSR's PSNR per image and seed, the mean over seeds, and
the dataset means per seed and over seeds. Only images present in every run are compared.

    python benchmarks/seed_spread.py \
        --runs=benchmarks/results/schedule_check/x2_6_stages,benchmarks/results/seed_check \
        --table=1 --dataset=Set14 --scale=2 --out=benchmarks/results/seed_check/set14_x2.md
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np


def load_runs(runs: list[str], table: int, dataset: str, scale: int) -> tuple[list[int], dict[str, list[float]]]:
    """(seed of each run, {image: [ZSSR PSNR per run]}) for the images every run has."""
    seeds, per_run, flags = [], [], set()
    for run in runs:
        rows = {}
        for path in glob.glob(os.path.join(run, "cache", f"{table}_{dataset}_x{scale}_*.json")):
            with open(path) as f:
                row = json.load(f)
            rows[row["name"]] = row
            flags.add(json.dumps(row.get("preset_flags"), sort_keys=True))
        if not rows:
            raise SystemExit(f"seed_spread: error: no table {table} {dataset} x{scale} rows in {run}/cache")
        run_seeds = {r["seed"] for r in rows.values()}
        if len(run_seeds) != 1:
            raise SystemExit(f"seed_spread: error: {run}/cache mixes seeds {sorted(run_seeds)}")
        seeds.append(run_seeds.pop())
        per_run.append(rows)
    if len(flags) != 1:  # e.g. a 6-stage and a 12-stage run: the difference would not be the seed's
        raise SystemExit(f"seed_spread: error: the runs' table {table} {dataset} x{scale} rows differ in preset flags")
    common = sorted(set.intersection(*(set(rows) for rows in per_run)))
    return seeds, {name: [rows[name]["zssr_psnr"] for rows in per_run] for name in common}


def spread_table(seeds: list[int], psnr: dict[str, list[float]], paper: float | None) -> str:
    values = np.array(list(psnr.values()))  # [images, runs]
    head = " | ".join(f"seed {s}" for s in seeds)
    lines = [f"| image | {head} | mean | max - min |", "|---" * (len(seeds) + 3) + "|"]
    for name, row in psnr.items():
        cells = " | ".join(f"{v:.3f}" for v in row)
        lines.append(f"| {name} | {cells} | {np.mean(row):.3f} | {np.ptp(row):.3f} |")
    means = values.mean(axis=0)
    cells = " | ".join(f"**{m:.3f}**" for m in means)
    lines.append(f"| mean of {len(psnr)} images | {cells} | **{means.mean():.3f}** | {np.ptp(means):.3f} |")
    if paper is not None:
        lines += ["", f"Paper (whole dataset): {paper:.2f} dB; mean over seeds of these {len(psnr)} images minus "
                  f"paper: {means.mean() - paper:+.3f} dB."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="Comma-separated --out folders of paper_tables.py runs.")
    parser.add_argument("--table", type=int, default=1)
    parser.add_argument("--dataset", default="Set14")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--out", default=None, help="Markdown file for the table (default: print only).")
    args = parser.parse_args()

    from paper_tables import PAPER_ZSSR

    seeds, psnr = load_runs(args.runs.split(","), args.table, args.dataset, args.scale)
    paper = PAPER_ZSSR.get((args.table, args.dataset, args.scale), (None,))[0]
    text = spread_table(seeds, psnr, paper)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
