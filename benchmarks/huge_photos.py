"""Large photos: the final test's memory streamed in tiles vs in one piece, and a 12-megapixel photo at x2.

    python benchmarks/huge_photos.py final_test [--lr_side=1024] [--tiles=0,1024,512]
    python benchmarks/huge_photos.py photo [--megapixels=12] [--photo=PATH] [--work=DIR]

`final_test`: for each `--final_test_tile` value, a child process builds the default ZSSR network (x2, untrained:
the final test's memory and time do not depend on the weights' values) on an lr_side x lr_side crop of a Middlebury
photo resized to fit, and runs the stage's final test alone (8 transforms, median, 10 + 10 back-projections). It
reports the final test's seconds and its peak resident memory above what the process held before it (sampled every
10 ms), and the largest difference of each output from the one-piece output. One process per setting, one at a
time: peak memory is per process, and two TensorFlow processes on 2 cores slow each other.

`photo`: the whole command, default preset, on a 4:3 photo of `--megapixels` (12: 4000 x 3000; by default a
Middlebury view resized up to it with bicubic, so a smooth photo), under `/usr/bin/time -v`: wall time, peak memory,
exit status, and the log's train / final-test seconds. At 12 megapixels it takes about two hours on a 2-core CPU.
Results go to benchmarks/results/huge_photos.md (each part rewrites its own section; the work folder,
/tmp/zssr_huge_photos by default, keeps the photo, the outputs and the log).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RESULTS = os.path.join(ROOT, "benchmarks", "results", "huge_photos.md")
DEFAULT_PHOTO = os.path.join(ROOT, "..", "shared", "data", "Middlebury", "aloe1.png")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def photo_array(path: str, height: int, width: int):
    """The photo resized (bicubic) to height x width, float32 in [0, 1]."""
    import cv2
    import numpy as np
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"huge_photos: cannot read {path} (give --photo)")
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(image[:, :, ::-1] / 255.0, 0, 1).astype(np.float32)


def final_test_child(tile: int, lr_side: int, photo: str, out: str) -> None:
    """One setting, in this process: prints a JSON line {seconds, peak_bytes}."""
    import numpy as np
    from zssr_tf import ZSSR, Config
    image = photo_array(photo, lr_side, lr_side)
    trainer = ZSSR(image, Config().replace(final_test_tile=tile))
    before, peak, done = rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    output = trainer.final_test()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    np.save(out, output)
    print(json.dumps({"seconds": seconds, "peak_bytes": max(peak[0], rss_bytes()) - before}), flush=True)


def write_section(title: str, lines: list[str]) -> None:
    """Replaces (or appends) the `## title` section of the results file."""
    text = open(RESULTS).read() if os.path.exists(RESULTS) else (
        "# Large photos: the streamed final test, and whole runs on large photos\n\n"
        "Made by `benchmarks/huge_photos.py` (see its docstring for what each part measures).\n")
    sections = re.split(r"(?m)^(?=## )", text)
    body = f"## {title}\n\n" + "\n".join(lines) + "\n\n"
    for i, section in enumerate(sections):
        if section.startswith(f"## {title}\n"):
            sections[i] = body
            break
    else:
        sections.append(body)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write("\n\n".join(section.strip() for section in sections) + "\n")


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=ROOT).stdout.strip()


def final_test_part(flags: argparse.Namespace) -> None:
    import numpy as np
    from zssr_tf.device import cpu_name, resolve_precision
    tiles = [int(t) for t in flags.tiles.split(",")]
    rows, outputs = [], {}
    with tempfile.TemporaryDirectory() as work:
        for tile in tiles:
            out = os.path.join(work, f"{tile}.npy")
            child = subprocess.run(
                [sys.executable, __file__, "_final_test_child", f"--tile={tile}", f"--lr_side={flags.lr_side}",
                 f"--photo={flags.photo}", f"--out={out}"], capture_output=True, text=True, cwd=ROOT,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
            if child.returncode != 0:
                raise SystemExit(f"final_test_tile={tile} failed:\n{child.stderr[-3000:]}")
            result = json.loads(child.stdout.strip().splitlines()[-1])
            outputs[tile] = np.load(out)
            rows.append((tile, result))
            print(tile, result, flush=True)
    reference = outputs[tiles[0]]
    side = 2 * flags.lr_side
    lines = [f"The default x2 network's final test of a {side}x{side} output ({flags.lr_side}x{flags.lr_side} input, "
             f"{os.path.basename(flags.photo)} resized), `python benchmarks/huge_photos.py final_test "
             f"--lr_side={flags.lr_side} --tiles={flags.tiles}` at commit {commit()}, {cpu_name()}, "
             f"{os.cpu_count()} cores, precision {resolve_precision('auto')}. Peak memory: resident memory above "
             "what the process held before the final test, sampled every 10 ms.", "",
             f"| final_test_tile | seconds | peak memory (GB) | max abs difference from final_test_tile={tiles[0]} |",
             "|---|---|---|---|"]
    for tile, result in rows:
        difference = float(np.abs(outputs[tile] - reference).max())
        lines.append(f"| {tile}{' (one piece)' if tile == 0 else ''} | {result['seconds']:.1f} | "
                     f"{result['peak_bytes'] / 1e9:.2f} | {difference:.1e} |")
    write_section(f"Final test of a {side}x{side} output", lines)


def photo_part(flags: argparse.Namespace) -> None:
    from zssr_tf.device import cpu_has_native_bfloat16, cpu_name, resolve_precision
    os.makedirs(flags.work, exist_ok=True)
    height = int(round(3000 * (flags.megapixels / 12) ** 0.5))
    width = int(round(height * 4 / 3))
    name = f"photo_{flags.megapixels:g}mp"
    path = os.path.join(flags.work, f"{name}.png")
    if not os.path.exists(path):
        from zssr_tf.image_io import write_image
        write_image(path, photo_array(flags.photo, height, width))
    out = os.path.join(flags.work, "out")
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "zssr_tf", f"--input={path}", f"--output_dir={out}",
               "--overwrite", "--noprogress"]
    start = time.perf_counter()
    child = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    wall = time.perf_counter() - start
    with open(os.path.join(flags.work, "stderr.txt"), "w") as f:
        f.write(child.stderr)
    peak_kb = re.search(r"Maximum resident set size \(kbytes\): (\d+)", child.stderr)
    done = re.search(r"done: (\d+) iterations.*train ([\d.]+) s, final test ([\d.]+) s", child.stderr)
    from zssr_tf.image_io import output_name
    output = os.path.join(out, output_name(path, (2.0, 2.0)))
    if os.path.exists(output):
        from zssr_tf.image_io import read_header
        header = read_header(output)
        shape = f"{header.width}x{header.height}"
    else:
        shape = "none"
    lines = [f"`zssr --input={name}.png` ({width}x{height}, {os.path.basename(flags.photo)} resized up with bicubic; "
             f"default preset: x2, one jump), `python benchmarks/huge_photos.py photo --megapixels="
             f"{flags.megapixels:g}` at commit {commit()}, "
             f"{cpu_name()}{' (AVX512-BF16)' if cpu_has_native_bfloat16() else ''}, {os.cpu_count()} cores, "
             f"precision {resolve_precision('auto')} (--precision=auto).", "",
             "| exit status | output | wall time (min) | peak memory (GB) | iterations | train (min) "
             "| final test (min) |",
             "|---|---|---|---|---|---|---|",
             f"| {child.returncode} | {shape} | {wall / 60:.1f} | "
             f"{int(peak_kb.group(1)) / 1e6 if peak_kb else float('nan'):.2f} | "
             f"{done.group(1) if done else '-'} | {float(done.group(2)) / 60 if done else float('nan'):.1f} | "
             f"{float(done.group(3)) / 60 if done else float('nan'):.1f} |"]
    print("\n".join(lines))
    write_section(f"A {flags.megapixels:g}-megapixel photo at x2", lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("final_test", "photo", "_final_test_child"))
    parser.add_argument("--lr_side", type=int, default=1024)
    parser.add_argument("--tiles", default="0,1024,512")
    parser.add_argument("--photo", default=DEFAULT_PHOTO)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--work", default="/tmp/zssr_huge_photos")
    parser.add_argument("--tile", type=int)
    parser.add_argument("--out")
    flags = parser.parse_args()
    if flags.part == "_final_test_child":
        final_test_child(flags.tile, flags.lr_side, flags.photo, flags.out)
    elif flags.part == "final_test":
        final_test_part(flags)
    else:
        photo_part(flags)


if __name__ == "__main__":
    main()
