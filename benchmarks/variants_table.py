"""The course report's ZSSR variants (its section 8) measured on our data; resumable.

Parts (--parts, comma separated; each writes `<out>/<part>.md`):
  cost       seconds per training iteration of each variant at x2 on one Set14 image (the first of --images),
             from 30 timed steps after 10 untimed ones: ZSSR, pixel shuffle, the hybrid loss every 1 and every 10
             iterations, ZSSR behind a VDSR backbone. The hybrid rows use random VGG16 weights: the compute is
             the same as with ImageNet's, and no quality number is made with them.
  upsampler  the report's 8.1 on its recipe with our data: Set14 images each downscaled with one random
             anisotropic Gaussian kernel (the ZSSR paper's Table 2 recipe, benchmarks/paper_tables.py), ZSSR NOT
             given the kernel (it assumes bicubic), x2 and x4 in one jump (flags/x2_one_jump_ideal.cfg, the
             scale set to 4 for x4): ZSSR against --upsampler=pixel_shuffle. The report (BSD100): x2 28.2554 vs
             28.2550, x4 24.2300 vs 25.0655 dB.
  hybrid     the report's 8.3 on the same x2 images: L1 against L1 + --perceptual_weight content loss. Needs the
             ImageNet VGG16 weights (--vgg_weights); without them the table says so and nothing runs.
  backbone   the report's 8.2: a VDSR network pretrained (`zssr pretrain --arch=vdsr`) on Set14 HR, frozen in front
             of ZSSR, tested on Set5 x2 (flags/x2_one_jump_ideal.cfg). The report: 28.25 vs 27.61 dB (it hurt).
  transfer   the report's 8 point 2 as MZSR measures it: a ZSSR network pretrained on Set14 HR (`--arch=zssr`),
             fine-tuned with --init_weights on Set5 x2 (flags/x2_one_jump_ideal.cfg): per image, the iterations and
             seconds until the quick-test PSNR (RGB, whole image) reaches the random start's last quick-test PSNR,
             and the final Y-PSNR of each.

Every (part, variant, scale, image) result is a JSON file in `<out>/cache/`, reused when made with the same flags;
pretrained networks are kept in `<out>/pretrained/` (and resume from their checkpoints). Y-PSNR / SSIM with a
border shave of the scale, as paper_tables.py.

  python benchmarks/variants_table.py --data_dir=../shared/data --parts=cost,upsampler,transfer,backbone \
      --images=foreman,comic --set5_images=bird --zssr_pretrain_flags="--pretrain_steps=1500 --pretrain_batch_size=4"
  python benchmarks/variants_table.py --data_dir=../shared/data --parts=upsampler,transfer --tabulate_only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script from a checkout without installing
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

PRESET = os.path.join(ROOT, "flags", "x2_one_jump_ideal.cfg")
PARTS = ("cost", "upsampler", "hybrid", "backbone", "transfer")
REPORT = {"upsampler": "The report (BSD100, 4 random kernels): ZSSR x2 28.2554, x4 24.2300; with PixelShuffle x2 "
                       "28.2550, x4 25.0655 dB.",
          "hybrid": "The report (BSD100 x2): L1 28.2625 / 0.8903; hybrid 27.5138 / 0.8938.",
          "backbone": "The report (BSD100 x2, VDSR pretrained on BSDS300): ZSSR 28.2492 / 0.8931; with the frozen "
                      "VDSR 27.6091 / 0.8868.",
          "transfer": "MZSR (arXiv 2002.12213, Fig. 1): ZSSR needs ~2,850 updates, a meta-learned start one."}


def parse_flags(text: str) -> dict[str, str]:
    flags = {}
    for item in text.split():
        name, _, value = item.removeprefix("--").partition("=")
        flags[name] = value or "true"
    return flags


def base_config(scale: int, flags: dict[str, str], seed: int):
    from zssr_tf.config import Config

    # Paths in the flags are relative to the repository (so cached results do not depend on where it is).
    flags = {k: os.path.join(ROOT, v) if k in ("backbone", "init_weights") else v for k, v in flags.items()}
    conf = Config.from_flagfile(PRESET, seed=seed, progress=False, precision="float32", **flags)
    if scale != 2:
        conf = conf.replace(scale_factors=((float(scale),) * 2,), back_projection_iters=(10,))
    return conf


def set14_lr_hr(data_dir: str, name: str, scale: int, seed: int):
    """Table 2's recipe (paper_tables.make_lr_hr): HR cropped to a multiple of the scale, one random kernel."""
    import paper_tables

    lr, hr, info = paper_tables.make_lr_hr(paper_tables.Job(2, "Set14", scale, name), data_dir, seed)
    return lr, hr, info["kernel_size"]


