"""DGDML-SR's tables on the data we have; resumable.

Two parts (--part):
  middlebury  NIQE (lower is better) of x2/x4 outputs of the Middlebury scenes (the left view as the LR input, its
              disparity map as depth, --dgdml_depth_kind=disparity), the paper's Table 2 ablation pattern. Rows:
                bicubic   MATLAB-exact bicubic;
                zssr      ZSSR with flags/x2_real.cfg (scale factor set to the table's);
                none      DGDML-SR without depth guidance and without bi-cycle training (ablation None);
                dg        depth-guided patches, no bi-cycle training (ablation DG);
                bcn       bi-cycle training without depth guidance (ablation BCN);
                dg_bcn    DGDML-SR in full (DG+BCN).
              DGDML rows train with the authors' six steps per batch (--dgdml_update=authors); the rows
              none_joint, dg_joint and dg_bcn_joint are the same ablations with one joint update
              (--dgdml_update=joint). Each result also records the critics' Wasserstein estimates over training and
              the output's energy on the Nyquist row and column of its spectrum (a period-2 grid's), to compare
              with bicubic's.
              The paper (NYU x2): bicubic 6.378, ZSSR 5.753, DGDML-SR 4.824; None 5.929, DG 5.809, BCN 5.499.
  set5        Y-PSNR (border = scale shaved) on Set5 x2 of DGDML-SR's SRN trained on paired bicubic patches
              (--dgdml_pairing=bicubic, row dgdml_bicubic) against bicubic and against ZSSR's earlier measured runs
              (x2 one jump, benchmarks/results/set5_x2_one_jump_float32.csv, and Table 1's gradual presets,
              benchmarks/results/paper_tables/cache). The paper: +0.21 dB over ZSSR.

The DGDML rows start from flags/dgdml_x2.cfg or flags/dgdml_x4.cfg; --dgdml_flags (e.g. fewer epochs and narrower
networks where the paper's setting does not fit the machine) and --zssr_flags change them, are recorded with each
result, and are listed under the table. Each (part, row, scale, image) runs in its own process (so its peak memory
is its own) and its result is a JSON file in `<out>/cache/`; a rerun skips results made with the same flags.

  python benchmarks/dgdml_table.py --data_dir=../shared/data --part=middlebury --scales=2 --scenes=art,dolls \
      --rows=bicubic,zssr,none,dg,dg_bcn --dgdml_flags="--dgdml_epochs=5 --dgdml_width=32" \
      --zssr_flags="--max_iters=1000"
  python benchmarks/dgdml_table.py --data_dir=../shared/data --part=set5 --images=bird,butterfly,head,woman
  python benchmarks/dgdml_table.py --data_dir=../shared/data --part=middlebury --tabulate_only
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script from a checkout without installing

MIDDLEBURY_ROWS = ("bicubic", "zssr", "none", "dg", "bcn", "dg_bcn", "none_joint", "dg_joint", "dg_bcn_joint")
SET5_ROWS = ("bicubic", "dgdml_bicubic")
ABLATION = {"none": {"dgdml_depth_guidance": "false", "dgdml_bicycle": "false"},
            "dg": {"dgdml_bicycle": "false"},
            "bcn": {"dgdml_depth_guidance": "false"},
            "dg_bcn": {},
            "dgdml_bicubic": {"dgdml_pairing": "bicubic"}}
for _row in ("none", "dg", "bcn", "dg_bcn"):
    ABLATION[f"{_row}_joint"] = {**ABLATION[_row], "dgdml_update": "joint"}
    ABLATION[_row] = {**ABLATION[_row], "dgdml_update": "authors"}
PAPER_NIQE = {"bicubic": 6.378, "zssr": 5.753, "none": 5.929, "dg": 5.809, "bcn": 5.499, "dg_bcn": 4.824}
PAPER_NIQE |= {f"{row}_joint": niqe for row, niqe in PAPER_NIQE.items()}


def parse_extra(text: str) -> dict[str, str]:
    flags = {}
    for item in text.split():
        name, has_value, value = item.removeprefix("--").partition("=")
        if not has_value:  # --noflag / --flag booleans
            name, value = (name[2:], "false") if name.startswith("no") else (name, "true")
        flags[name] = value
    return flags


def row_flags(row: str, scale: int, dgdml_extra: str, zssr_extra: str, seed: int) -> dict[str, str]:
    """The flags (preset file + overrides) a row's runs are made with; cached results record them."""
    from zssr_tf.config import read_flagfile

    if row == "bicubic":
        return {"scale_factors": str(scale)}
    if row == "zssr":
        flags = {**read_flagfile(os.path.join(ROOT, "flags", "x2_real.cfg")), "scale_factors": str(scale),
                 **parse_extra(zssr_extra)}
    else:
        flags = {**read_flagfile(os.path.join(ROOT, "flags", f"dgdml_x{scale}.cfg")), **ABLATION[row],
                 **parse_extra(dgdml_extra)}
        if row != "dgdml_bicubic":
            flags["dgdml_depth_kind"] = "disparity"
    return {**flags, "seed": str(seed), "progress": "false"}


