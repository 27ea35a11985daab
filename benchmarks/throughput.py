"""Throughput with N images per step (`--images_per_step=N`): images per minute and seconds per image, on a folder.

    # BSD100-size images: 240x160 crops of Set14's LR x2 RGB images (with their HR crops as ground truth)
    python benchmarks/throughput.py --data_dir=../shared/data --sizes=1,2,4,8,16,32 --images=32
    # The quality check: Set5 x2, whole images, N = 5 against N = 1
    python benchmarks/throughput.py --data_dir=../shared/data --dataset=Set5 --sizes=1,5

For each N the whole folder goes through `app.run_folder(conf, folder, out, images_per_step=N)` in this process,
one N after another, with the default configuration (x2 in one jump; `--flags` adds flags, e.g. "--preset=quick"),
TensorFlow's start-up not included, the traces of the step included. Reported per N: wall seconds, seconds per
image, images per minute, the ratio of images per minute to N = 1 of the same run, mean Y-PSNR (border shaved)
and its difference from N = 1, the largest per-image |PSNR difference| and the iterations. Resumable: each N's
numbers go to <work>/<dataset>/N<n>[_<form>].json once its folder is done (--fresh redoes them); the table is
<work>/<dataset>/throughput.md (copy it to benchmarks/results/throughput/). `--form` picks how the stacked step
convolves (`group.CONV_FORM`; default: by device).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
CROP = (160, 240)  # BSD100's LR size at x2 (its HR images are 481 x 321)


def make_folder(data_dir: str, dataset: str, count: int, folder: str) -> list[str]:
    """LR inputs and `<name>_gt.png` HR crops: Set14, 160x240 crops of the RGB LR x2 images large enough (other
    corners for more than one per image); Set5, the whole LR x2 images. Returns the names."""
    from zssr_tf.image_io import read_image, write_image

    os.makedirs(folder, exist_ok=True)
    lr_dir, hr_dir = (os.path.join(data_dir, dataset, d) for d in ("LR_bicubic/X2", "HR"))
    pairs = []
    for name in sorted(os.listdir(hr_dir)):
        stem = os.path.splitext(name)[0]
        lr = read_image(os.path.join(lr_dir, f"{stem}x2.png")).pixels
        hr = read_image(os.path.join(hr_dir, name)).pixels[:lr.shape[0] * 2, :lr.shape[1] * 2]
        if dataset == "Set5":
            pairs.append([(stem, lr, hr)])
            continue
        if lr.shape[2] != 3 or lr.shape[0] < CROP[0] or lr.shape[1] < CROP[1]:
            continue
        corners = [(0, 0), (lr.shape[0] - CROP[0], lr.shape[1] - CROP[1]), (0, lr.shape[1] - CROP[1]),
                   (lr.shape[0] - CROP[0], 0)]
        pairs.append([(f"{stem}_{k}", lr[y:y + CROP[0], x:x + CROP[1]],
                       hr[2 * y:2 * (y + CROP[0]), 2 * x:2 * (x + CROP[1])]) for k, (y, x) in enumerate(corners)])
    chosen = [crops[k] for k in range(4) for crops in pairs if k < len(crops)][:count]
    for stem, lr, hr in chosen:
        write_image(os.path.join(folder, f"{stem}.png"), lr, 8)
        write_image(os.path.join(folder, f"{stem}_gt.png"), hr, 8)
    return [stem for stem, _, _ in chosen]


def run_size(conf, folder: str, out: str, n: int) -> dict:
    from zssr_tf import app

    start = time.perf_counter()
    app.run_folder(conf, folder, out, overwrite=True, images_per_step=n)
    seconds = time.perf_counter() - start
    with open(os.path.join(out, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    failed = [r["name"] for r in rows if r["status"] != "done"]
    if failed:
        raise SystemExit(f"N={n}: images failed: {', '.join(failed)}")
    return {"n": n, "seconds": seconds, "images": len(rows),
            "psnr": {r["name"]: float(r["psnr_y_shaved"]) for r in rows},
            "iterations": {r["name"]: r["iterations"] for r in rows}}


def table(results: list[dict], header: str) -> str:
    base = next((r for r in results if r["n"] == 1), None)
    lines = [header, "", "| N | wall s | s / image | images / min | vs N = 1 | mean Y-PSNR | vs N = 1 | largest "
             "image diff (dB) | iterations (sum) | images with other iterations |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: r["n"]):
        per_minute = 60 * r["images"] / r["seconds"]
        mean = float(np.mean(list(r["psnr"].values())))
        cells = [str(r["n"]), f"{r['seconds']:.1f}", f"{r['seconds'] / r['images']:.2f}", f"{per_minute:.2f}"]
        if base is not None:
            diffs = [r["psnr"][k] - base["psnr"][k] for k in base["psnr"]]
            others = sum(r["iterations"][k] != base["iterations"][k] for k in base["iterations"])
            cells += [f"{per_minute / (60 * base['images'] / base['seconds']):.2f}x", f"{mean:.3f}",
                      f"{mean - float(np.mean(list(base['psnr'].values()))):+.4f}",
                      f"{max(abs(d) for d in diffs):.4f}"]
        else:
            cells += ["", f"{mean:.3f}", "", ""]
        total = sum(sum(int(i) for i in its.split("+")) for its in r["iterations"].values())
        cells += [str(total), "" if base is None else str(others)]
        lines.append("| " + " | ".join(cells) + " |")
    if base is not None:
        lines += ["", "Per image, Y-PSNR (iterations) at each N:", "",
                  "| image | " + " | ".join(f"N = {r['n']}" for r in sorted(results, key=lambda r: r["n"])) + " |",
                  "|---|" + "---|" * len(results)]
        for name in base["psnr"]:
            lines.append(f"| {name} | " + " | ".join(
                f"{r['psnr'][name]:.3f} ({r['iterations'][name]})" for r in sorted(results, key=lambda r: r["n"]))
                + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=os.path.join(ROOT, "..", "shared", "data"))
    parser.add_argument("--dataset", default="Set14", choices=("Set14", "Set5"))
    parser.add_argument("--sizes", default="1,2,4,8,16,32")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--flags", default="", help="flags for the configuration, e.g. '--preset=quick'")
    parser.add_argument("--work", default="/tmp/zssr_throughput")
    parser.add_argument("--form", default="", help="how the stacked step convolves: grouped or per_image "
                        "(group.CONV_FORM); default: by device (group.conv_form)")
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    from zssr_tf import cli, device, group

    cli.import_tensorflow_quietly()
    group.CONV_FORM = args.form or None
    form = group.conv_form()
    if form == "grouped" and not group.grouped_gradient_supported():
        print("throughput: this machine's TensorFlow has no grouped convolution kernel gradient (oneDNN on AVX2-only "
              "CPUs): the grouped form cannot be measured here")
        return
    cli.parse_flags(["throughput", "--progress=false", *shlex.split(args.flags)])
    conf = cli.config_from_flags()
    work = os.path.join(args.work, args.dataset)
    folder = os.path.join(work, "input")
    names = make_folder(args.data_dir, args.dataset, args.images, folder)
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        path = os.path.join(work, f"N{n}.json" if n == 1 else f"N{n}_{form}.json")
        if os.path.exists(path) and not args.fresh:
            with open(path) as f:
                results.append(json.load(f))
            continue
        result = run_size(conf, folder, os.path.join(work, f"out_N{n}" if n == 1 else f"out_N{n}_{form}"), n)
        with open(path, "w") as f:
            json.dump(result, f)
        results.append(result)
        print(f"N={n}: {result['seconds']:.1f} s for {result['images']} images", flush=True)
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    where = (tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus
             else f"{device.cpu_name()}, {len(os.sched_getaffinity(0))} cores")
    text = table(results, f"# Throughput, {args.dataset}: {len(names)} images "
                          f"({'whole LR x2' if args.dataset == 'Set5' else '160x240 LR x2 crops'}), {where}\n\n"
                          f"`python benchmarks/throughput.py --dataset={args.dataset} --sizes={args.sizes} "
                          f"--images={args.images}{' --flags=' + shlex.quote(args.flags) if args.flags else ''}`; "
                          f"precision {device.resolve_precision(conf.run.precision)}, pipeline "
                          f"{conf.run.pipeline}, convolutions of N > 1 {form}, TensorFlow {tf.__version__}.")
    with open(os.path.join(work, "throughput.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
