"""Pack TensorFlow and the benchmark data for a GPU machine that has neither TensorFlow nor a network.

Runs here, on the CPU machine (network needed for the download). The device tool sends the working tree plus at most
64 MiB per call, so everything the GPU machine lacks goes over as parts of one tar stream, each small enough to ride
along with the working tree in one call (tools/gpu/README.md has the whole recipe):

  python tools/gpu/pack.py --data_dir=../shared/data            # -> .gpu_window/parts/{manifest.json,p00,p01,...}

What goes in the stream:
  wheels/  the cp312 manylinux wheels of TensorFlow and of what it and Keras need that the GPU image lacks or has in
           another version (REQUIREMENTS, each at the version installed here, so the GPU runs the code tested here),
           and CUDA 12's runtime (TensorFlow's wheel is a CUDA 12 build; the image has CUDA 13, see receive.py);
  data/    the benchmark images `benchmarks/gpu_window.py` reads (DATA: Set5, Set5_g20, Set14's x2 LR and HR, one
           Middlebury scene), when --data_dir is given.
The manifest lists each part with its sha256 and the stream's own sha256. Parts are cut at --part_mib, by default
the largest that fits one call: 64 MiB less the working tree that travels with every call (tracked and untracked,
not ignored, files) less a margin.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CALL_LIMIT = 64 * 2**20  # what one device call carries: working tree + carried paths
MARGIN = 2**20  # the manifest, and files changed between packing and the calls
# Distributions whose wheels travel, at the version installed here. The GPU image (KINDS.md) has numpy, scipy,
# opencv, scikit-image, absl-py, tqdm, matplotlib, h5py, pillow, rich and tensorboard already; it lacks TensorFlow,
# Keras and their small pure dependencies, and its protobuf / ml-dtypes / wrapt / flatbuffers may not be the versions
# this TensorFlow was built against, so ours go too (a few MB).
REQUIREMENTS = ("tensorflow", "keras", "ml-dtypes", "protobuf", "optree", "namex", "gast", "astunparse",
                "google-pasta", "termcolor", "wrapt", "flatbuffers", "opt-einsum")
CUDA_RUNTIME = "nvidia-cuda-runtime-cu12==12.9.79"  # libcudart.so.12: the image's cudart 13 is another ABI
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
# Relative to --data_dir: what benchmarks/gpu_window.py reads.
DATA = ("Set5/HR", "Set5/LR_bicubic/X2", "Set5/LR_bicubic/X4", "Set5_g20", "Set14/HR", "Set14/LR_bicubic/X2",
        "Middlebury/art1.png", "Middlebury/art1_true.png")


def travelling_tree_bytes(root: str = ROOT) -> int:
    """Bytes of what every device call sends: tracked files and untracked files git does not ignore."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                           check=True, capture_output=True).stdout.decode().split("\0")
    paths = [os.path.join(root, n) for n in set(names) if n]
    return sum(os.path.getsize(p) for p in paths if os.path.isfile(p))


def download_wheels(folder: str, python: str = "3.12") -> list[str]:
    """pip download the wheels (no dependencies resolved: the list is explicit) for CPython `python` on manylinux."""
    os.makedirs(folder, exist_ok=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in REQUIREMENTS] + [CUDA_RUNTIME]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", python, "--implementation", "cp", *platforms, "-d", folder, *pins], check=True)
    return pins


def wheel_problems(folder: str) -> list[str]:
    """What is wrong with the wheels kept from an earlier download: a REQUIREMENTS name missing, twice, or at
    another version than the one installed here (pip would stop on the GPU machine, after every transfer)."""
    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "_", name).lower()

    found: dict[str, list[str]] = {}
    for wheel in os.listdir(folder):
        if wheel.endswith(".whl"):
            name, version = wheel.split("-")[:2]
            found.setdefault(normal(name), []).append(version)
    problems = []
    for name in REQUIREMENTS:
        versions, wanted = found.get(normal(name), []), importlib.metadata.version(name)
        if versions != [wanted]:
            problems.append(f"{name}: {', '.join(versions) or 'no wheel'} (installed here: {wanted})")
    return problems


