"""benchmarks/gpu_window.py --smoke: every step of the GPU window runs on tiny settings on the CPU, so the script a
GPU window depends on cannot rot; a second run skips what its cache has."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ("reference", "reference_jit", "images_per_step_grouped", "images_per_step_per_image", "pixel_shuffle",
         "zsrgan", "dgdml_step", "dgdml_art", "kernelgan")


@pytest.mark.slow
def test_smoke_runs_every_step_then_resumes_from_its_cache(tmp_path):
    def window(*flags):
        return subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_window.py"), "--smoke",
                               f"--out={tmp_path}", *flags], capture_output=True, text=True, timeout=1500)

    first = window("--budget_s=3000")  # a loaded 2-core machine must not end steps as "budget spent"
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for step in STEPS:
        record = json.load(open(tmp_path / "cache" / f"{step}.json"))
        assert record["returncode"] == 0 and record["device"], step
    reference = json.load(open(tmp_path / "cache" / "reference.json"))["result"]
    assert {t["precision"] for t in reference["training"]} >= {"float32"} and reference["end_to_end"]["psnr_y"] > 20
    assert (tmp_path / "zsrgan" / "cache").is_dir() and (tmp_path / "kernelgan" / "table.md").exists()
    assert os.listdir(tmp_path / "images_per_step")  # per-N results kept beside the window, for the next one

    again = window("--budget_s=60")
    assert again.returncode == 0 and ": done in" not in again.stdout
    table = (tmp_path / "window.md").read_text()
    assert table.count("| cached |") == len(STEPS)
