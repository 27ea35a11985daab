"""Every GPU figure the project owes, in one resumable run with a time budget (a GPU is lent ~15 minutes at a time).

  . /tmp/zssr_gpu/env.sh      # after tools/gpu/receive.py install (tools/gpu/README.md)
  python3 benchmarks/gpu_window.py --budget_s=420 --data_dir=$ZSSR_GPU_DATA
  python benchmarks/gpu_window.py --smoke     # every step on tiny settings, on the CPU (tests/test_gpu_window.py)

Steps, in this order (STEPS); each runs one of the project's benchmark scripts in its own process, with a timeout
of min(its cap, what is left of --budget_s), and writes its result as it completes to <out>/cache/<step>.json (the
command, seconds, exit status, the device and the script's last JSON line). A step whose cache holds a finished
run of the same command is skipped, and the scripts behind the long steps are resumable themselves (per N, per
image), so a step stopped at its cap goes on where it stopped in the next window:
  1. reference, reference_jit   ZSSR on the reference image, default preset (benchmarks/speed.py): ms per iteration
                                in float32 and bfloat16, without and with --jit_compile; seconds end to end, Y-PSNR
  2. images_per_step_grouped,   --images_per_step N = 1, 8, 16 on 16 BSD100-size LR images (240x160 crops of Set14
     images_per_step_per_image  LR x2; benchmarks/throughput.py), the stacked step's two forms (16, not 32: N = 1
                                alone would take a window's cap, and a size's result is kept only when it is done)
  3. pixel_shuffle              the same folder with flags/x2_pixel_shuffle.cfg at N = 1 and the best N of step 2
  4. zsrgan                     ZSRGAN at the report's setting (flags/zsrgan_x2.cfg) on Set5_g20 with the report's
                                rows (benchmarks/zsrgan_table.py); VGG weights only if --vgg_weights names a file
  5. dgdml_step, dgdml_art      DGDML-SR at the paper's setting on Middlebury art x2: seconds per step and per epoch
                                (benchmarks/dgdml_step_time.py), then the NIQE row DG+BCN (benchmarks/dgdml_table.py)
  6. kernelgan                  KernelGAN's 3000 iterations on Set5 x2 images: seconds and kernel error per image
                                (benchmarks/kernel_table.py)
<out>/window.md lists every step's state. The tables are the scripts' own, under <out>/<step>/. On the GPU machine
nothing outside $OUT comes back: run this under `timeout` and end the device command with
`tar czf $OUT/gpu.tgz --exclude=outputs --exclude=work --exclude=data benchmarks/results/gpu` (tools/gpu/README.md).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
BENCH = os.path.join(ROOT, "benchmarks")
# Tiny settings for --smoke: every step's code path on a CPU in seconds.
TINY_ZSSR = ("--width=8 --depth=3 --crop_size=32 --max_iters=12 --min_iters=4 --run_test_every=4 "
             "--back_projection_iters=1")
TINY_ZSRGAN = "--zsrgan_max_iters=2 --zsrgan_width=8 --zsrgan_depth=3 --zsrgan_crop_size=64 --zsrgan_test_every=1"
TINY_DGDML = ("--flagfile=flags/dgdml_quick.cfg --dgdml_epochs=1 --dgdml_width=8 --dgdml_critic_width=4 "
              "--dgdml_batch_size=4 --dgdml_lr_patch_size=16")


def step_commands(data: str, out: str, smoke: bool, vgg_weights: str) -> list[tuple[str, list[str], float, str]]:
    """(name, argv, cap in seconds, what it measures) of every step, in order."""
    work = os.path.join(out, "work")
    best_n = best_images_per_step(out)
    zssr_flags = f" {TINY_ZSSR}" if smoke else ""
    speed = [PY, f"{BENCH}/speed.py", "--json"] + (["--iters=2", "--matmul_size=128", "--skip_final_test",
                                                      f"--flags={TINY_ZSSR}"] if smoke else [])
    # 16 images, not the 32: N = 1 takes ~11 s per image on an H100 (speed_gpu.md), and throughput.py keeps
    # a size's result only once its whole folder is done, so 32 images at N = 1 would not fit one window's cap.
    throughput = [PY, f"{BENCH}/throughput.py", f"--data_dir={data}", "--images=2" if smoke else "--images=16"]
    sizes = "1,2" if smoke else "1,8,16"
    art = [f"--input={data}/Middlebury/art1.png", f"--depth_map={data}/Middlebury/art1_true.png"]
    dgdml = TINY_DGDML if smoke else "--flagfile=flags/dgdml_x2.cfg"
    return [
        ("reference", speed + [f"--out={out}/reference/speed.md"], 240, "ZSSR reference: float32 and bfloat16"),
        ("reference_jit", speed + ["--jit_compile", "--skip_final_test", f"--out={out}/reference/speed_jit.md"]
         + (["--skip_end_to_end"] if smoke else []),
         180, "ZSSR reference, XLA step"),
        ("images_per_step_grouped", throughput + [f"--sizes={sizes}", "--form=grouped", f"--work={work}/ips",
                                                  f"--flags=--progress=false{zssr_flags}"], 300,
         "N images per step, grouped convolutions"),
        ("images_per_step_per_image", throughput + [f"--sizes={sizes}", "--form=per_image", f"--work={work}/ips",
                                                    f"--flags=--progress=false{zssr_flags}"], 240,
         "N images per step, per-image convolutions"),
        ("pixel_shuffle", throughput + [f"--sizes={'1' if best_n == 1 else f'1,{best_n}'}", f"--work={work}/ps",
                                        f"--flags=--preset=x2_pixel_shuffle{zssr_flags}"], 240,
         f"pixel-shuffle ZSSR, N = 1 and {best_n}"),
        ("zsrgan", [PY, f"{BENCH}/zsrgan_table.py", f"--data_dir={data}", f"--out={out}/zsrgan",
                    "--rows=bicubic,bicubic_cv2,zsrgan", f"--vgg_weights={vgg_weights}"]
         + (["--images=baby", f"--zsrgan_flags={TINY_ZSRGAN}"] if smoke else []), 300,
         "ZSRGAN at the report's setting on Set5_g20"),
        ("dgdml_step", [PY, f"{BENCH}/dgdml_step_time.py", *art, "--steps=1" if smoke else "--steps=5",
                        f"--flags={dgdml} --dgdml_depth_kind=disparity"], 120, "DGDML-SR paper setting: s per step"),
        ("dgdml_art", [PY, f"{BENCH}/dgdml_table.py", f"--data_dir={data}", "--part=middlebury", "--scales=2",
                       "--scenes=art", f"--rows={'dg_bcn' if smoke else 'bicubic,dg_bcn'}",
                       f"--out={out}/dgdml_middlebury"]
         + ([f"--dgdml_flags={TINY_DGDML.replace('--flagfile=flags/dgdml_quick.cfg ', '')}"] if smoke else []),
         600, "DGDML-SR paper setting: art x2 NIQE"),
        ("kernelgan", [PY, f"{BENCH}/kernel_table.py", f"--data_dir={data}", "--datasets=Set5", "--scales=2",
                       "--parts=kernel", f"--out={out}/kernelgan"]
         + (["--limit=1", "--extra_flags=--kernelgan_max_iters=20"] if smoke else ["--limit=5"]), 300,
         "KernelGAN, 3000 iterations per image"),
    ]


def best_images_per_step(out: str) -> int:
    """The N > 1 with the fewest seconds per image in step 2's results so far (1 if none)."""
    best, best_s = 1, float("inf")
    for path in glob.glob(os.path.join(out, "images_per_step", "N*.json")):
        result = json.load(open(path))
        if result["n"] > 1 and result["seconds"] / result["images"] < best_s:
            best, best_s = result["n"], result["seconds"] / result["images"]
    return best


