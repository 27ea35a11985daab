"""The command line: absl flags -> Config -> `app.run`. The only module that imports absl.flags.

Every `Config` field is a flag (`config.FLAG_FIELDS`, generated from the dataclasses, so the two never drift apart;
`--method` picks the method); presets are flagfiles, named by `--preset`:
`zssr --preset=x2_real --noise_std=0.02 --input=img.png --output_dir=out` (the later flag wins; `--flagfile=PATH`
reads a file of your own). Bad input ends with one line on stderr and exit status 1 (2 for bad flags).

`--help`, `--list_presets` and flag errors answer without importing TensorFlow (seconds of start-up); the commands
that run import it with its start-up lines silenced (`import_tensorflow_quietly`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
import textwrap

from absl import app as absl_app
from absl import flags

from zssr_tf import interrupts, presets
from zssr_tf.config import DEFAULTS, FIELD_CHOICES, FIELD_HELP, FLAG_GROUP, FLAG_NAMES, Config, ConfigError, \
    format_value, max_input_megapixels
from zssr_tf.image_io import ImageError, check_header
from zssr_tf.kernels import KernelError

FLAGS = flags.FLAGS

flags.DEFINE_string("input", None, "The low-resolution image to super-resolve, or a folder of them (each "
                    "<name>_gt.* beside an image is its ground truth, <name>_<i>.mat its kernel of scale step i).")
flags.DEFINE_string("output_dir", "results", "Directory that receives the SR image(s), config.json and log.json.")
flags.DEFINE_string("ground_truth", None, "Optional high-resolution image: monitored during training (never "
                    "trained on) and used for the reported PSNR.")
flags.DEFINE_list("kernels", None, "Optional downscaling kernel files (.mat with a variable 'Kernel' or "
                  "'kernel', or .npy), comma separated, one per scale factor; or estimate: estimate them from the "
                  "image (KernelGAN, the same as --estimate_kernels; also for folders).")
flags.DEFINE_integer("scale", None, "zssr estimate-kernel: 2 (the x2 kernel) or 4 (the x2 kernel and the x4 one "
                     "composed from it); default: the largest of --scale_factors.")
flags.DEFINE_string("depth_map", None, "Optional depth map of the image for --method=dgdml (8/16-bit PNG, TIFF or "
                    ".npy; its values as --dgdml_depth_kind says, 0 unknown); in a folder name it <name>_depth.<ext>. "
                    "(--depth is the ZSSR network's number of layers.)")
flags.DEFINE_boolean("overwrite", False, "Whether to redo images done by an earlier run (their record "
                     "<name>_record.json and outputs exist in --output_dir); otherwise they are kept, with their "
                     "numbers in results.csv.")
flags.DEFINE_integer("workers", 0, "Folders: how many images run at once, each in its own process on its own GPU "
                     "(round-robin) or its own share of the CPU cores; 0: one per visible GPU, else 1 (one image "
                     "after another in this process).", lower_bound=0)
flags.DEFINE_enum("backend", "local", ["local", "ray"], "Folders: local (--workers processes on this machine) or "
                  "ray (one Ray task per image on the cluster at --ray_address; pip install 'zssr-tf[ray]'; inputs "
                  "and outputs on a file system every node shares).")
flags.DEFINE_string("ray_address", "local", "--backend=ray: auto (the cluster this machine belongs to, started with "
                    "ray start), HOST:PORT, or local (a new one-machine cluster).")
flags.DEFINE_integer("cpus_per_worker", 0, "Folders: the cores each worker process (or Ray task without a GPU) "
                     "uses; 0: an equal share of this machine's cores (local), 1 (Ray).", lower_bound=0)
flags.DEFINE_string("images_per_step", "1", "Folders: how many images' ZSSR networks train together in one step "
                    "of this process (each as if alone: its own examples, learning rate, quick tests and stop; a "
                    "slot that ends takes the next image), or auto (the measured best for this device, README.md). "
                    "For the paper's network (not with a content loss, a backbone, pixel shuffle or float16); other "
                    "images and methods train one per step.")
flags.DEFINE_boolean("tensorboard", False, "Whether to write TensorBoard summaries (loss, learning rate, "
                     "reconstruction error, true PSNR with ground truth, each stage's output) to "
                     "<output_dir>/tb/<image name>; view them with tensorboard --logdir=<output_dir>/tb.")
flags.DEFINE_string("output", None, "zssr pretrain: the .keras file the pretrained network is saved as (its "
                    "resumable checkpoints go to <output without .keras>_checkpoint/).")
flags.DEFINE_string("preset", None, "A preset by name (zssr --list_presets: quick, x2_real, ...): the same as "
                    "--flagfile=<that preset's file> at this place among the flags, so later flags (and presets) "
                    "override it. Read on the command line only.")
flags.DEFINE_boolean("list_presets", False, "List the presets (--preset=NAME) with what each is for, and exit.")
flags.DEFINE_boolean("export_model", False, "Whether to save each image's trained networks and optimizers (of the "
                     "last stage) as the checkpoint folder <output_dir>/<image name>_<method>_checkpoint, which "
                     "--init_weights can start other runs from.")


def _define_config_flags() -> None:
    for name in FLAG_NAMES:
        default, help_text = DEFAULTS[name], FIELD_HELP[name]
        if isinstance(default, bool):
            flags.DEFINE_boolean(name, default, help_text)
        elif FIELD_CHOICES[name]:
            flags.DEFINE_enum(name, default, FIELD_CHOICES[name], help_text)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, help_text)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, help_text)
        else:  # strings and the comma-separated lists, parsed by the config
            flags.DEFINE_string(name, format_value(default), help_text)


_define_config_flags()
_ALIASES = {"arch": "pretrain_arch"}
for _alias, _target in _ALIASES.items():
    flags.DEFINE_alias(_alias, _target)


def config_from_flags() -> Config:
    """The Config described by the parsed flags."""
    return Config.from_dict({name: FLAGS[name].value for name in FLAG_NAMES})


def _one_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _fail(message: str, status: int = 1) -> None:
    print(f"zssr: error: {message}", file=sys.stderr)
    sys.exit(status)


# absl's help flags in every spelling absl accepts (-h, -help, --help=true, ...): ours answer them, with exit 0.
_HELP_FLAG = re.compile(r"--?(h|\?|help|helpshort|helpfull)(=.*)?")


def _flag_args(argv: list[str]) -> list[str]:
    """The arguments absl parses as flags: those before a `--`."""
    return argv[1:argv.index("--")] if "--" in argv else argv[1:]


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with a one-line error instead of absl's usage dump; `--help` is ours (grouped, exit 0) and
    `--preset=NAME` becomes `--flagfile=<its file>` in place."""
    helps = [match.group(1) for match in map(_HELP_FLAG.fullmatch, _flag_args(argv)) if match]
    if "helpfull" in helps:  # every flag of every loaded module: ours and absl's, in absl's text
        print(USAGE + "\n" + FLAGS.get_help())
        sys.exit(0)
    if helps:
        print(grouped_help())
        sys.exit(0)
    try:
        argv = _expand_presets(argv)
    except ValueError as e:
        _fail(str(e), 2)
    try:
        remaining = FLAGS(argv)
    except flags.Error as e:
        _fail(str(e).splitlines()[0].removeprefix("ERROR::").strip(), 2)  # absl's prefix on flagfile errors
    if FLAGS.preset is not None:  # only a flagfile can have set it: presets are expanded before parsing
        _fail("--preset inside a flagfile is not read: name the preset's file with --flagfile=PATH there", 2)
    return remaining


