"""ZSSR on a benchmark dataset through the `zssr` folder mode, with ground truth; writes a per-image table.

The dataset layout is that of ../shared/data (`<dataset>/HR/<name>.png`, `<dataset>/LR_bicubic/X<s>/<name>x<s>.png`).
A temporary folder gets `<name>.png` (the LR image) and `<name>_gt.png` (the HR image) links, which the folder mode
pairs up; `results.csv` of the run is then summarised as Markdown with bicubic beside it. PSNR is on the MATLAB luma
with a border shave of `scale` pixels, as SR papers report it.

  python benchmarks/dataset_run.py --data_dir=../shared/data --dataset=Set5 --scale=2 \
      --flagfile=flags/x2_one_jump_ideal.cfg --out=benchmarks/results/set5_x2_one_jump
"""

import argparse
import csv
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np

from zssr_tf.image_io import read_image
from zssr_tf.imresize import imresize
from zssr_tf.metrics import psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--dataset", default="Set5")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--flagfile", default="flags/x2_one_jump_ideal.cfg")
    parser.add_argument("--out", required=True, help="Prefix of the .csv/.md results (and the output folder).")
    parser.add_argument("--limit", type=int, default=0, help="Only the first N images (0: all).")
    parser.add_argument("--extra_flags", default="", help="More zssr flags, space separated.")
    args = parser.parse_args()

    hr_paths = sorted(glob.glob(os.path.join(args.data_dir, args.dataset, "HR", "*.png")))
    if args.limit:
        hr_paths = hr_paths[:args.limit]
    folder = tempfile.mkdtemp(prefix=f"zssr_{args.dataset}_")
    for hr_path in hr_paths:
        name = os.path.splitext(os.path.basename(hr_path))[0]
        lr_path = os.path.join(args.data_dir, args.dataset, "LR_bicubic", f"X{args.scale}", f"{name}x{args.scale}.png")
        os.symlink(os.path.abspath(lr_path), os.path.join(folder, f"{name}.png"))
        os.symlink(os.path.abspath(hr_path), os.path.join(folder, f"{name}_gt.png"))
    out_dir = args.out + "_outputs"
    subprocess.run([sys.executable, "-m", "zssr_tf", f"--input={folder}", f"--output_dir={out_dir}",
                    f"--flagfile={args.flagfile}", "--overwrite", *args.extra_flags.split()], check=True,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    with open(os.path.join(out_dir, "results.csv")) as f:
        results = {row["name"]: row for row in csv.DictReader(f)}

    rows = []
    for hr_path in hr_paths:
        name = os.path.splitext(os.path.basename(hr_path))[0]
        lr = read_image(os.path.join(folder, f"{name}.png")).pixels
        sr = read_image(results[name]["output"]).pixels
        hr = read_image(hr_path).pixels[:sr.shape[0], :sr.shape[1]]
        bicubic = np.clip(imresize(lr, args.scale), 0, 1)
        rows.append(dict(name=name, size=f"{lr.shape[1]}x{lr.shape[0]}", bicubic=psnr(bicubic, hr, args.scale),
                         zssr=psnr(sr, hr, args.scale), iterations=results[name]["iterations"],
                         seconds=float(results[name]["seconds"])))
    with open(args.out + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    mean = lambda key: float(np.mean([r[key] for r in rows]))  # noqa: E731
    lines = [f"{args.dataset} x{args.scale}, `{args.flagfile}` {args.extra_flags}; Y-PSNR (dB), border shave "
             f"{args.scale}", "", "| image | LR size | bicubic | ZSSR | iterations | seconds |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['size']} | {r['bicubic']:.3f} | {r['zssr']:.3f} | {r['iterations']} "
              f"| {r['seconds']:.0f} |" for r in rows]
    lines.append(f"| **mean** | | {mean('bicubic'):.3f} | **{mean('zssr'):.3f}** | | {mean('seconds'):.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out + ".md", "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
