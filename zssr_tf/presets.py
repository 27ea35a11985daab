"""The presets: the absl flagfiles of the repository's `flags/`, named without a path (`--preset=x2_real`).

An installed package carries them as `zssr_tf/flags/` (pyproject.toml maps the folder there); a source tree or an
editable install reads the repository's `flags/` itself. No TensorFlow.
"""

from __future__ import annotations

import os
import re

PRESET_SUFFIX = ".cfg"


def preset_dir() -> str:
    """The folder holding the presets: the installed package's `zssr_tf/flags/`, else the source tree's `flags/`.

    Raises:
      ValueError: neither exists (a broken installation).
    """
    package = os.path.dirname(os.path.abspath(__file__))
    for folder in (os.path.join(package, "flags"), os.path.join(os.path.dirname(package), "flags")):
        if os.path.isdir(folder):
            return folder
    raise ValueError(f"no presets: neither {package}/flags nor the source tree's flags/ exists (a broken "
                     "installation; reinstall zssr-tf)")


def preset_names() -> list[str]:
    """Every preset's name, sorted."""
    return sorted(name.removesuffix(PRESET_SUFFIX) for name in os.listdir(preset_dir())
                  if name.endswith(PRESET_SUFFIX))


def preset_path(name: str) -> str:
    """The flagfile of preset `name` (a name from `preset_names`, with or without `.cfg`).

    Raises:
      ValueError: no such preset (one line naming the presets there are).
    """
    stem = name.removesuffix(PRESET_SUFFIX)
    path = os.path.join(preset_dir(), stem + PRESET_SUFFIX)
    if os.sep in stem or "/" in stem or not os.path.isfile(path):
        raise ValueError(f"preset: no preset named {name!r} (the presets: {', '.join(preset_names())}; a file of "
                         "your own goes with --flagfile=PATH)")
    return path


def preset_summary(name: str) -> str:
    """The first sentence of the preset's leading comment: what it is for."""
    comment = []
    with open(preset_path(name), encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("#").strip())
    text = " ".join(comment)
    match = re.match(r"(.+?\.)(\s+[A-Z(]|$)", text)  # a full stop before a new sentence: not "8.1. x2 in ..."
    return match.group(1) if match else text
