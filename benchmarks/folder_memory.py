"""Resident memory of a folder run as it goes: does a long folder grow without bound?

  python benchmarks/folder_memory.py [--images=500] [--size=24] [--every=20] [--workers=1] [--flags="--max_iters=5"]

Makes --images smooth random images (--size pixels square, seeded) in a temporary folder and runs `app.run_folder`
on them in this process (--workers=1) or in worker processes. The resident set size (VmRSS of this process, plus
its workers') is sampled when each image starts; reported every --every images, with the growth per image after
the first 20 (a least-squares slope over the rest). Appends the table to --out (markdown) when given.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def rss_mb(pid: int | str = "self") -> float:
    """VmRSS of a process, MB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_rss_mb() -> float:
    """This process's RSS plus its children's (the workers)."""
    me = os.getpid()
    total = rss_mb(me)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        total += rss_mb(pid)
            except (OSError, ValueError, IndexError):
                continue
    return total


def make_images(folder: str, count: int, size: int = 24) -> None:
    import cv2

    from zssr_tf.image_io import write_image

    rng = np.random.default_rng(0)
    for i in range(count):
        small = rng.random((6, 6, 3))
        write_image(os.path.join(folder, f"img_{i:04d}.png"),
                    np.clip(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1).astype(np.float32), 8)


def growth_per_image(samples: list[tuple[int, float]], skip: int = 20) -> float:
    """MB per image: the least-squares slope of RSS against the image index, from image `skip` on."""
    points = np.array([s for s in samples if s[0] >= skip], dtype=np.float64)
    if len(points) < 2:
        return float("nan")
    return float(np.polyfit(points[:, 0], points[:, 1], 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=24)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--flags", default="--max_iters=5 --min_iters=5 --back_projection_iters=1")
    parser.add_argument("--release", default="none", choices=("none", "gc", "clear_session"),
                        help="diagnosis: also run gc.collect() or keras's clear_session() after each image")
    parser.add_argument("--label", default="", help="what this run is (e.g. the commit), for the table")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging

    from zssr_tf import app, cli, scaleout

    cli.import_tensorflow_quietly()
    logging.set_verbosity(logging.WARNING)
    cli.parse_flags(["folder_memory", "--progress=false", *args.flags.split()])
    conf = cli.config_from_flags()
    work = tempfile.mkdtemp(prefix="folder_memory_")
    os.makedirs(os.path.join(work, "in"))
    make_images(os.path.join(work, "in"), args.images, args.size)

    if args.release != "none":
        import gc

        import keras

        run_job = app.run_job

        def releasing_run_job(*a, **k):
            result = run_job(*a, **k)
            keras.backend.clear_session() if args.release == "clear_session" else gc.collect()
            return result

        app.run_job = releasing_run_job
    samples: list[tuple[int, float]] = []
    started = time.perf_counter()
    if args.workers <= 1:
        original = scaleout.log_start

        def sampling_log_start(job, total):  # called in this process as each image starts
            samples.append((job.index, tree_rss_mb()))
            original(job, total)

        scaleout.log_start = sampling_log_start
        app.run_folder(conf, os.path.join(work, "in"), os.path.join(work, "out"), workers=1)
    else:
        import threading

        done = threading.Event()

        def sample():  # the workers start images on their own: sample the tree by the images done so far
            while not done.wait(0.5):
                count = len([n for n in os.listdir(os.path.join(work, "out")) if n.endswith("_record.json")]) \
                    if os.path.isdir(os.path.join(work, "out")) else 0
                if not samples or samples[-1][0] != count:
                    samples.append((count, tree_rss_mb()))

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        app.run_folder(conf, os.path.join(work, "in"), os.path.join(work, "out"), workers=args.workers)
        done.set()
        thread.join()
    seconds = time.perf_counter() - started
    slope = growth_per_image(samples)
    lines = [f"{args.label or 'run'}: {args.images} images of {args.size}x{args.size}, `{args.flags}`, "
             f"workers {args.workers}, {seconds:.0f} s; RSS growth after image 20: {slope:.2f} MB per image", "",
             "| image | RSS MB |", "|---|---|"]
    lines += [f"| {i} | {mb:.0f} |" for i, mb in samples if i % args.every == 0 or i == samples[-1][0]]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
