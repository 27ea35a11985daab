import csv
import glob
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import scipy.io
from absl import flags

from tests.conftest import smooth_image
from zssr_tf import Config, cli, presets
from zssr_tf.image_io import read_image, write_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--width=8", "--depth=3", "--crop_size=24", "--max_iters=20", "--min_iters=5", "--run_test_every=5",
        "--learning_rate_slope_range=20", "--back_projection_iters=1", "--display_every=10"]


def zssr_subprocess(*args):
    """The real entry point, in a fresh process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "zssr_tf", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)


def zssr(capsys, *args):
    """The command in this process (fast): returns (exit status, stdout, stderr)."""
    flags.FLAGS.unparse_flags()
    status = 0
    try:
        cli.main(cli.parse_flags(["zssr", *args]))
    except SystemExit as e:
        status = e.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_only_the_command_line_imports_absl_flags():
    for path in glob.glob(os.path.join(ROOT, "zssr_tf", "**", "*.py"), recursive=True):
        source = open(path, encoding="utf-8").read()
        imports_flags = "from absl import flags" in source or "absl.flags" in source
        assert imports_flags == path.endswith(os.path.join("zssr_tf", "cli.py")), path


def test_entry_point_writes_the_named_output_config_and_log(tmp_path):
    write_image(tmp_path / "in.png", smooth_image(20, 22))
    write_image(tmp_path / "in_gt.png", smooth_image(40, 44))
    result = zssr_subprocess(f"--input={tmp_path / 'in.png'}", f"--ground_truth={tmp_path / 'in_gt.png'}",
                             f"--output_dir={tmp_path / 'out'}", "--seed=3", *TINY)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "in_comparison.png", "in_log.json",
                                                    "in_record.json", "in_training.png", "in_zssr_X2.00X2.00.png"]
    # With ground truth: the training curves and labelled bicubic | ZSSR | ground truth crops (tests/test_pictures.py).
    assert read_image(tmp_path / "out" / "in_comparison.png").pixels.shape[1] > 3 * 160
    assert read_image(tmp_path / "out" / "in_training.png").pixels.shape[1] > 500
    assert read_image(tmp_path / "out" / "in_zssr_X2.00X2.00.png").pixels.shape == (40, 44, 3)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["method"] == "zssr" and config["run"]["seed"] == 3 and config["zssr"]["width"] == 8
    assert config["task"]["scale_factors"] == [[2.0, 2.0]]
    log = json.loads((tmp_path / "out" / "in_log.json").read_text())
    assert log["stages"][0]["iterations"] == 20 and log["psnr_y"] > 20
    assert "Y-PSNR" in result.stdout


def test_entry_point_bad_flag_is_one_line(tmp_path):
    result = zssr_subprocess("--input=examples/astronaut.png", "--no_such_flag=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("zssr: error:")


def test_missing_flagfile_is_one_line(tmp_path, capsys):
    status, _, err = zssr(capsys, "--input=examples/astronaut.png", f"--flagfile={tmp_path / 'nope.cfg'}")
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("zssr: error: Unable to open flagfile") and "nope.cfg" in err


def test_preset_by_name_with_a_later_flag(tmp_path, capsys):
    write_image(tmp_path / "in.png", smooth_image(16, 16, channels=1))
    status, _, err = zssr(capsys, f"--input={tmp_path / 'in.png'}", f"--output_dir={tmp_path / 'out'}",
                          "--preset", "x2_real", *TINY, "--noise_std=0.02")
    assert status == 0, err
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    z = config["zssr"]
    assert z["noise_std"] == 0.02 and z["output_flip"] is False and z["augment_min_scale"] == 0.75
    # A flag before the preset is overridden by it, as with --flagfile.
    flags.FLAGS.unparse_flags()
    cli.parse_flags(["zssr", "--noise_std=0.5", "--preset=x2_real.cfg"])
    assert cli.config_from_flags() == Config.from_preset("x2_real") == Config.from_flagfile("flags/x2_real.cfg")


def test_presets_are_listed_and_found_by_name_only(tmp_path, capsys):
    names = presets.preset_names()
    assert {"quick", "x2_real", "x2_one_jump_ideal", "zsrgan_quick", "dgdml_x2"} <= set(names)
    assert names == sorted(os.path.splitext(n)[0] for n in os.listdir(os.path.join(ROOT, "flags")))
    status, out, _ = zssr(capsys, "--list_presets")
    assert status == 0 and all(f"\n  {name}\n" in out for name in names)
    assert "small, fast x2 run" in out  # what each is for, from its comment
    for bad in ("nope", "../flags/quick", "flags/quick.cfg"):
        status, _, err = zssr(capsys, "--input=examples/astronaut.png", f"--preset={bad}")
        assert status == 2 and err.count("\n") == 1 and "no preset named" in err and "x2_real" in err
    (tmp_path / "mine.cfg").write_text("--preset=quick\n")  # --preset is read on the command line only
    status, _, err = zssr(capsys, "--input=examples/astronaut.png", f"--flagfile={tmp_path / 'mine.cfg'}")
    assert status == 2 and err.count("\n") == 1 and "--preset inside a flagfile" in err


def test_help_lists_every_flag_of_ours_in_sections_and_exits_0(capsys):
    ours = [flag.name for flag in flags.FLAGS.flags_by_module_dict()["zssr_tf.cli"]]
    assert len(ours) == len(set(ours)) > 100
    listed = [name for _, names in cli.HELP_SECTIONS for name in names]
    assert sorted(listed) == sorted(set(ours) - set(cli._ALIASES))  # each flag once (an alias beside its flag)
    for arg in ("--help", "-h", "--helpshort", "-help", "--help=true", "-?"):
        status, out, _ = zssr(capsys, "--input=x.png", arg)
        assert status == 0, arg
        lines = out.splitlines()
        assert lines[0].startswith("Zero-shot super-resolution")
        titles = [line[:-1] for line in lines if line.endswith(":") and not line.startswith(" ")]
        assert titles == [title for title, _ in cli.HELP_SECTIONS]
        assert all(f"  --{name}" in out or f"  --[no]{name}" in out for name in listed)
    assert "  --max_iters=3000\n" in out and "  --precision=auto (one of: auto, float32" in out
    for arg in ("--helpfull", "-helpfull"):
        status, out, _ = zssr(capsys, arg)  # absl's own flags too
        assert status == 0 and "--max_iters" in out and "--verbosity" in out
    # After `--` nothing is a flag: no help, no preset.
    status, _, err = zssr(capsys, "--input=x.png", "--", "--help")
    assert status == 2 and "unexpected arguments: --help" in err
    assert cli._expand_presets(["zssr", "-preset=quick", "--", "--preset=nope"]) == [
        "zssr", f"--flagfile={presets.preset_path('quick')}", "--", "--preset=nope"]


FAKE_TENSORFLOW = """
import os, sys
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n"
            b"I0000 00:00:1796158643.517903    4185 cudart_stub.cc:31] Could not find cuda drivers\\n")