class _PartWriter:
    """A file-like sink that cuts what is written into numbered parts of `part_bytes` and hashes them."""

    def __init__(self, folder: str, part_bytes: int):
        self.folder, self.part_bytes = folder, part_bytes
        self.parts: list[dict] = []
        self.total = hashlib.sha256()
        self._file = None

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            if self._file is None or self._file.tell() == self.part_bytes:
                self._next()
            room = self.part_bytes - self._file.tell()
            chunk, view = view[:room], view[room:]
            self._file.write(chunk)
            self._hash.update(chunk)
            self.total.update(chunk)
        return len(data)

    def _next(self) -> None:
        self._close_part()
        name = f"p{len(self.parts):02d}"
        self.parts.append({"name": name})
        self._file, self._hash = open(os.path.join(self.folder, name), "wb"), hashlib.sha256()

    def _close_part(self) -> None:
        if self._file is not None:
            self.parts[-1].update(bytes=self._file.tell(), sha256=self._hash.hexdigest())
            self._file.close()
            self._file = None

    def close(self) -> None:
        self._close_part()


def pack(wheel_dir: str, data_dir: str | None, out: str, part_bytes: int, data: tuple[str, ...] = DATA) -> dict:
    """Writes `out`/p00, p01, ... (one uncompressed tar stream: wheels are zips already) and `out`/manifest.json."""
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):  # an earlier packing's parts must not mix with this one's
        if name.startswith("p") and name[1:].isdigit() or name == "manifest.json":
            os.remove(os.path.join(out, name))
    wheels = sorted(n for n in os.listdir(wheel_dir) if n.endswith(".whl"))
    if not wheels:
        raise SystemExit(f"pack: no wheels in {wheel_dir}")
    sink = _PartWriter(out, part_bytes)
    with tarfile.open(fileobj=sink, mode="w|") as tar:
        for name in wheels:
            tar.add(os.path.join(wheel_dir, name), arcname=f"wheels/{name}")
        for item in data if data_dir else ():
            path = os.path.join(data_dir, item)
            if not os.path.exists(path):
                raise SystemExit(f"pack: {path} is missing (--data_dir must hold {', '.join(data)})")
            tar.add(path, arcname=f"data/{item}")
    sink.close()
    manifest = {"parts": sink.parts, "total_bytes": sum(p["bytes"] for p in sink.parts),
                "total_sha256": sink.total.hexdigest(), "part_bytes": part_bytes, "wheels": wheels,
                "data": list(data) if data_dir else []}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, ".gpu_window"))
    parser.add_argument("--data_dir", default=None, help="../shared/data: the benchmark images travel too")
    parser.add_argument("--wheel_dir", default=None, help="use these wheels instead of downloading (default: "
                        "<out>/wheels, downloaded when empty)")
    parser.add_argument("--part_mib", type=float, default=0, help="part size; 0: the largest that fits one call")
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python")
    args = parser.parse_args()

    wheel_dir = args.wheel_dir or os.path.join(args.out, "wheels")
    have = os.path.isdir(wheel_dir) and any(n.endswith(".whl") for n in os.listdir(wheel_dir))
    if args.wheel_dir is None and not have:
        pins = download_wheels(wheel_dir, args.python)
        print(f"downloaded {len(pins)} wheels into {wheel_dir}")
    problems = wheel_problems(wheel_dir) if args.wheel_dir is None else []
    if problems:
        raise SystemExit(f"pack: {wheel_dir} does not match this environment ({'; '.join(problems)}): empty it to "
                         "download again")
    tree = travelling_tree_bytes()
    part_bytes = int(args.part_mib * 2**20) if args.part_mib else CALL_LIMIT - tree - MARGIN
    if part_bytes < 2**20:
        raise SystemExit(f"pack: the working tree that travels is {tree / 2**20:.1f} MiB: no room for a part")
    manifest = pack(wheel_dir, args.data_dir, os.path.join(args.out, "parts"), part_bytes)
    n = len(manifest["parts"])
    print(f"{manifest['total_bytes'] / 2**20:.1f} MiB in {n} parts of {part_bytes / 2**20:.1f} MiB "
          f"(working tree {tree / 2**20:.1f} MiB travels with each): {n} device calls, each carrying "
          f"'.gpu_window/parts/manifest.json' and one part; see tools/gpu/README.md")


if __name__ == "__main__":
    main()
