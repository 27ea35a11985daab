"""The ZSRGAN report's Table 1 on its exact Set5 input (Set5_g20, MZSR's "g20" degradation); resumable.

Rows (--rows, in this order):
  bicubic      MATLAB-exact bicubic x2 of the LR image (what ZSSR interpolates with);
  bicubic_cv2  OpenCV's bicubic (A = -0.75): the report's bicubic, whose 27.1920 dB it reproduces to the digit;
  zssr_real    ZSSR with flags/x2_real.cfg (the report's ZSSR row was a real-image setting: the kernel unknown);
  zssr_kernel  ZSSR with flags/x2_given_kernel.cfg and the true kernel (Set5_g20/kernel.mat);
  zsrgan       ZSRGAN with flags/zsrgan_x2.cfg and this script's --vgg_weights (none: no perceptual loss).
Per image, from the saved 8-bit outputs: RGB PSNR as the report computes it (8-bit RGB, no border shave), SSIM two
ways (the report's: `skimage.metrics.structural_similarity` with its defaults, a 7x7 uniform window, over the RGB
channels, which gives 0.8299 for its bicubic row, 0.8294 printed; and SR papers' Gaussian-window SSIM on RGB,
`zssr_tf.metrics.ssim`), Y-PSNR with a 2-pixel shave as SR papers report it, and NIQE of the output (2-pixel shave;
lower is better). The report: bicubic 27.1920 / 0.8294, ZSSR 27.4566 / 0.8400, ZSRGAN 27.1494 / 0.8245 (RGB PSNR /
SSIM).

Every (row, image) result is a JSON file in `<out>/cache/`, with the flags it was made with; a rerun skips those
made with the same flags, so an interrupted run goes on where it stopped. `--zsrgan_flags` (e.g. fewer iterations
where a full run does not fit the machine) change the ZSRGAN row's flags, so such results are cached apart and the
table lists them.

  python benchmarks/zsrgan_table.py --data_dir=../shared/data --out=benchmarks/results/zsrgan_set5_g20 \
      [--rows=bicubic,zssr_real,zssr_kernel,zsrgan] [--images=baby,bird] [--vgg_weights=none|PATH] \
      [--zsrgan_flags="--zsrgan_max_iters=200 --zsrgan_learning_rate_decay_every=50"]
  python benchmarks/zsrgan_table.py --data_dir=../shared/data --out=... --tabulate_only

A ZSRGAN row may carry a --label (its cache files and table row are `zsrgan_<label>`) and come from another
checkout (--code=DIR: its package and its flags/ presets, e.g. a git worktree of an earlier commit), so variants and
earlier code sit in one table. Each ZSRGAN result keeps its test trajectory (RGB PSNR of the generator's whole output
every --zsrgan_test_every iterations) and the best test's PSNR: the oracle the report's numbers are.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script from a checkout without installing

ROWS = ("bicubic", "bicubic_cv2", "zssr_real", "zssr_kernel", "zsrgan")
CODE_ROOT = ROOT  # --code
PRESETS = {"zssr_real": "x2_real", "zssr_kernel": "x2_given_kernel", "zsrgan": "zsrgan_x2"}
METRICS = ("psnr_rgb", "ssim_report", "ssim_rgb", "psnr_y_shave2", "niqe")
REPORT = {"bicubic_cv2": (27.1920, 0.8294), "zssr_real": (27.4566, 0.8400), "zsrgan": (27.1494, 0.8245)}


def row_flags(row: str, vgg_weights: str, extra: list[str], seed: int) -> dict[str, str]:
    """The flags (preset file + overrides) a row's runs are made with; cached results record them."""
    from zssr_tf.config import read_flagfile

    if row.startswith("bicubic"):
        return {}
    flags = read_flagfile(os.path.join(CODE_ROOT, "flags", f"{PRESETS[row]}.cfg"))
    if row == "zsrgan":
        flags["vgg_weights"] = vgg_weights
        for item in extra:
            name, _, value = item.removeprefix("--").partition("=")
            flags[name] = value
    flags.update(seed=str(seed), progress="false")
    return flags


def measure(sr: np.ndarray, hr: np.ndarray) -> dict:
    from skimage.metrics import structural_similarity

    # Only what every checkout has (--code may be an earlier one): `metrics.uniform_ssim` computes the same.
    from zssr_tf.metrics import niqe, psnr, ssim, to_8bit_values

    return {"psnr_rgb": psnr(sr, hr, y_channel=False),
            "ssim_report": structural_similarity(to_8bit_values(hr), to_8bit_values(sr), channel_axis=2,
                                                 data_range=255),
            "ssim_rgb": ssim(sr, hr, y_channel=False), "psnr_y_shave2": psnr(sr, hr, border=2),
            "niqe": niqe(sr, border=2)}