def _expand_presets(argv: list[str]) -> list[str]:
    """`--preset=NAME` (or `--preset NAME`, `-preset=NAME`) -> `--flagfile=<path of preset NAME>`, in place; the
    arguments after a `--` are not flags and stay as they are."""
    flag_count = len(_flag_args(argv))
    expanded, args = argv[:1], iter(argv[1:1 + flag_count])
    for arg in args:
        if arg in ("--preset", "-preset"):
            arg = f"--preset={next(args, '')}"
        name = re.fullmatch(r"--?preset=(.*)", arg)
        expanded.append(f"--flagfile={presets.preset_path(name.group(1))}" if name else arg)
    return expanded + argv[1 + flag_count:]


def main(argv: list[str]) -> None:
    """The command, ended by Ctrl-C or SIGTERM with one line and exit status 130 or 143 (128 + the signal)."""
    try:
        _main(argv)
    except KeyboardInterrupt as e:
        print(f"zssr: {e or 'interrupted'}", file=sys.stderr)
        sys.exit(128 + getattr(e, "signum", signal.SIGINT))


def _main(argv: list[str]) -> None:
    if FLAGS.list_presets:
        _list_presets()
        return
    commands = {"pretrain": _pretrain, "estimate-kernel": _estimate_kernel}
    if len(argv) == 2 and argv[1] in commands:
        commands[argv[1]]()
        return
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are written --name=value; the commands are "
              f"{' and '.join(commands)})", 2)
    if not FLAGS.input:
        _fail("--input is required: the image to super-resolve", 2)
    if FLAGS.scale is not None:
        _fail("--scale is for zssr estimate-kernel; a run takes --scale_factors", 2)
    folder = os.path.isdir(FLAGS.input)
    estimate = FLAGS.kernels == ["estimate"]
    scale_out = [name for name in ("workers", "backend", "cpus_per_worker", "images_per_step")
                 if FLAGS[name].present]
    if scale_out and not folder:
        _fail(f"--{scale_out[0]} is for folders (--input=DIR); one image runs in this process", 2)
    if FLAGS.backend == "ray" and FLAGS["workers"].present:
        _fail("--workers is for --backend=local; Ray runs as many images at once as the cluster has GPUs (or "
              "--cpus_per_worker shares of its cores)", 2)
    images_per_step = FLAGS.images_per_step
    if images_per_step != "auto" and not re.fullmatch("0*[1-9][0-9]*", images_per_step):
        _fail(f"--images_per_step: {images_per_step!r} is not a number >= 1 or auto", 2)
    if images_per_step not in ("1", "auto") and (FLAGS.backend == "ray" or FLAGS.workers > 1):
        _fail("--images_per_step: several images per step run in one process (not with --workers > 1 or "
              "--backend=ray)", 2)
    if folder and (FLAGS.ground_truth or (FLAGS.kernels and not estimate) or FLAGS.depth_map):
        _fail("--ground_truth, --kernels and --depth_map are for one image; in a folder name them <name>_gt.png, "
              "<name>_<i>.mat and <name>_depth.png", 2)
    try:
        conf = config_from_flags()
        if estimate:
            conf = conf.replace(estimate_kernels=True)
    except ValueError as e:  # ConfigError among them; before TensorFlow's seconds of start-up
        _fail(_one_line(e))
    if not folder:
        try:  # a missing, unreadable or too large input: one line before TensorFlow's seconds of start-up
            check_header(FLAGS.input, *max_input_megapixels(conf))
        except ImageError as e:
            _fail(_one_line(e))
    app = _import_app()
    try:
        extras = {"tensorboard_dir": os.path.join(FLAGS.output_dir, "tb") if FLAGS.tensorboard else None,
                  "export_model": FLAGS.export_model}
        if folder:
            results = app.run_folder(conf, FLAGS.input, FLAGS.output_dir, FLAGS.overwrite, **extras,
                                     workers=FLAGS.workers, backend=FLAGS.backend, ray_address=FLAGS.ray_address,
                                     cpus_per_worker=FLAGS.cpus_per_worker, images_per_step=images_per_step)
        else:
            results = [app.run(conf, FLAGS.input, FLAGS.output_dir, FLAGS.ground_truth,
                               None if estimate else FLAGS.kernels,
                               FLAGS.overwrite, depth=FLAGS.depth_map or None, **extras)]
    except (ConfigError, ImageError, KernelError, ValueError) as e:
        _fail(_one_line(e))
    except MemoryError:
        _fail("out of memory: the image is too large for this machine")
    for result in results:
        print(_summary(result))
    failed = [r.name for r in results if r.status.startswith("error")]
    if failed:
        _fail(f"{len(failed)} of {len(results)} images failed ({', '.join(failed)}); see results.csv")


