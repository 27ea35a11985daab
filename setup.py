"""zssr-tf's metadata, dependencies and extras are in pyproject.toml (PEP 621); this file is kept for tools and
habits that call setup.py (`python setup.py --version`). It needs setuptools >= 61 to read pyproject.toml; pip
installs a recent one in its isolated build."""

from setuptools import setup

setup()
