"""Folders beyond one process: wall time of the same folder with 1 and 2 local workers and as Ray tasks.

    python benchmarks/scaleout.py [--folder=DIR] [--flags="--preset=quick"] [--work=/tmp/zssr_scaleout]

By default the folder is 8 overlapping 80x80 crops of the bundled example (examples/astronaut.png), run with the
quick preset. Each setting is the whole `zssr --input=DIR` command (TensorFlow start-up, and for Ray the local
cluster's, included), one after another on an idle machine:
  * `--workers=1`: the images one after another in one process (the plain folder run), and the same pinned to
    one core (`taskset -c 0`): a worker's share here, so its outputs are what each worker's should be;
  * `--workers=2`: two worker processes, each pinned to its own share of the cores;
  * `--backend=ray`: one Ray task per image on a new local cluster (1 CPU per task).
It reports wall seconds, the ratio to `--workers=1`, Ray's overhead per image against `--workers=2` (on a 2-core
machine Ray also runs two tasks at a time), and the largest difference of each setting's outputs from the plain
run's (8-bit PNGs). Resumable: each setting's time is kept in <work>/times.json; --fresh redoes all.
Results go to benchmarks/results/scaleout.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RESULTS = os.path.join(ROOT, "benchmarks", "results", "scaleout.md")
# name -> (command prefix, flags)
SETTINGS = {"workers=1": ([], ["--workers=1"]), "workers=1, 1 core": (["taskset", "-c", "0"], ["--workers=1"]),
            "workers=2": ([], ["--workers=2"]), "ray": ([], ["--backend=ray"])}


def make_folder(work: str, count: int = 8, side: int = 80) -> str:
    """`count` crops of the bundled example, side x side, their corners spread over it."""
    from zssr_tf.image_io import read_image, write_image
    folder = os.path.join(work, "in")
    if os.path.isdir(folder):
        return folder
    image = read_image(os.path.join(ROOT, "examples", "astronaut.png")).pixels
    os.makedirs(folder)
    h, w = image.shape[:2]
    for i in range(count):
        top, left = (i * 7) % (h - side + 1), (i * 13) % (w - side + 1)
        write_image(os.path.join(folder, f"crop_{i}.png"), image[top:top + side, left:left + side])
    return folder


def run_setting(folder: str, out: str, prefix: list[str], extra: list[str], flags: list[str]) -> float:
    shutil.rmtree(out, ignore_errors=True)
    command = [*prefix, sys.executable, "-m", "zssr_tf", f"--input={folder}", f"--output_dir={out}", "--noprogress",
               *flags, *extra]
    start = time.perf_counter()
    child = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{child.stderr[-3000:]}")
    return seconds


def max_difference(out: str, reference: str) -> float:
    import numpy as np
    from zssr_tf.image_io import read_image
    names = sorted(n for n in os.listdir(reference) if n.endswith("_X2.00X2.00.png"))
    return max(float(np.abs(read_image(os.path.join(out, n)).pixels
                            - read_image(os.path.join(reference, n)).pixels).max()) for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", help="a folder of images (default: 8 crops of the bundled example)")
    parser.add_argument("--flags", default="--preset=quick")
    parser.add_argument("--work", default="/tmp/zssr_scaleout")
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    folder = args.folder or make_folder(args.work)
    flags = shlex.split(args.flags)
    cache = os.path.join(args.work, "times.json")
    times = {} if args.fresh or not os.path.exists(cache) else json.load(open(cache))
    for name, (prefix, extra) in SETTINGS.items():
        if name not in times:
            times[name] = run_setting(folder, os.path.join(args.work, name), prefix, extra, flags)
            with open(cache, "w") as f:
                json.dump(times, f)
        print(f"{name}: {times[name]:.1f} s", flush=True)
    count = len([n for n in os.listdir(folder) if not n.startswith(".")])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    from zssr_tf.device import cpu_name, resolve_precision
    base = times["workers=1"]
    reference, one_core = os.path.join(args.work, "workers=1"), os.path.join(args.work, "workers=1, 1 core")
    lines = ["# Folders beyond one process: local workers and Ray", "",
             f"`python benchmarks/scaleout.py --flags=\"{args.flags}\"` at commit {commit}: {count} images "
             f"({'crops 80x80 of examples/astronaut.png' if not args.folder else args.folder}), x2, "
             f"{cpu_name()}, {os.cpu_count()} cores, precision {resolve_precision('auto')}, one setting at a time "
             "on an otherwise idle machine. Wall time of the whole command (TensorFlow's start-up in each process, and the Ray cluster's start, "
             "included).", "",
             "| setting | wall time (s) | speed vs --workers=1 | seconds per image | max output difference vs "
             "--workers=1 | vs --workers=1 on 1 core |",
             "|---|---|---|---|---|---|"]
    for name, (prefix, _) in SETTINGS.items():
        label = " ".join(prefix + ["--" + name.replace("ray", "backend=ray").split(",")[0]])
        differences = [max_difference(os.path.join(args.work, name), r) * 255 for r in (reference, one_core)]
        lines.append(f"| `{label}` | {times[name]:.1f} | {base / times[name]:.2f}x | {times[name] / count:.1f} | "
                     f"{differences[0]:.0f}/255 | {differences[1]:.0f}/255 |")
    lines += ["", "A process's outputs depend on how many cores it computes on (the order of its sums), not on what "
              "runs it: each worker and Ray task has one core here, like the pinned run.", "",
              f"Ray's overhead per image against two local workers (the same two images at a time): "
              f"{(times['ray'] - times['workers=2']) / count:+.1f} s."]
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