def _list_presets() -> None:
    try:
        names = presets.preset_names()
    except ValueError as e:
        _fail(_one_line(e))
    print(f"Presets (zssr --preset=NAME; the files are in {presets.preset_dir()}):")
    for name in names:
        print(f"  {name}")
        print(_indented(presets.preset_summary(name)))


# Start-up lines TensorFlow's C++ code writes to stderr while it loads, whatever TF_CPP_MIN_LOG_LEVEL says: they
# come before absl::InitializeLog, which is what applies the level (e.g. "cudart_stub.cc:31] Could not find cuda
# drivers" on every machine without a GPU, cuDNN/cuBLAS "Unable to register factory" on many with one).
_STARTUP_LOG_LINE = re.compile(r"(WARNING: All log messages before absl::InitializeLog\(\)"
                               r"|[IWE]\d{4} [\d:. ]+\S+\.cc:\d+\]"  # absl C++: I0000 00:00:17.9 4185 file.cc:31]
                               r"|\d{4}-\d\d-\d\d [\d:.]+: [IWE] \S+\.cc:\d+\]"  # TensorFlow's older format
                               r"|To enable the following instructions:)")


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and finds its devices with their C++ start-up lines dropped (noise for a user), unless
    TF_CPP_MIN_LOG_LEVEL=0 asks for everything. Anything else written meanwhile (Python warnings) still reaches
    stderr, and if the import fails, everything it wrote does. (A crash of the process itself during the import
    loses those lines: TF_CPP_MIN_LOG_LEVEL=0 shows them.) Later C++ messages follow TF_CPP_MIN_LOG_LEVEL, 2 (errors
    only) unless set."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
        return
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    failed = True
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)  # the C++ code writes to file descriptor 2, not to sys.stderr
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # loads CUDA, which logs too
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if failed or not _STARTUP_LOG_LINE.match(line):
                    sys.stderr.write(line)


