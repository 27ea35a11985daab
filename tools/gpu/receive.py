"""On the GPU machine: collect the parts pack.py made, verify them, install TensorFlow, link CUDA, check the GPU.

Standard library only (it runs before TensorFlow exists there). Actions, in the order given on the command line:

  stash    copy the parts carried in this call (.gpu_window/parts/pNN, verified against manifest.json) to --home,
           which outlives the call while the machine stays warm; says which parts are still missing
  install  once every part is there: stream them through one sha256 into the tar's wheels/ and data/, pip install
           the wheels into <home>/site, link the image's CUDA 13 libraries under the CUDA 12 names TensorFlow's
           wheel loads (LINKS), and write <home>/env.sh
  check    in a fresh process with env.sh's variables: TensorFlow's version, the GPUs it sees, a convolution and an
           XLA-compiled function run on the GPU, their times (an XLA failure is printed, not fatal); exits 1 when
           the plain convolution did not run on a GPU

  python3 tools/gpu/receive.py stash                    # every call but the last
  python3 tools/gpu/receive.py stash install check      # the last: then `. /tmp/zssr_gpu/env.sh`

Exit status: 0 when every action did its work, 3 when stash still misses parts, 1 on an error (one line).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# TensorFlow 2.21's wheel is a CUDA 12.5 build: it dlopens these names. The GPU image has CUDA 13's libraries (pip
# packages nvidia-cublas, nvidia-cufft, ...), whose major versions differ; linked under the old names they load and
# run TF's kernels (benchmarks/results/speed_gpu.md, H100, 2026-11-22). cudart is the exception: 13 is another ABI,
# so CUDA 12's runtime comes as a wheel (pack.py) and TensorFlow finds it by its RUNPATH in <home>/site/nvidia.
LINKS = {"libcublas.so.12": "cublas", "libcublasLt.so.12": "cublasLt", "libcufft.so.11": "cufft",
         "libcusparse.so.12": "cusparse", "libcusolver.so.11": "cusolver", "libcurand.so.10": "curand",
         "libcudnn.so.9": "cudnn", "libnccl.so.2": "nccl", "libcupti.so.12": "cupti",
         "libnvJitLink.so.12": "nvJitLink", "libnvrtc.so.12": "nvrtc"}
# Every library of these families is linked under its own name too, so that what one loads beside it (cuBLAS its
# cuBLASLt, cuDNN its sub-libraries, cuSOLVER its nvJitLink) is found in the same folder.
FAMILIES = re.compile(r"^lib(cublas|cublasLt|cufft|cusparse|cusolver|curand|cudnn\w*|nccl|cupti|nvJitLink|nvrtc"
                      r"[\w-]*)\.so(\.\d+)*$")
CHECK = r"""
import json, time
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
out = {"tensorflow": tf.__version__, "gpus": [g.name for g in gpus], "built_with_cuda": tf.test.is_built_with_cuda()}
if gpus:
    out["device"] = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "")
    with tf.device("/GPU:0"):
        x, w = tf.random.normal((1, 256, 256, 64)), tf.random.normal((3, 3, 64, 64))
        conv = tf.function(lambda: tf.reduce_sum(tf.nn.conv2d(x, w, 1, "SAME")))
        xla = tf.function(lambda: tf.reduce_sum(tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME"))), jit_compile=True)
        for name, fn in (("conv", conv), ("xla_conv", xla)):
            try:  # XLA needs ptxas and libdevice besides TF: its failure is reported, not fatal
                start = time.perf_counter(); result = fn(); result.numpy(); first = time.perf_counter() - start
                start = time.perf_counter(); [fn() for _ in range(20)][-1].numpy()
                out[name] = {"first_s": round(first, 3), "ms": round((time.perf_counter() - start) / 20 * 1e3, 3),
                             "device": result.device}
            except Exception as e:
                out[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
print(json.dumps(out))
raise SystemExit(0 if "GPU" in out.get("conv", {}).get("device", "") else 1)
"""


class Fail(Exception):
    """One line for the user; exit status 1."""


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: str) -> dict:
    path = os.path.join(folder, "manifest.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise Fail(f"no readable manifest at {path} ({error}): carry .gpu_window/parts/manifest.json") from error


def stash(parts_dir: str, home: str) -> list[str]:
    """Copies each verified part from `parts_dir` into `home`/parts; returns the names still missing there."""
    manifest = read_manifest(parts_dir)
    store = os.path.join(home, "parts")
    os.makedirs(store, exist_ok=True)
    kept = os.path.join(store, "manifest.json")
    if os.path.exists(kept) and read_manifest(store)["total_sha256"] != manifest["total_sha256"]:
        shutil.rmtree(store)  # parts of an earlier packing
        os.makedirs(store)
    shutil.copyfile(os.path.join(parts_dir, "manifest.json"), kept)
    missing = []
    for part in manifest["parts"]:
        target, carried = os.path.join(store, part["name"]), os.path.join(parts_dir, part["name"])
        if os.path.exists(target) and os.path.getsize(target) == part["bytes"]:
            continue  # verified when it was stashed
        if os.path.exists(carried):
            if sha256_of(carried) != part["sha256"]:
                raise Fail(f"part {part['name']} does not match its sha256 in the manifest: pack again or resend it")
            shutil.copyfile(carried, target + ".tmp")
            os.replace(target + ".tmp", target)
            print(f"stashed {part['name']} ({part['bytes'] / 2**20:.1f} MiB)")
        else:
            missing.append(part["name"])
    return missing


class _Parts:
    """The stashed parts read as one stream, hashed as they are read."""

    def __init__(self, store: str, parts: list[dict]):
        self.paths = [os.path.join(store, p["name"]) for p in parts]
        self.digest = hashlib.sha256()
        self._file = None

    def read(self, size: int = -1) -> bytes:
        while self.paths or self._file:
            if self._file is None:
                self._file = open(self.paths.pop(0), "rb")
            data = self._file.read(size if size >= 0 else 2**30)
            if data:
                self.digest.update(data)
                return data
            self._file.close()
            self._file = None
        return b""


def unpack(home: str) -> str:
    """Extracts the stashed stream into `home`/unpacked after checking every part is there; returns that folder."""
    store = os.path.join(home, "parts")
    manifest = read_manifest(store)
    missing = [p["name"] for p in manifest["parts"] if not os.path.exists(os.path.join(store, p["name"]))]
    if missing:
        raise Fail(f"install needs every part; missing {', '.join(missing)}")
    target = os.path.join(home, "unpacked")
    shutil.rmtree(target, ignore_errors=True)
    stream = _Parts(store, manifest["parts"])
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            tar.extractall(target, filter="data")
        while stream.read(2**22):  # the tar reader stops at its end-of-archive blocks; the hash needs the padding too
            pass
        problem = "" if stream.digest.hexdigest() == manifest["total_sha256"] else "its sha256 differs"
    except (tarfile.TarError, OSError) as error:
        problem = f"{type(error).__name__}: {error}"
    if problem:
        shutil.rmtree(target, ignore_errors=True)
        raise Fail(f"the reassembled parts are not the packed stream ({problem}): stash them again")
    return target


def find_libraries(roots: list[str]) -> dict[str, str]:
    """name -> path of every CUDA library of FAMILIES under `roots` (the first root that has a name wins)."""
    found: dict[str, str] = {}
    for root in roots:
        for folder, _, files in os.walk(root):
            for name in sorted(files):
                if FAMILIES.match(name) and name not in found:
                    found[name] = os.path.join(folder, name)
    return found


def _major(name: str) -> int:
    numbers = name.split(".so.", 1)[1].split(".") if ".so." in name else []
    return int(numbers[0]) if numbers and numbers[0].isdigit() else -1


def link_cuda(roots: list[str], dest: str) -> dict[str, str]:
    """Links into `dest` every library found under `roots` by its own name, and each LINKS name TensorFlow loads to
    the highest major version of its stem found. Returns {LINKS name: what it points to, or '' if none found}."""
    os.makedirs(dest, exist_ok=True)
    found = find_libraries(roots)
    for name, path in found.items():
        link = os.path.join(dest, name)
        if not os.path.lexists(link):
            os.symlink(path, link)
    made = {}
    for name, stem in LINKS.items():
        link = os.path.join(dest, name)
        if os.path.lexists(link):  # the image has this very name (e.g. cuSPARSE is .so.12 in CUDA 13 too)
            made[name] = os.path.realpath(link)
            continue
        candidates = [n for n in found if n.startswith(f"lib{stem}.so")]
        if not candidates:
            made[name] = ""
            continue
        best = max(candidates, key=lambda n: (_major(n), -len(n)))
        os.symlink(found[best], link)
        made[name] = found[best]
    return made


def cuda_roots() -> list[str]:
    """Where the image keeps CUDA's libraries: its Python's nvidia.* packages, then the CUDA toolkit's folders."""
    roots = []
    try:
        import nvidia  # the GPU image's pip packages nvidia-cublas, nvidia-cudnn-cu13, ...

        roots += list(nvidia.__path__)
    except ImportError:
        pass
    toolkit = ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib")
    return roots + [p for p in toolkit if os.path.isdir(p)]


def ptxas_home(roots: list[str] | None = None) -> str:
    """The CUDA folder whose bin/ptxas XLA compiles with ('' if none): on the PATH, in /usr/local/cuda, or in the
    image's CUDA pip packages (nvidia/*/bin)."""
    candidates = [shutil.which("ptxas") or "", "/usr/local/cuda/bin/ptxas"]
    for root in roots or []:
        candidates += [os.path.join(root, package, "bin", "ptxas") for package in sorted(os.listdir(root))
                       if os.path.isdir(os.path.join(root, package))]
    ptxas = next((p for p in candidates if p and os.path.isfile(p)), "")
    return os.path.dirname(os.path.dirname(os.path.realpath(ptxas))) if ptxas else ""


def install(home: str, roots: list[str], repo: str = ROOT, pip: bool = True) -> str:
    """Unpacks, installs the wheels into `home`/site, links CUDA into `home`/cuda_links, writes `home`/env.sh."""
    unpacked = unpack(home)
    site = os.path.join(home, "site")
    wheels = sorted(os.path.join(unpacked, "wheels", n) for n in os.listdir(os.path.join(unpacked, "wheels")))
    if pip:
        shutil.rmtree(site, ignore_errors=True)
        result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                                 "--no-compile", "--no-cache-dir", "--target", site, *wheels],
                                capture_output=True, text=True)
        if result.returncode:
            raise Fail(f"pip install failed: {result.stderr.strip().splitlines()[-1:]}")
    links = link_cuda(roots, os.path.join(home, "cuda_links"))
    for name, target in links.items():
        print(f"{name} -> {target or 'NOT FOUND'}")
    cuda = ptxas_home(roots)
    lines = [f"export PYTHONPATH={site}:{repo}${{PYTHONPATH:+:$PYTHONPATH}}",
             f"export LD_LIBRARY_PATH={os.path.join(home, 'cuda_links')}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}",
             f"export ZSSR_GPU_DATA={os.path.join(unpacked, 'data')}",
             # TF's kernels are compute_90 PTX only: the driver compiles them on first use; cache that for the window.
             "export CUDA_CACHE_MAXSIZE=4294967296",
             "export TF_CPP_MIN_LOG_LEVEL=1"]
    if cuda:
        lines.append(f"export XLA_FLAGS=--xla_gpu_cuda_data_dir={cuda}")
    env_sh = os.path.join(home, "env.sh")
    with open(env_sh, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{'installed' if pip else 'unpacked'} {len(wheels)} wheels into {site}; now: . {env_sh}")
    return env_sh


def check(home: str) -> int:
    """Runs CHECK in a fresh process under env.sh (the loader reads LD_LIBRARY_PATH only when a process starts)."""
    script = f". {os.path.join(home, 'env.sh')} && exec {sys.executable} -c \"$CHECK\""
    result = subprocess.run(["bash", "-c", script], env=dict(os.environ, CHECK=CHECK), capture_output=True, text=True)
    print(result.stdout.strip() or result.stderr.strip()[-3000:])
    return result.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("actions", nargs="+", choices=("stash", "install", "check"))
    parser.add_argument("--parts", default=os.path.join(ROOT, ".gpu_window", "parts"))
    parser.add_argument("--home", default="/tmp/zssr_gpu", help="outlives the call while the machine is warm")
    parser.add_argument("--cuda_roots", default="", help="colon-separated folders to take CUDA libraries from "
                        "(default: the image's nvidia packages and /usr/local/cuda)")
    parser.add_argument("--no_pip", action="store_true", help="unpack and link only (the test suite's dry run)")
    args = parser.parse_args(argv)
    roots = [r for r in args.cuda_roots.split(":") if r] or cuda_roots()
    status = 0
    try:
        for action in args.actions:
            if action == "stash":
                missing = stash(args.parts, args.home)
                print(f"missing {len(missing)} parts: {', '.join(missing)}" if missing else "every part is stashed")
                if missing:
                    return 3
            elif action == "install":
                install(args.home, roots, pip=not args.no_pip)
            else:
                status = check(args.home)
    except Fail as error:
        print(f"receive: {error}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
