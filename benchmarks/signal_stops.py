"""Ctrl-C and SIGTERM, many times: does every run end with its one line and 130 / 143, and how soon?

    python benchmarks/signal_stops.py [--runs=10] [--out=benchmarks/results/signal_stops.md]

Each run starts `zssr` on a 40x44 image (a 16 x 4 network, many iterations), waits for the log line of iteration 10,
sends the signal and measures the time until the process has exited. A crash (a negative status) fails the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.conftest import smooth_image  # noqa: E402
from zssr_tf.image_io import write_image  # noqa: E402


def one_run(work: str, signum: int) -> tuple[int, float, str]:
    args = [f"--input={work}/in.png", f"--output_dir={work}/out", "--width=16", "--depth=4", "--max_iters=100000",
            "--min_iters=100000", "--noprogress", "--display_every=10"]
    process = subprocess.Popen([sys.executable, "-m", "zssr_tf", *args], stderr=subprocess.PIPE, text=True,
                               cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    for line in process.stderr:
        if "iteration 10:" in line:
            break
    sent = time.perf_counter()
    process.send_signal(signum)
    rest = process.stderr.read()
    status = process.wait()
    lines = rest.strip().splitlines()
    return status, time.perf_counter() - sent, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="runs per signal")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "signal_stops.md"))
    flags = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        write_image(os.path.join(work, "in.png"), smooth_image(40, 44))
        for name, expected in (("SIGINT", 130), ("SIGTERM", 143)):
            results = [one_run(work, getattr(signal, name)) for _ in range(flags.runs)]
            clean = sum(status == expected and line.startswith("zssr: interrupted at iteration ")
                        for status, _, line in results)
            seconds = sorted(s for _, s, _ in results)
            statuses = sorted({status for status, _, _ in results})
            rows.append(f"| {name} | {flags.runs} | {clean} | {', '.join(map(str, statuses))} | "
                        f"{seconds[0]:.2f} / {seconds[len(seconds) // 2]:.2f} / {seconds[-1]:.2f} | {results[-1][2]} |")
            print(rows[-1], flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    text = (f"# Ctrl-C and SIGTERM during training\n\nCommand: `python benchmarks/signal_stops.py --runs={flags.runs}`"
            f" on commit {commit.strip()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"nothing else running. Seconds: from the signal to the process's exit.\n\n"
            "| signal | runs | clean (status and line) | exit statuses | seconds min / median / max | last line |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    with open(flags.out, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
