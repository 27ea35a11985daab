"""Speed of zssr_tf on this machine, measured in one run (ratios against same-run baselines, as machines are shared).

Measures:
  * ms per training iteration (example pipeline + train step, as `ZSSR.train` runs them) in float32 and in the
    precision `--precision=auto` picks here, plus the pipeline alone (ms per example) and the step alone;
  * the step's achieved GFLOP/s (3 x forward FLOPs of the 8x64 convs on a 128x128 crop) against a 4096^3 matmul in
    the step's compute dtype (float32, or bfloat16/float16 under a mixed policy) timed in the same run;
  * the convolutions the step is made of, each alone (forward, gradient to the input, gradient to the filter of a
    64->64 3x3 layer on the crop) and combined: the ceiling the convolution library sets, which the step is also
    compared with;
  * end to end: the `zssr` command on the reference image of ZSSR_TF1_NOTES.md section 11 (wall time, iterations,
    Y-PSNR), default flags;
  * the final test (self-ensemble + back-projection) of a 1024x1024 input at x2 (2048x2048 output), and the
    process's peak resident memory.

  python benchmarks/speed.py [--iters=100] [--skip_end_to_end] [--json] [--out=benchmarks/results/speed.md]

`--flags` (e.g. "--width=8 --depth=3 --crop_size=32", as benchmarks/gpu_window.py's --smoke gives it) changes the
configuration of every measurement and of the end-to-end run; the numbers are then not the reference's.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from zssr_tf import ZSSR, Config
from zssr_tf.device import resolve_precision
from zssr_tf.image_io import read_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORIGINAL_MS_PER_ITER, ORIGINAL_REFERENCE_S = 134.0, 344.0  # the TF1 code on this kind of CPU (issue 4, notes)
COMPUTE_DTYPE = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}


def conv_flops(conf: Config, crop: int, channels: int = 3) -> float:
    """Forward FLOPs of the generator on one crop (2 per multiply-add)."""
    c = [channels] + [conf.zssr.width] * (conf.zssr.depth - 1) + [channels]
    return sum(2.0 * crop * crop * 9 * c_in * c_out for c_in, c_out in zip(c[:-1], c[1:]))


def matmul_gflops(dtype: str = "float32", n: int = 4096, reps: int = 3) -> float:
    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    # Synchronise on a scalar: fetching the 64 MB product would time a device-to-host copy on a GPU.
    product_sum = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)))
    product_sum().numpy()
    best = min(_timed(lambda: product_sum().numpy()) for _ in range(reps))
    return 2.0 * n**3 / best / 1e9


def conv_gflops(dtype: str, crop: int, width: int, reps: int = 30) -> dict:
    """GFLOP/s of the three convolutions a train step is made of (forward, gradient to the input, gradient to the
    filter of one width->width 3x3 layer on a crop), each alone, and their combined rate: the step's rate if it were
    nothing but these kernels, i.e. the ceiling the convolution library sets (below the matmul's)."""
    x, dy = (tf.cast(tf.random.normal((1, crop, crop, width)), dtype) for _ in range(2))
    w = tf.cast(tf.random.normal((3, 3, width, width)), dtype)
    ops = {"forward": lambda: tf.nn.conv2d(x, w, 1, "SAME"),
           "input_gradient": lambda: tf.raw_ops.Conv2DBackpropInput(
               input_sizes=x.shape, filter=w, out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME"),
           "filter_gradient": lambda: tf.raw_ops.Conv2DBackpropFilter(
               input=x, filter_sizes=w.shape, out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME")}
    flops, seconds = 2.0 * crop * crop * 9 * width * width, {}
    for name, op in ops.items():
        # One call per op (repeats inside one graph would be merged as common subexpressions).
        op = tf.function(lambda op=op: tf.reduce_sum(op()))
        op().numpy()
        seconds[name] = min(_timed(lambda: [op() for _ in range(reps)][-1].numpy()) for _ in range(3)) / reps
    rates = {name: flops / t / 1e9 for name, t in seconds.items()}
    return {**rates, "combined": 3 * flops / sum(seconds.values()) / 1e9}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def training_speed(lr: np.ndarray, conf: Config, iters: int) -> dict:
    """ms per example (pipeline alone), per step (alone) and per full iteration: as ZSSR.train runs them (several
    steps per call) and with one step per call (the loop before chunking, for the ratio)."""
    zssr = ZSSR(lr, conf)
    zssr.stage, zssr.sf, zssr.kernel = 0, np.array(conf.task.scale_factors[0]), zssr.kernels[0]

    def dataset():
        return zssr.example_dataset(num_examples=iters + 10)

    examples = iter(dataset())
    for _ in range(10):
        next(examples)
    pipeline = _timed(lambda: [next(examples) for _ in range(iters)]) / iters
    example = next(iter(dataset()))

    def steps(next_example):  # one step per call
        for _ in range(iters):
            loss = zssr._train_step(*next_example())["loss"]
        loss.numpy()

    steps(lambda: example)  # warm-up (tracing)
    step = _timed(lambda: steps(lambda: example)) / iters
    examples = iter(dataset())
    single_calls = _timed(lambda: steps(lambda: next(examples))) / iters

    def chunked_steps(examples):  # as ZSSR.train runs them: chunks up to the iterations its loop looks at
        first = 0
        while first < iters:
            last = min(zssr.next_sync_iteration(first), iters - 1)
            loss = zssr._train_steps(examples, tf.constant(last + 1 - first))["loss"]
            first = last + 1
        loss.numpy()

    chunked_steps(iter(dataset()))  # warm-up (tracing)
    examples = iter(dataset())
    iteration = _timed(lambda: chunked_steps(examples)) / iters
    flops = 3 * conv_flops(conf, zssr.crop_size)
    return dict(precision=zssr.precision, ms_per_iteration=1e3 * iteration,
                ms_per_iteration_one_step_per_call=1e3 * single_calls, ms_pipeline=1e3 * pipeline,
                ms_step=1e3 * step, step_gflops=flops / step / 1e9)


def end_to_end(extra_flags: list[str]) -> dict:
    out_dir = tempfile.mkdtemp(prefix="zssr_speed_")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "zssr_tf", f"--input={ROOT}/examples/astronaut.png",
                    f"--ground_truth={ROOT}/examples/astronaut_gt.png", f"--output_dir={out_dir}", *extra_flags],
                   check=True, capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    wall = time.perf_counter() - start
    log = json.load(open(os.path.join(out_dir, "astronaut_log.json")))
    return dict(wall_s=wall, iterations=log["iterations"][-1], psnr_y=log["psnr_y"],
                drops=log["stages"][-1]["learning_rate_change_iters"])


def final_test_speed(conf: Config, size: int = 1024) -> dict:
    rng = np.random.default_rng(0)
    lr = np.clip(np.cumsum(rng.normal(0, 0.02, (size, size, 3)), axis=1) % 1.0, 0, 1).astype(np.float32)
    zssr = ZSSR(lr, conf)
    zssr.stage, zssr.sf, zssr.kernel = 0, np.array(conf.task.scale_factors[0]), zssr.kernels[0]
    seconds = _timed(zssr.final_test)
    return dict(final_test_s=seconds, input=f"{size}x{size}", output=f"{2 * size}x{2 * size}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--skip_end_to_end", action="store_true")
    parser.add_argument("--skip_final_test", action="store_true")
    parser.add_argument("--jit_compile", action="store_true", help="Every measurement with the XLA train step.")
    parser.add_argument("--json", action="store_true", help="Also print one JSON line with every number.")
    parser.add_argument("--out", default=None, help="Markdown file for the table.")
    parser.add_argument("--flags", default="", help="Configuration flags for every measurement (smoke tests).")
    parser.add_argument("--matmul_size", type=int, default=4096)
    args = parser.parse_args()

    from dgdml_step_time import flags_from_text

    lr = read_image(os.path.join(ROOT, "examples", "astronaut.png")).pixels
    conf = Config().replace(jit_compile=args.jit_compile, **flags_from_text(args.flags))
    results = {}
    if not args.skip_end_to_end:  # first, while this process is small and its thread pools idle
        results["end_to_end"] = end_to_end((["--jit_compile"] if args.jit_compile else []) + args.flags.split())
    precisions = ["float32"] + ([resolve_precision("auto")] if resolve_precision("auto") != "float32" else [])
    # Each step is compared with a matmul in its own compute dtype: on AMX CPUs bfloat16 has a ~4x higher ceiling.
    results["matmul_gflops"] = {COMPUTE_DTYPE[p]: matmul_gflops(COMPUTE_DTYPE[p], args.matmul_size) for p in precisions}
    results["conv_gflops"] = {COMPUTE_DTYPE[p]: conv_gflops(COMPUTE_DTYPE[p], conf.zssr.crop_size, conf.zssr.width)
                              for p in precisions}
    results["training"] = [training_speed(lr, conf.replace(precision=p), args.iters)
                           for p in precisions]
    if not args.skip_final_test:
        results["final_test"] = final_test_speed(conf)
    results["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    results["device"] = tf.config.list_physical_devices("GPU") and "GPU" or "CPU"
    results["jit_compile"] = args.jit_compile

    matmuls = ", ".join(f"{d} {g:.0f}" for d, g in results["matmul_gflops"].items())
    lines = [f"Measured in one run on this machine ({results['device']}); {args.matmul_size}^3 matmul GFLOP/s: "
             f"{matmuls}; "
             f"XLA train step: {'on' if args.jit_compile else 'off'}.", "",
             "| precision | ms / iteration (pipeline + step) | vs original TF1 (134 ms) | one step per call "
             "| pipeline ms / example | pipeline / step | step ms | step GFLOP/s | step / same-dtype matmul "
             "| step / its convolutions alone |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for t in results["training"]:
        dtype = COMPUTE_DTYPE[t["precision"]]
        lines.append(f"| {t['precision']} | {t['ms_per_iteration']:.1f} "
                     f"| {ORIGINAL_MS_PER_ITER / t['ms_per_iteration']:.1f}x "
                     f"| {t['ms_per_iteration_one_step_per_call']:.1f} | {t['ms_pipeline']:.2f} "
                     f"| {100 * t['ms_pipeline'] / t['ms_step']:.0f}% | {t['ms_step']:.1f} "
                     f"| {t['step_gflops']:.0f} "
                     f"| {100 * t['step_gflops'] / results['matmul_gflops'][dtype]:.0f}% "
                     f"| {100 * t['step_gflops'] / results['conv_gflops'][dtype]['combined']:.0f}% |")
    lines += ["", "The convolutions alone (one 64->64 3x3 layer on a crop, GFLOP/s): " + "; ".join(
        f"{d}: forward {c['forward']:.0f}, to the input {c['input_gradient']:.0f}, to the filter "
        f"{c['filter_gradient']:.0f}, combined {c['combined']:.0f} "
        f"({100 * c['combined'] / results['matmul_gflops'][d]:.0f}% of the matmul)"
        for d, c in results["conv_gflops"].items()) + "."]
    f = results.get("final_test")
    lines += [] if f is None else ["", f"Final test (8 transforms, 10 back-projections each and after the median, default precision) of a "
              f"{f['input']} input ({f['output']} output): {f['final_test_s']:.1f} s; peak RSS of the whole "
              f"benchmark process: {results['peak_rss_gb']:.2f} GB."]
    if "end_to_end" in results:
        e = results["end_to_end"]
        lines += ["", f"End to end, `zssr` with default flags on the reference image (incl. start-up): "
                  f"{e['wall_s']:.1f} s ({ORIGINAL_REFERENCE_S / e['wall_s']:.1f}x faster than the original's 344 s), "
                  f"{e['iterations']} iterations, learning-rate drops at {e['drops']}, Y-PSNR {e['psnr_y']:.3f} dB "
                  "(original: 35.192)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.json:
        print(json.dumps(results))
    if args.out:
        with open(args.out, "w") as out:
            out.write(text)


if __name__ == "__main__":
    main()