def device_name() -> str:
    """The GPU's name (nvidia-smi), else the CPU's: every number is stamped with where it ran."""
    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=30).stdout.strip()
        if names:
            return names.splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    for line in open("/proc/cpuinfo") if os.path.exists("/proc/cpuinfo") else ():
        if line.startswith("model name"):
            return f"CPU: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return "CPU"


def last_json(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def keep_throughput_results(work: str, out: str, table: str) -> None:
    """throughput.py keeps its per-N results in its work folder (with the images): copy them to <out> and back, so
    that a later window (a bare machine) resumes from the committed ones; its table as <out>/<table>.md."""
    os.makedirs(out, exist_ok=True)
    for path in glob.glob(os.path.join(work, "*", "N*.json")):
        shutil.copy(path, out)
    for path in glob.glob(os.path.join(work, "*", "throughput.md")):
        shutil.copy(path, os.path.join(out, f"{table}.md"))


def restore_throughput_results(out: str, work: str, dataset: str = "Set14") -> None:
    os.makedirs(os.path.join(work, dataset), exist_ok=True)
    for path in glob.glob(os.path.join(out, "N*.json")):
        target = os.path.join(work, dataset, os.path.basename(path))
        if not os.path.exists(target):
            shutil.copy(path, target)


def run_window(data: str, out: str, budget_s: float, smoke: bool, vgg_weights: str, only: set[str]) -> list[dict]:
    for folder in ("cache", "reference"):
        os.makedirs(os.path.join(out, folder), exist_ok=True)
    start, device, states = time.monotonic(), device_name(), []
    # Memory growth: a step's TensorFlow must not hold the whole GPU from the next one's.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_FORCE_GPU_ALLOW_GROWTH="true", PYTHONPATH=os.pathsep.join(
        [ROOT, os.path.join(ROOT, "benchmarks"), os.environ.get("PYTHONPATH", "")]))
    for index in range(len(step_commands(data, out, smoke, vgg_weights))):
        # Built when the step starts: step 3's N is the best of step 2's results, which may have just come in.
        name, argv, cap, what = step_commands(data, out, smoke, vgg_weights)[index]
        if only and name not in only:
            continue
        path = os.path.join(out, "cache", f"{name}.json")
        cached = json.load(open(path)) if os.path.exists(path) else None
        command = " ".join(a.replace(ROOT + "/", "").replace(PY, "python") for a in argv)
        if cached and cached["command"] == command and cached["returncode"] == 0:
            states.append({**cached, "state": "cached"})
            continue
        left = budget_s - (time.monotonic() - start)
        if left < 10:
            states.append({"step": name, "what": what, "command": command, "state": "not run: budget spent"})
            continue
        kind = name.split("_per_image")[0].split("_grouped")[0]
        work = os.path.join(out, "work", "ips" if kind == "images_per_step" else "ps")
        if kind in ("images_per_step", "pixel_shuffle"):
            restore_throughput_results(os.path.join(out, kind), work)
        began = time.monotonic()
        # Its own process group: a timeout ends the scripts' own children too (dgdml_table.py runs each job in a
        # process, speed.py its end-to-end run), which would otherwise hold the GPU through the next steps.
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
        try:
            text, _ = process.communicate(timeout=min(cap, left))
            returncode = process.returncode
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            text, _ = process.communicate()
            returncode = "timeout"
        if kind in ("images_per_step", "pixel_shuffle"):
            keep_throughput_results(work, os.path.join(out, kind), name)
        record = {"step": name, "what": what, "command": command, "device": device, "returncode": returncode,
                  "seconds": round(time.monotonic() - began, 1), "result": last_json(text),
                  "tail": text.strip().splitlines()[-15:]}
        with open(path + ".tmp", "w") as f:
            json.dump(record, f, indent=1)
        os.replace(path + ".tmp", path)
        states.append({**record, "state": "done" if returncode == 0 else f"stopped ({returncode})"})
        print(f"{name}: {states[-1]['state']} in {record['seconds']} s", flush=True)
    write_summary(out, states)
    return states


