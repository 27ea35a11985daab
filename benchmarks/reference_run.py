"""The reference run of ZSSR_TF1_NOTES.md section 11, end to end through the `zssr` command.

Input: examples/astronaut.png (MATLAB-exact bicubic x1/2 of skimage astronaut()[0:256, 128:384], rounded to 8 bits),
ground truth examples/astronaut_gt.png, default configuration (x2 one jump). The original TF1 code reached Y-PSNR
35.192 dB (no border crop) in 2460 iterations, 344 s on a 2-core CPU.

Runs the command `--repeats` times with the same seed, then reports iterations, learning-rate drops, wall time,
PSNR (Y and RGB, no crop and 2-px crop) and whether the output files are byte-identical; writes a Markdown table.

  python benchmarks/reference_run.py --repeats=2 --out=benchmarks/results/reference_run.md
"""

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from zssr_tf.image_io import read_image
from zssr_tf.imresize import imresize
from zssr_tf.metrics import psnr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORIGINAL = {"iterations": 2460, "drops": [1079, 1859, 2459], "seconds": 344, "psnr_y": 35.192, "psnr_rgb": 33.481}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="Markdown file for the results table.")
    parser.add_argument("--extra_flags", default="", help="More zssr flags, space separated.")
    args = parser.parse_args()
    lr_path = os.path.join(ROOT, "examples", "astronaut.png")
    gt_path = os.path.join(ROOT, "examples", "astronaut_gt.png")
    gt = read_image(gt_path).pixels
    rows, outputs = [], []
    work = tempfile.mkdtemp(prefix="zssr_reference_")
    for repeat in range(args.repeats):
        out_dir = os.path.join(work, f"run{repeat}")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "zssr_tf", f"--input={lr_path}", f"--ground_truth={gt_path}",
                        f"--output_dir={out_dir}", f"--seed={args.seed}", *args.extra_flags.split()],
                       check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        wall = time.perf_counter() - start
        log = json.load(open(os.path.join(out_dir, "astronaut_log.json")))
        sr = read_image(log["outputs"][-1]).pixels
        outputs.append(log["outputs"][-1])
        stage = log["stages"][-1]
        rows.append(dict(run=repeat, iterations=stage["iterations"], drops=stage["learning_rate_change_iters"],
                         train_s=stage["train_seconds"], final_test_s=stage["final_test_seconds"], wall_s=wall,
                         psnr_y=psnr(sr, gt), psnr_y_c2=psnr(sr, gt, border=2),
                         psnr_rgb=psnr(sr, gt, y_channel=False), psnr_rgb_c2=psnr(sr, gt, border=2, y_channel=False)))
    bicubic = np.clip(imresize(read_image(lr_path).pixels, 2), 0, 1)
    identical = all(filecmp.cmp(outputs[0], o, shallow=False) for o in outputs[1:])
    lines = [
        f"Reference run (ZSSR_TF1_NOTES.md section 11), seed {args.seed}, flags: `{args.extra_flags or 'defaults'}`",
        "",
        "| run | iterations | LR drops at | train s | final test s | wall s (incl. start-up) | Y-PSNR | Y c2 | RGB | RGB c2 |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| original TF1 (notes) | {ORIGINAL['iterations']} | {ORIGINAL['drops']} | 341.7 | 2.3 | {ORIGINAL['seconds']} "
        f"| {ORIGINAL['psnr_y']:.3f} | 35.295 | {ORIGINAL['psnr_rgb']:.3f} | 33.579 |",
        f"| bicubic | | | | | | {psnr(bicubic, gt):.3f} | {psnr(bicubic, gt, border=2):.3f} "
        f"| {psnr(bicubic, gt, y_channel=False):.3f} | {psnr(bicubic, gt, border=2, y_channel=False):.3f} |",
    ]
    for r in rows:
        lines.append(f"| zssr_tf #{r['run']} | {r['iterations']} | {r['drops']} | {r['train_s']:.1f} "
                     f"| {r['final_test_s']:.1f} | {r['wall_s']:.1f} | {r['psnr_y']:.3f} | {r['psnr_y_c2']:.3f} "
                     f"| {r['psnr_rgb']:.3f} | {r['psnr_rgb_c2']:.3f} |")
    lines += ["", f"Output files of the {args.repeats} runs byte-identical: {identical}"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