def _import_app():
    """`zssr_tf.app`, imported (with TensorFlow) only when a command runs."""
    import_tensorflow_quietly()
    from zssr_tf import app

    return app


def _pretrain() -> None:
    """`zssr pretrain --input=DIR --output=NET.keras [--arch=vdsr|zssr]`."""
    if not FLAGS.input or not FLAGS.output:
        _fail("zssr pretrain needs --input=DIR (HR training images) and --output=NET.keras", 2)
    values = {name: FLAGS[name].value for name in FLAG_NAMES}
    if not FLAGS["back_projection_iters"].present:  # unused by pretraining: one per scale factor, whatever they are
        values["back_projection_iters"] = ",".join("0" for _ in FLAGS.scale_factors.split(","))
    try:
        conf = Config.from_dict(values)
    except ConfigError as e:
        _fail(_one_line(e))
    import_tensorflow_quietly()
    from zssr_tf import pretrain  # TensorFlow is imported only for the command that runs

    try:
        result = pretrain.pretrain(conf, FLAGS.input, FLAGS.output)
    except (ConfigError, ImageError, ValueError) as e:
        _fail(_one_line(e))
    resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
    loss = f", last L1 loss {result.final_loss:.5f}" if result.final_loss is not None else ""
    print(f"pretrain: wrote {result.output} after {result.steps} steps{resumed}{loss}")