print("a Python warning", file=sys.stderr)
if os.environ.get("FAIL"):
    raise ImportError("libcudart.so.12: cannot open shared object file")

class config:
    loaded = False

    @classmethod
    def list_physical_devices(cls):
        if not cls.loaded:  # CUDA logs when it loads
            os.write(2, b"E0000 00:00:1796158650.563887    4185 cuda_platform.cc:52] failed call to cuInit\\n")
        cls.loaded = True
        return []
"""


def test_tensorflow_start_up_lines_are_dropped_unless_the_import_fails_or_level_0_asks(tmp_path):
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW)
    code = ("from zssr_tf import cli; cli.import_tensorflow_quietly(); import tensorflow as tf; "
            "tf.config.list_physical_devices(); print('imported')")  # what the app's import does next
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), ROOT])

    def stderr_of(**extra):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                                env={**env, **extra}, timeout=60)
        return result.returncode, result.stdout, result.stderr

    status, out, err = stderr_of()
    assert status == 0 and out == "imported\n" and err == "a Python warning\n"  # the rest was start-up noise
    status, out, err = stderr_of(TF_CPP_MIN_LOG_LEVEL="0")  # everything
    assert status == 0 and "cudart_stub.cc" in err and "cuInit" in err and "InitializeLog" in err
    status, out, err = stderr_of(FAIL="1")  # a failing import shows all it wrote, then its error
    assert status == 1 and "cudart_stub.cc" in err and "InitializeLog" in err and "libcudart.so.12" in err


def test_a_closed_pipe_ends_quietly():
    """`zssr --help | head -1`: the reader goes away; no traceback, no 'Exception ignored'."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to the pipe fails at once
    result = subprocess.run([sys.executable, "-m", "zssr_tf", "--help"], stdout=write_end, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, timeout=60)
    os.close(write_end)
    assert result.returncode == 1 and result.stderr == ""