def set5_lr_hr(data_dir: str, name: str, scale: int):
    from zssr_tf.image_io import read_image

    folder = os.path.join(data_dir, "Set5")
    lr = read_image(os.path.join(folder, "LR_bicubic", f"X{scale}", f"{name}x{scale}.png")).pixels
    hr = read_image(os.path.join(folder, "HR", f"{name}.png")).pixels
    return lr, hr[:lr.shape[0] * scale, :lr.shape[1] * scale]


def cache_path(out: str, key: str) -> str:
    return os.path.join(out, "cache", f"{key}.json")


def cached(out: str, key: str, flags: dict[str, str]) -> dict | None:
    try:
        with open(cache_path(out, key)) as f:
            row = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return row if row.get("flags") == flags else None


def store(out: str, key: str, row: dict) -> None:
    path = cache_path(out, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(row, f, indent=1)
    os.replace(path + ".tmp", path)


def run_zssr(lr: np.ndarray, hr: np.ndarray, scale: int, conf) -> dict:
    """ZSSR on (lr, hr): Y-PSNR / SSIM, iterations, seconds, and the time and PSNR of every quick test."""
    from zssr_tf import ZSSR
    from zssr_tf.metrics import psnr, psnr_of_mse, ssim

    net = ZSSR(lr, conf, ground_truth=hr)
    start = time.perf_counter()
    test_seconds: list[float] = []
    quick_test = net.quick_test

    def timed_quick_test() -> None:
        quick_test()
        test_seconds.append(time.perf_counter() - start)

    net.quick_test = timed_quick_test
    sr = net.run()
    seconds = time.perf_counter() - start
    h = net.history[-1]
    return {"psnr": psnr(sr, hr, scale), "ssim": ssim(sr, hr, scale), "seconds": round(seconds, 1),
            "iterations": sum(x.iterations for x in net.history), "test_steps": h.test_steps,
            "test_psnr": [psnr_of_mse(m) for m in h.true_mse], "test_seconds": [round(t, 2) for t in test_seconds],
            "learning_rate_drops": h.learning_rate_change_iters}


def job(out: str, key: str, flags: dict[str, str], make) -> dict:
    row = cached(out, key, flags)
    if row is None:
        print(f"running {key} {flags}", flush=True)
        row = {**make(), "flags": flags}
        store(out, key, row)
        print(f"  {key}: {row.get('psnr', 0):.3f} dB, {row.get('iterations')} iterations, {row.get('seconds')} s",
              flush=True)
    return row


def pretrained(out: str, data_dir: str, arch: str, extra: dict[str, str], seed: int) -> str:
    """The network `zssr pretrain --arch=arch` makes from Set14 HR at x2 (resumed from its checkpoint)."""
    from zssr_tf import pretrain
    from zssr_tf.config import Config

    path = os.path.join(out, "pretrained", f"{arch}_set14_x2.keras")
    record = path + ".json"
    flags = {"pretrain_arch": arch, **extra}
    if os.path.isfile(path) and os.path.isfile(record) and json.load(open(record))["flags"] == flags:
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    conf = Config().replace(seed=seed, progress=False, precision="float32", **flags)
    print(f"pretraining {arch} {flags}", flush=True)
    start = time.perf_counter()
    result = pretrain.pretrain(conf, os.path.join(data_dir, "Set14", "HR"), path)
    with open(record, "w") as f:
        json.dump({"flags": flags, "seconds_this_call": round(time.perf_counter() - start, 1),
                   "final_loss": result.final_loss}, f, indent=1)
    return path


def step_seconds(lr: np.ndarray, conf, steps: int = 30, warmup: int = 10) -> float:
    import tensorflow as tf
    from zssr_tf import ZSSR

    net = ZSSR(lr, conf)
    examples = iter(net.example_dataset(warmup + steps))
    for _ in range(warmup):
        net._train_step(*next(examples))["loss"].numpy()
    start = time.perf_counter()
    for _ in range(steps):
        net._train_step(*next(examples))["loss"].numpy()
    del tf
    return (time.perf_counter() - start) / steps


def cpu_kind() -> str:
    """The CPU model, its threads and whether it has AVX-512 / AMX (the speed ratios depend on them)."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return f"{os.cpu_count()} CPU threads"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    extensions = [name for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AMX", "amx_tile"))
                  if flag in flags]
    return f"{model}, {os.cpu_count()} threads, {' + '.join(extensions) or 'no AVX2'}"


def part_cost(args, out: str) -> str:
    import zssr_tf.methods.zssr as zssr_method
    from zssr_tf.models import build_vdsr, build_vgg_features
    from zssr_tf.models.weights import save_model

    name = args.images[0]
    lr, _, _ = set14_lr_hr(args.data_dir, name, 2, args.seed)
    conf = base_config(2, {}, args.seed)
    # Timing only: random VGG16 weights compute what ImageNet's do.
    zssr_method.build_vgg_features = lambda weights, layers: build_vgg_features("random", layers)
    backbone = os.path.join(tempfile.mkdtemp(), "vdsr_random_timing.keras")  # timing only: never kept
    save_model(build_vdsr(3), backbone)
    rows = [("ZSSR (interpolate)", {}), ("pixel shuffle", {"upsampler": "pixel_shuffle"}),
            ("hybrid loss, every iteration", {"perceptual_weight": 1e-3}),
            ("hybrid loss, every 10 iterations", {"perceptual_weight": 1e-3, "perceptual_every": 10}),
            ("behind a VDSR backbone (20 layers)", {"backbone": backbone})]
    lines = [f"## Seconds per training iteration, x2, Set14 {name} (LR {lr.shape[1]}x{lr.shape[0]}, crop 128)", "",
             f"float32, {cpu_kind()}; 30 timed steps after 10 untimed, one run each (quick tests and final test "
             "not included).", "",
             "| variant | s / iteration | vs ZSSR |", "|---|---|---|"]
    first = None
    for label, flags in rows:
        seconds = step_seconds(lr, conf.replace(**flags))
        first = first or seconds
        lines.append(f"| {label} | {seconds:.3f} | {seconds / first:.2f}x |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def part_upsampler(args, out: str, variant_flags: dict[str, dict[str, str]], part: str, scales) -> str:
    from zssr_tf.imresize import imresize
    from zssr_tf.metrics import psnr, ssim

    lines = [f"## {part}: Set14, one random Gaussian kernel per image (not given to ZSSR), one jump", "",
             REPORT[part], "", "| scale | image | kernel | bicubic PSNR / SSIM | " + " | ".join(
                 f"{v} PSNR / SSIM | its | s" for v in variant_flags) + " |",
             "|---|---|---|---|" + "---|---|---|" * len(variant_flags)]
    means = {}
    for scale in scales:
        for name in args.images:
            lr, hr, kernel_size = set14_lr_hr(args.data_dir, name, scale, args.seed)
            bicubic = np.clip(imresize(lr, scale), 0, 1)
            bicubic_scores = (psnr(bicubic, hr, scale), ssim(bicubic, hr, scale))
            cells = ["{:.2f} / {:.4f}".format(*bicubic_scores)]
            complete, row_scores = True, {}  # the mean rows take only images every variant ran on
            for variant, flags in variant_flags.items():
                key = f"{part}_x{scale}_{name}_{variant}"
                row = cached(out, key, flags) if args.tabulate_only else job(
                    out, key, flags, lambda: run_zssr(lr, hr, scale, base_config(scale, flags, args.seed)))
                if row is None:
                    cells.append("- | - | -")
                    complete = False
                    continue
                cells.append(f"{row['psnr']:.2f} / {row['ssim']:.4f} | {row['iterations']} | {row['seconds']:.0f}")
                row_scores[variant] = (row["psnr"], row["ssim"])
            if complete:
                for variant, scores in (("bicubic", bicubic_scores), *row_scores.items()):
                    means.setdefault((scale, variant), []).append(scores)
            lines.append(f"| x{scale} | {name} | {kernel_size}x{kernel_size} | " + " | ".join(cells) + " |")
    for scale in scales:
        cells = []
        for variant in ("bicubic", *variant_flags):
            values = means.get((scale, variant), [])
            cells.append(f"**{np.mean([v[0] for v in values]):.2f}** / {np.mean([v[1] for v in values]):.4f} "
                         f"({len(values)})" if values else "-")
            if variant != "bicubic":
                cells += ["", ""]
        lines.append(f"| x{scale} | mean | | " + " | ".join(cells) + " |")
    lines += ["", "Flags of each variant on top of the preset: " + "; ".join(
        f"{v}: {' '.join(f'--{k}={x}' for k, x in f.items()) or '(none)'}" for v, f in variant_flags.items())]
    return "\n".join(lines)


def part_set5(args, out: str, part: str, variant_flags: dict[str, dict[str, str]]) -> str:
    """The Set5 x2 runs of `backbone` and `transfer` (they share the random start)."""
    rows = []
    for name in args.set5_images:
        lr, hr = set5_lr_hr(args.data_dir, name, 2)
        results = {}
        for variant, flags in variant_flags.items():
            key = f"set5_x2_{name}_{variant}"
            results[variant] = cached(out, key, flags) if args.tabulate_only else job(
                out, key, flags, lambda: run_zssr(lr, hr, 2, base_config(2, flags, args.seed)))
        rows.append((name, results))
    return rows


def reached(row: dict, target: float) -> tuple[int | None, float | None]:
    for step, value, seconds in zip(row["test_steps"], row["test_psnr"], row["test_seconds"]):
        if value >= target:
            return step, seconds
    return None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--parts", default="cost,upsampler,transfer,backbone")
    parser.add_argument("--images", default="foreman,comic", help="Set14 images of cost / upsampler / hybrid.")
    parser.add_argument("--scales", default="2,4", help="Scales of the upsampler part.")
    parser.add_argument("--set5_images", default="baby,bird,butterfly,head,woman")
    parser.add_argument("--vdsr_pretrain_flags", default="--pretrain_steps=600 --pretrain_batch_size=4",
                        help="zssr pretrain flags of the backbone part's VDSR (on Set14 HR, x2).")
    parser.add_argument("--zssr_pretrain_flags", default="--pretrain_steps=1500 --pretrain_batch_size=4",
                        help="zssr pretrain flags of the transfer part's ZSSR network (on Set14 HR, x2).")
    parser.add_argument("--transfer_flags", default="",
                        help="Flags of a second pretrained-start row of the transfer part (e.g. --learning_rate=0.0001).")
    parser.add_argument("--perceptual_weight", default="0.001")
    parser.add_argument("--vgg_weights", default="imagenet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "variants"))
    parser.add_argument("--tabulate_only", action="store_true")
    args = parser.parse_args()
    args.images = args.images.split(",")
    args.set5_images = args.set5_images.split(",")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    out = args.out
    os.makedirs(out, exist_ok=True)
    for part in args.parts.split(","):
        if part not in PARTS:
            sys.exit(f"unknown part {part}; one of {', '.join(PARTS)}")
        if part == "cost":
            if args.tabulate_only:
                continue
            text = part_cost(args, out)
        elif part == "upsampler":
            text = part_upsampler(args, out, {"zssr": {}, "pixel_shuffle": {"upsampler": "pixel_shuffle"}}, part,
                                  [int(s) for s in args.scales.split(",")])
        elif part == "hybrid":
            from zssr_tf.models.perceptual import resolve_vgg_weights

            try:
                resolve_vgg_weights(args.vgg_weights)
            except ValueError as e:
                text = (f"## hybrid\n\n{REPORT['hybrid']}\n\nNot run: {e}. No number here is made with random "
                        "VGG weights.")
            else:
                hybrid = {"perceptual_weight": args.perceptual_weight, "vgg_weights": args.vgg_weights}
                text = part_upsampler(args, out, {"l1": {}, "hybrid": hybrid}, part, [2])
        else:
            arch = "vdsr" if part == "backbone" else "zssr"
            pretrain_extra = parse_flags(getattr(args, f"{arch}_pretrain_flags"))
            network = pretrained(out, args.data_dir, arch, pretrain_extra, args.seed) if not args.tabulate_only \
                else os.path.join(out, "pretrained", f"{arch}_set14_x2.keras")
            rel = os.path.relpath(network, ROOT)
            variant = {"backbone": {"backbone": rel}, "transfer": {"init_weights": rel}}[part]
            variants = {"random_start": {}, part: variant}
            if part == "transfer" and args.transfer_flags:  # e.g. a smaller learning rate for fine-tuning
                variants["transfer_tuned"] = {**variant, **parse_flags(args.transfer_flags)}
            rows = part_set5(args, out, part, variants)
            text = tabulate_set5(part, rows, pretrain_extra, variants)
        with open(os.path.join(out, f"{part}.md"), "w") as f:
            f.write(text + "\n")
        print(text, flush=True)


def tabulate_set5(part: str, rows, pretrain_extra: dict[str, str], variants: dict[str, dict[str, str]]) -> str:
    made = f"pretrained on Set14 HR at x2 with {' '.join(f'--{k}={v}' for k, v in pretrain_extra.items())}"
    others = [v for v in variants if v != "random_start"]
    if part == "backbone":
        lines = [f"## backbone: Set5 x2, ZSSR against ZSSR behind a frozen VDSR {made}", "", REPORT[part], "",
                 "| image | row | PSNR / SSIM | its | s |", "|---|---|---|---|---|"]
    else:
        lines = [f"## transfer: Set5 x2, a random start against a ZSSR network {made}, fine-tuned", "",
                 REPORT[part], "",
                 "| image | row | PSNR / SSIM | its | s | first quick test dB | its to the random start's last quick-test "
                 "PSNR | s to it |", "|---|---|---|---|---|---|---|---|"]
    means: dict[str, list] = {}
    for name, results in rows:
        random_start = results["random_start"]
        target = random_start["test_psnr"][-1] if random_start else None
        for variant in variants:
            r = results[variant]
            if r is None:
                lines.append(f"| {name} | {variant} | not run | | |" + (" | | |" if part == "transfer" else ""))
                continue
            means.setdefault(variant, []).append((r["psnr"], r["ssim"]))
            cells = f"| {name} | {variant} | {r['psnr']:.2f} / {r['ssim']:.4f} | {r['iterations']} | {r['seconds']:.0f} |"
            if part == "transfer":
                step, seconds = reached(r, target) if target is not None else (None, None)
                reach = f"{step} | {seconds:.0f}" if step is not None else "not reached | -"
                cells += f" {r['test_psnr'][0]:.2f} | {reach} |"
            lines.append(cells)
    for variant, values in means.items():
        lines.append(f"| **mean** ({len(values)}) | {variant} | **{np.mean([v[0] for v in values]):.2f}** / "
                     f"{np.mean([v[1] for v in values]):.4f} | | |" + (" | | |" if part == "transfer" else ""))
    if part == "transfer":
        lines += ["", f"Target: the random start's last quick-test PSNR (RGB, whole image, before the final test's "
                  "self-ensemble and back-projection). Rows: " + "; ".join(
                      f"{v}: {' '.join(f'--{k}={x}' for k, x in variants[v].items()) or 'preset only'}"
                      for v in variants)]
    return "\n".join(lines)

if __name__ == "__main__":
    main()