def run_one(row: str, name: str, data_dir: str, flags: dict[str, str], out: str, label: str) -> dict:
    from zssr_tf.config import Config
    from zssr_tf.image_io import read_image, write_image
    from zssr_tf.imresize import imresize
    from zssr_tf.methods import METHODS

    folder = os.path.join(data_dir, "Set5_g20")
    lr = read_image(os.path.join(folder, "LR", f"{name}.png")).pixels
    hr = read_image(os.path.join(folder, "HR", f"{name}.png")).pixels
    start = time.perf_counter()
    iterations = 0
    if row == "bicubic":
        sr = np.clip(imresize(lr, 2), 0, 1).astype(np.float32)
    elif row == "bicubic_cv2":
        sr = np.clip(cv2.resize(lr, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC), 0, 1)
    else:
        conf = Config.from_dict({**flags, "name": f"{row}_{name}"})
        kernels = [os.path.join(folder, "kernel.mat")] if row == "zssr_kernel" else None
        trainer = METHODS[conf.method](lr, conf, ground_truth=hr, kernels=kernels)
        sr = trainer.run()
        iterations = sum(h.iterations for h in trainer.history)
    result = {"row": label, "name": name, "seconds": round(time.perf_counter() - start, 1), "iterations": iterations,
              **measure(sr, hr), "flags": flags}
    if row.startswith("zsrgan"):
        from zssr_tf.metrics import psnr_of_mse

        h = trainer.history[0]  # the quick tests: true MSE of the whole output over the RGB channels
        result["trajectory"] = [[step + 1, round(psnr_of_mse(mse), 3)] for step, mse in zip(h.test_steps, h.true_mse)]
        tests = trainer.report.get("tests", [])  # the authors' protocol (8-bit RGB PSNR, skimage SSIM)
        if tests:
            best = max(tests, key=lambda t: t["psnr_rgb"])
            result["oracle"] = {"iterations": best["iterations"], "psnr_rgb": best["psnr_rgb"], "ssim": best["ssim"]}
        else:  # earlier code: the best quick test
            step, value = max(result["trajectory"], key=lambda t: t[1])
            result["oracle"] = {"iterations": step, "psnr_rgb": value, "ssim": None}
    os.makedirs(os.path.join(out, "outputs"), exist_ok=True)
    write_image(os.path.join(out, "outputs", f"{name}_{label}.png"), sr)
    path = os.path.join(out, "cache", f"{label}_{name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(path + ".tmp", path)  # atomic: an interrupted run never leaves a half-written result
    return result


def tabulate(out: str, data_dir: str, names: list[str], flags_of: dict[str, dict[str, str]]) -> str:
    """The Markdown tables of what is cached (per image and the mean over the images done): every row label in the
    cache, with this invocation's flags where it names the row, else the flags of the row's newest result; results
    cached before a metric was added get it from their saved output (`<out>/outputs/`, not committed)."""
    from zssr_tf.image_io import read_image

    by_row: dict[str, list[dict]] = {}
    for path in sorted(glob.glob(os.path.join(out, "cache", "*.json")), key=os.path.getmtime):
        with open(path) as f:
            result = json.load(f)
        if result["name"] in names:
            by_row.setdefault(result["row"], []).append(result)
    cached, row_flags_used = {}, {}
    order = [r for r in ROWS if r in by_row] + sorted(r for r in by_row if r not in ROWS)
    for row in order:
        wanted = flags_of.get(row, by_row[row][-1]["flags"])
        row_flags_used[row] = wanted
        for result in by_row[row]:
            if result["flags"] != wanted:
                continue
            saved = os.path.join(out, "outputs", f"{result['name']}_{row}.png")
            if any(key not in result for key in METRICS) and os.path.exists(saved):
                hr = read_image(os.path.join(data_dir, "Set5_g20", "HR", f"{result['name']}.png")).pixels
                result.update(measure(read_image(saved).pixels, hr))
            result.update({key: float("nan") for key in METRICS if key not in result})  # shown as nan
            cached[row, result["name"]] = result
    lines = ["| method | images | RGB PSNR | SSIM (report's) | RGB SSIM (Gaussian) | Y-PSNR (shave 2) | NIQE "
             "| best test's RGB PSNR (oracle) | iterations | s / image | report (RGB PSNR / SSIM) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in order:
        results = [cached[row, n] for n in names if (row, n) in cached]
        if not results:
            continue
        mean = {k: np.mean([r[k] for r in results]) for k in ("psnr_rgb", "ssim_report", "ssim_rgb",
                                                                "psnr_y_shave2", "niqe", "iterations", "seconds")}
        oracle = [r["oracle"]["psnr_rgb"] for r in results if "oracle" in r]
        report = REPORT.get(row)
        lines.append(f"| {row} | {len(results)} of {len(names)} | {mean['psnr_rgb']:.2f} "
                     f"| {mean['ssim_report']:.4f} | {mean['ssim_rgb']:.4f} | {mean['psnr_y_shave2']:.2f} "
                     f"| {mean['niqe']:.2f} | {f'{np.mean(oracle):.2f}' if len(oracle) == len(results) else ''} "
                     f"| {mean['iterations']:.0f} | {mean['seconds']:.0f} "
                     f"| {'' if report is None else f'{report[0]:.2f} / {report[1]:.4f}'} |")
    lines += ["", "Per image (RGB PSNR / Y-PSNR shave 2 / NIQE; ZSRGAN rows: then the oracle's RGB PSNR at its "
              "iteration):", "", "| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for row in order:
        cells = []
        for n in names:
            r = cached.get((row, n))
            cell = "" if r is None else f"{r['psnr_rgb']:.2f} / {r['psnr_y_shave2']:.2f} / {r['niqe']:.2f}"
            if r is not None and "oracle" in r:
                cell += f"; {r['oracle']['psnr_rgb']:.2f} @ {r['oracle']['iterations']}"
            cells.append(cell)
        if any(cells):
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    trajectories = {row: [cached[row, n]["trajectory"] for n in names if "trajectory" in cached.get((row, n), {})]
                    for row in order}
    for row, runs in trajectories.items():
        if not runs:
            continue
        steps = [step for step, _ in runs[0]]
        lines += ["", f"Trajectory of {row}: RGB PSNR of the whole output at each test (after that many steps; "
                  "mean over the images, then per image)", "",
                  "| images | " + " | ".join(str(s) for s in steps) + " |", "|---|" + "---|" * len(steps)]
        if all(len(run) == len(steps) for run in runs):
            lines.append(f"| mean of {len(runs)} | " + " | ".join(
                f"{np.mean([run[i][1] for run in runs]):.2f}" for i in range(len(steps))) + " |")
        for n in names:
            run = cached.get((row, n), {}).get("trajectory")
            if run:
                lines.append(f"| {n} | " + " | ".join(f"{value:.2f}" for _, value in run) + " |")
    non_default = {row: {k: v for k, v in flags.items() if k not in ("seed", "progress")}
                   for row, flags in row_flags_used.items() if flags}
    lines += ["", "Flags of each row (preset file + overrides):", ""]
    lines += [f"- {row}: `{' '.join(f'--{k}={v}' for k, v in flags.items())}`" for row, flags in non_default.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "zsrgan_set5_g20"))
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--images", default="", help="Comma-separated names (default: all five).")
    parser.add_argument("--vgg_weights", default="none", help="imagenet, a VGG16 notop .h5 file, or none.")
    parser.add_argument("--zsrgan_flags", default="", help="More flags for the ZSRGAN row, space separated.")
    parser.add_argument("--label", default="", help="The ZSRGAN row's name is zsrgan_<label> (a variant).")
    parser.add_argument("--code", default="", help="A checkout whose package and presets run (default: this one).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tabulate_only", action="store_true")
    args = parser.parse_args()
    if args.code:
        global CODE_ROOT
        CODE_ROOT = os.path.abspath(args.code)
        sys.path.insert(0, CODE_ROOT)  # before any zssr_tf import
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    folder = os.path.join(args.data_dir, "Set5_g20")
    all_names = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(folder, "LR", "*.png")))
    if not all_names:
        sys.exit(f"zsrgan_table: no images in {folder}/LR")
    names = args.images.split(",") if args.images else all_names
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS] + [n for n in names if n not in all_names]
    if unknown:
        sys.exit(f"zsrgan_table: unknown rows or images: {', '.join(unknown)}")
    label_of = {row: f"zsrgan_{args.label}" if row == "zsrgan" and args.label else row for row in rows}
    flags_of = {row: row_flags(row, args.vgg_weights, args.zsrgan_flags.split(), args.seed) for row in rows}
    os.makedirs(os.path.join(args.out, "cache"), exist_ok=True)
    if not args.tabulate_only:
        for row in rows:
            for name in names:
                path = os.path.join(args.out, "cache", f"{label_of[row]}_{name}.json")
                if os.path.exists(path) and json.load(open(path))["flags"] == flags_of[row]:
                    continue
                result = run_one(row, name, args.data_dir, flags_of[row], args.out, label_of[row])
                print(f"{label_of[row]} {name}: {result['iterations']} iterations, {result['seconds']:.0f} s, "
                      f"RGB PSNR {result['psnr_rgb']:.2f}", flush=True)
    text = tabulate(args.out, args.data_dir, all_names, {label_of[row]: flags for row, flags in flags_of.items()})
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
