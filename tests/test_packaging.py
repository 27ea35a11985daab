"""What `pip install` puts in place: every package, the presets as package data, found where they are installed."""

import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from zssr_tf import presets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_pyproject_lists_every_package_and_ships_the_presets():
    setuptools = _pyproject()["tool"]["setuptools"]
    on_disk = sorted(os.path.relpath(folder, ROOT).replace(os.sep, ".")
                     for folder, _, files in os.walk(os.path.join(ROOT, "zssr_tf")) if "__init__.py" in files)
    assert sorted(setuptools["packages"]) == sorted([*on_disk, "zssr_tf.flags"])
    assert setuptools["package-dir"] == {"zssr_tf.flags": "flags"}
    assert setuptools["package-data"]["zssr_tf.flags"] == ["*.cfg"]
    assert all(os.path.exists(os.path.join(ROOT, "zssr_tf", p.split("/")[0]))
               for p in setuptools["package-data"]["zssr_tf"])


def test_the_wheel_holds_every_module_the_presets_and_the_command(tmp_path):
    """Builds the wheel `pip install` would install (from a copy of the sources, offline) and reads its files."""
    setuptools = pytest.importorskip("setuptools", minversion="61",
                                     reason="pyproject.toml metadata needs setuptools 61")
    if tuple(map(int, setuptools.__version__.split(".")[:2])) < (70, 1):  # from 70.1 setuptools builds wheels itself
        pytest.importorskip("wheel", reason="this setuptools builds wheels with the wheel package")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source)
    for name in ("zssr_tf", "flags"):
        shutil.copytree(os.path.join(ROOT, name), source / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel_path,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel_path) as wheel:
        files = set(wheel.namelist())
        entry_points = next(wheel.read(n).decode() for n in files if n.endswith(".dist-info/entry_points.txt"))
    modules = {os.path.relpath(os.path.join(folder, name), ROOT).replace(os.sep, "/")
               for folder, _, names in os.walk(os.path.join(ROOT, "zssr_tf")) for name in names
               if name.endswith(".py")}
    assert modules <= files
    assert {f"zssr_tf/flags/{name}" for name in os.listdir(os.path.join(ROOT, "flags"))} <= files
    assert {"zssr_tf/resources/niqe_pris_params.npz", "zssr_tf/resources/NOTICE"} <= files
    assert "zssr = zssr_tf.cli:run" in entry_points


def test_metadata_version_and_entry_point_agree_with_the_package():
    project = _pyproject()["project"]
    assert project["scripts"] == {"zssr": "zssr_tf.cli:run"}
    assert {"test", "notebooks"} <= set(project["optional-dependencies"])
    assert "tensorflow>=2.16" in project["dependencies"]
    version = subprocess.run([sys.executable, "setup.py", "--version"], capture_output=True, text=True, cwd=ROOT,
                             timeout=120)
    assert version.returncode == 0, version.stderr
    import zssr_tf

    assert version.stdout.strip().splitlines()[-1] == zssr_tf.__version__  # setup.py reads pyproject.toml


def test_presets_are_found_in_an_installed_layout_and_in_the_source_tree(tmp_path):
    assert presets.preset_dir() == os.path.join(ROOT, "flags")  # this checkout (an editable install reads it too)
    # site-packages after `pip install`: zssr_tf/presets.py beside zssr_tf/flags/*.cfg, no flags/ above.
    package = tmp_path / "site-packages" / "zssr_tf"
    shutil.copytree(os.path.join(ROOT, "flags"), package / "flags")
    shutil.copy(presets.__file__, package / "presets.py")
    spec = importlib.util.spec_from_file_location("installed_presets", package / "presets.py")
    installed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(installed)
    assert installed.preset_dir() == str(package / "flags")
    assert installed.preset_path("quick") == str(package / "flags" / "quick.cfg")
    assert installed.preset_names() == presets.preset_names()
