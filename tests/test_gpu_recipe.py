"""tools/gpu: the GPU machine's recipe, as a dry run with a tiny wheel and a made-up CUDA tree (no GPU, no network).

pack.py cuts a tar stream of wheels and data into parts; receive.py, one call at a time as the device tool carries
them, stashes the parts, refuses a corrupt one, reassembles and verifies the stream, installs the wheel with pip and
links CUDA 13 libraries under the CUDA 12 names TensorFlow's wheel loads.
"""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools", "gpu"))

import pack  # noqa: E402
import receive  # noqa: E402


def make_wheel(folder: str, name: str = "zssr_gpu_probe", version: str = "0.1") -> str:
    """A valid pure-Python wheel holding one module, with random bytes so the stream spans several parts."""
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files = {f"{name}/__init__.py": b"VALUE = 42\n", f"{name}/blob.bin": os.urandom(3000),
             f"{name}-{version}.dist-info/METADATA": metadata,
             f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                  b"Tag: py3-none-any\n"}
    record = "".join(f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for path, data in files.items())
    files[f"{name}-{version}.dist-info/RECORD"] = (record + f"{name}-{version}.dist-info/RECORD,,\n").encode()
    path = os.path.join(folder, f"{name}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as whl:
        for member, data in files.items():
            whl.writestr(member, data)
    return path


@pytest.fixture()
def packed(tmp_path):
    wheels, data = tmp_path / "wheels", tmp_path / "data"
    wheels.mkdir()
    (data / "Set5" / "HR").mkdir(parents=True)
    (data / "Set5" / "HR" / "baby.png").write_bytes(b"not really a png")
    make_wheel(str(wheels))
    manifest = pack.pack(str(wheels), str(data), str(tmp_path / "parts"), part_bytes=2000, data=("Set5/HR",))
    return tmp_path, manifest


def carry(tmp_path, name: str) -> str:
    """What one device call brings: the manifest and one part, in a fresh folder."""
    call = tmp_path / f"call_{name}"
    call.mkdir(exist_ok=True)
    for item in ("manifest.json", name):
        shutil.copy(tmp_path / "parts" / item, call / item)
    return str(call)


def test_pack_cuts_parts_whose_hashes_add_up_to_the_stream(packed):
    tmp_path, manifest = packed
    parts = manifest["parts"]
    assert len(parts) >= 3 and all(p["bytes"] <= 2000 for p in parts)
    whole = b"".join((tmp_path / "parts" / p["name"]).read_bytes() for p in parts)
    assert hashlib.sha256(whole).hexdigest() == manifest["total_sha256"] and len(whole) == manifest["total_bytes"]
    for p in parts:
        assert hashlib.sha256((tmp_path / "parts" / p["name"]).read_bytes()).hexdigest() == p["sha256"]
    wheels = json.loads((tmp_path / "parts" / "manifest.json").read_text())["wheels"]
    assert wheels == ["zssr_gpu_probe-0.1-py3-none-any.whl"]


def test_parts_stashed_call_by_call_then_installed_and_linked(packed):
    tmp_path, manifest = packed
    home = str(tmp_path / "home")
    names = [p["name"] for p in manifest["parts"]]
    for i, name in enumerate(names[:-1]):  # every call but the last: stash, say what is missing, exit 3
        assert receive.main(["stash", "--parts", carry(tmp_path, name), "--home", home]) == 3
        assert receive.stash(carry(tmp_path, name), home) == names[i + 1:]
    with pytest.raises(receive.Fail, match="missing"):
        receive.install(home, roots=[])

    cuda = tmp_path / "image_cuda"  # the GPU image's CUDA 13 pip packages, as files
    for folder, files in {"cublas/lib": ["libcublas.so.13", "libcublasLt.so.13"], "cu13/lib": ["libcufft.so.12"],
                          "cusparse/lib": ["libcusparse.so.12"], "cudnn/lib": ["libcudnn.so.9", "libcudnn_ops.so.9"],
                          "nccl/lib": ["libnccl.so.2", "libnccl-net.so"]}.items():
        (cuda / folder).mkdir(parents=True)
        for name in files:
            (cuda / folder / name).write_bytes(b"\x7fELF")
    assert receive.stash(carry(tmp_path, names[-1]), home) == []
    env_sh = receive.install(home, roots=[str(cuda)])

    site = os.path.join(home, "site")
    probe = subprocess.run([sys.executable, "-c", "import zssr_gpu_probe; print(zssr_gpu_probe.VALUE)"],
                           env=dict(os.environ, PYTHONPATH=site), capture_output=True, text=True)
    assert probe.stdout.strip() == "42"
    assert (tmp_path / "home" / "unpacked" / "data" / "Set5" / "HR" / "baby.png").read_bytes() == b"not really a png"
    links = os.path.join(home, "cuda_links")
    assert os.readlink(os.path.join(links, "libcublas.so.12")) == str(cuda / "cublas/lib/libcublas.so.13")
    assert os.readlink(os.path.join(links, "libcublasLt.so.12")) == str(cuda / "cublas/lib/libcublasLt.so.13")
    assert os.readlink(os.path.join(links, "libcufft.so.11")) == str(cuda / "cu13/lib/libcufft.so.12")
    assert os.readlink(os.path.join(links, "libcusparse.so.12")) == str(cuda / "cusparse/lib/libcusparse.so.12")
    assert os.path.islink(os.path.join(links, "libcudnn_ops.so.9"))  # cuDNN loads its sub-libraries beside it
    assert not os.path.exists(os.path.join(links, "libcusolver.so.11"))  # none in the image: said, not faked
    text = open(env_sh).read()
    assert f"PYTHONPATH={site}:" in text and f"LD_LIBRARY_PATH={links}" in text and "ZSSR_GPU_DATA=" in text


def test_a_corrupt_part_is_refused_with_one_line(packed, capsys):
    tmp_path, manifest = packed
    call = carry(tmp_path, "p01")
    with open(os.path.join(call, "p01"), "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 1]))
    assert receive.main(["stash", "--parts", call, "--home", str(tmp_path / "home")]) == 1
    assert capsys.readouterr().err.strip() == ("receive: part p01 does not match its sha256 in the manifest: pack "
                                              "again or resend it")


def test_a_stream_that_does_not_add_up_is_not_installed(packed):
    tmp_path, manifest = packed
    home = tmp_path / "home"
    for p in manifest["parts"]:
        receive.stash(carry(tmp_path, p["name"]), str(home))
    # A part swapped for another of the same size after stashing (its size check passes; the stream's hash must not).
    shutil.copy(home / "parts" / manifest["parts"][1]["name"], home / "parts" / manifest["parts"][0]["name"])
    with pytest.raises(receive.Fail):
        receive.install(str(home), roots=[])
    assert not (home / "unpacked").exists() and not (home / "env.sh").exists()


@pytest.mark.skipif(not os.path.isdir(os.path.join(ROOT, ".git")), reason="not a git checkout")
def test_parts_fit_one_call_beside_the_working_tree():
    tree = pack.travelling_tree_bytes()
    assert 0 < tree < pack.CALL_LIMIT - pack.MARGIN - 2**20, "the working tree leaves no room for a part"
    manifest = os.path.join(ROOT, ".gpu_window", "parts", "manifest.json")
    if os.path.isfile(manifest):  # parts packed here earlier must still fit beside today's tree
        packed = json.load(open(manifest))
        assert tree + packed["part_bytes"] + os.path.getsize(manifest) <= pack.CALL_LIMIT, \
            "the working tree grew since packing: run tools/gpu/pack.py again"


def test_stale_wheels_are_named(tmp_path):
    make_wheel(str(tmp_path), name="keras", version="0.0.1")
    problems = pack.wheel_problems(str(tmp_path))
    assert any(p.startswith("keras: 0.0.1 (installed here: ") for p in problems)
    assert any(p.startswith("tensorflow: no wheel") for p in problems)
