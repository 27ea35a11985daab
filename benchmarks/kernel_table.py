"""KernelGAN + ZSSR on the ZSSR paper's Table 2 recipe (random anisotropic Gaussian kernels); resumable.

Per image (Set5 / Set14 HR cropped to a multiple of the scale):
  x2  LR = HR downscaled with `random_gaussian_kernel(2)` seeded from --seed and the image name: the same LR images
      as benchmarks/paper_tables.py's Table 2;
  x4  the same x2 kernel k2 composed to x4 (`compose_x4`), LR = HR downscaled by 4 with it, so that the true
      kernels of ZSSR's two stages are [k2, k4] exactly.
Rounded to 8 bits. Then (--parts):
  kernel  KernelGAN on the LR image (flags/x<s>_estimated_kernel.cfg's --kernelgan_* settings), once per crop map
          of --crop_maps (`kernelgan`, KernelGAN's; `capped`, earlier releases'): seconds, and the kernel error (sum
          of squared differences after centring both, `kernel_error`) of the estimated x2 kernel against the true
          k2, with MATLAB bicubic's error against k2 beside it (what assuming bicubic costs);
  sr      ZSSR three times under the preset's ZSSR settings (KernelGAN's): assuming bicubic, with the kernel(s)
          estimated with KernelGAN's map, with the true kernel(s): Y-PSNR / SSIM with a border shave of the scale
          (as paper_tables.py), iterations and seconds.
Every (dataset, scale, image, part) result is a JSON file in `<out>/cache/` (the estimated kernel in a .npy beside
it), reused when made with the same seed and flags, so an interrupted run goes on where it stopped; `<out>/table.md`
is rebuilt from all of them.

  # The whole tables (about 3 h per scale and set on a 2-core CPU for the kernels alone):
  python benchmarks/kernel_table.py --data_dir=../shared/data --datasets=Set5,Set14 --scales=2,4 --parts=kernel,sr
  python benchmarks/kernel_table.py --data_dir=../shared/data --tabulate_only
  # Smoke test (a minute):
  python benchmarks/kernel_table.py --data_dir=../shared/data --datasets=Set5 --limit=1 --out=/tmp/kt_smoke \
      --extra_flags="--kernelgan_max_iters=20 --max_iters=20"
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script from a checkout without installing
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from paper_tables import image_rng, measure, preset_flags  # noqa: E402

PAPER = ("The ZSSR paper (BSD100, x2, its Table 2): ZSSR with the true kernel 29.68 / 0.8414, with an estimated "
         "kernel 28.81 / 0.8306. KernelGAN + ZSSR on DIV2KRK (the KernelGAN paper): 30.36 / 0.8669 at x2, "
         "26.81 / 0.7316 at x4.")
COLUMNS = ("bicubic", "estimated", "true")  # what ZSSR is told the kernel is
CROP_MAPS = ("kernelgan", "capped")


def lr_hr_kernels(data_dir: str, dataset: str, name: str, scale: int, seed: int):
    """The LR image, the HR ground truth and the true kernels of ZSSR's stages (x2: [k2]; x4: [k2, k4])."""
    from zssr_tf.degradations import random_gaussian_kernel
    from zssr_tf.image_io import read_image
    from zssr_tf.imresize import imresize
    from zssr_tf.kernel_estimation import compose_x4
    from zssr_tf.kernels import kernel_shift

    hr = read_image(os.path.join(data_dir, dataset, "HR", f"{name}.png")).pixels
    hr = hr[:hr.shape[0] // scale * scale, :hr.shape[1] // scale * scale]
    k2 = random_gaussian_kernel(2, image_rng(seed, 2, name))  # paper_tables' Table 2 kernel of this image
    kernels = [k2] if scale == 2 else [k2, compose_x4(kernel_shift(k2, 2))]
    # ZSSR shifts a given kernel this way before making its sons, so the LR image and the sons agree.
    lr = imresize(hr, 1 / scale, kernel=kernel_shift(kernels[-1], scale))
    lr = (np.round(np.clip(lr, 0, 1) * 255) / 255).astype(np.float32)
    return lr, hr, kernels


def preset(scale: int) -> str:
    return os.path.join(ROOT, "flags", f"x{scale}_estimated_kernel.cfg")


def config(scale: int, seed: int, extra: dict[str, str]):
    from zssr_tf.config import Config

    return Config.from_flagfile(preset(scale), seed=seed, progress=False, **extra)


def cache_path(out: str, dataset: str, scale: int, name: str, part: str) -> str:
    return os.path.join(out, "cache", f"{dataset}_x{scale}_{name}_{part}.json")


def load(path: str, stamp: dict) -> dict | None:
    try:
        with open(path) as f:
            row = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return row if row.get("stamp") == stamp else None


def save(path: str, row: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(row, f, indent=1)
    os.replace(path + ".tmp", path)  # atomic: an interrupted run never leaves a half-written result


def kernel_part(lr, kernels, conf, name: str, path: str, stamp: dict) -> dict:
    from zssr_tf.kernel_estimation import bicubic_downscale_kernel, estimate_kernels, kernel_error

    estimate = estimate_kernels(lr, conf.replace(name=name, estimate_kernels=False,
                                                 kernelgan_crop_map=stamp["crop_map"]))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path[:-5] + "_x2.npy", estimate.kernel_x2)
    row = {"stamp": stamp, "seconds": round(estimate.seconds, 1), "iterations": estimate.history.iterations,
           "error_estimated": kernel_error(estimate.kernel_x2, kernels[0]),
           "error_bicubic": kernel_error(bicubic_downscale_kernel(), kernels[0])}
    save(path, row)
    return row


def sr_part(lr, hr, kernels, conf, scale: int, name: str, kernel_row: dict, path: str, stamp: dict) -> dict:
    from zssr_tf import ZSSR
    from zssr_tf.kernel_estimation import compose_x4

    k2 = np.load(path.replace("_sr.json", "_kernel_kernelgan_x2.npy"))
    given = {"bicubic": None, "estimated": [k2] if scale == 2 else [k2, compose_x4(k2)], "true": kernels}
    conf = conf.replace(estimate_kernels=False)
    row = load(path, stamp) or {"stamp": stamp, "kernel_seconds": kernel_row["seconds"]}
    for column in COLUMNS:
        if column in row:  # done before an interruption
            continue
        start = time.perf_counter()
        zssr = ZSSR(lr, conf.replace(name=f"{name} {column}"), ground_truth=hr, kernels=given[column])
        sr = zssr.run()
        row[column] = {**measure(sr, hr, scale), "iterations": sum(h.iterations for h in zssr.history),
                       "seconds": round(time.perf_counter() - start, 1)}
        row[column].pop("niqe", None)
        save(path, row)
    return row


def fmt(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def tabulate(out: str, datasets: list[str], scales: list[int]) -> str:
    lines = ["# KernelGAN + ZSSR on random anisotropic Gaussian kernels", "",
             "Made by `benchmarks/kernel_table.py` (its docstring has the recipe and the commands); "
             "presets `flags/x2_estimated_kernel.cfg`, `flags/x4_estimated_kernel.cfg`, seed 0. Y-PSNR (dB) / SSIM "
             "with a border shave of the scale. Kernel error: sum of squared differences of the x2 kernel against "
             "the true one after centring both (`kernel_estimation.kernel_error`); bicubic: MATLAB bicubic's error "
             "against the true kernel.", "", PAPER, ""]
    for dataset in datasets:
        for scale in scales:
            rows = []
            kernel_files = glob.glob(cache_path(out, dataset, scale, "*", "kernel_*"))
            names = sorted({os.path.basename(p)[len(f"{dataset}_x{scale}_"):].rsplit("_kernel_", 1)[0]
                            for p in kernel_files})
            for name in names:
                kernel = {}
                for crop_map in CROP_MAPS:
                    path = cache_path(out, dataset, scale, name, f"kernel_{crop_map}")
                    if os.path.exists(path):
                        with open(path) as f:
                            kernel[crop_map] = json.load(f)
                sr_file = cache_path(out, dataset, scale, name, "sr")
                sr = None
                if os.path.exists(sr_file):
                    with open(sr_file) as f:
                        sr = json.load(f)
                rows.append((name, kernel, sr))
            if not rows:
                continue
            lines += [f"## {dataset} x{scale}: {len(rows)} image(s)", "",
                      "| image | kernel error: KernelGAN's map | capped map | bicubic | estimation s (KernelGAN's / "
                      "capped) | ZSSR assuming bicubic | ZSSR, estimated kernel (KernelGAN's map) | ZSSR, true kernel "
                      "| ZSSR iterations (b / e / t) | ZSSR s (b / e / t) |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            for name, kernel, sr in rows:
                any_row = next(iter(kernel.values()))
                cells = [name, *(fmt(kernel[m]["error_estimated"], 4) if m in kernel else "not run"
                                 for m in CROP_MAPS),
                         fmt(any_row["error_bicubic"], 4),
                         " / ".join(f"{kernel[m]['seconds']:.0f}" if m in kernel else "-" for m in CROP_MAPS)]
                if sr is None:
                    cells += ["not run"] * 3 + ["-", "-"]
                else:
                    cells += [f"{sr[c]['psnr']:.2f} / {sr[c]['ssim']:.4f}" if c in sr else "not run" for c in COLUMNS]
                    cells += [" / ".join(str(sr[c]["iterations"]) if c in sr else "-" for c in COLUMNS),
                              " / ".join(f"{sr[c]['seconds']:.0f}" if c in sr else "-" for c in COLUMNS)]
                lines.append("| " + " | ".join(cells) + " |")
            with_sr = [sr for _, _, sr in rows if sr is not None and set(COLUMNS) <= set(sr)]

            def mean_of(crop_map: str, key: str, digits: int, rows=rows) -> str:
                values = [k[crop_map][key] for _, k, _ in rows if crop_map in k]
                return f"{np.mean(values):.{digits}f} ({len(values)})" if values else "-"

            mean_cells = [f"**mean of {len(rows)}**", *(mean_of(m, "error_estimated", 4) for m in CROP_MAPS),
                          fmt(np.mean([next(iter(k.values()))["error_bicubic"] for _, k, _ in rows]), 4),
                          " / ".join(mean_of(m, "seconds", 0) for m in CROP_MAPS)]
            if with_sr:
                mean_cells += [f"{np.mean([s[c]['psnr'] for s in with_sr]):.2f} / "
                               f"{np.mean([s[c]['ssim'] for s in with_sr]):.4f} ({len(with_sr)})" for c in COLUMNS]
            else:
                mean_cells += ["-"] * 3
            lines += ["| " + " | ".join(mean_cells + ["", ""]) + " |", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--datasets", default="Set5,Set14")
    parser.add_argument("--scales", default="2")
    parser.add_argument("--images", default="", help="comma-separated names (default: every HR image)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many images per dataset")
    parser.add_argument("--parts", default="kernel,sr")
    parser.add_argument("--crop_maps", default="kernelgan", help="the kernel part's crop maps: kernelgan,capped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extra_flags", default="", help="flags added to the preset (smoke tests)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "kernel_estimation"))
    parser.add_argument("--tabulate_only", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    datasets, scales = args.datasets.split(","), [int(s) for s in args.scales.split(",")]
    parts = args.parts.split(",")
    crop_maps = args.crop_maps.split(",")
    if not set(parts) <= {"kernel", "sr"} or not set(scales) <= {2, 4} or not set(crop_maps) <= set(CROP_MAPS):
        parser.error("--parts: kernel and/or sr; --scales: 2 and/or 4; --crop_maps: kernelgan and/or capped")
    extra = dict(flag[2:].split("=", 1) for flag in args.extra_flags.split())
    if not args.tabulate_only:
        from absl import logging

        logging.set_verbosity(logging.WARNING)
        for dataset in datasets:
            names = sorted(os.path.splitext(os.path.basename(p))[0]
                           for p in glob.glob(os.path.join(args.data_dir, dataset, "HR", "*.png")))
            if args.images:
                names = [n for n in names if n in args.images.split(",")]
            names = names[:args.limit or None]
            for scale in scales:
                conf = config(scale, args.seed, extra)
                stamp = {"seed": args.seed, "preset": preset_flags(preset(scale)), "extra": extra}
                for name in names:
                    lr, hr, kernels = lr_hr_kernels(args.data_dir, dataset, name, scale, args.seed)
                    kernel_rows = {}  # the sr part's estimated column is KernelGAN's map's kernel
                    for crop_map in dict.fromkeys(crop_maps + (["kernelgan"] if "sr" in parts else [])):
                        kernel_file = cache_path(args.out, dataset, scale, name, f"kernel_{crop_map}")
                        kernel_stamp = {**stamp, "crop_map": crop_map}
                        kernel_row = load(kernel_file, kernel_stamp)
                        if kernel_row is None:
                            kernel_row = kernel_part(lr, kernels, conf, name, kernel_file, kernel_stamp)
                            print(f"{dataset} x{scale} {name} ({crop_map} map): kernel error "
                                  f"{kernel_row['error_estimated']:.4f} (bicubic {kernel_row['error_bicubic']:.4f}), "
                                  f"{kernel_row['seconds']:.0f} s", flush=True)
                        kernel_rows[crop_map] = kernel_row
                    sr_file = cache_path(args.out, dataset, scale, name, "sr")
                    if "sr" in parts and not set(COLUMNS) <= set(load(sr_file, stamp) or {}):
                        row = sr_part(lr, hr, kernels, conf, scale, name, kernel_rows["kernelgan"], sr_file, stamp)
                        print(f"{dataset} x{scale} {name}: " + ", ".join(
                            f"{c} {row[c]['psnr']:.2f} dB" for c in COLUMNS), flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(tabulate(args.out, ["Set5", "Set14"], [2, 4]))  # everything cached
    print(f"wrote {os.path.join(args.out, 'table.md')}")


if __name__ == "__main__":
    main()
