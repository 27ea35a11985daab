"""What `pip install` puts in place: every package, the presets as package data, found where they are installed."""

import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib

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
