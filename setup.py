"""zssr-tf's metadata, dependencies and extras are in pyproject.toml (PEP 621); this file is kept for tools and
habits that call setup.py (`python setup.py --version`, old pips' editable installs)."""

from setuptools import setup

setup()