def inputs(part: str, data_dir: str, name: str, scale: int) -> tuple[str, str | None, str | None]:
    """(LR image, depth map or None, HR ground truth or None)."""
    if part == "middlebury":
        folder = os.path.join(data_dir, "Middlebury")
        return os.path.join(folder, f"{name}1.png"), os.path.join(folder, f"{name}1_true.png"), None
    folder = os.path.join(data_dir, "Set5")
    return (os.path.join(folder, "LR_bicubic", f"X{scale}", f"{name}x{scale}.png"), None,
            os.path.join(folder, "HR", f"{name}.png"))


def run_job(part: str, row: str, name: str, scale: int, data_dir: str, flags: dict[str, str], out: str) -> None:
    """One result, in this process (the driver starts one process per job)."""
    from zssr_tf.config import Config
    from zssr_tf.image_io import read_image, write_image
    from zssr_tf.imresize import imresize
    from zssr_tf.methods import METHODS
    from zssr_tf.metrics import niqe, psnr

    lr_path, depth_path, hr_path = inputs(part, data_dir, name, scale)
    lr = read_image(lr_path).pixels
    start = time.perf_counter()
    result = {"part": part, "row": row, "name": name, "scale": scale, "flags": flags}
    if row == "bicubic":
        sr = np.clip(imresize(lr, scale), 0, 1).astype(np.float32)
    else:
        conf = Config.from_dict({**flags, "name": f"{row}_{name}"})
        guided = row.startswith("dg")
        extra = {"depth": depth_path} if conf.method == "dgdml" and depth_path and guided else {}
        trainer = METHODS[conf.method](lr, conf, **extra)
        sr = trainer.run()
        result["iterations"] = sum(h.iterations for h in trainer.history)
        result["report"] = trainer.report
        h = trainer.history[-1]
        if "wasserstein_hr" in h.scalars:  # the critics' estimates at the logged steps (every display_every)
            result["wasserstein"] = {"steps": h.loss_steps, "hr": h.scalars["wasserstein_hr"],
                                     "lr": h.scalars["wasserstein_lr"]}
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    result["niqe"] = niqe(sr, border=scale)
    result["nyquist_energy"] = nyquist_energy(sr)
    if hr_path is not None:
        hr = read_image(hr_path).pixels[:sr.shape[0], :sr.shape[1]]
        result["psnr"] = psnr(sr, hr, border=scale)
    os.makedirs(os.path.join(out, "outputs"), exist_ok=True)
    write_image(os.path.join(out, "outputs", f"{name}_x{scale}_{row}.png"), sr)
    path = cache_path(out, row, name, scale)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(path + ".tmp", path)  # atomic: an interrupted run never leaves a half-written result