def write_summary(out: str, states: list[dict]) -> None:
    lines = ["# GPU window: state of every step", "",
             "Written by `benchmarks/gpu_window.py`; the tables are the scripts' own, in the folders beside this.", "",
             "| step | what | state | device | seconds | command |", "|---|---|---|---|---|---|"]
    for s in states:
        lines.append(f"| {s['step']} | {s['what']} | {s['state']} | {s.get('device', '')} | {s.get('seconds', '')} "
                     f"| `{s['command']}` |")
    with open(os.path.join(out, "window.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def make_smoke_data(folder: str) -> str:
    """A data folder with the layout the steps read (../shared/data's), made from the bundled example, so that the
    smoke run needs nothing outside the repository."""
    import cv2
    import numpy as np
    from scipy.io import savemat

    sys.path.insert(0, ROOT)
    from zssr_tf.image_io import read_image, write_image
    from zssr_tf.imresize import imresize

    hr = read_image(os.path.join(ROOT, "examples", "astronaut_gt.png")).pixels  # 256 x 256
    big = np.clip(cv2.resize(hr, (480, 320), interpolation=cv2.INTER_CUBIC), 0, 1)  # LR x2 of 240 x 160 for Set14
    for path, image in (("Set5/HR/baby.png", hr), ("Set5/LR_bicubic/X2/babyx2.png", imresize(hr, 0.5)),
                        ("Set14/HR/zebra.png", big), ("Set14/LR_bicubic/X2/zebrax2.png", imresize(big, 0.5)),
                        ("Set5_g20/HR/baby.png", hr), ("Set5_g20/LR/baby.png", imresize(hr, 0.5)),
                        ("Middlebury/art1.png", hr[:, :, :]),
                        ("Middlebury/art1_true.png", np.repeat(np.linspace(0.2, 1, 256)[:, None, None], 256, 1))):
        os.makedirs(os.path.dirname(os.path.join(folder, path)), exist_ok=True)
        write_image(os.path.join(folder, path), np.clip(image, 0, 1).astype(np.float32), 8)
    kernel = np.outer(*[np.exp(-np.arange(-10, 11) ** 2 / 4.0)] * 2)
    savemat(os.path.join(folder, "Set5_g20", "kernel.mat"), {"kernel": kernel / kernel.sum()})
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget_s", type=float, default=600)
    parser.add_argument("--data_dir", default=os.environ.get("ZSSR_GPU_DATA", os.path.join(ROOT, "..", "shared",
                                                                                           "data")))
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "gpu"))
    parser.add_argument("--vgg_weights", default="none", help="a VGG16 notop .h5 file for ZSRGAN, if there is one")
    parser.add_argument("--only", default="", help="comma-separated steps (default: all)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings on made-up data (<out>/data), into a "
                        "temporary folder unless --out is given")
    args = parser.parse_args()
    if args.smoke:  # never into the committed results
        if args.out == parser.get_default("out"):
            args.out = tempfile.mkdtemp(prefix="gpu_window_smoke_")
        args.data_dir = os.path.join(args.out, "data")
        if not os.path.isdir(args.data_dir):
            make_smoke_data(args.data_dir)
    elif not os.path.isdir(args.data_dir):
        raise SystemExit(f"gpu_window: no data folder {args.data_dir} (--data_dir, or $ZSSR_GPU_DATA after "
                         "tools/gpu/receive.py install)")
    if args.vgg_weights != "none" and not os.path.isfile(args.vgg_weights):
        print(f"gpu_window: no VGG weights at {args.vgg_weights}: ZSRGAN runs without its perceptual term")
        args.vgg_weights = "none"
    states = run_window(args.data_dir, args.out, args.budget_s, args.smoke, args.vgg_weights,
                        {s for s in args.only.split(",") if s})
    failed = [s["step"] for s in states if s["state"].startswith("stopped (") and "timeout" not in s["state"]]
    print(f"gpu_window: {args.out}/window.md" + (f"; failed: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