def test_help_presets_and_bad_values_need_no_tensorflow_and_a_run_prints_no_start_up_lines(tmp_path):
    # --help, --list_presets and errors in flag values answer without TensorFlow's seconds of start-up.
    check = ("import atexit, sys; atexit.register(lambda: print('tensorflow' in sys.modules, file=sys.stderr)); "
             "from zssr_tf import cli; sys.argv = ['zssr', *sys.argv[1:]]; cli.run()")
    for args, status in ((["--help"], 0), (["--list_presets"], 0), (["--input=x.png", "--max_iters=0"], 1),
                         (["pretrain", "--input=d", "--output=n.keras", "--pretrain_steps=0"], 1),
                         (["estimate-kernel", "--input=x.png", "--kernelgan_max_iters=0"], 1)):
        result = subprocess.run([sys.executable, "-c", check, *args], capture_output=True, text=True, cwd=ROOT,
                                timeout=60)
        assert result.returncode == status and result.stderr.splitlines()[-1] == "False", (args, result.stderr)
    # The default environment: no TF_CPP_MIN_LOG_LEVEL of the user's.
    write_image(tmp_path / "in.png", smooth_image(16, 18))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "zssr_tf", f"--input={tmp_path / 'in.png'}",
                             f"--output_dir={tmp_path / 'out'}", *TINY], capture_output=True, text=True, cwd=ROOT,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert "engine.py" in first and "iteration 0" in first, first  # our first log line comes first
    for start_up in ("absl::InitializeLog", "cudart_stub", "cpu_feature_guard", "cuInit", "cuda_dnn"):
        assert start_up not in result.stderr