def nyquist_energy(image: np.ndarray) -> float:
    """The share of an image's Y-channel spectral energy (DC left out) on the Nyquist row and column of its 2-D
    DFT: where a period-2 grid (a sub-pixel layer's checkerboard) puts its energy."""
    from zssr_tf.metrics import rgb_to_y, to_8bit_values

    y = rgb_to_y(to_8bit_values(image)) if image.ndim == 3 and image.shape[2] == 3 else image.squeeze() * 255.0
    y = y[:y.shape[0] // 2 * 2, :y.shape[1] // 2 * 2]
    power = np.abs(np.fft.fft2(y - y.mean())) ** 2
    h, w = power.shape
    on_nyquist = power[h // 2, :].sum() + power[:, w // 2].sum() - power[h // 2, w // 2]
    return float(on_nyquist / power.sum())


def cache_path(out: str, row: str, name: str, scale: int) -> str:
    return os.path.join(out, "cache", f"{row}_x{scale}_{name}.json")


def load_cached(out: str, row: str, name: str, scale: int, flags: dict[str, str]) -> dict | None:
    path = cache_path(out, row, name, scale)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        result = json.load(f)
    return result if result["flags"] == flags else None


def zssr_reference(source: str, name: str, scale: int) -> float | None:
    """ZSSR's Y-PSNR (shave = scale) on a Set5 image from earlier measured runs: `one_jump` (flags/
    x2_one_jump_ideal.cfg, float32, benchmarks/results/set5_x2_one_jump_float32.csv) or `table1` (the gradual
    presets of benchmarks/results/paper_tables)."""
    if source == "one_jump":
        path = os.path.join(ROOT, "benchmarks", "results", f"set5_x{scale}_one_jump_float32.csv")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            rows = {row["name"]: float(row["zssr"]) for row in csv.DictReader(f)}
        return rows.get(name)
    path = os.path.join(ROOT, "benchmarks", "results", "paper_tables", "cache", f"1_Set5_x{scale}_{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["zssr_psnr"]


def tabulate(part: str, out: str, names: list[str], scales: list[int], flags_of: dict) -> str:
    metric = "niqe" if part == "middlebury" else "psnr"
    lines = []
    for scale in scales:
        rows = [r for r in flags_of if (r, scale) in flags_of[r]]
        results = {(r, n): load_cached(out, r, n, scale, flags_of[r][r, scale]) for r in rows for n in names}
        header = "| method | images | mean " + ("NIQE" if metric == "niqe" else "Y-PSNR") + " | " + \
            " | ".join(names) + " | s / image | peak RSS GB |"
        if part == "middlebury":
            header += " paper (NYU x2) |"
        lines += [f"### x{scale}", "", header, "|---" * (header.count("|") - 1) + "|"]
        for row in rows:
            done = [results[row, n] for n in names if results[row, n] is not None]
            if not done:
                continue
            cells = [f"{results[row, n][metric]:.3f}" if results[row, n] else "" for n in names]
            line = (f"| {row} | {len(done)} of {len(names)} | {np.mean([r[metric] for r in done]):.3f} | "
                    + " | ".join(cells) + f" | {np.mean([r['seconds'] for r in done]):.0f} | "
                    f"{max(r['peak_rss_gb'] for r in done):.2f} |")
            if part == "middlebury":
                line += f" {PAPER_NIQE[row] if scale == 2 else ''} |"
            lines.append(line)
        if part == "set5":
            for source, label in (("one_jump", "zssr, x2_one_jump_ideal (earlier run)"),
                                  ("table1", "zssr, Table 1 gradual preset (earlier run)")):
                zssr = [zssr_reference(source, n, scale) for n in names]
                if all(z is not None for z in zssr):
                    lines.append(f"| {label} | {len(names)} of {len(names)} | {np.mean(zssr):.3f} | "
                                 + " | ".join(f"{z:.3f}" for z in zssr) + " | | |")
        lines.append("")
        if part == "middlebury":
            lines += training_signs(rows, names, results)
    lines += ["Flags of each row (preset file + overrides):", ""]
    for row, by_scale in flags_of.items():
        for (_, scale), flags in by_scale.items():
            shown = {k: v for k, v in flags.items() if k not in ("seed", "progress")}
            lines.append(f"- {row} x{scale}: `{' '.join(f'--{k}={v}' for k, v in shown.items())}`")
    return "\n".join(lines) + "\n"


def training_signs(rows: list[str], names: list[str], results: dict) -> list[str]:
    """Two tables: each output's Nyquist energy over bicubic's (a period-2 grid shows as >> 1), and the critics'
    Wasserstein estimates (mean over the scenes) at the start, middle and end of training."""
    bicubic = {n: results.get(("bicubic", n)) for n in names}
    nyquist = []
    for row in rows:
        if row == "bicubic":
            continue
        cells = []
        for n in names:
            r, b = results[row, n], bicubic[n]
            ok = r is not None and b is not None and "nyquist_energy" in r and "nyquist_energy" in b
            cells.append(f"{r['nyquist_energy'] / b['nyquist_energy']:.2f}" if ok else "")
        if any(cells):
            nyquist.append(f"| {row} | " + " | ".join(cells) + " |")
    wasserstein = []
    for row in rows:
        curves = [results[row, n]["wasserstein"] for n in names
                  if results[row, n] is not None and "wasserstein" in results[row, n]]
        if not curves:
            continue
        cells = [f"{np.mean([c[side][int(at * (len(c[side]) - 1))] for c in curves]):.2e}"
                 for side in ("hr", "lr") for at in (0, 0.5, 1)]
        wasserstein.append(f"| {row} | {len(curves)} | " + " | ".join(cells) + " |")
    lines = []
    if nyquist:
        lines += ["Nyquist energy of the output over bicubic's (the share of the Y spectrum on the Nyquist row and "
                  "column; a period-2 grid makes it >> 1):", "", "| method | " + " | ".join(names) + " |",
                  "|---" * (len(names) + 1) + "|", *nyquist, ""]
    if wasserstein:
        lines += ["The critics' Wasserstein estimates E[D(fake)] - E[D(real)] (mean over the scenes that have them) "
                  "at the first logged step, the middle one and the last:", "",
                  "| method | scenes | D^H start | D^H middle | D^H end | D^L start | D^L middle | D^L end |",
                  "|---|---|---|---|---|---|---|---|", *wasserstein, ""]
    return lines


def write_crops(out: str, names: list[str], scales: list[int], flags_of: dict) -> None:
    """Side-by-side crops (the centre quarter of each output, labelled with its row and NIQE) per image and scale:
    `<out>/crops_x<scale>_<name>.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zssr_tf.image_io import read_image

    for scale in scales:
        for name in names:
            panels = []
            for row in flags_of:
                result = load_cached(out, row, name, scale, flags_of[row].get((row, scale), {}))
                path = os.path.join(out, "outputs", f"{name}_x{scale}_{row}.png")
                if result is not None and os.path.exists(path):
                    panels.append((f"{row}: NIQE {result['niqe']:.2f}", read_image(path).pixels))
            if len(panels) < 2:
                continue
            height, width = panels[0][1].shape[:2]
            top, left, size = height * 3 // 8, width * 3 // 8, min(height, width) // 4
            fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
            for axis, (title, image) in zip(axes[0], panels):
                axis.imshow(image[top:top + size, left:left + size], interpolation="nearest")
                axis.set_title(title, fontsize=9)
                axis.axis("off")
            fig.suptitle(f"{name} x{scale}, centre crop {size}x{size} of the output", fontsize=10)
            fig.tight_layout()
            fig.savefig(os.path.join(out, f"crops_x{scale}_{name}.png"), dpi=100)
            plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--part", choices=("middlebury", "set5"), default="middlebury")
    parser.add_argument("--out", default="")
    parser.add_argument("--rows", default="")
    parser.add_argument("--scenes", "--images", dest="names", default="", help="Comma-separated (default: all).")
    parser.add_argument("--scales", default="2")
    parser.add_argument("--dgdml_flags", default="", help="More flags for the DGDML rows, space separated.")
    parser.add_argument("--zssr_flags", default="", help="More flags for the ZSSR row, space separated.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tabulate_only", action="store_true")
    parser.add_argument("--job", default="", help=argparse.SUPPRESS)  # row,name,scale: one result (internal)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = args.out or os.path.join(ROOT, "benchmarks", "results", f"dgdml_{args.part}")
    all_rows = MIDDLEBURY_ROWS if args.part == "middlebury" else SET5_ROWS
    rows = [r for r in args.rows.split(",") if r] or list(all_rows)
    scales = [int(s) for s in args.scales.split(",")]
    if args.part == "middlebury":
        all_names = sorted(os.path.basename(p)[:-len("1_true.png")]
                           for p in glob.glob(os.path.join(args.data_dir, "Middlebury", "*1_true.png")))
    else:
        all_names = sorted(os.path.splitext(os.path.basename(p))[0]
                           for p in glob.glob(os.path.join(args.data_dir, "Set5", "HR", "*.png")))
    names = [n for n in args.names.split(",") if n] or all_names
    unknown = [r for r in rows if r not in all_rows] + [n for n in names if n not in all_names]
    if unknown or not all_names:
        sys.exit(f"dgdml_table: unknown rows or images ({', '.join(unknown)}) or no data under {args.data_dir}")
    flags_of = {row: {(row, s): row_flags(row, s, args.dgdml_flags, args.zssr_flags, args.seed) for s in scales}
                for row in rows}
    if args.job:
        row, name, scale = args.job.split(",")
        run_job(args.part, row, name, int(scale), args.data_dir, flags_of[row][row, int(scale)], out)
        return
    os.makedirs(os.path.join(out, "cache"), exist_ok=True)
    if not args.tabulate_only:
        for scale in scales:
            for row in rows:
                for name in names:
                    if load_cached(out, row, name, scale, flags_of[row][row, scale]) is not None:
                        continue
                    command = [sys.executable, os.path.abspath(__file__), f"--data_dir={args.data_dir}",
                               f"--part={args.part}", f"--out={out}", f"--rows={row}", f"--scales={scale}",
                               f"--dgdml_flags={args.dgdml_flags}", f"--zssr_flags={args.zssr_flags}",
                               f"--seed={args.seed}", f"--job={row},{name},{scale}"]
                    start = time.perf_counter()
                    done = subprocess.run(command, check=False)
                    status = "done" if done.returncode == 0 else f"failed ({done.returncode})"
                    print(f"{row} x{scale} {name}: {status}, {time.perf_counter() - start:.0f} s", flush=True)
    text = tabulate(args.part, out, names, scales, flags_of)
    write_crops(out, names, scales, flags_of)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