def _estimate_kernel() -> None:
    """`zssr estimate-kernel --input=IMG_OR_DIR --output_dir=DIR [--scale=2|4]`."""
    if not FLAGS.input:
        _fail("zssr estimate-kernel needs --input=IMG (or a folder of images)", 2)
    values = {name: FLAGS[name].value for name in FLAG_NAMES}
    if FLAGS.scale is not None:
        if FLAGS.scale not in (2, 4):
            _fail(f"--scale={FLAGS.scale}: KernelGAN estimates the x2 kernel and composes x4 from it; other scales "
                  "are not supported", 2)
        values["scale_factors"] = str(FLAGS.scale)
    # Unused here (a preset's may be for other stages): one per scale factor.
    values["back_projection_iters"] = ",".join("0" for _ in str(values["scale_factors"]).split(","))
    folder = os.path.isdir(FLAGS.input)
    try:
        conf = Config.from_dict({**values, "estimate_kernels": True})
    except ConfigError as e:
        _fail(_one_line(e))
    app = _import_app()
    try:
        paths = [path for path, _, _ in app.find_inputs(FLAGS.input, 1)] if folder else [FLAGS.input]
    except (ImageError, ValueError) as e:
        _fail(_one_line(e))
    tensorboard_dir = os.path.join(FLAGS.output_dir, "tb") if FLAGS.tensorboard else None
    failed = []
    for path in paths:
        try:
            result = app.estimate_kernel(conf, path, FLAGS.output_dir, tensorboard_dir, FLAGS.export_model)
        except (ImageError, ValueError) as e:
            message = _one_line(e)
            if not folder:
                _fail(message)
            print(f"zssr: error: {path}: {message}", file=sys.stderr)  # the folder goes on
            failed.append(path)
            continue
        saved = f"; networks saved as {result.model}" if result.model else ""
        print(f"{result.name}: wrote {', '.join(result.kernel_files)} in {result.seconds:.1f} s "
              f"({result.iterations} iterations){saved}")
    if failed:
        _fail(f"{len(failed)} of {len(paths)} images failed ({', '.join(map(os.path.basename, failed))})")


def _summary(result) -> str:
    """The line printed for one image's `app.RunResult`."""
    if result.status != "done":
        return f"{result.name}: {result.status}"
    if result.earlier:
        return f"{result.name}: done by an earlier run, kept ({', '.join(result.outputs)}; --overwrite to redo)"
    text = f"{result.name}: wrote {', '.join(result.outputs)} in {result.seconds:.1f} s " \
           f"({'+'.join(map(str, result.iterations))} iterations)"
    if result.kernel_files:
        text += f", kernels estimated in {result.kernel_seconds:.1f} s ({', '.join(result.kernel_files)})"
    if result.psnr_y is not None:
        text += f", Y-PSNR {result.psnr_y:.3f} dB vs ground truth ({result.psnr_y_shaved:.3f} with border shave)"
    if result.model is not None:
        text += f"; network saved as {result.model}"
    return text


USAGE = """Zero-shot super-resolution (ZSSR, ZSRGAN, DGDML-SR) of an image or a folder of images.

  zssr --input=IMG_OR_DIR --output_dir=DIR [--preset=NAME] [--method=zssr|zsrgan|dgdml] [--any_flag=VALUE]
       [--ground_truth=HR] [--kernels=K.mat] [--depth_map=DEPTH.png] ... [--tensorboard] [--export_model]
       [--init_weights=CHECKPOINT_DIR|NET.keras]
  zssr estimate-kernel --input=IMG_OR_DIR --output_dir=DIR [--scale=2|4]   (KernelGAN: <name>_kernel_x2.mat;
       zssr --kernels=estimate ... estimates and super-resolves in one run)
  zssr pretrain --input=DIR_OF_HR_IMAGES --output=NET.keras [--arch=vdsr|zssr] [--scale_factors=2]
       [--pretrain_steps=N]   (then --backbone=NET.keras for vdsr, --init_weights=NET.keras for zssr)
  zssr --list_presets     the presets, with what each is for
  zssr --help             this: every flag of ours, in sections (--helpfull: absl's own flags too)
"""


