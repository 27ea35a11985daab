"""zssr-tf: zero-shot super-resolution in TensorFlow 2 / Keras 3."""

from setuptools import find_packages, setup

setup(
    name="zssr-tf",
    version="0.1.0",
    description="Zero-shot super-resolution (ZSSR) in TensorFlow 2 / Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["zssr_tf", "zssr_tf.*"]),
    # The NIQE pristine model (zssr_tf.metrics.niqe) and its Apache-2.0 NOTICE.
    package_data={"zssr_tf": ["resources/*.npz", "resources/NOTICE"]},
    install_requires=[
        "tensorflow>=2.16",
        "numpy",
        "scipy",
        "opencv-python-headless",
        "scikit-image",
        "absl-py",
        "tqdm",
        "tensorboard",
        "matplotlib",
    ],
    extras_require={
        # The notebook tests (tests/test_notebooks.py) execute notebooks/ in a kernel.
        "test": ["pytest", "nbclient", "nbformat", "ipykernel", "matplotlib"],
        # ipywidgets: tqdm.auto's progress widget (zssr_tf/summaries.py) instead of its console fallback.
        "notebooks": ["matplotlib", "ipykernel", "nbclient", "nbformat", "ipywidgets"],
    },
    entry_points={"console_scripts": ["zssr=zssr_tf.cli:run"]},
)