def test_folder_run_with_quick_preset_keeps_gray_rgba_and_16_bit(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "gray.png", smooth_image(14, 16, channels=1))
    write_image(folder / "gray_gt.png", smooth_image(28, 32, channels=1))
    rgba = smooth_image(12, 14, channels=4)
    write_image(folder / "rgba.png", rgba)
    write_image(folder / "deep.png", smooth_image(12, 12), bit_depth=16)
    status, out, err = zssr(capsys, f"--input={folder}", f"--output_dir={tmp_path / 'out'}",
                            "--flagfile=flags/quick.cfg", "--max_iters=30")
    assert status == 0, err
    gray = read_image(tmp_path / "out" / "gray_zssr_X2.00X2.00.png")
    assert gray.pixels.shape == (28, 32, 1)
    rgba_out = read_image(tmp_path / "out" / "rgba_zssr_X2.00X2.00.png").pixels
    assert rgba_out.shape == (24, 28, 4)
    assert np.abs(rgba_out[:, :, 3] - cv2.resize(rgba[:, :, 3], (28, 24), interpolation=cv2.INTER_CUBIC)).mean() < 0.02
    deep = read_image(tmp_path / "out" / "deep_zssr_X2.00X2.00.png")
    assert deep.bit_depth == 16 and deep.pixels.shape == (24, 24, 3)
    with open(tmp_path / "out" / "results.csv") as f:
        rows = {row["name"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == ["deep", "gray", "rgba"] and all(r["status"] == "done" for r in rows.values())
    assert float(rows["gray"]["psnr_y"]) > 10 and rows["rgba"]["psnr_y"] == ""

    # A second run keeps what its records say is done (with their numbers); --overwrite redoes it.
    status, out, _ = zssr(capsys, f"--input={folder}", f"--output_dir={tmp_path / 'out'}", *TINY)
    assert status == 0 and out.count("done by an earlier run, kept") == 3
    with open(tmp_path / "out" / "results.csv") as f:
        assert {row["name"]: row for row in csv.DictReader(f)} == rows
    # Outputs without a record (another version's) are kept too, as "skipped".
    os.remove(tmp_path / "out" / "gray_record.json")
    status, out, _ = zssr(capsys, f"--input={folder}", f"--output_dir={tmp_path / 'out'}", *TINY)
    assert status == 0 and out.count("kept") == 2 and "gray: skipped" in out
    status, out, _ = zssr(capsys, f"--input={folder}", f"--output_dir={tmp_path / 'out'}", *TINY, "--overwrite")
    assert status == 0 and "skipped" not in out and "kept" not in out


def test_folder_kernels_are_used_only_when_all_are_there(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png", smooth_image(16, 16))
    write_image(folder / "b.png", smooth_image(16, 16))
    kernel = np.outer(np.hanning(7), np.hanning(7))
    scipy.io.savemat(folder / "a_0.mat", {"Kernel": kernel / kernel.sum()})
    scipy.io.savemat(folder / "b_0.mat", {"Kernel": kernel / kernel.sum()})  # b lacks b_1.mat
    status, _, err = zssr(capsys, f"--input={folder}", f"--output_dir={tmp_path / 'out'}", *TINY,
                          "--scale_factors=1.5,2", "--back_projection_iters=1,1")
    assert status == 0, err
    assert json.loads((tmp_path / "out" / "a_log.json").read_text())["kernels"] == []
    scipy.io.savemat(folder / "a_1.mat", {"kernel": kernel / kernel.sum()})
    status, _, err = zssr(capsys, f"--input={folder}", f"--output_dir={tmp_path / 'out'}", *TINY,
                          "--scale_factors=1.5,2", "--back_projection_iters=1,1", "--overwrite")
    assert status == 0, err
    assert len(json.loads((tmp_path / "out" / "a_log.json").read_text())["kernels"]) == 2
    assert json.loads((tmp_path / "out" / "b_log.json").read_text())["kernels"] == []


def make_bad_files(tmp_path):
    """The files of BAD_INPUTS."""
    write_image(tmp_path / "ok.png", smooth_image(16, 16))
    write_image(tmp_path / "tiny.png", smooth_image(3, 3))
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:60])
    (tmp_path / "no_images").mkdir()
    (tmp_path / "a_file").write_text("x")
    scipy.io.savemat(tmp_path / "nokernel.mat", {"something": np.ones((3, 3))})
    scipy.io.savemat(tmp_path / "nan.mat", {"Kernel": np.full((3, 3), np.nan)})
    scipy.io.savemat(tmp_path / "zero.mat", {"Kernel": np.zeros((3, 3))})
    np.save(tmp_path / "rank3.npy", np.ones((3, 3, 3)))


OK = "--input={tmp}/ok.png"
# (case, arguments with {tmp} for the folder of make_bad_files, expected exit status, expected text)
BAD_INPUTS = [
    ("input file missing", ["--input={tmp}/missing.png"], 1, "no such image file"),
    ("input file empty (0 bytes)", ["--input={tmp}/empty.png"], 1, "empty"),
    ("input file is text named .png", ["--input={tmp}/text.png"], 1, "not a readable image"),
    ("input PNG cut after 60 bytes", ["--input={tmp}/cut.png"], 1, "not a readable image"),
    ("input folder without images", ["--input={tmp}/no_images"], 1, "no images"),
    ("input of 3x3 pixels", ["--input={tmp}/tiny.png"], 1, "too small"),
    ("no --input", [], 2, "--input is required"),
    ("output over --max_output_megapixels", [OK, "--max_output_megapixels=0.001"], 1, "too large"),
    ("scale factor 0.5", [OK, "--scale_factors=0.5"], 1, "must upscale"),
    ("scale factor 1", [OK, "--scale_factors=1"], 1, "must upscale"),
    ("scale factor 'two'", [OK, "--scale_factors=two"], 1, "not a number"),
    ("back-projection iterations for 2 stages of 1", [OK, "--back_projection_iters=1,2"], 1, "one per scale factor"),
    ("--max_iters=many", [OK, "--max_iters=many"], 2, "max_iters"),
    ("unknown flag", [OK, "--no_such_flag=1"], 2, "no_such_flag"),
    ("stray argument", [OK, "stray"], 2, "unexpected arguments"),
    ("kernel file missing", [OK, "--kernels={tmp}/missing.mat"], 1, "no such file"),
    ("kernel .mat without a Kernel variable", [OK, "--kernels={tmp}/nokernel.mat"], 1, "no variable 'Kernel'"),
    ("kernel of NaNs", [OK, "--kernels={tmp}/nan.mat"], 1, "finite"),
    ("kernel of zeros", [OK, "--kernels={tmp}/zero.mat"], 1, "sum"),
    ("kernel .npy of rank 3", [OK, "--kernels={tmp}/rank3.npy"], 1, "2-D"),
    ("2 kernels for 1 scale factor", [OK, "--kernels={tmp}/zero.mat,{tmp}/zero.mat"], 1, "2 kernels for 1 scale"),
    ("output folder inside a file", [OK, "--output_dir={tmp}/a_file/out"], 1, "cannot create output directory"),
]


@pytest.mark.parametrize("args, status, message", [
    pytest.param(args, status, message, id=case, marks=pytest.mark.fault(
        case, f"exit {status}, one line with '{message}', nothing written"))
    for case, args, status, message in BAD_INPUTS])
def test_every_bad_input_gives_one_line_and_no_output(args, status, message, tmp_path, capsys, record_property):
    make_bad_files(tmp_path)
    out_dir = tmp_path / "out"
    args = [arg.format(tmp=tmp_path) for arg in args]
    code, _, err = zssr(capsys, f"--output_dir={out_dir}", *TINY, *args)  # later flags win
    lines = err.strip().splitlines()
    record_property("observed", f"exit {code}: {lines[0].replace(str(tmp_path), 'DIR') if lines else '(nothing)'}"
                    + (f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""))
    assert code == status, (args, err)
    assert len(lines) == 1 and lines[0].startswith("zssr: error:") and message in lines[0], (args, err)
    assert not glob.glob(str(out_dir / "*")), args