# The sections of `zssr --help`: the command's own flags, then the config fields not named by their group.
HELP_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Input and output", ("input", "output_dir", "ground_truth", "kernels", "depth_map", "overwrite", "preset",
                          "list_presets", "tensorboard", "export_model", "name", "progress", "display_every",
                          "max_output_megapixels")),
    ("Folders at scale, and runs that resume", ("workers", "backend", "ray_address", "cpus_per_worker",
                                                 "images_per_step", "checkpoint_every")),
    ("Method and task", ("method", "scale_factors", "downscale_method", "upscale_method", "downscale_gt_method",
                         "estimate_kernels", "noise_std", "back_projection_iters", "output_flip", "init_weights",
                         "width", "depth", "init_variance", "learn_residual", "upsampler", "backbone",
                         "perceptual_weight", "perceptual_layers", "perceptual_every", "vgg_weights")),
    ("Training (ZSSR; ZSRGAN and DGDML-SR have their own below)", (
        "seed", "max_iters", "min_iters", "learning_rate", "min_learning_rate", "learning_rate_change_ratio",
        "learning_rate_policy_check_every", "learning_rate_slope_range", "policy", "run_test", "run_test_every",
        "crop_size", "init_net_for_each_sf", "divergence_retries")),
    ("Augmentation (how HR fathers are cut from the image)", tuple(
        name for name in FLAG_NAMES if FLAG_GROUP[name] == "zssr" and name.startswith("augment_"))),
    ("Speed and memory", ("precision", "pipeline", "jit_compile", "tile_size", "final_test_tile",
                          "quick_test_megapixels")),
    ("ZSRGAN (--method=zsrgan)", tuple(name for name in FLAG_NAMES if FLAG_GROUP[name] == "zsrgan")),
    ("DGDML-SR (--method=dgdml)", tuple(name for name in FLAG_NAMES if FLAG_GROUP[name] == "dgdml")),
    ("Kernel estimation (zssr estimate-kernel, --kernels=estimate)", (
        "scale", *(name for name in FLAG_NAMES if FLAG_GROUP[name] == "kernelgan"))),
    ("zssr pretrain", ("output", *(name for name in FLAG_NAMES if FLAG_GROUP[name] == "pretrain"))),
)


def _flag_help(name: str) -> str:
    flag = FLAGS[name]
    if isinstance(flag, flags.BooleanFlag):
        head = f"  --[no]{name} (default: {'true' if flag.default else 'false'})"
    else:
        default = "" if flag.default is None else "=" + flag.default_as_str.strip("'")
        choices = f" (one of: {', '.join(flag.parser.enum_values)})" if isinstance(flag, flags.EnumFlag) else ""
        head = f"  --{name}{default}{choices}"
    aliases = [alias for alias, target in _ALIASES.items() if target == name]
    if aliases:
        head += f" (also --{', --'.join(aliases)})"
    return head + "\n" + _indented(re.sub(r"^<[^>]*>: ", "", flag.help))  # absl's "<a|b>: " of enums


def _indented(text: str) -> str:
    """`text` wrapped to the terminal (at most 100 columns), indented under its heading line."""
    width = min(shutil.get_terminal_size().columns, 100)
    return textwrap.fill(text, width, initial_indent=" " * 6, subsequent_indent=" " * 6, break_long_words=False,
                         break_on_hyphens=False)


def grouped_help() -> str:
    """`zssr --help`: the usage, then every flag of ours in sections, each with its default and help."""
    parts = [USAGE]
    for title, names in HELP_SECTIONS:
        parts.append(f"{title}:\n" + "\n".join(_flag_help(name) for name in names) + "\n")
    parts.append("--flagfile=PATH reads flags from a file (a preset of your own). zssr --helpfull also lists absl's "
                 "own flags (--verbosity, --logtostderr, ...).")
    return "\n".join(parts)


def run() -> None:
    """Console-script entry point (`zssr`, `python -m zssr_tf`)."""
    sys.modules["__main__"].__doc__ = USAGE  # what absl's own help (e.g. --helpxml) shows
    interrupts.install()
    try:
        try:
            absl_app.run(main, flags_parser=parse_flags)
        finally:
            sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
    except BrokenPipeError:  # `zssr --help | head`: the reader left; nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would fail again
        sys.exit(1)
    except SystemExit as e:
        if e.code in (128 + signal.SIGINT, 128 + signal.SIGTERM):  # interrupted mid-run: leave now, without
            sys.stderr.flush()  # tearing down TensorFlow's threads (the host pipeline's are still working)
            os._exit(e.code)
        raise
